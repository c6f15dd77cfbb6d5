//! The PostgreSQL server of a standby pair stops for 10 s during a meeting, then starts again.
//! The hub running the meeting keeps it (its partner, asked, cannot reach the database either),
//! the chair is warned, what happens meanwhile is buffered on the hub's disk in order, and
//! once the database is back every event is in the log once, in the order it happened.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/signaling.rs"]
mod signaling;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The kinds of the meeting's events in the database, in order of their numbers, and whether
/// the numbers run from 1 without a gap.
async fn logged(url: &str, meeting: i64) -> (Vec<String>, bool) {
    let rows = postgres::connect(url)
        .await
        .query(
            "SELECT seq, kind FROM events WHERE meeting_id = $1 ORDER BY seq",
            &[&meeting],
        )
        .await
        .expect("the log is read");
    let numbered = rows
        .iter()
        .enumerate()
        .all(|(i, row)| row.get::<_, i64>(0) == i as i64 + 1);
    (rows.iter().map(|row| row.get(1)).collect(), numbered)
}

/// Waits for a `log_state` message on the chair's socket that `accept` takes.
async fn log_state(chair: &mut signaling::Socket, accept: impl Fn(&Value) -> bool) -> Value {
    loop {
        let message = signaling::next_of_type(chair, "log_state").await;
        if accept(&message) {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_for_ten_seconds_loses_no_event_and_keeps_their_order() {
    let cluster = postgres::OwnCluster::start("outage");
    let url = cluster.url();
    let dir = std::env::temp_dir().join(format!("diemcau-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (standby, b) = hub_binary::spawn_on(
        &dir.join("b"),
        Some(&url),
        &["--hub-name".to_owned(), "b".to_owned()],
    );
    let _standby = hub_binary::KillOnDrop(standby);
    let (first, a) = hub_binary::spawn_on(
        &dir.join("a"),
        Some(&url),
        &[
            "--hub-name".to_owned(),
            "a".to_owned(),
            "--peer-hubs".to_owned(),
            format!("http://{b}"),
        ],
    );
    let _first = hub_binary::KillOnDrop(first);

    let m = http::meeting(
        a,
        "Hội nghị giao ban",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut chair =
        signaling::join_studio(http::organizer_ws_request(a).await, &m.studio_code, m.id).await;
    let mut thuong_lam = signaling::join(a, &m.code("2269"), Some(m.id)).await;
    let mut lam_binh = signaling::join(a, &m.code("2266"), Some(m.id)).await;
    let (before, _) = logged(&url, m.id).await;
    assert_eq!(
        before,
        [
            "meeting_started",
            "studio_joined",
            "site_joined",
            "site_joined"
        ]
    );

    cluster.stop();
    let stopped = Instant::now();
    println!("the database stopped");

    // The meeting goes on: each action is acknowledged as it would be with the database up.
    signaling::send(
        &mut thuong_lam,
        &json!({"type": "head_count", "count": 45, "confirmed_by": "Nguyễn Văn An",
            "position": "Chủ tịch UBND xã"}),
    )
    .await;
    signaling::next_of_type(&mut thuong_lam, "head_count_recorded").await;
    signaling::send(&mut lam_binh, &json!({"type": "request_floor"})).await;
    signaling::next_of_type(&mut lam_binh, "done").await;
    signaling::send(&mut chair, &json!({"type": "give_floor", "site": "2266"})).await;
    signaling::next_of_type(&mut chair, "done").await;
    let warned = log_state(&mut chair, |m| m["buffered"].as_u64() > Some(0)).await;
    assert!(warned["since"].as_i64().is_some(), "{warned}");
    println!(
        "the chair warned {:?} after the stop: {warned}",
        stopped.elapsed()
    );
    let health = http::send(a, "GET", "/api/health", b"", None, &[])
        .await
        .json();
    assert_eq!(health["database"], "unreachable", "{health}");
    assert!(
        health["log_buffered"]["events"].as_u64() >= Some(3),
        "{health}"
    );
    signaling::send(
        &mut chair,
        &json!({"type": "mute", "site": "2269", "muted": true}),
    )
    .await;
    signaling::next_of_type(&mut chair, "done").await;
    drop(lam_binh);
    // A join needs its code checked in the database: refused for now, to be tried again.
    let mut again = signaling::connect(format!("ws://{a}/ws")).await;
    signaling::send(
        &mut again,
        &json!({"type": "join", "code": m.code("2266"), "meeting": m.id}),
    )
    .await;
    let refused = signaling::next_of_type(&mut again, "error").await;
    assert_eq!(refused["code"], "internal", "{refused}");
    assert_eq!(refused["retry"], true, "{refused}");
    drop(again);

    // Past a lease's time: the hub kept its meeting (its partner cannot reach the database
    // either), and its sites are still joined.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    signaling::send(
        &mut chair,
        &json!({"type": "mute", "site": "2269", "muted": false}),
    )
    .await;
    signaling::next_of_type(&mut chair, "done").await;
    let muted = signaling::next_of_type(&mut thuong_lam, "muted").await;
    assert_eq!(muted["muted"], true, "{muted}");
    let unmuted = signaling::next_of_type(&mut thuong_lam, "muted").await;
    assert_eq!(
        unmuted["muted"], false,
        "Thượng Lâm still joined: {unmuted}"
    );

    cluster.resume();
    println!("the database back after {:?}", stopped.elapsed());
    let cleared = tokio::time::timeout(
        Duration::from_secs(15),
        log_state(&mut chair, |m| m["buffered"] == 0),
    )
    .await
    .expect("the chair told that the log is written again");
    assert!(cleared.get("since").is_none(), "{cleared}");
    let health = http::send(a, "GET", "/api/health", b"", None, &[])
        .await
        .json();
    assert_eq!(health["database"], "ok", "{health}");
    assert!(health.get("log_buffered").is_none(), "{health}");
    assert_eq!(health["meetings_held"], json!([m.id]), "{health}");

    let (after, numbered) = logged(&url, m.id).await;
    assert!(numbered, "numbered from 1 without a gap: {after:?}");
    let outage: Vec<&str> = after[before.len()..]
        .iter()
        .map(String::as_str)
        .filter(|kind| *kind != "quality_sample" && *kind != "media_changed")
        .collect();
    assert_eq!(
        outage,
        [
            "head_count",
            "floor_requested",
            "floor_given",
            "site_muted",
            "floor_returned",
            "site_left",
            "site_muted"
        ],
        "every event of the outage once, in order: {after:?}"
    );
    // The buffer is gone from the hub's disk.
    let left: Vec<_> = std::fs::read_dir(dir.join("a").join("log-buffer"))
        .expect("the buffer's directory")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hub is killed while the database is stopped, with events in its buffer; the database
/// comes back and the hub is started again: the buffered events are in the log once, before
/// the closing of the sessions the kill cut off, and the buffer is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_buffered_by_a_hub_killed_during_an_outage_are_written_at_its_restart() {
    let cluster = postgres::OwnCluster::start("outage-kill");
    let url = cluster.url();
    let dir = std::env::temp_dir().join(format!("diemcau-outage-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let name = ["--hub-name".to_owned(), "a".to_owned()];
    let (hub, a) = hub_binary::spawn_on(&dir, Some(&url), &name);
    let mut hub = hub_binary::KillOnDrop(hub);
    let m = http::meeting(
        a,
        "Hội nghị giao ban",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut thuong_lam = signaling::join(a, &m.code("2269"), Some(m.id)).await;
    let lam_binh = signaling::join(a, &m.code("2266"), Some(m.id)).await;

    cluster.stop();
    signaling::send(
        &mut thuong_lam,
        &json!({"type": "head_count", "count": 45, "confirmed_by": "Nguyễn Văn An",
            "position": "Chủ tịch UBND xã"}),
    )
    .await;
    signaling::next_of_type(&mut thuong_lam, "head_count_recorded").await;
    // Lâm Bình leaves during the outage: its leave waits in the buffer too.
    drop(lam_binh);
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.0.kill().expect("SIGKILL");
    hub.0.wait().expect("the hub is gone");
    drop(thuong_lam);
    let buffer = dir.join("log-buffer");
    assert_eq!(
        std::fs::read_dir(&buffer).expect("the buffer").count(),
        1,
        "one file of the outage"
    );

    cluster.resume();
    let (again, _) = hub_binary::spawn_on(&dir, Some(&url), &name);
    let _again = hub_binary::KillOnDrop(again);
    let (events, numbered) = logged(&url, m.id).await;
    assert!(numbered, "{events:?}");
    let after_joins: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|kind| *kind != "quality_sample" && *kind != "media_changed")
        .collect();
    assert_eq!(
        after_joins,
        [
            "meeting_started",
            "site_joined",
            "site_joined",
            "head_count",
            "site_left",
            "site_left",
            "hub_restarted"
        ],
        "the outage's events once, then Thượng Lâm closed by the restart: {events:?}"
    );
    assert_eq!(std::fs::read_dir(&buffer).expect("the buffer").count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
