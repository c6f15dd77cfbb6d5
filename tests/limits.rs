//! Limits: a flooding connection is answered `rate_limited` and then closed, too many
//! connections from one address are refused, a silent session is closed with `timeout`, and
//! the metrics endpoint answers.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn replies(ws: &mut Socket, wait: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(wait, ws.next()).await {
        if let Message::Text(text) = frame {
            out.push(serde_json::from_str(text.as_str()).expect("JSON"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_with_clear_errors() {
    let mut config = diemcau::Config::for_tests();
    config.max_messages_per_second = 10;
    config.max_connections_per_address = 3;
    config.idle_timeout_seconds = 1;
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let url = format!("ws://{addr}/ws");

    // Flooding: of 50 pings at once, a burst of 30 is served; the rest is refused one by one.
    let (mut flood, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    for _ in 0..50 {
        flood
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .expect("send");
    }
    let got = replies(&mut flood, Duration::from_millis(500)).await;
    let pongs = got.iter().filter(|m| m["type"] == "pong").count();
    let limited = got.iter().filter(|m| m["code"] == "rate_limited").count();
    assert!(
        pongs >= 30 && limited >= 15,
        "{pongs} pongs, {limited} refusals"
    );

    // Too many connections from one address: the fourth is refused.
    let (_second, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("second");
    let (_third, _) = tokio_tungstenite::connect_async(&url).await.expect("third");
    let fourth = tokio_tungstenite::connect_async(&url).await;
    let refused = fourth.expect_err("a fourth connection from the same address is refused");
    assert!(refused.to_string().contains("429"), "{refused}");

    // A silent session is closed with `timeout` (the flooding one has been silent since).
    let after = replies(&mut flood, Duration::from_secs(3)).await;
    assert!(after.iter().any(|m| m["code"] == "timeout"), "{after:?}");
    // Its slot is free again, once the hub has let go of it; a connection that keeps flooding
    // there is closed.
    let mut storm = wait::until_some(
        "a slot freed by the closed session",
        Duration::from_secs(5),
        || async { tokio_tungstenite::connect_async(&url).await.ok() },
    )
    .await
    .0;
    for _ in 0..120 {
        if storm
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let got = replies(&mut storm, Duration::from_millis(500)).await;
    assert!(
        got.iter()
            .any(|m| m["message"].as_str().is_some_and(|t| t.contains("closed"))),
        "the flooding session is closed: {:?}",
        got.last()
    );

    let metrics = http::get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "diemcau_participants",
        "diemcau_sites_connected",
        "diemcau_packets_forwarded_total",
        "diemcau_handshake_failures_total",
        "diemcau_peers_failed_total",
        "diemcau_cpu_microseconds_per_forwarded_packet",
        "process_cpu_seconds_total",
        "diemcau_media_overloaded",
        "diemcau_media_worker_busy_ratio",
        "diemcau_media_worker_shed_level",
        "diemcau_socket_drops_total",
        "diemcau_rtcp_shed_total",
        "diemcau_datagrams_sent_total",
        "diemcau_datagram_messages_sent_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    // A hub this idle is within its capacity, and says so for each worker.
    assert!(text.contains("\ndiemcau_media_overloaded 0\n"), "{text}");
    assert!(
        text.contains("diemcau_media_worker_shed_level{worker=\"0\"} 0\n"),
        "{text}"
    );
    // Nor has it been behind its socket.
    assert!(text.contains("\ndiemcau_rtcp_shed_total 0\n"), "{text}");
    hub.shutdown().await;
}
