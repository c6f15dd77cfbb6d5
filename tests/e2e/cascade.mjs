// End-to-end: a national meeting across two hubs, in headless Chromium.
//
//   ROOT_URL=http://127.0.0.1:P STUDIO_PATH=/studio.html?... SITE_PATH=/site.html?... \
//     node tests/e2e/cascade.mjs http://127.0.0.1:PROVINCE_PORT
//
// The national studio's page is open on the root hub (logged in there as the organizer) and
// publishes its fake camera; a commune's page is open on its provincial hub, which relays the
// root's meeting. The commune's page must decode the national studio's video, received from
// its own provincial hub only (PROVINCE_MEDIA_PORTS: that hub's media ports). The commune's
// tile on the national console must show its small picture, sent up because the tile is on
// screen; the national chair gives the commune the floor from its console, and the studio's
// page must decode the commune's camera in its tile, come up through the provincial hub. Then the script writes
// DECODED_MARK, the test stops the root, and the commune's page must stay joined and show the
// banner saying its province has lost the centre. Exit code 0 on success, 1 on failure, 2 on setup.

import { writeFile } from 'node:fs/promises';

import {
  Failure,
  PageWatch,
  SetupError,
  gotoPage,
  joinPage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
} from './harness.mjs';

const TIMEOUT_MS = 30_000;
const WATCHDOG_MS = 150_000;

async function main() {
  const province = parseBaseUrl(process.argv[2], 'cascade.mjs');
  const { ROOT_URL: root, STUDIO_PATH: studioPath, SITE_PATH: sitePath } = process.env;
  if (!root || !studioPath || !sitePath) throw new SetupError('ROOT_URL, STUDIO_PATH and SITE_PATH must be set');
  await runInChromium({
    logInTo: root,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await context.newPage();
      const studioWatch = new PageWatch('national studio', studio);
      await gotoPage(studio, 'national studio', `${root}${studioPath}`, TIMEOUT_MS);
      await joinPage(studio, 'national studio', { site: false, timeout: TIMEOUT_MS });
      log('the national studio joined the root hub');

      const commune = await context.newPage();
      const communeWatch = new PageWatch('commune', commune);
      await gotoPage(commune, 'commune', `${province}${sitePath}`, TIMEOUT_MS);
      await joinPage(commune, 'commune', { site: true, timeout: TIMEOUT_MS });
      log('the commune joined its provincial hub');

      const deadline = Date.now() + TIMEOUT_MS;
      let last = null;
      while (Date.now() < deadline) {
        last = await commune.evaluate(decodedVideo);
        if (last.frames > 30 && last.width > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      if (!last || last.frames <= 30 || last.width === 0) {
        communeWatch.printRecent(20);
        studioWatch.printRecent(20);
        throw new Failure(`the commune does not decode the national studio's video: ${JSON.stringify(last)}`);
      }
      const ports = (process.env.PROVINCE_MEDIA_PORTS ?? '').split(',').filter(Boolean).map(Number);
      if (!ports.includes(last.remotePort)) {
        throw new Failure(`the commune's media comes from port ${last.remotePort}, not its provincial hub's (${ports.join(', ')})`);
      }
      log(`the commune decodes the national studio through its province: ${last.frames} frames, ${last.width}x${last.height}`);

      // The national chair's console shows the commune as its provincial hub sees it, marked
      // with that hub, with a floor button.
      const tile = await waitForValue(
        () => studio.evaluate(() => {
          const el = document.querySelector('[data-site="02269"]');
          if (!el) return null;
          const floor = el.querySelector('[data-action="give_floor"]');
          return { node: el.dataset.node, state: el.dataset.state, floorShown: Boolean(floor && !floor.hidden) };
        }),
        (t) => t && t.node === 'tuyen-quang' && t.state === 'live' && t.floorShown,
      );
      if (!tile.ok) {
        studioWatch.printRecent(20);
        throw new Failure(`the national console does not show the commune through its hub with a floor button: ${JSON.stringify(tile.last)}`);
      }
      log(`the national console shows the commune live through ${tile.last.node}`);

      // The console's province menu counts each province's sites joined, and filters by it.
      const provinces = await waitForValue(
        () => studio.evaluate(() => {
          const menu = document.getElementById('province-filter');
          return { hidden: menu.hidden, options: [...menu.options].map((o) => o.textContent) };
        }),
        (p) => !p.hidden && p.options.includes('Tuyên Quang: 1/1') && p.options.includes('Hà Giang: 0/1'),
      );
      if (!provinces.ok) throw new Failure(`the console's province menu: ${JSON.stringify(provinces.last)}`);
      await studio.selectOption('#province-filter', 'Hà Giang');
      const filtered = await studio.evaluate(() => ({
        tuyenQuang: !document.querySelector('[data-site="02269"]').hidden,
        haGiang: !document.querySelector('[data-site="00694"]').hidden,
      }));
      if (filtered.tuyenQuang || !filtered.haGiang) {
        throw new Failure(`filtering by Hà Giang shows the wrong tiles: ${JSON.stringify(filtered)}`);
      }
      await studio.selectOption('#province-filter', '');
      log(`the console's province menu: ${provinces.last.options.join(' · ')}`);
      // Sorted by province, the wall has a header above each province's tiles.
      await studio.selectOption('#sort', 'province');
      const grouped = await studio.evaluate(() =>
        [...document.querySelectorAll('.site-grid > *')]
          .filter((node) => !node.hidden)
          .map((node) => (node.classList.contains('province-header') ? `# ${node.textContent}` : node.dataset.site)),
      );
      const expected = ['# Hà Giang — 0/1 điểm cầu đã vào', '00694', '# Tuyên Quang — 1/1 điểm cầu đã vào', '02269'];
      if (JSON.stringify(grouped) !== JSON.stringify(expected)) {
        throw new Failure(`the wall sorted by province: ${JSON.stringify(grouped)}`);
      }
      await studio.selectOption('#sort', 'attention');
      log(`the wall sorted by province: ${grouped.join(' · ')}`);

      // Its tile is on the chair's screen: its small picture comes up through its provincial
      // hub without the floor, and the national studio decodes it in the tile.
      const smallPicture = await waitForValue(
        () => studio.evaluate(() => {
          const video = document.querySelector('[data-site="02269"] video');
          return video
            ? { width: video.videoWidth, time: video.currentTime, stream: video.dataset.participant }
            : null;
        }),
        (v) => v && v.width > 0 && v.time > 1,
      );
      if (!smallPicture.ok || !String(smallPicture.last.stream).endsWith('-02269')) {
        studioWatch.printRecent(20);
        throw new Failure(`the national studio does not decode the small picture of the commune on its screen: ${JSON.stringify(smallPicture.last)}`);
      }
      log(`the national studio decodes the small picture of the commune on its screen: ${smallPicture.last.width} pixels wide`);

      // The chair gives it the floor: its camera comes up through its provincial hub and the
      // national studio decodes it in the commune's tile.
      await studio.click('[data-site="02269"] [data-action="give_floor"]');
      const floorVideo = await waitForValue(
        () => studio.evaluate(() => {
          const video = document.querySelector('[data-site="02269"] video');
          return video ? { width: video.videoWidth, time: video.currentTime } : null;
        }),
        (v) => v && v.width > 0 && v.time > 1,
      );
      if (!floorVideo.ok) {
        studioWatch.printRecent(20);
        communeWatch.printRecent(20);
        throw new Failure(`the national studio does not decode the commune given the floor: ${JSON.stringify(floorVideo.last)}`);
      }
      log(`the national studio decodes the commune holding the floor: ${floorVideo.last.width} pixels wide`);

      // The test stops the root once this file exists: the commune stays, with a banner.
      if (process.env.DECODED_MARK) {
        await writeFile(process.env.DECODED_MARK, 'decoded\n');
        try {
          await commune.waitForFunction(() => {
            const banner = document.getElementById('centre-banner');
            return banner && !banner.hidden && banner.textContent.includes('Trung ương');
          }, null, { timeout: TIMEOUT_MS, polling: 200 });
        } catch {
          communeWatch.printRecent(20);
          throw new Failure('the commune page shows no banner while its province has lost the centre');
        }
        const state = await commune.evaluate(() => window.diemcau.state());
        if (state.signaling !== 'joined') throw new Failure(`the commune left its provincial hub: ${JSON.stringify(state)}`);
        log(`the commune is told its province lost the centre: ${await commune.textContent('#centre-banner')}`);
      }
      log('PASS: the commune decodes the national studio through its province, the studio decodes the commune given the floor, and the commune is told when the centre is lost');
    },
  });
}

/** Polls `read` until `ok` holds of its value or the timeout passes: `{ ok, last }`. */
async function waitForValue(read, ok) {
  const deadline = Date.now() + TIMEOUT_MS;
  let last = null;
  while (Date.now() < deadline) {
    last = await read();
    if (ok(last)) return { ok: true, last };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { ok: false, last };
}

/** Runs inside the commune's page: frames of video decoded, and their size. */
async function decodedVideo() {
  const pc = window.diemcau.pc;
  if (!pc) return { frames: 0, width: 0, height: 0 };
  const stats = await pc.getStats();
  let frames = 0;
  let width = 0;
  let height = 0;
  let pairId = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      frames += s.framesDecoded ?? 0;
      width = Math.max(width, s.frameWidth ?? 0);
      height = Math.max(height, s.frameHeight ?? 0);
    }
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  const pair = pairId ? stats.get(pairId) : null;
  const remote = pair ? stats.get(pair.remoteCandidateId) : null;
  return { frames, width, height, remotePort: remote?.port ?? null };
}

runScript(main);
