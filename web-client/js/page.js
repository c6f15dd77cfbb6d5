// What the studio and site pages share: reading the address, opening the camera,
// showing connection state, playing remote sound, and the test hook `window.diemcau`.

import { t } from './i18n.js';

// Join codes are made by the hub (docs/api.md); this only keeps obvious garbage out of the join.
const JOIN_CODE = /^[A-Za-z0-9_-]{4,128}$/;
const MEETING_ID = /^[0-9]{1,15}$/;

/**
 * What `?meeting=ID&code=CODE` asks for: `code` is null when missing or malformed, `meeting`
 * (a number) is null when absent, and `badMeeting` says it was there but not a meeting id.
 */
export function joinFromAddress(search = window.location.search) {
  const params = new URLSearchParams(search);
  const code = (params.get('code') || '').trim();
  const meetingText = (params.get('meeting') || '').trim();
  const meeting = MEETING_ID.test(meetingText) ? Number(meetingText) : null;
  return {
    code: JOIN_CODE.test(code) ? code : null,
    meeting,
    badMeeting: meetingText !== '' && meeting === null,
  };
}

/**
 * Reads what a person pasted: a whole join link (`http://hub/site.html?meeting=12&code=...`),
 * the part after the host, or a bare code. Returns `{ page, code, meeting }` (`page` is
 * `site.html` or `studio.html`; a bare code opens the site page, which moves to the studio
 * page when the hub says the code is the studio's), or null when it is none of these.
 */
export function parseJoinInput(text) {
  const input = (text || '').trim();
  if (!input) return null;
  if (JOIN_CODE.test(input)) return { page: 'site.html', code: input, meeting: null };
  let url;
  try {
    url = new URL(input, window.location.origin);
  } catch {
    return null;
  }
  const { code, meeting, badMeeting } = joinFromAddress(url.search);
  if (!code || badMeeting) return null;
  const page = url.pathname.endsWith('/studio.html') ? 'studio.html' : 'site.html';
  return { page, code, meeting };
}

/** The page address that joins with `code` (and `meeting`, when known). */
export function joinAddress(page, code, meeting) {
  const params = new URLSearchParams();
  if (meeting !== null && meeting !== undefined) params.set('meeting', String(meeting));
  params.set('code', code);
  return `${page}?${params}`;
}

/**
 * Moves to the other page when the hub says the code is for the other role (a bare code
 * pasted on the start page opens the site page, but may be the studio's).
 */
export function followRole(session, pageRole, alsoHere = []) {
  const check = () => {
    const role = session.state().role;
    if (session.signalingState !== 'joined' || !role || role === pageRole || alsoHere.includes(role)) return;
    // Once only: leaving changes the state again.
    session.removeEventListener('statechange', check);
    session.close();
    window.location.replace(joinAddress(`${role}.html`, session.code, session.meeting));
  };
  session.addEventListener('statechange', check);
}

/** Keeps `element` showing the meeting's title and who this page is, once the hub said so. */
export function installMeetingLabel(element, session) {
  const render = () => {
    const { title, name } = session.state();
    if (!name) {
      element.textContent = t('meeting.joining');
      return;
    }
    element.textContent = `${title || t('meeting.untitled')} · ${t('meeting.you', { name })}`;
    element.title = element.textContent;
  };
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * Keeps the leave button right: "leave" while in, "join again" when out. After a refused join
 * code there is nothing to join again; after `replaced` a click takes the site back here.
 */
export function installLeaveButton(button, session) {
  button.addEventListener('click', () => {
    const out = ['left', 'closed', 'refused'].includes(session.signalingState);
    if (out) session.start();
    else session.leave();
  });
  const render = () => {
    const state = session.signalingState;
    const out = ['left', 'closed', 'refused'].includes(state);
    button.dataset.i18n = out ? 'action.rejoin' : 'action.leave';
    button.textContent = t(button.dataset.i18n);
    button.hidden = state === 'refused' && session.lastError?.code !== 'replaced';
  };
  session.addEventListener('statechange', render);
  render();
}

/**
 * Turns the camera and microphone off once the hub refused the join code: this page cannot
 * join any more, and a lit camera would say otherwise. After `replaced` they stay on, since
 * "join again" takes the site back here.
 */
export function releaseCameraWhenRefused(session, stream, note) {
  session.addEventListener('statechange', () => {
    if (session.signalingState !== 'refused' || session.lastError?.code === 'replaced') return;
    for (const track of stream.getTracks()) track.stop();
    note.show('stopped');
  });
}

/**
 * Opens camera and microphone, falling back to one of them, then to nothing (the page then
 * only receives). `outcome` is one of `camera`, `audioOnly`, `videoOnly`, `none`.
 */
export async function openLocalMedia(video) {
  const attempts = [
    { outcome: 'camera', constraints: { audio: true, video } },
    { outcome: 'audioOnly', constraints: { audio: true } },
    { outcome: 'videoOnly', constraints: { video } },
  ];
  let firstError = null;
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    for (const { outcome, constraints } of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        return { stream, outcome, error: firstError };
      } catch (error) {
        firstError = firstError || error;
      }
    }
  }
  return { stream: new MediaStream(), outcome: 'none', error: firstError };
}

/**
 * Keeps `element` showing the session's three states: signalling, the browser's media
 * connection, and what the hub says of the media.
 */
export function installStatusDisplay(element, session) {
  const row = (labelKey) => {
    const item = document.createElement('div');
    item.className = 'status-item';
    const label = document.createElement('span');
    label.className = 'status-label';
    const value = document.createElement('span');
    value.className = 'status-value';
    item.append(label, value);
    element.append(item);
    return { item, label, value, labelKey };
  };
  element.replaceChildren();
  const signaling = row('status.signaling');
  const connection = row('status.connection');
  const media = row('status.media');

  const render = () => {
    const state = session.state();
    for (const r of [signaling, connection, media]) r.label.textContent = `${t(r.labelKey)}:`;

    if (state.ended) {
      // A normal end, not a failure: said plainly, in neutral colours.
      signaling.value.textContent = t('signaling.ended');
      connection.value.textContent = t('pc.ended');
      media.value.textContent = t('media.ended');
      for (const r of [signaling, connection, media]) r.item.dataset.level = 'ended';
      return;
    }
    signaling.value.textContent = t(`signaling.${state.signaling}`, { seconds: session.reconnectSeconds });
    signaling.item.dataset.level = levelOfSignaling(state.signaling);

    connection.value.textContent = t(`pc.${state.connection}`);
    connection.item.dataset.level = levelOfConnection(state.connection);

    media.value.textContent = t(`media.${state.media}`);
    media.item.dataset.level = state.media === 'connected' ? 'good' : state.media === 'disconnected' ? 'bad' : 'wait';
  };
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}

function levelOfSignaling(state) {
  if (state === 'joined') return 'good';
  if (state === 'reconnecting' || state === 'closed' || state === 'refused') return 'bad';
  return 'wait';
}

function levelOfConnection(state) {
  if (state === 'connected') return 'good';
  if (state === 'failed' || state === 'disconnected') return 'bad';
  return 'wait';
}

/**
 * Plays remote media. Browsers may refuse sound before the person has clicked on the page;
 * then `button` appears, and a click starts every element that was refused.
 */
export class SoundPlayer {
  constructor(button) {
    this.button = button;
    this.blocked = new Set();
    button.hidden = true;
    button.addEventListener('click', () => {
      const elements = [...this.blocked];
      this.blocked.clear();
      button.hidden = true;
      for (const element of elements) this.play(element);
    });
  }

  play(element) {
    const attempt = element.play();
    if (attempt && attempt.catch) {
      attempt.catch((error) => {
        if (error && error.name === 'NotAllowedError') {
          this.blocked.add(element);
          this.button.hidden = false;
        }
      });
    }
  }

  forget(element) {
    this.blocked.delete(element);
    if (this.blocked.size === 0) this.button.hidden = true;
  }
}

/**
 * Shows how the local camera opened, in `element`, following the language toggle. Returns
 * `{ show(outcome) }` for later changes (`stopped` when the page turned them off).
 */
export function installLocalMediaNote(element, outcome) {
  let current = outcome;
  const render = () => {
    element.textContent = t(`local.${current}`);
    element.dataset.level = current === 'camera' ? 'good' : 'bad';
  };
  window.addEventListener('languagechange', render);
  render();
  return {
    show(next) {
      current = next;
      render();
    },
  };
}

/** `window.diemcau`: the live peer connection, a state snapshot and the other participants. */
export function exposeForTests(session, extra = {}) {
  window.diemcau = {
    get pc() {
      return session.pc;
    },
    state: () => session.state(),
    get participants() {
      return [...session.participants.values()];
    },
    session,
    /** `{ trackId: participantId }` for every remote track (a track's stream id is its sender). */
    trackOwners: () => Object.fromEntries(session.trackOwners),
    ...extra,
  };
}

/** Shows one message instead of the meeting (for a page opened with a bad address). */
export function showFatal(element, key) {
  const render = () => {
    element.textContent = t(key);
  };
  render();
  element.hidden = false;
  window.addEventListener('languagechange', render);
  for (const hide of document.querySelectorAll('main, #leave, #status')) hide.hidden = true;
}
