// What the end-to-end scripts share: launching Debian's Chromium with the flags that work on
// these machines, logged in as an organizer through the login page, logging with elapsed
// time, the hub's HTTP API from Node (logged in too), and how a script ends (exit 0 pass,
// 1 failure, 2 setup problem).
//
// The account is the test organizer of `Config::for_tests`, or E2E_USERNAME and E2E_PASSWORD
// for a hub with other accounts.

import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** The flags of every test browser (a script launching a second, differently networked one adds to them). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

const started = Date.now();

/** The organizer account the scripts log in with. */
export const ORGANIZER = {
  username: process.env.E2E_USERNAME || 'organizer',
  password: process.env.E2E_PASSWORD || 'organizer-password-for-tests',
};

export function log(message) {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[e2e ${seconds}s] ${message}`);
}

/** The environment is wrong (usage, no browser): exit code 2. */
export class SetupError extends Error {}

/** The hub or the pages did not do what the test asserts: exit code 1, no stack trace. */
export class Failure extends Error {}

/** Runs a script's `main`, ending it as the harness says: exit 0 pass, 1 failure, 2 setup. */
export function runScript(main) {
  main().catch(reportError);
}

/** Logs why the script failed (a stack only for what is neither) and sets the exit code. */
function reportError(error) {
  log(`FAIL: ${error instanceof SetupError ? 'setup: ' : ''}${error.message}`);
  if (!(error instanceof SetupError || error instanceof Failure) && error.stack) console.log(error.stack);
  process.exitCode = error instanceof SetupError ? 2 : 1;
}

/** The hub's base URL from the command line, without a trailing slash. */
export function parseBaseUrl(argument, script) {
  if (!argument) throw new SetupError(`usage: node ${script} http://HOST:PORT`);
  let url;
  try {
    url = new URL(argument);
  } catch {
    throw new SetupError(`not a URL: ${argument}`);
  }
  return url.href.replace(/\/+$/, '');
}

/**
 * Runs `body(context)` in a fresh headless Chromium (own profile, 1366x768, fake camera and
 * microphone, or none with `fakeMedia: false`) under a watchdog, then closes everything and
 * sets the exit code. With `logInTo` (a hub's base URL) the browser is first logged in there
 * as the organizer, through the login page.
 */
export async function runInChromium({ watchdogMs, body, fakeMedia = true, logInTo = null }) {
  const userDataDir = await mkdtemp(join(tmpdir(), 'diemcau-e2e-'));
  let context = null;
  const watchdog = setTimeout(() => {
    log(`FAIL: watchdog: the test ran over ${watchdogMs / 1000} s`);
    process.exit(1);
  }, watchdogMs);
  watchdog.unref();
  try {
    await access(CHROMIUM, constants.X_OK).catch(() => {
      throw new SetupError(`${CHROMIUM} is not there or not executable (Debian package \`chromium\`)`);
    });
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: chromiumArgs(fakeMedia),
      permissions: ['camera', 'microphone'],
      viewport: { width: 1366, height: 768 },
      acceptDownloads: true,
      // A hub on HTTPS with its self-signed certificate (tests/browser_https.rs).
      ignoreHTTPSErrors: process.env.E2E_IGNORE_HTTPS_ERRORS === '1',
    });
    log(`chromium ${context.browser()?.version() ?? ''} started`);
    for (const page of context.pages()) await page.close();
    if (logInTo) await logInInBrowser(context, logInTo);
    await body(context);
  } catch (error) {
    reportError(error);
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * The browser's flags: without the fake camera for `fakeMedia: false`; with host names mapped
 * to addresses when E2E_HOST_RESOLVER_RULES gives them (`MAP *.tinh.test 127.0.0.1`: hubs
 * reached under names of one domain), E2E_SECURE_ORIGINS naming their origins (comma-separated).
 */
function chromiumArgs(fakeMedia) {
  const args = fakeMedia ? [...CHROMIUM_ARGS] : CHROMIUM_ARGS.filter((arg) => arg !== '--use-fake-device-for-media-stream');
  if (process.env.E2E_HOST_RESOLVER_RULES) {
    // Names standing for loopback over plain HTTP: the browser must treat their pages as the
    // secure contexts an HTTPS hub's are (camera, microphone), and show them its addresses
    // rather than mDNS names the hub on loopback cannot resolve.
    args.push(
      `--host-resolver-rules=${process.env.E2E_HOST_RESOLVER_RULES}`,
      `--unsafely-treat-insecure-origin-as-secure=${process.env.E2E_SECURE_ORIGINS ?? ''}`,
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    );
  }
  return args;
}

/**
 * Logs the browser in on the hub's login page, as a person would: the session cookie is then
 * the context's, for every page the script opens.
 */
export async function logInInBrowser(context, base, account = ORGANIZER) {
  const page = await context.newPage();
  try {
    await page.goto(`${base}/login.html?next=${encodeURIComponent('/meetings.html')}`, { waitUntil: 'load' });
    await page.fill('#username', account.username);
    await page.fill('#password', account.password);
    await page.click('#submit');
    await page.waitForURL((url) => url.pathname.endsWith('/meetings.html'), { timeout: 15_000 });
    log(`browser logged in as ${account.username}`);
  } catch (error) {
    const shown = await page.textContent('#form-error').catch(() => '');
    throw new Failure(`logging in as ${account.username} on ${base}/login.html failed: ${shown || error.message.split('\n')[0]}`);
  } finally {
    await page.close();
  }
}

/** Node's own logins, by hub: `{cookie, csrf}`. */
const apiLogins = new Map();

async function apiLogin(base) {
  if (apiLogins.has(base)) return apiLogins.get(base);
  let response;
  try {
    response = await fetch(`${base}/api/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(ORGANIZER),
    });
  } catch (error) {
    throw new Failure(`POST /api/login: ${error.message}`);
  }
  const text = await response.text();
  if (!response.ok) throw new Failure(`POST /api/login as ${ORGANIZER.username} answered ${response.status}: ${text.slice(0, 300)}`);
  const cookie = response.headers
    .getSetCookie()
    .map((header) => header.split(';')[0])
    .find((pair) => /^(__Host-)?diemcau_session=/.test(pair));
  if (!cookie) throw new Failure('POST /api/login set no session cookie');
  const login = { cookie, csrf: JSON.parse(text).csrf_token };
  apiLogins.set(base, login);
  return login;
}

/**
 * Calls the hub's HTTP API (docs/api.md) from Node, logged in as the organizer: JSON in and
 * out, or CSV text in when `csv` is given. A refusal fails the test with the hub's answer.
 */
export async function hubApi(base, method, path, { json, csv } = {}) {
  const login = await apiLogin(base);
  const init = { method, headers: { Cookie: login.cookie } };
  if (method !== 'GET') init.headers['X-CSRF-Token'] = login.csrf;
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (csv !== undefined) {
    init.headers['Content-Type'] = 'text/csv; charset=utf-8';
    init.body = csv;
  }
  let response;
  try {
    response = await fetch(`${base}${path}`, init);
  } catch (error) {
    throw new Failure(`${method} ${path}: ${error.message}`);
  }
  const text = await response.text();
  if (!response.ok) throw new Failure(`${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`);
  return text ? JSON.parse(text) : null;
}

/** `rows` (arrays of cells) as CSV text with the directory's header (docs/api.md). */
export function directoryCsv(rows) {
  const quote = (value) => (/[",\n]/.test(String(value)) ? `"${String(value).replace(/"/g, '""')}"` : String(value));
  const lines = ['admin_code,name,level,parent_code,parent_name,delegates', ...rows.map((row) => row.map(quote).join(','))];
  return `${lines.join('\n')}\n`;
}

/**
 * What an organizer does before a meeting: `sites` (`{code, name, delegates}`, communes of
 * Tuyên Quang) in the directory, imported when the hub does not know them, then a meeting with
 * them on its roster, started. Returns the meeting as the API gives it.
 */
export async function startMeeting(base, { title, studioName, sites }) {
  const directory = await hubApi(base, 'GET', '/api/sites');
  const known = new Set(directory.map((site) => site.code));
  const missing = sites.filter((site) => !known.has(site.code));
  if (missing.length > 0) {
    const csv = directoryCsv(missing.map((site) => [site.code, site.name, 'xã', '8', 'Tuyên Quang', site.delegates]));
    const { imported } = await hubApi(base, 'POST', '/api/sites/import', { csv });
    log(`imported ${imported} sites into the directory`);
  }
  const now = Date.now();
  const meeting = await hubApi(base, 'POST', '/api/meetings', {
    json: {
      title,
      studio_name: studioName,
      scheduled_start: now,
      scheduled_end: now + 2 * 3_600_000,
      sites: sites.map((site) => ({ code: site.code, expected_delegates: site.delegates })),
    },
  });
  await hubApi(base, 'POST', `/api/meetings/${meeting.id}/start`);
  return meeting;
}

/** Saves a screenshot of `page` as `file` in E2E_SCREENSHOT_DIR, when that is set. */
export async function screenshot(page, file, options = {}) {
  const directory = process.env.E2E_SCREENSHOT_DIR;
  if (!directory) return;
  await mkdir(directory, { recursive: true });
  const path = join(directory, file);
  await page
    .screenshot({ path, ...options })
    .then(() => log(`screenshot ${path}`))
    .catch((error) => log(`screenshot ${path} failed: ${error.message}`));
}

/** Remembers what a page printed and its script errors, for the failure report. */
export class PageWatch {
  constructor(label, page) {
    this.label = label;
    this.page = page;
    this.console = [];
    this.errors = [];
    page.on('console', (message) => this.remember(`console.${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => {
      this.errors.push(error.message);
      this.remember(`pageerror: ${error.message}`);
      log(`${this.label}: page error: ${error.message}`);
    });
    page.on('crash', () => log(`${this.label}: page crashed`));
  }

  remember(line) {
    this.console.push(line);
    if (this.console.length > 60) this.console.shift();
  }

  printRecent(count = 20) {
    for (const line of this.console.slice(-count)) log(`  ${this.label} | ${line}`);
  }
}

/** Loads `url` in `page`; an answer other than 2xx, or none, fails the test. */
export async function gotoPage(page, label, url, timeout) {
  const response = await page.goto(url, { waitUntil: 'load', timeout });
  if (!response || !response.ok()) throw new Failure(`${label}: GET ${url} answered ${response ? response.status() : 'nothing'}`);
  return response;
}

/**
 * Waits until the page at `label` has joined its meeting: a site page through its device check
 * (`joinSitePage`), the studio's page straight in.
 */
export async function joinPage(page, label, { site, timeout }) {
  if (site) return joinSitePage(page, timeout);
  try {
    await page.waitForFunction(() => window.diemcau && window.diemcau.state().signaling === 'joined', null, {
      timeout,
      polling: 200,
    });
  } catch {
    const state = await page.evaluate(() => (window.diemcau ? window.diemcau.state() : null)).catch(() => null);
    throw new Failure(`${label} did not join within ${timeout / 1000} s; state: ${JSON.stringify(state)}`);
  }
}

/**
 * Opens `url` in a new page of `context` and joins its meeting (`joinPage`); returns
 * `{ page, watch, label, id }`, `id` being the participant it joined as. The page's recent
 * console lines are printed if it does not join.
 */
export async function openJoined(context, label, url, { site, timeout }) {
  const page = await context.newPage();
  const watch = new PageWatch(label, page);
  await gotoPage(page, label, url, timeout);
  try {
    await joinPage(page, label, { site, timeout });
  } catch (error) {
    watch.printRecent(15);
    throw error;
  }
  const state = await page.evaluate(() => window.diemcau.state());
  log(`${label} joined as ${state.participant}`);
  return { page, watch, label, id: state.participant };
}

/**
 * Joins from a site page's device check (the "join" button), then waits until the page has
 * joined the meeting. A page that went straight in (a reload after joining) is left as it is.
 */
export async function joinSitePage(page, timeout = 15_000) {
  try {
    await page.waitForFunction(
      () => window.diemcau && (window.diemcau.state().signaling === 'joined' || !document.getElementById('check').hidden),
      null,
      { timeout, polling: 100 },
    );
    if (await page.evaluate(() => !document.getElementById('check').hidden)) await page.click('#join');
    await page.waitForFunction(() => window.diemcau.state().signaling === 'joined', null, { timeout, polling: 100 });
  } catch (error) {
    const state = await page.evaluate(() => (window.diemcau ? window.diemcau.state() : null)).catch(() => null);
    throw new Failure(`the site page did not join within ${timeout / 1000} s (${error.message.split('\n')[0]}); state: ${JSON.stringify(state)}`);
  }
}

/** Waits until `check` holds, trying every 250 ms; fails after `timeoutMs`. */
export async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Failure(`timed out waiting for ${what}`);
}

/** Waits until every page decodes rising remote video frames. */
export async function untilDecoding(pages, timeoutMs, how) {
  const previous = new Map();
  await until(`every page to decode video ${how}`, timeoutMs, async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    let all = true;
    for (const p of pages) {
      const now = await decoded(p.page);
      if (!(now > (previous.get(p.label) ?? 0) && previous.has(p.label))) all = false;
      previous.set(p.label, now);
    }
    return all;
  });
  log(`every page decodes video ${how}`);
}

/** Video frames the page's peer connection has decoded, in all. */
export function decoded(page) {
  return page
    .evaluate(async () => {
      const pc = window.diemcau?.pc;
      if (!pc) return 0;
      let frames = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
      });
      return frames;
    })
    .catch(() => 0);
}
