//! The real hub binary is killed with SIGKILL in the middle of a meeting and started again on
//! the same data directory: no acknowledged event is missing, the sessions the crash cut off
//! are closed at their last sign of life, the meeting goes on, and the report shows the gap.
//! Once with the data in SQLite, once in PostgreSQL.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/signaling.rs"]
mod signaling;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use signaling::Socket;

struct Site {
    socket: Socket,
}

impl Site {
    async fn join(addr: SocketAddr, meeting: i64, code: &str) -> Site {
        Site {
            socket: signaling::join(addr, code, Some(meeting)).await,
        }
    }

    async fn request(&mut self, message: Value) -> Value {
        signaling::send(&mut self.socket, &message).await;
        loop {
            let value = signaling::next_message(&mut self.socket).await;
            // Skip what the hub sends every participant; keep the reply.
            let broadcast = [
                "participant_joined",
                "participant_left",
                "floor",
                "media_state",
            ];
            if !broadcast.iter().any(|t| value["type"] == *t) {
                return value;
            }
        }
    }
}

/// How many site sessions the hub has noted alive at `since` or later. Read from the database
/// as the restarted hub will, since the liveness notes are not shown anywhere else.
async fn sessions_alive_since(data_dir: &Path, database: Option<&str>, since: i64) -> i64 {
    if let Some(url) = database {
        return postgres::query_i64(
            url,
            &format!("SELECT COUNT(*) FROM liveness WHERE last_seen >= {since}"),
        )
        .await;
    }
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join(diemcau::store::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the hub's database opens");
    db.query_row(
        "SELECT COUNT(*) FROM liveness WHERE last_seen >= ?1",
        [since],
        |row| row.get(0),
    )
    .expect("the liveness notes read")
}

fn events_of(report: &Value) -> Vec<Value> {
    report["events"].as_array().expect("events").clone()
}

fn site_row<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|r| r["code"] == code)
        .expect("row of the site")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_and_the_report_shows_the_gap() {
    survives_sigkill("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_with_the_data_in_postgresql() {
    let database = postgres::fresh_database("crash").await;
    survives_sigkill("postgres", Some(&database)).await;
}

async fn survives_sigkill(name: &str, database: Option<&str>) {
    let data = std::env::temp_dir().join(format!("diemcau-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (hub, addr) = hub_binary::spawn_on(&data, database, &[]);
    let mut hub = hub_binary::KillOnDrop(hub);

    let m = http::meeting(
        addr,
        "Hội nghị kiểm tra sự cố",
        &[
            ("2269", "Xã Thượng Lâm"),
            ("2266", "Xã Lâm Bình"),
            ("2302", "Xã Minh Quang"),
        ],
        true,
    )
    .await;
    // The studio chairs with an organizer's login; its session is in the log like the sites'.
    let mut studio = signaling::connect(http::organizer_ws_request(addr).await).await;
    signaling::send(
        &mut studio,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    assert_eq!(signaling::next_reply(&mut studio).await["type"], "joined");
    let mut thuong_lam = Site::join(addr, m.id, &m.code("2269")).await;
    let _lam_binh = Site::join(addr, m.id, &m.code("2266")).await;
    let recorded = thuong_lam
        .request(json!({"type": "head_count", "count": 48,
            "confirmed_by": "Hoàng Văn Đức", "position": "Chủ tịch UBND xã"}))
        .await;
    assert_eq!(recorded["type"], "head_count_recorded", "{recorded}");

    // Everything above was acknowledged. Let the hub note the three sessions alive once more,
    // then kill it without warning.
    let acknowledged_at = diemcau::store::now_millis();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sessions_alive_since(&data, database, acknowledged_at).await != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hub notes the studio and both sites alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let acknowledged = events_of(&before);
    let kinds: Vec<&str> = acknowledged
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "meeting_started",
            "studio_joined",
            "site_joined",
            "site_joined",
            "head_count"
        ],
        "{acknowledged:?}"
    );
    let killed_at = diemcau::store::now_millis();
    hub.0.kill().expect("SIGKILL");
    hub.0.wait().expect("the hub is gone");
    drop(thuong_lam);
    drop(studio);

    // Restart on the same data.
    let (hub, addr) = hub_binary::spawn_on(&data, database, &[]);
    let hub = hub_binary::KillOnDrop(hub);
    let after = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let events = events_of(&after);
    assert_eq!(
        &events[..acknowledged.len()],
        &acknowledged[..],
        "acknowledged events intact"
    );
    let crash_leaves: Vec<&Value> = events
        .iter()
        .filter(|e| {
            (e["kind"] == "site_left" || e["kind"] == "studio_left") && e["reason"] == "hub_crash"
        })
        .collect();
    assert_eq!(
        crash_leaves.len(),
        3,
        "the studio's and both sites' open sessions closed: {events:?}"
    );
    // The hub's own downtime is in the meeting's record, from its last sign of life.
    let restarted = events
        .iter()
        .find(|e| e["kind"] == "hub_restarted")
        .unwrap_or_else(|| panic!("the restart is recorded: {events:?}"));
    let down_since = restarted["down_since"].as_i64().expect("down_since");
    assert!(
        down_since >= acknowledged_at && down_since <= killed_at,
        "down since its last sign of life: {down_since}, killed at {killed_at}"
    );
    assert!(restarted["at"].as_i64().expect("at") >= killed_at);
    for leave in &crash_leaves {
        let at = leave["at"].as_i64().expect("at");
        let recorded_at = leave["recorded_at"].as_i64().expect("recorded_at");
        assert!(
            at <= killed_at,
            "closed at the last sign of life, not later"
        );
        assert!(
            killed_at - at < 7_000,
            "the last sign of life is recent: {} ms",
            killed_at - at
        );
        assert!(recorded_at >= killed_at, "written after the restart");
    }
    assert_eq!(after["summary"]["in_progress"], true, "the meeting goes on");

    // Thượng Lâm comes back within the grace period: same attendance row, one interruption.
    let mut thuong_lam = Site::join(addr, m.id, &m.code("2269")).await;
    let left = thuong_lam.request(json!({"type": "leave"})).await;
    assert_eq!(left["type"], "left");
    let ended = http::post(addr, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());

    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let tl = site_row(&report, "2269");
    assert_eq!(tl["interruptions"], 1, "{tl}");
    assert_eq!(tl["attendance_rows"], 1, "back within the grace: {tl}");
    assert!(tl["longest_outage_minutes"].as_f64().expect("minutes") >= 0.0);
    assert_eq!(tl["head_count"]["count"], 48);
    assert_eq!(tl["head_count"]["confirmed_by"], "Hoàng Văn Đức");
    let reconnected = report["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["site"] == "2269" && s["reconnected"] == true)
        .count();
    assert_eq!(reconnected, 1, "the return continues the row");
    let lb = site_row(&report, "2266");
    assert_eq!(lb["interruptions"], 0);
    assert!(lb["last_leave"].as_i64().expect("left at the crash") <= killed_at);
    assert_eq!(site_row(&report, "2302")["status"], "absent");
    assert_eq!(report["summary"]["sites_joined"], 2);
    assert_eq!(report["summary"]["delegates_declared"], 48);

    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}
