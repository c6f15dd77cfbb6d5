//! The connection check's HTTP side, without a login: `GET /api/connectivity` names the
//! media addresses; `POST /api/connectivity/probe` answers a real offer with the hub's UDP and
//! passive TCP candidates, refuses what is not an offer with `invalid_request`, and refuses
//! probes beyond the per-address cap with `rate_limited`.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;

use std::time::Instant;

use diemcau_sfu::str0m::Rtc;
use diemcau_sfu::str0m::media::{Direction, MediaKind};
use serde_json::json;

/// An offer as a browser's connection check makes it: one `recvonly` audio m-line.
fn offer() -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

async fn probe(addr: std::net::SocketAddr, body: &[u8]) -> http::Reply {
    http::send(addr, "POST", "/api/connectivity/probe", body, None, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_check_answers_offers_within_its_caps() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();

    let connectivity = http::send(addr, "GET", "/api/connectivity", b"", None, &[]).await;
    assert_eq!(connectivity.status, 200, "{}", connectivity.text());
    let udp = connectivity.json()["udp"].clone();
    assert_eq!(
        udp.as_array().map(Vec::len),
        Some(hub.media_addresses().len()),
        "every worker's UDP address: {udp}"
    );

    let garbage = probe(addr, b"not json").await;
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert_eq!(garbage.error_code(), "invalid_request");
    let not_sdp = probe(addr, json!({"sdp": "hello"}).to_string().as_bytes()).await;
    assert_eq!(not_sdp.status, 400, "{}", not_sdp.text());
    assert_eq!(not_sdp.error_code(), "invalid_request");

    let body = json!({ "sdp": offer() }).to_string();
    let first = probe(addr, body.as_bytes()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let answer = first.json()["sdp"].as_str().unwrap_or_default().to_owned();
    let tcp_port = hub.media_tcp_addresses()[0].port();
    assert!(
        answer.contains(" udp ")
            && answer.contains(" tcp ")
            && answer.contains(&format!("127.0.0.1 {tcp_port} typ host tcptype passive")),
        "the answer carries the UDP and the passive TCP candidates:\n{answer}"
    );

    // Eight probes alive from one address at most (the first and seven more): the ninth waits.
    for _ in 0..7 {
        let more = probe(addr, body.as_bytes()).await;
        assert_eq!(more.status, 200, "{}", more.text());
    }
    let over = probe(addr, body.as_bytes()).await;
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(over.error_code(), "rate_limited");

    hub.shutdown().await;
}
