// End-to-end: a hall whose network drops UDP, in headless Chromium against a running hub.
//
//   node tests/e2e/media_tcp.mjs http://127.0.0.1:PORT
//
// One browser as usual holds the studio page (publishing its fake camera) and a site page
// whose network check must say UDP. A second browser whose profile forbids UDP to WebRTC (the
// preference `webrtc.ip_handling_policy` = `disable_non_proxied_udp`, as an administrator's
// policy sets it; the command-line switch of that name alone did not keep Chromium 156 off UDP
// here) opens the other site's page:
// its network check must say TCP only and name the UDP ports to open; it then joins and must
// decode the studio's video over TCP (its selected candidate pair is TCP), and the studio's
// console must show TCP on that site's tile. Exit code 0 on success, 1 on failure, 2 on setup.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import {
  CHROMIUM,
  CHROMIUM_ARGS,
  Failure,
  PageWatch,
  gotoPage,
  joinPage,
  log,
  parseBaseUrl,
  runInChromium,
  runScript,
  startMeeting,
} from './harness.mjs';

const TCP_SITE = { code: '2269', name: 'Xã Thượng Lâm', delegates: 60 };
const UDP_SITE = { code: '2266', name: 'Xã Lâm Bình', delegates: 45 };
const TIMEOUT_MS = 30_000;
const WATCHDOG_MS = 150_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'media_tcp.mjs');
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử đường truyền TCP',
    studioName: 'Điểm cầu trung tâm',
    sites: [TCP_SITE, UDP_SITE],
  });
  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await context.newPage();
      const studioWatch = new PageWatch('studio', studio);
      await gotoPage(studio, 'studio', `${base}${meeting.links.studio}`, TIMEOUT_MS);
      await joinPage(studio, 'studio', { site: false, timeout: TIMEOUT_MS });
      log('studio joined');

      const udpPage = await context.newPage();
      const udpWatch = new PageWatch('UDP site', udpPage);
      await gotoPage(udpPage, 'UDP site', `${base}${meeting.links.sites[UDP_SITE.code]}`, TIMEOUT_MS);
      const udpCheck = await networkCheck(udpPage, 'UDP site', udpWatch);
      if (udpCheck.result !== 'udp') throw new Failure(`the UDP site's network check says ${JSON.stringify(udpCheck)}`);
      log(`UDP site's network check: ${udpCheck.text}`);

      const profile = await mkdtemp(join(tmpdir(), 'diemcau-e2e-tcp-'));
      await mkdir(join(profile, 'Default'), { recursive: true });
      await writeFile(
        join(profile, 'Default', 'Preferences'),
        JSON.stringify({ webrtc: { ip_handling_policy: 'disable_non_proxied_udp' } }),
      );
      const tcpBrowser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        permissions: ['camera', 'microphone'],
        viewport: { width: 1366, height: 768 },
      });
      try {
        const page = await tcpBrowser.newPage();
        const watch = new PageWatch('TCP site', page);
        await gotoPage(page, 'TCP site', `${base}${meeting.links.sites[TCP_SITE.code]}`, TIMEOUT_MS);
        const check = await networkCheck(page, 'TCP site', watch);
        if (check.result !== 'tcp') throw new Failure(`the TCP-only site's network check says ${JSON.stringify(check)}`);
        const connectivity = await (await fetch(`${base}/api/connectivity`)).json();
        const unnamed = connectivity.udp.filter((address) => !check.help.includes(address));
        if (connectivity.udp.length === 0 || unnamed.length > 0) {
          throw new Failure(`the TCP-only site is not told to open UDP ${unnamed.join(', ')}: ${JSON.stringify(check)}`);
        }
        log(`TCP site's network check: ${check.text} / ${check.help}`);

        await joinPage(page, 'TCP site', { site: true, timeout: TIMEOUT_MS });
        log('TCP site joined');
        const media = await waitFor(TIMEOUT_MS, () => page.evaluate(studioVideoOverWhat), (m) => m.frames > 30 && m.protocol === 'tcp');
        if (!media.ok) {
          watch.printRecent(20);
          throw new Failure(`the TCP-only site does not decode the studio over TCP: ${JSON.stringify(media.last)}`);
        }
        log(`TCP site decodes the studio over ${media.last.protocol}: ${media.last.frames} frames`);

        const tile = await waitFor(
          TIMEOUT_MS,
          () => studio.evaluate((code) => {
            const el = document.querySelector(`[data-site="${code}"]`);
            return el ? { transport: el.dataset.transport ?? '', text: el.textContent } : null;
          }, TCP_SITE.code),
          (t) => t && t.transport === 'tcp' && /TCP/.test(t.text),
        );
        if (!tile.ok) {
          studioWatch.printRecent(20);
          throw new Failure(`the studio's console does not show TCP for ${TCP_SITE.name}: ${JSON.stringify(tile.last)}`);
        }
        log('PASS: the TCP-only site is told so, receives the studio over TCP, and the console shows TCP');
      } finally {
        await tcpBrowser.close().catch(() => {});
        await rm(profile, { recursive: true, force: true }).catch(() => {});
      }
    },
  });
}

/** Waits for the page's network check to finish: `{ result, text, help }`. */
async function networkCheck(page, label, watch) {
  try {
    await page.waitForFunction(() => document.getElementById('check-network')?.dataset.result, null, {
      timeout: TIMEOUT_MS,
      polling: 200,
    });
  } catch {
    watch.printRecent(20);
    throw new Failure(`${label}: the network check did not finish`);
  }
  return page.evaluate(() => ({
    result: document.getElementById('check-network').dataset.result,
    text: document.getElementById('check-network').textContent,
    help: document.getElementById('check-network-help').textContent,
  }));
}

/** Runs inside the site page: frames decoded of its video and the protocol of its ICE path. */
async function studioVideoOverWhat() {
  const pc = window.diemcau.pc;
  if (!pc) return { frames: 0, protocol: null };
  const stats = await pc.getStats();
  let frames = 0;
  let pairId = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  const pair = pairId ? stats.get(pairId) : null;
  const local = pair ? stats.get(pair.localCandidateId) : null;
  return { frames, protocol: local?.protocol ?? null };
}

async function waitFor(timeoutMs, probe, done) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await probe().catch((error) => ({ error: error.message }));
    if (done(last)) return { ok: true, last };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { ok: false, last };
}

runScript(main);
