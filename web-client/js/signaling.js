// Client of the diemcau signalling protocol (docs/protocol.md) and the one
// RTCPeerConnection it negotiates.
//
// A `MeetingSession` goes: idle → connecting → open → joined → (left | reconnecting → connecting …)
// and ends in closed, or in refused when the hub turns the join code down, the meeting ends or
// another session of the same site takes over (then it never retries on its own: a retry would
// be refused again, or would push the other session out). After `joined` it sends one offer
// with the local tracks; from then on the hub is the offerer and the session answers. Hub
// messages are handled one at a time, in arrival order, through a promise chain, so an offer
// is never applied while the previous one is still being answered.

import { hasText, t } from './i18n.js';

const PING_INTERVAL_MS = 20_000;
const ICE_GATHERING_CAP_MS = 2_000;
const RECONNECT_DELAYS_S = [1, 2, 4, 8, 15];

/**
 * Errors after which the session stops for good (docs/protocol.md): the code is not valid for
 * this meeting, the meeting is over, or the same site joined elsewhere.
 */
export const FINAL_ERRORS = new Set(['code_unknown', 'code_revoked', 'code_other_meeting', 'meeting_ended', 'replaced']);

/**
 * Errors of a refused join that are worth retrying later: a stale studio session, a full
 * meeting, a hub failure ("the message may be retried", docs/protocol.md).
 */
const RETRIED_JOIN_ERRORS = new Set(['studio_taken', 'meeting_full', 'internal']);

/** The hub's WebSocket address for the page being shown. */
export function hubWebSocketUrl(location = window.location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/**
 * One participant's place in a meeting: its WebSocket, its RTCPeerConnection and what it
 * knows of the others.
 *
 * Events (on the object itself):
 * - `statechange`: signalling, connection or media state changed;
 * - `participants`: the list of other participants changed;
 * - `track` (detail `{ track, stream, participantId }`): a remote track arrived;
 * - `error` (detail `{ code, message, request }`): the hub or the browser reported an error;
 * - `headcount` (detail `{ ok: true, count, at }` or `{ ok: false, error }`): the hub's reply
 *   to `declareHeadCount`;
 * - `reset`: the connection was torn down (media elements should be cleared).
 */
export class MeetingSession extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.code the join code from the organizer's link
   * @param {number|null} options.meeting the meeting id from the link, or null
   * @param {MediaStream} options.localStream tracks to publish (may have none)
   * @param {string} [options.url] WebSocket address, default the page's hub
   */
  constructor({ code, meeting = null, localStream, url = hubWebSocketUrl() }) {
    super();
    this.code = code;
    this.meeting = meeting;
    this.localStream = localStream;
    this.url = url;
    /** What the hub said in `joined`: the meeting's title and this participant (kept after leaving). */
    this.title = null;
    this.joinedAs = null;

    this.signalingState = 'idle';
    this.mediaState = 'unknown';
    this.reconnectSeconds = 0;
    this.self = null;
    /** Other participants by id, in join order. */
    this.participants = new Map();
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    this.lastError = null;
    this.lastPong = null;

    this.ws = null;
    this.generation = 0;
    this.chain = Promise.resolve();
    this.pingTimer = null;
    this.reconnectTimer = null;
    this.reconnectAttempt = 0;
    this.wantJoined = false;
  }

  /** Connects to the hub and joins the meeting; reconnects on its own when the link drops. */
  start() {
    this.wantJoined = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.sendJoin();
      this.setSignalingState('open');
    } else {
      this.connect();
    }
  }

  /** Leaves the meeting; the WebSocket stays open so `start()` can join again. */
  leave() {
    this.wantJoined = false;
    clearTimeout(this.reconnectTimer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.signalingState === 'joined') {
      this.send({ type: 'leave' });
    }
    this.resetMedia();
    this.setSignalingState('left');
  }

  /**
   * Declares the hall's head count (sites only); the reply comes as a `headcount` event.
   * False when the hub cannot be reached right now.
   */
  declareHeadCount({ count, confirmedBy, position }) {
    if (this.signalingState !== 'joined') return false;
    return this.send({ type: 'head_count', count, confirmed_by: confirmedBy, position });
  }

  /** Ends everything: no more reconnects. */
  close(finalState = 'closed') {
    this.wantJoined = false;
    clearTimeout(this.reconnectTimer);
    this.generation += 1;
    this.stopPing();
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.resetMedia();
    this.setSignalingState(finalState);
  }

  /** A plain snapshot of the session, for display and for tests. */
  state() {
    const me = this.self || this.joinedAs;
    return {
      meeting: this.meeting,
      title: this.title,
      role: me ? me.role : null,
      name: me ? me.name : null,
      site: me && me.site ? me.site : null,
      signaling: this.signalingState,
      connection: this.pc ? this.pc.connectionState : 'none',
      ice: this.pc ? this.pc.iceConnectionState : 'none',
      media: this.mediaState,
      participant: this.self ? this.self.id : null,
      participants: [...this.participants.values()],
      error: this.lastError,
      lastPong: this.lastPong,
    };
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  sendJoin() {
    const join = { type: 'join', code: this.code };
    if (this.meeting !== null) join.meeting = this.meeting;
    this.send(join);
  }

  // ---- WebSocket ----

  connect() {
    clearTimeout(this.reconnectTimer);
    const generation = ++this.generation;
    this.chain = Promise.resolve();
    this.setSignalingState('connecting');

    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.reportError('websocket', error.message);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (generation !== this.generation) return;
      this.setSignalingState('open');
      this.startPing();
      if (this.wantJoined) this.sendJoin();
    };
    ws.onmessage = (event) => {
      if (generation !== this.generation) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn('[diemcau] unreadable message from hub', event.data);
        return;
      }
      if (message.type !== 'pong') console.info('[diemcau] hub →', message.type, message.code || '');
      if (message.type === 'error' && FINAL_ERRORS.has(message.code)) {
        // Handled now, not in the chain: the hub closes the WebSocket right after, and neither
        // that close nor a negotiation still in the chain may start a reconnection.
        this.onHubError(message);
        return;
      }
      this.chain = this.chain
        .then(() => (generation === this.generation ? this.handle(message) : undefined))
        .catch((error) => {
          if (generation !== this.generation) return;
          console.error('[diemcau] handling', message.type, error);
          this.reportError('webrtc', error && error.message ? error.message : String(error));
          this.restart();
        });
    };
    ws.onerror = () => {
      if (generation !== this.generation) return;
      this.reportError('websocket', '');
    };
    ws.onclose = () => {
      if (generation !== this.generation) return;
      this.ws = null;
      this.stopPing();
      this.resetMedia();
      if (this.wantJoined) {
        this.scheduleReconnect();
      } else if (this.signalingState !== 'refused') {
        this.setSignalingState('closed');
      }
    };
  }

  /** Tears the connection down and joins again after a short wait. */
  restart() {
    this.generation += 1;
    this.stopPing();
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.resetMedia();
    if (this.wantJoined) this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const index = Math.min(this.reconnectAttempt, RECONNECT_DELAYS_S.length - 1);
    const seconds = RECONNECT_DELAYS_S[index];
    this.reconnectAttempt += 1;
    this.reconnectSeconds = seconds;
    this.setSignalingState('reconnecting');
    this.reconnectTimer = setTimeout(() => this.connect(), seconds * 1000);
  }

  startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  // ---- hub messages ----

  async handle(message) {
    switch (message.type) {
      case 'joined':
        return this.onJoined(message);
      case 'answer':
        if (!this.pc) return undefined;
        return this.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
      case 'offer':
        return this.onHubOffer(message);
      case 'participant_joined':
        this.participants.set(message.participant.id, message.participant);
        this.emit('participants');
        return undefined;
      case 'participant_left':
        this.participants.delete(message.participant);
        this.emit('participants');
        return undefined;
      case 'media_state':
        this.mediaState = message.state;
        this.emit('statechange');
        return undefined;
      case 'left':
        this.self = null;
        this.participants.clear();
        this.emit('participants');
        this.setSignalingState('left');
        return undefined;
      case 'pong':
        this.lastPong = Date.now();
        return undefined;
      case 'head_count_recorded':
        this.dispatchEvent(
          new CustomEvent('headcount', { detail: { ok: true, count: message.count, at: message.at } }),
        );
        return undefined;
      case 'error':
        return this.onHubError(message);
      default:
        // A newer hub may send messages this page does not know; they are not needed.
        return undefined;
    }
  }

  async onJoined(message) {
    this.reconnectAttempt = 0;
    this.lastError = null;
    this.title = message.title || null;
    this.self = message.participant;
    this.joinedAs = message.participant;
    this.participants = new Map((message.participants || []).map((p) => [p.id, p]));
    this.setSignalingState('joined');
    this.emit('participants');

    const pc = this.createPeerConnection();
    for (const track of this.localStream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [this.localStream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, ICE_GATHERING_CAP_MS);
    if (pc !== this.pc) return;
    this.send({ type: 'offer', sdp: pc.localDescription.sdp });
  }

  async onHubOffer(message) {
    const pc = this.pc;
    if (!pc) return;
    await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await iceGatheringDone(pc, ICE_GATHERING_CAP_MS);
    if (pc !== this.pc) return;
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
  }

  onHubError(message) {
    if (message.request === 'head_count') {
      const error = { code: message.code, message: message.message || '', request: message.request };
      this.dispatchEvent(new CustomEvent('headcount', { detail: { ok: false, error } }));
      return;
    }
    this.reportError(message.code, message.message, message.request);
    if (FINAL_ERRORS.has(message.code)) {
      this.close('refused');
      return;
    }
    // A refused join (the meeting has a studio, or is full, or the hub failed) is retried
    // later: the other studio may be a stale session of this one that the hub has not
    // dropped yet.
    if (message.request === 'join' && RETRIED_JOIN_ERRORS.has(message.code)) this.restart();
  }

  // ---- RTCPeerConnection ----

  createPeerConnection() {
    this.closePeerConnection();
    this.mediaState = 'unknown';
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.ontrack = (event) => {
      if (pc !== this.pc) return;
      const stream = event.streams[0] || new MediaStream([event.track]);
      this.dispatchEvent(
        new CustomEvent('track', { detail: { track: event.track, stream, participantId: stream.id } }),
      );
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      this.emit('statechange');
      if (pc.connectionState === 'failed') {
        this.reportError('webrtc', 'connection failed');
        this.restart();
      }
    };
    pc.oniceconnectionstatechange = () => {
      if (pc === this.pc) this.emit('statechange');
    };
    this.emit('statechange');
    return pc;
  }

  closePeerConnection() {
    if (!this.pc) return;
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.oniceconnectionstatechange = null;
    this.pc.close();
    this.pc = null;
    this.emit('reset');
  }

  /** Drops the peer connection and what this session knew of the meeting. */
  resetMedia() {
    const hadMeeting = this.participants.size > 0 || this.self !== null;
    this.closePeerConnection();
    this.mediaState = 'unknown';
    if (hadMeeting) {
      this.self = null;
      this.participants.clear();
      this.emit('participants');
    }
    this.emit('statechange');
  }

  // ---- helpers ----

  setSignalingState(state) {
    this.signalingState = state;
    this.emit('statechange');
  }

  reportError(code, message, request) {
    this.lastError = { code, message: message || '', request: request || null };
    this.dispatchEvent(new CustomEvent('error', { detail: this.lastError }));
  }

  emit(type) {
    this.dispatchEvent(new Event(type));
  }
}

/** Resolves when ICE gathering is complete, or after `capMs`, whichever comes first. */
export function iceGatheringDone(pc, capMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') finish();
    };
    const timer = setTimeout(finish, capMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** A person-readable sentence for an error reported by a session. */
export function describeError(error) {
  if (error.code === 'websocket') return t('error.websocket');
  if (error.code === 'webrtc') return t('error.webrtc', { message: error.message });
  const key = `error.${error.code}`;
  return hasText(key) ? t(key) : t('error.unknown', { code: error.code });
}

/**
 * Shows the session's errors in `element` (with a close button); the text follows the
 * language toggle.
 */
export function installErrorDisplay(element, session) {
  let current = null;
  const render = () => {
    element.replaceChildren();
    if (!current) {
      element.hidden = true;
      return;
    }
    const text = document.createElement('span');
    text.textContent = describeError(current);
    if (current.message && current.code !== 'webrtc') text.title = current.message;
    const dismiss = document.createElement('button');
    dismiss.type = 'button';
    dismiss.className = 'link';
    dismiss.textContent = t('action.dismiss');
    dismiss.addEventListener('click', () => {
      current = null;
      render();
    });
    element.append(text, ' ', dismiss);
    element.hidden = false;
  };
  session.addEventListener('error', (event) => {
    current = event.detail;
    render();
  });
  session.addEventListener('statechange', () => {
    // A successful join clears the previous trouble.
    if (current && session.signalingState === 'joined' && session.lastError === null) {
      current = null;
      render();
    }
  });
  window.addEventListener('languagechange', render);
  render();
}
