//! Malformed and out-of-order signalling gets error replies with stable codes; the session
//! stays up and the hub keeps serving everyone else.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use futures_util::SinkExt;
use serde_json::{Value, json};
use signaling::{Socket, next_reply};
use tokio_tungstenite::tungstenite::Message;

async fn connect(addr: std::net::SocketAddr) -> Socket {
    signaling::connect(format!("ws://{addr}/ws")).await
}

/// A connection with the test organizer's session cookie, as the studio page has.
async fn connect_as_organizer(addr: std::net::SocketAddr) -> Socket {
    signaling::connect(http::organizer_ws_request(addr).await).await
}

async fn send_text(socket: &mut Socket, text: impl Into<String>) {
    socket
        .send(Message::Text(text.into().into()))
        .await
        .expect("send");
}

async fn expect_error(socket: &mut Socket, code: &str) -> Value {
    let reply = next_reply(socket).await;
    assert_eq!(reply["type"], "error", "reply {reply}");
    assert_eq!(reply["code"], code, "reply {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    reply
}

async fn ping_pong(socket: &mut Socket) {
    send_text(socket, json!({"type": "ping"}).to_string()).await;
    assert_eq!(
        next_reply(socket).await["type"],
        "pong",
        "session still serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_and_the_hub_keeps_serving() {
    let (hub, m) = http::hub_with_meeting(
        "Họp thử lỗi",
        &[("2269", "Xã Lâm Bình"), ("2266", "Xã Thượng Lâm")],
        true,
    )
    .await;
    let addr = hub.http_addr();
    let other = http::meeting(addr, "Họp khác", &[("2269", "Xã Lâm Bình")], true).await;

    // A well-behaved site, joined before the abuse starts.
    let mut good = connect(addr).await;
    send_text(
        &mut good,
        json!({"type": "join", "code": m.code("2269"), "meeting": m.id}).to_string(),
    )
    .await;
    let joined = next_reply(&mut good).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["participant"]["name"], "Xã Lâm Bình");
    assert_eq!(joined["participant"]["site"], "2269");
    assert_eq!(joined["title"], "Họp thử lỗi");

    let mut bad = connect_as_organizer(addr).await;
    send_text(&mut bad, "garbage {{{").await;
    expect_error(&mut bad, "malformed_json").await;

    bad.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .expect("send");
    expect_error(&mut bad, "binary_not_supported").await;

    send_text(&mut bad, json!({"type": "dance"}).to_string()).await;
    let reply = expect_error(&mut bad, "unknown_type").await;
    assert_eq!(reply["request"], "dance");

    send_text(&mut bad, json!({"type": "offer", "sdp": 42}).to_string()).await;
    expect_error(&mut bad, "invalid_field").await;

    send_text(&mut bad, json!({"type": "join", "code": 3}).to_string()).await;
    expect_error(&mut bad, "invalid_field").await;

    send_text(&mut bad, json!({"type": "join", "code": "a b"}).to_string()).await;
    expect_error(&mut bad, "invalid_field").await;

    send_text(&mut bad, json!({"no_type": true}).to_string()).await;
    expect_error(&mut bad, "invalid_field").await;

    let huge = json!({"type": "offer", "sdp": "a".repeat(10 * 1024 * 1024)}).to_string();
    send_text(&mut bad, huge).await;
    expect_error(&mut bad, "message_too_large").await;

    send_text(
        &mut bad,
        json!({"type": "answer", "sdp": "v=0"}).to_string(),
    )
    .await;
    expect_error(&mut bad, "not_joined").await;

    send_text(
        &mut bad,
        json!({"type": "join", "code": "nosuchcode23"}).to_string(),
    )
    .await;
    expect_error(&mut bad, "code_unknown").await;

    send_text(
        &mut bad,
        json!({"type": "join", "code": other.code("2269"), "meeting": m.id}).to_string(),
    )
    .await;
    expect_error(&mut bad, "code_other_meeting").await;

    // A revoked code is refused; the reissued one works.
    let old_code = m.code("2266");
    let reissued = http::post(
        addr,
        &format!("/api/meetings/{}/sites/2266/reissue", m.id),
        b"",
    )
    .await;
    assert_eq!(reissued.status, 200, "{}", reissued.text());
    send_text(
        &mut bad,
        json!({"type": "join", "code": old_code}).to_string(),
    )
    .await;
    expect_error(&mut bad, "code_revoked").await;

    // A code of a meeting that has ended is refused.
    let ended = http::post(addr, &format!("/api/meetings/{}/end", other.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    send_text(
        &mut bad,
        json!({"type": "join", "code": other.code("2269")}).to_string(),
    )
    .await;
    expect_error(&mut bad, "meeting_ended").await;

    ping_pong(&mut bad).await;

    send_text(
        &mut bad,
        json!({"type": "join", "code": m.studio_code, "meeting": m.id}).to_string(),
    )
    .await;
    let studio = next_reply(&mut bad).await;
    assert_eq!(studio["type"], "joined", "{studio}");
    assert_eq!(studio["participant"]["role"], "studio");
    assert_eq!(studio["participants"][0]["name"], "Xã Lâm Bình");
    // The good site hears about the studio.
    let notice = next_reply(&mut good).await;
    assert_eq!(notice["type"], "participant_joined");
    assert_eq!(notice["participant"]["role"], "studio");

    send_text(
        &mut bad,
        json!({"type": "join", "code": m.studio_code}).to_string(),
    )
    .await;
    expect_error(&mut bad, "already_joined").await;

    send_text(
        &mut bad,
        json!({"type": "answer", "sdp": "v=0\r\n"}).to_string(),
    )
    .await;
    expect_error(&mut bad, "no_pending_offer").await;

    send_text(
        &mut bad,
        json!({"type": "offer", "sdp": "not an sdp"}).to_string(),
    )
    .await;
    expect_error(&mut bad, "invalid_sdp").await;

    send_text(
        &mut bad,
        json!({"type": "head_count", "count": 3, "confirmed_by": "A", "position": "B"}).to_string(),
    )
    .await;
    expect_error(&mut bad, "forbidden").await;

    // A second studio in the same meeting is refused.
    let mut second = connect_as_organizer(addr).await;
    send_text(
        &mut second,
        json!({"type": "join", "code": m.studio_code}).to_string(),
    )
    .await;
    expect_error(&mut second, "studio_taken").await;

    // Absurd head counts are refused; a sane one is recorded.
    for count in [json!(-4), json!(10_001), json!("many")] {
        send_text(
            &mut good,
            json!({"type": "head_count", "count": count, "confirmed_by": "A", "position": "B"})
                .to_string(),
        )
        .await;
        expect_error(&mut good, "invalid_field").await;
    }
    send_text(
        &mut good,
        json!({"type": "head_count", "count": 45, "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"})
            .to_string(),
    )
    .await;
    let recorded = next_reply(&mut good).await;
    assert_eq!(recorded["type"], "head_count_recorded", "{recorded}");
    assert_eq!(recorded["count"], 45);

    // After all that, everyone is still served.
    ping_pong(&mut bad).await;
    ping_pong(&mut good).await;
    send_text(&mut bad, json!({"type": "leave"}).to_string()).await;
    assert_eq!(next_reply(&mut bad).await["type"], "left");
    let left = next_reply(&mut good).await;
    assert_eq!(left["type"], "participant_left");

    hub.shutdown().await;
}
