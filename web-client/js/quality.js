// The site page's reception quality: good, weak or audio only. It combines what the hub says
// (`reception`: the link is too weak for any video, so the hub sends sound only) with the
// page's own WebRTC statistics, sampled every 2 seconds: frames per second and size of the
// picture received, packet loss, jitter, and the round-trip time (and, where the browser
// reports it, the available incoming bitrate) of the connection in use.

import { t } from './i18n.js';

export const QUALITY_INTERVAL_MS = 2_000;

/**
 * Below or above these the link counts as weak. The picture height: the hub sends the lowest
 * simulcast layer (320x180 of the studio's 1280x720) only when the link carries no more.
 */
const WEAK = {
  framesPerSecond: 12,
  lossFraction: 0.04,
  jitterSeconds: 0.05,
  roundTripSeconds: 0.4,
  incomingBitsPerSecond: 300_000,
  frameHeight: 240,
};

/**
 * The level for one interval: `audio-only` when the hub says so, `unknown` before any media
 * statistics, else `good` or `weak` with the reasons (keys of `WEAK`).
 */
export function judgeQuality(audioOnly, figures) {
  if (audioOnly) return { level: 'audio-only', reasons: ['audioOnly'] };
  if (!figures || (figures.audioPackets === 0 && figures.video === null)) return { level: 'unknown', reasons: [] };
  const reasons = [];
  const video = figures.video;
  if (video) {
    if (video.framesPerSecond < WEAK.framesPerSecond) reasons.push('framesPerSecond');
    if (video.frameHeight > 0 && video.frameHeight < WEAK.frameHeight) reasons.push('frameHeight');
  }
  if (figures.lossFraction >= WEAK.lossFraction) reasons.push('lossFraction');
  if (figures.jitterSeconds >= WEAK.jitterSeconds) reasons.push('jitterSeconds');
  if (figures.roundTripSeconds !== null && figures.roundTripSeconds >= WEAK.roundTripSeconds) {
    reasons.push('roundTripSeconds');
  }
  if (figures.incomingBitsPerSecond !== null && figures.incomingBitsPerSecond < WEAK.incomingBitsPerSecond) {
    reasons.push('incomingBitsPerSecond');
  }
  return { level: reasons.length > 0 ? 'weak' : 'good', reasons };
}

/**
 * Reads `pc.getStats()` into cumulative counters: inbound audio and video (the video with the
 * most bytes: the picture on the stage) and the connection's selected candidate pair.
 */
export async function readCounters(pc) {
  const report = await pc.getStats();
  const counters = {
    at: performance.now(),
    audio: { packetsReceived: 0, packetsLost: 0, jitter: 0, fecPacketsReceived: 0 },
    video: null,
    roundTripSeconds: null,
    incomingBitsPerSecond: null,
  };
  let pairId = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      counters.audio.packetsReceived += s.packetsReceived || 0;
      counters.audio.packetsLost += Math.max(0, s.packetsLost || 0);
      counters.audio.jitter = Math.max(counters.audio.jitter, s.jitter || 0);
      counters.audio.fecPacketsReceived += s.fecPacketsReceived || 0;
    } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
      if (counters.video && counters.video.bytesReceived >= (s.bytesReceived || 0)) return;
      counters.video = {
        id: s.id,
        bytesReceived: s.bytesReceived || 0,
        packetsReceived: s.packetsReceived || 0,
        packetsLost: Math.max(0, s.packetsLost || 0),
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        jitter: s.jitter || 0,
      };
    } else if (s.type === 'candidate-pair' && (s.id === pairId || (pairId === null && s.nominated))) {
      if (typeof s.currentRoundTripTime === 'number') counters.roundTripSeconds = s.currentRoundTripTime;
      if (typeof s.availableIncomingBitrate === 'number') counters.incomingBitsPerSecond = s.availableIncomingBitrate;
    }
  });
  return counters;
}

/** The figures of the interval between two readings of `readCounters`. */
export function intervalFigures(before, now) {
  const seconds = Math.max(0.001, (now.at - before.at) / 1000);
  const delta = (a, b) => Math.max(0, (a || 0) - (b || 0));
  let received = delta(now.audio.packetsReceived, before.audio.packetsReceived);
  let lost = delta(now.audio.packetsLost, before.audio.packetsLost);
  let video = null;
  if (now.video) {
    // A new stream (renegotiation, another picture on the stage) starts from its own zero.
    const previous = before.video && before.video.id === now.video.id ? before.video : null;
    received += delta(now.video.packetsReceived, previous?.packetsReceived);
    lost += delta(now.video.packetsLost, previous?.packetsLost);
    video = {
      framesPerSecond: delta(now.video.framesDecoded, previous?.framesDecoded) / seconds,
      bitsPerSecond: (delta(now.video.bytesReceived, previous?.bytesReceived) * 8) / seconds,
      frameWidth: now.video.frameWidth,
      frameHeight: now.video.frameHeight,
    };
  }
  return {
    audioPackets: delta(now.audio.packetsReceived, before.audio.packetsReceived),
    audioFecPackets: delta(now.audio.fecPacketsReceived, before.audio.fecPacketsReceived),
    video,
    lossFraction: received + lost > 0 ? lost / (received + lost) : 0,
    jitterSeconds: Math.max(now.audio.jitter, now.video ? now.video.jitter : 0),
    roundTripSeconds: now.roundTripSeconds,
    incomingBitsPerSecond: now.incomingBitsPerSecond,
  };
}

/**
 * Shows the quality in `element` (a small badge on the stage) while the site is in the
 * meeting, with the figures in its tooltip; `data-quality` holds the level (`unknown`, `good`,
 * `weak`, `audio-only`). Returns `{ current() }`: the latest level, reasons and figures.
 */
export function installQualityIndicator(element, session) {
  let current = { level: 'unknown', reasons: [], figures: null };
  let previous = null;
  let previousPc = null;

  const render = () => {
    const joined = session.signalingState === 'joined' && Boolean(session.pc);
    element.hidden = !joined;
    element.dataset.quality = current.level;
    element.replaceChildren();
    const dot = document.createElement('span');
    dot.className = 'quality-dot';
    dot.setAttribute('aria-hidden', 'true');
    const text = document.createElement('span');
    text.textContent = t(`quality.${current.level}`);
    element.append(dot, text);
    element.title = describe(current);
  };

  const sample = async () => {
    const pc = session.pc;
    if (!pc || session.signalingState !== 'joined') {
      previous = null;
      previousPc = null;
      current = { level: 'unknown', reasons: [], figures: null };
      render();
      return;
    }
    let counters;
    try {
      counters = await readCounters(pc);
    } catch {
      return; // the connection closed while reading; the next round starts over
    }
    const figures = previous && previousPc === pc ? intervalFigures(previous, counters) : null;
    previous = counters;
    previousPc = pc;
    current = { ...judgeQuality(session.audioOnly, figures), figures };
    render();
  };

  // The hub's word on audio only shows at once; the statistics follow at the next sample.
  session.addEventListener('statechange', () => {
    if (session.audioOnly && current.level !== 'audio-only') {
      current = { ...current, level: 'audio-only', reasons: ['audioOnly'] };
    } else if (!session.audioOnly && current.level === 'audio-only') {
      current = { ...current, level: 'unknown', reasons: [] };
    }
    render();
  });
  window.addEventListener('languagechange', render);
  setInterval(() => {
    sample().catch(() => {});
  }, QUALITY_INTERVAL_MS);
  render();
  return {
    current: () => current,
  };
}

/** The tooltip: the level's explanation and the interval's figures. */
function describe({ level, figures }) {
  const lines = [t(`quality.${level}.hint`)];
  if (figures) {
    const parts = [];
    if (figures.video) {
      parts.push(
        t('quality.picture', {
          width: figures.video.frameWidth,
          height: figures.video.frameHeight,
          fps: Math.round(figures.video.framesPerSecond),
        }),
      );
    }
    parts.push(t('quality.loss', { percent: (figures.lossFraction * 100).toFixed(1) }));
    parts.push(t('quality.jitter', { ms: Math.round(figures.jitterSeconds * 1000) }));
    if (figures.roundTripSeconds !== null) parts.push(t('quality.rtt', { ms: Math.round(figures.roundTripSeconds * 1000) }));
    lines.push(parts.join(' · '));
  }
  return lines.join('\n');
}
