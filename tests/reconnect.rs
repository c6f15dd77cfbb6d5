//! A site whose connection is cut for 10 seconds and restored is back in the same attendance
//! row: the report shows one row with one interruption, not a new row.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use std::time::Duration;

use serde_json::json;
use signaling::Socket;

/// Opens `/ws` and joins with `code`; panics on an error before `joined`.
async fn join(addr: std::net::SocketAddr, code: &str) -> Socket {
    let mut socket = signaling::connect(format!("ws://{addr}/ws")).await;
    signaling::send(&mut socket, &json!({"type": "join", "code": code})).await;
    loop {
        let message = signaling::next_message(&mut socket).await;
        if message["type"] == "joined" {
            return socket;
        }
        assert_ne!(message["type"], "error", "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_cut_off_for_ten_seconds_keeps_its_attendance_row() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let ws = join(addr, &m.code("2269")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The network drops: the connection vanishes without a close frame.
    let tcp = ws.into_inner();
    drop(tcp);
    tokio::time::sleep(Duration::from_secs(10)).await;

    // The page reconnects with its link.
    let mut back = join(addr, &m.code("2269")).await;
    signaling::send(&mut back, &json!({"type": "leave"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let row = &report["sites"][0];
    assert_eq!(row["attendance_rows"], 1, "{row}");
    assert_eq!(row["interruptions"], 1, "{row}");
    let outage = row["longest_outage_minutes"].as_f64().expect("outage");
    assert!(
        (0.1..=0.3).contains(&outage),
        "a 10-second outage: {outage} min"
    );
    let sessions = report["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["reason"], "network_timeout");
    assert_eq!(
        sessions[1]["reconnected"], true,
        "the return continues the row"
    );
    hub.shutdown().await;
}
