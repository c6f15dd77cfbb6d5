// End-to-end: the organizer's and staff's pages in headless Chromium against a running hub
// whose directory is empty.
//
//   node tests/e2e/attendance.mjs http://127.0.0.1:PORT
//
// Walks through a meeting as its organizer would, only through the pages: imports a sites
// directory from a CSV file (a bad file first: every bad line must be shown), creates a
// meeting in the form (filter, select, edit expected delegates), starts it, opens a site from
// its join link and declares the hall's head count there, opens a revoked link (refused, no
// retry), ends the meeting (the studio page, open meanwhile, is told so and does not rejoin),
// then reads the printable report: the site that came is present
// (or partial: it stayed only part of a short meeting) with its head count and who confirmed
// it, the one that did not is absent, and every CSV download starts with the UTF-8 BOM and
// keeps the Vietnamese names intact. Exit code 0 on success; 1 with the reasons on failure;
// 2 on bad usage or setup. Env: E2E_SCREENSHOT_DIR (optional) receives organizer.png,
// site.png, report.png, report-print.png, report-en.png and meetings.png.

import {
  Failure,
  PageWatch,
  gotoPage,
  directoryCsv,
  joinSitePage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
  screenshot,
} from './harness.mjs';

const WATCHDOG_MS = 120_000;
const STEP_TIMEOUT_MS = 15_000;
const HOUR_MS = 3_600_000;

/** Real communes of Tuyên Quang (GSO codes); names with the letters Excel loses without a BOM. */
const SITES = [
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 60 },
  { code: '2266', name: 'Xã Lâm Bình', delegates: 45 },
  { code: '2302', name: 'Xã Minh Quang', delegates: 50 },
];
const PRESENT = SITES[0];
const ABSENT = SITES[1];
/** What the organizer types over the directory's number for the present site. */
const PRESENT_EXPECTED = 55;
const HEAD_COUNT = { count: 48, confirmedBy: 'Nguyễn Văn An', position: 'Chủ tịch UBND xã' };
const TITLE = 'Hội nghị trực tuyến triển khai nhiệm vụ tháng 12';
const STUDIO_NAME = 'Điểm cầu UBND tỉnh Tuyên Quang';

/** A file with two bad rows (lines 3 and 4) among good ones: nothing of it may be imported. */
const BAD_CSV = directoryCsv([
  ['2269', 'Xã Thượng Lâm', 'xã', '8', 'Tuyên Quang', 60],
  ['22a9', 'Xã Sai Mã', 'xã', '8', 'Tuyên Quang', 10],
  ['2266', 'Xã Lâm Bình', 'không rõ', '8', 'Tuyên Quang', 45],
]);
const GOOD_CSV = directoryCsv(SITES.map((s) => [s.code, s.name, 'xã', '8', 'Tuyên Quang', s.delegates]));

const watches = [];

async function main() {
  const base = parseBaseUrl(process.argv[2], 'attendance.mjs');
  log(`hub ${base}`);
  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      try {
        await walkThrough(context, base);
      } catch (error) {
        for (const watch of watches) watch.printRecent();
        throw error;
      }
    },
  });
}

async function walkThrough(context, base) {
  const organizer = await openPage(context, 'organizer', `${base}/organizer.html`);
  // Ending a meeting and reissuing a code ask for confirmation.
  organizer.on('dialog', (dialog) => dialog.accept());
  await organizer.waitForFunction(() => window.diemcauOrganizer?.ready, null, { timeout: STEP_TIMEOUT_MS });
  await expectVisible(organizer, '#directory-empty', 'an empty directory is pointed out on the new meeting form');
  await expectVisible(organizer, '#logout', 'the logged-in organizer has a logout button');

  // ---- the directory, from CSV files ----
  await organizer.click('#show-directory');
  await organizer.setInputFiles('#import-file', csvFile('danh-ba-loi.csv', BAD_CSV));
  await organizer.click('#import-submit');
  await organizer.waitForSelector('#import-problems li', { timeout: STEP_TIMEOUT_MS });
  const problems = await organizer.$$eval('#import-problems li', (items) => items.map((li) => li.textContent));
  log(`bad file refused, problems shown: ${JSON.stringify(problems)}`);
  for (const line of [3, 4]) {
    if (!problems.some((text) => text.startsWith(`Dòng ${line}:`))) {
      throw new Failure(`the refused import does not show a problem on line ${line}: ${JSON.stringify(problems)}`);
    }
  }
  if (!(await organizer.textContent('#d-summary')).includes('chưa có')) {
    throw new Failure('a refused file changed the directory');
  }

  await organizer.setInputFiles('#import-file', csvFile('danh-ba.csv', GOOD_CSV));
  await organizer.click('#import-submit');
  await organizer.waitForSelector('#import-result[data-level="good"]', { timeout: STEP_TIMEOUT_MS });
  log(`import: ${await organizer.textContent('#import-result')}`);
  await expectText(organizer, '#d-summary', `${SITES.length} điểm cầu`, 'the directory summary counts the imported sites');
  const exportHref = await organizer.getAttribute('#export-link', 'href');
  await expectCsv(organizer, exportHref, SITES.map((s) => s.name), 'directory export');

  // ---- a new meeting, through the form ----
  await organizer.click('#new-meeting');
  await organizer.fill('#title', TITLE);
  await organizer.fill('#studio-name', STUDIO_NAME);
  // Started a minute ago (Vietnam time), so that the report's window opens with the meeting.
  const start = Date.now() - 60_000;
  await organizer.fill('#start', vietnamInput(start));
  await organizer.fill('#end', vietnamInput(start + 2 * HOUR_MS));
  // Filter without diacritics, then select everything the filter shows; twice.
  for (const [filter, code] of [
    ['thuong lam', PRESENT.code],
    ['Lâm Bình', ABSENT.code],
  ]) {
    await organizer.fill('#site-filter', filter);
    await waitForShownSites(organizer, [code], `filter "${filter}"`);
    await organizer.check('#select-filtered');
  }
  await organizer.fill('#site-filter', '');
  await waitForShownSites(organizer, SITES.map((s) => s.code), 'an empty filter');
  await organizer.fill(`#site-rows tr[data-site="${PRESENT.code}"] .delegates-input`, String(PRESENT_EXPECTED));
  await expectText(organizer, '#selection-summary', `2/${SITES.length}`, 'two sites selected');
  await expectText(organizer, '#selection-summary', `${PRESENT_EXPECTED + ABSENT.delegates} đại biểu`, 'expected delegates add up');
  await organizer.click('#create-submit');
  await organizer.waitForFunction(() => /^#meeting-\d+$/.test(window.location.hash), null, { timeout: STEP_TIMEOUT_MS });
  const meetingId = Number((await organizer.evaluate(() => window.location.hash)).replace('#meeting-', ''));
  await organizer.waitForSelector(`#m-links tr[data-site="${ABSENT.code}"] .link-field`, { timeout: STEP_TIMEOUT_MS });
  const links = await organizer.$$eval('#m-links tr', (rows) =>
    rows.map((row) => ({
      kind: row.dataset.kind,
      site: row.dataset.site || null,
      link: row.querySelector('.link-field')?.textContent || null,
    })),
  );
  log(`meeting ${meetingId} created; links: ${links.map((l) => `${l.site || l.kind} ${l.link}`).join(' | ')}`);
  if (links.length !== 3) throw new Failure(`expected 3 join links (studio + 2 sites), saw ${links.length}`);
  for (const entry of links) {
    const page = entry.kind === 'studio' ? 'studio' : 'site';
    if (!entry.link || !entry.link.startsWith(`${base}/${page}.html?meeting=${meetingId}&code=`)) {
      throw new Failure(`join link of ${entry.site || entry.kind} is not an absolute ${page} link: ${entry.link}`);
    }
  }
  await expectText(organizer, '#m-state', 'Chưa bắt đầu', 'a new meeting is not started');
  await organizer.click('#m-start');
  await organizer.waitForSelector('#m-state[data-state="in_progress"]', { timeout: STEP_TIMEOUT_MS });
  await expectText(organizer, '#m-state', 'Đang diễn ra', 'the meeting shows as started');
  await screenshot(organizer, 'organizer.png');

  // The studio, opened from the organizer's button, stays until the meeting ends.
  const [studio] = await Promise.all([context.waitForEvent('page'), organizer.click('#m-studio')]);
  watches.push(new PageWatch('studio', studio));
  await studio.waitForFunction(() => window.diemcau?.state().signaling === 'joined', null, { timeout: STEP_TIMEOUT_MS });
  await expectText(studio, '#meeting-label', STUDIO_NAME, 'the studio page shows the studio name of the meeting');

  // ---- a site joins from its link and declares its head count ----
  const presentLink = links.find((l) => l.site === PRESENT.code).link;
  const site = await openPage(context, 'site', presentLink);
  await joinSitePage(site, STEP_TIMEOUT_MS);
  await expectText(site, '#meeting-label', PRESENT.name, 'the site page shows the name the hub gave its code');
  await expectText(site, '#meeting-label', TITLE, 'the site page shows the meeting title');
  await site.fill('#hc-count', String(HEAD_COUNT.count));
  await site.click('#hc-submit');
  await site.waitForSelector('#hc-result[data-level="bad"]', { timeout: STEP_TIMEOUT_MS });
  await expectText(site, '#hc-result', 'họ và tên', 'a head count without a name is stopped in the page');
  await site.fill('#hc-name', HEAD_COUNT.confirmedBy);
  await site.fill('#hc-position', HEAD_COUNT.position);
  await site.click('#hc-submit');
  await site.waitForSelector('#hc-result[data-level="good"]', { timeout: STEP_TIMEOUT_MS });
  await expectText(site, '#hc-result', `${HEAD_COUNT.count} đại biểu`, 'the hub confirms the head count');
  log(`head count: ${await site.textContent('#hc-result')}`);
  await screenshot(site, 'site.png');
  // Stay connected a moment so the report has some minutes to show.
  await site.waitForTimeout(3_000);
  await site.close();

  // ---- a revoked link is refused for good ----
  const absentLink = links.find((l) => l.site === ABSENT.code).link;
  await organizer.click(`#m-links tr[data-site="${ABSENT.code}"] button.reissue`);
  await organizer.waitForFunction(
    ([code, old]) => {
      const field = document.querySelector(`#m-links tr[data-site="${code}"] .link-field`);
      return field && field.textContent !== old;
    },
    [ABSENT.code, absentLink],
    { timeout: STEP_TIMEOUT_MS },
  );
  const revoked = await openPage(context, 'revoked site', absentLink);
  await revoked.waitForFunction(() => window.diemcau?.state().signaling === 'refused', null, { timeout: STEP_TIMEOUT_MS });
  await expectText(revoked, '#error', 'đã bị thu hồi', 'a revoked code is explained');
  await revoked.waitForTimeout(2_500);
  const after = await revoked.evaluate(() => window.diemcau.state().signaling);
  if (after !== 'refused') throw new Failure(`after code_revoked the page went on to "${after}" instead of staying refused`);
  await revoked.close();

  // ---- end, then the report ----
  await organizer.click('#m-end');
  await organizer.waitForSelector('#m-state[data-state="ended"]', { timeout: STEP_TIMEOUT_MS });
  await studio.waitForFunction(() => window.diemcau?.state().signaling === 'refused', null, { timeout: STEP_TIMEOUT_MS });
  await expectText(studio, '#ended', 'Cuộc họp đã kết thúc', 'the studio is told the meeting ended');
  await studio.waitForTimeout(2_500);
  const studioAfter = await studio.evaluate(() => window.diemcau.state().signaling);
  if (studioAfter !== 'refused') throw new Failure(`after meeting_ended the studio went on to "${studioAfter}"`);
  const [report] = await Promise.all([context.waitForEvent('page'), organizer.click('#m-report')]);
  watches.push(new PageWatch('report', report));
  await report.waitForFunction(() => window.diemcauReport?.ready, null, { timeout: STEP_TIMEOUT_MS });
  await checkReport(report);
  await screenshot(report, 'report.png', { fullPage: true });
  // The printable area of A4 landscape with the page's 10 mm margins, at 96 px per inch.
  await report.setViewportSize({ width: 1047, height: 730 });
  await report.emulateMedia({ media: 'print' });
  await screenshot(report, 'report-print.png', { fullPage: true });
  await report.emulateMedia({ media: 'screen' });
  await report.setViewportSize({ width: 1366, height: 768 });

  for (const table of ['sites', 'sessions', 'events']) {
    const href = await report.getAttribute(`#csv-${table}`, 'href');
    const names = table === 'sessions' ? [PRESENT.name] : table === 'sites' ? [PRESENT.name, ABSENT.name] : [];
    await expectCsv(report, href, names, `report CSV (${table})`);
  }

  await expectText(report, '#xlsx', 'Tải về Excel (.xlsx)', 'the Excel button is worded in Vietnamese');
  await expectXlsx(report, await report.getAttribute('#xlsx', 'href'), TITLE);

  await report.click('#lang');
  await expectText(report, '#xlsx', 'Download Excel (.xlsx)', 'the Excel button is worded in English');
  const english = await siteRow(report, PRESENT.code);
  if (!['Present', 'Partial'].includes(english.status)) {
    throw new Failure(`in English the present site's status reads "${english.status}"`);
  }
  if ((await siteRow(report, ABSENT.code)).status !== 'Absent') throw new Failure('in English the absent site is not "Absent"');
  await screenshot(report, 'report-en.png', { fullPage: true });
  await report.click('#lang');

  // ---- the staff's list of meetings ----
  const meetings = await openPage(context, 'meetings', `${base}/meetings.html`);
  await meetings.waitForFunction(() => window.diemcauMeetings?.ready, null, { timeout: STEP_TIMEOUT_MS });
  const row = `#meeting-rows tr[data-meeting="${meetingId}"]`;
  await expectText(meetings, row, TITLE, 'the meeting is listed');
  await expectText(meetings, row, 'Đã kết thúc', 'the list shows the meeting ended');
  await expectText(meetings, `${row} td:nth-child(4)`, '1/2', 'the list shows 1 of 2 sites joined');
  await expectText(meetings, `${row} td:nth-child(5)`, `${HEAD_COUNT.count}/${PRESENT_EXPECTED + ABSENT.delegates}`, 'the list shows declared delegates');
  const csvHref = await meetings.getAttribute(`${row} a[data-table="sites"]`, 'href');
  await expectCsv(meetings, csvHref, [PRESENT.name, ABSENT.name], 'report CSV from the meetings list');
  await screenshot(meetings, 'meetings.png');

  const errors = watches.flatMap((watch) => watch.errors.map((error) => `${watch.label}: ${error}`));
  if (errors.length > 0) throw new Failure(`script errors in the pages:\n  ${errors.join('\n  ')}`);
  log('PASS: directory import, meeting form, join link, head count, revoked link, end, report and CSV all as expected');
}

async function checkReport(report) {
  const present = await siteRow(report, PRESENT.code);
  const absent = await siteRow(report, ABSENT.code);
  log(`report rows: ${JSON.stringify(present)} | ${JSON.stringify(absent)}`);
  if (!['present', 'partial'].includes(present.key) || !['Có mặt', 'Tham dự một phần'].includes(present.status)) {
    throw new Failure(`${PRESENT.name} should be present or partial, the report says ${present.key} "${present.status}"`);
  }
  if (present.headCount !== `${HEAD_COUNT.count} / ${PRESENT_EXPECTED}`) {
    throw new Failure(`${PRESENT.name}: head count cell "${present.headCount}", expected "${HEAD_COUNT.count} / ${PRESENT_EXPECTED}"`);
  }
  if (!present.confirmer.includes(HEAD_COUNT.confirmedBy) || !present.confirmer.includes(HEAD_COUNT.position)) {
    throw new Failure(`${PRESENT.name}: confirmer cell "${present.confirmer}" lacks ${HEAD_COUNT.confirmedBy} / ${HEAD_COUNT.position}`);
  }
  if (absent.key !== 'absent' || absent.status !== 'Vắng mặt') {
    throw new Failure(`${ABSENT.name} should be absent, the report says ${absent.key} "${absent.status}"`);
  }
  await expectText(report, '#r-sites-figure', '1 / 2', 'summary: 1 of 2 sites joined');
  await expectText(report, '#r-delegates-figure', `${HEAD_COUNT.count} / ${PRESENT_EXPECTED + ABSENT.delegates}`, 'summary: delegates declared of expected');
  await expectText(report, '#r-title', TITLE, 'the report carries the meeting title');
  const sessions = await report.$$eval('#r-session-rows tr', (rows) => rows.map((r) => r.textContent));
  if (sessions.length !== 1 || !sessions[0].includes(PRESENT.name)) {
    throw new Failure(`expected one session of ${PRESENT.name}, saw ${JSON.stringify(sessions)}`);
  }
  const kinds = await report.$$eval('#r-event-rows tr', (rows) => rows.map((r) => r.dataset.kind));
  for (const kind of ['meeting_started', 'site_joined', 'head_count', 'site_left', 'meeting_ended']) {
    if (!kinds.includes(kind)) throw new Failure(`the event log on the report lacks ${kind}: ${kinds.join(', ')}`);
  }
}

/** Waits until the site picker shows exactly the sites `codes` (the filter applies after a pause). */
async function waitForShownSites(page, codes, what) {
  const expected = [...codes].sort().join(',');
  try {
    await page.waitForFunction(
      (want) =>
        [...document.querySelectorAll('#site-rows tr:not([hidden])')]
          .map((row) => row.dataset.site)
          .sort()
          .join(',') === want,
      expected,
      { timeout: STEP_TIMEOUT_MS, polling: 50 },
    );
  } catch {
    const shown = await page.$$eval('#site-rows tr:not([hidden])', (rows) => rows.map((r) => r.dataset.site));
    throw new Failure(`${what} shows sites ${JSON.stringify(shown)}, expected ${expected}`);
  }
}

async function siteRow(page, code) {
  return page.$eval(`#r-site-rows tr[data-site="${code}"]`, (row) => ({
    key: row.dataset.status,
    status: row.querySelector('.status-cell').textContent.trim(),
    headCount: row.querySelector('.declared').textContent.trim(),
    confirmer: row.querySelector('.confirmer').textContent.trim(),
  }));
}

/** Downloads `href` in the page and checks the BOM and the names, byte for byte. */
async function expectCsv(page, href, names, what) {
  if (!href) throw new Failure(`${what}: no download link`);
  const bytes = await page.evaluate(async (url) => {
    const response = await fetch(url);
    return { status: response.status, data: [...new Uint8Array(await response.arrayBuffer())] };
  }, href);
  if (bytes.status !== 200) throw new Failure(`${what}: GET ${href} answered ${bytes.status}`);
  const buffer = Buffer.from(bytes.data);
  if (buffer[0] !== 0xef || buffer[1] !== 0xbb || buffer[2] !== 0xbf) {
    throw new Failure(`${what}: ${href} does not start with the UTF-8 BOM (first bytes ${buffer.subarray(0, 3).toString('hex')})`);
  }
  const text = buffer.subarray(3).toString('utf8');
  for (const name of names) {
    if (!text.includes(name)) throw new Failure(`${what}: ${href} lacks "${name}" (starts: ${text.slice(0, 300)})`);
  }
  log(`${what}: ${href}: BOM, ${buffer.length} bytes, ${names.length ? `names intact (${names.join(', ')})` : 'read'}`);
}

/** The report's workbook: a zip file (`PK`), typed as a workbook, named after the meeting. */
async function expectXlsx(page, href, title) {
  if (!href) throw new Failure('the Excel button has no link');
  const reply = await page.evaluate(async (url) => {
    const response = await fetch(url);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      disposition: response.headers.get('content-disposition'),
      head: [...bytes.subarray(0, 2)],
      length: bytes.length,
    };
  }, href);
  if (reply.status !== 200) throw new Failure(`the workbook: GET ${href} answered ${reply.status}`);
  if (reply.type !== 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet') {
    throw new Failure(`the workbook comes as ${reply.type}`);
  }
  if (reply.head[0] !== 0x50 || reply.head[1] !== 0x4b) throw new Failure(`the workbook is not a zip file (${reply.head})`);
  const name = /filename\*=UTF-8''([^;]+)/.exec(reply.disposition || '');
  if (!name || !decodeURIComponent(name[1]).includes(title)) {
    throw new Failure(`the workbook's name does not carry the title: ${reply.disposition}`);
  }
  log(`the workbook: ${href}: ${reply.length} bytes, saved as "${decodeURIComponent(name[1])}"`);
}

async function openPage(context, label, url) {
  const page = await context.newPage();
  watches.push(new PageWatch(label, page));
  await gotoPage(page, label, url, STEP_TIMEOUT_MS);
  return page;
}

async function expectVisible(page, selector, what) {
  try {
    await page.waitForSelector(selector, { state: 'visible', timeout: STEP_TIMEOUT_MS });
  } catch {
    throw new Failure(`${what}: ${selector} is not shown`);
  }
}

/** Waits until `selector`'s text contains `expected`. */
async function expectText(page, selector, expected, what) {
  try {
    await page.waitForFunction(
      ([s, e]) => document.querySelector(s)?.textContent.includes(e),
      [selector, expected],
      { timeout: STEP_TIMEOUT_MS, polling: 100 },
    );
  } catch {
    const actual = await page.textContent(selector).catch(() => null);
    throw new Failure(`${what}: ${selector} should contain "${expected}", it reads ${JSON.stringify(actual)}`);
  }
}

function csvFile(name, text) {
  return { name, mimeType: 'text/csv', buffer: Buffer.from(text, 'utf8') };
}

/** `millis` as a `datetime-local` value in Vietnam's time, whatever this machine's zone. */
function vietnamInput(millis) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone: 'Asia/Ho_Chi_Minh',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(new Date(millis))
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

runScript(main);
