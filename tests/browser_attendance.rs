//! End-to-end in real headless Chromium: the organizer's and the staff's pages, from an empty
//! sites directory to the printed attendance report.
//!
//! The browser side is `tests/e2e/attendance.mjs`: it imports a CSV of communes with
//! Vietnamese names on the organizer page (a bad file first, whose every bad line must be
//! shown), creates a meeting through the form, starts it, joins one site from its link and
//! declares the hall's head count there, checks that a revoked link is refused for good, ends
//! the meeting (the studio page, open meanwhile, must be told and must not rejoin), and reads
//! `report.html`: the site that came is present (or partial) with its
//! head count and who confirmed it, the other is absent, every CSV download begins with the
//! UTF-8 BOM and keeps the Vietnamese names intact, and the Excel button (worded in both
//! languages) downloads a workbook named after the meeting.
//!
//! Needs `node` and `tests/e2e/node_modules` (`scripts/test` installs them). Run alone with
//! the browser's progress shown: `cargo test --test browser_attendance -- --nocapture`. Set
//! `E2E_SCREENSHOT_DIR` to keep screenshots of the pages (report.png, report-print.png...).

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 120 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizer_creates_a_meeting_and_the_report_shows_who_came_in_chromium() {
    node_script::run_on_test_hub("browser-attendance", "attendance.mjs", SCRIPT_TIMEOUT).await;
}
