// Client of the hub's HTTP API (docs/api.md): login session, sites directory, meetings,
// attendance reports. Every call carries the session cookie, and every POST the session's CSRF
// token; a call refused for want of a login (401) sends the page to the login page.

import { currentLanguage, hasText, t } from './i18n.js';

/** A request the hub refused, or that did not reach it. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the hub could not be reached
   * @param {string} code the API's error code (`invalid_request`, `conflict`...) or `network`
   * @param {string} message the hub's own explanation (English), may be empty
   * @param {{line: number, message: string}[]} problems every bad line of a refused CSV file
   */
  constructor(status, code, message, problems = []) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.detail = message || '';
    this.problems = problems;
  }
}

/** A person-readable sentence for an `ApiError` (or any error), in the page's language. */
export function describeApiError(error) {
  if (!(error instanceof ApiError)) return t('api.error.unexpected', { message: error.message || String(error) });
  const key = `api.error.${error.code}`;
  const text = hasText(key) ? t(key) : t('api.error.other', { status: error.status, code: error.code });
  // The hub explains in English: added to an English page only, never to a Vietnamese one.
  const english = currentLanguage() === 'en';
  return english && error.detail && error.code !== 'network' ? `${text} (${error.detail})` : text;
}

/** Where the login page is, coming back to the current page after the login. */
export function loginAddress(next = window.location.pathname + window.location.search) {
  return `login.html?next=${encodeURIComponent(next)}`;
}

/** The session's CSRF token, fetched once (`GET /api/session`) and sent with every POST. */
let csrfToken = null;

async function csrfHeader() {
  if (csrfToken === null) await currentSession();
  return csrfToken;
}

/**
 * One API call with the session cookie. Without a session (401) the page goes to the login
 * page, which brings it back here; unless `stayOnPage`, for the login page itself.
 */
async function request(method, path, { json, text, stayOnPage = false, retried = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (text !== undefined) {
    init.headers['Content-Type'] = 'text/csv; charset=utf-8';
    init.body = text;
  }
  if (method !== 'GET' && path !== '/api/login') {
    try {
      init.headers['X-CSRF-Token'] = await csrfHeader();
    } catch (error) {
      // No session: the logout needs none; anything else goes to the login page below.
      if (path !== '/api/logout') throw error;
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, 'network', error.message);
  }
  const body = await response.text();
  let parsed = null;
  if (body) {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const error = parsed && parsed.error ? parsed.error : {};
    const code = error.code || `http_${response.status}`;
    if (response.status === 401 && !stayOnPage) {
      csrfToken = null;
      window.location.assign(loginAddress());
    }
    // Logged in again in another tab meanwhile: the token changed; fetch it and try once more.
    if (code === 'csrf_failed' && !retried) {
      csrfToken = null;
      return request(method, path, { json, text, stayOnPage, retried: true });
    }
    throw new ApiError(
      response.status,
      code,
      error.message || (parsed ? '' : body.slice(0, 200)),
      Array.isArray(error.problems) ? error.problems : [],
    );
  }
  if (body && parsed === null) throw new ApiError(response.status, 'bad_response', body.slice(0, 200));
  return parsed;
}

/** `GET /api/session`: `{username, role, csrf_token}`; goes to the login page without one. */
export async function currentSession() {
  const session = await request('GET', '/api/session');
  csrfToken = session.csrf_token;
  return session;
}

/** `POST /api/login`: `{username, role, csrf_token}`, and the browser keeps the session cookie. */
export async function logIn(username, password) {
  const session = await request('POST', '/api/login', { json: { username, password }, stayOnPage: true });
  csrfToken = session.csrf_token;
  return session;
}

/** `POST /api/logout`: ends the session. */
export async function logOut() {
  await request('POST', '/api/logout', { stayOnPage: true });
  csrfToken = null;
}

const meetingPath = (id) => `/api/meetings/${encodeURIComponent(id)}`;

/** `GET /api/sites`: the directory. */
export const listSites = () => request('GET', '/api/sites');

/** `POST /api/sites/import` with the CSV file's text: `{imported}`. */
export const importSites = (csvText) => request('POST', '/api/sites/import', { text: csvText });

/** `GET /api/meetings`: every meeting, newest first. */
export const listMeetings = () => request('GET', '/api/meetings');

/** `GET /api/meetings/{id}`. */
export const fetchMeeting = (id) => request('GET', meetingPath(id));

/** `POST /api/meetings`: the new meeting. */
export const createMeeting = (plan) => request('POST', '/api/meetings', { json: plan });

/** `POST /api/meetings/{id}/start`. */
export const startMeeting = (id) => request('POST', `${meetingPath(id)}/start`);

/** `POST /api/meetings/{id}/end`. */
export const endMeeting = (id) => request('POST', `${meetingPath(id)}/end`);

/** `POST /api/meetings/{id}/sites/{code}/reissue`: `{code, link}`. */
export const reissueSiteCode = (id, siteCode) =>
  request('POST', `${meetingPath(id)}/sites/${encodeURIComponent(siteCode)}/reissue`);

/** `GET /api/meetings/{id}/encoder`: `{whip, token, publishing}` (organizers). */
export const fetchEncoder = (id) => request('GET', `${meetingPath(id)}/encoder`);

/** `POST /api/meetings/{id}/encoder/token`: a new encoder token, the old one revoked. */
export const issueEncoderToken = (id) => request('POST', `${meetingPath(id)}/encoder/token`);

/** `GET /api/meetings/{id}/watch`: `{whep, token, viewers, limit}` (organizers). */
export const fetchWatch = (id) => request('GET', `${meetingPath(id)}/watch`);

/** `POST /api/meetings/{id}/watch/token`: a new watch token, the old one revoked. */
export const issueWatchToken = (id) => request('POST', `${meetingPath(id)}/watch/token`);

/** `GET /api/meetings/{id}/report`: the attendance report. */
export const fetchReport = (id) => request('GET', `${meetingPath(id)}/report`);

/** Where a report table downloads as CSV; `table` is `sites`, `sessions` or `events`. */
export const reportCsvPath = (id, table) => `${meetingPath(id)}/report.csv?table=${encodeURIComponent(table)}`;

/** Where the whole report of meeting `id` downloads as an Excel workbook. */
export const reportXlsxPath = (id) => `${meetingPath(id)}/report.xlsx`;

/** Where the directory downloads as CSV. */
export const SITES_CSV_PATH = '/api/sites.csv';

/** An absolute address for a link the API gives relative to the hub (`/site.html?...`). */
export function absoluteLink(relative) {
  return new URL(relative, window.location.origin).href;
}
