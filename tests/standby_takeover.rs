//! Two hub processes share one PostgreSQL database (a province's standby pair). A meeting runs
//! on the first, with the studio and two communes, the floor given and a roll call open; the
//! first is killed with SIGKILL. Every participant is back through the second within 10 s,
//! the floor holder and the roll call are as they were, and the report shows each commune's
//! interruption and the takeover, with no event lost or doubled.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/signaling.rs"]
mod signaling;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signaling::Socket;

/// Joins the meeting on `addr`, again and again while another hub holds it (`other_hub`),
/// until `deadline`. Returns the socket and the messages that came with the join.
async fn join_when_free(
    request: impl Fn() -> tokio_tungstenite::tungstenite::http::Request<()>,
    code: &str,
    meeting: i64,
    deadline: Instant,
) -> (Socket, Vec<Value>) {
    let mut refusals = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "joined through the standby hub in time ({refusals} refusals)"
        );
        let mut socket = signaling::connect(request()).await;
        signaling::send(
            &mut socket,
            &json!({"type": "join", "code": code, "meeting": meeting}),
        )
        .await;
        let mut seen = Vec::new();
        loop {
            let message = signaling::next_message(&mut socket).await;
            match message["type"].as_str() {
                Some("joined") => {
                    // What a newcomer is told at once comes right after.
                    let until = tokio::time::Instant::now() + Duration::from_millis(700);
                    loop {
                        let left = until.saturating_duration_since(tokio::time::Instant::now());
                        match signaling::next_message_within(&mut socket, left).await {
                            Some(more) if !left.is_zero() => seen.push(more),
                            _ => return (socket, seen),
                        }
                    }
                }
                Some("error") => {
                    assert_eq!(message["code"], "other_hub", "{message}");
                    assert_eq!(message["retry"], true);
                    refusals += 1;
                    break;
                }
                _ => seen.push(message),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn plain(addr: SocketAddr) -> impl Fn() -> tokio_tungstenite::tungstenite::http::Request<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    move || {
        format!("ws://{addr}/ws")
            .into_client_request()
            .expect("a request")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_hub_takes_a_meeting_over_with_its_floor_and_roll_call() {
    let database = postgres::fresh_database("takeover").await;
    let dir = std::env::temp_dir().join(format!("diemcau-takeover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let name = |hub: &str| vec!["--hub-name".to_owned(), hub.to_owned()];
    let (first, a) = hub_binary::spawn_on(&dir.join("a"), Some(&database), &name("a"));
    let mut first = hub_binary::KillOnDrop(first);
    let (second, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &name("b"));
    let second = hub_binary::KillOnDrop(second);

    // Made on the standby's pages: both hubs serve the same meetings.
    let m = http::meeting(
        b,
        "Hội nghị dự phòng",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut studio = signaling::connect(http::organizer_ws_request(a).await).await;
    signaling::send(
        &mut studio,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    assert_eq!(signaling::next_reply(&mut studio).await["type"], "joined");
    let thuong_lam = signaling::join(a, &m.code("2269"), Some(m.id)).await;
    let mut lam_binh = signaling::join(a, &m.code("2266"), Some(m.id)).await;
    // The first hub runs it now: the standby sends a late-comer there.
    let mut early = signaling::connect(format!("ws://{b}/ws")).await;
    signaling::send(
        &mut early,
        &json!({"type": "join", "code": m.code("2266"), "meeting": m.id}),
    )
    .await;
    let refused = signaling::next_of_type(&mut early, "error").await;
    assert_eq!(refused["code"], "other_hub", "{refused}");
    assert_eq!(refused["hub"], format!("http://{a}"), "{refused}");
    drop(early);

    signaling::send(&mut studio, &json!({"type": "give_floor", "site": "2269"})).await;
    signaling::next_of_type(&mut studio, "done").await;
    signaling::send(&mut studio, &json!({"type": "record", "on": true})).await;
    let recording = signaling::next_of_type(&mut studio, "recording").await;
    assert_eq!(recording["recording"], true, "{recording}");
    signaling::send(&mut studio, &json!({"type": "start_roll_call"})).await;
    let roll_call = signaling::next_of_type(&mut lam_binh, "roll_call").await;
    let number = roll_call["roll_call"].as_i64().expect("a number");
    signaling::send(
        &mut lam_binh,
        &json!({"type": "answer_roll_call", "roll_call": number, "count": 31,
            "confirmed_by": "Ma Thị Hoa", "position": "Phó Chủ tịch UBND xã"}),
    )
    .await;
    signaling::next_of_type(&mut lam_binh, "roll_call_answer_recorded").await;

    // Everything above is acknowledged. Kill the first hub without warning.
    let killed = Instant::now();
    let killed_at = diemcau::store::now_millis();
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("the first hub is gone");
    drop((studio, thuong_lam, lam_binh));

    let deadline = killed + Duration::from_secs(10);
    let studio_request = http::organizer_ws_request(b).await;
    let (mut studio, studio_seen) = join_when_free(
        move || studio_request.clone(),
        &m.studio_code,
        m.id,
        deadline,
    )
    .await;
    let (_thuong_lam, _) = join_when_free(plain(b), &m.code("2269"), m.id, deadline).await;
    let (_lam_binh, lam_binh_seen) =
        join_when_free(plain(b), &m.code("2266"), m.id, deadline).await;
    let back_after = killed.elapsed();
    println!("every participant back through the standby {back_after:?} after the kill");
    assert!(back_after < Duration::from_secs(10), "{back_after:?}");

    // The roll call runs on, with Lâm Bình's answer; Thượng Lâm holds the floor again.
    assert!(
        lam_binh_seen
            .iter()
            .any(|v| v["type"] == "roll_call" && v["roll_call"] == number && v["active"] == true),
        "the roll call is still open: {lam_binh_seen:?}"
    );
    let floor = lam_binh_seen
        .iter()
        .rev()
        .find(|v| v["type"] == "floor")
        .cloned()
        .expect("the floor, told at the join");
    assert_eq!(floor["holder"]["site"], "2269", "{floor}");
    assert_ne!(
        floor["holder"]["participant"], "",
        "held by the site back: {floor}"
    );
    let console = match studio_seen.iter().rev().find(|v| v["type"] == "console") {
        Some(console) => console.clone(),
        None => signaling::next_of_type(&mut studio, "console").await,
    };
    assert_eq!(console["roll_call"], number, "{console}");
    let row = console["sites"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["site"] == "2266")
        .cloned()
        .expect("Lâm Bình's row");
    assert_eq!(row["answered_roll_call"], true, "{row}");

    // The report, from the standby: one interruption each, the takeover, nothing doubled.
    signaling::send(&mut studio, &json!({"type": "end_roll_call"})).await;
    signaling::next_of_type(&mut studio, "done").await;
    let ended = http::post(b, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    let report = http::get(b, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let events = report["events"].as_array().expect("events");
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gap, no double"
    );
    let takeovers: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "hub_takeover")
        .collect();
    assert_eq!(takeovers.len(), 1, "{events:?}");
    assert_eq!(takeovers[0]["from"], "a");
    assert_eq!(takeovers[0]["to"], "b");
    let down_since = takeovers[0]["down_since"].as_i64().expect("down_since");
    assert!(
        down_since <= killed_at && killed_at - down_since < 7_000,
        "{down_since}"
    );
    let mut sessions_left = HashSet::new();
    for leave in events
        .iter()
        .filter(|e| e["kind"] == "site_left" || e["kind"] == "studio_left")
    {
        let session = leave["session"].as_str().expect("session").to_owned();
        assert!(
            sessions_left.insert(session),
            "one leave per session: {events:?}"
        );
    }
    let cut: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "hub_crash")
        .collect();
    assert_eq!(
        cut.len(),
        3,
        "the studio's and both sites' sessions cut off: {events:?}"
    );
    for code in ["2269", "2266"] {
        let row = report["sites"]
            .as_array()
            .expect("sites")
            .iter()
            .find(|r| r["code"] == code)
            .expect("a row");
        assert_eq!(row["interruptions"], 1, "{row}");
        assert_eq!(row["attendance_rows"], 1, "back within the grace: {row}");
    }
    // The part the kill cut off ends at the takeover (its file lies on the first hub); the
    // standby records on in a part of its own, to the meeting's end.
    let parts = report["recordings"].as_array().expect("recordings");
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["reason"], "hub_stopped", "{parts:?}");
    assert!(
        parts[0]["stopped_at"].as_i64().unwrap_or(0) <= killed_at,
        "{parts:?}"
    );
    assert_eq!(parts[1]["reason"], "meeting_ended", "{parts:?}");
    let answered = events
        .iter()
        .filter(|e| e["kind"] == "roll_call_answered" && e["site"] == "2266")
        .count();
    assert_eq!(
        answered, 1,
        "the answer given before the takeover stands, once"
    );

    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sites reach both hubs at once for a meeting neither runs yet: the database gives it to one
/// hub, which every site ends up joined to, and the other sends its sites there. The hubs
/// never talk to each other, so whether they reach each other changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_racing_through_both_hubs_find_one_owner() {
    let database = postgres::fresh_database("race").await;
    let dir = std::env::temp_dir().join(format!("diemcau-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let name = |hub: &str| vec!["--hub-name".to_owned(), hub.to_owned()];
    let (first, a) = hub_binary::spawn_on(&dir.join("a"), Some(&database), &name("a"));
    let _first = hub_binary::KillOnDrop(first);
    let (second, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &name("b"));
    let _second = hub_binary::KillOnDrop(second);
    let sites: Vec<(String, String)> = (0..6)
        .map(|i| (format!("{}", 2260 + i), format!("Xã {i}")))
        .collect();
    let roster: Vec<(&str, &str)> = sites
        .iter()
        .map(|(c, n)| (c.as_str(), n.as_str()))
        .collect();
    let m = http::meeting(a, "Hội nghị hai máy chủ", &roster, true).await;

    let attempts = sites.iter().enumerate().map(|(i, (code, _))| {
        let hub = if i % 2 == 0 { a } else { b };
        let code = m.code(code);
        async move {
            let mut socket = signaling::connect(format!("ws://{hub}/ws")).await;
            signaling::send(
                &mut socket,
                &json!({"type": "join", "code": code, "meeting": m.id}),
            )
            .await;
            let reply = signaling::next_reply(&mut socket).await;
            (hub, reply, socket)
        }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let mut owners = HashSet::new();
    let mut sent_on = HashSet::new();
    for (hub, reply, _socket) in &replies {
        match reply["type"].as_str() {
            Some("joined") => {
                owners.insert(*hub);
            }
            Some("error") => {
                assert_eq!(reply["code"], "other_hub", "{reply}");
                sent_on.insert(reply["hub"].as_str().expect("the owner named").to_owned());
            }
            _ => panic!("{reply}"),
        }
    }
    let said: Vec<&Value> = replies.iter().map(|(_, reply, _)| reply).collect();
    assert_eq!(owners.len(), 1, "one hub runs the meeting: {said:?}");
    let owner = *owners.iter().next().expect("an owner");
    for named in &sent_on {
        assert_eq!(*named, format!("http://{owner}"), "sent to the owner");
    }
    // As the database and each hub say.
    let held = postgres::query_i64(
        &database,
        &format!(
            "SELECT COUNT(*) FROM meeting_leases WHERE meeting_id = {}",
            m.id
        ),
    )
    .await;
    assert_eq!(held, 1);
    let runs_it = |hub: SocketAddr| async move {
        let health = http::get(hub, "/api/health").await.json();
        health["meetings_held"]
            .as_array()
            .expect("meetings_held")
            .contains(&json!(m.id))
    };
    assert_eq!(
        (runs_it(a).await, runs_it(b).await),
        (owner == a, owner == b)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
