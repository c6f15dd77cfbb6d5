// The login page: username and password, then back to the page that sent the person here
// (`login.html?next=/organizer.html`), or to the organizer's page.

import { applyTranslations, installLanguageToggle, installMessageLine } from './i18n.js';
import { ApiError, logIn } from './api.js';

installLanguageToggle(document.getElementById('lang'));
applyTranslations();

const form = document.getElementById('login-form');
const username = document.getElementById('username');
const password = document.getElementById('password');
const submit = document.getElementById('submit');
const showError = installMessageLine(document.getElementById('form-error'));

/** Where to go after the login: a page of this hub only, never another site. */
function nextPage() {
  const next = new URLSearchParams(window.location.search).get('next');
  if (next) {
    try {
      const url = new URL(next, window.location.origin);
      // The whole address, not its path: a path such as `//other.example` would leave the hub.
      if (url.origin === window.location.origin && !url.pathname.endsWith('/login.html')) {
        return url.href;
      }
    } catch {
      // Not an address: the default below.
    }
  }
  return 'organizer.html';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!username.value.trim() || !password.value) {
    showError('login.empty');
    return;
  }
  submit.disabled = true;
  try {
    await logIn(username.value.trim(), password.value);
    window.location.assign(nextPage());
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
