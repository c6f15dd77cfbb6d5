//! A site whose connection is cut for 10 seconds and restored is back in the same attendance
//! row: the report shows one row with one interruption, not a new row.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;

use std::time::Duration;

use serde_json::{Value, json};

/// How long the site is cut off: the outage the report must show.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_cut_off_for_ten_seconds_keeps_its_attendance_row() {
    let (hub, m) = http::hub_with_meeting("Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let addr = hub.http_addr();
    let report_path = format!("/api/meetings/{}/report", m.id);
    let ws = signaling::join(addr, &m.code("2269"), None).await;

    // The network drops: the connection vanishes without a close frame.
    let cut_at = tokio::time::Instant::now();
    drop(ws.into_inner());
    let first_reason = |report: &Value| report["sessions"][0]["reason"].clone();
    wait::until_some(
        "the hub to record the drop",
        signaling::REPLY_TIMEOUT,
        || async {
            let report = http::get(addr, &report_path).await.json();
            (first_reason(&report) == "network_timeout").then_some(())
        },
    )
    .await;
    // The length of the outage is what this test is about: the site stays away for it.
    tokio::time::sleep_until(cut_at + OUTAGE).await;

    // The page reconnects with its link, and leaves.
    let mut back = signaling::join(addr, &m.code("2269"), None).await;
    signaling::send(&mut back, &json!({"type": "leave"})).await;
    signaling::next_of_type(&mut back, "left").await;

    let report = http::get(addr, &report_path).await.json();
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
    assert_eq!(first_reason(&report), "network_timeout");
    assert_eq!(
        sessions[1]["reconnected"], true,
        "the return continues the row"
    );
    hub.shutdown().await;
}
