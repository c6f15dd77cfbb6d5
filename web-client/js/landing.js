// The start page: paste the join link (or code) the organizer sent and open the meeting;
// links to the organizer's and the staff's pages.

import { applyTranslations, installLanguageToggle, installMessageLine } from './i18n.js';
import { joinAddress, parseJoinInput } from './page.js';

installLanguageToggle(document.getElementById('lang'));
applyTranslations();

const form = document.getElementById('join-form');
const linkInput = document.getElementById('join-link');
const showError = installMessageLine(document.getElementById('form-error'));

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const join = parseJoinInput(linkInput.value);
  if (!join) {
    showError(linkInput.value.trim() ? 'landing.invalidLink' : 'landing.emptyLink');
    linkInput.focus();
    return;
  }
  showError(null);
  // Always this hub: a pasted link to another host opens here with the same code.
  window.location.href = joinAddress(join.page, join.code, join.meeting);
});
