// End-to-end: what people see on the pages around a meeting, in headless Chromium against a
// running hub.
//
//   node tests/e2e/pages.mjs http://127.0.0.1:PORT
//
// A meeting of eight communes of Tuyên Quang, set up and started through the HTTP API; the
// console (the studio page), one site page joined and one left on its device check. Then:
//
// - layout, at 1366x768 and 1280x720: no element's text overflows its box on the console (every
//   tile filled with the widest figures a `console` message can bring), no placeholder is cut,
//   no badge covers a tile's "waiting for picture"; the joined site's head count form is on
//   screen; the chair's call does not cover the site page's heading; dates on the organizer's
//   page read dd/mm/yyyy HH:mm; "copy the communes' links" copies theirs and not the studio's;
// - the meeting is ended through the API: the console says so with the end time and a link to
//   the report, its tiles show nothing live, and none of its controls is enabled; both site
//   pages say the meeting has ended, their camera and microphone are stopped and said so, no
//   form is left, and they do not try to reconnect; a site link opened after the end shows the
//   same;
// - a staff account logs in on the login page: it lands on the meetings page; the organizer's
//   page shows it no control it may not use, no join link but a plain note, and no request of
//   these pages gets 403; the English page has no Vietnamese text of its own.
//
// Exit code 0 on success; 1 with the reasons on failure; 2 on bad usage or setup.
// Env: E2E_SCREENSHOT_DIR (optional) receives pages-*.png along the way.

import {
  Failure,
  PageWatch,
  gotoPage,
  hubApi,
  joinSitePage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
  screenshot,
  startMeeting,
} from './harness.mjs';

/** Real communes and wards of Tuyên Quang (GSO codes), among them the longest names. */
const SITES = [
  { code: '2524', name: 'Phường Bình Thuận', delegates: 28 },
  { code: '865', name: 'Xã Đường Thượng', delegates: 45 },
  { code: '2212', name: 'Phường Nông Tiến', delegates: 60 },
  { code: '694', name: 'Phường Hà Giang 1', delegates: 120 },
  { code: '2512', name: 'Phường An Tường', delegates: 35 },
  { code: '700', name: 'Xã Ngọc Đường', delegates: 40 },
  { code: '2215', name: 'Phường Minh Xuân', delegates: 75 },
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 50 },
];
const [JOINED, STANDBY] = SITES;
const STUDIO_NAME = 'Điểm cầu UBND tỉnh Tuyên Quang';
const STAFF = { username: 'staff', password: 'staff-password-for-tests' };
const SIZES = [
  { width: 1366, height: 768 },
  { width: 1280, height: 720 },
];
/** Controls that belong to the page, not to the meeting: they stay usable after the end. */
const PAGE_CONTROLS = ['lang', 'logout'];
const STEP_MS = 15_000;
const WATCHDOG_MS = 100_000;
const VIETNAMESE = /[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]/i;

const watches = [];

async function main() {
  const base = parseBaseUrl(process.argv[2], 'pages.mjs');
  const meeting = await startMeeting(base, { title: 'Kiểm thử giao diện', studioName: STUDIO_NAME, sites: SITES });
  log(`hub ${base}, meeting ${meeting.id} with ${SITES.length} sites`);
  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      try {
        await walkThrough(context, base, meeting);
      } catch (error) {
        for (const watch of watches) watch.printRecent(12);
        throw error;
      }
    },
  });
}

async function walkThrough(context, base, meeting) {
  const refused = [];
  context.on('response', (response) => {
    if (response.status() === 403) refused.push(`${response.request().method()} ${response.url()}`);
  });

  // ---- the console and two sites ----
  const chair = await openPage(context, 'console', `${base}${meeting.links.studio}`);
  await waitFor(chair, () => window.diemcau?.state().signaling === 'joined', null, 'the console joins');
  await waitFor(chair, (n) => document.querySelectorAll('#grid .site-tile').length === n, SITES.length, 'a tile per site');
  const site = await openPage(context, JOINED.name, `${base}${meeting.links.sites[JOINED.code]}`);
  await joinSitePage(site, STEP_MS);
  const standby = await openPage(context, STANDBY.name, `${base}${meeting.links.sites[STANDBY.code]}`);
  await waitFor(standby, () => window.diemcau?.state().signaling === 'standby', null, `${STANDBY.name} waits on standby`);
  await waitFor(
    chair,
    ([live, open]) =>
      document.querySelector(`.site-tile[data-site="${live}"]`)?.dataset.state === 'live' &&
      document.querySelector(`.site-tile[data-site="${open}"]`)?.dataset.state === 'page_open',
    [JOINED.code, STANDBY.code],
    'the console shows one site live and one page open',
  );

  // ---- layout at both sizes ----
  for (const size of SIZES) {
    const label = `${size.width}x${size.height}`;
    for (const page of [chair, site, standby]) await page.setViewportSize(size);
    // As the hub shows it now (a page open, a site live), then with the widest figures.
    const problems = await chair.evaluate(consoleLayoutProblems, null);
    await screenshot(chair, `pages-console-${label}.png`);
    problems.push(...(await chair.evaluate(consoleLayoutProblems, busyConsole())));
    await screenshot(chair, `pages-console-busy-${label}.png`);
    if (problems.length > 0) throw new Failure(`the console at ${label}: ${problems.slice(0, 12).join(' | ')}`);
    const form = await site.evaluate(() => {
      const r = document.getElementById('head-count').getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, height: window.innerHeight };
    });
    await screenshot(site, `pages-site-${label}.png`);
    if (form.top < 0 || form.bottom > form.height) {
      throw new Failure(`at ${label} the head count form spans ${form.top}–${form.bottom} px of a ${form.height} px window`);
    }
    log(`${label}: console text fits; the head count form is on screen (${Math.round(form.bottom)} px of ${form.height})`);
  }

  // The chair's call: the prompt must not cover the page's headings.
  await chair.click(`.site-tile[data-site="${STANDBY.code}"] button[data-action="call_site"]`, { timeout: STEP_MS });
  await waitFor(standby, () => !document.getElementById('called').hidden, null, 'the called prompt appears');
  const covered = await standby.evaluate(() => {
    const called = document.getElementById('called').getBoundingClientRect();
    return ['.bar h1', '#check-heading']
      .map((selector) => [selector, document.querySelector(selector).getBoundingClientRect()])
      .filter(([, r]) => r.left < called.right && called.left < r.right && r.top < called.bottom && called.top < r.bottom)
      .map(([selector]) => selector);
  });
  await screenshot(standby, 'pages-called.png');
  if (covered.length > 0) throw new Failure(`the called prompt covers ${covered.join(', ')}`);

  // Dates on the organizer's page, in Vietnamese.
  const organizer = await openPage(context, 'organizer', `${base}/organizer.html#meeting-${meeting.id}`);
  await waitFor(organizer, () => window.diemcauOrganizer?.ready, null, 'the organizer page loads');
  await expectText(organizer, '#m-details', /\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}/, 'the meeting details date the meeting dd/mm/yyyy HH:mm');
  // "Copy the communes' links": the text meant for communes holds theirs, not the studio's.
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await organizer.click('#m-copy-all');
  await waitFor(organizer, () => document.getElementById('m-message').dataset.level === 'good', null, 'the links are copied');
  const copied = await organizer.evaluate(() => navigator.clipboard.readText());
  const missing = SITES.filter((s) => !copied.includes(meeting.links.sites[s.code])).map((s) => s.name);
  if (missing.length > 0 || copied.includes(meeting.links.studio) || copied.includes('studio.html')) {
    throw new Failure(`the copied links should be the ${SITES.length} communes' only: ${JSON.stringify(copied)}`);
  }
  await organizer.goto(`${base}/organizer.html#new`);
  await waitFor(organizer, () => window.diemcauOrganizer?.ready, null, 'the organizer page loads again');
  const startField = await organizer.inputValue('#start');
  if (!/^\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}$/.test(startField)) throw new Failure(`the start field reads "${startField}", not dd/mm/yyyy HH:mm`);
  await organizer.close();

  // ---- the end ----
  const sockets = new Map();
  for (const [label, page] of [
    ['console', chair],
    ['site', site],
    ['standby', standby],
  ]) {
    sockets.set(label, 0);
    page.on('websocket', () => sockets.set(label, sockets.get(label) + 1));
  }
  await hubApi(base, 'POST', `/api/meetings/${meeting.id}/end`);
  log('meeting ended through the API');

  await waitFor(chair, () => window.diemcau.state().ended, null, 'the console learns the end');
  await expectText(chair, '#ended', 'Cuộc họp đã kết thúc', 'the console says the meeting has ended');
  await expectText(chair, '#ended-at', /Kết thúc lúc \d{2}\/\d{2}\/\d{4} \d{2}:\d{2}/, 'the console gives the end time');
  const reportHref = await chair.getAttribute('#ended-report', 'href');
  if (reportHref !== `report.html?meeting=${meeting.id}`) throw new Failure(`the report link is "${reportHref}"`);
  const afterEnd = await chair.evaluate(() => ({
    videos: document.querySelectorAll('#grid video').length,
    figures: [...document.querySelectorAll('.tile-health')].map((n) => n.textContent).filter(Boolean),
    status: document.getElementById('status').textContent,
    summary: document.getElementById('summary').textContent,
    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
  }));
  if (afterEnd.videos > 0 || afterEnd.figures.length > 0) throw new Failure(`tiles still look live: ${JSON.stringify(afterEnd)}`);
  if (/không vào được|Đang họp/.test(`${afterEnd.status} ${afterEnd.summary}`) || afterEnd.error) {
    throw new Failure(`the console still reads as live or failed: ${JSON.stringify(afterEnd)}`);
  }
  await screenshot(chair, 'pages-console-ended.png');

  for (const [label, page] of [
    ['site', site],
    ['standby', standby],
  ]) {
    await waitFor(page, () => window.diemcau.state().ended, null, `the ${label} page learns the end`);
    await expectText(page, '#ended', 'Cuộc họp đã kết thúc', `the ${label} page says the meeting has ended`);
    await expectText(page, '#ended', 'Camera và micro của điểm cầu đã tắt', `the ${label} page says its devices are off`);
    await checkEndedSite(page, label);
    await screenshot(page, `pages-${label}-ended.png`);
  }
  await expectEnabledControls(chair, 'the console');
  await chair.waitForTimeout(3_000);
  for (const [label, count] of sockets) {
    if (count > 0) throw new Failure(`the ${label} page opened ${count} WebSocket(s) after the end`);
  }
  for (const page of [chair, site, standby]) {
    const state = await page.evaluate(() => window.diemcau.state().signaling);
    if (state !== 'refused') throw new Failure(`a page went on to "${state}" after the end`);
  }
  log('console and sites show the end; nothing enabled, nothing reconnects');

  const late = await openPage(context, 'late site', `${base}${meeting.links.sites[SITES[2].code]}`);
  await waitFor(late, () => window.diemcau?.state().ended, null, 'a site opened after the end learns it');
  await checkEndedSite(late, 'late site');
  for (const page of [chair, site, standby, late]) await page.close();

  // ---- staff ----
  refused.length = 0;
  const login = await openPage(context, 'login', `${base}/login.html`);
  await login.fill('#username', STAFF.username);
  await login.fill('#password', STAFF.password);
  await login.click('#submit');
  await login.waitForURL((url) => url.pathname.endsWith('/meetings.html'), { timeout: STEP_MS }).catch(() => {
    throw new Failure(`staff landed on ${login.url()} instead of the meetings page`);
  });
  await waitFor(login, () => window.diemcauMeetings?.ready, null, 'the meetings page loads for staff');
  await waitFor(login, () => document.getElementById('account').textContent.includes('staff'), null, 'the bar names the staff account');
  if (await login.isVisible('#nav-organizer')) throw new Failure('the meetings page offers staff the organizer page');
  await login.close();

  const readOnly = await openPage(context, 'organizer (staff)', `${base}/organizer.html`);
  await waitFor(readOnly, () => window.diemcauOrganizer?.ready, null, 'the organizer page loads for staff');
  await waitFor(readOnly, () => /^#meeting-\d+$/.test(window.location.hash), null, 'staff see the newest meeting');
  await expectText(readOnly, '#m-codes-note', 'chỉ hiện với tài khoản ban tổ chức', 'staff are told codes are for organizers');
  await waitFor(readOnly, (n) => document.querySelectorAll('#m-links tr').length === n, SITES.length, 'staff see the roster');
  const shown = await readOnly.evaluate(() => {
    const visible = (node) => node.getClientRects().length > 0;
    return {
      controls: [...document.querySelectorAll('button, input, select, textarea, a.button')]
        .filter(visible)
        .map((node) => node.id || node.textContent.trim()),
      links: document.querySelectorAll('.link-field').length,
      noLink: document.body.textContent.includes('Mã đã thu hồi'),
    };
  });
  const allowed = new Set(['lang', 'logout', 'refresh', 'show-directory', 'm-report']);
  const extra = shown.controls.filter((id) => !allowed.has(id));
  if (extra.length > 0 || shown.links > 0 || shown.noLink) {
    throw new Failure(`staff see controls or codes they may not use: ${JSON.stringify({ ...shown, extra })}`);
  }
  await screenshot(readOnly, 'pages-staff-organizer.png');
  await readOnly.goto(`${base}/organizer.html#new`);
  await waitFor(readOnly, () => window.diemcauOrganizer?.ready && window.location.hash !== '#new', null, 'the new meeting form is not for staff');
  if (await readOnly.isVisible('#create-form')) throw new Failure('staff see the new meeting form');
  await readOnly.click('#show-directory');
  await waitFor(readOnly, () => !document.getElementById('view-directory').hidden, null, 'staff see the directory');
  if (await readOnly.isVisible('#import-form')) throw new Failure('staff see the directory import');

  // English: the page's own texts have no Vietnamese left.
  await readOnly.click('#lang');
  await readOnly.click(`#meeting-list a[data-meeting="${meeting.id}"]`);
  await waitFor(readOnly, () => !document.getElementById('view-meeting').hidden, null, 'the meeting view in English');
  const leftovers = await readOnly.evaluate((pattern) => {
    const vietnamese = new RegExp(pattern, 'i');
    return [...document.querySelectorAll('[data-i18n]')]
      .filter((node) => node.id !== 'lang' && node.getClientRects().length > 0 && vietnamese.test(node.textContent))
      .map((node) => `${node.dataset.i18n}: ${node.textContent}`);
  }, VIETNAMESE.source);
  await screenshot(readOnly, 'pages-staff-organizer-en.png');
  await readOnly.click('#lang');
  if (leftovers.length > 0) throw new Failure(`Vietnamese left in the English page: ${leftovers.join(' | ')}`);
  if (refused.length > 0) throw new Failure(`requests of the staff's pages answered 403: ${refused.join(', ')}`);
  log('staff: meetings page first, read-only organizer page, no 403');

  for (const watch of watches) {
    if (watch.errors.length > 0) throw new Failure(`${watch.label} had script errors: ${watch.errors.join(' | ')}`);
  }
  log('PASS: layout at 1366x768 and 1280x720, the end on every page, staff see only what they may use');
}

/** A site page after the end: the end screen alone, devices stopped and said so, nothing enabled. */
async function checkEndedSite(page, label) {
  const seen = await page.evaluate(() => {
    const visible = (node) => node && node.getClientRects().length > 0;
    const stream = window.diemcau.session.localStream;
    return {
      live: stream.getTracks().filter((track) => track.readyState === 'live').map((track) => track.kind),
      form: visible(document.getElementById('head-count')) || visible(document.getElementById('roll-call-form')),
      micOn: [...document.querySelectorAll('body *')].some((node) => visible(node) && node.textContent.trim() === 'Micro: đang bật'),
      error: visible(document.getElementById('error')) ? document.getElementById('error').textContent : '',
      refusedText: document.body.innerText.includes('không vào được'),
    };
  });
  if (seen.live.length > 0) throw new Failure(`${label}: tracks still live after the end: ${seen.live.join(', ')}`);
  if (seen.form || seen.micOn || seen.error || seen.refusedText) {
    throw new Failure(`${label}: after the end the page shows ${JSON.stringify(seen)}`);
  }
  await expectEnabledControls(page, label);
}

/** Fails when any button, input or select other than the page's own is shown and enabled. */
async function expectEnabledControls(page, label) {
  const enabled = await page.evaluate((pageControls) => {
    return [...document.querySelectorAll('button, input, select, textarea')]
      .filter((node) => !pageControls.includes(node.id) && node.getClientRects().length > 0 && !node.disabled)
      .map((node) => `${node.tagName.toLowerCase()}#${node.id || ''} "${(node.textContent || node.placeholder || '').trim()}"`);
  }, PAGE_CONTROLS);
  if (enabled.length > 0) throw new Failure(`${label}: controls still enabled after the end: ${enabled.join(', ')}`);
}

/**
 * A `console` message with the widest figures a tile shows: every site joined with high
 * rates, loss and delay, head counts declared, badges of every kind, one leaked code.
 */
function busyConsole() {
  return {
    sites: SITES.map((site, index) => ({
      site: site.code,
      name: site.name,
      state: index % 4 === 3 ? 'reconnecting' : 'live',
      participant: null,
      muted: index % 2 === 1,
      floor: index === 0 ? 'holder' : index % 3 === 1 ? 'requested' : 'none',
      bitrate_in_kbps: 2480,
      bitrate_out_kbps: 12480,
      loss_permille: 125,
      rtt_ms: 1180,
      expected_delegates: site.delegates,
      head_count: site.delegates - 1,
      answered_roll_call: true,
      code_leak_suspected: index === 2,
    })),
  };
}

/**
 * Runs in the console page: applies `message` (when given) as the hub's `console` would, then lists every
 * element whose content overflows its box, every cut placeholder or menu, and every badge over
 * a tile's placeholder.
 */
function consoleLayoutProblems(message) {
  if (message) window.diemcau.applyConsole(message);
  const problems = [];
  const visible = (node) => node.getClientRects().length > 0 && getComputedStyle(node).visibility !== 'hidden';
  const describe = (node) => `${node.tagName.toLowerCase()}${node.id ? `#${node.id}` : ''}.${node.className} "${node.textContent.trim().slice(0, 40)}"`;
  for (const node of document.querySelectorAll('body *')) {
    if (!visible(node) || ['VIDEO', 'AUDIO', 'OPTION', 'SELECT', 'INPUT'].includes(node.tagName)) continue;
    if (node.closest('.visually-hidden') || !node.textContent.trim()) continue;
    const style = getComputedStyle(node);
    if (style.display === 'inline' || ['auto', 'scroll'].includes(style.overflowX) || ['auto', 'scroll'].includes(style.overflowY)) continue;
    if (node.scrollWidth > node.clientWidth + 1) problems.push(`${describe(node)} is ${node.scrollWidth} px wide in ${node.clientWidth}`);
    if (style.overflowY !== 'visible' && node.scrollHeight > node.clientHeight + 1) {
      problems.push(`${describe(node)} is ${node.scrollHeight} px high in ${node.clientHeight}`);
    }
  }
  const canvas = document.createElement('canvas').getContext('2d');
  const textWidth = (text, node) => {
    const style = getComputedStyle(node);
    canvas.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    return canvas.measureText(text).width;
  };
  const room = (node, reserved) => {
    const style = getComputedStyle(node);
    return node.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - reserved;
  };
  for (const input of document.querySelectorAll('input[placeholder]')) {
    if (visible(input) && !input.value && textWidth(input.placeholder, input) > room(input, 0)) {
      problems.push(`the placeholder "${input.placeholder}" of #${input.id} is cut`);
    }
  }
  for (const select of document.querySelectorAll('select')) {
    const option = select.selectedOptions[0];
    // The menu's arrow takes about 20 px.
    if (visible(select) && option && textWidth(option.textContent, select) > room(select, 20)) {
      problems.push(`the menu #${select.id} cuts "${option.textContent}"`);
    }
  }
  for (const tile of document.querySelectorAll('.site-tile')) {
    const placeholder = tile.querySelector('.tile-placeholder');
    if (!visible(tile) || !visible(placeholder) || !placeholder.firstChild) continue;
    const range = document.createRange();
    range.selectNodeContents(placeholder);
    const text = range.getBoundingClientRect();
    for (const badge of tile.querySelectorAll('.tile-badge, .tile-state')) {
      if (!visible(badge)) continue;
      const r = badge.getBoundingClientRect();
      if (r.left < text.right && text.left < r.right && r.top < text.bottom && text.top < r.bottom) {
        problems.push(`in ${tile.dataset.site} the badge "${badge.textContent}" covers "${placeholder.textContent}"`);
      }
    }
  }
  return problems;
}

async function openPage(context, label, url) {
  const page = await context.newPage();
  watches.push(new PageWatch(label, page));
  await gotoPage(page, label, url, STEP_MS);
  return page;
}

async function waitFor(page, predicate, argument, what, timeout = STEP_MS) {
  try {
    await page.waitForFunction(predicate, argument, { timeout, polling: 100 });
  } catch (error) {
    throw new Failure(`${what}: not within ${timeout / 1000} s (${error.message.split('\n')[0]})`);
  }
}

/** Waits until `selector`'s text contains `text` (a string or a regular expression). */
async function expectText(page, selector, text, what) {
  const pattern = text instanceof RegExp ? { source: text.source, flags: text.flags } : { source: null, plain: text };
  await waitFor(
    page,
    ([s, p]) => {
      const node = document.querySelector(s);
      if (!node) return false;
      return p.source === null ? node.textContent.includes(p.plain) : new RegExp(p.source, p.flags).test(node.textContent);
    },
    [selector, pattern],
    `${what} (${selector} should contain ${text})`,
  ).catch(async (error) => {
    const shown = await page.evaluate((s) => document.querySelector(s)?.textContent ?? '(no such element)', selector);
    throw new Failure(`${error.message}; it shows "${shown.trim().slice(0, 200)}"`);
  });
}

runScript(main);
