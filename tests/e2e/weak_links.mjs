// End-to-end: a studio and three sites in headless Chromium, each site behind an impaired
// link of its own (a userspace UDP relay run by the Rust test, tests/common/impair.rs).
//
//   E2E_HUB_MEDIA_PORT=P E2E_RELAYS=fast=P1,middle=P2,slow=P3 E2E_RELAY_CONTROL=P4 \
//     node tests/e2e/weak_links.mjs http://127.0.0.1:PORT
//
// The studio publishes its fake 1280x720 camera in three simulcast layers. The sites' links
// from the hub: `fast` unconstrained, `middle` 1 Mbit/s, `slow` 300 kbit/s with 1 %
// loss (10-40 ms delay each way). Each site page rewrites the hub's ICE candidate to its
// relay's port, so all its media crosses its link. The sites publish their microphone only (a
// hall without camera): their pictures are not under test, and three more encoders and
// decoders would only load the machine.
//
// Passes when, in steady state, each site decodes the studio's layer its link carries (720,
// 360 and 180 lines high) and hears the studio, with redundant audio (RED) arriving; the page's
// quality badge says "good" on the fast site and "weak" on the slow one. Then the slow link
// collapses to 50 kbit/s: the hub must fall to audio only for it (the studio's console and the
// page's badge say so) while its audio keeps arriving and its picture stops; when the link is
// restored (to 500 kbit/s), the picture comes back. Exit code 0 on success; 1 with the reasons on failure; 2 on
// bad usage or setup.

import dgram from 'node:dgram';

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
  screenshot,
  startMeeting,
} from './harness.mjs';

/** The three sites (communes of Tuyên Quang) and the link each has from the hub. */
const SITES = [
  { code: '2269', name: 'Xã Thượng Lâm', delegates: 50, path: 'fast', layer: 'high', height: 720 },
  { code: '2266', name: 'Xã Lâm Bình', delegates: 50, path: 'middle', layer: 'middle', height: 360 },
  { code: '2302', name: 'Xã Minh Quang', delegates: 50, path: 'slow', layer: 'low', height: 180 },
];
const LINKS = {
  fast: { down: 'delay=10', up: 'delay=10' },
  middle: { down: 'rate=1000000 delay=20', up: 'delay=20' },
  slow: { down: 'rate=300000 delay=40 loss=10', up: 'delay=40' },
};
const COLLAPSED = 'rate=50000';
// The slow link comes back at 500 kbit/s, not at its first 300: climbing back from audio only
// on 300 kbit/s with loss sits at the edge (coming back needs an estimate of about 230 kbit/s:
// the lowest layer with a 10 % margin plus 64 kbit/s set aside for audio; the estimate there
// reads about 200-270 kbit/s), so such a site may stay on audio only, which a test cannot tell
// from a fault. The media core's scenario tests cover that climb with emulated links.
const RESTORED = 'rate=500000 delay=40 loss=10';
const STUDIO_NAME = 'Điểm cầu trung tâm Tuyên Quang';
const JOIN_TIMEOUT_MS = 30_000;
const LAYERS_TIMEOUT_MS = 75_000;
const AUDIO_ONLY_TIMEOUT_MS = 45_000;
const RECOVERY_TIMEOUT_MS = 60_000;
const SAMPLE_MS = 2_000;
/** Samples in a row that must agree before a state counts as steady. */
const STEADY_SAMPLES = 3;
const WATCHDOG_MS = 190_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'weak_links.mjs');
  const hubPort = Number(process.env.E2E_HUB_MEDIA_PORT);
  const controlPort = Number(process.env.E2E_RELAY_CONTROL);
  const relays = Object.fromEntries(
    (process.env.E2E_RELAYS || '')
      .split(',')
      .filter(Boolean)
      .map((entry) => entry.split('='))
      .map(([name, port]) => [name, Number(port)]),
  );
  if (!hubPort || !controlPort || SITES.some((site) => !relays[site.path])) {
    throw new SetupError('E2E_HUB_MEDIA_PORT, E2E_RELAY_CONTROL and E2E_RELAYS (fast, middle, slow) are needed');
  }
  const relay = new RelayControl(controlPort);
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử đường truyền yếu',
    studioName: STUDIO_NAME,
    sites: SITES,
  });
  log(`hub ${base} (media port ${hubPort}), meeting ${meeting.id}; relays ${JSON.stringify(relays)}`);
  for (const [path, link] of Object.entries(LINKS)) {
    await relay.set(path, 'down', link.down);
    await relay.set(path, 'up', link.up);
  }

  await runInChromium({
    // The studio's page is the organizer's.
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await openPage(context, `${base}${meeting.links.studio}`, 'studio');
      const sites = [];
      for (const site of SITES) {
        const page = await openPage(context, `${base}${meeting.links.sites[site.code]}`, site.path, {
          hubPort,
          relayPort: relays[site.path],
        });
        sites.push({ ...site, page: page.page, watch: page.watch, history: [] });
      }
      try {
        await run(studio, sites, relay);
      } catch (error) {
        for (const site of sites) site.watch.printRecent(12);
        log(`relay: ${(await relay.stats().catch((e) => e.message)).replace(/\n/g, '; ')}`);
        await screenshot(studio.page, 'weak-links-studio.png');
        for (const site of sites) await screenshot(site.page, `weak-links-${site.path}.png`);
        throw error;
      } finally {
        relay.close();
      }
    },
  });
}

async function run(studio, sites, relay) {
  // 1. Every site in steady state on the layer its link carries, hearing RED audio.
  await until(
    'each site decodes the layer its link carries',
    LAYERS_TIMEOUT_MS,
    sites,
    studio,
    (site, sample) => {
      const problems = [];
      if (!sample.video || sample.video.frameHeight !== site.height) {
        problems.push(`picture ${sample.video ? sample.video.frameHeight : '-'} lines, want ${site.height}`);
      }
      if (!(sample.framesPerSecond > 3)) problems.push(`${sample.framesPerSecond.toFixed(1)} frames/s`);
      if (!(sample.audioPacketsPerSecond > 20)) problems.push(`${sample.audioPacketsPerSecond.toFixed(0)} audio packets/s`);
      if (site.path === 'fast' && sample.quality !== 'good') problems.push(`badge ${sample.quality}, want good`);
      if (site.path === 'slow' && sample.quality !== 'weak') problems.push(`badge ${sample.quality}, want weak`);
      return problems;
    },
  );
  log('PASS: high, middle and low layers reach the fast, middle and slow sites');
  await expectRedAudio(sites, relay);

  // 2. The slow link collapses: audio only, sound still arriving, no picture.
  const slow = sites.find((site) => site.path === 'slow');
  await relay.set('slow', 'down', COLLAPSED);
  log(`slow link collapsed (${COLLAPSED})`);
  await until('the slow site falls to audio only', AUDIO_ONLY_TIMEOUT_MS, [slow], studio, (site, sample, console) => {
    const problems = [];
    if (sample.quality !== 'audio-only') problems.push(`badge ${sample.quality}`);
    if (!sample.audioOnly) problems.push('no reception audio_only from the hub');
    const row = console && console.sites ? console.sites.find((s) => s.site === site.code) : null;
    if (!row || row.state !== 'audio_only') problems.push(`studio console state ${row ? row.state : '-'}`);
    if (sample.framesPerSecond > 1) problems.push(`picture still moving (${sample.framesPerSecond.toFixed(1)} frames/s)`);
    if (!(sample.audioPacketsPerSecond > 5)) problems.push(`${sample.audioPacketsPerSecond.toFixed(0)} audio packets/s`);
    return problems;
  });
  const text = await slow.page.evaluate(() => document.getElementById('quality').textContent);
  if (!/chỉ có tiếng/.test(text)) throw new Failure(`the slow site's badge reads "${text}", not audio only in Vietnamese`);
  log(`PASS: the collapsed site is on audio only ("${text}") and still hears the studio`);

  // 3. The link is restored: the picture comes back by itself.
  await relay.set('slow', 'down', RESTORED);
  log(`slow link restored (${RESTORED})`);
  await until('the slow site gets its picture back', RECOVERY_TIMEOUT_MS, [slow], studio, (site, sample) => {
    const problems = [];
    if (sample.audioOnly) problems.push('hub still says audio only');
    if (sample.quality === 'audio-only' || sample.quality === 'unknown') problems.push(`badge ${sample.quality}`);
    if (!(sample.framesPerSecond > 3)) problems.push(`${sample.framesPerSecond.toFixed(1)} frames/s`);
    if (!(sample.audioPacketsPerSecond > 20)) problems.push(`${sample.audioPacketsPerSecond.toFixed(0)} audio packets/s`);
    return problems;
  });
  log('PASS: the picture is back on the restored link');
  log(`relay: ${(await relay.stats()).replace(/\n/g, '; ')}`);
}

/**
 * Every site's audio arrives as RED: its SDP has the hub list `red/48000/2` first for audio,
 * and its link carried RTP packets of that payload type and none of plain Opus. (Chromium's
 * statistics name the decoded codec, Opus, and do not count RED's redundancy as FEC.)
 */
async function expectRedAudio(sites, relay) {
  const stats = await relay.stats();
  for (const site of sites) {
    const sdp = await site.page.evaluate(() => window.diemcau.pc.remoteDescription.sdp);
    const red = /a=rtpmap:(\d+) red\/48000\/2/.exec(sdp);
    const opus = /a=rtpmap:(\d+) opus\/48000\/2/.exec(sdp);
    const audioLines = sdp.split('\r\n').filter((l) => l.startsWith('m=audio'));
    if (!red || !opus) throw new Failure(`${site.path}: the hub's SDP has no RED or no Opus`);
    if (!audioLines.every((l) => l.split(' ')[3] === red[1])) {
      throw new Failure(`${site.path}: RED is not listed first: ${audioLines.join(' | ')}`);
    }
    const line = stats.split('\n').find((l) => l.startsWith(`${site.path} down `)) || '';
    const counts = Object.fromEntries(
      (/rtp=(\S*)/.exec(line)?.[1] || '').split(',').filter(Boolean).map((e) => e.split(':').map(Number)),
    );
    const redPackets = counts[Number(red[1])] || 0;
    const opusPackets = counts[Number(opus[1])] || 0;
    log(`  ${site.path}: ${redPackets} RED audio packets (payload type ${red[1]}), ${opusPackets} plain Opus on its link`);
    if (redPackets < 200 || opusPackets > 0) {
      throw new Failure(`${site.path}: audio should arrive as RED: ${redPackets} RED, ${opusPackets} plain Opus packets`);
    }
  }
  log('PASS: every site receives its audio as RED (redundant Opus)');
}

/**
 * Samples `sites` every 2 s until `judge(site, sample, console)` finds no problem for every
 * site in STEADY_SAMPLES samples in a row; fails with the latest problems after `timeoutMs`.
 */
async function until(what, timeoutMs, sites, studio, judge) {
  const deadline = Date.now() + timeoutMs;
  const streak = new Map(sites.map((site) => [site.path, 0]));
  let lastLog = 0;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    const console = await studio.page.evaluate(() => window.diemcau?.session?.console ?? null).catch(() => null);
    const sent = await studioSending(studio.page);
    const lines = [];
    for (const site of sites) {
      const sample = await sampleSite(site);
      const problems = sample.error ? [sample.error] : judge(site, sample, console);
      streak.set(site.path, problems.length === 0 ? streak.get(site.path) + 1 : 0);
      const row = console && console.sites ? console.sites.find((s) => s.site === site.code) : null;
      const hub = row
        ? ` hub:${row.state} out ${row.bitrate_out_kbps} kbit/s loss ${row.loss_permille}‰ rtt ${row.rtt_ms} ms`
        : '';
      lines.push(`${site.path}: ${describeSample(sample)}${hub}${problems.length ? ` — ${problems.join(', ')}` : ' ok'}`);
      site.lastProblems = problems;
    }
    const done = sites.every((site) => streak.get(site.path) >= STEADY_SAMPLES);
    if (done || Date.now() - lastLog >= 6_000) {
      log(`  studio sends: ${sent}`);
      lines.forEach((line) => log(`  ${line}`));
      lastLog = Date.now();
    }
    if (done) return;
    if (Date.now() >= deadline) {
      const problems = sites.filter((site) => site.lastProblems.length).map((site) => `${site.path}: ${site.lastProblems.join(', ')}`);
      throw new Failure(`${what}: not within ${timeoutMs / 1000} s (${problems.join('; ')})`);
    }
  }
}

/** What the studio's browser sends: each simulcast layer and the audio, for the log. */
async function studioSending(page) {
  return page
    .evaluate(async () => {
      const pc = window.diemcau && window.diemcau.pc;
      if (!pc) return 'no peer connection';
      const report = await pc.getStats();
      const parts = [];
      report.forEach((s) => {
        if (s.type !== 'outbound-rtp') return;
        const codec = s.codecId ? report.get(s.codecId) : null;
        if (s.kind === 'video') {
          parts.push(
            `${s.rid || '-'} ${s.frameWidth || 0}x${s.frameHeight || 0} ${Math.round(s.framesPerSecond || 0)} f/s ` +
              `${Math.round((s.targetBitrate || 0) / 1000)} kbit/s target${s.qualityLimitationReason && s.qualityLimitationReason !== 'none' ? ` (${s.qualityLimitationReason})` : ''}`,
          );
        } else {
          parts.push(`audio ${codec ? codec.mimeType : '-'} ${Math.round((s.bytesSent || 0) / Math.max(1, s.packetsSent || 0))} B/packet`);
        }
      });
      const audioLine = (pc.remoteDescription?.sdp || '').split('\r\n').find((l) => l.startsWith('m=audio')) || '';
      return `${parts.join('; ')}; hub answer ${audioLine}`;
    })
    .catch((error) => error.message.split('\n')[0]);
}

/** The site page's view: its inbound studio video and audio, its badge, the hub's word. */
async function sampleSite(site) {
  const now = await site.page
    .evaluate(async () => {
      const d = window.diemcau;
      if (!d || !d.pc) return { error: 'no peer connection' };
      const report = await d.pc.getStats();
      let video = null;
      let audio = null;
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video' && (!video || s.bytesReceived > video.bytesReceived)) {
          video = {
            bytesReceived: s.bytesReceived || 0,
            framesDecoded: s.framesDecoded || 0,
            frameWidth: s.frameWidth || 0,
            frameHeight: s.frameHeight || 0,
          };
        }
        if (s.kind === 'audio' && (!audio || s.packetsReceived > audio.packetsReceived)) {
          const codec = s.codecId ? report.get(s.codecId) : null;
          audio = {
            bytesPerPacket: Math.round((s.bytesReceived || 0) / Math.max(1, s.packetsReceived || 0)),
            packetsReceived: s.packetsReceived || 0,
            fecPacketsReceived: s.fecPacketsReceived || 0,
            codec: codec ? codec.mimeType : null,
          };
        }
      });
      return {
        at: performance.now(),
        video,
        audio,
        quality: document.getElementById('quality').dataset.quality,
        audioOnly: Boolean(d.session.audioOnly),
      };
    })
    .catch((error) => ({ error: error.message.split('\n')[0] }));
  if (now.error) return now;
  const before = site.history.at(-1);
  site.history.push(now);
  if (site.history.length > 5) site.history.shift();
  const seconds = before ? Math.max(0.001, (now.at - before.at) / 1000) : 1;
  const rate = (pick) => (before && pick(now) !== null && pick(before) !== null ? Math.max(0, pick(now) - pick(before)) / seconds : 0);
  return {
    ...now,
    framesPerSecond: rate((s) => (s.video ? s.video.framesDecoded : null)),
    audioPacketsPerSecond: rate((s) => (s.audio ? s.audio.packetsReceived : null)),
    kbps: rate((s) => (s.video ? s.video.bytesReceived : null)) * 0.008,
  };
}

function describeSample(sample) {
  if (sample.error) return sample.error;
  const video = sample.video ? `${sample.video.frameWidth}x${sample.video.frameHeight}` : 'no video';
  const audio = sample.audio
    ? `${sample.audio.codec} ${sample.audio.bytesPerPacket} B/packet fec ${sample.audio.fecPacketsReceived}`
    : 'no audio';
  return `${video} ${sample.framesPerSecond.toFixed(1)} f/s ${sample.kbps.toFixed(0)} kbit/s, audio ${sample.audioPacketsPerSecond.toFixed(0)} p/s (${audio}), badge ${sample.quality}${sample.audioOnly ? ', hub: audio only' : ''}`;
}

/**
 * Opens a page. For a site behind a relay, the page's `setRemoteDescription` first rewrites
 * the hub's UDP ICE candidate (127.0.0.1 and the hub's media port) to the relay's port, and
 * drops its TCP candidate.
 */
async function openPage(context, url, label, relay = null) {
  const page = await context.newPage();
  const watch = new PageWatch(label, page);
  if (relay) {
    await page.addInitScript(() => {
      const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = (constraints) => open({ audio: constraints ? constraints.audio : true });
    });
    await page.addInitScript(({ hubPort, relayPort }) => {
      const original = RTCPeerConnection.prototype.setRemoteDescription;
      const candidate = new RegExp(`^(a=candidate:\\S+ \\d+ udp \\d+ 127\\.0\\.0\\.1 )${hubPort}( typ)`, 'gim');
      // The relay carries UDP only: the hub's TCP candidate would be a way around the weak link.
      const tcpCandidate = /^a=candidate:\S+ \d+ tcp .*\r?\n/gim;
      RTCPeerConnection.prototype.setRemoteDescription = function setRemoteDescription(description, ...rest) {
        if (description && typeof description.sdp === 'string') {
          const sdp = description.sdp.replace(tcpCandidate, '').replace(candidate, `$1${relayPort}$2`);
          if (sdp === description.sdp) console.warn('[weak-links] no hub candidate to send through the relay');
          return original.call(this, { type: description.type, sdp }, ...rest);
        }
        return original.call(this, description, ...rest);
      };
    }, relay);
  }
  await gotoPage(page, label, url, JOIN_TIMEOUT_MS);
  try {
    // A site's page opens on its device check; the studio's goes straight in.
    await joinPage(page, label, { site: Boolean(relay), timeout: JOIN_TIMEOUT_MS });
  } catch (error) {
    watch.printRecent(15);
    throw error;
  }
  log(`${label} joined`);
  return { page, watch };
}

/** The relay's control port: `set` a link, read its `stats`. */
class RelayControl {
  constructor(port) {
    this.port = port;
    this.socket = dgram.createSocket('udp4');
    this.socket.unref();
  }

  command(text) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.off('message', onMessage);
        reject(new Failure(`the relay did not answer "${text}"`));
      }, 2_000);
      const onMessage = (message) => {
        clearTimeout(timer);
        this.socket.off('message', onMessage);
        resolve(message.toString());
      };
      this.socket.on('message', onMessage);
      this.socket.send(text, this.port, '127.0.0.1');
    });
  }

  async set(path, direction, settings) {
    const reply = await this.command(`set ${path} ${direction} ${settings}`);
    if (reply !== 'ok') throw new SetupError(`relay: set ${path} ${direction} ${settings}: ${reply}`);
  }

  stats() {
    return this.command('stats');
  }

  close() {
    this.socket.close();
  }
}

runScript(main);
