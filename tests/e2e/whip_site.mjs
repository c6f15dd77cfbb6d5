// End-to-end: a commune hall's page decodes the H.264 programme a studio encoder publishes
// over WHIP, in headless Chromium.
//
//   MEETING=ID ENCODER_TOKEN=TOKEN WATCH_TOKEN=TOKEN SITE_PATH=/site.html?meeting=ID&code=CODE \
//     STUDIO_PATH=/studio.html?meeting=ID&code=CODE node tests/e2e/whip_site.mjs http://127.0.0.1:PORT
//
// The encoder (webrtc-rs, started by the Rust test) publishes H.264 constrained baseline
// and Opus. The organizer's meeting page shows the WHIP address, the token and "publishing";
// the site page joins from its device check and must decode H.264 frames on its studio
// picture; the watch page the meeting's page links (with the watch token) must decode them
// too. Then the chair's console offers the programme switch: its camera on air, the site
// decodes its VP8; the encoder again, the site decodes H.264 again. The chair records a few
// seconds from its console, and the report page lists the part and downloads its Matroska file
// with the encoder's H.264. Exit code 0 on success, 1 on failure, 2 on setup.

import { Failure, SetupError, log, openJoined, parseBaseUrl, runInChromium, runScript, until } from './harness.mjs';

const TIMEOUT_MS = 30_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'whip_site.mjs');
  const { SITE_PATH: sitePath, STUDIO_PATH: studioPath, MEETING: meeting } = process.env;
  const { ENCODER_TOKEN: token, WATCH_TOKEN: watchToken } = process.env;
  if (!sitePath || !studioPath || !meeting || !token || !watchToken) {
    throw new SetupError('SITE_PATH, STUDIO_PATH, MEETING, ENCODER_TOKEN and WATCH_TOKEN must be set');
  }
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
          watchPage: document.getElementById('m-watch-page').href,
        }));
        return shown.panel && shown.token === token && shown.state === 'Đang phát' && shown.watchState !== '';
      }).catch((error) => {
        throw new Failure(`${error.message}; shown: ${JSON.stringify(shown)}`);
      });
      if (shown.url !== `${base}/whip/${meeting}`) throw new Failure(`the WHIP address shown is ${shown.url}`);
      if (shown.watchUrl !== `${base}/whep/${meeting}`) throw new Failure(`the WHEP address shown is ${shown.watchUrl}`);
      if (shown.watchState !== '0 / tối đa 50 người xem') throw new Failure(`the watch link's state shown is ${shown.watchState}`);
      const watchPage = `${base}/watch.html?meeting=${meeting}#token=${watchToken}`;
      if (shown.watchPage !== watchPage) throw new Failure(`the watch page linked is ${shown.watchPage}`);
      log(`the organizer's page shows the encoder: ${JSON.stringify(shown)}`);
      const mode = await organizer.evaluate(() => document.getElementById('m-recording-mode').textContent);
      if (mode !== 'Ghi hình: Khi chủ trì bấm ghi') throw new Failure(`the meeting's recording setting shown: ${mode}`);

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

      // The watch page plays the programme without joining.
      const watch = await context.newPage();
      await watch.goto(shown.watchPage);
      let watched = null;
      await until('the watch page to decode the encoder’s H.264', TIMEOUT_MS, async () => {
        watched = await watch.evaluate(async () => {
          const pc = window.diemcau && window.diemcau.player.pc;
          if (!pc) return { pc: false };
          const stats = await pc.getStats();
          const codecs = new Map();
          stats.forEach((s) => {
            if (s.type === 'codec') codecs.set(s.id, s.mimeType);
          });
          let video = null;
          stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') {
              video = { mime: codecs.get(s.codecId), framesDecoded: s.framesDecoded ?? 0 };
            }
          });
          const picture = document.getElementById('picture');
          return {
            video,
            width: picture.videoWidth,
            state: document.getElementById('watch-state').dataset.state,
            text: document.getElementById('watch-state').textContent,
          };
        });
        return (
          watched.video &&
          watched.video.mime === 'video/H264' &&
          watched.video.framesDecoded > 30 &&
          watched.width > 0 &&
          watched.state === 'playing'
        );
      }).catch((error) => {
        throw new Failure(`${error.message}; last: ${JSON.stringify(watched)}`);
      });
      log(`PASS: the watch page decodes the encoder's H.264: ${JSON.stringify(watched)}`);

      // A watch link with a wrong token says so, and does not keep trying.
      const refused = await context.newPage();
      await refused.goto(`${base}/watch.html?meeting=${meeting}#token=wrong-${watchToken}`);
      let said = null;
      await until('the watch page to say its token is wrong', TIMEOUT_MS, async () => {
        said = await refused.evaluate(() => ({
          state: document.getElementById('watch-state').dataset.state,
          text: document.getElementById('watch-state').textContent,
        }));
        return said.state === 'badToken';
      }).catch((error) => {
        throw new Failure(`${error.message}; said: ${JSON.stringify(said)}`);
      });
      log(`PASS: a wrong watch token is told: ${said.text}`);
      await refused.close();

      // The chair's console switches the programme between the encoder and its own camera.
      const studio = await openJoined(context, 'studio', `${base}${studioPath}`, { site: false, timeout: TIMEOUT_MS });
      const pressed = () =>
        studio.page.evaluate(() => ({
          panel: !document.getElementById('programme-panel').hidden,
          encoder: document.getElementById('programme-encoder').getAttribute('aria-pressed'),
          camera: document.getElementById('programme-camera').getAttribute('aria-pressed'),
          text: document.getElementById('programme-state').textContent,
        }));
      let panel = null;
      await until('the console to offer the programme switch, the encoder on air', TIMEOUT_MS, async () => {
        panel = await pressed();
        return panel.panel && panel.encoder === 'true' && panel.camera === 'false';
      }).catch((error) => {
        throw new Failure(`${error.message}; panel: ${JSON.stringify(panel)}`);
      });
      /** Video frames `page` decoded so far, by codec (`pc`: where its connection is). */
      const decodedOn = (page, pc) =>
        page.evaluate(async (path) => {
          const stats = await path.reduce((o, key) => o[key], window).getStats();
          const codecs = new Map();
          stats.forEach((s) => {
            if (s.type === 'codec') codecs.set(s.id, s.mimeType);
          });
          const frames = {};
          stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') {
              const mime = codecs.get(s.codecId) || 'none';
              frames[mime] = (frames[mime] || 0) + (s.framesDecoded ?? 0);
            }
          });
          return frames;
        }, pc);
      const decoded = () => decodedOn(site.page, ['diemcau', 'pc']);
      const watchDecoded = () => decodedOn(watch, ['diemcau', 'player', 'pc']);
      for (const [button, mime, what] of [
        ['programme-camera', 'video/VP8', 'the chair’s camera'],
        ['programme-encoder', 'video/H264', 'the encoder again'],
      ]) {
        const [before, beforeWatched] = [await decoded(), await watchDecoded()];
        await studio.page.click(`#${button}`);
        let now = null;
        await until(`the site to decode ${what} (${mime})`, TIMEOUT_MS, async () => {
          now = await decoded();
          return (now[mime] || 0) > (before[mime] || 0) + 30;
        }).catch((error) => {
          throw new Failure(`${error.message}; before ${JSON.stringify(before)}, now ${JSON.stringify(now)}`);
        });
        // The watch page's one picture follows on the same m-line, whatever the codec.
        let nowWatched = null;
        await until(`the watch page to decode ${what} (${mime})`, TIMEOUT_MS, async () => {
          nowWatched = await watchDecoded();
          return (nowWatched[mime] || 0) > (beforeWatched[mime] || 0) + 30;
        }).catch((error) => {
          throw new Failure(
            `${error.message}; before ${JSON.stringify(beforeWatched)}, now ${JSON.stringify(nowWatched)}`,
          );
        });
        panel = await pressed();
        const camera = button === 'programme-camera';
        if (panel.camera !== String(camera) || panel.encoder !== String(!camera)) {
          throw new Failure(`the console's buttons after the switch: ${JSON.stringify(panel)}`);
        }
        log(`PASS: ${what} on air, the site and the watch page decode ${mime}: ${JSON.stringify(now)}, ${JSON.stringify(nowWatched)}; ${panel.text}`);
      }

      // The chair records the encoder's programme for a few seconds; the report lists the part
      // and downloads its file (Matroska, the H.264 as the encoder sent it).
      await studio.page.click('#recording-start');
      let state = null;
      await until('the console to say it records', TIMEOUT_MS, async () => {
        state = await studio.page.evaluate(() => ({
          text: document.getElementById('recording-state').textContent,
          stop: !document.getElementById('recording-stop').hidden,
        }));
        return state.stop && state.text.startsWith('Đang ghi hình (phần 1');
      }).catch((error) => {
        throw new Failure(`${error.message}; state: ${JSON.stringify(state)}`);
      });
      await studio.page.waitForTimeout(5_000);
      await studio.page.click('#recording-stop');
      await until('the console to say it stopped', TIMEOUT_MS, async () => {
        state = await studio.page.evaluate(() => document.getElementById('recording-state').textContent);
        return state === 'Không ghi hình.';
      }).catch((error) => {
        throw new Failure(`${error.message}; state: ${JSON.stringify(state)}`);
      });
      const report = await context.newPage();
      let row = null;
      await until('the report page to list the part with its link', TIMEOUT_MS, async () => {
        await report.goto(`${base}/report.html?meeting=${meeting}`);
        row = await report.evaluate(() => {
          const tr = document.querySelector('#r-recording-rows tr');
          if (!tr) return null;
          const cells = [...tr.querySelectorAll('td')].map((td) => td.textContent.trim());
          const link = tr.querySelector('a');
          return { cells, href: link ? link.href : null };
        });
        return row && row.href && row.cells[3] !== '';
      }).catch((error) => {
        throw new Failure(`${error.message}; row: ${JSON.stringify(row)}`);
      });
      if (row.cells[2] !== 'chủ trì dừng ghi') throw new Failure(`the part's end shown: ${JSON.stringify(row)}`);
      const file = await report.evaluate(async (href) => {
        const reply = await fetch(href);
        const bytes = new Uint8Array(await reply.arrayBuffer());
        return {
          status: reply.status,
          type: reply.headers.get('content-type'),
          disposition: reply.headers.get('content-disposition'),
          size: bytes.length,
          magic: [...bytes.slice(0, 4)].map((b) => b.toString(16)).join(' '),
          h264: new TextDecoder('latin1').decode(bytes.slice(0, 4096)).includes('V_MPEG4/ISO/AVC'),
        };
      }, row.href);
      if (
        file.status !== 200 ||
        file.type !== 'video/x-matroska' ||
        file.magic !== '1a 45 df a3' ||
        !file.h264 ||
        file.size < 20_000 ||
        !file.disposition.includes(`ghi-hinh-hop-${meeting}-phan-1`)
      ) {
        throw new Failure(`the recording downloaded from the report: ${JSON.stringify(file)}`);
      }
      log(`PASS: the chair recorded the encoder's programme; the report lists it and downloads it: ${JSON.stringify(row.cells)}, ${JSON.stringify(file)}`);
    },
  });
}

runScript(main);
