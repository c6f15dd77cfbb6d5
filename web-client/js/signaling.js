// Client of the diemcau signalling protocol (docs/protocol.md) and the one
// RTCPeerConnection it negotiates.
//
// A `MeetingSession` goes: idle → connecting → open → (standby →) joined → (left | reconnecting →
// connecting …) and ends in closed, or in refused when the hub turns the join code down, the
// meeting ends or another session of the same site takes over (then it never retries on its
// own: a retry would be refused again, or would push the other session out). A meeting that has
// ended is a refusal of its own kind: `meetingEnded` says so, and pages show it as the normal
// end it is rather than as a failure. A site page that
// has not joined yet waits in standby, so the chair sees its page open. After `joined` it sends
// one offer with the local tracks (video in simulcast layers); from then on the hub is the
// offerer and the session answers. Hub
// messages are handled one at a time, in arrival order, through a promise chain, so an offer
// is never applied while the previous one is still being answered.

import { currentLanguage, hasText, t } from './i18n.js';

const PING_INTERVAL_MS = 20_000;
const ICE_GATHERING_CAP_MS = 2_000;
const RECONNECT_DELAYS_S = [1, 2, 4, 8, 15];

/**
 * Whether a hub error ends the session for good (docs/protocol.md, "Errors"): the hub says a
 * retry cannot help (`retry: false`) of the join itself or of an error it sent on its own (the
 * code is not valid for this meeting, the meeting is over, the same site joined elsewhere, the
 * studio's code was used without an organizer logged in: the page then goes to the login page).
 * A standby refused as `forbidden` is not final: a studio's code on a site page simply does not
 * wait, and the page joins instead.
 */
export function isFinal(message) {
  if (message.type !== 'error' || message.retry !== false) return false;
  const request = message.request ?? null;
  if (request === 'standby') return message.code !== 'forbidden';
  return request === null || request === 'join';
}

/**
 * Requests answered with `done` (or an error naming them): a site's floor request and the
 * chair's actions (docs/protocol.md), plus the roll-call answer. Their outcome comes as an
 * `action` event, not as a page error.
 */
export const ACTIONS = new Set([
  'request_floor',
  'cancel_floor_request',
  'give_floor',
  'take_floor',
  'mute',
  'mute_all',
  'start_roll_call',
  'end_roll_call',
  'call_site',
  'switch_programme',
  'record',
  'answer_roll_call',
]);

const NO_FLOOR = Object.freeze({ holder: null, queue: [] });

/** A hub this page left for another is not gone back to for this long (no ping-pong). */
const FLED_MS = 30_000;
const PEERS_KEY = 'diemcau.peerHubs';
const FLED_KEY = 'diemcau.fledHubs';

function readStored(key, fallback) {
  try {
    return JSON.parse(window.sessionStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

/**
 * Learns the other hubs sharing this hub's database (a standby pair, docs/operations.md) from
 * `/api/health`, and keeps them for this tab: when this hub stops answering, the page goes to
 * one of them.
 */
export async function learnPeerHubs() {
  try {
    const reply = await fetch('/api/health', { cache: 'no-store' });
    if (!reply.ok) return;
    const health = await reply.json();
    if (Array.isArray(health.peer_hubs)) {
      window.sessionStorage.setItem(PEERS_KEY, JSON.stringify(health.peer_hubs));
    }
  } catch {
    // A hub without peers, or one that does not answer now: nothing to learn.
  }
}

/**
 * A page opened by a move from another hub of the pair (`moveToHub`): that hub is not gone
 * back to for FLED_MS, and the page joins again at once if it was joined (`joined=1`).
 * Returns whether the page was in the meeting before the move.
 */
export function arrivedFromHub(location = window.location) {
  const params = new URLSearchParams(location.search);
  const from = params.get('from');
  const at = Number(params.get('switched'));
  if (!from || !at) return false;
  const fled = readStored(FLED_KEY, {});
  fled[from] = at;
  window.sessionStorage.setItem(FLED_KEY, JSON.stringify(fled));
  const joined = params.get('joined') === '1';
  for (const name of ['from', 'switched', 'joined']) params.delete(name);
  const rest = params.toString();
  window.history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}`);
  return joined;
}

/**
 * Goes to the same page on the hub at `hub` (a public URL), unless it is this one, one this
 * tab left less than FLED_MS ago, or one that does not answer now (then it is not tried again
 * for FLED_MS either: a page that went to a dead hub would be left on the browser's error
 * page). Resolves to whether it goes.
 */
export async function moveToHub(hub, joined = false, location = window.location) {
  let target;
  try {
    target = new URL(hub);
  } catch {
    return false;
  }
  if (target.origin === location.origin) return false;
  const fled = readStored(FLED_KEY, {});
  if (Date.now() - (fled[target.origin] || 0) < FLED_MS) return false;
  try {
    // Another origin's answer is opaque here; that it comes at all is what counts.
    await fetch(`${target.origin}/api/health`, { mode: 'no-cors', cache: 'no-store', signal: AbortSignal.timeout(3000) });
  } catch {
    fled[target.origin] = Date.now();
    window.sessionStorage.setItem(FLED_KEY, JSON.stringify(fled));
    return false;
  }
  const next = new URL(`${target.origin}${location.pathname}${location.search}`);
  next.searchParams.set('from', location.origin);
  next.searchParams.set('switched', String(Date.now()));
  if (joined) next.searchParams.set('joined', '1');
  window.location.assign(next.toString());
  return true;
}

/** The next hub to try when this one stops answering, if this hub has peers. */
function nextPeerHub() {
  const peers = readStored(PEERS_KEY, []);
  const fled = readStored(FLED_KEY, {});
  const now = Date.now();
  return peers.find((peer) => {
    try {
      const origin = new URL(peer).origin;
      return origin !== window.location.origin && now - (fled[origin] || 0) >= FLED_MS;
    } catch {
      return false;
    }
  });
}

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
 * - `reset`: the connection was torn down (media elements should be cleared);
 * - `floor`: who holds the floor and who asked for it changed (`session.floor`);
 * - `muted`: the chair muted or unmuted this site (`session.mutedByChair`);
 * - `logstate`: (the studio) the hub's attendance log waits on its disk for its database, or
 *   is written again (`session.logBuffered`: `{ events, since }` or null);
 * - `hubload`: (the studio) the hub is over its media capacity and sheds video to keep every
 *   site's sound, or is within it again (`session.hubLoad`: the shed level, 0 when within);
 * - `programme`: (the studio) where the programme comes from while the studio's encoder
 *   publishes (`session.programme`: `{ source: 'encoder' | 'camera', encoder }`, `encoder`
 *   being whether an encoder publishes now);
 * - `centre`: in a province's part of a national meeting, the provincial hub lost or found
 *   again the national centre (`session.centreReachable`);
 * - `rollcall`: a roll call started or ended (`session.rollCall`: `{ number, active, result }`,
 *   `result` being the hub's frozen result of an ended roll call, sent to the chair only);
 * - `rollcallanswer` (detail: the hub's `roll_call_answer`): a site answered (chair only);
 * - `console` (detail: the hub's `console` message): every expected site (chair only);
 * - `called` (detail `{ by }`): the chair calls this site's open page to join;
 * - `action` (detail `{ ok: true, request, at? }` or `{ ok: false, request, error }`): the
 *   outcome of a floor request, a chair action or a roll-call answer, in the order they were
 *   sent.
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
    this.wantStandby = false;

    /** What `standby_accepted` said: `{ meeting, title, site, name }`. */
    this.standbyInfo = null;
    /** `{ holder, queue }` as in the hub's `floor` message (sites as `{ site, name, participant }`). */
    this.floor = NO_FLOOR;
    this.mutedByChair = false;
    /** The provincial hub reaches the national centre (always true outside national meetings). */
    this.centreReachable = true;
    /** The studio: attendance events waiting on the hub's disk for its database, or null. */
    this.logBuffered = null;
    /** The hub sends this client audio only: its link cannot carry even the lowest video. */
    this.audioOnly = false;
    /** The audio only is the hub's load, not this client's link. */
    this.audioOnlyHubLoad = false;
    /** The studio: how much video the hub sheds to keep up (0: none, up to 6). */
    this.hubLoad = 0;
    /** The latest roll call: `{ number, active }`, or null. */
    this.rollCall = null;
    /** The latest `console` message (chair only). */
    this.console = null;
    /** The hub said the meeting has ended (`meeting_ended`); `endedSeenAt` is when this page learned it. */
    this.meetingEnded = false;
    this.endedSeenAt = null;
    /** The meeting's id as the hub named it in `joined` or `standby_accepted`. */
    this.hubMeeting = null;
    /** Participant id (stream id) of every remote track of the current peer connection, by track id. */
    this.trackOwners = new Map();
  }

  /** Connects to the hub and joins the meeting; reconnects on its own when the link drops. */
  start() {
    this.wantJoined = true;
    learnPeerHubs();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.sendJoin();
      this.setSignalingState('open');
    } else if (!this.ws || this.ws.readyState !== WebSocket.CONNECTING) {
      this.connect();
    }
    // A WebSocket still opening joins as soon as it is open.
  }

  /**
   * Tells the hub this site's page is open without joining (the chair sees "page open" and
   * may call it); kept up across reconnections until `start()` joins.
   */
  standby() {
    this.wantStandby = true;
    learnPeerHubs();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (this.signalingState !== 'joined') this.sendStandby();
    } else if (!this.ws) {
      this.connect();
    }
  }

  /**
   * Leaves the meeting; the WebSocket stays open so `start()` can join again (a page in standby
   * mode goes back to standby).
   */
  leave() {
    this.wantJoined = false;
    clearTimeout(this.reconnectTimer);
    const open = this.ws && this.ws.readyState === WebSocket.OPEN;
    if (open && this.signalingState === 'joined') {
      this.send({ type: 'leave' });
    }
    this.resetMedia();
    this.resetMeetingState();
    this.setSignalingState('left');
    // Back to standby: at once on an open WebSocket, else once one is open.
    if (open && this.wantStandby) this.sendStandby();
    else if (!this.ws && this.wantStandby) this.connect();
  }

  /**
   * Sends a floor request, a chair action or a roll-call answer (`message` as in
   * docs/protocol.md); the outcome comes as an `action` event. False when not joined.
   */
  act(message) {
    if (this.signalingState !== 'joined' || !ACTIONS.has(message.type)) return false;
    return this.send(message);
  }

  /**
   * Tells the hub which sites' pictures the chair's console shows now (`tiles`,
   * docs/protocol.md): a site joined to a provincial hub sends its small picture up only then.
   * False when not joined.
   */
  showTiles(sites) {
    if (this.signalingState !== 'joined') return false;
    return this.send({ type: 'tiles', sites });
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
    this.wantStandby = false;
    clearTimeout(this.reconnectTimer);
    this.dropConnection();
    this.setSignalingState(finalState);
  }

  /** A plain snapshot of the session, for display and for tests. */
  state() {
    const me = this.self || this.joinedAs;
    const waiting = this.standbyInfo;
    return {
      meeting: this.meeting,
      title: this.title,
      role: me ? me.role : null,
      name: me ? me.name : waiting ? waiting.name : null,
      site: me && me.site ? me.site : waiting ? waiting.site : null,
      signaling: this.signalingState,
      connection: this.pc ? this.pc.connectionState : 'none',
      ice: this.pc ? this.pc.iceConnectionState : 'none',
      media: this.mediaState,
      participant: this.self ? this.self.id : null,
      participants: [...this.participants.values()],
      error: this.lastError,
      lastPong: this.lastPong,
      standby: this.standbyInfo,
      floor: this.floor,
      mutedByChair: this.mutedByChair,
      centreReachable: this.centreReachable,
      audioOnly: this.audioOnly,
      rollCall: this.rollCall,
      ended: this.meetingEnded,
    };
  }

  /** The meeting's id: from the page's link, else as the hub named it; null when unknown. */
  meetingId() {
    if (this.meeting !== null && this.meeting !== undefined) return this.meeting;
    return this.hubMeeting ?? null;
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

  sendStandby() {
    const standby = { type: 'standby', code: this.code };
    if (this.meeting !== null) standby.meeting = this.meeting;
    this.send(standby);
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
      else if (this.wantStandby) this.sendStandby();
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
      if (isFinal(message)) {
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
      this.resetMeetingState();
      if (this.wantJoined || this.wantStandby) {
        this.scheduleReconnect();
      } else if (this.signalingState !== 'refused') {
        this.setSignalingState('closed');
      }
    };
  }

  /** Tears the connection down and joins again after a short wait. */
  restart() {
    this.dropConnection();
    this.resetMeetingState();
    if (this.wantJoined || this.wantStandby) this.scheduleReconnect();
  }

  /**
   * Closes the WebSocket and the peer connection; the close starts no reconnection, and
   * nothing the old WebSocket still delivers is handled.
   */
  dropConnection() {
    this.generation += 1;
    this.stopPing();
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.resetMedia();
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    // The hub has not answered twice: a standby hub sharing its database takes over, if any.
    if (this.reconnectAttempt >= 2 && this.url === hubWebSocketUrl()) {
      const peer = nextPeerHub();
      if (peer) {
        this.setSignalingState('switching');
        moveToHub(peer, this.wantJoined).then((moved) => {
          if (!moved) this.retryLater();
        });
        return;
      }
    }
    this.retryLater();
  }

  /** Connects again after the next delay of the backoff. */
  retryLater() {
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
        this.resetMeetingState();
        this.setSignalingState('left');
        return undefined;
      case 'standby_accepted':
        this.lastError = null;
        this.reconnectAttempt = 0;
        this.title = message.title || this.title;
        this.hubMeeting = message.meeting ?? this.hubMeeting;
        this.standbyInfo = { meeting: message.meeting, title: message.title, site: message.site, name: message.name };
        // A join sent meanwhile wins: its `joined` follows.
        if (this.signalingState !== 'joined' && !this.wantJoined) this.setSignalingState('standby');
        return undefined;
      case 'called':
        this.dispatchEvent(new CustomEvent('called', { detail: { by: message.by || '' } }));
        return undefined;
      case 'floor':
        this.floor = { holder: message.holder || null, queue: message.queue || [] };
        this.emit('floor');
        return undefined;
      case 'muted':
        this.mutedByChair = Boolean(message.muted);
        this.emit('muted');
        return undefined;
      case 'centre':
        this.centreReachable = Boolean(message.reachable);
        this.emit('centre');
        return undefined;
      case 'log_state':
        this.logBuffered =
          message.buffered > 0 ? { events: message.buffered, since: message.since ?? Date.now() } : null;
        this.emit('logstate');
        return undefined;
      case 'recording':
        this.recording = {
          recording: Boolean(message.recording),
          part: message.part ?? null,
          since: message.since ?? null,
          trouble: message.trouble ?? null,
        };
        this.emit('recording');
        return undefined;
      case 'programme':
        this.programme = { source: message.source === 'camera' ? 'camera' : 'encoder', encoder: Boolean(message.encoder) };
        this.emit('programme');
        return undefined;
      case 'reception':
        this.audioOnly = Boolean(message.audio_only);
        this.audioOnlyHubLoad = Boolean(message.hub_load);
        this.emit('statechange');
        return undefined;
      case 'hub_load':
        this.hubLoad = Number(message.level) || 0;
        this.emit('hubload');
        return undefined;
      case 'roll_call':
        this.rollCall = {
          number: message.roll_call,
          active: Boolean(message.active),
          result: message.result || null,
        };
        this.emit('rollcall');
        return undefined;
      case 'roll_call_answer':
        this.dispatchEvent(new CustomEvent('rollcallanswer', { detail: message }));
        return undefined;
      case 'roll_call_answer_recorded':
        this.dispatchEvent(
          new CustomEvent('action', {
            detail: { ok: true, request: 'answer_roll_call', rollCall: message.roll_call, at: message.at },
          }),
        );
        return undefined;
      case 'console':
        this.console = message;
        this.dispatchEvent(new CustomEvent('console', { detail: message }));
        return undefined;
      case 'done':
        // The console's `tiles` are sent as it scrolls: nothing to show for each.
        if (message.request === 'tiles') return undefined;
        this.dispatchEvent(new CustomEvent('action', { detail: { ok: true, request: message.request } }));
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
    // A new participant: the chair's mute of an earlier session does not carry over.
    this.mutedByChair = false;
    this.emit('muted');
    // The hub says right after `joined` if the centre is away, or its log waits on its disk.
    this.centreReachable = true;
    this.logBuffered = null;
    this.emit('logstate');
    this.hubLoad = 0;
    this.emit('hubload');
    this.emit('centre');
    this.title = message.title || null;
    this.hubMeeting = message.meeting ?? this.hubMeeting;
    this.self = message.participant;
    this.joinedAs = message.participant;
    this.participants = new Map((message.participants || []).map((p) => [p.id, p]));
    this.setSignalingState('joined');
    this.emit('participants');

    const pc = this.createPeerConnection();
    for (const track of this.localStream.getTracks()) {
      const init = { direction: 'sendonly', streams: [this.localStream] };
      const layers = track.kind === 'video' ? simulcastLayers(track) : null;
      if (layers) init.sendEncodings = layers;
      pc.addTransceiver(track, init);
    }
    if (this.localStream.getTracks().length === 0) {
      // Nothing to publish: an offer needs a media section all the same (Chromium cannot bundle
      // an empty one, and the hub refuses an offer without m-lines).
      pc.addTransceiver('audio', { direction: 'recvonly' });
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
    if (message.request === 'tiles') {
      console.warn('tiles refused', message.code, message.message);
      return;
    }
    if (message.request === 'head_count') {
      const error = { code: message.code, message: message.message || '', request: message.request };
      this.dispatchEvent(new CustomEvent('headcount', { detail: { ok: false, error } }));
      return;
    }
    if (ACTIONS.has(message.request)) {
      const error = { code: message.code, message: message.message || '', request: message.request };
      this.dispatchEvent(new CustomEvent('action', { detail: { ok: false, request: message.request, error } }));
      return;
    }
    if (isFinal(message) && message.code === 'meeting_ended') {
      this.meetingEnded = true;
      this.endedSeenAt = Date.now();
    }
    if (message.code === 'other_hub') {
      // Another hub of this hub's pair runs the meeting: go there, or wait here while the
      // standby takes it over (docs/protocol.md).
      this.setSignalingState('switching');
      this.dropConnection();
      this.resetMeetingState();
      const goes = message.hub && this.url === hubWebSocketUrl() ? moveToHub(message.hub, this.wantJoined) : Promise.resolve(false);
      goes.then((moved) => {
        if (!moved) this.reconnectTimer = setTimeout(() => this.connect(), 1000);
      });
      return;
    }
    this.reportError(message.code, message.message, message.request);
    if (isFinal(message)) {
      this.close('refused');
      if (message.code === 'login_required') {
        // Log in, then come back to the studio page with the same link.
        const studio = new URLSearchParams();
        if (this.meeting !== null && this.meeting !== undefined) studio.set('meeting', String(this.meeting));
        studio.set('code', this.code);
        window.location.assign(`login.html?next=${encodeURIComponent(`/studio.html?${studio}`)}`);
      }
      return;
    }
    // A refused join that the hub says may succeed later (the meeting has a studio, or is
    // full, or the hub failed) is retried: the other studio may be a stale session of this one
    // that the hub has not dropped yet.
    if (message.request === 'join' && message.retry) this.restart();
    // A studio code on a site page: standby is for sites only; the page moves on its own.
    if (message.request === 'standby' && message.code === 'forbidden') this.wantStandby = false;
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
      this.trackOwners.set(event.track.id, stream.id);
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
    this.trackOwners.clear();
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

  /**
   * Forgets the floor, the chair's mute and the roll call: a session out of the meeting learns
   * them again (the hub sends `floor` and a running `roll_call` with every join).
   */
  resetMeetingState() {
    this.audioOnly = false;
    this.audioOnlyHubLoad = false;
    const hadFloor = this.floor.holder !== null || this.floor.queue.length > 0;
    this.floor = NO_FLOOR;
    if (hadFloor) this.emit('floor');
    if (this.mutedByChair) {
      this.mutedByChair = false;
      this.emit('muted');
    }
    if (this.rollCall && this.rollCall.active) {
      this.rollCall = { ...this.rollCall, active: false };
      this.emit('rollcall');
    }
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

/**
 * The simulcast layers to publish a camera with, lowest first (docs/protocol.md): the hub
 * forwards to each receiver the best layer its link carries, and the chair's wall the lowest.
 * Null for a picture too small to split.
 */
export function simulcastLayers(track) {
  const height = track.getSettings().height || 0;
  const layer = (rid, scaleResolutionDownBy, maxBitrate) => ({ rid, scaleResolutionDownBy, maxBitrate });
  if (height >= 540) {
    return [layer('q', height / 180, 150_000), layer('h', height / 360, 500_000), layer('f', 1, 2_000_000)];
  }
  if (height >= 270) return [layer('q', height / 180, 150_000), layer('h', 1, 600_000)];
  return null;
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
 * language toggle. Errors for which `ignore(error)` is true are left to the page.
 */
export function installErrorDisplay(element, session, { ignore = () => false } = {}) {
  let current = null;
  const render = () => {
    element.replaceChildren();
    if (!current) {
      element.hidden = true;
      return;
    }
    const text = document.createElement('span');
    text.textContent = describeError(current);
    // The hub explains in English: a tooltip on an English page only.
    if (current.message && current.code !== 'webrtc' && currentLanguage() === 'en') text.title = current.message;
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
    if (ignore(event.detail)) return;
    current = event.detail;
    render();
  });
  session.addEventListener('statechange', () => {
    // A successful join clears the previous trouble, and so does the end of the meeting (the
    // page says so in its own place).
    const cleared = session.signalingState === 'joined' && session.lastError === null;
    if (current && (cleared || session.meetingEnded)) {
      current = null;
      render();
    }
  });
  window.addEventListener('languagechange', render);
  render();
}
