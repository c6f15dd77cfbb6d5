// End-to-end: a commune hall's page decodes the H.264 programme a studio encoder publishes
// over WHIP, in headless Chromium.
//
//   MEETING=ID ENCODER_TOKEN=TOKEN SITE_PATH=/site.html?meeting=ID&code=CODE \
//     node tests/e2e/whip_site.mjs http://127.0.0.1:PORT
//
// The encoder (webrtc-rs, started by the Rust test) publishes H.264 constrained baseline
// and Opus. The organizer's meeting page shows the WHIP address, the token and "publishing";
// the site page joins from its device check and must decode H.264 frames on its studio
// picture. Exit code 0 on success, 1 on failure, 2 on setup.

import { Failure, SetupError, log, openJoined, parseBaseUrl, runInChromium, runScript, until } from './harness.mjs';

const TIMEOUT_MS = 30_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'whip_site.mjs');
  const { SITE_PATH: sitePath, MEETING: meeting, ENCODER_TOKEN: token } = process.env;
  if (!sitePath || !meeting || !token) throw new SetupError('SITE_PATH, MEETING and ENCODER_TOKEN must be set');
  await runInChromium({
    logInTo: base,
    watchdogMs: 120_000,
    body: async (context) => {
      const organizer = await context.newPage();
      await organizer.goto(`${base}/organizer.html#meeting-${meeting}`);
      let shown = null;
      await until('the meeting page to show the encoder publishing', TIMEOUT_MS, async () => {
        shown = await organizer.evaluate(() => ({
          panel: !document.getElementById('m-encoder').hidden,
          url: document.getElementById('m-encoder-url').textContent,
          token: document.getElementById('m-encoder-token').textContent,
          state: document.getElementById('m-encoder-state').textContent,
          watchUrl: document.getElementById('m-watch-url').textContent,
          watchState: document.getElementById('m-watch-state').textContent,
        }));
        return shown.panel && shown.token === token && shown.state === 'Đang phát' && shown.watchState !== '';
      }).catch((error) => {
        throw new Failure(`${error.message}; shown: ${JSON.stringify(shown)}`);
      });
      if (shown.url !== `${base}/whip/${meeting}`) throw new Failure(`the WHIP address shown is ${shown.url}`);
      if (shown.watchUrl !== `${base}/whep/${meeting}`) throw new Failure(`the WHEP address shown is ${shown.watchUrl}`);
      if (shown.watchState !== '0 / tối đa 50 người xem') throw new Failure(`the watch link's state shown is ${shown.watchState}`);
      log(`the organizer's page shows the encoder: ${JSON.stringify(shown)}`);

      const site = await openJoined(context, 'site', `${base}${sitePath}`, { site: true, timeout: TIMEOUT_MS });
      let last = null;
      await until('the site to decode the encoder’s H.264', TIMEOUT_MS, async () => {
        last = await site.page.evaluate(async () => {
          const stats = await window.diemcau.pc.getStats();
          const codecs = new Map();
          stats.forEach((s) => {
            if (s.type === 'codec') codecs.set(s.id, s.mimeType);
          });
          let found = null;
          stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && (s.framesDecoded ?? 0) > 0) {
              const mime = codecs.get(s.codecId);
              if (!found || mime === 'video/H264') found = { mime, framesDecoded: s.framesDecoded, width: s.frameWidth };
            }
          });
          const video = document.getElementById('studio-video');
          return {
            found,
            pictureWidth: video ? video.videoWidth : -1,
            tracks: video && video.srcObject ? video.srcObject.getTracks().map((t) => `${t.kind}:${t.readyState}:${t.muted}`) : null,
            readyState: video ? video.readyState : -1,
            participants: [...window.diemcau.session.participants.keys()],
          };
        });
        return last.found && last.found.mime === 'video/H264' && last.found.framesDecoded > 30 && last.pictureWidth > 0;
      }).catch((error) => {
        site.watch.printRecent(20);
        throw new Failure(`${error.message}; last: ${JSON.stringify(last)}`);
      });
      log(`PASS: the site decodes the encoder's H.264: ${JSON.stringify(last)}`);
    },
  });
}

runScript(main);
