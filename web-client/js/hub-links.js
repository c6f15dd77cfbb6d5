// The links between hubs in a national tree, on the chair's console: for a hub with child hubs
// (provinces), each one's state and round trip; for a provincial hub, its link to the centre.
// Read from /api/health every few seconds; the panel stays hidden on a hub with neither.

import { t } from './i18n.js';

/** How often the links are read again. */
const REFRESH_MS = 5_000;

export function installHubLinksPanel() {
  const panel = document.getElementById('links-panel');
  const list = document.getElementById('links-list');
  const summary = document.getElementById('links-summary');
  let health = null;

  const render = () => {
    const nodes = health && Array.isArray(health.nodes) ? health.nodes : [];
    const parent = health && health.parent ? health.parent : null;
    panel.hidden = nodes.length === 0 && !parent;
    if (panel.hidden) return;
    const items = [];
    if (parent) {
      const relays = Array.isArray(parent.relays) ? parent.relays : [];
      const media = relays.length
        ? {
            kbps: relays.reduce((sum, r) => sum + (r.bitrate_kbps || 0), 0),
            lossPercent: Math.max(0, ...relays.map((r) => r.loss_percent || 0)),
          }
        : null;
      items.push(row(t('links.centre'), parent.state, parent.rtt_ms, parent.error, media));
    }
    for (const node of nodes) {
      const provinces = node.provinces && node.provinces.length ? ` (${node.provinces.join(', ')})` : '';
      const media = node.media ? { kbps: node.media.bitrate_kbps, lossPercent: node.media.loss_permille / 10 } : null;
      items.push(row(`${node.name}${provinces}`, node.state, node.rtt_ms, null, media));
    }
    list.replaceChildren(...items);
    const up = nodes.filter((n) => n.state === 'connected').length;
    summary.textContent = nodes.length ? t('links.summary', { up, all: nodes.length }) : '';
  };

  const refresh = async () => {
    try {
      const reply = await fetch('/api/health', { cache: 'no-store' });
      if (reply.ok) health = await reply.json();
    } catch {
      // The hub is out of reach: the page's own status strip says so.
    }
    render();
  };

  window.addEventListener('languagechange', render);
  refresh();
  setInterval(refresh, REFRESH_MS);
}

/** One link: its name, state and round trip, and the media crossing it (`{kbps, lossPercent}`) if any. */
function row(name, state, rttMs, error, media) {
  const item = document.createElement('li');
  item.dataset.state = state;
  const label = document.createElement('span');
  label.className = 'link-name';
  label.textContent = name;
  const status = document.createElement('span');
  status.className = 'link-state';
  const stateText = t(`links.state.${state}`);
  const parts = [stateText];
  if (typeof rttMs === 'number') parts.push(t('links.rtt', { ms: rttMs }));
  if (media) parts.push(t('links.media', { kbps: media.kbps, loss: media.lossPercent.toFixed(1) }));
  status.textContent = parts.join(' · ');
  if (error) status.title = error;
  item.append(label, status);
  return item;
}
