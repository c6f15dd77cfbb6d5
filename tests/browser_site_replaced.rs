//! End-to-end in real headless Chromium: a site leaves and another joins while the studio
//! stays; the hub gives the newcomer's tracks the m-lines of the site gone, and the studio's
//! Chromium must take them for the newcomer (its participant id in `ontrack`) and decode its
//! video in its tile, without its SDP growing.
//!
//! The browser side is `tests/e2e/site_replaced.mjs`. Needs `node` and
//! `tests/e2e/node_modules` (`scripts/test` installs it). Run alone with the browser's progress
//! shown: `cargo test --test browser_site_replaced -- --nocapture`.

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 150 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_site_on_a_gone_site_s_m_lines_is_decoded_by_the_studio_in_chromium() {
    node_script::run_on_test_hub("browser_site_replaced", "site_replaced.mjs", SCRIPT_TIMEOUT)
        .await;
}
