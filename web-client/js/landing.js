// The landing page: pick a meeting code and a name, then open the studio or a site page.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { isMeetingCode } from './page.js';

const LAST_MEETING_KEY = 'diemcau.lastMeeting';
const LAST_NAME_KEY = 'diemcau.lastName';

installLanguageToggle(document.getElementById('lang'));
applyTranslations();

const form = document.getElementById('join-form');
const meetingInput = document.getElementById('meeting');
const nameInput = document.getElementById('name');
const formError = document.getElementById('form-error');
let errorKey = null;

try {
  meetingInput.value = localStorage.getItem(LAST_MEETING_KEY) || '';
  nameInput.value = localStorage.getItem(LAST_NAME_KEY) || '';
} catch {
  // No storage: the fields start empty.
}

const renderError = () => {
  formError.textContent = errorKey ? t(errorKey) : '';
  formError.hidden = !errorKey;
};
window.addEventListener('languagechange', renderError);

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const role = event.submitter && event.submitter.value === 'studio' ? 'studio' : 'site';
  const meeting = meetingInput.value.trim();
  let name = nameInput.value.trim();
  if (!isMeetingCode(meeting)) {
    errorKey = 'landing.invalidMeeting';
    renderError();
    meetingInput.focus();
    return;
  }
  if (!name && role === 'studio') name = t('landing.defaultStudioName');
  if (!name || name.length > 128) {
    errorKey = 'landing.invalidName';
    renderError();
    nameInput.focus();
    return;
  }
  errorKey = null;
  renderError();
  try {
    localStorage.setItem(LAST_MEETING_KEY, meeting);
    localStorage.setItem(LAST_NAME_KEY, nameInput.value.trim());
  } catch {
    // Not remembered; the meeting still opens.
  }
  const params = new URLSearchParams({ meeting, name });
  window.location.href = `${role}.html?${params}`;
});
