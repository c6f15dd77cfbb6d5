// Times and numbers as people at the hub read them. The API speaks milliseconds since the
// epoch (UTC); the pages show and take wall-clock time in the hub's time zone, whatever the
// zone of the computer the page runs on.

import { currentLanguage } from './i18n.js';

/** The hub's time zone (docs/api.md: Asia/Ho_Chi_Minh by default). */
export const HUB_TIME_ZONE = 'Asia/Ho_Chi_Minh';

const FORMATS = {
  dateTime: { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
  dateTimeSeconds: {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  },
  date: { year: 'numeric', month: '2-digit', day: '2-digit' },
  longDate: { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' },
  time: { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
  timeSeconds: { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' },
};

const formatters = new Map();

function locale() {
  return currentLanguage() === 'en' ? 'en-GB' : 'vi-VN';
}

function formatter(kind) {
  const key = `${locale()}|${kind}`;
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.DateTimeFormat(locale(), { timeZone: HUB_TIME_ZONE, ...FORMATS[kind] });
    formatters.set(key, found);
  }
  return found;
}

/**
 * `millis` as text in the hub's time zone; `kind` is one of `dateTime`, `dateTimeSeconds`,
 * `date`, `longDate`, `time`, `timeSeconds`. An empty string for null or undefined.
 */
export function formatTime(millis, kind = 'dateTime') {
  if (millis === null || millis === undefined || !Number.isFinite(millis)) return '';
  if (locale() === 'vi-VN' && (kind === 'dateTime' || kind === 'dateTimeSeconds')) {
    // Intl's Vietnamese puts the time first ("10:00 12/03/2026"); people here write the date
    // first, then the time on a 24-hour clock.
    const parts = Object.fromEntries(formatter(kind).formatToParts(new Date(millis)).map((p) => [p.type, p.value]));
    const time = kind === 'dateTimeSeconds' ? `${parts.hour}:${parts.minute}:${parts.second}` : `${parts.hour}:${parts.minute}`;
    return `${parts.day}/${parts.month}/${parts.year} ${time}`;
  }
  return formatter(kind).format(new Date(millis));
}

/** The time of day of `millis`, with the date too when it is not the same day as `reference`. */
export function formatTimeNear(millis, reference) {
  if (millis === null || millis === undefined) return '';
  if (reference !== null && reference !== undefined && sameDay(millis, reference)) {
    return formatTime(millis, 'timeSeconds');
  }
  return formatTime(millis, 'dateTimeSeconds');
}

/** Whether two instants fall on the same calendar day in the hub's time zone. */
export function sameDay(a, b) {
  const day = (millis) => wallClock(millis).slice(0, 10);
  return day(a) === day(b);
}

/** A number with at most `digits` decimals, in the page's language (`85,3` / `85.3`). */
export function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
}

/** A percentage given as 0–100, with one decimal at most. */
export function formatPercent(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '';
  return new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: 1 }).format(value / 100);
}

// ---- date and time fields in the hub's time zone ----
//
// Typed as `dd/mm/yyyy HH:mm` (24 h), as people in Vietnam write them, whatever the browser's
// own locale: a `datetime-local` input would show the computer's format ("12/03/2026, 10:00 AM").

const PARTS = new Intl.DateTimeFormat('en-US', { timeZone: HUB_TIME_ZONE, ...FORMATS.dateTimeSeconds });

/** `millis` as `YYYY-MM-DDTHH:MM:SS` wall-clock time in the hub's time zone. */
function wallClock(millis) {
  const parts = Object.fromEntries(PARTS.formatToParts(new Date(millis)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
}

/** How far the hub's zone is ahead of UTC at `millis`. */
function zoneOffset(millis) {
  const [date, time] = wallClock(millis).split('T');
  const [y, mo, d] = date.split('-').map(Number);
  const [h, mi, s] = time.split(':').map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s) - Math.floor(millis / 1000) * 1000;
}

/** The text of a date and time field showing `millis` in the hub's time zone: `dd/mm/yyyy HH:mm`. */
export function toLocalInput(millis) {
  const [date, time] = wallClock(millis).split('T');
  const [y, mo, d] = date.split('-');
  return `${d}/${mo}/${y} ${time.slice(0, 5)}`;
}

/**
 * The instant a date and time field means in the hub's time zone: `dd/mm/yyyy HH:mm` (one-digit
 * day, month and hour allowed; `-` or `.` between the date's parts), or the ISO form
 * `YYYY-MM-DDTHH:MM`. Null when the text is not a real date and time.
 */
export function fromLocalInput(value) {
  const text = (value || '').trim();
  const written = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})[ ,T]+(\d{1,2})[:h.](\d{2})$/.exec(text);
  const iso = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(text);
  if (!written && !iso) return null;
  const [y, mo, d, h, mi, s] = written
    ? [written[3], written[2], written[1], written[4], written[5], 0].map(Number)
    : iso.slice(1).map((part) => Number(part || 0));
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return null;
  const asUtc = Date.UTC(y, mo - 1, d, h, mi, s);
  // 31/02 would roll over into March: not a date.
  if (!Number.isFinite(asUtc) || new Date(asUtc).getUTCDate() !== d) return null;
  // Two passes find the offset in force at that wall-clock time (zones that change it).
  const first = asUtc - zoneOffset(asUtc);
  const second = asUtc - zoneOffset(first);
  return second;
}
