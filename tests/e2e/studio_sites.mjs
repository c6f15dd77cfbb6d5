// End-to-end: one studio and four sites in headless Chromium against a running hub.
//
//   node tests/e2e/studio_sites.mjs http://127.0.0.1:PORT
//
// Sets the meeting up through the HTTP API the way an organizer would (the four sites in the
// directory, a meeting with them on its roster, started), then opens the studio page and the
// four site pages with the meeting's join links (each site joins from its device check).
// Passes when every page joins under the name the directory gives it, every site decodes the
// studio's video (frames rising, <video> has a size) and audio (samples rising), and the
// studio decodes each of the four sites' video in that site's tile. Exit code 0 on success; 1 with the reasons on failure; 2 on bad usage or
// setup. Env: E2E_SCREENSHOT_DIR (optional) receives studio.png and site-1.png at the end.

import {
  Failure,
  PageWatch,
  gotoPage,
  joinPage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
  screenshot,
  startMeeting,
} from './harness.mjs';

/** The four sites: real communes of Tuyên Quang (GSO codes), with the delegates they expect. */
const SITES = [
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 60 },
  { code: '2266', name: 'Xã Lâm Bình', delegates: 45 },
  { code: '2302', name: 'Xã Minh Quang', delegates: 50 },
  { code: '2296', name: 'Xã Bình An', delegates: 40 },
];
const STUDIO_NAME = 'Điểm cầu trung tâm Tuyên Quang';
const JOIN_TIMEOUT_MS = 20_000;
const MEDIA_TIMEOUT_MS = 60_000;
const SAMPLE_INTERVAL_MS = 1_500;
const PROGRESS_EVERY_MS = 5_000;
const WATCHDOG_MS = 150_000;

/** One browser page, what it printed, and its latest sample and verdict. */
class Participant {
  constructor(label, role, name, page) {
    this.label = label;
    this.role = role;
    this.name = name;
    this.page = page;
    this.watch = new PageWatch(label, page);
    this.previous = null;
    this.verdict = { ok: false, detail: 'no sample yet' };
    this.lastPrinted = '';
    this.lastPrintedAt = 0;
  }
}

async function main() {
  const base = parseBaseUrl(process.argv[2], 'studio_sites.mjs');
  const meeting = await setUpMeeting(base);
  log(`hub ${base}, meeting ${meeting.id}, 1 studio + ${SITES.length} sites`);

  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await openParticipant(context, base, meeting.links.studio, 'studio', 'studio', STUDIO_NAME);
      const sites = await Promise.all(
        SITES.map((site, index) =>
          openParticipant(context, base, meeting.links.sites[site.code], `site ${index + 1}`, 'site', site.name),
        ),
      );
      const everyone = [studio, ...sites];
      const studioId = studio.joined.participant;
      const siteIds = sites.map((site) => site.joined.participant);
      log(`all joined: studio ${studioId}, sites ${siteIds.join(', ')}`);

      const ok = await pollUntilMediaFlows(everyone, studio, sites);
      await screenshot(studio.page, 'studio.png');
      await screenshot(sites[0].page, 'site-1.png');
      if (!ok) {
        reportFailure(everyone);
        process.exitCode = 1;
        return;
      }
      log('PASS: every site decodes the studio (video + audio) and the studio decodes all 4 sites');
      for (const participant of everyone) log(`  ${participant.label}: ${participant.verdict.detail}`);
    },
  });
}

/** The meeting of the four sites, started, with a join link for each page. */
async function setUpMeeting(base) {
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử đầu cuối: điểm cầu trung tâm và 4 điểm cầu',
    studioName: STUDIO_NAME,
    sites: SITES,
  });
  for (const site of SITES) {
    if (!meeting.links.sites[site.code]) throw new Failure(`meeting ${meeting.id} has no join link for ${site.code}`);
  }
  if (!meeting.links.studio) throw new Failure(`meeting ${meeting.id} has no studio link`);
  return meeting;
}

async function openParticipant(context, base, link, label, role, name) {
  const page = await context.newPage();
  const participant = new Participant(label, role, name, page);
  const url = `${base}${link}`;
  await gotoPage(page, label, url, JOIN_TIMEOUT_MS);
  try {
    // A site page opens on its device check; the hall joins with its button.
    await joinPage(page, label, { site: role === 'site', timeout: JOIN_TIMEOUT_MS });
  } catch (error) {
    participant.watch.printRecent(15);
    throw error;
  }
  participant.joined = await page.evaluate(() => window.diemcau.state());
  // The code decides who the page is: the hub's name and role must be the roster's.
  if (participant.joined.role !== role || participant.joined.name !== name) {
    throw new Failure(
      `${label} joined as ${participant.joined.role} "${participant.joined.name}", expected ${role} "${name}"`,
    );
  }
  log(`${label} (${name}) joined as ${participant.joined.participant}`);
  return participant;
}

/** Samples every page until all checks pass in one round, or the time limit. */
async function pollUntilMediaFlows(everyone, studio, sites) {
  const deadline = Date.now() + MEDIA_TIMEOUT_MS;
  const studioId = studio.joined.participant;
  const siteIds = sites.map((site) => site.joined.participant);
  let round = 0;
  for (;;) {
    round += 1;
    const samples = await Promise.all(everyone.map((participant) => sample(participant.page)));
    const now = Date.now();
    everyone.forEach((participant, index) => {
      const current = samples[index];
      participant.verdict =
        participant.role === 'studio'
          ? judgeStudio(participant.previous, current, siteIds)
          : judgeSite(participant.previous, current, studioId);
      participant.previous = current;
      const changed = participant.verdict.summary !== participant.lastPrinted;
      if (round > 1 && (changed || now - participant.lastPrintedAt >= PROGRESS_EVERY_MS)) {
        log(`${participant.label.padEnd(7)} ${participant.verdict.ok ? 'OK  ' : 'wait'} ${participant.verdict.detail}`);
        participant.lastPrinted = participant.verdict.summary;
        participant.lastPrintedAt = now;
      }
    });
    if (round > 1 && everyone.every((participant) => participant.verdict.ok)) return true;
    if (now >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
  }
}

/** Reads the page's WebRTC stats and remote <video> elements. Runs inside the page. */
function sample(page) {
  return page
    .evaluate(async () => {
      const d = window.diemcau;
      if (!d) return { error: 'window.diemcau is missing' };
      const inbound = [];
      if (d.pc) {
        const report = await d.pc.getStats();
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          inbound.push({
            id: s.id,
            kind: s.kind,
            trackIdentifier: s.trackIdentifier,
            packetsReceived: s.packetsReceived ?? 0,
            framesDecoded: s.framesDecoded ?? 0,
            frameWidth: s.frameWidth ?? 0,
            frameHeight: s.frameHeight ?? 0,
            totalSamplesReceived: s.totalSamplesReceived ?? 0,
          });
        });
      }
      const videos = [...document.querySelectorAll('video[data-remote]')].map((v) => ({
        participant: v.dataset.participant || null,
        videoTracks: v.srcObject ? v.srcObject.getVideoTracks().map((track) => track.id) : [],
        width: v.videoWidth,
        height: v.videoHeight,
      }));
      return { at: Date.now(), state: d.state(), inbound, videos };
    })
    .catch((error) => ({ error: `evaluate failed: ${error.message}` }));
}

function framesRising(previous, current, id) {
  const before = previous?.inbound?.find((s) => s.id === id);
  const now = current.inbound.find((s) => s.id === id);
  if (!before || !now) return 0;
  return now.framesDecoded - before.framesDecoded;
}

function rate(delta, previous, current) {
  const seconds = previous && current.at > previous.at ? (current.at - previous.at) / 1000 : 1;
  return delta / seconds;
}

function stateText(state) {
  return `signaling=${state.signaling} pc=${state.connection} hub=${state.media}`;
}

function judgeSite(previous, current, studioId) {
  if (current.error) return verdict(false, current.error);
  const problems = [];
  const parts = [];

  const videoStats = current.inbound.filter((s) => s.kind === 'video');
  const risingVideo = videoStats
    .map((s) => ({ s, delta: framesRising(previous, current, s.id) }))
    .filter(({ delta }) => delta > 0);
  if (risingVideo.length > 0) {
    const { s, delta } = risingVideo[0];
    parts.push(`video ${s.frameWidth}x${s.frameHeight} ${rate(delta, previous, current).toFixed(0)} fps (${s.framesDecoded} frames)`);
  } else {
    problems.push(`studio video frames not rising (${videoStats.length} inbound video, frames ${videoStats.map((s) => s.framesDecoded).join('/') || '-'})`);
  }

  const audioStats = current.inbound.filter((s) => s.kind === 'audio');
  const risingAudio = audioStats.filter((s) => {
    const before = previous?.inbound?.find((b) => b.id === s.id);
    return before && s.totalSamplesReceived > before.totalSamplesReceived;
  });
  if (risingAudio.length > 0) {
    parts.push(`audio ${risingAudio[0].totalSamplesReceived} samples`);
  } else {
    problems.push(`studio audio samples not rising (${audioStats.length} inbound audio, samples ${audioStats.map((s) => s.totalSamplesReceived).join('/') || '-'})`);
  }

  const element = current.videos[0];
  if (!element) {
    problems.push('no studio <video> element');
  } else {
    if (element.width > 0) parts.push(`<video> ${element.width}x${element.height}`);
    else problems.push('<video> has no picture (videoWidth 0)');
    if (element.participant !== studioId) {
      problems.push(`<video> shows participant ${element.participant}, not the studio ${studioId}`);
    }
  }
  return verdict(problems.length === 0, [...parts, ...problems].join(' · '), current.state);
}

function judgeStudio(previous, current, siteIds) {
  if (current.error) return verdict(false, current.error);
  const problems = [];
  const parts = [];

  const rising = current.inbound.filter((s) => s.kind === 'video' && framesRising(previous, current, s.id) > 0);
  parts.push(`${rising.length}/${siteIds.length} inbound videos decoding`);
  if (rising.length < siteIds.length) problems.push(`only ${rising.length} inbound video streams decoding`);

  for (const id of siteIds) {
    const tile = current.videos.find((v) => v.participant === id);
    if (!tile) {
      problems.push(`${id}: no tile`);
      continue;
    }
    const stats = current.inbound.find((s) => s.kind === 'video' && tile.videoTracks.includes(s.trackIdentifier));
    const delta = stats ? framesRising(previous, current, stats.id) : 0;
    if (tile.width > 0 && delta > 0) {
      parts.push(`${id} ${tile.width}x${tile.height} ${rate(delta, previous, current).toFixed(0)} fps`);
    } else {
      problems.push(`${id}: tile ${tile.width}x${tile.height}, ${stats ? `frames +${delta}` : 'no stats for its track'}`);
    }
  }
  const extra = current.videos.filter((v) => !siteIds.includes(v.participant));
  if (extra.length > 0) problems.push(`unexpected tiles: ${extra.map((v) => v.participant).join(', ')}`);
  return verdict(problems.length === 0, [...parts, ...problems].join(' · '), current.state);
}

function verdict(ok, detail, state) {
  const full = state ? `${detail} [${stateText(state)}]` : detail;
  // The summary leaves out counters so that progress lines print on change, not every round.
  return { ok, detail: full, summary: `${ok} ${full.replace(/\d+/g, '#')}` };
}

function reportFailure(everyone) {
  log(`FAIL: media did not flow everywhere within ${MEDIA_TIMEOUT_MS / 1000} s`);
  for (const participant of everyone) {
    const state = participant.previous?.state;
    log(`  ${participant.label} (${participant.name}): ${participant.verdict.ok ? 'OK' : 'FAILED'}: ${participant.verdict.detail}`);
    if (state?.error) log(`    last error: ${JSON.stringify(state.error)}`);
    participant.watch.printRecent(20);
  }
}

runScript(main);
