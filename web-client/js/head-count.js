// How a hall declares its delegates: the head count form on the site page, and the roll-call
// dialog that opens when the chair starts a roll call (pre-filled with the form's values, since
// the same person usually confirms both). The hub's answer is the one that counts: a declaration
// is in the attendance log once it is confirmed.

import { t } from './i18n.js';
import { describeError } from './signaling.js';
import { formatTime } from './localtime.js';

/** Largest head count the hub takes (docs/protocol.md, `head_count`). */
const MAX_HEAD_COUNT = 10_000;
const MAX_NAME_CHARS = 128;
const STORAGE_PREFIX = 'diemcau.headCount.';

/** The head count form: checks what it can before sending, then shows the hub's answer. */
export function installHeadCountForm(form, session) {
  const count = form.elements.namedItem('count');
  const confirmedBy = form.elements.namedItem('confirmed_by');
  const position = form.elements.namedItem('position');
  const submit = form.querySelector('button[type=submit]');
  const result = document.getElementById('hc-result');
  // What the box shows: `{ kind: 'pending'|'recorded'|'invalid'|'refused', ... }`, re-rendered
  // on language change.
  let shown = null;
  let pending = false;

  const render = () => {
    const joined = session.signalingState === 'joined';
    submit.disabled = !joined || Boolean(pending);
    if (!shown) {
      result.hidden = true;
      return;
    }
    result.hidden = false;
    result.dataset.level = shown.kind === 'recorded' ? 'good' : shown.kind === 'pending' ? 'wait' : 'bad';
    if (shown.kind === 'pending') result.textContent = t('headCount.sending');
    if (shown.kind === 'invalid') result.textContent = t(shown.key);
    if (shown.kind === 'refused') result.textContent = t('headCount.refused', { reason: describeError(shown.error) });
    if (shown.kind === 'recorded') {
      result.textContent = t('headCount.recorded', {
        count: shown.count,
        name: shown.confirmedBy,
        position: shown.position,
        at: formatTime(shown.at, 'dateTimeSeconds'),
      });
    }
  };

  const show = (next) => {
    shown = next;
    render();
    // The side column scrolls at 1366x768: bring the answer into view.
    result.scrollIntoView({ block: 'nearest' });
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const checked = checkHeadCount(count.value, confirmedBy.value, position.value);
    if (checked.problem) {
      show({ kind: 'invalid', key: checked.problem });
      form.elements.namedItem(checked.field).focus();
      return;
    }
    if (!session.declareHeadCount(checked.value)) {
      show({ kind: 'invalid', key: 'headCount.notJoined' });
      return;
    }
    pending = { ...checked.value };
    show({ kind: 'pending' });
  });

  session.addEventListener('headcount', (event) => {
    const detail = event.detail;
    const sent = pending || {};
    pending = false;
    if (detail.ok) {
      remember(session, sent);
      show({ kind: 'recorded', count: detail.count, at: detail.at, confirmedBy: sent.confirmedBy, position: sent.position });
    } else {
      show({ kind: 'refused', error: detail.error });
    }
  });
  session.addEventListener('statechange', () => {
    // A declaration in flight when the link dropped got no answer: it may be sent again.
    if (pending && session.signalingState !== 'joined') {
      pending = false;
      show({ kind: 'invalid', key: 'headCount.lost' });
    }
    render();
  });
  window.addEventListener('languagechange', render);
  render();

  return {
    /** What the form holds now (fields may be empty). */
    values: () => ({ count: count.value, confirmedBy: confirmedBy.value, position: position.value }),
    /** Fills the empty fields (from a roll-call answer, or the last declaration kept here). */
    fillEmpty(values) {
      if (!count.value && values.count !== undefined && values.count !== '') count.value = String(values.count);
      if (!confirmedBy.value && values.confirmedBy) confirmedBy.value = values.confirmedBy;
      if (!position.value && values.position) position.value = values.position;
    },
  };
}

/**
 * The roll call as the hall sees it: a banner while one runs, and a dialog to answer it
 * (count, who confirms, their position), pre-filled from the head count form. The dialog
 * opens by itself when a roll call starts and closes when it ends.
 */
export function installRollCall(session, headCount) {
  const dialog = document.getElementById('roll-call-dialog');
  const form = document.getElementById('roll-call-form');
  const heading = document.getElementById('rc-title');
  const count = document.getElementById('rc-count');
  const confirmedBy = document.getElementById('rc-name');
  const position = document.getElementById('rc-position');
  const submit = document.getElementById('rc-submit');
  const result = document.getElementById('rc-result');
  const banner = document.getElementById('roll-call-banner');
  const bannerText = document.getElementById('roll-call-banner-text');
  const reopen = document.getElementById('roll-call-open');

  /** The roll call answered (its number, with what was sent and when), or null. */
  let answered = null;
  let pending = null;
  let problem = null;
  let openedFor = null;

  const running = () => (session.rollCall && session.rollCall.active ? session.rollCall.number : null);

  const prefill = () => {
    const stored = recall(session);
    const fromForm = headCount.values();
    count.value = fromForm.count || (stored ? String(stored.count) : '');
    confirmedBy.value = fromForm.confirmedBy || (stored ? stored.confirmedBy : '');
    position.value = fromForm.position || (stored ? stored.position : '');
  };

  const open = () => {
    const number = running();
    if (number === null) return;
    if (openedFor !== number) {
      prefill();
      problem = null;
    }
    openedFor = number;
    render();
    if (!dialog.open) dialog.showModal();
    const empty = [count, confirmedBy, position].find((input) => !input.value);
    (empty || submit).focus();
  };

  const render = () => {
    const number = running();
    if (number !== null) {
      heading.textContent = t('rollCall.dialogTitle', { number });
      banner.hidden = false;
      const done = answered && answered.number === number;
      banner.dataset.level = done ? 'good' : 'info';
      bannerText.textContent = done
        ? t('rollCall.answered', {
            number,
            count: answered.count,
            at: formatTime(answered.at, 'timeSeconds'),
          })
        : t('rollCall.asked', { number });
      reopen.textContent = t(done ? 'rollCall.answerAgain' : 'rollCall.answer');
    } else {
      banner.hidden = true;
    }
    submit.disabled = pending !== null || session.signalingState !== 'joined';
    if (pending) {
      result.hidden = false;
      result.dataset.level = 'wait';
      result.textContent = t('headCount.sending');
    } else if (problem) {
      result.hidden = false;
      result.dataset.level = 'bad';
      result.textContent = problem.key ? t(problem.key) : t('rollCall.refused', { reason: describeError(problem.error) });
    } else {
      result.hidden = true;
    }
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const number = running();
    if (number === null) return;
    const checked = checkHeadCount(count.value, confirmedBy.value, position.value);
    if (checked.problem) {
      problem = { key: checked.problem };
      render();
      form.elements.namedItem(checked.field).focus();
      return;
    }
    const { count: value, confirmedBy: name, position: role } = checked.value;
    const sent = session.act({ type: 'answer_roll_call', roll_call: number, count: value, confirmed_by: name, position: role });
    if (!sent) {
      problem = { key: 'headCount.notJoined' };
      render();
      return;
    }
    pending = { number, ...checked.value };
    problem = null;
    render();
  });
  document.getElementById('rc-later').addEventListener('click', () => dialog.close());
  reopen.addEventListener('click', open);

  session.addEventListener('action', (event) => {
    const { ok, request, error, at } = event.detail;
    if (request !== 'answer_roll_call' || !pending) return;
    const sent = pending;
    pending = null;
    if (ok) {
      answered = { ...sent, at };
      remember(session, sent);
      headCount.fillEmpty(sent);
      dialog.close();
    } else {
      problem = { error };
    }
    render();
  });
  session.addEventListener('rollcall', () => {
    const number = running();
    if (number !== null && !(answered && answered.number === number)) open();
    if (number === null && dialog.open) dialog.close();
    render();
  });
  session.addEventListener('statechange', () => {
    if (pending && session.signalingState !== 'joined') {
      pending = null;
      problem = { key: 'headCount.lost' };
    }
    render();
  });
  window.addEventListener('languagechange', render);
  render();
}

/**
 * The declaration as the hub wants it, or the first problem (`problem`: a text key, `field`:
 * the input to fix).
 */
export function checkHeadCount(countText, confirmedByText, positionText) {
  const countValue = String(countText).trim();
  if (!/^[0-9]+$/.test(countValue) || Number(countValue) > MAX_HEAD_COUNT) {
    return { problem: 'headCount.invalidCount', field: 'count' };
  }
  const confirmedBy = confirmedByText.trim();
  if (!isPrintableName(confirmedBy)) return { problem: 'headCount.invalidName', field: 'confirmed_by' };
  const position = positionText.trim();
  if (!isPrintableName(position)) return { problem: 'headCount.invalidPosition', field: 'position' };
  return { value: { count: Number(countValue), confirmedBy, position } };
}

function isPrintableName(text) {
  const length = [...text].length;
  return length >= 1 && length <= MAX_NAME_CHARS && !/\p{Cc}/u.test(text);
}

/** Keeps the last declaration of this site in this browser, to pre-fill the next one. */
function remember(session, { count, confirmedBy, position }) {
  const site = session.state().site;
  if (!site || !confirmedBy) return;
  try {
    localStorage.setItem(STORAGE_PREFIX + site, JSON.stringify({ count, confirmedBy, position }));
  } catch {
    // Not kept; the form still works.
  }
}

function recall(session) {
  const site = session.state().site;
  if (!site) return null;
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_PREFIX + site) || 'null');
    return stored && typeof stored.confirmedBy === 'string' ? stored : null;
  } catch {
    return null;
  }
}

/** Fills the head count form from this browser's last declaration for the site, once known. */
export function prefillFromLastDeclaration(session, headCount) {
  const fill = () => {
    const stored = recall(session);
    if (stored) headCount.fillEmpty(stored);
    if (stored || session.state().site) session.removeEventListener('statechange', fill);
  };
  session.addEventListener('statechange', fill);
  fill();
}
