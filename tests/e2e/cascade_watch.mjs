// End-to-end: a province's organizer watches its part of a national meeting, in headless
// Chromium.
//
//   STUDIO_PATH=/studio.html?meeting=ID&code=CODE node tests/e2e/cascade_watch.mjs http://127.0.0.1:PROVINCE_PORT
//
// The national studio publishes at the root (started by the test); the browser is logged in
// to the provincial hub as its organizer and opens the studio link of the province's part.
// The centre chairs that meeting, so the page must watch it: joined as `observer`, no camera
// opened, a note saying who chairs, the national studio's video decoded in the preview, the
// province's commune on the console, and no chair control shown. Exit code 0 on success, 1 on
// failure, 2 on setup.

import { Failure, PageWatch, SetupError, gotoPage, joinPage, log, parseBaseUrl, runInChromium, runScript } from './harness.mjs';

const TIMEOUT_MS = 30_000;

async function main() {
  const province = parseBaseUrl(process.argv[2], 'cascade_watch.mjs');
  const studioPath = process.env.STUDIO_PATH;
  if (!studioPath) throw new SetupError('STUDIO_PATH must be set');
  await runInChromium({
    logInTo: province,
    watchdogMs: 120_000,
    body: async (context) => {
      const page = await context.newPage();
      const watch = new PageWatch('province organizer', page);
      await gotoPage(page, 'province organizer', `${province}${studioPath}`, TIMEOUT_MS);
      await joinPage(page, 'province organizer', { site: false, timeout: TIMEOUT_MS });
      const deadline = Date.now() + TIMEOUT_MS;
      let last = null;
      while (Date.now() < deadline) {
        last = await page.evaluate(() => {
          const preview = document.getElementById('preview');
          const tile = document.querySelector('[data-site="02269"]');
          const visibleButtons = [...document.querySelectorAll('.site-tile button, #mute-all, #roll-call-start, #take-floor')]
            .filter((b) => b.offsetParent !== null).length;
          const pc = window.diemcau.pc;
          return {
            role: window.diemcau.state().role,
            note: !document.getElementById('watching-note').hidden,
            previewWidth: preview.videoWidth,
            previewTime: preview.currentTime,
            localTracks: pc ? pc.getSenders().filter((s) => s.track).length : -1,
            tile: tile ? tile.dataset.state : null,
            visibleButtons,
          };
        });
        if (last.role === 'observer' && last.previewWidth > 0 && last.previewTime > 1 && last.tile) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      if (!last || last.role !== 'observer') throw new Failure(`the organizer did not join as observer: ${JSON.stringify(last)}`);
      if (!(last.previewWidth > 0 && last.previewTime > 1)) {
        watch.printRecent(20);
        throw new Failure(`the national studio's video is not decoded in the preview: ${JSON.stringify(last)}`);
      }
      if (!last.note) throw new Failure('no note says the centre chairs the meeting');
      if (last.localTracks !== 0) throw new Failure(`the watching page publishes ${last.localTracks} tracks`);
      if (!last.tile) throw new Failure('the province’s commune is not on the console');
      if (last.visibleButtons !== 0) throw new Failure(`${last.visibleButtons} chair controls are shown to a watcher`);
      log(`PASS: the province's organizer watches: the national studio at ${last.previewWidth} pixels wide, its commune ${last.tile}, no control`);
    },
  });
}

runScript(main);
