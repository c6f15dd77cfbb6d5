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

// ---- <input type="datetime-local"> in the hub's time zone ----

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

/** The value for a `datetime-local` input showing `millis` in the hub's time zone. */
export function toLocalInput(millis) {
  return wallClock(millis).slice(0, 16);
}

/**
 * The instant a `datetime-local` value (`YYYY-MM-DDTHH:MM`) means in the hub's time zone, or
 * null when the value is not a date and time.
 */
export function fromLocalInput(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || '');
  if (!match) return null;
  const [y, mo, d, h, mi, s] = match.slice(1).map((part) => Number(part || 0));
  const asUtc = Date.UTC(y, mo - 1, d, h, mi, s);
  if (!Number.isFinite(asUtc)) return null;
  // Two passes find the offset in force at that wall-clock time (zones that change it).
  const first = asUtc - zoneOffset(asUtc);
  const second = asUtc - zoneOffset(first);
  return second;
}
