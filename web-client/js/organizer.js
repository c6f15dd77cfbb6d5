// The organizer's page: the sites directory (CSV import and export), creating a meeting with
// its roster, and for each meeting its join links, code reissue, start and end.
//
// Views follow the address's fragment: `#new`, `#directory`, `#meeting-12`, so the browser's
// back button and a reload keep the place.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { installAccountBar } from './account.js';
import {
  ApiError,
  SITES_CSV_PATH,
  absoluteLink,
  createMeeting,
  describeApiError,
  endMeeting,
  fetchEncoder,
  fetchMeeting,
  fetchWatch,
  issueEncoderToken,
  issueWatchToken,
  importSites,
  listMeetings,
  listSites,
  reissueSiteCode,
  startMeeting,
} from './api.js';
import { formatTime, fromLocalInput, sameDay, toLocalInput } from './localtime.js';

/** Most delegates a hall may be expected to hold (the hub's limit). */
const MAX_DELEGATES = 10_000;
const HOUR_MS = 3_600_000;
const FILTER_DELAY_MS = 120;

/** The two programme links of a meeting: the studio encoder's (WHIP) and the watch link (WHEP). */
const STREAMS = {
  encoder: {
    fetch: fetchEncoder,
    issue: issueEncoderToken,
    url: (view) => view.whip,
    state: (view) => t(view.publishing ? 'encoder.publishing' : 'encoder.idle'),
    confirm: 'encoder.confirmIssue',
    issued: 'encoder.issued',
  },
  watch: {
    fetch: fetchWatch,
    issue: issueWatchToken,
    url: (view) => view.whep,
    state: (view) => t('watch.count', { viewers: view.viewers, limit: view.limit }),
    confirm: 'watch.confirmIssue',
    issued: 'watch.issued',
  },
};

const state = {
  /**
   * Whether the account may organize. Staff see the meetings, rosters and directory only: no
   * control they may not use, and no request the hub would refuse.
   */
  organizer: false,
  /** @type {object[]|null} the directory, once loaded */
  sites: null,
  /** Per site code: `{ selected, expected, row, checkbox, input, searchText }`. */
  picks: new Map(),
  /** @type {object[]} meetings, newest first */
  meetings: [],
  /** The meeting shown in the meeting view. */
  meeting: null,
  /** `{ key, params, level }` shown under the meeting's buttons. */
  meetingMessage: null,
  /**
   * The programme's HTTP links of the meeting shown, by panel (`encoder`: WHIP, `watch`: WHEP):
   * `{ meeting, view }` as `GET .../encoder` or `GET .../watch` answered.
   */
  streams: { encoder: null, watch: null },
  streamsLoading: { encoder: false, watch: false },
};

const $ = (id) => document.getElementById(id);
/** The timer of a filter typed but not applied yet. */
let pendingFilter = null;
/** What the import box shows: `{ message, problems }`. */
let importShown = null;
/** What the create form's error box says: a text key with its parameters, or an API error. */
let createProblem = null;
/** The last failure to load the page's data, shown above everything. */
let pageError = null;

installLanguageToggle($('lang'));
/** The logged-in account (`{username, role}`), or null when it could not be read. */
const accountReady = installAccountBar($('account'), $('logout')).catch((error) => {
  console.warn('[diemcau] session', error);
  return null;
});
applyTranslations();
$('export-link').href = SITES_CSV_PATH;

window.addEventListener('hashchange', showView);
window.addEventListener('languagechange', () => {
  renderPageError();
  renderCreateProblem();
  renderMeetingList();
  renderSelection();
  renderMeeting();
  renderDirectorySummary();
});
$('refresh').addEventListener('click', () => loadMeetings().catch(showPageError));

installCreateForm();
installMeetingView();
installDirectoryView();
start();

async function start() {
  const account = await accountReady;
  state.organizer = account !== null && account.role === 'organizer';
  for (const element of document.querySelectorAll('.organizer-only')) element.hidden = !state.organizer;
  for (const element of document.querySelectorAll('.staff-only')) element.hidden = state.organizer;
  await Promise.all([loadMeetings(), loadSites()]).catch(showPageError);
  if (!window.location.hash) window.location.replace(defaultView());
  showView();
  window.diemcauOrganizer = { ready: true };
}

// ---- views ----

/** The view a bare address opens: the newest meeting, else the form (the directory for staff). */
function defaultView() {
  if (state.meetings.length > 0) return `#meeting-${state.meetings[0].id}`;
  return state.organizer ? '#new' : '#directory';
}

function showView() {
  if (!state.organizer && window.location.hash !== '' && !/^#(meeting-\d+|directory)$/.test(window.location.hash)) {
    // The new meeting form is the organizers' alone.
    window.location.replace(defaultView());
    return;
  }
  const hash = window.location.hash.slice(1);
  const meetingMatch = /^meeting-(\d+)$/.exec(hash);
  const view = meetingMatch ? 'meeting' : hash === 'directory' ? 'directory' : 'create';
  for (const name of ['create', 'meeting', 'directory']) $(`view-${name}`).hidden = name !== view;
  $('new-meeting').setAttribute('aria-current', view === 'create' ? 'page' : 'false');
  $('show-directory').setAttribute('aria-current', view === 'directory' ? 'page' : 'false');
  if (meetingMatch) {
    const id = Number(meetingMatch[1]);
    if (!state.meeting || state.meeting.id !== id) {
      state.meeting = state.meetings.find((m) => m.id === id) || null;
      state.meetingMessage = null;
    }
    renderMeeting();
    fetchMeeting(id)
      .then((meeting) => {
        if (window.location.hash === `#meeting-${id}`) showMeeting(meeting);
      })
      .catch(showPageError);
  } else {
    state.meeting = null;
  }
  renderMeetingList();
}

function showPageError(error) {
  pageError = error;
  renderPageError();
  console.error('[diemcau] organizer', error);
}

function clearPageError() {
  pageError = null;
  renderPageError();
}

function renderPageError() {
  const box = $('page-error');
  box.hidden = !pageError;
  if (pageError) box.textContent = describeApiError(pageError);
}

// ---- meeting list ----

async function loadMeetings() {
  state.meetings = await listMeetings();
  clearPageError();
  renderMeetingList();
}

function renderMeetingList() {
  const list = $('meeting-list');
  list.replaceChildren();
  $('no-meetings').hidden = state.meetings.length > 0;
  const selected = state.meeting ? state.meeting.id : null;
  for (const meeting of state.meetings) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `#meeting-${meeting.id}`;
    link.className = 'meeting-item';
    link.dataset.meeting = String(meeting.id);
    if (meeting.id === selected) link.setAttribute('aria-current', 'true');
    const title = document.createElement('span');
    title.className = 'meeting-item-title';
    title.textContent = meeting.title;
    const when = document.createElement('span');
    when.className = 'meeting-item-when';
    when.textContent = formatTime(meeting.scheduled_start, 'dateTime');
    link.append(title, stateBadge(meeting.state), when);
    item.append(link);
    list.append(item);
  }
}

function stateBadge(meetingState) {
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.dataset.state = meetingState;
  badge.textContent = t(`meetingState.${meetingState}`);
  return badge;
}

// ---- create ----

async function loadSites() {
  state.sites = await listSites();
  buildSitePicker();
  renderDirectorySummary();
}

function installCreateForm() {
  const startInput = $('start');
  const endInput = $('end');
  // Default: the next full hour, for two hours.
  const next = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS;
  startInput.value = toLocalInput(next);
  endInput.value = toLocalInput(next + 2 * HOUR_MS);
  let lastStart = fromLocalInput(startInput.value);
  startInput.addEventListener('input', () => {
    // Moving the start moves the end with it, keeping the duration: as soon as the start reads
    // as a date and time, while the start is the field being typed in (on `change` the end
    // could already be the field typed in, and its text would change under the typing).
    const newStart = fromLocalInput(startInput.value);
    if (newStart === null) return;
    const end = fromLocalInput(endInput.value);
    if (lastStart !== null && end !== null && newStart !== lastStart) {
      endInput.value = toLocalInput(end + (newStart - lastStart));
    }
    lastStart = newStart;
  });

  // Filtering thousands of rows on every key press would lag behind typing.
  $('site-filter').addEventListener('input', () => {
    clearTimeout(pendingFilter);
    pendingFilter = setTimeout(applyFilter, FILTER_DELAY_MS);
  });
  $('only-selected').addEventListener('change', applyFilter);
  $('select-filtered').addEventListener('change', (event) => {
    // "All filtered" means what the filter box says now, even if typed a moment ago.
    if (pendingFilter !== null) applyFilter();
    for (const pick of visiblePicks()) setSelected(pick, event.target.checked);
    renderSelection();
  });
  $('create-form').addEventListener('submit', (event) => {
    event.preventDefault();
    submitMeeting();
  });
}

function buildSitePicker() {
  const body = $('site-rows');
  body.replaceChildren();
  const previous = state.picks;
  state.picks = new Map();
  const collator = new Intl.Collator('vi');
  const sites = [...state.sites].sort(
    (a, b) =>
      collator.compare(a.parent_name || '', b.parent_name || '') ||
      levelRank(a.level) - levelRank(b.level) ||
      collator.compare(a.name, b.name),
  );
  for (const site of sites) {
    const kept = previous.get(site.code);
    const row = document.createElement('tr');
    row.dataset.site = site.code;

    const checkbox = document.createElement('input');
    checkbox.type = 'checkbox';
    checkbox.id = `pick-${site.code}`;
    checkbox.setAttribute('aria-label', site.name);
    const checkCell = document.createElement('td');
    checkCell.className = 'col-check';
    checkCell.append(checkbox);

    const code = cell(site.code, 'code');
    const nameCell = document.createElement('td');
    const label = document.createElement('label');
    label.htmlFor = checkbox.id;
    label.textContent = site.name;
    nameCell.append(label);
    const parent = cell(site.parent_name || '', 'muted');

    const input = document.createElement('input');
    input.type = 'number';
    input.min = '0';
    input.max = String(MAX_DELEGATES);
    input.step = '1';
    input.className = 'delegates-input';
    input.value = kept ? kept.input.value : String(site.delegates ?? 0);
    input.setAttribute('aria-label', `${site.name}: ${t('col.expectedDelegates')}`);
    const inputCell = document.createElement('td');
    inputCell.className = 'num';
    inputCell.append(input);

    row.append(checkCell, code, nameCell, parent, inputCell);
    body.append(row);

    const pick = {
      site,
      selected: false,
      row,
      checkbox,
      input,
      searchText: searchable(`${site.name} ${site.parent_name || ''} ${site.code} ${site.kind || ''}`),
    };
    setSelected(pick, kept ? kept.selected : false);
    checkbox.addEventListener('change', () => {
      setSelected(pick, checkbox.checked);
      renderSelection();
    });
    input.addEventListener('input', renderSelection);
    state.picks.set(site.code, pick);
  }
  $('directory-empty').hidden = sites.length > 0;
  applyFilter();
}

function levelRank(level) {
  return { province: 0, district: 1, commune: 2 }[level] ?? 3;
}

function setSelected(pick, selected) {
  pick.selected = selected;
  pick.checkbox.checked = selected;
  pick.row.classList.toggle('selected', selected);
}

/**
 * Text folded for search, with a space before each word: lower case, no diacritics, `đ` as
 * `d` ("thuong lam" finds "Thượng Lâm").
 */
function searchable(text) {
  const folded = text.toLowerCase().normalize('NFD').replace(/\p{M}/gu, '').replace(/đ/g, 'd');
  return ` ${folded.split(/[\s,.;()/-]+/).filter(Boolean).join(' ')}`;
}

function applyFilter() {
  clearTimeout(pendingFilter);
  pendingFilter = null;
  // Every word typed must begin a word of the site's name, parent, code or kind.
  const words = searchable($('site-filter').value).split(' ').filter(Boolean);
  const onlySelected = $('only-selected').checked;
  let shown = 0;
  for (const pick of state.picks.values()) {
    const match =
      (!onlySelected || pick.selected) && words.every((word) => pick.searchText.includes(` ${word}`));
    pick.row.hidden = !match;
    if (match) shown += 1;
  }
  $('no-match').hidden = shown > 0 || state.picks.size === 0;
  renderSelection();
}

function visiblePicks() {
  return [...state.picks.values()].filter((pick) => !pick.row.hidden);
}

function renderSelection() {
  const visible = visiblePicks();
  const visibleSelected = visible.filter((pick) => pick.selected).length;
  const all = $('select-filtered');
  all.checked = visible.length > 0 && visibleSelected === visible.length;
  all.indeterminate = visibleSelected > 0 && visibleSelected < visible.length;
  all.disabled = visible.length === 0;
  const filtering = $('site-filter').value.trim() !== '' || $('only-selected').checked;
  $('select-filtered-label').textContent = t(filtering ? 'create.selectFiltered' : 'create.selectAll', {
    count: visible.length,
  });
  const selected = [...state.picks.values()].filter((pick) => pick.selected);
  const delegates = selected.reduce((sum, pick) => sum + (Number(pick.input.value) || 0), 0);
  $('selection-summary').textContent = t('create.selectionSummary', {
    selected: selected.length,
    total: state.picks.size,
    delegates,
  });
}

/** The plan to send, or `{ problem, field }`: the first thing to fix (a text key and an input). */
function readPlan() {
  const title = $('title').value.trim();
  if (!title) return { problem: 'create.needTitle', field: $('title') };
  const studioName = $('studio-name').value.trim();
  if (!studioName) return { problem: 'create.needStudioName', field: $('studio-name') };
  const start = fromLocalInput($('start').value);
  if (start === null) return { problem: $('start').value.trim() ? 'create.badStart' : 'create.needStart', field: $('start') };
  const end = fromLocalInput($('end').value);
  if (end === null) return { problem: $('end').value.trim() ? 'create.badEnd' : 'create.needEnd', field: $('end') };
  if (end <= start) return { problem: 'create.endBeforeStart', field: $('end') };
  const sites = [];
  for (const pick of state.picks.values()) {
    if (!pick.selected) continue;
    const text = pick.input.value.trim();
    if (!/^[0-9]+$/.test(text) || Number(text) > MAX_DELEGATES) {
      return { problem: 'create.badDelegates', params: { name: pick.site.name }, field: pick.input };
    }
    sites.push({ code: pick.site.code, expected_delegates: Number(text) });
  }
  if (sites.length === 0) return { problem: 'create.needSites', field: $('site-filter') };
  const plan = { title, studio_name: studioName, scheduled_start: start, scheduled_end: end, sites };
  const recording = $('recording-mode').value;
  if (recording) plan.recording = recording;
  return { plan };
}

function renderCreateProblem() {
  const box = $('create-error');
  box.hidden = !createProblem;
  if (!createProblem) return;
  box.textContent = createProblem.error
    ? describeApiError(createProblem.error)
    : t(createProblem.key, createProblem.params || {});
}

async function submitMeeting() {
  const read = readPlan();
  if (read.problem) {
    createProblem = { key: read.problem, params: read.params };
    renderCreateProblem();
    const row = read.field.closest('tr');
    if (row && row.hidden) {
      // The site to fix is filtered out of view: show everything again.
      $('site-filter').value = '';
      applyFilter();
    }
    read.field.focus();
    return;
  }
  createProblem = null;
  renderCreateProblem();
  const button = $('create-submit');
  button.disabled = true;
  try {
    const meeting = await createMeeting(read.plan);
    state.meetings = [meeting, ...state.meetings.filter((m) => m.id !== meeting.id)];
    state.meeting = meeting;
    state.meetingMessage = { key: 'meeting.created', level: 'good' };
    for (const pick of state.picks.values()) setSelected(pick, false);
    $('title').value = '';
    renderSelection();
    window.location.hash = `#meeting-${meeting.id}`;
  } catch (error) {
    createProblem = { error };
    renderCreateProblem();
  } finally {
    button.disabled = false;
  }
}

// ---- one meeting ----

function installMeetingView() {
  $('m-start').addEventListener('click', () => meetingAction('start'));
  $('m-end').addEventListener('click', () => {
    if (!window.confirm(t('meeting.confirmEnd', { title: state.meeting.title }))) return;
    meetingAction('end');
  });
  for (const name of Object.keys(STREAMS)) $(`m-${name}-issue`).addEventListener('click', () => issueStreamToken(name));
  $('m-copy-all').addEventListener('click', async () => {
    const meeting = state.meeting;
    if (!meeting) return;
    // The text goes to the communes: their links only. The studio's link, which needs an
    // organizer's login, is copied on its own from its row.
    const sites = linkEntries(meeting).filter((entry) => entry.kind === 'site' && entry.link);
    const lines = [`${meeting.title}`, ...sites.map((entry) => `${entry.label}: ${entry.link}`)];
    const ok = await copyText(lines.join('\n'));
    setMeetingMessage(ok ? 'meeting.copiedAll' : 'meeting.copyFailed', { count: sites.length }, ok ? 'good' : 'bad');
  });
}

function showMeeting(meeting) {
  state.meeting = meeting;
  state.meetings = state.meetings.map((m) => (m.id === meeting.id ? meeting : m));
  if (!state.meetings.some((m) => m.id === meeting.id)) state.meetings.unshift(meeting);
  renderMeeting();
  renderMeetingList();
}

async function meetingAction(action) {
  const meeting = state.meeting;
  if (!meeting) return;
  const buttons = [$('m-start'), $('m-end')];
  for (const button of buttons) button.disabled = true;
  try {
    // The hub answers with the meeting as it now stands.
    const updated = action === 'start' ? await startMeeting(meeting.id) : await endMeeting(meeting.id);
    state.meetingMessage = { key: action === 'start' ? 'meeting.started' : 'meeting.ended', level: 'good' };
    showMeeting(updated);
  } catch (error) {
    setMeetingMessage('meeting.actionFailed', { reason: describeApiError(error) }, 'bad');
    // The state may have changed elsewhere (409): show what the hub has now.
    fetchMeeting(meeting.id).then(showMeeting).catch(() => {});
  } finally {
    renderMeeting();
  }
}

function setMeetingMessage(key, params, level) {
  state.meetingMessage = { key, params, level };
  renderMeetingMessage();
}

function renderMeetingMessage() {
  const box = $('m-message');
  const message = state.meetingMessage;
  box.hidden = !message;
  if (!message) return;
  box.textContent = t(message.key, message.params || {});
  box.dataset.level = message.level;
}

/** The studio's link and one per roster site, absolute, in roster order. */
function linkEntries(meeting) {
  const links = meeting.links || {};
  const siteLinks = links.sites || {};
  const servedBy = meeting.served_by || {};
  const entries = [
    {
      kind: 'studio',
      code: null,
      label: t('meeting.studioLabel', { name: meeting.studio_name || '' }),
      delegates: null,
      link: links.studio ? absoluteLink(links.studio) : null,
    },
  ];
  for (const site of meeting.roster || []) {
    entries.push({
      kind: 'site',
      code: site.code,
      label: site.name,
      delegates: site.expected_delegates,
      link: siteLinks[site.code] ? absoluteLink(siteLinks[site.code]) : null,
      servedBy: servedBy[site.code] || null,
    });
  }
  return entries;
}

function renderMeeting() {
  const meeting = state.meeting;
  if (!meeting) {
    $('m-title').textContent = '';
    $('m-links').replaceChildren();
    return;
  }
  $('m-title').textContent = meeting.title;
  $('m-state').replaceWith(Object.assign(stateBadge(meeting.state), { id: 'm-state' }));
  const sameDate = sameDay(meeting.scheduled_start, meeting.scheduled_end);
  $('m-details').textContent = t('meeting.details', {
    id: meeting.id,
    start: formatTime(meeting.scheduled_start, 'dateTime'),
    end: formatTime(meeting.scheduled_end, sameDate ? 'time' : 'dateTime'),
    studio: meeting.studio_name || '',
    sites: (meeting.roster || []).length,
    delegates: (meeting.roster || []).reduce((sum, s) => sum + (s.expected_delegates || 0), 0),
  });
  $('m-recording-mode').textContent = meeting.recording
    ? t('meeting.recordingMode', { mode: t(`recordingMode.${meeting.recording}`) })
    : t('meeting.recordingMode', { mode: t('recordingMode.hub') });
  $('m-start').disabled = meeting.state !== 'scheduled';
  $('m-end').disabled = meeting.state !== 'in_progress';
  const studio = $('m-studio');
  const studioLink = meeting.links && meeting.links.studio;
  studio.hidden = !studioLink || meeting.state === 'ended';
  if (studioLink) studio.href = absoluteLink(studioLink);
  $('m-report').href = `report.html?meeting=${encodeURIComponent(meeting.id)}`;
  renderMeetingMessage();
  renderStreams();

  const heading = $('m-links-heading');
  heading.dataset.i18n = state.organizer ? 'meeting.links' : 'create.sites';
  heading.textContent = t(heading.dataset.i18n);
  const body = $('m-links');
  body.replaceChildren();
  for (const entry of linkEntries(meeting)) {
    if (!state.organizer && entry.kind === 'studio') continue;
    const row = document.createElement('tr');
    row.dataset.kind = entry.kind;
    if (entry.code) row.dataset.site = entry.code;

    const nameCell = document.createElement('td');
    nameCell.textContent = entry.label;
    if (entry.code) {
      const code = document.createElement('span');
      code.className = 'code muted';
      code.textContent = ` ${entry.code}`;
      nameCell.append(code);
    }
    const delegates = cell(entry.delegates === null ? '' : String(entry.delegates), 'num');
    if (!state.organizer) {
      // Staff see the roster; join codes are the organizers' (one note above the table).
      row.append(nameCell, delegates);
      body.append(row);
      continue;
    }

    const linkCell = document.createElement('td');
    linkCell.className = 'link-cell';
    if (entry.link) {
      // Text, not a link: opening a site's link here would join as that site and push the
      // hall itself out of the meeting. One click selects all of it for copying by hand.
      const field = document.createElement('code');
      field.className = 'link-field';
      field.textContent = entry.link;
      linkCell.append(field);
    } else if (entry.servedBy) {
      // A commune of a province with its own hub: that hub gives it its link.
      linkCell.textContent = t('meeting.servedBy', { node: entry.servedBy });
      linkCell.classList.add('muted');
      row.dataset.servedBy = entry.servedBy;
    } else {
      linkCell.textContent = t('meeting.noLink');
      linkCell.classList.add('muted');
    }

    const actions = document.createElement('td');
    actions.className = 'row-actions';
    if (entry.link) {
      const copy = document.createElement('button');
      copy.type = 'button';
      copy.className = 'copy';
      copy.textContent = t('action.copy');
      copy.addEventListener('click', async () => {
        const ok = await copyText(entry.link);
        copy.textContent = t(ok ? 'action.copied' : 'action.copyFailed');
        setTimeout(() => {
          copy.textContent = t('action.copy');
        }, 2000);
      });
      actions.append(copy);
    }
    if (entry.kind === 'site' && !entry.servedBy) {
      const reissue = document.createElement('button');
      reissue.type = 'button';
      reissue.className = 'reissue';
      reissue.textContent = t('meeting.reissue');
      reissue.disabled = meeting.state === 'ended';
      reissue.addEventListener('click', () => reissueLink(meeting, entry));
      actions.append(reissue);
    }
    row.append(nameCell, delegates, linkCell, actions);
    body.append(row);
  }
}

/** The programme links of the meeting shown, its address, token and state (organizers only). */
function renderStreams() {
  for (const name of Object.keys(STREAMS)) renderStream(name);
}

function renderStream(name) {
  const meeting = state.meeting;
  const panel = $(`m-${name}`);
  panel.hidden = !state.organizer || !meeting || meeting.state === 'ended';
  if (panel.hidden) return;
  const known = state.streams[name];
  const view = known && known.meeting === meeting.id ? known.view : null;
  if (!view && !state.streamsLoading[name]) {
    state.streamsLoading[name] = true;
    STREAMS[name]
      .fetch(meeting.id)
      .then((fetched) => {
        state.streams[name] = { meeting: meeting.id, view: fetched };
      })
      .catch(() => {})
      .finally(() => {
        state.streamsLoading[name] = false;
        if (state.streams[name]) renderStream(name);
      });
  }
  $(`m-${name}-url`).textContent = view ? absoluteLink(STREAMS[name].url(view)) : '';
  $(`m-${name}-token`).textContent = view && view.token ? view.token : t('encoder.noToken');
  $(`m-${name}-state`).textContent = view ? STREAMS[name].state(view) : '';
  if (name === 'watch') {
    // The watch page plays the link in a browser; the token rides in the fragment, which
    // browsers never send to a server.
    const page = $('m-watch-page');
    const link = view && view.token ? absoluteLink(`/watch.html?meeting=${meeting.id}#token=${view.token}`) : '';
    page.textContent = link || t('encoder.noToken');
    if (link) page.href = link;
    else page.removeAttribute('href');
  }
}

async function issueStreamToken(name) {
  const meeting = state.meeting;
  if (!meeting) return;
  const known = state.streams[name];
  const current = known && known.meeting === meeting.id ? known.view : null;
  if (current && current.token && !window.confirm(t(STREAMS[name].confirm))) return;
  try {
    const view = await STREAMS[name].issue(meeting.id);
    state.streams[name] = { meeting: meeting.id, view };
    setMeetingMessage(STREAMS[name].issued, {}, 'good');
    renderStream(name);
  } catch (error) {
    setMeetingMessage('meeting.actionFailed', { reason: describeApiError(error) }, 'bad');
  }
}

async function reissueLink(meeting, entry) {
  if (!window.confirm(t('meeting.confirmReissue', { name: entry.label }))) return;
  try {
    await reissueSiteCode(meeting.id, entry.code);
    state.meetingMessage = { key: 'meeting.reissued', params: { name: entry.label }, level: 'good' };
    showMeeting(await fetchMeeting(meeting.id));
  } catch (error) {
    setMeetingMessage('meeting.actionFailed', { reason: describeApiError(error) }, 'bad');
  }
}

/** Copies `text`; the clipboard API needs a secure context, so fall back to a selection. */
async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (no permission, page not focused): try the old way.
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

// ---- directory ----

function installDirectoryView() {
  $('import-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const file = $('import-file').files[0];
    if (!file) {
      showImportResult({ key: 'directory.chooseFile', level: 'bad' }, []);
      return;
    }
    const button = $('import-submit');
    button.disabled = true;
    showImportResult({ key: 'directory.importing', level: 'wait' }, []);
    try {
      const answer = await importSites(await file.text());
      showImportResult({ key: 'directory.imported', params: { count: answer.imported, file: file.name }, level: 'good' }, []);
      await loadSites();
    } catch (error) {
      if (error instanceof ApiError && error.problems.length > 0) {
        showImportResult(
          { key: 'directory.refused', params: { count: error.problems.length, file: file.name }, level: 'bad' },
          error.problems,
        );
      } else {
        showImportResult({ key: 'directory.failed', params: { reason: describeApiError(error) }, level: 'bad' }, []);
      }
    } finally {
      button.disabled = false;
    }
  });
}

function showImportResult(message, problems) {
  importShown = { message, problems };
  renderImportResult();
}

function renderImportResult() {
  const box = $('import-result');
  const list = $('import-problems');
  if (!importShown) {
    box.hidden = true;
    list.hidden = true;
    return;
  }
  const { message, problems } = importShown;
  box.hidden = false;
  box.dataset.level = message.level;
  box.textContent = t(message.key, message.params || {});
  list.replaceChildren();
  for (const problem of problems) {
    const item = document.createElement('li');
    const line = document.createElement('strong');
    line.textContent = t('directory.line', { line: problem.line });
    item.append(line, ` ${problem.message}`);
    list.append(item);
  }
  list.hidden = problems.length === 0;
}

function renderDirectorySummary() {
  const summary = $('d-summary');
  if (!state.sites) {
    summary.textContent = '';
    return;
  }
  const byLevel = new Map();
  for (const site of state.sites) byLevel.set(site.level, (byLevel.get(site.level) || 0) + 1);
  // Only the levels present: since 2025 most provinces have no districts.
  const levels = ['province', 'district', 'commune']
    .filter((level) => byLevel.has(level))
    .map((level) => t(`directory.level.${level}`, { count: byLevel.get(level) }));
  summary.textContent =
    state.sites.length === 0
      ? t('directory.empty')
      : t('directory.summary', { total: state.sites.length, levels: levels.join(', ') });
  renderImportResult();
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
