//! End-to-end in real headless Chromium behind impaired links: a studio publishing simulcast
//! (the fake camera at 1280x720: three layers) and three sites, each reaching the hub through a
//! userspace UDP relay of its own: unconstrained, 1 Mbit/s, and 300 kbit/s with 1 % loss.
//! Each site must decode the layer its link carries (high, middle, low), hear the studio, and
//! receive its audio as RED; the weak site's link then collapses to 50 kbit/s: it must fall to
//! audio only (the page and the studio's console say so) with sound still arriving, and get
//! its picture back when the link recovers (to 500 kbit/s).
//!
//! The browser side is `tests/e2e/weak_links.mjs`; the relay is `tests/common/impair.rs` (no
//! `netem` in this kernel, and a relay on loopback needs no root). The hub runs one media worker
//! so every browser reaches one UDP port; each site page rewrites the hub's ICE candidate to
//! its relay's port, and the script changes a link through the relay's control port.
//!
//! Needs `node` and `tests/e2e/node_modules` (run `scripts/test`). Run alone with the progress
//! shown: `cargo test --test browser_weak_links -- --nocapture`.

#[path = "e2e/node_script.rs"]
mod node_script;

#[path = "common/impair.rs"]
mod impair;

use std::time::Duration;

/// The script has its own watchdog; this is the last resort if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(200);
const PATHS: [&str; 3] = ["fast", "middle", "slow"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_behind_weak_links_get_the_layer_their_link_carries_in_chromium() {
    node_script::require_playwright();
    let data = node_script::DataDir::new("browser-weak-links");
    let mut config = diemcau::Config::for_tests_in(data.path());
    config.workers = Some(1);
    let hub = diemcau::start(config).await.expect("hub starts");
    let media = *hub
        .media_addresses()
        .first()
        .expect("the hub announces its media port");
    let relay = impair::Relay::start(media, &PATHS).expect("relay starts");
    let relays = PATHS
        .iter()
        .filter_map(|name| relay.address(name).map(|a| format!("{name}={}", a.port())))
        .collect::<Vec<_>>()
        .join(",");
    let env = [
        ("E2E_HUB_MEDIA_PORT", media.port().to_string()),
        ("E2E_RELAYS", relays),
        (
            "E2E_RELAY_CONTROL",
            relay.control_address().port().to_string(),
        ),
    ];
    println!("hub media {media}; relays {env:?}");
    node_script::run_against_hub(hub, "weak_links.mjs", SCRIPT_TIMEOUT, &env).await;
    drop(relay);
}
