// The studio page: publishes camera and microphone, shows every site in a grid and plays
// every site's sound. Opened with the organizer's link: `studio.html?meeting=ID&code=CODE`.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { MeetingSession, installErrorDisplay } from './signaling.js';
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

const STUDIO_VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

/** One site's tile: its video, its sound and its name; the stream arrives after the name. */
class SiteTile {
  constructor(id, sound) {
    this.id = id;
    this.sound = sound;
    this.hasMedia = false;
    this.name = null;
    this.known = false;

    this.element = document.createElement('figure');
    this.element.className = 'tile';
    this.element.dataset.participant = id;

    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.muted = true; // sound plays through `audio`, so autoplay is never refused
    this.video.playsInline = true;
    this.video.dataset.remote = '';
    this.video.dataset.participant = id;

    this.audio = document.createElement('audio');
    this.audio.autoplay = true;

    this.placeholder = document.createElement('div');
    this.placeholder.className = 'placeholder';

    this.caption = document.createElement('figcaption');

    this.element.append(this.video, this.placeholder, this.audio, this.caption);
    this.video.addEventListener('resize', () => this.renderPlaceholder());
    this.video.addEventListener('loadedmetadata', () => this.renderPlaceholder());
    this.renderPlaceholder();
  }

  setName(name) {
    this.known = true;
    this.name = name;
    this.renderName();
  }

  renderName() {
    this.caption.textContent = this.name || t('tile.unknownName', { id: this.id });
    this.caption.title = this.caption.textContent;
  }

  renderPlaceholder() {
    this.placeholder.textContent = t('tile.waitingVideo');
    this.placeholder.hidden = this.video.videoWidth > 0;
  }

  /**
   * Shows `track`, the newest of its kind for this site. Each element gets a stream of its own
   * track only: the browser's stream for a participant id can still hold ended tracks from an
   * earlier session of the same participant.
   */
  attach(track) {
    const element = track.kind === 'video' ? this.video : this.audio;
    element.srcObject = new MediaStream([track]);
    if (track.kind === 'video') {
      this.video.play().catch(() => {});
    } else {
      this.sound.play(this.audio);
    }
    this.hasMedia = true;
  }

  detach() {
    this.hasMedia = false;
    this.video.srcObject = null;
    this.audio.srcObject = null;
    this.sound.forget(this.audio);
    this.renderPlaceholder();
  }

  remove() {
    this.detach();
    this.element.remove();
  }
}

async function main() {
  installLanguageToggle(document.getElementById('lang'));
  applyTranslations();
  const errorBox = document.getElementById('error');
  if (!window.RTCPeerConnection) return showFatal(errorBox, 'error.unsupported');
  const { code, meeting, badMeeting } = joinFromAddress();
  if (!code || badMeeting) return showFatal(errorBox, 'error.noCode');

  const local = await openLocalMedia(STUDIO_VIDEO);
  const preview = document.getElementById('preview');
  preview.srcObject = local.stream;
  const localNote = installLocalMediaNote(document.getElementById('local-note'), local.outcome);

  const session = new MeetingSession({ code, meeting, localStream: local.stream });
  followRole(session, 'studio');
  installMeetingLabel(document.getElementById('meeting-label'), session);
  installErrorDisplay(errorBox, session);
  installStatusDisplay(document.getElementById('status'), session);
  if (local.error) {
    session.reportError('webrtc', t('error.media', { message: local.error.message || local.error.name }));
  }

  const sound = new SoundPlayer(document.getElementById('sound'));
  const grid = document.getElementById('grid');
  const tiles = new Map();

  const tileFor = (id) => {
    let tile = tiles.get(id);
    if (!tile) {
      tile = new SiteTile(id, sound);
      tiles.set(id, tile);
      grid.append(tile.element);
    }
    return tile;
  };

  const renderParticipants = () => {
    const sites = [...session.participants.values()].filter((p) => p.role !== 'studio');
    const present = new Set(sites.map((p) => p.id));
    for (const [id, tile] of tiles) {
      // A tile whose track came before its participant_joined stays until it is known.
      if (!present.has(id) && (tile.known || !tile.hasMedia)) {
        tile.remove();
        tiles.delete(id);
      }
    }
    for (const site of sites) tileFor(site.id).setName(site.name);
    document.getElementById('site-count').textContent = `(${t('studio.siteCount', { count: sites.length })})`;
    document.getElementById('no-sites').hidden = sites.length > 0;
  };

  session.addEventListener('participants', renderParticipants);
  session.addEventListener('track', (event) => {
    const { track, participantId } = event.detail;
    if (!session.participants.has(participantId)) {
      // The track came before participant_joined; show it now, name it when the message comes.
      tileFor(participantId).renderName();
    }
    tileFor(participantId).attach(track);
  });
  session.addEventListener('reset', () => {
    for (const tile of tiles.values()) tile.detach();
  });
  window.addEventListener('languagechange', () => {
    renderParticipants();
    for (const tile of tiles.values()) {
      tile.renderName();
      tile.renderPlaceholder();
    }
  });

  installLeaveButton(document.getElementById('leave'), session);
  releaseCameraWhenRefused(session, local.stream, localNote);

  exposeForTests(session);
  renderParticipants();
  session.start();
}

main().catch((error) => {
  console.error('[diemcau] studio page failed', error);
  const box = document.getElementById('error');
  box.textContent = `${t('error.title')}: ${error.message}`;
  box.hidden = false;
});
