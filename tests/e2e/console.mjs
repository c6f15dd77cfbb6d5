// End-to-end: the chair's console (the studio page) and four site pages in headless Chromium
// against a running hub.
//
//   node tests/e2e/console.mjs http://127.0.0.1:PORT
//
// Sets a meeting up through the HTTP API (four communes, started), opens the console and four
// site pages from their join links: three join after the device check, the fourth stays on the
// check screen (standby). One site's page goes through a TCP relay of this script, so that its
// network can be cut without closing the page. Then, only through the pages:
//
// - the console shows every expected site: live for the three, "page open" for the fourth,
//   which the chair calls (its page shows the call);
// - a site asks for the floor, the request appears in the console's queue, the chair gives the
//   floor, and every other site page decodes that site's video (inbound frames rising on the
//   track whose stream id is its participant id, a <video> with a picture) and its audio;
// - the chair mutes it: its page says so and turns its microphone track off, and on the other
//   pages its audio stops arriving (packets no longer rising) while its video goes on; unmuted,
//   the audio comes back;
// - a roll call: two sites answer (one from values pre-filled from its head count form), the
//   console lists each answer with count, confirmer and position, and the totals;
// - the relayed site's network is cut: its page shows the reconnecting banner and the console
//   shows it reconnecting; the network returns: it is live again, and decodes the floor again;
// - a page closed: the console shows the site left (the browser closes the WebSocket cleanly,
//   which the hub takes as leaving; only a broken link shows as reconnecting); the chair takes
//   the floor back.
//
// Exit code 0 on success; 1 with the reasons on failure; 2 on bad usage or setup.
// Env: E2E_SCREENSHOT_DIR (optional) receives console-*.png and site-*.png along the way;
// E2E_VERBOSE=1 logs how long each wait took.

import net from 'node:net';
import {
  Failure,
  PageWatch,
  gotoPage,
  joinSitePage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
  screenshot,
  startMeeting,
} from './harness.mjs';

/** Real communes of Tuyên Quang (GSO codes). */
const SITES = [
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 60 },
  { code: '2266', name: 'Xã Lâm Bình', delegates: 45 },
  { code: '2302', name: 'Xã Minh Quang', delegates: 50 },
  { code: '2296', name: 'Xã Bình An', delegates: 40 },
];
const [SPEAKER, LISTENER, RELAYED, STANDBY] = SITES;
const STUDIO_NAME = 'Điểm cầu UBND tỉnh Tuyên Quang';
const HEAD_COUNT = { count: 52, confirmedBy: 'Nguyễn Văn An', position: 'Chủ tịch UBND xã' };
const ROLL_CALL_ANSWER = { count: 40, confirmedBy: 'Hoàng Thị Mai', position: 'Phó Chủ tịch UBND xã' };
const STEP_MS = 15_000;
const MEDIA_MS = 25_000;
const MUTE_MS = 12_000;
const WATCHDOG_MS = 110_000;

const watches = [];

async function main() {
  const base = parseBaseUrl(process.argv[2], 'console.mjs');
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử bàn điều khiển chủ trì',
    studioName: STUDIO_NAME,
    sites: SITES,
  });
  const relay = await TcpRelay.start(new URL(base));
  log(`hub ${base}, meeting ${meeting.id}; ${RELAYED.name} goes through the relay on ${relay.base}`);
  try {
    await runInChromium({
      logInTo: base,
      watchdogMs: WATCHDOG_MS,
      body: async (context) => {
        try {
          await walkThrough(context, base, meeting, relay);
        } catch (error) {
          for (const watch of watches) watch.printRecent(12);
          throw error;
        }
      },
    });
  } finally {
    relay.close();
  }
}

async function walkThrough(context, base, meeting, relay) {
  // ---- the console, then the sites ----
  const chair = await openPage(context, 'console', `${base}${meeting.links.studio}`);
  await waitFor(chair, () => window.diemcau?.state().signaling === 'joined', null, 'the console joins');
  await waitFor(chair, (n) => document.querySelectorAll('#grid .site-tile').length === n, SITES.length, 'a tile per expected site');
  await expectTileState(chair, STANDBY, 'not_joined');

  const pages = {};
  for (const site of [SPEAKER, LISTENER, RELAYED, STANDBY]) {
    const origin = site === RELAYED ? relay.base : base;
    pages[site.code] = await openPage(context, site.name, `${origin}${meeting.links.sites[site.code]}`);
  }
  const ids = {};
  for (const site of [SPEAKER, LISTENER, RELAYED]) {
    await joinSitePage(pages[site.code], STEP_MS);
    ids[site.code] = await pages[site.code].evaluate(() => window.diemcau.state().participant);
    log(`${site.name} joined as ${ids[site.code]}`);
  }
  const standby = pages[STANDBY.code];
  await waitFor(standby, () => window.diemcau?.state().signaling === 'standby', null, `${STANDBY.name} waits on standby`);
  await expectText(standby, '#check-meeting', STANDBY.name, 'the check screen names the site');

  for (const site of [SPEAKER, LISTENER, RELAYED]) await expectTileState(chair, site, 'live');
  await expectTileState(chair, STANDBY, 'page_open');
  await expectText(chair, `.site-tile[data-site="${STANDBY.code}"] .tile-placeholder`, 'Đã mở trang', 'the state reads in Vietnamese');
  await expectText(chair, `#absent-list li[data-site="${STANDBY.code}"]`, 'Đã mở trang', 'the absent list shows the open page');
  log('console: three sites live, one page open');

  // ---- the chair calls the open page ----
  await tap(chair, `.site-tile[data-site="${STANDBY.code}"] button[data-action="call_site"]`);
  await waitFor(standby, () => !document.getElementById('called').hidden, null, 'the called prompt appears');
  await expectText(standby, '#called', STUDIO_NAME, 'the prompt says who calls');
  await screenshot(standby, 'site-called.png');
  log('the standby page was called');

  // ---- the floor: request, queue, give ----
  const speaker = pages[SPEAKER.code];
  await tap(speaker, '#floor-request');
  await waitFor(chair, (code) => document.querySelector(`#floor-queue li[data-site="${code}"]`) !== null, SPEAKER.code, 'the request is queued on the console');
  await waitFor(
    chair,
    (code) => document.querySelector(`.site-tile[data-site="${code}"]`)?.dataset.floor === 'requested',
    SPEAKER.code,
    'the tile shows the request',
  );
  await screenshot(chair, 'console-request.png');
  await tap(chair, `#floor-queue li[data-site="${SPEAKER.code}"] button`);
  await expectText(speaker, '#floor-banner', 'Điểm cầu của bạn đang phát biểu', 'the speaker is told it has the floor');
  const others = [LISTENER, RELAYED].map((site) => ({ site, page: pages[site.code] }));
  for (const { site, page } of others) {
    await expectText(page, '#floor-banner', `${SPEAKER.name} đang phát biểu`, `${site.name} is told who speaks`);
  }
  await expectText(chair, '#floor-holder-text', SPEAKER.name, 'the console shows who holds the floor');

  const speakerId = ids[SPEAKER.code];
  await waitForMedia(others, speakerId, { video: true, audio: true }, 'the other sites decode the speaker');
  await screenshot(pages[LISTENER.code], 'site-floor.png');

  // ---- mute: the speaker's audio stops at the hub, its video goes on ----
  await tap(chair, `.site-tile[data-site="${SPEAKER.code}"] button[data-action="mute"]`);
  await waitFor(speaker, () => !document.getElementById('muted-banner').hidden, null, 'the muted site sees the banner');
  const micOff = await speaker.evaluate(() => window.diemcau.session.localStream.getAudioTracks().every((track) => !track.enabled));
  if (!micOff) throw new Failure('the muted site still has its microphone track enabled');
  await waitFor(
    chair,
    (code) => document.querySelector(`.site-tile[data-site="${code}"]`)?.dataset.muted === 'true',
    SPEAKER.code,
    'the console shows the site muted',
  );
  await screenshot(speaker, 'site-muted.png');
  await expectSilencedAtOthers(others, speakerId);
  await tap(chair, `.site-tile[data-site="${SPEAKER.code}"] button[data-action="unmute"]`);
  await waitFor(speaker, () => document.getElementById('muted-banner').hidden, null, 'the banner goes when unmuted');
  await waitForMedia(others, speakerId, { audio: true }, 'the speaker is heard again after unmuting');

  // ---- roll call ----
  await type(speaker, '#hc-count', String(HEAD_COUNT.count));
  await type(speaker, '#hc-name', HEAD_COUNT.confirmedBy);
  await type(speaker, '#hc-position', HEAD_COUNT.position);
  await tap(chair, '#roll-call-start');
  for (const site of [SPEAKER, LISTENER, RELAYED]) {
    await waitFor(pages[site.code], () => document.getElementById('roll-call-dialog').open, null, `${site.name} is asked to answer`);
  }
  const prefilled = await speaker.evaluate(() => ({
    count: document.getElementById('rc-count').value,
    name: document.getElementById('rc-name').value,
    position: document.getElementById('rc-position').value,
  }));
  if (prefilled.count !== String(HEAD_COUNT.count) || prefilled.name !== HEAD_COUNT.confirmedBy || prefilled.position !== HEAD_COUNT.position) {
    throw new Failure(`the roll-call dialog is not pre-filled from the head count form: ${JSON.stringify(prefilled)}`);
  }
  await screenshot(speaker, 'site-roll-call.png');
  await tap(speaker, '#rc-submit');
  const listener = pages[LISTENER.code];
  await type(listener, '#rc-count', String(ROLL_CALL_ANSWER.count));
  await type(listener, '#rc-name', ROLL_CALL_ANSWER.confirmedBy);
  await type(listener, '#rc-position', ROLL_CALL_ANSWER.position);
  await tap(listener, '#rc-submit');
  for (const [site, answer] of [
    [SPEAKER, HEAD_COUNT],
    [LISTENER, ROLL_CALL_ANSWER],
  ]) {
    const row = `#roll-call-answers li[data-site="${site.code}"]`;
    await expectText(chair, row, `${answer.count} đại biểu`, `the console lists ${site.name}'s count`);
    await expectText(chair, row, answer.confirmedBy, `the console lists who confirmed for ${site.name}`);
    await expectText(chair, row, answer.position, `the console lists the confirmer's position for ${site.name}`);
    await expectText(pages[site.code], '#roll-call-banner', 'Đã trả lời điểm danh', `${site.name} sees its answer recorded`);
  }
  await expectText(chair, '#rc-sites', '2/3', 'two of the three sites in the meeting answered');
  await expectText(chair, '#rc-delegates', String(HEAD_COUNT.count + ROLL_CALL_ANSWER.count), 'the delegates add up');
  await expectText(chair, '.answer-waiting', RELAYED.name, 'the site that has not answered is named');
  await waitFor(
    chair,
    (code) => !document.querySelector(`.site-tile[data-site="${code}"] .roll-call-badge`).hidden,
    SPEAKER.code,
    'the tile marks the answer',
  );
  await screenshot(chair, 'console-roll-call.png');
  await tap(chair, '#roll-call-end');
  await waitFor(pages[RELAYED.code], () => !document.getElementById('roll-call-dialog').open, null, 'the dialog closes when the roll call ends');
  await expectText(chair, '.answer-missing', RELAYED.name, 'the ended roll call still names the site that did not answer');
  await expectText(chair, '#rc-sites', '2/3', 'the ended roll call keeps its result');
  log('roll call: two answers listed with their totals');

  // ---- a network drop and the return ----
  const relayed = pages[RELAYED.code];
  relay.drop();
  await waitFor(relayed, () => !document.getElementById('reconnect-banner').hidden, null, 'the dropped site shows the reconnecting banner');
  await expectTileState(chair, RELAYED, 'reconnecting');
  await expectText(chair, `#absent-list li[data-site="${RELAYED.code}"]`, 'Đang nối lại', 'the absent list shows the drop');
  await screenshot(relayed, 'site-reconnecting.png');
  relay.restore();
  log('network back for the relayed site');
  await screenshot(chair, 'console-reconnecting.png');
  await waitFor(relayed, () => window.diemcau.state().signaling === 'joined', null, 'the dropped site rejoins', 30_000);
  await expectTileState(chair, RELAYED, 'live');
  await waitFor(relayed, () => document.getElementById('reconnect-banner').hidden, null, 'the banner goes once back');
  await waitForMedia([{ site: RELAYED, page: relayed }], speakerId, { video: true, audio: true }, 'the returning site decodes the floor again');

  // ---- a page closed; the chair takes the floor back ----
  await listener.close();
  await expectTileState(chair, LISTENER, 'left');
  await expectText(chair, '#rc-sites', '2/3', 'a site leaving after the roll call does not change its result');
  await expectText(chair, '.answer-missing', RELAYED.name, 'nor the list of sites that did not answer');
  await tap(chair, '#take-floor');
  await waitFor(relayed, () => document.getElementById('floor-banner').hidden, null, 'the floor banner goes');
  await waitFor(relayed, () => document.getElementById('stage').dataset.layout === 'studio', null, 'the studio is the big picture again');
  await screenshot(chair, 'console-end.png');

  for (const watch of watches) {
    if (watch.errors.length > 0) throw new Failure(`${watch.label} had script errors: ${watch.errors.join(' | ')}`);
  }
  log('PASS: console states, call, floor with media, hub mute, roll call, drop and return');
}

async function openPage(context, label, url) {
  const page = await context.newPage();
  watches.push(new PageWatch(label, page));
  await gotoPage(page, label, url, STEP_MS);
  return page;
}

/**
 * A real click, without Playwright's wait for two still animation frames: with several pages
 * decoding video on two cores, frames come slowly and that wait alone took seconds. Every
 * click here follows a check that its button is shown.
 */
function tap(page, selector) {
  return page.click(selector, { force: true, timeout: STEP_MS });
}

function type(page, selector, value) {
  return page.fill(selector, value, { force: true, timeout: STEP_MS });
}

async function waitFor(page, predicate, argument, what, timeout = STEP_MS) {
  const started = Date.now();
  try {
    await page.waitForFunction(predicate, argument, { timeout, polling: 100 });
    if (process.env.E2E_VERBOSE) log(`  ${what}: ${Date.now() - started} ms`);
  } catch (error) {
    throw new Failure(`${what}: not within ${timeout / 1000} s (${error.message.split('\n')[0]})`);
  }
}

async function expectText(page, selector, text, what) {
  await waitFor(
    page,
    ([s, x]) => {
      const node = document.querySelector(s);
      return Boolean(node) && node.textContent.includes(x);
    },
    [selector, text],
    `${what} (${selector} should contain "${text}")`,
  ).catch(async (error) => {
    const shown = await page.evaluate((s) => document.querySelector(s)?.textContent ?? '(no such element)', selector);
    throw new Failure(`${error.message}; it shows "${shown.trim().slice(0, 200)}"`);
  });
}

async function expectTileState(chair, site, state) {
  const started = Date.now();
  await waitFor(
    chair,
    ([code, wanted]) => document.querySelector(`.site-tile[data-site="${code}"]`)?.dataset.state === wanted,
    [site.code, state],
    `the console shows ${site.name} as ${state}`,
  ).catch(async (error) => {
    const shown = await chair.evaluate((code) => document.querySelector(`.site-tile[data-site="${code}"]`)?.dataset.state, site.code);
    throw new Failure(`${error.message}; it shows ${shown}`);
  });
  log(`console: ${site.name} ${state} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

/**
 * The inbound streams of `participant` on a page (tracks matched by stream id), by kind, and
 * the floor <video> element.
 */
function mediaOf(page, participant) {
  return page
    .evaluate(async (who) => {
      const d = window.diemcau;
      const owners = d.trackOwners();
      const out = { at: Date.now(), audio: {}, video: {} };
      if (d.pc) {
        const report = await d.pc.getStats();
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp' || owners[s.trackIdentifier] !== who) return;
          out[s.kind][s.id] = {
            packetsReceived: s.packetsReceived ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            framesDecoded: s.framesDecoded ?? 0,
            totalSamplesReceived: s.totalSamplesReceived ?? 0,
            frameWidth: s.frameWidth ?? 0,
          };
        });
      }
      const video = document.getElementById('floor-video');
      out.element = { participant: video.dataset.participant || null, width: video.videoWidth, hidden: video.hidden };
      out.audioOnly = d.state().audioOnly;
      return out;
    }, participant)
    .catch((error) => ({ error: error.message, audio: {}, video: {} }));
}

/** How much `field` rose for `kind` between two samples, over every stream of that kind. */
function delta(before, after, kind, field) {
  let sum = 0;
  for (const [id, now] of Object.entries(after[kind])) {
    const then = before[kind][id];
    if (then) sum += now[field] - then[field];
  }
  return sum;
}

/**
 * Passes once, within a few seconds of the mute, a 2-second window shows on every other page
 * no audio packet of `participant` while its video frames go on decoding. (A page of a busy
 * machine may still be working through packets that left before the mute: hence a window, not
 * the first two seconds.) A page the hub has put on audio only (its link estimate fell below
 * the lowest video layer, docs/protocol.md `reception`) gets no video whatever the mute: its
 * video is not expected, as long as one page shows the video going on.
 */
async function expectSilencedAtOthers(targets, participant) {
  const deadline = Date.now() + MUTE_MS;
  let previous = await Promise.all(targets.map(({ page }) => mediaOf(page, participant)));
  let seen = [];
  while (Date.now() < deadline) {
    await targets[0].page.waitForTimeout(2_000);
    const current = await Promise.all(targets.map(({ page }) => mediaOf(page, participant)));
    seen = targets.map(({ site }, i) => ({
      site,
      packets: delta(previous[i], current[i], 'audio', 'packetsReceived'),
      bytes: delta(previous[i], current[i], 'audio', 'bytesReceived'),
      frames: delta(previous[i], current[i], 'video', 'framesDecoded'),
      audioOnly: current[i].audioOnly,
    }));
    previous = current;
    const videoGoesOn = seen.every((s) => s.frames > 0 || s.audioOnly) && seen.some((s) => s.frames > 0);
    if (seen.every((s) => s.packets === 0) && videoGoesOn) {
      for (const s of seen) {
        log(
          `${s.site.name} while the speaker is muted: audio packets +0, video frames +${s.frames}` +
            `${s.audioOnly ? ' (the hub sends it audio only)' : ''}`,
        );
      }
      return;
    }
  }
  const detail = seen
    .map(
      (s) =>
        `${s.site.name}: audio +${s.packets} packets (+${s.bytes} bytes), video +${s.frames} frames` +
        `${s.audioOnly ? ' (the hub sends it audio only)' : ''}`,
    )
    .join('; ');
  throw new Failure(`the muted speaker's audio did not stop at the other sites while its video went on, within ${MUTE_MS / 1000} s: ${detail}`);
}

/** Waits until every page decodes `participant`'s video (and hears its audio) on the floor. */
async function waitForMedia(targets, participant, want, what) {
  const deadline = Date.now() + MEDIA_MS;
  let previous = await Promise.all(targets.map(({ page }) => mediaOf(page, participant)));
  let problems = [];
  while (Date.now() < deadline) {
    await targets[0].page.waitForTimeout(1_000);
    const current = await Promise.all(targets.map(({ page }) => mediaOf(page, participant)));
    problems = [];
    const details = [];
    targets.forEach(({ site }, i) => {
      const frames = delta(previous[i], current[i], 'video', 'framesDecoded');
      const packets = delta(previous[i], current[i], 'audio', 'packetsReceived');
      const element = current[i].element;
      if (want.video) {
        if (frames <= 0) problems.push(`${site.name}: no video frames of ${participant} decoded`);
        if (element.participant !== participant || element.width === 0 || element.hidden) {
          problems.push(`${site.name}: floor <video> shows ${element.participant} ${element.width}px${element.hidden ? ' hidden' : ''}`);
        }
      }
      if (want.audio && packets <= 0) problems.push(`${site.name}: no audio packets of ${participant}`);
      details.push(`${site.name}: +${frames} frames, +${packets} audio packets, <video> ${element.width}px`);
    });
    previous = current;
    if (problems.length === 0) {
      log(`${what}: ${details.join('; ')}`);
      return;
    }
  }
  const states = previous.map((sample, i) => {
    const streams = ['audio', 'video'].map((kind) => `${kind} ${JSON.stringify(Object.values(sample[kind]))}`).join(', ');
    return `${targets[i].site.name}: ${sample.audioOnly ? 'the hub sends it audio only; ' : ''}${streams}`;
  });
  throw new Failure(`${what}: not within ${MEDIA_MS / 1000} s: ${problems.join('; ')} [${states.join(' | ')}]`);
}

/**
 * A TCP relay to the hub for one page: `drop()` cuts every connection without a WebSocket
 * close (the hub sees the link break, as on a lost network) and refuses new ones until
 * `restore()`.
 */
class TcpRelay {
  static start(target) {
    return new Promise((resolve, reject) => {
      const relay = new TcpRelay(target);
      relay.server.once('error', reject);
      relay.server.listen(0, '127.0.0.1', () => resolve(relay));
    });
  }

  constructor(target) {
    this.target = { host: target.hostname, port: Number(target.port) };
    this.down = false;
    this.pairs = new Set();
    this.server = net.createServer((client) => {
      if (this.down) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(this.target);
      const pair = { client, upstream };
      this.pairs.add(pair);
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  get base() {
    return `http://127.0.0.1:${this.server.address().port}`;
  }

  drop() {
    this.down = true;
    for (const { client, upstream } of this.pairs) {
      upstream.destroy();
      client.resetAndDestroy();
    }
    this.pairs.clear();
  }

  restore() {
    this.down = false;
  }

  close() {
    this.drop();
    this.server.close();
  }
}

runScript(main);
