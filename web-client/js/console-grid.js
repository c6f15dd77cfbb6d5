// The chair's wall of sites: one tile per expected site, with its state, a small live picture
// once it has joined, its link health, head count and the chair's buttons (floor, microphone,
// call). Fed by the hub's `console` message every 2 s (docs/protocol.md).
//
// Built for 300 sites and more: a refresh updates the tiles in place (a text or attribute is
// written only when it changed), tiles move only when the order changed, filtered-out tiles
// are hidden rather than removed, and off-screen tiles skip rendering
// (`content-visibility: auto` in the style sheet). Buttons are handled by one listener on the
// grid.

import { currentLanguage, t } from './i18n.js';

/** When a site needs the chair's eye (the thresholds). */
export const ATTENTION = Object.freeze({
  /** 5 % loss over the hub's last 10 s. */
  lossPermille: 50,
  rttMs: 400,
  /** Joined, but media not up after this long. */
  connectingMs: 20_000,
});

/** Every site state of the console, in the order the state sort uses (trouble first). */
export const SITE_STATES = ['reconnecting', 'connecting', 'audio_only', 'live', 'page_open', 'left', 'not_joined'];
const STATE_RANK = new Map(SITE_STATES.map((state, index) => [state, index]));
const JOINED_STATES = new Set(['connecting', 'live', 'audio_only']);

/** Filters of the state menu: key → test on a tile. */
export const STATE_FILTERS = {
  all: () => true,
  attention: (tile) => tile.attention.length > 0,
  present: (tile) => JOINED_STATES.has(tile.entry.state),
  absent: (tile) => !JOINED_STATES.has(tile.entry.state),
  floor: (tile) => tile.entry.floor !== 'none',
  muted: (tile) => tile.entry.muted,
  ...Object.fromEntries(SITE_STATES.map((state) => [`state:${state}`, (tile) => tile.entry.state === state])),
};

/** Sort orders of the sort menu: key → comparison of two tiles (ties: roster order). */
export const SORTS = {
  attention: (a, b) => Number(b.attention.length > 0) - Number(a.attention.length > 0),
  roster: () => 0,
  name: (a, b) => a.sortName.localeCompare(b.sortName, 'vi'),
  province: (a, b) => (a.entry.province || '').localeCompare(b.entry.province || '', 'vi'),
  state: (a, b) => STATE_RANK.get(a.entry.state) - STATE_RANK.get(b.entry.state),
  loss: (a, b) => joinedFirst(a, b) || b.entry.loss_permille - a.entry.loss_permille,
  rtt: (a, b) => joinedFirst(a, b) || b.entry.rtt_ms - a.entry.rtt_ms,
  bitrate: (a, b) => joinedFirst(a, b) || a.entry.bitrate_in_kbps - b.entry.bitrate_in_kbps,
};

function joinedFirst(a, b) {
  return Number(JOINED_STATES.has(b.entry.state)) - Number(JOINED_STATES.has(a.entry.state));
}

/** Lower case without diacritics (đ → d), so "thuong lam" finds "Xã Thượng Lâm". */
export function searchable(text) {
  return String(text)
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .replace(/đ/g, 'd')
    .replace(/Đ/g, 'D')
    .toLowerCase();
}

const EMPTY_ENTRY = Object.freeze({
  state: 'not_joined',
  participant: null,
  muted: false,
  floor: 'none',
  bitrate_in_kbps: 0,
  bitrate_out_kbps: 0,
  loss_permille: 0,
  rtt_ms: 0,
  transport: null,
  expected_delegates: 0,
  head_count: null,
  answered_roll_call: false,
  code_leak_suspected: false,
});

/** One site's tile: states not joined → (page open) → connecting → live ↔ reconnecting → left. */
class SiteTile {
  constructor(code, index, sound) {
    this.code = code;
    this.index = index;
    this.sound = sound;
    this.entry = { ...EMPTY_ENTRY, site: code, name: code };
    this.sortName = code;
    this.searchText = searchable(code);
    this.attention = [];
    this.connectingSince = null;
    this.participant = null;
    this.tracks = { video: null, audio: null };
    this.video = null;
    this.audio = null;
    /** The meeting has ended: the tile keeps the site's name and head count, nothing live. */
    this.ended = false;

    const root = document.createElement('article');
    root.className = 'site-tile';
    root.dataset.site = code;
    this.root = root;

    this.media = el('div', 'tile-media');
    this.placeholder = el('div', 'tile-placeholder');
    this.badges = el('div', 'tile-badges');
    this.floorBadge = el('span', 'tile-badge floor-badge');
    this.mutedBadge = el('span', 'tile-badge muted-badge');
    this.rollCallBadge = el('span', 'tile-badge roll-call-badge');
    this.alertBadge = el('span', 'tile-badge alert-badge');
    this.transportBadge = el('span', 'tile-badge transport-badge');
    this.badges.append(this.alertBadge, this.floorBadge, this.mutedBadge, this.rollCallBadge, this.transportBadge);
    this.stateBadge = el('span', 'tile-state');
    this.caption = el('div', 'tile-caption');
    this.name = el('span', 'tile-name');
    this.caption.append(this.name);
    this.media.append(this.placeholder, this.badges, this.stateBadge, this.caption);

    this.health = el('div', 'tile-health');
    this.meta = el('div', 'tile-meta');
    this.delegates = el('div', 'tile-delegates');

    this.actions = el('div', 'tile-actions');
    this.floorButton = button('floor');
    this.muteButton = button('mute');
    this.callButton = button('call');
    this.reissueButton = button('reissue');
    this.actions.append(this.floorButton, this.muteButton, this.callButton, this.reissueButton);

    root.append(this.media, this.health, this.meta, this.delegates, this.actions);
  }

  /** Takes a console entry; `now` dates the start of a connection that takes long. */
  apply(entry, now) {
    this.entry = entry;
    if (entry.state === 'connecting') this.connectingSince ??= now;
    else this.connectingSince = null;
    // A commune joined to its provincial hub (a national meeting) is found by that hub's name too.
    const searchKey = `${entry.name} ${entry.site} ${entry.node || ''}`;
    if (this.searchKey !== searchKey) {
      this.sortName = entry.name;
      this.searchKey = searchKey;
      this.searchText = searchable(searchKey);
    }
    this.attention = attentionOf(entry, this.connectingSince, now);
    this.render();
  }

  /** Writes what changed since the last render (everything after a language change). */
  render() {
    const e = this.entry;
    if (this.ended) {
      this.renderEnded();
      return;
    }
    const joined = JOINED_STATES.has(e.state);
    this.set(this.root, 'data-state', e.state);
    this.set(this.root, 'data-floor', e.floor);
    this.set(this.root, 'data-muted', String(e.muted));
    this.set(this.root, 'data-attention', this.attention.join(' '));
    this.set(this.root, 'data-participant', e.participant || '');
    this.set(this.root, 'data-node', e.node || '');

    this.text(this.name, e.name);
    this.set(this.name, 'title', e.node ? `${e.name} (${e.site}) · ${t('tile.viaNode', { node: e.node })}` : `${e.name} (${e.site})`);
    this.text(this.stateBadge, t(`siteState.${e.state}`));
    // Without a picture the state is written large in its place.
    this.show(this.stateBadge, joined);
    this.text(this.floorBadge, e.floor === 'holder' ? t('tile.speaking') : e.floor === 'requested' ? t('tile.asking') : '');
    this.show(this.floorBadge, e.floor !== 'none');
    this.text(this.mutedBadge, t('tile.muted'));
    this.show(this.mutedBadge, e.muted && joined);
    this.text(this.rollCallBadge, t('tile.answered'));
    this.show(this.rollCallBadge, e.answered_roll_call);

    const picture = this.video !== null && this.video.videoWidth > 0;
    this.show(this.placeholder, !picture);
    this.text(this.placeholder, joined ? t('tile.waitingVideo') : t(`siteState.${e.state}`));

    const measured = e.bitrate_in_kbps + e.bitrate_out_kbps + e.loss_permille + e.rtt_ms > 0;
    const health = healthParams(e);
    this.text(this.health, joined ? (measured ? t('tile.rates', health) : t('tile.notMeasured')) : '');
    // The transport: a badge when TCP (a network that drops UDP, worth a word to the hall), in
    // the figures' tooltip either way; the tile is too narrow for it on the figures' line.
    const transport = joined && e.transport ? e.transport : '';
    const transportTitle = transport ? t(`tile.transportTitle.${transport}`) : '';
    this.set(this.health, 'title', [joined && measured ? t('tile.healthTitle', health) : '', transportTitle].filter(Boolean).join(' '));
    this.set(this.root, 'data-transport', transport);
    this.text(this.transportBadge, t('tile.transport.tcp'));
    this.set(this.transportBadge, 'title', transportTitle);
    this.show(this.transportBadge, transport === 'tcp');
    // One figure per line: the tile is narrow, and a cut figure reads wrong.
    this.text(this.meta, joined && measured ? t('tile.loss', health) : '');
    this.set(this.meta, 'title', joined && measured ? t('tile.healthTitle', health) : '');
    this.text(this.delegates, this.delegatesText());
    // The floor request has its own badge, a drop shows in the state badge, and loss or delay
    // turn their own line red: the badge says only what no other place of the tile says.
    const alerts = this.attention.filter((reason) => !['floor', 'reconnecting', 'loss', 'rtt'].includes(reason));
    this.text(this.alertBadge, alerts.map((reason) => t(`attention.${reason}`, alertParams(e))).join(' · '));
    this.set(this.alertBadge, 'title', alerts.includes('leak') ? t('attention.leakLong') : '');
    this.show(this.alertBadge, alerts.length > 0);
    const poorLink = this.attention.includes('loss') || this.attention.includes('rtt');
    this.set(this.meta, 'data-level', poorLink ? 'bad' : '');

    this.text(this.floorButton, e.floor === 'holder' ? t('tile.takeFloor') : t('tile.giveFloor'));
    this.set(this.floorButton, 'data-action', e.floor === 'holder' ? 'take_floor' : 'give_floor');
    // A suspected leaked code: the new code first (the session may be a copy's), not the floor.
    this.show(this.floorButton, joined && !e.code_leak_suspected);
    this.text(this.muteButton, e.muted ? t('tile.unmute') : t('tile.mute'));
    this.set(this.muteButton, 'data-action', e.muted ? 'unmute' : 'mute');
    this.show(this.muteButton, joined);
    this.text(this.callButton, t('tile.call'));
    this.set(this.callButton, 'data-action', 'call_site');
    this.show(this.callButton, e.state === 'page_open');
    this.text(this.reissueButton, t('tile.reissue'));
    this.set(this.reissueButton, 'data-action', 'reissue');
    this.show(this.reissueButton, Boolean(e.code_leak_suspected));
  }

  /** After the end: grey, no state badge, no figures, no buttons; the declared head count stays. */
  renderEnded() {
    const e = this.entry;
    this.set(this.root, 'data-ended', 'true');
    this.set(this.root, 'data-attention', '');
    this.text(this.name, e.name);
    this.set(this.name, 'title', `${e.name} (${e.site})`);
    for (const badge of [this.stateBadge, this.floorBadge, this.mutedBadge, this.rollCallBadge, this.alertBadge, this.transportBadge]) {
      this.show(badge, false);
    }
    this.show(this.placeholder, true);
    this.text(this.placeholder, t('tile.ended'));
    this.text(this.health, '');
    this.set(this.health, 'title', '');
    this.set(this.root, 'data-transport', '');
    this.text(this.meta, '');
    this.set(this.meta, 'title', '');
    this.text(this.delegates, this.delegatesText());
    for (const action of [this.floorButton, this.muteButton, this.callButton, this.reissueButton]) {
      this.show(action, false);
      action.disabled = true;
    }
  }

  delegatesText() {
    const e = this.entry;
    const declared = e.head_count === null || e.head_count === undefined ? '—' : formatNumber(e.head_count);
    return e.expected_delegates > 0
      ? t('tile.delegates', { count: declared, expected: formatNumber(e.expected_delegates) })
      : t('tile.delegatesDeclared', { count: declared });
  }

  /** The participant now joined for this site (null when none): its tracks show here. */
  setParticipant(participant, tracks) {
    if (this.participant === participant) return;
    this.participant = participant;
    this.detach();
    if (participant && tracks) {
      if (tracks.video) this.attach(tracks.video);
      if (tracks.audio) this.attach(tracks.audio);
    }
  }

  attach(track) {
    if (track.kind === 'video') {
      if (!this.video) {
        this.video = document.createElement('video');
        this.video.autoplay = true;
        this.video.muted = true; // the sound plays through `audio`, so autoplay is never refused
        this.video.playsInline = true;
        this.video.dataset.remote = '';
        this.video.addEventListener('resize', () => this.render());
        this.video.addEventListener('loadedmetadata', () => this.render());
        this.media.prepend(this.video);
      }
      this.video.dataset.participant = this.participant;
      // A stream of its own track: the browser's stream for a participant id can still hold
      // ended tracks from an earlier session.
      this.video.srcObject = new MediaStream([track]);
      this.video.play().catch(() => {});
    } else {
      if (!this.audio) {
        this.audio = document.createElement('audio');
        this.audio.autoplay = true;
        this.media.append(this.audio);
      }
      this.audio.srcObject = new MediaStream([track]);
      this.sound.play(this.audio);
    }
    this.render();
  }

  detach() {
    if (this.video) {
      this.video.srcObject = null;
      this.video.remove();
      this.video = null;
    }
    if (this.audio) {
      this.audio.srcObject = null;
      this.sound.forget(this.audio);
      this.audio.remove();
      this.audio = null;
    }
    this.render();
  }

  set(node, attribute, value) {
    const written = writtenOf(node);
    if (written[attribute] === value) return;
    written[attribute] = value;
    node.setAttribute(attribute, value);
  }

  text(node, value) {
    const written = writtenOf(node);
    if (written.text === value) return;
    written.text = value;
    node.textContent = value;
  }

  show(node, visible) {
    const written = writtenOf(node);
    if (written.hidden === !visible) return;
    written.hidden = !visible;
    node.hidden = !visible;
  }
}

/**
 * The grid of every expected site. `onAction(action, tile)` is called for a tile's button
 * (`give_floor`, `take_floor`, `mute`, `unmute`, `call_site`).
 */
export class SiteGrid extends EventTarget {
  constructor(container, { sound, onAction }) {
    super();
    this.container = container;
    this.sound = sound;
    /** Tiles by site code, in roster order. */
    this.tiles = new Map();
    /** Newest tracks by participant id (the stream id of the hub's tracks). */
    this.tracks = new Map();
    /** `province`: a province's name, or '' for all. */
    this.filter = { text: '', state: 'all', province: '' };
    this.sortKey = 'attention';
    /** The order last written to the DOM (tiles' and headers' nodes, visible first). */
    this.order = [];
    /** Sorted by province: a header above each province's tiles, by province name. */
    this.headers = new Map();
    this.visibleCount = 0;
    /** How long the first and the last `update` took, in ms (for tests and the benchmark). */
    this.firstApplyMs = null;
    this.lastApplyMs = 0;
    /** Codes of the sites whose tiles are on screen now. */
    this.onScreen = new Set();
    this.observer =
      typeof IntersectionObserver === 'function'
        ? new IntersectionObserver((entries) => {
            for (const entry of entries) {
              const code = entry.target.dataset.site;
              if (entry.isIntersecting) this.onScreen.add(code);
              else this.onScreen.delete(code);
            }
            this.dispatchEvent(new Event('onscreen'));
          })
        : null;

    container.addEventListener('click', (event) => {
      const target = event.target.closest('button[data-action]');
      const tileNode = target && target.closest('.site-tile');
      if (!tileNode) return;
      const tile = this.tiles.get(tileNode.dataset.site);
      if (tile) onAction(target.dataset.action, tile);
    });
  }

  /** Applies a `console` message's `sites`. */
  update(sites, now = Date.now()) {
    const started = performance.now();
    let rosterChanged = sites.length !== this.tiles.size;
    sites.forEach((entry, index) => {
      let tile = this.tiles.get(entry.site);
      if (!tile) {
        tile = new SiteTile(entry.site, index, this.sound);
        this.tiles.set(entry.site, tile);
        this.observer?.observe(tile.root);
        rosterChanged = true;
      }
      tile.index = index;
      tile.apply(entry, now);
      const participant = entry.participant || null;
      tile.setParticipant(participant, participant ? this.tracks.get(participant) : null);
    });
    if (rosterChanged) {
      const present = new Set(sites.map((entry) => entry.site));
      for (const [code, tile] of this.tiles) {
        if (!present.has(code)) {
          tile.detach();
          this.observer?.unobserve(tile.root);
          this.onScreen.delete(code);
          tile.root.remove();
          this.tiles.delete(code);
        }
      }
    }
    this.arrange();
    this.lastApplyMs = performance.now() - started;
    this.firstApplyMs ??= this.lastApplyMs;
  }

  /** Shows a `floor` message at once (the console says the same within 2 s). */
  applyFloor({ holder, queue }, now = Date.now()) {
    const asking = new Set(queue.map((s) => s.site));
    for (const tile of this.tiles.values()) {
      const floor = holder && holder.site === tile.code ? 'holder' : asking.has(tile.code) ? 'requested' : 'none';
      if (tile.entry.floor !== floor) tile.apply({ ...tile.entry, floor }, now);
    }
    this.arrange();
  }

  /** Changes a site's entry before the next console (after a chair action succeeded). */
  patch(code, changes, now = Date.now()) {
    const tile = this.tiles.get(code);
    if (!tile) return;
    tile.apply({ ...tile.entry, ...changes }, now);
    this.arrange();
  }

  /** Stores a remote track and shows it in the tile of the site it belongs to. */
  attachTrack(participant, track) {
    const tracks = this.tracks.get(participant) || { video: null, audio: null };
    tracks[track.kind] = track;
    this.tracks.set(participant, tracks);
    for (const tile of this.tiles.values()) {
      if (tile.participant === participant) tile.attach(track);
    }
  }

  /** A site's participant id before the next console says so (from `participant_joined`). */
  knowParticipant(site, participant) {
    const tile = this.tiles.get(site);
    if (tile && !tile.participant) tile.setParticipant(participant, this.tracks.get(participant));
  }

  forgetParticipant(participant) {
    this.tracks.delete(participant);
    for (const tile of this.tiles.values()) {
      if (tile.participant === participant) tile.setParticipant(null, null);
    }
  }

  /** The meeting has ended: every tile loses its picture, figures and buttons. */
  end() {
    this.clearTracks();
    for (const tile of this.tiles.values()) {
      tile.ended = true;
      tile.render();
    }
  }

  /** The chair's peer connection was torn down: every track is gone. */
  clearTracks() {
    this.tracks.clear();
    for (const tile of this.tiles.values()) {
      tile.participant = null;
      tile.detach();
    }
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    this.arrange();
  }

  setSort(key) {
    if (!SORTS[key]) return;
    this.sortKey = key;
    this.arrange();
  }

  /** Re-renders every text (after a language change). */
  renderAll() {
    for (const tile of this.tiles.values()) tile.render();
    this.arrange();
  }

  /**
   * The provinces of the sites, by name (Vietnamese order), each with its sites and those
   * joined now: `[{ name, joined, total }]`. Sites the directory places in no province are
   * left out.
   */
  provinces() {
    const byName = new Map();
    for (const tile of this.tiles.values()) {
      const name = tile.entry.province;
      if (!name) continue;
      const counts = byName.get(name) || { name, joined: 0, total: 0 };
      counts.total += 1;
      if (JOINED_STATES.has(tile.entry.state)) counts.joined += 1;
      byName.set(name, counts);
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name, 'vi'));
  }

  /**
   * The sites joined to another hub (a province's commune in a national meeting) whose tiles
   * are on screen now, in roster order: their small pictures are sent up for these only.
   */
  remoteOnScreen() {
    return this.all()
      .filter((tile) => tile.entry.node && this.onScreen.has(tile.code) && !tile.root.hidden)
      .map((tile) => tile.code);
  }

  /** The tiles in roster order. */
  all() {
    return [...this.tiles.values()];
  }

  /** The header of province `name` ('' for sites of no province), with its counts written. */
  header(name, counts) {
    let header = this.headers.get(name);
    if (!header) {
      header = el('h3', 'province-header');
      header.dataset.province = name;
      this.headers.set(name, header);
    }
    const text = name
      ? t('console.provinceHeader', { name, joined: formatNumber(counts?.joined ?? 0), total: formatNumber(counts?.total ?? 0) })
      : t('console.noProvince');
    if (header.textContent !== text) header.textContent = text;
    return header;
  }

  /**
   * Puts the visible tiles in order first, the hidden ones after, moving only what moved;
   * sorted by province, under a header for each.
   */
  arrange() {
    const test = STATE_FILTERS[this.filter.state] || STATE_FILTERS.all;
    const query = searchable(this.filter.text.trim());
    const compare = SORTS[this.sortKey];
    const visible = [];
    const hidden = [];
    const province = this.filter.province;
    for (const tile of this.tiles.values()) {
      const inProvince = province === '' || tile.entry.province === province;
      if (inProvince && test(tile) && (query === '' || tile.searchText.includes(query))) visible.push(tile);
      else hidden.push(tile);
    }
    visible.sort((a, b) => compare(a, b) || a.index - b.index);
    for (const tile of visible) tile.show(tile.root, true);
    for (const tile of hidden) tile.show(tile.root, false);

    // Sorted by province across provinces: each province's tiles under a header with its
    // counts (the same as the province menu's).
    const grouped = this.sortKey === 'province' && province === '';
    const wanted = [];
    const shownHeaders = new Set();
    if (grouped) {
      const counts = new Map(this.provinces().map((p) => [p.name, p]));
      let current = null;
      for (const tile of visible) {
        const name = tile.entry.province || '';
        if (name !== current) {
          current = name;
          const header = this.header(name, counts.get(name));
          shownHeaders.add(header);
          wanted.push(header);
        }
        wanted.push(tile.root);
      }
    } else {
      for (const tile of visible) wanted.push(tile.root);
    }
    for (const header of this.headers.values()) {
      header.hidden = !shownHeaders.has(header);
      if (header.hidden) wanted.push(header);
    }
    for (const tile of hidden) wanted.push(tile.root);
    const same = wanted.length === this.order.length && wanted.every((node, i) => node === this.order[i]);
    if (!same) {
      let cursor = this.container.firstElementChild;
      for (const node of wanted) {
        if (node === cursor) cursor = cursor.nextElementSibling;
        else this.container.insertBefore(node, cursor);
      }
      this.order = wanted;
    }
    this.visibleCount = visible.length;
    this.dispatchEvent(new Event('arranged'));
  }
}

/** Why a site needs attention, most urgent first (keys of `attention.*` texts). */
export function attentionOf(entry, connectingSince, now) {
  const reasons = [];
  if (entry.code_leak_suspected) reasons.push('leak');
  if (entry.state === 'reconnecting') reasons.push('reconnecting');
  if (entry.state === 'connecting' && connectingSince !== null && now - connectingSince >= ATTENTION.connectingMs) {
    reasons.push('connecting');
  }
  if (JOINED_STATES.has(entry.state)) {
    if (entry.loss_permille >= ATTENTION.lossPermille) reasons.push('loss');
    if (entry.rtt_ms >= ATTENTION.rttMs) reasons.push('rtt');
  }
  if (entry.floor === 'requested') reasons.push('floor');
  return reasons;
}

// ---- formatting ----

let numberFormats = null;

function formats() {
  const language = currentLanguage();
  if (!numberFormats || numberFormats.language !== language) {
    const locale = language === 'vi' ? 'vi-VN' : 'en-GB';
    numberFormats = {
      language,
      whole: new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }),
      percent: new Intl.NumberFormat(locale, { maximumFractionDigits: 1 }),
    };
  }
  return numberFormats;
}

export function formatNumber(value) {
  return formats().whole.format(value);
}

/** Loss in percent: one decimal below 10 %, whole numbers above (the tile is narrow). */
function formatLoss(permille) {
  return permille >= 100 ? formats().whole.format(permille / 10) : formats().percent.format(permille / 10);
}

function healthParams(e) {
  return {
    up: formatNumber(e.bitrate_in_kbps),
    down: formatNumber(e.bitrate_out_kbps),
    loss: formatLoss(e.loss_permille),
    rtt: formatNumber(e.rtt_ms),
  };
}

function alertParams(e) {
  return { loss: formatLoss(e.loss_permille), rtt: formatNumber(e.rtt_ms) };
}

// ---- DOM ----

function el(tag, className) {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}

function button(kind) {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = `small tile-${kind}`;
  return node;
}

/** What was last written to each node (text, attributes, hidden), to write only changes. */
const WRITTEN = new WeakMap();

function writtenOf(node) {
  let written = WRITTEN.get(node);
  if (!written) {
    written = {};
    WRITTEN.set(node, written);
  }
  return written;
}
