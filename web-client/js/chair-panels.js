// The chair's side panels on the console: the floor (who speaks, who asks), the sites'
// microphones, the roll call with its answers as they arrive, and the sites not in the meeting
// with a button to call those whose page is open. Each panel renders from the session's state
// and the latest `console` message; actions go through `act(message, label)`.

import { formatTime } from './localtime.js';
import { t } from './i18n.js';
import { formatNumber } from './console-grid.js';

const JOINED_STATES = new Set(['connecting', 'live', 'audio_only']);
/** Order of the absent list: sites that can be called first, then those expected back. */
const ABSENT_RANK = { page_open: 0, reconnecting: 1, left: 2, not_joined: 3 };
/** How many names the roll call lists as not answered yet, before "and N more". */
const UNANSWERED_NAMES = 8;

/** Who holds the floor, with "take back", and the queue of requests, each with "give". */
export function installFloorPanel(session, act) {
  const holderBox = document.getElementById('floor-holder');
  const holderText = document.getElementById('floor-holder-text');
  const takeBack = document.getElementById('take-floor');
  const queueList = document.getElementById('floor-queue');
  const queueEmpty = document.getElementById('floor-queue-empty');
  const queueCount = document.getElementById('floor-queue-count');

  takeBack.addEventListener('click', () => {
    const holder = session.floor.holder;
    act({ type: 'take_floor' }, holder ? holder.name : '');
  });
  queueList.addEventListener('click', (event) => {
    const target = event.target.closest('button[data-site]');
    if (!target) return;
    act({ type: 'give_floor', site: target.dataset.site }, target.dataset.name);
  });

  const render = () => {
    const { holder, queue } = session.floor;
    holderBox.dataset.holder = holder ? holder.site : 'none';
    holderText.textContent = holder ? t('floor.holder', { name: holder.name }) : t('floor.nobody');
    takeBack.hidden = !holder;
    queueEmpty.hidden = queue.length > 0;
    queueCount.textContent = queue.length > 0 ? `(${queue.length})` : '';
    queueList.replaceChildren(
      ...queue.map((site, index) => {
        const item = document.createElement('li');
        item.dataset.site = site.site;
        const name = document.createElement('span');
        name.className = 'queue-name';
        name.textContent = `${index + 1}. ${site.name}`;
        name.title = site.name;
        const give = document.createElement('button');
        give.type = 'button';
        give.className = 'small primary';
        give.dataset.site = site.site;
        give.dataset.name = site.name;
        give.textContent = t('floor.give');
        item.append(name, give);
        return item;
      }),
    );
  };
  session.addEventListener('floor', render);
  window.addEventListener('languagechange', render);
  render();
}

/** "Mute all" / "unmute all", and how many sites the chair has muted. */
export function installMicPanel(session, act) {
  const summary = document.getElementById('mic-summary');
  document.getElementById('mute-all').addEventListener('click', () => act({ type: 'mute_all', muted: true }, ''));
  document.getElementById('unmute-all').addEventListener('click', () => act({ type: 'mute_all', muted: false }, ''));
  const render = () => {
    const sites = session.console ? session.console.sites : [];
    const joined = sites.filter((s) => JOINED_STATES.has(s.state));
    const muted = joined.filter((s) => s.muted).length;
    summary.textContent = t('mic.summary', { muted, joined: joined.length });
  };
  session.addEventListener('console', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * Where the programme comes from while the studio's encoder publishes (WHIP): the encoder, or
 * the chair's own camera and microphone. Shown while an encoder publishes, or while the chair's
 * choice of the camera stands for the next one. `onChange(programme)` follows the hub's state.
 */
export function installProgrammePanel(session, act, onChange) {
  const panel = document.getElementById('programme-panel');
  const encoderButton = document.getElementById('programme-encoder');
  const cameraButton = document.getElementById('programme-camera');
  const state = document.getElementById('programme-state');
  encoderButton.addEventListener('click', () => act({ type: 'switch_programme', source: 'encoder' }, ''));
  cameraButton.addEventListener('click', () => act({ type: 'switch_programme', source: 'camera' }, ''));
  const render = () => {
    const programme = session.programme || { source: 'encoder', encoder: false };
    const camera = programme.source === 'camera';
    panel.hidden = !programme.encoder && !camera;
    encoderButton.setAttribute('aria-pressed', String(!camera));
    cameraButton.setAttribute('aria-pressed', String(camera));
    const key = programme.encoder
      ? camera ? 'programme.cameraOnAir' : 'programme.encoderOnAir'
      : 'programme.cameraForNext';
    state.textContent = t(key);
  };
  session.addEventListener('programme', () => {
    render();
    onChange(session.programme);
  });
  session.addEventListener('reset', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * The meeting's recording: whether it runs (which part, since when), the chair's buttons to
 * start and stop it, and a warning when it stopped or could not start by itself (the disk).
 */
export function installRecordingPanel(session, act) {
  const start = document.getElementById('recording-start');
  const stop = document.getElementById('recording-stop');
  const state = document.getElementById('recording-state');
  start.addEventListener('click', () => act({ type: 'record', on: true }, ''));
  stop.addEventListener('click', () => act({ type: 'record', on: false }, ''));
  const render = () => {
    const recording = session.recording || { recording: false, part: null, since: null, trouble: null };
    start.hidden = recording.recording;
    stop.hidden = !recording.recording;
    let text = recording.recording
      ? t('recording.running', { part: recording.part, since: recording.since ? formatTime(recording.since, 'timeSeconds') : '' })
      : t('recording.notRunning');
    if (recording.trouble) text = `${t(`recording.trouble.${recording.trouble}`)} ${text}`;
    state.textContent = text;
    state.classList.toggle('warning', Boolean(recording.trouble));
  };
  session.addEventListener('recording', render);
  session.addEventListener('reset', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * The roll call: start and end, the answers as they come (count, who confirmed and their
 * position, when), and the totals: sites answered of those joined, delegates declared.
 */
export function installRollCallPanel(session, act) {
  const start = document.getElementById('roll-call-start');
  const end = document.getElementById('roll-call-end');
  const stateLine = document.getElementById('roll-call-state');
  const totals = document.getElementById('roll-call-totals');
  const sitesFigure = document.getElementById('rc-sites');
  const delegatesFigure = document.getElementById('rc-delegates');
  const list = document.getElementById('roll-call-answers');

  /** The roll call shown: `{ number, active, result }`, or null before the first. Once ended,
   * `result` is the hub's record of it, which later leaves and joins do not change. */
  let current = null;
  /** Answers of `current` by site code, in arrival order. */
  let answers = new Map();

  start.addEventListener('click', () => act({ type: 'start_roll_call' }, ''));
  end.addEventListener('click', () => act({ type: 'end_roll_call' }, ''));

  const follow = (number, active, result = null) => {
    if (number === null || number === undefined) {
      if (current && current.active) current = { ...current, active: false };
      return;
    }
    if (!current || current.number !== number) answers = new Map();
    const kept = current && current.number === number ? current.result : null;
    current = { number, active, result: active ? null : result || kept };
  };

  /** An ended roll call as the hub recorded it: answers, totals and who did not answer. */
  const renderResult = (result) => {
    const sites = session.console ? session.console.sites : [];
    const expected = sites.reduce((sum, s) => sum + (s.expected_delegates || 0), 0);
    const present = result.answered.length + result.not_answered.length;
    totals.hidden = false;
    sitesFigure.textContent = t('rollCall.resultSitesFigure', {
      answered: result.answered.length,
      present,
    });
    delegatesFigure.textContent = t('rollCall.delegatesFigure', {
      count: formatNumber(result.delegates),
      expected: formatNumber(expected),
    });
    const items = result.answered.map((entry) => {
      const item = document.createElement('li');
      item.dataset.site = entry.site;
      const head = document.createElement('div');
      head.className = 'answer-head';
      const name = document.createElement('span');
      name.className = 'answer-name';
      name.textContent = entry.name;
      const count = document.createElement('span');
      count.className = 'answer-count';
      count.textContent = t('rollCall.count', { count: formatNumber(entry.count) });
      head.append(name, count);
      item.append(head);
      const answer = answers.get(entry.site);
      if (answer) {
        const who = document.createElement('div');
        who.className = 'answer-who small';
        who.textContent = t('rollCall.confirmedBy', {
          name: answer.confirmed_by,
          position: answer.position,
          at: formatTime(answer.at, 'timeSeconds'),
        });
        item.append(who);
      }
      return item;
    });
    if (result.not_answered.length > 0) {
      const item = document.createElement('li');
      item.className = 'answer-missing small';
      item.dataset.missing = String(result.not_answered.length);
      item.textContent = t('rollCall.notAnswered', {
        count: result.not_answered.length,
        names: result.not_answered.map((s) => s.name).join(', '),
      });
      items.push(item);
    }
    list.replaceChildren(...items);
  };

  const render = () => {
    const active = Boolean(current && current.active);
    start.hidden = active;
    end.hidden = !active;
    const joined = session.signalingState === 'joined';
    start.disabled = !joined;
    end.disabled = !joined;
    if (!current) {
      stateLine.textContent = t('rollCall.none');
      stateLine.dataset.level = '';
      totals.hidden = true;
      list.replaceChildren();
      return;
    }
    stateLine.textContent = t(active ? 'rollCall.running' : 'rollCall.ended', { number: current.number });
    stateLine.dataset.level = active ? 'wait' : 'good';
    if (current.result) {
      renderResult(current.result);
      return;
    }

    const sites = session.console ? session.console.sites : [];
    const answeredCodes = new Set(answers.keys());
    for (const s of sites) if (s.answered_roll_call) answeredCodes.add(s.site);
    const joinedSites = sites.filter((s) => JOINED_STATES.has(s.state));
    let delegates = 0;
    for (const code of answeredCodes) {
      const answer = answers.get(code);
      const entry = sites.find((s) => s.site === code);
      delegates += answer ? answer.count : entry && entry.head_count ? entry.head_count : 0;
    }
    const expected = sites.reduce((sum, s) => sum + (s.expected_delegates || 0), 0);
    totals.hidden = false;
    sitesFigure.textContent = t('rollCall.sitesFigure', {
      answered: answeredCodes.size,
      joined: joinedSites.length,
      invited: sites.length,
    });
    delegatesFigure.textContent = t('rollCall.delegatesFigure', {
      count: formatNumber(delegates),
      expected: formatNumber(expected),
    });

    const items = [...answers.values()].map((answer) => {
      const item = document.createElement('li');
      item.dataset.site = answer.site;
      const head = document.createElement('div');
      head.className = 'answer-head';
      const name = document.createElement('span');
      name.className = 'answer-name';
      name.textContent = answer.name;
      const count = document.createElement('span');
      count.className = 'answer-count';
      count.textContent = t('rollCall.count', { count: formatNumber(answer.count) });
      head.append(name, count);
      const who = document.createElement('div');
      who.className = 'answer-who small';
      who.textContent = t('rollCall.confirmedBy', {
        name: answer.confirmed_by,
        position: answer.position,
        at: formatTime(answer.at, 'timeSeconds'),
      });
      item.append(head, who);
      return item;
    });
    const waiting = joinedSites.filter((s) => !answeredCodes.has(s.site));
    if (active && waiting.length > 0) {
      const item = document.createElement('li');
      item.className = 'answer-waiting small';
      const names = waiting.slice(0, UNANSWERED_NAMES).map((s) => s.name);
      const more = waiting.length - names.length;
      item.textContent = t(more > 0 ? 'rollCall.waitingMore' : 'rollCall.waiting', {
        count: waiting.length,
        names: names.join(', '),
        more,
      });
      items.push(item);
    }
    list.replaceChildren(...items);
  };

  session.addEventListener('rollcall', () => {
    follow(session.rollCall.number, session.rollCall.active, session.rollCall.result);
    render();
  });
  session.addEventListener('rollcallanswer', (event) => {
    const answer = event.detail;
    follow(answer.roll_call, current ? current.active : true);
    if (current && current.number === answer.roll_call) answers.set(answer.site, answer);
    render();
  });
  session.addEventListener('console', (event) => {
    const number = event.detail.roll_call;
    if (number !== null && number !== undefined) follow(number, true);
    else if (current && current.active) follow(null, false);
    render();
  });
  session.addEventListener('statechange', render);
  window.addEventListener('languagechange', render);
  render();
}

/**
 * Sites not in the meeting, those that can be called first (their page is open), each with a
 * "call" button when it can be. Rows are kept and reordered, not rebuilt.
 */
export function installAbsentPanel(session, act) {
  const list = document.getElementById('absent-list');
  const empty = document.getElementById('absent-empty');
  const count = document.getElementById('absent-count');
  const rows = new Map();

  list.addEventListener('click', (event) => {
    const target = event.target.closest('button[data-site]');
    if (target) act({ type: 'call_site', site: target.dataset.site }, target.dataset.name);
  });

  const rowFor = (code) => {
    let row = rows.get(code);
    if (!row) {
      const item = document.createElement('li');
      item.dataset.site = code;
      const name = document.createElement('span');
      name.className = 'absent-name';
      const state = document.createElement('span');
      state.className = 'absent-state small';
      const call = document.createElement('button');
      call.type = 'button';
      call.className = 'small primary';
      call.dataset.site = code;
      item.append(name, state, call);
      row = { item, name, state, call, written: {} };
      rows.set(code, row);
    }
    return row;
  };

  const render = () => {
    const sites = session.console ? session.console.sites : [];
    const absent = sites
      .map((s, index) => ({ s, index }))
      .filter(({ s }) => !JOINED_STATES.has(s.state))
      .sort((a, b) => ABSENT_RANK[a.s.state] - ABSENT_RANK[b.s.state] || a.index - b.index)
      .map(({ s }) => s);
    const keep = new Set(absent.map((s) => s.site));
    for (const [code, row] of rows) {
      if (!keep.has(code)) {
        row.item.remove();
        rows.delete(code);
      }
    }
    let cursor = list.firstElementChild;
    for (const s of absent) {
      const row = rowFor(s.site);
      const stateText = t(`siteState.${s.state}`);
      const callText = t('absent.call');
      const key = `${s.name}|${s.state}|${stateText}|${callText}`;
      if (row.written.key !== key) {
        row.written.key = key;
        row.item.dataset.state = s.state;
        row.name.textContent = s.name;
        row.name.title = `${s.name} (${s.site})`;
        row.state.textContent = stateText;
        row.call.textContent = callText;
        row.call.dataset.name = s.name;
        row.call.hidden = s.state !== 'page_open';
      }
      if (row.item === cursor) cursor = cursor.nextElementSibling;
      else list.insertBefore(row.item, cursor);
    }
    empty.hidden = absent.length > 0 || sites.length === 0;
    count.textContent = sites.length > 0 ? `(${absent.length}/${sites.length})` : '';
  };
  session.addEventListener('console', render);
  window.addEventListener('languagechange', render);
  render();
}
