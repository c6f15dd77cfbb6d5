//! End-to-end in real headless Chromium: two hub processes share one PostgreSQL database (a
//! province's standby pair), reached under two host names of one domain (hub1.tinh.test and
//! hub2.tinh.test, mapped to loopback in the browser) that share the login cookie
//! (`--cookie-domain`). A site page and the studio page, in the meeting through the first hub
//! and decoding each other's video, follow its SIGKILL to the second hub by themselves, the
//! studio without logging in again, without a click, and decode again.
//!
//! The browser side is `tests/e2e/takeover.mjs`. Needs `node`, `tests/e2e/node_modules` and the
//! test PostgreSQL cluster (`scripts/test` brings all three). Run alone with the browser's
//! progress shown: `cargo test --test browser_takeover -- --nocapture`.

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
async fn a_site_page_and_the_studio_page_follow_a_takeover_in_chromium() {
    node_script::require_playwright();
    let database = postgres::fresh_database("browser_takeover").await;
    let dir = std::env::temp_dir().join(format!("diemcau-browser-takeover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The browser reaches the hubs under two names of one domain, which shares their login.
    let args = |name: &str, peer: Option<String>| {
        let mut args = vec![
            "--hub-name".to_owned(),
            name.to_owned(),
            "--cookie-domain".to_owned(),
            "tinh.test".to_owned(),
        ];
        if let Some(peer) = peer {
            args.extend(["--peer-hubs".to_owned(), peer]);
        }
        args
    };
    let (standby, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &args("b", None));
    let _standby = hub_binary::KillOnDrop(standby);
    let standby_url = format!("http://hub2.tinh.test:{}", b.port());
    let (first, a) = hub_binary::spawn_on(
        &dir.join("a"),
        Some(&database),
        &args("a", Some(standby_url.clone())),
    );
    let first = hub_binary::KillOnDrop(first);
    let first_url = format!("http://hub1.tinh.test:{}", a.port());
    node_script::run_against(
        &first_url,
        "takeover.mjs",
        SCRIPT_TIMEOUT,
        &[
            ("E2E_STANDBY_URL", standby_url.clone()),
            ("E2E_KILL_PID", first.0.id().to_string()),
            ("E2E_API_URL", format!("http://{a}")),
            (
                "E2E_HOST_RESOLVER_RULES",
                "MAP *.tinh.test 127.0.0.1".to_owned(),
            ),
            ("E2E_SECURE_ORIGINS", format!("{first_url},{standby_url}")),
        ],
    )
    .await;
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}
