//! End-to-end in real headless Chromium: one studio page and four site pages join one meeting
//! on an in-process hub, each from the join link the API gave it; every page must join under
//! the name of its code, every site must decode the studio's audio and video, and the studio
//! must decode every site's video in that site's tile.
//!
//! The browser side is `tests/e2e/studio_sites.mjs` (playwright-core driving Debian's
//! `/usr/bin/chromium`); it sets the meeting up through the HTTP API (sites imported into the
//! empty directory, meeting created and started). This test starts the hub on 127.0.0.1 port 0,
//! runs the script against it and fails with the script's output when the script fails.
//!
//! Needs `node` and `tests/e2e/node_modules` (run `scripts/test`, which installs it with
//! `npm ci`). Run alone with the browser's progress shown:
//! `cargo test --test browser -- --nocapture`. Set `E2E_SCREENSHOT_DIR` to keep screenshots.

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 150 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_and_four_sites_decode_each_other_in_chromium() {
    node_script::run_on_test_hub("browser", "studio_sites.mjs", SCRIPT_TIMEOUT).await;
}
