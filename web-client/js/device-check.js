// The site page before joining: the hall sees its camera picture and its microphone level, and
// joins when ready. Meanwhile the page is on standby at the hub (the chair sees "page open"),
// and when the chair calls, a prompt that cannot be missed appears, with a ringing sound.

import { t } from './i18n.js';
import { describeError } from './signaling.js';
import { installNetworkCheck } from './network-check.js';

const RING_EVERY_MS = 3_000;
const RING_TIMES = 10;

/**
 * The check screen: `preview` shows `stream`, the meter follows its microphone, the standby
 * line says what the hub knows, and `join` calls `onJoin`. Returns `{ start(), stop() }` for
 * the meter, which runs only while the screen is shown.
 */
export function installDeviceCheck({ session, stream, outcome, onJoin }) {
  const preview = document.getElementById('check-preview');
  const cameraNote = document.getElementById('check-camera-note');
  const micNote = document.getElementById('check-mic-note');
  const meter = document.querySelector('#check .meter');
  const bar = document.getElementById('mic-meter-bar');
  const standbyLine = document.getElementById('check-standby');
  const meetingLine = document.getElementById('check-meeting');
  const join = document.getElementById('join');

  preview.srcObject = stream;
  join.addEventListener('click', onJoin);
  installNetworkCheck();

  const render = () => {
    cameraNote.textContent = t(`local.${outcome}`);
    cameraNote.dataset.level = outcome === 'camera' ? 'good' : 'bad';
    if (stream.getAudioTracks().length === 0) micNote.textContent = t('check.noMic');
    const { title, name } = session.state();
    meetingLine.textContent = name ? `${title || t('meeting.untitled')} · ${name}` : '';
    const state = session.signalingState;
    let key = 'check.connecting';
    let level = 'wait';
    if (state === 'standby') {
      key = 'check.standby';
      level = 'good';
    } else if (state === 'reconnecting') {
      key = 'check.reconnecting';
      level = 'bad';
    } else if (state === 'switching') {
      key = 'check.switching';
      level = 'wait';
    } else if (state === 'closed') {
      key = 'check.closed';
      level = 'bad';
    }
    if (state === 'refused' && session.lastError) {
      standbyLine.textContent = describeError(session.lastError);
      level = 'bad';
    } else {
      standbyLine.textContent = t(key, { seconds: session.reconnectSeconds });
    }
    standbyLine.dataset.level = level;
    // After a refused code nothing can join; after `replaced` this page may take over again.
    join.disabled = state === 'refused' && session.lastError?.code !== 'replaced';
  };
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();

  const level = new MicLevel(stream);
  let frame = null;
  const draw = () => {
    const value = level.read();
    const percent = Math.round(value * 100);
    bar.style.width = `${percent}%`;
    meter.setAttribute('aria-valuenow', String(percent));
    meter.dataset.level = percent > 3 ? 'good' : 'quiet';
    frame = requestAnimationFrame(draw);
  };
  return {
    start() {
      if (frame === null) frame = requestAnimationFrame(draw);
    },
    stop() {
      if (frame !== null) cancelAnimationFrame(frame);
      frame = null;
    },
    level,
  };
}

/**
 * The prompt shown when the chair calls this site's open page: a banner across the page, a
 * blinking title and a ring, until the site joins (or after a while).
 */
export function installCalledPrompt(session, onJoin) {
  const box = document.getElementById('called');
  const by = document.getElementById('called-by');
  const joinNow = document.getElementById('called-join');
  let caller = '';
  let timer = null;
  let rings = 0;
  const title = document.title;

  const stop = () => {
    clearInterval(timer);
    timer = null;
    document.title = title;
  };
  const hide = () => {
    stop();
    box.hidden = true;
  };
  const render = () => {
    by.textContent = caller ? t('called.by', { name: caller }) : '';
  };
  joinNow.addEventListener('click', () => {
    hide();
    onJoin();
  });
  session.addEventListener('called', (event) => {
    caller = event.detail.by;
    render();
    box.hidden = false;
    box.classList.remove('flash');
    // Restarts the animation for a second call.
    void box.offsetWidth;
    box.classList.add('flash');
    stop();
    rings = 0;
    ring();
    timer = setInterval(() => {
      rings += 1;
      document.title = rings % 2 ? `🔔 ${t('called.title')}` : title;
      if (rings < RING_TIMES) ring();
      else stop();
    }, RING_EVERY_MS);
  });
  session.addEventListener('statechange', () => {
    if (session.signalingState === 'joined') hide();
  });
  window.addEventListener('languagechange', render);
  return { hide };
}

let audioContext = null;

/** One page-wide AudioContext, resumed on the first click if the browser held it back. */
function sharedAudioContext() {
  if (!audioContext && (window.AudioContext || window.webkitAudioContext)) {
    const Context = window.AudioContext || window.webkitAudioContext;
    audioContext = new Context();
    const resume = () => {
      if (audioContext.state === 'suspended') audioContext.resume().catch(() => {});
    };
    for (const type of ['pointerdown', 'keydown']) window.addEventListener(type, resume, { capture: true });
    resume();
  }
  return audioContext;
}

/** Three short tones, like a desk phone; silent where the browser does not allow sound yet. */
function ring() {
  const context = sharedAudioContext();
  if (!context || context.state !== 'running') return;
  const start = context.currentTime + 0.05;
  for (let i = 0; i < 3; i += 1) {
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.frequency.value = i % 2 ? 660 : 880;
    gain.gain.setValueAtTime(0.0001, start + i * 0.35);
    gain.gain.exponentialRampToValueAtTime(0.3, start + i * 0.35 + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.35 + 0.3);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(start + i * 0.35);
    oscillator.stop(start + i * 0.35 + 0.32);
  }
}

/** The microphone's loudness, 0 to 1, from an analyser on the local stream. */
export class MicLevel {
  constructor(stream) {
    this.analyser = null;
    this.samples = null;
    this.smoothed = 0;
    const track = stream.getAudioTracks()[0];
    const context = track ? sharedAudioContext() : null;
    if (!context) return;
    const source = context.createMediaStreamSource(new MediaStream([track]));
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.samples = new Float32Array(this.analyser.fftSize);
    source.connect(this.analyser);
  }

  read() {
    if (!this.analyser) return 0;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const sample of this.samples) sum += sample * sample;
    const rms = Math.sqrt(sum / this.samples.length);
    // About −50 dBFS reads as empty, full scale as full; quick to rise, slow to fall.
    const db = 20 * Math.log10(rms + 1e-9);
    const value = Math.min(1, Math.max(0, (db + 50) / 50));
    this.smoothed = value > this.smoothed ? value : this.smoothed * 0.9 + value * 0.1;
    return this.smoothed;
  }
}
