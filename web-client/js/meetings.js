// The meetings and reports page, where staff land after logging in (organizers use it too):
// every meeting, past and current, with its state, date, how many sites and delegates attended
// (from each meeting's report), and links to the printable report and the CSV files.

import { applyTranslations, installLanguageToggle, t } from './i18n.js';
import { installAccountBar } from './account.js';
import { describeApiError, fetchReport, listMeetings, reportCsvPath } from './api.js';
import { formatPercent, formatTime, sameDay } from './localtime.js';

/** Reports fetched at once: enough to fill the page quickly without a burst on the hub. */
const REPORT_REQUESTS_AT_ONCE = 4;
const CSV_TABLES = ['sites', 'sessions', 'events'];

const $ = (id) => document.getElementById(id);
let meetings = [];
/** Report summaries by meeting id: the summary, or `{ error }`. */
const summaries = new Map();
let loadRound = 0;

installLanguageToggle($('lang'));
installAccountBar($('account'), $('logout'))
  .then((account) => {
    // Organizing meetings is for organizers; staff have this page and the reports.
    $('nav-organizer').hidden = account.role !== 'organizer';
  })
  .catch((error) => console.warn('[diemcau] session', error));
applyTranslations();
window.addEventListener('languagechange', render);
$('refresh').addEventListener('click', load);
load();

async function load() {
  const round = ++loadRound;
  try {
    meetings = await listMeetings();
    $('page-error').hidden = true;
  } catch (error) {
    $('page-error').textContent = describeApiError(error);
    $('page-error').hidden = false;
    $('loading').hidden = true;
    return;
  }
  summaries.clear();
  render();
  const queue = [...meetings];
  const worker = async () => {
    while (queue.length > 0 && round === loadRound) {
      const meeting = queue.shift();
      try {
        summaries.set(meeting.id, (await fetchReport(meeting.id)).summary);
      } catch (error) {
        summaries.set(meeting.id, { error });
      }
      if (round === loadRound) renderRow(meeting);
    }
  };
  await Promise.all(Array.from({ length: REPORT_REQUESTS_AT_ONCE }, worker));
  window.diemcauMeetings = { ready: true, count: meetings.length };
}

function render() {
  $('loading').hidden = true;
  $('no-meetings').hidden = meetings.length > 0;
  $('meetings').hidden = meetings.length === 0;
  $('meeting-rows').replaceChildren(...meetings.map(buildRow));
}

function renderRow(meeting) {
  const old = document.querySelector(`#meeting-rows tr[data-meeting="${meeting.id}"]`);
  if (old) old.replaceWith(buildRow(meeting));
}

function buildRow(meeting) {
  const row = document.createElement('tr');
  row.dataset.meeting = String(meeting.id);
  const summary = summaries.get(meeting.id);

  const title = document.createElement('td');
  const titleText = document.createElement('div');
  titleText.className = 'strong';
  titleText.textContent = meeting.title;
  const id = document.createElement('div');
  id.className = 'muted small';
  id.textContent = t('meetings.idAndStudio', { id: meeting.id, studio: meeting.studio_name || '' });
  title.append(titleText, id);
  if (meeting.parent_meeting !== undefined && meeting.parent_meeting !== null) {
    // This province's part of a national meeting, passed down by the parent hub.
    const national = document.createElement('div');
    national.className = 'muted small national';
    national.textContent = t('meetings.national', { id: meeting.parent_meeting });
    title.append(national);
  }

  const stateCell = document.createElement('td');
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.dataset.state = meeting.state;
  badge.textContent = t(`meetingState.${meeting.state}`);
  stateCell.append(badge);
  if (meeting.running_on) {
    // Hubs sharing a database: the one that runs this meeting now.
    const where = document.createElement('div');
    where.className = 'muted small running-on';
    where.textContent = t('meetings.runningOn', { hub: meeting.running_on.hub });
    where.title = meeting.running_on.address;
    stateCell.append(where);
  }

  const when = document.createElement('td');
  when.className = 'when';
  when.textContent = sameDay(meeting.scheduled_start, meeting.scheduled_end)
    ? `${formatTime(meeting.scheduled_start, 'date')} · ${formatTime(meeting.scheduled_start, 'time')}–${formatTime(meeting.scheduled_end, 'time')}`
    : `${formatTime(meeting.scheduled_start, 'dateTime')} – ${formatTime(meeting.scheduled_end, 'dateTime')}`;

  const sites = document.createElement('td');
  sites.className = 'num';
  const delegates = document.createElement('td');
  delegates.className = 'num';
  if (!summary) {
    sites.textContent = '…';
    delegates.textContent = '…';
  } else if (summary.error) {
    sites.textContent = '—';
    sites.title = describeApiError(summary.error);
    delegates.textContent = '—';
  } else {
    sites.textContent = t('meetings.ofWithPercent', {
      part: summary.sites_joined,
      whole: summary.sites_expected,
      percent: formatPercent(summary.sites_joined_percent),
    });
    delegates.textContent = t('meetings.ofWithPercent', {
      part: summary.delegates_declared,
      whole: summary.delegates_expected,
      percent: formatPercent(summary.delegates_declared_percent),
    });
  }

  const report = document.createElement('td');
  const reportLink = document.createElement('a');
  reportLink.href = `report.html?meeting=${encodeURIComponent(meeting.id)}`;
  reportLink.className = 'report-link';
  reportLink.textContent = t('meetings.openReport');
  report.append(reportLink);

  const csv = document.createElement('td');
  csv.className = 'csv-links';
  for (const table of CSV_TABLES) {
    const link = document.createElement('a');
    link.href = reportCsvPath(meeting.id, table);
    link.download = `diemcau-${meeting.id}-${table}.csv`;
    link.dataset.table = table;
    link.textContent = t(`csv.${table}`);
    csv.append(link, ' ');
  }
  row.append(title, stateCell, when, sites, delegates, report, csv);
  return row;
}
