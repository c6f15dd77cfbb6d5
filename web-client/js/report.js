// The printable attendance report of one meeting (`report.html?meeting=ID`): the summary, one
// row per expected site, every session and the event log, all from `GET .../report`, which
// the hub computes from the append-only log. Times in the hub's time zone. The same tables
// download as CSV and, all four in one workbook, as Excel; the hub words them as this page does
// (`src/attendance/wording.rs`).

import { applyTranslations, hasText, installLanguageToggle, t } from './i18n.js';
import { installAccountBar } from './account.js';
import { describeApiError, fetchMeeting, fetchReport, reportCsvPath, reportXlsxPath } from './api.js';
import { formatNumber, formatPercent, formatTime, formatTimeNear } from './localtime.js';

const STATUSES = ['present', 'late', 'partial', 'absent'];

const $ = (id) => document.getElementById(id);
let report = null;
let meeting = null;

installLanguageToggle($('lang'));
installAccountBar($('account'), $('logout')).catch((error) => console.warn('[diemcau] session', error));
applyTranslations();

const meetingId = /^[0-9]{1,15}$/.test(new URLSearchParams(window.location.search).get('meeting') || '')
  ? Number(new URLSearchParams(window.location.search).get('meeting'))
  : null;

$('print').addEventListener('click', () => window.print());
$('refresh').addEventListener('click', load);
$('show-quality').addEventListener('change', renderEvents);
window.addEventListener('languagechange', render);

if (meetingId === null) {
  showError(t('report.noMeeting'));
  $('loading').hidden = true;
} else {
  for (const link of document.querySelectorAll('.csv-links a[data-table]')) {
    link.href = reportCsvPath(meetingId, link.dataset.table);
    link.download = `diemcau-${meetingId}-${link.dataset.table}.csv`;
  }
  // The hub names the workbook after the meeting (Content-Disposition), so no name here.
  $('xlsx').href = reportXlsxPath(meetingId);
  $('xlsx').download = '';
  load();
}

async function load() {
  try {
    const [loaded, plan] = await Promise.all([
      fetchReport(meetingId),
      // The meeting adds the studio's name and state; the report stands without it.
      fetchMeeting(meetingId).catch(() => null),
    ]);
    report = loaded;
    meeting = plan;
    $('page-error').hidden = true;
  } catch (error) {
    showError(describeApiError(error));
  } finally {
    $('loading').hidden = true;
  }
  render();
  window.diemcauReport = { ready: report !== null };
}

function showError(text) {
  $('page-error').textContent = text;
  $('page-error').hidden = false;
}

function render() {
  if (!report) return;
  $('report').hidden = false;
  renderSummary();
  renderSites();
  renderSessions();
  renderRollCalls();
  renderRecordings();
  renderEvents();
}

/** The instant the meeting's times are shown next to: its actual start, else the planned one. */
function reference() {
  return report.summary.actual_start ?? report.summary.scheduled_start;
}

function renderSummary() {
  const s = report.summary;
  document.title = `${t('report.heading')} — ${s.title}`;
  $('r-kicker').textContent = t('report.kicker', { id: s.meeting_id });
  $('r-title').textContent = s.title;
  const studio = meeting && meeting.studio_name ? ` · ${t('report.studio', { name: meeting.studio_name })}` : '';
  $('r-subtitle').textContent = `${formatTime(reference(), 'longDate')}${studio}`;
  const computed = t('report.computedAt', { at: formatTime(s.computed_at, 'dateTimeSeconds') });
  const stateKey = s.in_progress ? 'report.inProgress' : s.actual_end ? 'report.ended' : 'report.notStarted';
  $('r-computed').textContent = `${computed} · ${t(stateKey)}`;

  $('r-scheduled-start').textContent = formatTime(s.scheduled_start, 'dateTime');
  $('r-scheduled-end').textContent = formatTime(s.scheduled_end, 'dateTime');
  $('r-actual-start').textContent = s.actual_start ? formatTime(s.actual_start, 'dateTimeSeconds') : t('report.notYet');
  $('r-actual-end').textContent = s.actual_end
    ? formatTime(s.actual_end, 'dateTimeSeconds')
    : s.in_progress
      ? t('report.stillRunning')
      : t('report.notYet');

  $('r-sites-figure').textContent = `${s.sites_joined} / ${s.sites_expected}`;
  $('r-sites-label').textContent = t('report.sitesJoined', { percent: formatPercent(s.sites_joined_percent) });
  $('r-delegates-figure').textContent = `${s.delegates_declared} / ${s.delegates_expected}`;
  $('r-delegates-label').textContent = t('report.delegatesDeclared', {
    percent: formatPercent(s.delegates_declared_percent),
  });
  // Watch-link players are no bridge points: shown apart, only when there were any.
  $('r-viewers').hidden = !s.viewers;
  $('r-viewers-figure').textContent = String(s.viewers || 0);
  $('r-viewers-label').textContent = t('report.viewers', { peak: s.viewers_peak || 0 });

  const counts = $('r-status-counts');
  counts.replaceChildren();
  for (const status of STATUSES) {
    const item = document.createElement('li');
    item.append(statusBadge(status), ` ${report.sites.filter((site) => site.status === status).length}`);
    counts.append(item);
  }
}

function renderSites() {
  const body = $('r-site-rows');
  body.replaceChildren();
  report.sites.forEach((site, index) => {
    const row = document.createElement('tr');
    row.dataset.site = site.code;
    row.dataset.status = site.status;

    const name = document.createElement('td');
    name.className = 'site-name';
    const nameText = document.createElement('div');
    nameText.textContent = site.name;
    const code = document.createElement('div');
    code.className = 'muted small';
    code.textContent = site.code;
    name.append(nameText, code);

    const status = document.createElement('td');
    status.className = 'status-cell';
    status.append(statusBadge(site.status));

    const connected = site.first_join !== null && site.first_join !== undefined;
    const lastLeave = site.last_leave
      ? formatTimeNear(site.last_leave, reference())
      : connected
        ? t('report.stillConnected')
        : '';

    const headCount = document.createElement('td');
    headCount.className = 'num declared';
    headCount.textContent = site.head_count
      ? `${site.head_count.count} / ${site.expected_delegates}`
      : `— / ${site.expected_delegates}`;

    const confirmer = document.createElement('td');
    confirmer.className = 'confirmer';
    if (site.head_count) {
      const who = document.createElement('div');
      who.textContent = site.head_count.confirmed_by;
      const what = document.createElement('div');
      what.className = 'muted small';
      what.textContent = `${site.head_count.position} · ${formatTimeNear(site.head_count.at, reference())}`;
      confirmer.append(who, what);
    } else {
      confirmer.textContent = t('report.noHeadCount');
      confirmer.classList.add('muted');
    }

    row.append(
      cell(String(index + 1), 'num'),
      name,
      status,
      cell(connected ? formatTimeNear(site.first_join, reference()) : '—'),
      cell(lastLeave || '—'),
      cell(formatNumber(site.connected_minutes), 'num'),
      cell(formatPercent(site.coverage_percent), 'num'),
      cell(String(site.interruptions), 'num'),
      cell(site.interruptions > 0 ? formatNumber(site.longest_outage_minutes) : '—', 'num'),
      cell(site.audio_only_minutes > 0 ? formatNumber(site.audio_only_minutes) : '—', 'num'),
      cell(site.centre_outages > 0 ? formatNumber(site.centre_unreachable_minutes) : '—', 'num'),
      headCount,
      confirmer,
    );
    body.append(row);
  });
}

function renderSessions() {
  const body = $('r-session-rows');
  body.replaceChildren();
  $('r-no-sessions').hidden = report.sessions.length > 0;
  $('r-sessions').hidden = report.sessions.length === 0;
  for (const session of report.sessions) {
    const row = document.createElement('tr');
    row.dataset.site = session.site;
    const name = document.createElement('td');
    name.textContent = session.site_name || session.site;
    const client = cell(shortClient(session.client), 'client');
    client.title = session.client || '';
    row.append(
      name,
      cell(formatTimeNear(session.joined_at, reference())),
      cell(session.left_at ? formatTimeNear(session.left_at, reference()) : t('report.stillConnected')),
      cell(session.reason ? leaveReason(session.reason) : ''),
      cell(session.reconnected ? t('common.yes') : t('common.no')),
      cell(formatNumber(session.minutes), 'num'),
      client,
      cell(session.address || '', 'small'),
      cell(session.transport ? session.transport.toUpperCase() : '', 'small'),
    );
    body.append(row);
  }
}

/** Each roll call as it ended: answers with their counts, and the sites that did not answer. */
function renderRollCalls() {
  const body = $('r-roll-call-rows');
  body.replaceChildren();
  const rollCalls = report.roll_calls || [];
  $('r-no-roll-calls').hidden = rollCalls.length > 0;
  $('r-roll-calls').hidden = rollCalls.length === 0;
  for (const rollCall of rollCalls) {
    const row = document.createElement('tr');
    row.dataset.rollCall = String(rollCall.number);
    const started = formatTimeNear(rollCall.started_at, reference());
    const ended = rollCall.ended_at ? formatTimeNear(rollCall.ended_at, reference()) : t('report.stillRunning');
    const present = rollCall.answers.length + rollCall.not_answered.length;
    const answers = rollCall.answers
      .map((a) => t('report.rollCallAnswer', { name: a.name || a.site, count: formatNumber(a.count) }))
      .join('; ');
    const missing = cell(rollCall.not_answered.map((s) => s.name || s.code).join(', '), 'not-answered');
    row.append(
      cell(String(rollCall.number), 'num'),
      cell(`${started} – ${ended}`),
      cell(rollCall.ended_at ? `${rollCall.answers.length}/${present}` : String(rollCall.answers.length), 'num'),
      cell(formatNumber(rollCall.delegates), 'num'),
      cell(answers, 'small'),
      missing,
    );
    body.append(row);
  }
}

/** The parts of the recording, each with its file to download, and the gaps between them. */
function renderRecordings() {
  const body = $('r-recording-rows');
  body.replaceChildren();
  const parts = report.recordings || [];
  $('r-recordings-section').hidden = parts.length === 0;
  for (const part of parts) {
    const row = document.createElement('tr');
    row.dataset.part = String(part.part);
    const started = formatTimeNear(part.started_at, reference());
    const stopped = part.stopped_at ? formatTimeNear(part.stopped_at, reference()) : t('report.stillRunning');
    let time = `${started} – ${stopped}`;
    if (part.gap_before_ms) {
      time += ` (${t('report.recordingGap', { minutes: formatNumber(part.gap_before_ms / 60_000) })})`;
    }
    const reason = part.reason
      ? hasText(`recordingStop.${part.reason}`) ? t(`recordingStop.${part.reason}`) : String(part.reason)
      : '';
    const link = document.createElement('a');
    link.href = `/api/meetings/${report.summary.meeting_id}/recordings/${part.part}`;
    link.textContent = part.file;
    link.setAttribute('download', '');
    const file = document.createElement('td');
    file.append(link);
    row.append(
      cell(String(part.part), 'num'),
      cell(time),
      cell(reason),
      cell(part.stopped_at ? megabytes(part.bytes) : '', 'num'),
      file,
    );
    body.append(row);
  }
}

function renderEvents() {
  if (!report) return;
  const showQuality = $('show-quality').checked;
  const samples = report.events.filter((event) => event.kind === 'quality_sample').length;
  $('show-quality-label').textContent = t('report.showQuality', { count: samples });
  $('show-quality-box').hidden = samples === 0;
  const names = new Map(report.sites.map((site) => [site.code, site.name]));
  const body = $('r-event-rows');
  body.replaceChildren();
  for (const event of report.events) {
    if (event.kind === 'quality_sample' && !showQuality) continue;
    const row = document.createElement('tr');
    row.dataset.kind = event.kind;
    const at = cell(formatTimeNear(event.at, reference()));
    if (event.recorded_at && Math.abs(event.recorded_at - event.at) >= 1000) {
      at.title = t('report.recordedAt', { at: formatTime(event.recorded_at, 'dateTimeSeconds') });
      at.append(' *');
    }
    const kindKey = `event.${event.kind}`;
    row.append(
      cell(String(event.seq), 'num'),
      at,
      cell(hasText(kindKey) ? t(kindKey) : event.kind),
      cell(event.site ? names.get(event.site) || event.site : ''),
      cell(eventDetails(event), 'details'),
    );
    body.append(row);
  }
}

/** What an event says beyond its kind and site, in words. */
function eventDetails(event) {
  switch (event.kind) {
    case 'meeting_started':
    case 'meeting_ended':
      return '';
    case 'site_joined':
      return [shortClient(event.client), event.address].filter(Boolean).join(' · ');
    case 'site_reconnected':
      return t('event.reconnectedDetails', { client: shortClient(event.client), address: event.address || '' });
    case 'site_left':
    case 'studio_left':
    case 'encoder_left':
    case 'viewer_left':
      return leaveReason(event.reason);
    case 'studio_joined':
    case 'encoder_joined':
    case 'viewer_joined':
      return [shortClient(event.client), event.address].filter(Boolean).join(' · ');
    case 'hub_restarted':
      return t('event.hubRestartedDetails', {
        minutes: formatNumber(Math.max(0, event.at - event.down_since) / 60_000),
      });
    case 'hub_takeover':
      return t('event.hubTakeoverDetails', {
        from: event.from,
        to: event.to,
        minutes: formatNumber(Math.max(0, event.at - event.down_since) / 60_000),
      });
    case 'centre_unreachable':
    case 'centre_reachable':
      return event.node || '';
    case 'recording_started':
      return t('event.recordingStartedDetails', { part: event.part, file: event.file });
    case 'recording_stopped':
      return t('event.recordingStoppedDetails', {
        part: event.part,
        reason: hasText(`recordingStop.${event.reason}`) ? t(`recordingStop.${event.reason}`) : String(event.reason),
        size: megabytes(event.bytes),
      });
    case 'recording_refused':
      return t('event.recordingRefusedDetails', {
        free: megabytes(event.free_bytes),
        min: megabytes(event.min_free_bytes),
      });
    case 'programme_switched':
      return hasText(`programme.source.${event.source}`) ? t(`programme.source.${event.source}`) : String(event.source);
    case 'media_changed':
      return hasText(`reception.${event.media}`) ? t(`reception.${event.media}`) : String(event.media);
    case 'quality_sample':
      return t('event.qualityDetails', {
        down: event.bitrate_out_kbps,
        up: event.bitrate_in_kbps,
        loss: formatNumber(event.loss_permille / 10),
        rtt: event.rtt_ms,
      });
    case 'head_count':
      return t('event.headCountDetails', {
        count: event.count,
        name: event.confirmed_by,
        position: event.position,
      });
    case 'roll_call_answered':
      return `${t('event.rollCall', { number: event.roll_call })} · ${t('event.headCountDetails', {
        count: event.count,
        name: event.confirmed_by,
        position: event.position,
      })}`;
    case 'roll_call_started':
    case 'roll_call_ended':
      return t('event.rollCall', { number: event.roll_call });
    case 'site_muted':
      return t(event.muted ? 'event.muted' : 'event.unmuted');
    case 'floor_requested':
    case 'floor_given':
    case 'floor_returned':
    case 'site_called':
      return '';
    default: {
      // A kind this page does not know yet: show its fields as they are.
      const { seq, at, recorded_at: recordedAt, kind, site, ...rest } = event;
      return Object.entries(rest)
        .map(([key, value]) => `${key}: ${value}`)
        .join(', ');
    }
  }
}

/** A size in bytes as megabytes, in the page's words. */
function megabytes(bytes) {
  return t('recording.size', { size: formatNumber(bytes / 1_000_000) });
}

function leaveReason(reason) {
  const key = `reason.${reason}`;
  return hasText(key) ? t(key) : String(reason);
}

/** A browser's name and major version out of a user agent, else the text as it is. */
function shortClient(client) {
  if (!client) return '';
  const browser = /(Edg|OPR|Firefox|Chrome|Chromium|Version)\/(\d+)/.exec(client);
  if (!browser) return client.length > 40 ? `${client.slice(0, 39)}…` : client;
  const name = { Edg: 'Edge', OPR: 'Opera', Version: 'Safari' }[browser[1]] || browser[1];
  const system = /Windows|Android|iPhone|iPad|Mac OS X|Linux|CrOS/.exec(client);
  return `${name} ${browser[2]}${system ? ` · ${system[0].replace('Mac OS X', 'macOS')}` : ''}`;
}

function statusBadge(status) {
  const badge = document.createElement('span');
  badge.className = 'badge status-badge';
  badge.dataset.status = status;
  badge.textContent = hasText(`status.${status}`) ? t(`status.${status}`) : status;
  return badge;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
