// End-to-end: a site leaves and another joins while the studio stays, in headless Chromium.
//
//   node tests/e2e/site_replaced.mjs http://127.0.0.1:PORT
//
// The studio and sites A and B join; once the studio decodes both, B closes its page and C
// joins. The hub reuses B's m-lines for C's tracks (same mids, a new stream id and SSRC), so
// the studio's peer connection must keep its number of m-lines and transceivers, Chromium
// must fire `ontrack` with C's participant id, and the studio must decode C's video in C's
// tile. Exit code 0 on success; 1 with the reasons on failure; 2 on bad usage or setup.

import {
  Failure,
  log,
  openJoined,
  parseBaseUrl,
  runInChromium,
  runScript,
  startMeeting,
} from './harness.mjs';

const SITES = [
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 60 },
  { code: '2266', name: 'Xã Lâm Bình', delegates: 45 },
  { code: '2302', name: 'Xã Minh Quang', delegates: 50 },
];
const STUDIO_NAME = 'Điểm cầu trung tâm Tuyên Quang';
const JOIN_TIMEOUT_MS = 20_000;
const MEDIA_TIMEOUT_MS = 45_000;
const SAMPLE_INTERVAL_MS = 1_000;
const WATCHDOG_MS = 150_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'site_replaced.mjs');
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử đầu cuối: điểm cầu rời đi, điểm cầu khác vào',
    studioName: STUDIO_NAME,
    sites: SITES,
  });
  const link = (code) => `${base}${meeting.links.sites[code]}`;

  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await open(context, `${base}${meeting.links.studio}`, 'studio', false);
      const a = await open(context, link(SITES[0].code), 'site A', true);
      const b = await open(context, link(SITES[1].code), 'site B', true);
      await untilDecoding(studio, [a.id, b.id]);
      const before = await lines(studio.page);
      log(`studio decodes A and B: ${before.mLines} m-lines, ${before.transceivers} transceivers`);

      await b.page.close();
      await until('the studio to stop receiving B', async () => {
        const now = await lines(studio.page);
        return now.sending === before.sending - 2 && now.stable;
      });
      const c = await open(context, link(SITES[2].code), 'site C', true);
      await untilDecoding(studio, [a.id, c.id]);
      const after = await lines(studio.page);
      log(`studio decodes A and C: ${after.mLines} m-lines, ${after.transceivers} transceivers`);
      if (after.mLines !== before.mLines || after.transceivers !== before.transceivers) {
        throw new Failure(
          `the studio's SDP grew: ${before.mLines} → ${after.mLines} m-lines, ` +
            `${before.transceivers} → ${after.transceivers} transceivers`,
        );
      }
      const owners = Object.values(await studio.page.evaluate(() => window.diemcau.trackOwners()));
      if (!owners.includes(c.id)) throw new Failure(`no track of C (${c.id}) in ${JSON.stringify(owners)}`);
      log('PASS: C reuses B\'s m-lines and the studio decodes it in its tile');
    },
  });
}

function open(context, url, label, site) {
  return openJoined(context, label, url, { site, timeout: JOIN_TIMEOUT_MS });
}

/** The studio's m-lines and transceivers, how many the hub sends on, and whether no offer is pending. */
function lines(page) {
  return page.evaluate(() => {
    const pc = window.diemcau.pc;
    const sdp = pc?.remoteDescription?.sdp ?? '';
    const sections = sdp.split(/\r\nm=/).slice(1);
    return {
      mLines: sections.length,
      sending: sections.filter((s) => s.includes('\r\na=sendonly')).length,
      transceivers: pc ? pc.getTransceivers().length : 0,
      stable: pc?.signalingState === 'stable',
    };
  });
}

/** Waits until the studio decodes a rising video in the tile of each of `ids`. */
async function untilDecoding(studio, ids) {
  let previous = await frames(studio.page);
  let detail = '';
  await until(`the studio to decode ${ids.join(', ')}`, async () => {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
    const now = await frames(studio.page);
    const rising = ids.filter((id) => (now[id] ?? 0) > (previous[id] ?? 0));
    detail = JSON.stringify(now);
    previous = now;
    return rising.length === ids.length;
  }, () => detail);
}

/** Frames decoded per participant, read from the track shown in its tile. */
function frames(page) {
  return page.evaluate(async () => {
    const pc = window.diemcau.pc;
    if (!pc) return {};
    const decoded = {};
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') decoded[s.trackIdentifier] = s.framesDecoded ?? 0;
    });
    const out = {};
    for (const video of document.querySelectorAll('video[data-remote]')) {
      const track = video.srcObject?.getVideoTracks()[0];
      if (video.dataset.participant && track && video.videoWidth > 0) {
        out[video.dataset.participant] = decoded[track.id] ?? 0;
      }
    }
    return out;
  });
}

async function until(what, holds, explain = () => '') {
  const deadline = Date.now() + MEDIA_TIMEOUT_MS;
  while (!(await holds())) {
    if (Date.now() >= deadline) throw new Failure(`timed out waiting for ${what} ${explain()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

runScript(main);
