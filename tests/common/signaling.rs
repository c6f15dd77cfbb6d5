//! The signalling WebSocket (`/ws`) seen from a test: connect, send a JSON message, read the
//! next JSON message the hub sends.
//!
//! Include it with `#[path = "common/signaling.rs"] mod signaling;`; a connection with a login
//! starts from `http::ws_request`.

#![allow(dead_code, clippy::indexing_slicing)] // test helpers: JSON lookups

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for the hub's next message.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket `request` names (`ws://ADDR/ws`, or `http::ws_request` with a cookie).
pub async fn connect(request: impl IntoClientRequest + Unpin) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket connects");
    socket
}

pub async fn send(socket: &mut Socket, message: &Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next text message, parsed; panics unless one comes within [`REPLY_TIMEOUT`].
pub async fn next_message(socket: &mut Socket) -> Value {
    next_message_within(socket, REPLY_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("a message within {REPLY_TIMEOUT:?}"))
}

/// The next text message, parsed, or `None` when no frame comes within `limit`. Panics when
/// the socket closes or the message is not JSON.
pub async fn next_message_within(socket: &mut Socket, limit: Duration) -> Option<Value> {
    next_text(socket, limit).await
}

/// [`next_message_within`] on a WebSocket over any stream (TLS of the test's own making...).
pub async fn next_text<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    limit: Duration,
) -> Option<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(limit, socket.next())
            .await
            .ok()?
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return Some(serde_json::from_str(text.as_str()).expect("the hub sends JSON"));
        }
    }
}

/// The next message that answers this connection: meeting state pushed to everyone (`floor`,
/// `console`) is skipped.
pub async fn next_reply(socket: &mut Socket) -> Value {
    loop {
        let message = next_message(socket).await;
        if message["type"] != "floor" && message["type"] != "console" {
            return message;
        }
    }
}

/// The next message of type `kind`, others skipped; panics on an `error` unless that is the
/// kind awaited, and unless it comes within [`REPLY_TIMEOUT`] in all.
pub async fn next_of_type(socket: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next_message_within(socket, left)
            .await
            .unwrap_or_else(|| panic!("no `{kind}` within {REPLY_TIMEOUT:?}"));
        if message["type"] == kind {
            return message;
        }
        assert_ne!(message["type"], "error", "waiting for `{kind}`: {message}");
    }
}

/// Opens `/ws` on `addr` without a login, sends `join` with `code` (and `meeting` when given)
/// and returns the socket once `joined` arrives; panics on an error before it.
pub async fn join(addr: std::net::SocketAddr, code: &str, meeting: Option<i64>) -> Socket {
    let mut socket = connect(format!("ws://{addr}/ws")).await;
    let mut message = serde_json::json!({"type": "join", "code": code});
    if let Some(meeting) = meeting {
        message["meeting"] = meeting.into();
    }
    send(&mut socket, &message).await;
    next_of_type(&mut socket, "joined").await;
    socket
}

/// Joins with `code` as the studio over `request` (an organizer's, `http::organizer_ws_request`)
/// and returns the socket once `joined` arrives; panics on anything else first.
pub async fn join_studio(
    request: impl IntoClientRequest + Unpin,
    code: &str,
    meeting: i64,
) -> Socket {
    let mut socket = connect(request).await;
    send(
        &mut socket,
        &serde_json::json!({"type": "join", "code": code, "meeting": meeting}),
    )
    .await;
    let reply = next_reply(&mut socket).await;
    assert_eq!(reply["type"], "joined", "{reply}");
    socket
}

/// The last `error` the hub sends before it closes `socket` (`Null` if none).
pub async fn closing_error(socket: &mut Socket) -> Value {
    let mut last = Value::Null;
    loop {
        let frame = tokio::time::timeout(REPLY_TIMEOUT, socket.next())
            .await
            .expect("the hub closes the session");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if message["type"] == "error" {
                    last = message;
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return last,
            Some(Ok(_)) => {}
        }
    }
}
