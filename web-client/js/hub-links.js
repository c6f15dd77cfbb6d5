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
      items.push(row(t('links.centre'), parent.state, parent.rtt_ms, parent.error));
    }
    for (const node of nodes) {
      const provinces = node.provinces && node.provinces.length ? ` (${node.provinces.join(', ')})` : '';
      items.push(row(`${node.name}${provinces}`, node.state, node.rtt_ms, null));
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

function row(name, state, rttMs, error) {
  const item = document.createElement('li');
  item.dataset.state = state;
  const label = document.createElement('span');
  label.className = 'link-name';
  label.textContent = name;
  const status = document.createElement('span');
  status.className = 'link-state';
  const stateText = t(`links.state.${state}`);
  status.textContent = typeof rttMs === 'number' ? `${stateText} · ${t('links.rtt', { ms: rttMs })}` : stateText;
  if (error) status.title = error;
  item.append(label, status);
  return item;
}
