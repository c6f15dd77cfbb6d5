// End-to-end: a standby hub takes a meeting over, in headless Chromium.
//
//   E2E_STANDBY_URL=http://hub2.tinh.test:B E2E_KILL_PID=PID E2E_API_URL=http://127.0.0.1:A \
//   E2E_HOST_RESOLVER_RULES='MAP *.tinh.test 127.0.0.1' node tests/e2e/takeover.mjs http://hub1.tinh.test:A
//
// Hub A (process PID) and hub B share one PostgreSQL database; A names B in --peer-hubs. The
// browser reaches them under two host names of one domain, which the hubs' login cookie is
// shared by (--cookie-domain); the script itself reaches A's API at E2E_API_URL. The studio
// and a site join through A and decode each other's video; A is killed with SIGKILL. Both
// pages must reach B by themselves (the site's page at once in the meeting, the studio's
// without logging in again, no click), join, and decode each other's video again. Exit code 0 on success; 1 with the reasons on
// failure; 2 on bad usage or setup.

import { log, openJoined, parseBaseUrl, runInChromium, runScript, startMeeting, until, untilDecoding } from './harness.mjs';

const SITES = [{ code: '2269', name: 'Xã Thượng Lâm', delegates: 60 }];
const JOIN_TIMEOUT_MS = 20_000;
const MEDIA_TIMEOUT_MS = 45_000;
const TAKEOVER_TIMEOUT_MS = 40_000;
const WATCHDOG_MS = 150_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'takeover.mjs');
  const standby = process.env.E2E_STANDBY_URL;
  const pid = Number(process.env.E2E_KILL_PID);
  if (!standby || !pid) throw new Error('E2E_STANDBY_URL and E2E_KILL_PID are needed');
  const meeting = await startMeeting(process.env.E2E_API_URL || base, {
    title: 'Kiểm thử đầu cuối: máy chủ dự phòng tiếp quản',
    studioName: 'Điểm cầu trung tâm Tuyên Quang',
    sites: SITES,
  });
  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await openJoined(context, 'studio', `${base}${meeting.links.studio}`, { site: false, timeout: JOIN_TIMEOUT_MS });
      const site = await openJoined(context, 'site', `${base}${meeting.links.sites[SITES[0].code]}`, { site: true, timeout: JOIN_TIMEOUT_MS });
      await untilDecoding([studio, site], MEDIA_TIMEOUT_MS, 'through the first hub');

      process.kill(pid, 'SIGKILL');
      const killed = Date.now();
      log(`killed the first hub (pid ${pid})`);
      for (const page of [site, studio]) {
        await until(`${page.label} to join again through the standby`, TAKEOVER_TIMEOUT_MS, async () => {
          if (!page.page.url().startsWith(standby)) return false;
          return page.page.evaluate(() => window.diemcau?.state().signaling === 'joined').catch(() => false);
        }).catch(async (error) => {
          const state = await page.page.evaluate(() => window.diemcau?.state()).catch(() => null);
          log(`${page.label} is at ${page.page.url()}: ${JSON.stringify(state)}`);
          page.watch.printRecent();
          throw error;
        });
        log(`${page.label} joined through ${standby} ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);
      }
      await untilDecoding([studio, site], MEDIA_TIMEOUT_MS, 'through the standby');
      log(`PASS: both pages decode again through the standby, ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);
    },
  });
}

runScript(main);
