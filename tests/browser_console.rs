//! End-to-end in real headless Chromium: the chair's console and the site pages.
//!
//! The browser side is `tests/e2e/console.mjs`: a meeting of four communes set up through the
//! API, the console (the studio page) and four site pages, one of them left on its device
//! check (standby) and one reaching the hub through a TCP relay of the script so that its
//! network can be cut. It checks that the console shows every site's state as it changes
//! (live, page open, reconnecting after a cut, live again, left after a closed page), that the
//! chair can call an open page, that a floor request reaches the console's queue and that once
//! the floor is given every other site decodes the speaker's video and audio, that the chair's
//! mute stops the speaker's audio at the other sites while its video goes on, and that roll-call
//! answers show on the console with count, confirmer, position and totals.
//!
//! Needs `node` and `tests/e2e/node_modules` (`scripts/test` installs them). Run alone with
//! the browser's progress shown: `cargo test --test browser_console -- --nocapture`. Set
//! `E2E_SCREENSHOT_DIR` to keep screenshots (console-*.png, site-*.png).

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 110 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(140);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chair_console_floor_mute_roll_call_and_site_states_in_chromium() {
    node_script::run_on_test_hub("browser-console", "console.mjs", SCRIPT_TIMEOUT).await;
}
