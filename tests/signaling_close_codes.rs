//! A session the hub ends ends with a message that says why and a close frame with the
//! documented code: 1008 after a flood of messages or of WebSocket pings, 1009 after a frame
//! over 16 MiB, 1001 with `hub_shutting_down` when the hub stops, 1000 after `timeout`,
//! `replaced` and `meeting_ended` (docs/protocol.md, "Close codes").

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a client saw until the connection ended: the `code` of each error message, and the
/// close frame's code (`None`: closed without a close frame, as a browser's 1006).
#[derive(Debug)]
struct Ending {
    errors: Vec<String>,
    close: Option<CloseCode>,
}

/// Reads until the hub closes the connection (bounded: a hub that never closes fails).
async fn ending(socket: &mut Socket) -> Ending {
    let mut errors = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the hub closes the session within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if let Some(code) = message["code"].as_str() {
                    errors.push(code.to_owned());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ending {
                    errors,
                    close: frame.map(|f| f.code),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                return Ending {
                    errors,
                    close: None,
                };
            }
        }
    }
}

async fn hub_and_socket() -> (diemcau::RunningHub, Socket) {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", hub.http_addr()))
        .await
        .expect("connect");
    (hub, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_messages_sees_rate_limited_then_close_1008() {
    let (hub, mut socket) = hub_and_socket().await;
    let ping = json!({"type": "ping"}).to_string();
    for _ in 0..300 {
        if socket
            .send(Message::Text(ping.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let end = ending(&mut socket).await;
    assert_eq!(
        end.errors.last().map(String::as_str),
        Some("rate_limited"),
        "{end:?}"
    );
    assert_eq!(end.close, Some(CloseCode::Policy), "{end:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_ping_frames_is_rate_limited_and_closed_with_1008() {
    let (hub, mut socket) = hub_and_socket().await;
    for _ in 0..5_000 {
        if socket
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let end = ending(&mut socket).await;
    assert!(
        end.errors.iter().any(|code| code == "rate_limited"),
        "{end:?}"
    );
    assert_eq!(end.close, Some(CloseCode::Policy), "{end:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_16_mib_sees_message_too_large_then_close_1009() {
    let (hub, socket) = hub_and_socket().await;
    let (mut sink, mut stream) = socket.split();
    let huge = json!({"type": "offer", "sdp": "a".repeat(17 * 1024 * 1024)}).to_string();
    // The hub stops reading at the frame's header: the rest may never be taken.
    let sending = tokio::spawn(async move {
        let _ = sink.send(Message::Text(huge.into())).await;
        sink
    });
    let mut errors = Vec::new();
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the hub answers within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                errors.extend(message["code"].as_str().map(str::to_owned));
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(errors, ["message_too_large"]);
    assert_eq!(close, Some(CloseCode::Size));
    sending.abort();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_stops_says_hub_shutting_down_then_close_1001() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    let join = json!({"type": "join", "code": m.code("2269"), "meeting": m.id});
    socket
        .send(Message::Text(join.to_string().into()))
        .await
        .expect("send");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("joined within 10 s");
        if let Some(Ok(Message::Text(text))) = frame
            && text.as_str().contains(r#""type":"joined""#)
        {
            break;
        }
    }
    let stopping = tokio::spawn(hub.shutdown());
    let end = ending(&mut socket).await;
    assert_eq!(
        end.errors.last().map(String::as_str),
        Some("hub_shutting_down"),
        "{end:?}"
    );
    assert_eq!(end.close, Some(CloseCode::Away), "{end:?}");
    stopping.await.expect("the hub stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_gets_the_close_answered() {
    let (hub, mut socket) = hub_and_socket().await;
    socket
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .expect("send");
    socket
        .send(Message::Close(Some(
            tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            },
        )))
        .await
        .expect("close sent");
    let end = ending(&mut socket).await;
    assert_eq!(
        end.close,
        Some(CloseCode::Normal),
        "the hub answers the close: {end:?}"
    );
    hub.shutdown().await;
}

/// Joins `code` on a new connection to `addr` and reads up to `joined`.
async fn joined_socket(addr: std::net::SocketAddr, code: &str, meeting: i64) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    let join = json!({"type": "join", "code": code, "meeting": meeting});
    socket
        .send(Message::Text(join.to_string().into()))
        .await
        .expect("send");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("joined within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) if text.as_str().contains(r#""type":"joined""#) => {
                return socket;
            }
            Some(Ok(_)) => {}
            other => panic!("no joined: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_session_and_an_ended_meeting_close_with_1000() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let mut first = joined_socket(addr, &m.code("2269"), m.id).await;
    // A joined site may be replaced 5 s after it joined, not sooner (docs/protocol.md, `join`).
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let mut second = joined_socket(addr, &m.code("2269"), m.id).await;
    let end = ending(&mut first).await;
    assert_eq!(end.errors, ["replaced"], "{end:?}");
    assert_eq!(end.close, Some(CloseCode::Normal), "{end:?}");

    let ended = http::post(addr, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    let end = ending(&mut second).await;
    assert_eq!(end.errors, ["meeting_ended"], "{end:?}");
    assert_eq!(end.close, Some(CloseCode::Normal), "{end:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_sees_timeout_then_close_1000() {
    let config = diemcau::Config {
        idle_timeout_seconds: 1,
        ..diemcau::Config::for_tests()
    };
    let hub = diemcau::start(config).await.expect("hub starts");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", hub.http_addr()))
        .await
        .expect("connect");
    socket
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .expect("send");
    let end = ending(&mut socket).await;
    assert_eq!(end.errors, ["timeout"], "{end:?}");
    assert_eq!(end.close, Some(CloseCode::Normal), "{end:?}");
    hub.shutdown().await;
}
