// The site page: receives the studio's picture and sound full size, publishes its own camera
// and microphone, shows how its connection is doing, and declares the hall's head count.
// Opened with the organizer's link: `site.html?meeting=ID&code=CODE`.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { MeetingSession, describeError, installErrorDisplay } from './signaling.js';
import { formatTime } from './localtime.js';
import {
  SoundPlayer,
  exposeForTests,
  followRole,
  installLeaveButton,
  installLocalMediaNote,
  releaseCameraWhenRefused,
  installMeetingLabel,
  installStatusDisplay,
  joinFromAddress,
  openLocalMedia,
  showFatal,
} from './page.js';

// A site's picture is one tile on the studio's wall: a modest size keeps commune uplinks light.
const SITE_VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20 } };

async function main() {
  installLanguageToggle(document.getElementById('lang'));
  applyTranslations();
  const errorBox = document.getElementById('error');
  if (!window.RTCPeerConnection) return showFatal(errorBox, 'error.unsupported');
  const { code, meeting, badMeeting } = joinFromAddress();
  if (!code || badMeeting) return showFatal(errorBox, 'error.noCode');

  const local = await openLocalMedia(SITE_VIDEO);
  document.getElementById('preview').srcObject = local.stream;
  const localNote = installLocalMediaNote(document.getElementById('local-note'), local.outcome);

  const session = new MeetingSession({ code, meeting, localStream: local.stream });
  followRole(session, 'site');
  installMeetingLabel(document.getElementById('meeting-label'), session);
  installErrorDisplay(errorBox, session);
  installStatusDisplay(document.getElementById('status'), session);
  if (local.error) {
    session.reportError('webrtc', t('error.media', { message: local.error.message || local.error.name }));
  }

  const sound = new SoundPlayer(document.getElementById('sound'));
  const video = document.getElementById('studio-video');
  const audio = document.getElementById('studio-audio');
  const placeholder = document.getElementById('stage-placeholder');
  const caption = document.getElementById('stage-caption');
  let hasStudioMedia = false;

  const studio = () => [...session.participants.values()].find((p) => p.role === 'studio') || null;

  const render = () => {
    const present = studio();
    if (!present && hasStudioMedia) detach();
    caption.textContent = present ? `${t('site.studio')}: ${present.name}` : '';
    caption.hidden = !present;
    if (session.signalingState === 'refused' && session.lastError) {
      // The reason stays on the stage after the error box is dismissed.
      placeholder.textContent = describeError(session.lastError);
    } else {
      placeholder.textContent = present ? t('site.waitingStudio') : t('site.noStudio');
    }
    placeholder.hidden = Boolean(present) && hasStudioMedia && video.videoWidth > 0;
  };

  const detach = () => {
    hasStudioMedia = false;
    delete video.dataset.participant;
    video.srcObject = null;
    audio.srcObject = null;
    sound.forget(audio);
  };

  session.addEventListener('track', (event) => {
    const { track, participantId } = event.detail;
    const sender = session.participants.get(participantId);
    // Only the studio is shown here; another participant's track (a site given the floor,
    // in later versions) does not replace it.
    if (sender && sender.role !== 'studio') return;
    // Each element gets a stream of its own track: the browser's stream for a participant id
    // can still hold ended tracks from an earlier session of the same participant.
    if (track.kind === 'video') {
      video.srcObject = new MediaStream([track]);
      video.dataset.participant = participantId;
      video.play().catch(() => {});
    } else {
      audio.srcObject = new MediaStream([track]);
      sound.play(audio);
    }
    hasStudioMedia = true;
    render();
  });
  session.addEventListener('participants', render);
  session.addEventListener('statechange', render);
  session.addEventListener('reset', () => {
    detach();
    render();
  });
  video.addEventListener('resize', render);
  video.addEventListener('loadedmetadata', render);
  window.addEventListener('languagechange', render);

  installLeaveButton(document.getElementById('leave'), session);
  releaseCameraWhenRefused(session, local.stream, localNote);
  installHeadCountForm(document.getElementById('head-count'), session);

  exposeForTests(session);
  render();
  session.start();
}

/** Largest head count the hub takes (docs/protocol.md, `head_count`). */
const MAX_HEAD_COUNT = 10_000;
const MAX_NAME_CHARS = 128;

/**
 * The head count form: checks what it can before sending, then shows the hub's answer, which
 * is the one that counts (the declaration is in the attendance log once it is confirmed).
 */
function installHeadCountForm(form, session) {
  const count = form.elements.namedItem('count');
  const confirmedBy = form.elements.namedItem('confirmed_by');
  const position = form.elements.namedItem('position');
  const submit = form.querySelector('button[type=submit]');
  const result = document.getElementById('hc-result');
  // What the box shows: `{ kind: 'pending'|'recorded'|'invalid'|'refused', ... }`, re-rendered
  // on language change.
  let shown = null;
  let pending = false;

  const render = () => {
    const joined = session.signalingState === 'joined';
    submit.disabled = !joined || Boolean(pending);
    if (!shown) {
      result.hidden = true;
      return;
    }
    result.hidden = false;
    result.dataset.level = shown.kind === 'recorded' ? 'good' : shown.kind === 'pending' ? 'wait' : 'bad';
    if (shown.kind === 'pending') result.textContent = t('headCount.sending');
    if (shown.kind === 'invalid') result.textContent = t(shown.key);
    if (shown.kind === 'refused') result.textContent = t('headCount.refused', { reason: describeError(shown.error) });
    if (shown.kind === 'recorded') {
      result.textContent = t('headCount.recorded', {
        count: shown.count,
        name: shown.confirmedBy,
        position: shown.position,
        at: formatTime(shown.at, 'dateTimeSeconds'),
      });
    }
  };

  const show = (next) => {
    shown = next;
    render();
    // The side column scrolls at 1366x768: bring the answer into view.
    result.scrollIntoView({ block: 'nearest' });
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const checked = checkHeadCount(count.value, confirmedBy.value, position.value);
    if (checked.problem) {
      show({ kind: 'invalid', key: checked.problem });
      form.elements.namedItem(checked.field).focus();
      return;
    }
    if (!session.declareHeadCount(checked.value)) {
      show({ kind: 'invalid', key: 'headCount.notJoined' });
      return;
    }
    pending = { ...checked.value };
    show({ kind: 'pending' });
  });

  session.addEventListener('headcount', (event) => {
    const detail = event.detail;
    const sent = pending || {};
    pending = false;
    if (detail.ok) {
      show({ kind: 'recorded', count: detail.count, at: detail.at, confirmedBy: sent.confirmedBy, position: sent.position });
    } else {
      show({ kind: 'refused', error: detail.error });
    }
  });
  session.addEventListener('statechange', () => {
    // A declaration in flight when the link dropped got no answer: it may be sent again.
    if (pending && session.signalingState !== 'joined') {
      pending = false;
      show({ kind: 'invalid', key: 'headCount.lost' });
    }
    render();
  });
  window.addEventListener('languagechange', render);
  render();
}

/**
 * The declaration as the hub wants it, or the first problem (`problem`: a text key, `field`:
 * the input to fix).
 */
function checkHeadCount(countText, confirmedByText, positionText) {
  const countValue = String(countText).trim();
  if (!/^[0-9]+$/.test(countValue) || Number(countValue) > MAX_HEAD_COUNT) {
    return { problem: 'headCount.invalidCount', field: 'count' };
  }
  const confirmedBy = confirmedByText.trim();
  if (!isPrintableName(confirmedBy)) return { problem: 'headCount.invalidName', field: 'confirmed_by' };
  const position = positionText.trim();
  if (!isPrintableName(position)) return { problem: 'headCount.invalidPosition', field: 'position' };
  return { value: { count: Number(countValue), confirmedBy, position } };
}

function isPrintableName(text) {
  const length = [...text].length;
  return length >= 1 && length <= MAX_NAME_CHARS && !/\p{Cc}/u.test(text);
}

main().catch((error) => {
  console.error('[diemcau] site page failed', error);
  const box = document.getElementById('error');
  box.textContent = `${t('error.title')}: ${error.message}`;
  box.hidden = false;
});
