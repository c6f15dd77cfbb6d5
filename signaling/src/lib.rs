//! diemcau-signaling: the signalling protocol of the diemcau hub.
//!
//! [`protocol`] holds the wire types (JSON over WebSocket, documented message by message in
//! `docs/protocol.md`); [`session`] runs one WebSocket connection: it reads text frames, turns
//! each into a typed [`ClientMessage`] once, hands it to a [`SessionHandler`] (the hub's meeting
//! logic) and writes the replies and the hub's own messages back. A malformed or out-of-order
//! message gets an error reply with a stable code and the session stays up.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, extract::{State, WebSocketUpgrade}, routing::get};
//! use diemcau_signaling::{session, SessionHandler};
//!
//! fn app<H: SessionHandler>(handler: Arc<H>) -> Router
//! where
//!     H::ClientInfo: Default,
//! {
//!     Router::new()
//!         .route("/ws", get(|ws: WebSocketUpgrade, State(h): State<Arc<H>>| async move {
//!             session::upgrade(ws, h, H::ClientInfo::default(), Default::default())
//!         }))
//!         .with_state(handler)
//! }
//! ```

pub mod ids;
pub mod protocol;
pub mod session;
pub mod text;

pub use ids::{JoinCode, MeetingId, SessionId, SiteCode};
pub use protocol::{ClientMessage, ErrorCode, MediaTransport, ProtocolError, Role, ServerMessage};
pub use session::{CloseReason, Limits, Outbox, SessionHandler};
