//! End-to-end in real headless Chromium: the hub's PostgreSQL stops during a meeting. The
//! studio page warns the chair that the attendance log waits on the hub, the studio and the
//! site stay joined and decoding, a head count is recorded as usual, and the warning goes by
//! itself once the database is back.
//!
//! The browser side is `tests/e2e/database_outage.mjs`. Needs `node`, `tests/e2e/node_modules`
//! and PostgreSQL installed (`scripts/test` brings all three); the test runs a cluster of its
//! own, which it stops and starts. Run alone with the browser's progress shown:
//! `cargo test --test browser_database_outage -- --nocapture`.

#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "e2e/node_script.rs"]
mod node_script;
#[path = "common/postgres.rs"]
mod postgres;

use std::time::Duration;

/// The script has its own watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chair_is_warned_while_the_database_is_away_and_the_meeting_goes_on_in_chromium() {
    node_script::require_playwright();
    let cluster = postgres::OwnCluster::start("browser-outage");
    let dir = std::env::temp_dir().join(format!("diemcau-browser-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (hub, addr) = hub_binary::spawn_on(
        &dir,
        Some(&cluster.url()),
        &["--hub-name".to_owned(), "a".to_owned()],
    );
    let hub = hub_binary::KillOnDrop(hub);
    node_script::run_against(
        &format!("http://{addr}"),
        "database_outage.mjs",
        SCRIPT_TIMEOUT,
        &[
            ("E2E_STOP_DATABASE", cluster.stop_command()),
            ("E2E_START_DATABASE", cluster.start_command()),
        ],
    )
    .await;
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}
