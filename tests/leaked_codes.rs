//! A site's join code that leaks: copies joining in a loop are refused while the real site stays
//! joined, and reissuing the code ends, at once, the session joined with the old code and any
//! page waiting with it: they are told `code_revoked` (a final error) and closed, the log
//! records the site as removed, and the new code joins.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use serde_json::{Value, json};

async fn open(addr: std::net::SocketAddr, first: Value, reply: &str) -> signaling::Socket {
    let mut socket = signaling::connect(http::ws_request(addr, None)).await;
    signaling::send(&mut socket, &first).await;
    let answer = signaling::next_reply(&mut socket).await;
    assert_eq!(answer["type"], reply, "{first} → {answer}");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reissued_code_ends_its_session_at_once() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let old = m.code("2269");
    let mut joined = open(
        addr,
        json!({"type": "join", "code": old, "meeting": m.id}),
        "joined",
    )
    .await;
    let mut waiting = open(
        addr,
        json!({"type": "standby", "code": old, "meeting": m.id}),
        "standby_accepted",
    )
    .await;

    let reissued = http::post(
        addr,
        &format!("/api/meetings/{}/sites/2269/reissue", m.id),
        b"",
    )
    .await;
    assert_eq!(reissued.status, 200, "{}", reissued.text());
    let new = reissued.json()["code"]
        .as_str()
        .expect("new code")
        .to_owned();

    for socket in [&mut joined, &mut waiting] {
        let error = signaling::closing_error(socket).await;
        assert_eq!(error["code"], "code_revoked", "{error}");
        assert_eq!(error["retry"], false, "a final error: the page stops");
    }
    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id)).await;
    let report = report.json();
    let left = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "site_left")
        .cloned()
        .expect("the old session left");
    assert_eq!(left["reason"], "removed");

    let mut again = open(
        addr,
        json!({"type": "join", "code": new, "meeting": m.id}),
        "joined",
    )
    .await;
    signaling::send(&mut again, &json!({"type": "leave"})).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_code_joining_in_a_loop_are_refused_and_the_real_site_stays() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let code = m.code("2269");
    let join = json!({"type": "join", "code": code, "meeting": m.id});
    let mut real = open(addr, join.clone(), "joined").await;

    // Ten copies of the link, each joining and leaving over and over.
    let mut copies = Vec::new();
    for _ in 0..10 {
        copies.push(signaling::connect(http::ws_request(addr, None)).await);
    }
    let (mut joined, mut limited) = (0, 0);
    for _ in 0..6 {
        for copy in &mut copies {
            signaling::send(copy, &join).await;
            let reply = signaling::next_reply(copy).await;
            match reply["type"].as_str() {
                Some("joined") => {
                    joined += 1;
                    signaling::send(copy, &json!({"type": "leave"})).await;
                    assert_eq!(signaling::next_reply(copy).await["type"], "left");
                }
                _ => {
                    assert_eq!(reply["code"], "rate_limited", "{reply}");
                    assert_eq!(reply["retry"], true);
                    limited += 1;
                }
            }
        }
    }
    assert_eq!(joined, 0, "no copy replaced the site joined moments ago");
    assert_eq!(limited, 60);

    // The real site is still joined: it answers, and nothing told it to go.
    signaling::send(&mut real, &json!({"type": "ping"})).await;
    assert_eq!(signaling::next_reply(&mut real).await["type"], "pong");
    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let joins = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "site_joined" || e["kind"] == "site_left")
        .count();
    assert_eq!(joins, 1, "the refused copies wrote nothing");
    hub.shutdown().await;
}
