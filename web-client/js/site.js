// The site page: first a device check (camera picture, microphone level, "join"), during which
// the page is on standby at the hub so the chair can see it and call it; then the meeting:
// the studio's picture and sound full size (or the site given the floor, with the studio in a
// corner), the site's own camera, the reception quality (good, weak, audio only), asking for
// the floor, the chair's mute, the roll call and the head count. Opened with the organizer's link: `site.html?meeting=ID&code=CODE`.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { MeetingSession, arrivedFromHub, describeError, installErrorDisplay } from './signaling.js';
import { installCalledPrompt, installDeviceCheck } from './device-check.js';
import { installHeadCountForm, installRollCall, prefillFromLastDeclaration } from './head-count.js';
import { installQualityIndicator } from './quality.js';
import {
  installCentreBanner,
  installChairMute,
  installFloorRequest,
  installReceptionBanner,
  installReconnectBanner,
  isMe,
} from './site-controls.js';
import {
  SoundPlayer,
  exposeForTests,
  installLocalMediaNote,
  releaseCameraWhenRefused,
  installMeetingLabel,
  installStatusDisplay,
  joinAddress,
  joinFromAddress,
  openLocalMedia,
  showFatal,
} from './page.js';

// A site's picture is one tile on the studio's wall: a modest size keeps commune uplinks light.
const SITE_VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20 } };
/** Set in this tab once the hall clicked "join", so that a reload goes straight back in. */
const JOINED_KEY = 'diemcau.joined.';

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
  installMeetingLabel(document.getElementById('meeting-label'), session);
  // In the meeting, a lost hub shows as the reconnecting banner rather than as an error.
  let inMeeting = false;
  // The end of the meeting has a screen of its own: it is not an error.
  installErrorDisplay(errorBox, session, {
    ignore: (error) => (inMeeting && error.code === 'websocket') || error.code === 'meeting_ended',
  });
  installStatusDisplay(document.getElementById('status'), session);
  if (local.error) {
    session.reportError('webrtc', t('error.media', { message: local.error.message || local.error.name }));
  }
  // A studio code opened here (a bare code pasted on the start page): the studio's page.
  const toStudio = () => {
    session.close();
    window.location.replace(joinAddress('studio.html', code, meeting));
  };
  session.addEventListener('error', (event) => {
    if (event.detail.request === 'standby' && event.detail.code === 'forbidden') toStudio();
  });
  session.addEventListener('statechange', () => {
    if (session.signalingState === 'joined' && session.state().role === 'studio') toStudio();
  });

  // ---- the two screens: device check, then the meeting ----
  const joinedKey = `${JOINED_KEY}${meeting ?? ''}.${code}`;
  const checkScreen = document.getElementById('check');
  const meetingScreen = document.getElementById('meeting');
  const leave = document.getElementById('leave');
  const check = installDeviceCheck({ session, stream: local.stream, outcome: local.outcome, onJoin: () => join() });
  const called = installCalledPrompt(session, () => join());
  const banner = installReconnectBanner(session, () => inMeeting);

  const endedScreen = document.getElementById('ended');
  const showScreen = () => {
    const ended = session.meetingEnded;
    checkScreen.hidden = ended || inMeeting;
    meetingScreen.hidden = ended || !inMeeting;
    endedScreen.hidden = !ended;
    if (inMeeting || ended) check.stop();
    else check.start();
    renderLeave();
    banner.render();
  };
  // The end of the meeting replaces both screens: nothing is left to fill in or to press.
  let endShown = false;
  session.addEventListener('statechange', () => {
    if (endShown || !session.meetingEnded) return;
    endShown = true;
    inMeeting = false;
    called.hide();
    const dialog = document.getElementById('roll-call-dialog');
    if (dialog.open) dialog.close();
    try {
      sessionStorage.removeItem(joinedKey);
    } catch {
      // Nothing kept, nothing to forget.
    }
    const { title, name } = session.state();
    document.getElementById('ended-meeting').textContent = name ? `${title || t('meeting.untitled')} · ${name}` : title || '';
    showScreen();
  });
  const renderLeave = () => {
    const state = session.signalingState;
    leave.hidden = !inMeeting || session.meetingEnded || (state === 'refused' && session.lastError?.code !== 'replaced');
    const out = ['closed', 'refused'].includes(state);
    leave.dataset.i18n = out ? 'action.rejoin' : 'action.leave';
    leave.textContent = t(leave.dataset.i18n);
  };
  const join = () => {
    if (session.meetingEnded) return;
    if (session.signalingState === 'refused' && session.lastError?.code !== 'replaced') return;
    inMeeting = true;
    called.hide();
    try {
      sessionStorage.setItem(joinedKey, '1');
    } catch {
      // A reload will show the check again; nothing else is lost.
    }
    session.start();
    showScreen();
  };
  leave.addEventListener('click', () => {
    if (['closed', 'refused'].includes(session.signalingState)) {
      session.standby();
      join();
      return;
    }
    inMeeting = false;
    try {
      sessionStorage.removeItem(joinedKey);
    } catch {
      // Nothing kept, nothing to forget.
    }
    session.leave();
    showScreen();
  });
  session.addEventListener('statechange', renderLeave);

  // ---- the stage ----
  installStage(session, new SoundPlayer(document.getElementById('sound')));

  installFloorRequest(session);
  installChairMute(session, local.stream);
  installCentreBanner(session);
  installReceptionBanner(session);
  const quality = installQualityIndicator(document.getElementById('quality'), session);
  const headCount = installHeadCountForm(document.getElementById('head-count'), session);
  prefillFromLastDeclaration(session, headCount);
  installRollCall(session, headCount);
  releaseCameraWhenRefused(session, local.stream, localNote);

  exposeForTests(session, { micLevel: () => check.level.read(), quality: () => quality.current() });
  session.standby();
  // Moved here from the other hub of a standby pair while in the meeting: straight back in.
  let rejoin = arrivedFromHub();
  try {
    rejoin = rejoin || sessionStorage.getItem(joinedKey) === '1';
  } catch {
    // As the move said.
  }
  if (rejoin) join();
  else showScreen();
}

/**
 * The big picture: the studio, or, while another site holds the floor, that site with the
 * studio in a corner. Tracks are matched to participants by stream id (docs/protocol.md).
 */
function installStage(session, sound) {
  const stage = document.getElementById('stage');
  const studioVideo = document.getElementById('studio-video');
  const studioAudio = document.getElementById('studio-audio');
  const floorVideo = document.getElementById('floor-video');
  const floorAudio = document.getElementById('floor-audio');
  const placeholder = document.getElementById('stage-placeholder');
  const caption = document.getElementById('stage-caption');
  const pipCaption = document.getElementById('pip-caption');
  /** Newest tracks of each site that holds or held the floor, by participant id. */
  const siteTracks = new Map();
  let studioMedia = false;
  let shownHolder = null;

  // The programme's source: the chair's studio, or the studio's encoder (WHIP) when only it is here.
  const studio = () => {
    const everyone = [...session.participants.values()];
    return everyone.find((p) => p.role === 'studio') || everyone.find((p) => p.role === 'encoder') || null;
  };

  const play = (element, track) => {
    // Each element gets a stream of its own track: the browser's stream for a participant id
    // can still hold ended tracks from an earlier session of the same participant.
    element.srcObject = new MediaStream([track]);
    if (element.tagName === 'AUDIO') sound.play(element);
    else element.play().catch(() => {});
  };

  const clearStudio = () => {
    studioMedia = false;
    delete studioVideo.dataset.participant;
    studioVideo.srcObject = null;
    studioAudio.srcObject = null;
    sound.forget(studioAudio);
  };

  const clearFloor = () => {
    shownHolder = null;
    delete floorVideo.dataset.participant;
    floorVideo.srcObject = null;
    floorAudio.srcObject = null;
    sound.forget(floorAudio);
  };

  /** Puts the floor holder's tracks on the stage when there are any (and it is not this site). */
  const followFloor = () => {
    const holder = session.floor.holder;
    const wanted = holder && !isMe(session, holder) ? holder.participant : null;
    if (shownHolder && shownHolder !== wanted) {
      siteTracks.delete(shownHolder);
      clearFloor();
    }
    const tracks = wanted ? siteTracks.get(wanted) : null;
    if (tracks) {
      if (tracks.video && floorVideo.srcObject?.getVideoTracks()[0] !== tracks.video) {
        play(floorVideo, tracks.video);
        floorVideo.dataset.participant = wanted;
      }
      if (tracks.audio && floorAudio.srcObject?.getAudioTracks()[0] !== tracks.audio) play(floorAudio, tracks.audio);
      shownHolder = wanted;
    }
    render();
  };

  const render = () => {
    const present = studio();
    if (!present && studioMedia) clearStudio();
    const holder = session.floor.holder;
    const floorShown = Boolean(shownHolder && holder && floorVideo.srcObject);
    stage.dataset.layout = floorShown ? 'floor' : 'studio';
    floorVideo.hidden = !floorShown;
    if (floorShown) {
      caption.textContent = t('site.speaking', { name: holder.name });
      caption.hidden = false;
      pipCaption.textContent = present ? present.name : '';
      pipCaption.hidden = !present;
    } else {
      caption.textContent = present ? (present.name ? `${t('site.studio')}: ${present.name}` : t('site.studio')) : '';
      caption.hidden = !present;
      pipCaption.hidden = true;
    }
    if (session.signalingState === 'refused' && session.lastError) {
      // The reason stays on the stage after the error box is dismissed.
      placeholder.textContent = describeError(session.lastError);
      placeholder.hidden = false;
    } else {
      const connecting = ['connecting', 'open', 'reconnecting'].includes(session.signalingState);
      placeholder.textContent = floorShown
        ? t('site.waitingFloor', { name: holder.name })
        : present
          ? t('site.waitingStudio')
          : connecting
            ? t('site.connectingStage')
            : t('site.noStudio');
      const picture = floorShown ? floorVideo.videoWidth > 0 : studioMedia && studioVideo.videoWidth > 0;
      placeholder.hidden = Boolean(present) && picture;
    }
  };

  session.addEventListener('track', (event) => {
    const { track, participantId } = event.detail;
    const sender = session.participants.get(participantId);
    // A site is told of the studio and its encoder, not of the other sites (docs/protocol.md),
    // and a track may come before `participant_joined`: the floor tells a site's tracks.
    const fromStudio = sender ? ['studio', 'encoder'].includes(sender.role) : !onFloor(session, participantId);
    if (fromStudio) {
      play(track.kind === 'video' ? studioVideo : studioAudio, track);
      if (track.kind === 'video') studioVideo.dataset.participant = participantId;
      studioMedia = true;
      render();
      return;
    }
    // A site's tracks come while it holds the floor.
    const tracks = siteTracks.get(participantId) || { video: null, audio: null };
    tracks[track.kind] = track;
    siteTracks.set(participantId, tracks);
    followFloor();
  });
  session.addEventListener('floor', followFloor);
  session.addEventListener('participants', render);
  session.addEventListener('statechange', render);
  session.addEventListener('reset', () => {
    clearStudio();
    clearFloor();
    siteTracks.clear();
    render();
  });
  for (const video of [studioVideo, floorVideo]) {
    video.addEventListener('resize', render);
    video.addEventListener('loadedmetadata', render);
  }
  window.addEventListener('languagechange', render);
  render();
}

/** Whether the floor message names `participantId` (as holder or asking). */
function onFloor(session, participantId) {
  const { holder, queue } = session.floor;
  return (holder && holder.participant === participantId) || queue.some((s) => s.participant === participantId);
}

main().catch((error) => {
  console.error('[diemcau] site page failed', error);
  const box = document.getElementById('error');
  box.textContent = `${t('error.title')}: ${error.message}`;
  box.hidden = false;
});
