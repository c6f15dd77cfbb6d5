// What the chair's decisions look like in a hall: asking for the floor and seeing who speaks,
// being muted by the chair (a banner, and the local microphone track off so the hall's own
// equipment shows it), and a banner whenever the link to the hub is being restored.

import { t } from './i18n.js';

/** Whether the floor entry `site` is this session's site. */
export function isMe(session, site) {
  if (!site) return false;
  const me = session.self;
  return Boolean(me && (site.participant === me.id || (me.site && site.site === me.site)));
}

/** The request button, the line that says where this site stands, and the floor banner. */
export function installFloorRequest(session) {
  const request = document.getElementById('floor-request');
  const cancel = document.getElementById('floor-cancel');
  const line = document.getElementById('floor-state');
  const banner = document.getElementById('floor-banner');
  let waiting = false;

  request.addEventListener('click', () => {
    if (session.act({ type: 'request_floor' })) waiting = true;
    render();
  });
  cancel.addEventListener('click', () => {
    if (session.act({ type: 'cancel_floor_request' })) waiting = true;
    render();
  });
  session.addEventListener('action', (event) => {
    const { request: kind, ok, error } = event.detail;
    if (kind !== 'request_floor' && kind !== 'cancel_floor_request') return;
    waiting = false;
    if (!ok) line.dataset.problem = error.code;
    render();
  });

  const render = () => {
    const joined = session.signalingState === 'joined';
    const { holder, queue } = session.floor;
    const speaking = isMe(session, holder);
    const place = queue.findIndex((site) => isMe(session, site));

    request.hidden = speaking || place >= 0;
    cancel.hidden = speaking || place < 0;
    request.disabled = !joined || waiting;
    cancel.disabled = !joined || waiting;
    if (!joined) line.textContent = t('site.floorNotJoined');
    else if (speaking) line.textContent = t('site.floorYours');
    else if (place >= 0) line.textContent = t('site.floorWaiting', { place: place + 1, total: queue.length });
    else line.textContent = t('site.floorHint');
    line.dataset.level = speaking ? 'good' : place >= 0 ? 'wait' : '';

    if (!joined || (!holder && place < 0)) {
      banner.hidden = true;
      return;
    }
    banner.hidden = false;
    if (speaking) {
      banner.dataset.level = 'good';
      banner.textContent = t('banner.floorYours');
    } else if (holder) {
      banner.dataset.level = 'info';
      banner.textContent =
        place >= 0
          ? `${t('banner.floorOther', { name: holder.name })} ${t('banner.floorQueued', { place: place + 1 })}`
          : t('banner.floorOther', { name: holder.name });
    } else {
      banner.dataset.level = 'wait';
      banner.textContent = t('banner.floorAsked', { place: place + 1, total: queue.length });
    }
  };
  session.addEventListener('floor', render);
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * The chair's mute: a banner, the microphone line in the side column, and the local audio
 * track disabled while muted (the hub stops forwarding it anyway; this makes the page say so
 * and sends silence).
 */
export function installChairMute(session, stream) {
  const banner = document.getElementById('muted-banner');
  const line = document.getElementById('mic-state');
  const render = () => {
    const muted = session.mutedByChair;
    for (const track of stream.getAudioTracks()) track.enabled = !muted;
    banner.hidden = !muted;
    banner.textContent = t('banner.muted');
    const tracks = stream.getAudioTracks();
    const hasMic = tracks.some((track) => track.readyState === 'live');
    // Stopped by the page (the meeting ended, the code was refused): off, not missing.
    const stopped = tracks.length > 0 && !hasMic;
    line.textContent = stopped ? t('mic.stopped') : !hasMic ? t('mic.none') : muted ? t('mic.mutedByChair') : t('mic.on');
    line.dataset.level = stopped ? '' : muted || !hasMic ? 'bad' : 'good';
  };
  session.addEventListener('muted', render);
  // After the other listeners: the page may stop its tracks on the same change.
  session.addEventListener('statechange', () => queueMicrotask(render));
  window.addEventListener('languagechange', render);
  render();
}

/**
 * In a province's part of a national meeting: a banner while the provincial hub has lost the
 * national centre (the meeting goes on here; the national studio comes back by itself).
 */
export function installCentreBanner(session) {
  const banner = document.getElementById('centre-banner');
  const render = () => {
    banner.hidden = session.centreReachable || session.state().ended;
    banner.textContent = t('banner.centreLost');
  };
  session.addEventListener('centre', render);
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * A banner while the link to the hub is being restored: the WebSocket reconnecting, or the
 * media connection disconnected or failed. Shown only after this page had been connected, and
 * hidden once signalling and media are both back.
 */
export function installReconnectBanner(session, inMeeting) {
  const banner = document.getElementById('reconnect-banner');
  let wasConnected = false;
  const render = () => {
    const state = session.state();
    const up = state.signaling === 'joined' && state.connection === 'connected' && state.media !== 'disconnected';
    if (up) wasConnected = true;
    if (!inMeeting() || ['left', 'closed', 'refused', 'standby'].includes(state.signaling)) wasConnected = false;
    const show = wasConnected && !up && inMeeting();
    banner.hidden = !show;
    if (!show) return;
    if (state.signaling === 'switching') {
      banner.textContent = t('banner.switching');
    } else if (state.signaling === 'reconnecting') {
      banner.textContent = t('banner.reconnecting', { seconds: session.reconnectSeconds });
    } else if (state.signaling !== 'joined') {
      banner.textContent = t('banner.rejoining');
    } else {
      banner.textContent = t('banner.mediaDown');
    }
  };
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
  return { render };
}

/**
 * A banner while the hub sends this site audio only: its link is too weak for video, or the
 * hub is over its capacity and keeps every site's sound first.
 */
export function installReceptionBanner(session) {
  const banner = document.getElementById('reception-banner');
  const render = () => {
    banner.hidden = !(session.audioOnly && session.signalingState === 'joined');
    banner.textContent = t(session.audioOnlyHubLoad ? 'banner.audioOnlyHubLoad' : 'banner.audioOnly');
  };
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}
