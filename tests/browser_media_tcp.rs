//! End-to-end in real headless Chromium: a hall whose browser may not use UDP
//! (`--force-webrtc-ip-handling-policy=disable_non_proxied_udp`) is told by its network check
//! that media reaches the hub over TCP only, with the UDP ports to ask for; it joins and decodes
//! the studio over TCP, and the studio's console shows TCP on its tile. A site beside it with
//! UDP is told UDP works.
//!
//! The browser side is `tests/e2e/media_tcp.mjs`. Needs `node` and `tests/e2e/node_modules`
//! (run `scripts/test`). Run alone with the browser's progress shown:
//! `cargo test --test browser_media_tcp -- --nocapture`.

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

/// The script has its own 150 s watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_without_udp_is_told_and_receives_the_studio_over_tcp_in_chromium() {
    node_script::run_on_test_hub("browser-media-tcp", "media_tcp.mjs", SCRIPT_TIMEOUT).await;
}
