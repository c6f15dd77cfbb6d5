//! The studio and four sites over HTTPS with the hub's self-signed certificate, in real
//! headless Chromium: the same checks as `tests/browser.rs` (every site decodes the studio,
//! the studio decodes every site), with pages, API and signalling (WSS) all over TLS.

#[path = "e2e/node_script.rs"]
mod node_script;

use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_and_sites_over_https_with_a_self_signed_certificate() {
    node_script::require_playwright();
    let data = node_script::DataDir::new("browser-https");
    let mut config = diemcau::Config::for_tests_in(data.path());
    config.plain_http = false;
    let hub = diemcau::start(config).await.expect("hub starts");
    let base_url = hub.base_url();
    assert!(base_url.starts_with("https://"), "{base_url}");
    assert!(
        data.path()
            .join("tls")
            .join("self-signed-cert.pem")
            .exists(),
        "the hub made its self-signed certificate"
    );
    node_script::run_against_hub(hub, "studio_sites.mjs", SCRIPT_TIMEOUT, &[]).await;
}
