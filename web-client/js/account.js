// Who is logged in, in the header of the organizer's pages, with the logout button.

import { t } from './i18n.js';
import { currentSession, logOut } from './api.js';

/**
 * Shows `username (role)` in `label` and wires `button` to log out and go to the login page.
 * Resolves to the session (`{username, role}`); without one the page goes to the login page.
 */
export async function installAccountBar(label, button) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await logOut();
    } catch (error) {
      console.warn('[diemcau] logout', error);
    }
    window.location.assign('login.html');
  });
  const session = await currentSession();
  const render = () => {
    label.textContent = t('account.who', { username: session.username, role: t(`account.role.${session.role}`) });
  };
  render();
  window.addEventListener('languagechange', render);
  label.hidden = false;
  button.hidden = false;
  return session;
}
