// The site page: receives the studio's picture and sound full size, publishes its own camera
// and microphone, and shows how its connection is doing.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { MeetingSession, installErrorDisplay } from './signaling.js';
import {
  SoundPlayer,
  exposeForTests,
  installLocalMediaNote,
  installStatusDisplay,
  meetingFromAddress,
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
  const { meeting, name } = meetingFromAddress('');
  if (!meeting) return showFatal(errorBox, 'error.noMeeting');
  if (!name) return showFatal(errorBox, 'landing.invalidName');

  const meetingLabel = document.getElementById('meeting-label');
  const renderMeetingLabel = () => {
    meetingLabel.textContent = `${t('meeting.label', { meeting })} · ${t('meeting.you', { name })}`;
  };
  renderMeetingLabel();
  window.addEventListener('languagechange', renderMeetingLabel);

  const local = await openLocalMedia(SITE_VIDEO);
  document.getElementById('preview').srcObject = local.stream;
  installLocalMediaNote(document.getElementById('local-note'), local.outcome);

  const session = new MeetingSession({ meeting, role: 'site', name, localStream: local.stream });
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
    placeholder.textContent = present ? t('site.waitingStudio') : t('site.noStudio');
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
  session.addEventListener('reset', () => {
    detach();
    render();
  });
  video.addEventListener('resize', render);
  video.addEventListener('loadedmetadata', render);
  window.addEventListener('languagechange', render);

  const leaveButton = document.getElementById('leave');
  leaveButton.addEventListener('click', () => {
    if (session.signalingState === 'left' || session.signalingState === 'closed') {
      session.start();
    } else {
      session.leave();
    }
  });
  session.addEventListener('statechange', () => {
    const out = session.signalingState === 'left' || session.signalingState === 'closed';
    leaveButton.dataset.i18n = out ? 'action.rejoin' : 'action.leave';
    leaveButton.textContent = t(leaveButton.dataset.i18n);
  });

  exposeForTests(session);
  render();
  session.start();
}

main().catch((error) => {
  console.error('[diemcau] site page failed', error);
  const box = document.getElementById('error');
  box.textContent = `${t('error.title')}: ${error.message}`;
  box.hidden = false;
});
