// What the studio and site pages share: reading the address, opening the camera,
// showing connection state, playing remote sound, and the test hook `window.diemcau`.

import { t } from './i18n.js';

const MEETING_CODE = /^[A-Za-z0-9_-]{1,64}$/;

/** The meeting code and name from `?meeting=M&name=N`; `meeting` is null when missing or invalid. */
export function meetingFromAddress(defaultName) {
  const params = new URLSearchParams(window.location.search);
  const meeting = params.get('meeting');
  const name = (params.get('name') || '').trim().slice(0, 128) || defaultName;
  return { meeting: meeting && MEETING_CODE.test(meeting) ? meeting : null, name };
}

/** Whether `code` is a valid meeting code (docs/protocol.md, `join`). */
export function isMeetingCode(code) {
  return MEETING_CODE.test(code);
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
  if (state === 'reconnecting' || state === 'closed') return 'bad';
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

/** Shows how the local camera opened, in `element`, following the language toggle. */
export function installLocalMediaNote(element, outcome) {
  const render = () => {
    element.textContent = t(`local.${outcome}`);
    element.dataset.level = outcome === 'camera' ? 'good' : 'bad';
  };
  window.addEventListener('languagechange', render);
  render();
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
