//! One WebSocket signalling session: read, parse, dispatch, reply.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use tokio::sync::mpsc;

use crate::protocol::{ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ProtocolError, ServerMessage};

/// Frames above this size are refused with `message_too_large` and close the WebSocket with
/// code 1009 ([`TOO_BIG`]). Between [`MAX_MESSAGE_BYTES`] and this size a frame is read and
/// refused with `message_too_large`, and the session stays open within
/// [`LARGE_MESSAGE_BUDGET`].
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The close code after a flood (`rate_limited`): policy violation (RFC 6455 §7.4.1).
pub const POLICY_VIOLATION: u16 = close_code::POLICY;

/// The close code after a frame over [`MAX_FRAME_BYTES`] (`message_too_large`).
pub const TOO_BIG: u16 = close_code::SIZE;

/// Bytes of messages over [`MAX_MESSAGE_BYTES`] the sessions of this process may have read
/// and still be open. Such a message grows its connection's read buffer to its size for the
/// connection's life; a session whose large message does not fit is closed (1009), which
/// frees its buffer.
pub const LARGE_MESSAGE_BUDGET: usize = 64 * 1024 * 1024;

/// The part of [`LARGE_MESSAGE_BUDGET`] in use.
static LARGE_MESSAGE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// How long a closing session keeps reading for the client's answering close frame: closing
/// a socket with unread data resets the connection, and the client would lose the last
/// messages.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where the hub sends messages to one client at any time (offers, participants joining...).
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Boxed: a session's queue allocates its slots 32 at a time and keeps them, and a
/// `ServerMessage` inline is 144 bytes (two blocks of 32 held about 9 KiB per site).
#[derive(Debug)]
enum Outgoing {
    Message(Box<ServerMessage>),
    /// Send this, then end the session.
    Final(Box<ServerMessage>),
}

impl Outbox {
    /// A new outbox and the receiving end a session loop reads (for tests of handlers).
    pub fn channel() -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, OutboxReceiver { rx })
    }

    /// Queues a message; false if the session has ended.
    pub fn send(&self, message: ServerMessage) -> bool {
        self.tx.send(Outgoing::Message(Box::new(message))).is_ok()
    }

    /// Sends a last message and ends the session (the hub closes the WebSocket).
    pub fn close_with(&self, message: ServerMessage) -> bool {
        self.tx.send(Outgoing::Final(Box::new(message))).is_ok()
    }
}

/// The session's end of an [`Outbox`].
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
}

impl OutboxReceiver {
    /// The next message and whether it is the last one.
    pub async fn recv(&mut self) -> Option<(ServerMessage, bool)> {
        match self.rx.recv().await? {
            Outgoing::Message(m) => Some((*m, false)),
            Outgoing::Final(m) => Some((*m, true)),
        }
    }
}

/// Limits of one session, each breach answered with an error (and logged).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages per second a client may send, on average.
    pub messages_per_second: u32,
    /// Messages a client may send in a burst above that rate.
    pub burst: u32,
    /// A session that has sent no valid message this long after opening is closed.
    pub first_message_timeout: Duration,
    /// A session silent this long (clients ping every 20 s) is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_second: 20,
            burst: 60,
            first_message_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the WebSocket cleanly.
    ClientClosed,
    /// The connection broke (no close frame).
    ConnectionLost,
    /// The hub ended the session (see [`Outbox::close_with`]).
    HubClosed,
    /// The client broke a limit (silence, flooding) and the hub closed the session.
    LimitExceeded,
}

/// The hub's side of a session: the meeting logic behind the protocol.
pub trait SessionHandler: Send + Sync + 'static {
    /// Per-connection state, created when the WebSocket opens.
    type Session: Send + 'static;
    /// What the HTTP layer knows of the client (address, user agent...).
    type ClientInfo: Send + 'static;

    /// A WebSocket opened; `outbox` reaches its client until the session closes.
    fn open(&self, outbox: Outbox, client: Self::ClientInfo) -> Self::Session;

    /// One well-formed message. `Ok(Some(reply))` is sent back; an error becomes an `error`
    /// message and the session goes on.
    fn handle(
        &self,
        session: &mut Self::Session,
        message: ClientMessage,
    ) -> impl Future<Output = Result<Option<ServerMessage>, ProtocolError>> + Send;

    /// The WebSocket closed (or failed): leave the meeting.
    fn close(&self, session: Self::Session, reason: CloseReason)
    -> impl Future<Output = ()> + Send;
}

/// Accepts a WebSocket upgrade and runs the session on it.
pub fn upgrade<H: SessionHandler>(
    ws: WebSocketUpgrade,
    handler: Arc<H>,
    client: H::ClientInfo,
    limits: Limits,
) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(socket, handler, client, limits))
}

/// Runs one session until the client goes away.
pub async fn run<H: SessionHandler>(
    mut socket: WebSocket,
    handler: Arc<H>,
    client: H::ClientInfo,
    limits: Limits,
) {
    let (outbox, mut inbox) = Outbox::channel();
    let mut session = handler.open(outbox, client);
    let mut bucket = TokenBucket::new(limits);
    let mut spoken = false;
    let mut refused_in_a_row = 0u32;
    // The hub's offers not answered yet. An answer to one is the hub's own request coming
    // back, bounded by the offers it sent: it is never refused as a flood. A chair is offered
    // the tracks of every few sites that join, and answered each offer at once; one answer
    // refused left its negotiation waiting for ever, and it never received the sites after.
    let mut offers_unanswered = 0u32;
    let mut large = LargeMessageShare::default();
    let opened = Instant::now();
    let mut last_heard = Instant::now();
    let reason = loop {
        let deadline = if spoken {
            last_heard + limits.idle_timeout
        } else {
            opened + limits.first_message_timeout
        };
        tokio::select! {
            frame = socket.recv() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) if is_too_large(&e) => {
                        tracing::warn!("signalling frame over {MAX_FRAME_BYTES} bytes: {e}");
                        let refusal = ProtocolError::new(
                            ErrorCode::MessageTooLarge,
                            format!("frame over {MAX_FRAME_BYTES} bytes; the session is closed"),
                        );
                        // The frame stays unread: no answering close frame can be read.
                        let _ = send(&mut socket, &refusal.to_message()).await;
                        let _ = socket.send(close_frame(TOO_BIG, "message too large")).await;
                        break CloseReason::LimitExceeded;
                    }
                    Some(Err(_)) | None => break CloseReason::ConnectionLost,
                };
                last_heard = Instant::now();
                let answer = offers_unanswered > 0 && is_answer(&frame);
                if answer {
                    offers_unanswered -= 1;
                }
                // Ping frames count too: each one costs the hub a pong.
                if !answer && !bucket.take(last_heard) {
                    refused_in_a_row += 1;
                    tracing::warn!("signalling flood: message refused ({refused_in_a_row} in a row)");
                    if refused_in_a_row > limits.burst {
                        let refusal = ProtocolError::new(
                            ErrorCode::RateLimited,
                            "too many messages; the session is closed",
                        );
                        let close = close_frame(POLICY_VIOLATION, "too many messages");
                        close_after(&mut socket, &refusal.to_message(), close).await;
                        break CloseReason::LimitExceeded;
                    }
                    let reply = ProtocolError::new(
                        ErrorCode::RateLimited,
                        format!("more than {} messages per second; message ignored", limits.messages_per_second),
                    );
                    if send(&mut socket, &reply.to_message()).await.is_err() {
                        break CloseReason::ConnectionLost;
                    }
                    continue;
                }
                refused_in_a_row = 0;
                let length = match &frame {
                    Message::Text(text) => text.len(),
                    Message::Binary(bytes) => bytes.len(),
                    _ => 0,
                };
                if length > MAX_MESSAGE_BYTES && !large.grow_to(length) {
                    tracing::warn!(length, "signalling: large message over the hub's budget; session closed");
                    let refusal = ProtocolError::new(
                        ErrorCode::MessageTooLarge,
                        format!(
                            "message of {length} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes, \
                             and the hub holds as many large messages as it may; the session is closed"
                        ),
                    );
                    close_after(&mut socket, &refusal.to_message(), close_frame(TOO_BIG, "message too large")).await;
                    break CloseReason::LimitExceeded;
                }
                let reply = match frame {
                    Message::Text(text) => {
                        let reply = dispatch(&*handler, &mut session, text.as_str()).await;
                        spoken |= !matches!(&reply, Some(ServerMessage::Error { .. }));
                        reply
                    }
                    Message::Binary(_) => Some(
                        ProtocolError::new(
                            ErrorCode::BinaryNotSupported,
                            "binary frames are not supported; send JSON text frames",
                        )
                        .to_message(),
                    ),
                    Message::Close(_) => {
                        // The reply to the client's close (RFC 6455 §5.5.1) is queued by the
                        // WebSocket layer; writing it out completes the handshake.
                        let _ = futures_util::SinkExt::flush(&mut socket).await;
                        break CloseReason::ClientClosed;
                    }
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && send(&mut socket, &reply).await.is_err()
                {
                    break CloseReason::ConnectionLost;
                }
            }
            Some((message, last)) = inbox.recv() => {
                if last {
                    // A hub that stops says it is going away (1001): the client comes back later.
                    let stopping = matches!(
                        message,
                        ServerMessage::Error { code: ErrorCode::HubShuttingDown, .. }
                    );
                    let close = if stopping {
                        close_frame(close_code::AWAY, "the hub is shutting down")
                    } else {
                        close_frame(close_code::NORMAL, "the session ended")
                    };
                    close_after(&mut socket, &message, close).await;
                    break CloseReason::HubClosed;
                }
                let offer = matches!(message, ServerMessage::Offer { .. });
                if send(&mut socket, &message).await.is_err() {
                    break CloseReason::ConnectionLost;
                }
                if offer {
                    offers_unanswered = offers_unanswered.saturating_add(1);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let message = if spoken {
                    "no message for too long (send ping every 20 s); the session is closed"
                } else {
                    "no valid message after opening the connection; the session is closed"
                };
                tracing::info!("{message}");
                let refusal = ProtocolError::new(ErrorCode::Timeout, message);
                let close = close_frame(close_code::NORMAL, "no message for too long");
                close_after(&mut socket, &refusal.to_message(), close).await;
                break CloseReason::LimitExceeded;
            }
        }
    };
    handler.close(session, reason).await;
}

/// Whether a frame is an `answer` message; only its `type` is read.
fn is_answer(frame: &Message) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let Message::Text(text) = frame else {
        return false;
    };
    // An object: serde would also read a struct from a sequence.
    text.trim_start().starts_with('{')
        && serde_json::from_str::<Kind>(text.as_str()).is_ok_and(|k| k.kind == "answer")
}

/// A session's part of [`LARGE_MESSAGE_BUDGET`]: the largest message over
/// [`MAX_MESSAGE_BYTES`] it has read, given back when the session ends.
#[derive(Debug, Default)]
struct LargeMessageShare {
    held: usize,
}

impl LargeMessageShare {
    /// Takes budget for a message of `length`; false when the budget has no room for it.
    fn grow_to(&mut self, length: usize) -> bool {
        let Some(more) = length.checked_sub(self.held).filter(|&more| more > 0) else {
            return true;
        };
        let taken = LARGE_MESSAGE_BYTES.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(more)
                .filter(|&total| total <= LARGE_MESSAGE_BUDGET)
        });
        if taken.is_ok() {
            self.held = length;
        }
        taken.is_ok()
    }
}

impl Drop for LargeMessageShare {
    fn drop(&mut self) {
        LARGE_MESSAGE_BYTES.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// Allows `messages_per_second` on average and bursts of `burst`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(limits: Limits) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(limits.burst),
            rate: f64::from(limits.messages_per_second),
            burst: f64::from(limits.burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn dispatch<H: SessionHandler>(
    handler: &H,
    session: &mut H::Session,
    text: &str,
) -> Option<ServerMessage> {
    let message = match ClientMessage::parse(text) {
        Ok(message) => message,
        Err(e) => {
            tracing::debug!(code = e.code.as_str(), "refused message: {}", e.message);
            return Some(e.to_message());
        }
    };
    let kind = message.kind();
    match handler.handle(session, message).await {
        Ok(reply) => reply,
        Err(mut e) => {
            e.request.get_or_insert_with(|| kind.to_owned());
            tracing::debug!(code = e.code.as_str(), kind, "refused: {}", e.message);
            Some(e.to_message())
        }
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_json().into())).await
}

/// Sends `message` and then `close`, and reads (dropping) what the client still sends until
/// its answering close frame, for [`CLOSE_GRACE`] at most.
async fn close_after(socket: &mut WebSocket, message: &ServerMessage, close: Message) {
    if send(socket, message).await.is_err() || socket.send(close).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.recv()).await {
        if matches!(frame, Message::Close(_)) {
            break;
        }
    }
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Whether a read failed on a frame or message over the size limits.
fn is_too_large(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

const _: () = assert!(MAX_MESSAGE_BYTES < MAX_FRAME_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_told_from_its_type_alone() {
        let answer = Message::Text(r#"{"type": "answer", "sdp": "v=0\r\n", "more": 1}"#.into());
        assert!(is_answer(&answer));
        for other in [
            r#"{"type": "offer", "sdp": "v=0"}"#,
            r#"{"sdp": "v=0"}"#,
            "not json",
            r#"["answer"]"#,
        ] {
            assert!(!is_answer(&Message::Text(other.into())), "{other}");
        }
        assert!(!is_answer(&Message::Binary(b"answer".to_vec().into())));
    }

    #[test]
    fn large_messages_share_one_budget_given_back_when_a_session_ends() {
        let mut first = LargeMessageShare::default();
        assert!(first.grow_to(LARGE_MESSAGE_BUDGET / 2));
        assert!(
            first.grow_to(LARGE_MESSAGE_BUDGET / 4),
            "a smaller one is held already"
        );
        let mut second = LargeMessageShare::default();
        assert!(!second.grow_to(LARGE_MESSAGE_BUDGET), "no room");
        drop(first);
        assert!(second.grow_to(LARGE_MESSAGE_BUDGET), "room again");
    }
}
