// The login page: username and password, then back to the page that sent the person here
// (`login.html?next=/organizer.html`), or to the account's own page: the organizer's page for
// organizers, the meetings and reports for staff.

import { applyTranslations, installLanguageToggle, installMessageLine } from './i18n.js';
import { ApiError, logIn } from './api.js';

installLanguageToggle(document.getElementById('lang'));
applyTranslations();

const form = document.getElementById('login-form');
const username = document.getElementById('username');
const password = document.getElementById('password');
const submit = document.getElementById('submit');
const showError = installMessageLine(document.getElementById('form-error'));

/**
 * Where to go after the login: a page of this hub only, never another site. Staff may not
 * organize meetings: they land on the meetings and reports page instead of the organizer's.
 */
function nextPage(role) {
  const home = role === 'organizer' ? 'organizer.html' : 'meetings.html';
  const next = new URLSearchParams(window.location.search).get('next');
  if (next) {
    try {
      const url = new URL(next, window.location.origin);
      // The whole address, not its path: a path such as `//other.example` would leave the hub.
      const sameHub = url.origin === window.location.origin && !url.pathname.endsWith('/login.html');
      if (sameHub && !(role !== 'organizer' && url.pathname.endsWith('/organizer.html'))) return url.href;
    } catch {
      // Not an address: the default below.
    }
  }
  return home;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!username.value.trim() || !password.value) {
    showError('login.empty');
    return;
  }
  submit.disabled = true;
  try {
    const session = await logIn(username.value.trim(), password.value);
    window.location.assign(nextPage(session.role));
  } catch (error) {
    const code = error instanceof ApiError ? error.code : 'network';
    showError({ bad_credentials: 'login.bad', rate_limited: 'login.limited', network: 'api.error.network' }[code] || 'login.failed');
    password.value = '';
    password.focus();
  } finally {
    submit.disabled = false;
  }
});

username.focus();
