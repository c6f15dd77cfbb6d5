// End-to-end: the hub's PostgreSQL stops for a while during a meeting, in headless Chromium.
//
//   E2E_STOP_DATABASE='…' E2E_START_DATABASE='…' node tests/e2e/database_outage.mjs http://127.0.0.1:A
//
// The studio and a site join and decode each other's video; the database is stopped (the
// shell command in E2E_STOP_DATABASE). The studio page must show the chair the warning that
// the attendance log waits on the hub, both pages stay joined and keep decoding; once the
// database is started again (E2E_START_DATABASE) the warning goes by itself. Exit code 0 on
// success; 1 with the reasons on failure; 2 on bad usage or setup.

import { execSync } from 'node:child_process';

import { log, openJoined, parseBaseUrl, runInChromium, runScript, startMeeting, until, untilDecoding } from './harness.mjs';

const SITES = [{ code: '2269', name: 'Xã Thượng Lâm', delegates: 60 }];
const JOIN_TIMEOUT_MS = 20_000;
const MEDIA_TIMEOUT_MS = 45_000;
const BANNER_TIMEOUT_MS = 15_000;
const WATCHDOG_MS = 150_000;

async function main() {
  const base = parseBaseUrl(process.argv[2], 'database_outage.mjs');
  const stop = process.env.E2E_STOP_DATABASE;
  const start = process.env.E2E_START_DATABASE;
  if (!stop || !start) throw new Error('E2E_STOP_DATABASE and E2E_START_DATABASE are needed');
  const meeting = await startMeeting(base, {
    title: 'Kiểm thử đầu cuối: mất cơ sở dữ liệu',
    studioName: 'Điểm cầu trung tâm Tuyên Quang',
    sites: SITES,
  });
  await runInChromium({
    logInTo: base,
    watchdogMs: WATCHDOG_MS,
    body: async (context) => {
      const studio = await openJoined(context, 'studio', `${base}${meeting.links.studio}`, { site: false, timeout: JOIN_TIMEOUT_MS });
      const site = await openJoined(context, 'site', `${base}${meeting.links.sites[SITES[0].code]}`, { site: true, timeout: JOIN_TIMEOUT_MS });
      await untilDecoding([studio, site], MEDIA_TIMEOUT_MS, 'with the database up');
      const banner = studio.page.locator('#log-banner');

      execSync(stop, { stdio: 'inherit' });
      const stopped = Date.now();
      log('the database stopped');
      // Something for the log while the database is away: the site declares its head count,
      // and the hall sees it recorded as usual.
      await site.page.fill('#hc-count', '52');
      await site.page.fill('#hc-name', 'Nguyễn Văn An');
      await site.page.fill('#hc-position', 'Chủ tịch UBND xã');
      await site.page.click('#hc-submit');
      await until('the head count to be recorded', BANNER_TIMEOUT_MS, async () => {
        const result = site.page.locator('#hc-result');
        return (await result.isVisible()) && (await result.getAttribute('data-level')) === 'good';
      });
      log(`the head count recorded: ${await site.page.locator('#hc-result').textContent()}`);
      await until('the chair to be warned', BANNER_TIMEOUT_MS, () => banner.isVisible());
      const text = await banner.textContent();
      if (!text.includes('cơ sở dữ liệu')) throw new Error(`the warning reads: ${text}`);
      log(`the chair warned ${((Date.now() - stopped) / 1000).toFixed(1)} s after the stop: ${text}`);
      await untilDecoding([studio, site], MEDIA_TIMEOUT_MS, 'with the database stopped');
      for (const page of [studio, site]) {
        const state = await page.page.evaluate(() => window.diemcau?.state().signaling);
        if (state !== 'joined') throw new Error(`${page.label} is ${state} while the database is stopped`);
      }

      execSync(start, { stdio: 'inherit' });
      log(`the database started again after ${((Date.now() - stopped) / 1000).toFixed(1)} s`);
      await until('the warning to go', BANNER_TIMEOUT_MS, async () => !(await banner.isVisible()));
      log('PASS: the warning went by itself; both pages stayed joined and decoding');
    },
  });
}

runScript(main);
