// The site page's network check before the meeting: one short-lived peer connection to the
// hub (`POST /api/connectivity/probe`, never part of the meeting) tells whether media reaches
// the hub over UDP, only over TCP (the hub's fallback for networks that drop UDP), or not at
// all, and names the addresses and ports the hall's network administrator should open
// (`GET /api/connectivity`).

import { t } from './i18n.js';

/** How long the check waits for ICE: UDP checks first, then TCP after they fail. */
const CONNECT_TIMEOUT_MS = 15_000;
/** How long the page waits for its own candidates before it sends its offer. */
const GATHER_TIMEOUT_MS = 3_000;

/**
 * Runs the check once: `{ result, connectivity, message }`, `result` being `udp`, `tcp`,
 * `connected` (a path, the browser does not say which), `none` (nothing connected in time) or
 * `unavailable` (the check itself could not run).
 */
export async function checkNetwork() {
  let connectivity = null;
  try {
    const reply = await fetch('/api/connectivity');
    if (reply.ok) connectivity = await reply.json();
  } catch {
    // The ports stay unnamed; the check itself may still run.
  }
  let pc = null;
  try {
    pc = new RTCPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const reply = await fetch('/api/connectivity/probe', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sdp: pc.localDescription.sdp }),
    });
    if (!reply.ok) {
      const body = await reply.json().catch(() => ({}));
      return { result: 'unavailable', connectivity, message: body.error?.message || `HTTP ${reply.status}` };
    }
    const { sdp } = await reply.json();
    await pc.setRemoteDescription({ type: 'answer', sdp });
    if (!(await connected(pc))) return { result: 'none', connectivity };
    const protocol = await selectedProtocol(pc);
    return { result: ['udp', 'tcp'].includes(protocol) ? protocol : 'connected', connectivity };
  } catch (error) {
    return { result: 'unavailable', connectivity, message: error?.message || String(error) };
  } finally {
    if (pc) pc.close();
  }
}

/**
 * The check's lines on the device-check screen: it runs once when the screen opens, again on
 * "check again"; the result stays on the element as `data-result` (for tests and support).
 */
export function installNetworkCheck() {
  const line = document.getElementById('check-network');
  const help = document.getElementById('check-network-help');
  const again = document.getElementById('check-network-again');
  if (!line || !window.RTCPeerConnection) return;
  let outcome = null;
  const render = () => {
    if (!outcome) {
      line.textContent = t('check.network.testing');
      line.dataset.level = 'wait';
      help.hidden = true;
      again.hidden = true;
      return;
    }
    const { result, connectivity, message } = outcome;
    line.textContent = t(`check.network.${result}`, { message: message || '' });
    line.dataset.level = { udp: 'good', connected: 'good', tcp: 'warn' }[result] || 'bad';
    const udp = (connectivity?.udp || []).join(', ');
    const tcp = (connectivity?.tcp || []).join(', ');
    let advice = '';
    if (result === 'tcp' && udp) advice = t('check.network.askUdp', { udp });
    if (result === 'none' && udp) advice = t('check.network.askAll', { udp, tcp: tcp || '—' });
    help.textContent = advice;
    help.hidden = !advice;
    again.hidden = false;
  };
  const run = async () => {
    outcome = null;
    delete line.dataset.result;
    render();
    outcome = await checkNetwork();
    line.dataset.result = outcome.result;
    render();
  };
  again.addEventListener('click', run);
  window.addEventListener('languagechange', render);
  run();
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Whether ICE finds a path in time. */
function connected(pc) {
  const done = () => ['connected', 'completed'].includes(pc.iceConnectionState);
  if (done()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(done()), CONNECT_TIMEOUT_MS);
    pc.addEventListener('iceconnectionstatechange', () => {
      if (done()) {
        clearTimeout(timer);
        resolve(true);
      } else if (pc.iceConnectionState === 'failed') {
        clearTimeout(timer);
        resolve(false);
      }
    });
  });
}

/** `udp` or `tcp`: the protocol of the local candidate of the pair ICE selected (`null` when
 * the browser's statistics do not say). */
async function selectedProtocol(pc) {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    if (!pairId) {
      stats.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id;
      });
    }
    const pair = pairId ? stats.get(pairId) : null;
    const local = pair ? stats.get(pair.localCandidateId) : null;
    if (local?.protocol) return local.protocol;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return null;
}
