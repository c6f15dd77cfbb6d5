// The watch page: plays a meeting's programme (what the sites receive: the studio, or the site
// holding the floor) over the watch link (WHEP, docs/studio-encoders.md), for press, a big
// screen or a leader's phone, without joining as a site. Opened with the link the meeting's
// page gives: `watch.html?meeting=ID#token=TOKEN` (the token stays in the fragment, which the
// browser never sends).

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { SoundPlayer } from './page.js';

/** Waits before trying again after a failure, growing to the last. */
const RETRY_MS = [1_000, 2_000, 5_000, 10_000];
/** How long a connection may stay disconnected before the page starts a new one. */
const DISCONNECTED_MS = 5_000;

function main() {
  installLanguageToggle(document.getElementById('lang'));
  applyTranslations();
  const state = document.getElementById('watch-state');
  const picture = document.getElementById('picture');
  const soundElement = document.getElementById('programme-sound');
  const sound = new SoundPlayer(document.getElementById('sound'));
  const meeting = Number.parseInt(new URLSearchParams(window.location.search).get('meeting') || '', 10);
  const token = new URLSearchParams(window.location.hash.slice(1)).get('token') || '';

  let shown = { key: 'watchPage.connecting', params: {} };
  const show = (key, params = {}) => {
    shown = { key, params };
    state.textContent = t(key, params);
    state.dataset.state = key.split('.').pop();
  };
  window.addEventListener('languagechange', () => show(shown.key, shown.params));
  if (!Number.isInteger(meeting) || meeting <= 0 || !token) {
    show('watchPage.badLink');
    return;
  }
  document.getElementById('meeting-label').textContent = t('watchPage.meeting', { id: meeting });

  const player = new Player(meeting, token, {
    onState: show,
    onTrack: (track) => {
      const element = track.kind === 'video' ? picture : soundElement;
      element.srcObject = new MediaStream([track]);
      if (track.kind === 'video') element.play().catch(() => {});
      else sound.play(element);
    },
  });
  window.addEventListener('pagehide', () => player.stop());
  // For the end-to-end tests.
  window.diemcau = { player };
  player.start();
}

/**
 * One player of the watch link: posts a receive-only offer, plays what comes, and starts again
 * by itself when the connection drops or the hub has no room yet. States: connecting →
 * playing → (disconnected → connecting...) | ended | refused.
 */
class Player {
  constructor(meeting, token, { onState, onTrack }) {
    this.meeting = meeting;
    this.token = token;
    this.onState = onState;
    this.onTrack = onTrack;
    /** The current connection, and its resource on the hub (`Location`). */
    this.pc = null;
    this.resource = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
  }

  async start() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.onState('watchPage.connecting');
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (event) => this.onTrack(event.track);
    let lostAt = null;
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      const connection = pc.connectionState;
      if (connection === 'connected') {
        this.attempt = 0;
        lostAt = null;
        this.onState('watchPage.playing');
      } else if (connection === 'failed') {
        this.restart('watchPage.reconnecting');
      } else if (connection === 'disconnected') {
        lostAt = Date.now();
        setTimeout(() => {
          if (this.pc === pc && lostAt !== null && Date.now() - lostAt >= DISCONNECTED_MS) {
            this.restart('watchPage.reconnecting');
          }
        }, DISCONNECTED_MS);
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const reply = await fetch(`/whep/${this.meeting}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${this.token}` },
        body: pc.localDescription.sdp,
      });
      const text = await reply.text();
      if (this.pc !== pc) return;
      if (reply.status === 201) {
        this.resource = reply.headers.get('Location');
        await pc.setRemoteDescription({ type: 'answer', sdp: text });
        return;
      }
      this.close();
      if (reply.status === 401) return this.end('watchPage.badToken');
      if (reply.status === 403) return this.end('watchPage.ended');
      if (reply.status === 503) return this.later('watchPage.full');
      return this.later('watchPage.failed', { reason: `${reply.status} ${text.trim()}`.slice(0, 200) });
    } catch (error) {
      if (this.pc !== pc) return;
      this.close();
      this.later('watchPage.failed', { reason: error.message || String(error) });
    }
  }

  /** Closes the connection and frees its place on the hub. */
  close() {
    const { pc, resource } = this;
    this.pc = null;
    this.resource = null;
    if (pc) pc.close();
    if (resource) {
      fetch(resource, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${this.token}` },
        keepalive: true,
      }).catch(() => {});
    }
  }

  restart(key) {
    this.close();
    this.later(key);
  }

  /** Says `key` and tries again after a while. */
  later(key, params = {}) {
    this.onState(key, params);
    const wait = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    this.timer = setTimeout(() => this.start(), wait);
  }

  /** Says `key` and stops for good. */
  end(key) {
    this.stopped = true;
    this.onState(key);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.close();
  }
}

main();
