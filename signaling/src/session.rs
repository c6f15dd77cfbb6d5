//! One WebSocket signalling session: read, parse, dispatch, reply.

use std::future::Future;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use tokio::sync::mpsc;

use crate::protocol::{ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ProtocolError, ServerMessage};

/// Frames above this size close the WebSocket (1009). Between [`MAX_MESSAGE_BYTES`] and this
/// size a frame is read and refused with `message_too_large`, so a client learns what it did.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Where the hub sends messages to one client at any time (offers, participants joining...).
pub type Outbox = mpsc::UnboundedSender<ServerMessage>;

/// The hub's side of a session: the meeting logic behind the protocol.
pub trait SessionHandler: Send + Sync + 'static {
    /// Per-connection state, created when the WebSocket opens.
    type Session: Send + 'static;

    /// A WebSocket opened; `outbox` reaches its client until the session closes.
    fn open(&self, outbox: Outbox) -> Self::Session;

    /// One well-formed message. `Ok(Some(reply))` is sent back; an error becomes an `error`
    /// message and the session goes on.
    fn handle(
        &self,
        session: &mut Self::Session,
        message: ClientMessage,
    ) -> impl Future<Output = Result<Option<ServerMessage>, ProtocolError>> + Send;

    /// The WebSocket closed (or failed): leave the meeting.
    fn close(&self, session: Self::Session) -> impl Future<Output = ()> + Send;
}

/// Accepts a WebSocket upgrade and runs the session on it.
pub fn upgrade<H: SessionHandler>(ws: WebSocketUpgrade, handler: Arc<H>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(socket, handler))
}

/// Runs one session until the client goes away.
pub async fn run<H: SessionHandler>(mut socket: WebSocket, handler: Arc<H>) {
    let (outbox, mut inbox) = mpsc::unbounded_channel();
    let mut session = handler.open(outbox);
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break };
                let reply = match frame {
                    Message::Text(text) => dispatch(&*handler, &mut session, text.as_str()).await,
                    Message::Binary(_) => Some(
                        ProtocolError::new(
                            ErrorCode::BinaryNotSupported,
                            "binary frames are not supported; send JSON text frames",
                        )
                        .to_message(),
                    ),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && send(&mut socket, &reply).await.is_err()
                {
                    break;
                }
            }
            Some(message) = inbox.recv() => {
                if send(&mut socket, &message).await.is_err() {
                    break;
                }
            }
        }
    }
    handler.close(session).await;
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

const _: () = assert!(MAX_MESSAGE_BYTES < MAX_FRAME_BYTES);
