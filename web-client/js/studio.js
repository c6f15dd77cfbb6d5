// The studio page, which is the chair's console: publishes the studio's camera and microphone,
// shows every expected site in a grid (state, small live picture, link health), and holds the
// chair's controls: the floor, the sites' microphones, the roll call, calling absent sites.
// Opened with the organizer's link: `studio.html?meeting=ID&code=CODE`.

import { applyTranslations, currentLanguage, installLanguageToggle, t } from './i18n.js';
import { installAccountBar } from './account.js';
import { describeApiError, fetchMeeting, fetchReport, reissueSiteCode } from './api.js';
import { formatTime } from './localtime.js';
import { MeetingSession, arrivedFromHub, describeError, installErrorDisplay } from './signaling.js';
import { SITE_STATES, SORTS, STATE_FILTERS, SiteGrid, formatNumber } from './console-grid.js';
import {
  installAbsentPanel,
  installFloorPanel,
  installMicPanel,
  installProgrammePanel,
  installRecordingPanel,
  installRollCallPanel,
} from './chair-panels.js';
import { installHubLinksPanel } from './hub-links.js';
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
const NOTICE_MS = 8_000;

async function main() {
  installLanguageToggle(document.getElementById('lang'));
  applyTranslations();
  const errorBox = document.getElementById('error');
  if (!window.RTCPeerConnection) return showFatal(errorBox, 'error.unsupported');
  const { code, meeting, badMeeting } = joinFromAddress();
  if (!code || badMeeting) return showFatal(errorBox, 'error.noCode');
  // The chair is an organizer logged in on this browser (without a session: the login page).
  const account = await installAccountBar(document.getElementById('account'), document.getElementById('logout'));
  if (account.role !== 'organizer') return showFatal(errorBox, 'account.needOrganizer');

  // A province's part of a national meeting is chaired at the centre: its organizer watches
  // it here (role `observer`), without a camera, with the centre's programme in the preview.
  const plan = meeting === null ? null : await fetchMeeting(meeting).catch(() => null);
  const watching = Boolean(plan && plan.parent_meeting);
  document.body.classList.toggle('watching', watching);
  document.getElementById('watching-note').hidden = !watching;
  const local = watching
    ? { stream: new MediaStream(), outcome: 'watching', error: null }
    : await openLocalMedia(STUDIO_VIDEO);
  const preview = document.getElementById('preview');
  preview.srcObject = local.stream;
  const localNote = installLocalMediaNote(document.getElementById('local-note'), local.outcome);

  const session = new MeetingSession({ code, meeting, localStream: local.stream });
  followRole(session, 'studio', ['observer']);
  installMeetingLabel(document.getElementById('meeting-label'), session);
  // The end of the meeting has a panel of its own: it is not an error.
  installErrorDisplay(errorBox, session, { ignore: (error) => error.code === 'meeting_ended' });
  installStatusDisplay(document.getElementById('status'), session);
  if (local.error) {
    session.reportError('webrtc', t('error.media', { message: local.error.message || local.error.name }));
  }

  const sound = new SoundPlayer(document.getElementById('sound'));
  const grid = new SiteGrid(document.getElementById('grid'), {
    sound,
    onAction: (action, tile) => {
      const { site, name } = tile.entry;
      if (action === 'give_floor') act({ type: 'give_floor', site }, name);
      if (action === 'take_floor') act({ type: 'take_floor' }, name);
      if (action === 'mute' || action === 'unmute') act({ type: 'mute', site, muted: action === 'mute' }, name);
      if (action === 'call_site') act({ type: 'call_site', site }, name);
      if (action === 'reissue') reissue(site, name);
    },
  });
  const notice = installNotice(document.getElementById('notice'));
  // A code tried too often has leaked: a new one ends the copies' sessions; the chair sends
  // the new link to the real site.
  const reissue = async (site, name) => {
    if (!window.confirm(t('tile.reissueConfirm', { name }))) return;
    try {
      const { link } = await reissueSiteCode(session.meeting ?? meeting, site);
      const address = new URL(link, window.location.origin).href;
      notice.show(t('tile.reissued', { name, link: address }), 'good');
    } catch (error) {
      notice.show(describeApiError(error), 'bad');
    }
  };
  const act = installActions(session, notice, (message) => {
    // Shown at once; the next console (within 2 s) confirms it.
    if (message.type === 'mute') grid.patch(message.site, { muted: message.muted });
  });
  const tools = installGridTools(grid);
  const summary = installSummary(document.getElementById('summary'), grid, session, tools);

  let consoleStarted = 0;
  session.addEventListener('console', (event) => {
    consoleStarted = performance.now();
    grid.update(event.detail.sites || []);
    summary.render();
  });
  session.addEventListener('floor', () => grid.applyFloor(session.floor));
  if (!watching) installTilesOnScreen(session, grid);
  // The hub cannot reach its database: the meeting goes on, its attendance waits on the hub.
  const logBanner = document.getElementById('log-banner');
  const renderLogState = () => {
    const waiting = session.logBuffered;
    logBanner.hidden = !waiting;
    if (waiting) {
      logBanner.textContent = t('banner.logBuffered', {
        since: formatTime(waiting.since, 'time'),
        count: formatNumber(waiting.events),
      });
    }
  };
  session.addEventListener('logstate', renderLogState);
  window.addEventListener('languagechange', renderLogState);
  // The hub is over its media capacity: it sheds the sites' video to keep their sound.
  const loadBanner = document.getElementById('load-banner');
  const renderHubLoad = () => {
    const level = Math.min(6, session.hubLoad);
    loadBanner.hidden = level === 0;
    if (level > 0) loadBanner.textContent = t(`banner.hubLoad.${level}`);
  };
  session.addEventListener('hubload', renderHubLoad);
  window.addEventListener('languagechange', renderHubLoad);
  const programmeAudio = document.getElementById('programme-audio');
  // The preview shows what the sites receive of the studio: the encoder's picture while it is
  // on air, else the chair's own camera.
  let encoderVideo = null;
  /** The encoder track the preview shows, or null: the chair's camera. */
  let shown = null;
  const showOnAir = () => {
    const programme = session.programme;
    const onAir =
      encoderVideo && encoderVideo.readyState === 'live' && programme?.encoder && programme.source === 'encoder';
    const wanted = onAir ? encoderVideo : null;
    if (wanted === shown) return;
    shown = wanted;
    preview.srcObject = wanted ? new MediaStream([wanted]) : local.stream;
    preview.play().catch(() => {});
  };
  session.addEventListener('track', (event) => {
    const { track, participantId } = event.detail;
    const role = session.participants.get(participantId)?.role;
    // Watching: the programme (the national studio's, or an encoder's) plays in the preview.
    if (watching && (role === 'studio' || role === 'encoder')) {
      if (track.kind === 'video') {
        preview.srcObject = new MediaStream([track]);
        preview.play().catch(() => {});
      } else {
        programmeAudio.srcObject = new MediaStream([track]);
        sound.play(programmeAudio);
      }
      return;
    }
    // The studio's encoder (WHIP): its picture takes the preview while it is on air; its
    // sound is the studio's own and is not played back into the room.
    if (role === 'encoder') {
      if (track.kind === 'video') {
        encoderVideo = track;
        showOnAir();
      }
      return;
    }
    grid.attachTrack(participantId, track);
  });
  let known = new Set();
  session.addEventListener('participants', () => {
    const now = new Set(session.participants.keys());
    for (const id of known) if (!now.has(id)) grid.forgetParticipant(id);
    known = now;
    for (const p of session.participants.values()) if (p.site) grid.knowParticipant(p.site, p.id);
  });
  session.addEventListener('reset', () => grid.clearTracks());
  window.addEventListener('languagechange', () => {
    grid.renderAll();
    summary.render();
  });

  installProgrammePanel(session, act, showOnAir);
  installRecordingPanel(session, act);
  installFloorPanel(session, act);
  installMicPanel(session, act);
  installRollCallPanel(session, act);
  installAbsentPanel(session, act);
  installHubLinksPanel();
  installLeaveButton(document.getElementById('leave'), session);
  releaseCameraWhenRefused(session, local.stream, localNote);
  installEndedView(session, grid, summary, notice);

  exposeForTests(session, {
    grid,
    /** When the page began to apply the latest `console` message (`performance.now()`). */
    consoleStarted: () => consoleStarted,
    /** Applies a `console` message as if the hub had sent it; returns the ms it took. */
    applyConsole(message) {
      session.handle({ type: 'console', roll_call: null, ...message });
      return grid.lastApplyMs;
    },
  });
  // Moved here from the other hub of a standby pair: that hub is not gone back to at once.
  arrivedFromHub();
  session.start();
}

/**
 * Once the hub says the meeting has ended: a panel says so with the end time and a link to the
 * report, the tiles go grey without figures, and every control of the meeting is disabled (the
 * language toggle and the logout stay).
 */
function installEndedView(session, grid, summary, notice) {
  const panel = document.getElementById('ended');
  const at = document.getElementById('ended-at');
  const report = document.getElementById('ended-report');
  /** The actual end from the report, or null while unknown. */
  let endedAt = null;
  let shown = false;

  const render = () => {
    if (!shown) return;
    at.textContent = endedAt === null ? '' : t('ended.at', { at: formatTime(endedAt, 'dateTime') });
    at.hidden = endedAt === null;
  };
  const show = () => {
    if (shown || !session.meetingEnded) return;
    shown = true;
    const wasLive = session.joinedAs !== null;
    document.body.dataset.ended = 'true';
    panel.hidden = false;
    notice.hide();
    const id = session.meetingId();
    report.hidden = id === null;
    if (id !== null) report.href = `report.html?meeting=${encodeURIComponent(String(id))}`;
    grid.end();
    summary.render();
    for (const control of document.querySelectorAll('main button, main input, main select')) control.disabled = true;
    document.getElementById('preview').srcObject = null;
    // A page that was in the meeting saw the end happen; the report has the recorded time.
    if (wasLive) endedAt = session.endedSeenAt;
    render();
    if (id !== null) {
      fetchReport(id)
        .then((answer) => {
          const end = answer && answer.summary ? answer.summary.actual_end : null;
          if (Number.isFinite(end)) endedAt = end;
          render();
        })
        .catch((error) => console.warn('[diemcau] the end time could not be read from the report', error));
    }
  };
  session.addEventListener('statechange', show);
  window.addEventListener('languagechange', render);
}

/**
 * Sends chair actions and reports their outcome in the notice line. Replies come in the order
 * the requests were sent (the hub handles a session's messages one at a time), so each `action`
 * event belongs to the oldest request of its type still waiting.
 */
/** Most sites one `tiles` message names (docs/protocol.md). */
const MAX_TILES = 200;

/**
 * Keeps the hub told which communes of other hubs have their tiles on the chair's screen
 * (scrolling, filters, the roster changing), at most every 300 ms and only when it changed,
 * and again after each join.
 */
function installTilesOnScreen(session, grid) {
  let sent = null;
  let timer = null;
  const send = () => {
    timer = null;
    const sites = grid.remoteOnScreen().slice(0, MAX_TILES);
    const key = sites.join(',');
    if (key === sent) return;
    if (session.showTiles(sites)) sent = key;
  };
  const soon = () => {
    timer ??= setTimeout(send, 300);
  };
  grid.addEventListener('onscreen', soon);
  grid.addEventListener('arranged', soon);
  session.addEventListener('statechange', () => {
    if (session.signalingState !== 'joined') sent = null;
    else soon();
  });
}

function installActions(session, notice, onDone) {
  const waiting = [];
  const act = (message, label) => {
    if (!session.act(message)) {
      notice.show(t('action.notJoined'), 'bad');
      return false;
    }
    waiting.push({ message, label });
    return true;
  };
  session.addEventListener('action', (event) => {
    const { ok, request, error } = event.detail;
    const index = waiting.findIndex((w) => w.message.type === request);
    const sent = index >= 0 ? waiting.splice(index, 1)[0] : { message: { type: request }, label: '' };
    const text = t(`chairAction.${actionKey(sent.message)}`, { name: sent.label });
    if (ok) {
      notice.show(t('chairAction.done', { action: text }), 'good');
      onDone(sent.message);
    } else {
      notice.show(t('chairAction.failed', { action: text, reason: describeError(error) }), 'bad');
    }
  });
  session.addEventListener('statechange', () => {
    if (session.signalingState !== 'joined') waiting.length = 0;
  });
  return act;
}

function actionKey(message) {
  if (message.type === 'mute') return message.muted ? 'mute' : 'unmute';
  if (message.type === 'mute_all') return message.muted ? 'muteAll' : 'unmuteAll';
  if (message.type === 'switch_programme') return message.source === 'camera' ? 'programmeCamera' : 'programmeEncoder';
  if (message.type === 'record') return message.on ? 'recordStart' : 'recordStop';
  return {
    give_floor: 'giveFloor',
    take_floor: 'takeFloor',
    start_roll_call: 'startRollCall',
    end_roll_call: 'endRollCall',
    call_site: 'callSite',
  }[message.type] || 'other';
}

/** A line under the bar that says what the last action did; it fades after a while. */
function installNotice(element) {
  let timer = null;
  return {
    show(text, level) {
      clearTimeout(timer);
      element.textContent = text;
      element.dataset.level = level;
      element.hidden = false;
      timer = setTimeout(() => {
        element.hidden = true;
      }, NOTICE_MS);
    },
    hide() {
      clearTimeout(timer);
      element.hidden = true;
    },
  };
}

/**
 * The filter box, the state menu and the sort menu above the grid. Returns `{ showState(key) }`
 * to set the state menu from elsewhere.
 */
function installGridTools(grid) {
  const text = document.getElementById('site-filter');
  const state = document.getElementById('state-filter');
  const sort = document.getElementById('sort');
  const noMatch = document.getElementById('no-match');

  const fillOptions = (select, keys, textKey) => {
    const value = select.value;
    select.replaceChildren(
      ...keys.map((key) => {
        const option = document.createElement('option');
        option.value = key;
        option.textContent = t(textKey(key));
        return option;
      }),
    );
    if (value) select.value = value;
  };
  const renderOptions = () => {
    fillOptions(state, Object.keys(STATE_FILTERS), (key) =>
      key.startsWith('state:') ? `siteState.${key.slice(6)}` : `console.show.${key}`,
    );
    fillOptions(sort, Object.keys(SORTS), (key) => `console.sortBy.${key}`);
  };
  renderOptions();
  state.value = 'all';
  sort.value = grid.sortKey;

  // Sites of several provinces (a national meeting): a menu of provinces with the sites
  // joined in each, rebuilt only when a count changes.
  const province = document.getElementById('province-filter');
  let provincesShown = '';
  const renderProvinces = (force = false) => {
    const provinces = grid.provinces();
    const signature = `${currentLanguage()}|${provinces.map((p) => `${p.name}:${p.joined}/${p.total}`).join('|')}`;
    if (!force && signature === provincesShown) return;
    provincesShown = signature;
    province.hidden = provinces.length < 2;
    const joined = provinces.reduce((sum, p) => sum + p.joined, 0);
    const total = provinces.reduce((sum, p) => sum + p.total, 0);
    const option = (value, label) => {
      const node = document.createElement('option');
      node.value = value;
      node.textContent = label;
      return node;
    };
    const value = province.value;
    province.replaceChildren(
      option('', t('console.allProvinces', { count: formatNumber(provinces.length), joined: formatNumber(joined), total: formatNumber(total) })),
      ...provinces.map((p) => option(p.name, t('console.provinceCount', { name: p.name, joined: formatNumber(p.joined), total: formatNumber(p.total) }))),
    );
    province.value = provinces.some((p) => p.name === value) ? value : '';
  };

  text.addEventListener('input', () => grid.setFilter({ text: text.value }));
  state.addEventListener('change', () => grid.setFilter({ state: state.value }));
  province.addEventListener('change', () => grid.setFilter({ province: province.value }));
  sort.addEventListener('change', () => grid.setSort(sort.value));
  grid.addEventListener('arranged', () => {
    noMatch.hidden = grid.visibleCount > 0 || grid.tiles.size === 0;
    renderProvinces();
  });
  window.addEventListener('languagechange', () => {
    renderOptions();
    renderProvinces(true);
  });
  return {
    showState(key) {
      state.value = key;
      grid.setFilter({ state: key });
    },
  };
}

/**
 * Counts above the grid: sites per state, those needing attention, delegates declared. A count
 * is a button that shows those sites.
 */
function installSummary(element, grid, session, tools) {
  const render = () => {
    const tiles = grid.all();
    document.getElementById('site-count').textContent = tiles.length > 0 ? `(${tiles.length})` : '';
    const counts = new Map(SITE_STATES.map((state) => [state, 0]));
    let attention = 0;
    let declared = 0;
    let expected = 0;
    for (const tile of tiles) {
      counts.set(tile.entry.state, counts.get(tile.entry.state) + 1);
      if (tile.attention.length > 0) attention += 1;
      declared += tile.entry.head_count || 0;
      expected += tile.entry.expected_delegates || 0;
    }
    if (session.meetingEnded) {
      // No live counts after the end: what was declared stays, as plain text.
      const line = document.createElement('span');
      line.className = 'summary-ended';
      line.textContent = t('console.endedSummary', {
        count: formatNumber(declared),
        expected: formatNumber(expected),
      });
      element.replaceChildren(line);
      return;
    }
    const chips = [];
    const chip = (key, label, level) => {
      const node = document.createElement('button');
      node.type = 'button';
      node.className = 'chip';
      node.dataset.filter = key;
      if (level) node.dataset.level = level;
      node.textContent = label;
      node.addEventListener('click', () => tools.showState(key));
      chips.push(node);
    };
    if (session.console) {
      for (const state of SITE_STATES) {
        const count = counts.get(state);
        if (count > 0) chip(`state:${state}`, `${t(`siteState.${state}`)}: ${count}`, state);
      }
      chip('attention', t('console.attentionCount', { count: attention }), attention > 0 ? 'attention' : 'calm');
      const figure = document.createElement('span');
      figure.className = 'summary-delegates';
      figure.textContent = t('console.delegatesDeclared', {
        count: formatNumber(declared),
        expected: formatNumber(expected),
      });
      chips.push(figure);
    }
    element.replaceChildren(...chips);
  };
  render();
  return { render };
}

main().catch((error) => {
  console.error('[diemcau] studio page failed', error);
  const box = document.getElementById('error');
  box.textContent = `${t('error.title')}: ${error.message}`;
  box.hidden = false;
});
