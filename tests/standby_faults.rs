//! Two hubs share one PostgreSQL database; a meeting runs on the first. What an organizer does
//! on the second hub's pages reaches the first through the database (`NOTIFY`): a reissued
//! code ends the session joined with the old one, and ending the meeting there ends it where
//! it runs. Two hubs that cannot reach each other (each given a partner address that does not
//! answer) but both reach the database never run one meeting together. And the hub running
//! the meeting cut from the database while its partner reaches it hands the meeting over
//! before its lease runs out, and the sites go on through the partner.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cut_proxy.rs"]
mod cut_proxy;
#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/signaling.rs"]
mod signaling;

use std::time::{Duration, Instant};

use serde_json::json;

fn named(hub: &str) -> Vec<String> {
    vec!["--hub-name".to_owned(), hub.to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_hubs_pages_reissue_a_code_and_end_the_meeting_where_it_runs() {
    let database = postgres::fresh_database("signals").await;
    let dir = std::env::temp_dir().join(format!("diemcau-signals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (first, a) = hub_binary::spawn_on(&dir.join("a"), Some(&database), &named("a"));
    let _first = hub_binary::KillOnDrop(first);
    let (second, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &named("b"));
    let _second = hub_binary::KillOnDrop(second);

    let m = http::meeting(
        a,
        "Hội nghị hai máy chủ",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut chair =
        signaling::join_studio(http::organizer_ws_request(a).await, &m.studio_code, m.id).await;
    let mut thuong_lam = signaling::join(a, &m.code("2269"), Some(m.id)).await;
    let mut lam_binh = signaling::join(a, &m.code("2266"), Some(m.id)).await;

    // The second hub's pages say where the meeting runs.
    let listed = http::get(b, "/api/meetings").await.json();
    let listed = listed
        .as_array()
        .expect("meetings")
        .iter()
        .find(|v| v["id"] == m.id)
        .cloned()
        .expect("the meeting listed");
    assert_eq!(listed["running_on"]["hub"], "a", "{listed}");
    assert_eq!(
        listed["running_on"]["address"],
        format!("http://{a}"),
        "{listed}"
    );

    // The code of Thượng Lâm, reissued on the second hub: its session on the first ends.
    let reissued = http::post(
        b,
        &format!("/api/meetings/{}/sites/2269/reissue", m.id),
        b"",
    )
    .await;
    assert_eq!(reissued.status, 200, "{}", reissued.text());
    let error = signaling::closing_error(&mut thuong_lam).await;
    assert_eq!(error["code"], "code_revoked", "{error}");
    let new = reissued.json()["code"]
        .as_str()
        .expect("the new code")
        .to_owned();
    let _thuong_lam = signaling::join(a, &new, Some(m.id)).await;

    // Ended from the second hub's pages: the meeting ends on the first, its sessions with it.
    let ended = http::post(b, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    assert_eq!(ended.json()["state"], "ended", "{}", ended.text());
    assert!(
        ended.json().get("running_on").is_none(),
        "an ended meeting runs nowhere: {}",
        ended.text()
    );
    for socket in [&mut chair, &mut lam_binh] {
        let error = signaling::closing_error(socket).await;
        assert_eq!(error["code"], "meeting_ended", "{error}");
    }
    let report = http::get(a, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let kinds: Vec<&str> = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "meeting_ended").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "site_left").count(),
        3,
        "the revoked session, then both sites at the end: {kinds:?}"
    );
    let left = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "site_left" && e["site"] == "2269")
        .cloned()
        .expect("the old session of Thượng Lâm left");
    assert_eq!(left["reason"], "removed", "{left}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Both hubs reach the database but not each other (their partner addresses answer nothing):
/// sites joining through both, again and again, always find one hub running the meeting, the
/// one the database names; the other sends them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_cut_from_each_other_never_run_one_meeting_together() {
    let database = postgres::fresh_database("partition").await;
    let dir = std::env::temp_dir().join(format!("diemcau-partition-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A partner address nobody answers at: a port just closed.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port");
    let cut = |hub: &str| {
        let mut args = named(hub);
        args.extend(["--peer-hubs".to_owned(), format!("http://{nowhere}")]);
        args
    };
    let (first, a) = hub_binary::spawn_on(&dir.join("a"), Some(&database), &cut("a"));
    let _first = hub_binary::KillOnDrop(first);
    let (second, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &cut("b"));
    let _second = hub_binary::KillOnDrop(second);
    let m = http::meeting(
        a,
        "Hội nghị tách mạng",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;

    let mut joined = Vec::new();
    for round in 0..6 {
        // Both sites at once, each through another hub.
        let (hub_1, hub_2) = if round % 2 == 0 { (a, b) } else { (b, a) };
        let tries = [(hub_1, "2269"), (hub_2, "2266")].map(|(hub, site)| {
            let code = m.code(site);
            let meeting = m.id;
            tokio::spawn(async move {
                let mut socket = signaling::connect(format!("ws://{hub}/ws")).await;
                signaling::send(
                    &mut socket,
                    &json!({"type": "join", "code": code, "meeting": meeting}),
                )
                .await;
                let reply = signaling::next_reply(&mut socket).await;
                (hub, reply, socket)
            })
        });
        let mut running_on = Vec::new();
        for attempt in tries {
            let (hub, reply, socket) = attempt.await.expect("a join");
            match reply["type"].as_str() {
                Some("joined") => {
                    running_on.push(hub);
                    joined.push(socket);
                }
                Some("error") => {
                    assert_eq!(reply["code"], "other_hub", "{reply}");
                    let other = if hub == a { b } else { a };
                    assert_eq!(reply["hub"], format!("http://{other}"), "{reply}");
                }
                _ => panic!("{reply}"),
            }
        }
        running_on.dedup();
        assert!(running_on.len() <= 1, "one hub at a time: {running_on:?}");
        let owner = postgres::connect(&database)
            .await
            .query_opt(
                "SELECT owner FROM meeting_leases WHERE meeting_id = $1",
                &[&m.id],
            )
            .await
            .expect("the lease read")
            .map(|row| row.get::<_, String>(0));
        let expected = running_on
            .first()
            .map(|hub| if *hub == a { "a" } else { "b" });
        if let Some(expected) = expected {
            assert_eq!(
                owner.as_deref(),
                Some(expected),
                "the database names the hub"
            );
        }
        let health_a = http::send(a, "GET", "/api/health", b"", None, &[])
            .await
            .json();
        let health_b = http::send(b, "GET", "/api/health", b"", None, &[])
            .await
            .json();
        let holding = [&health_a, &health_b]
            .iter()
            .filter(|h| h["meetings_held"].as_array().is_some_and(|m| !m.is_empty()))
            .count();
        assert!(holding <= 1, "{health_a} {health_b}");
        joined.clear();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hub running a meeting loses the database (its own path to it is cut) while its
/// partner still reaches it: it asks the partner, hands the meeting over before its lease can
/// run out (its sites told `other_hub`), and the sites join through the partner, which takes
/// the meeting once the lease has run out. Never two owners meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_cut_from_the_database_hands_its_meeting_to_the_partner_that_reaches_it() {
    let database = postgres::fresh_database("cutoff").await;
    let server: std::net::SocketAddr = database
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("the cluster's address");
    let proxy = cut_proxy::CutProxy::start(server).await;
    let through_proxy = database.replacen(&server.to_string(), &proxy.addr.to_string(), 1);
    let dir = std::env::temp_dir().join(format!("diemcau-cutoff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (second, b) = hub_binary::spawn_on(&dir.join("b"), Some(&database), &named("b"));
    let _second = hub_binary::KillOnDrop(second);
    let mut args = named("a");
    args.extend(["--peer-hubs".to_owned(), format!("http://{b}")]);
    let (first, a) = hub_binary::spawn_on(&dir.join("a"), Some(&through_proxy), &args);
    let _first = hub_binary::KillOnDrop(first);
    let m = http::meeting(a, "Hội nghị mất CSDL", &[("2269", "Xã Thượng Lâm")], true).await;
    let mut site = signaling::join(a, &m.code("2269"), Some(m.id)).await;

    proxy.cut();
    let cut = Instant::now();
    let error = signaling::closing_error(&mut site).await;
    assert_eq!(error["code"], "other_hub", "{error}");
    let handed_over = cut.elapsed();
    println!("handed over {handed_over:?} after the cut");
    assert!(
        handed_over < Duration::from_millis(5_000),
        "before the lease ran out: {handed_over:?}"
    );
    let health = http::send(a, "GET", "/api/health", b"", None, &[])
        .await
        .json();
    assert_eq!(health["meetings_held"], json!([]), "{health}");

    // Through the partner, once the lease has run out.
    let joined = loop {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "joined through the partner"
        );
        let mut socket = signaling::connect(format!("ws://{b}/ws")).await;
        signaling::send(
            &mut socket,
            &json!({"type": "join", "code": m.code("2269"), "meeting": m.id}),
        )
        .await;
        let reply = signaling::next_reply(&mut socket).await;
        if reply["type"] == "joined" {
            break socket;
        }
        assert_eq!(reply["code"], "other_hub", "{reply}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "joined through the partner {:?} after the cut",
        cut.elapsed()
    );
    let owner: String = postgres::connect(&database)
        .await
        .query_one(
            "SELECT owner FROM meeting_leases WHERE meeting_id = $1",
            &[&m.id],
        )
        .await
        .expect("the lease read")
        .get(0);
    assert_eq!(owner, "b");
    // Healed, the first hub does not take the meeting back: the partner runs it.
    proxy.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = http::send(a, "GET", "/api/health", b"", None, &[])
        .await
        .json();
    assert_eq!(health["meetings_held"], json!([]), "{health}");
    drop(joined);
    let _ = std::fs::remove_dir_all(&dir);
}
