//! End-to-end in real headless Chromium: what the pages show around the meeting, as users see
//! them.
//!
//! The browser side is `tests/e2e/pages.mjs`: a meeting of eight communes set up through the
//! API, the console (the studio page), one site page joined and one left on its device check.
//! It checks that no text on the console is cut or overflows its box at 1366×768 and at
//! 1280×720 (with worst-case figures on every tile), that badges do not cover a tile's
//! placeholder, that the chair's call does not cover the site page's heading, that a joined
//! site's head count form is on screen at both sizes, that dates read `dd/mm/yyyy HH:mm` in
//! Vietnamese, and that the links copied for the communes are theirs, without the studio's. Then the meeting is ended through the API: the console shows the meeting as
//! ended with its end time and a link to its report, with grey tiles and no control left
//! enabled; the site pages show the end, with camera and microphone stopped, nothing to fill
//! in and no reconnection. Last, a staff account logs in through the login page: it lands on
//! the meetings page, the organizer's page shows it no control it may not use and no join
//! link, and no request of these pages is answered 403.
//!
//! Needs `node` and `tests/e2e/node_modules` (`scripts/test` installs them). Run alone with
//! the browser's progress shown: `cargo test --test browser_pages -- --nocapture`. Set
//! `E2E_SCREENSHOT_DIR` to keep screenshots (pages-*.png).

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 100 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(130);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_the_screen_show_the_end_and_give_staff_only_their_controls_in_chromium() {
    node_script::run_on_test_hub("browser-pages", "pages.mjs", SCRIPT_TIMEOUT).await;
}
