//! The programme over HTTP: a studio encoder publishing it (WHIP) and players watching it
//! (WHEP), `crate::whip`. Each is a seat in its meeting held by a task of the hub for as long
//! as its media connection lives, named by a resource id (the last part of its URL).

use std::sync::Arc;

use diemcau_signaling::protocol::MediaState;
use diemcau_signaling::session::OutboxReceiver;
use diemcau_signaling::{
    ClientMessage, CloseReason, MeetingId, Outbox, ProtocolError, ServerMessage, SessionHandler,
};
use tokio::sync::oneshot;

use super::{ClientInfo, Hub, Session, internal};
use crate::store::random_text;

/// What an HTTP media session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSessionKind {
    /// A studio encoder publishing the programme (WHIP).
    Encoder,
    /// A player watching it (WHEP).
    Viewer,
}

/// A live WHIP or WHEP session, by resource id.
#[derive(Debug)]
pub(super) struct HttpSession {
    meeting: MeetingId,
    kind: HttpSessionKind,
    /// The token it started with: its `DELETE` must carry the same.
    token: String,
    stop: Option<oneshot::Sender<()>>,
}

/// Why an HTTP media session cannot be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StopSessionError {
    #[error("nothing runs under this URL any more (it stopped, or another took over)")]
    Unknown,
    #[error("this is not the token this session started with")]
    WrongToken,
}

impl Hub {
    /// Starts a WHIP (`Encoder`) or WHEP (`Viewer`) session of `meeting` with the client's
    /// `offer`: it takes its seat (an encoder replaces the one before; a viewer is refused
    /// beyond the meeting's limit) and its offer is answered. Returns the resource id and the
    /// answer. The caller checked `token`.
    pub async fn start_http_session(
        self: &Arc<Self>,
        meeting: MeetingId,
        kind: HttpSessionKind,
        token: String,
        offer: String,
        client: ClientInfo,
    ) -> Result<(String, String), ProtocolError> {
        let resource = random_text(24)
            .map_err(|e| internal(&format!("no random bytes for a resource id: {e}")))?;
        let (outbox, messages) = Outbox::channel();
        let mut session = self.open(outbox, client);
        self.join_over_http(&mut session, meeting, kind).await?;
        let id = session.participant;
        let answer = match self
            .handle(&mut session, ClientMessage::Offer { sdp: offer })
            .await
        {
            Ok(Some(ServerMessage::Answer { sdp })) => sdp,
            Ok(other) => {
                self.close(session, CloseReason::HubClosed).await;
                return Err(internal(&format!("the offer was answered with {other:?}")));
            }
            Err(e) => {
                self.close(session, CloseReason::ClientClosed).await;
                return Err(e);
            }
        };
        let (stop, stopped) = oneshot::channel();
        self.lock().http_sessions.insert(
            resource.clone(),
            HttpSession {
                meeting,
                kind,
                token,
                stop: Some(stop),
            },
        );
        tracing::info!(meeting = %meeting, participant = ?id, ?kind, "HTTP media session started");
        let hub = self.clone();
        let name = resource.clone();
        tokio::spawn(async move {
            hub.hold_http_session(name, session, messages, stopped)
                .await
        });
        Ok((resource, answer))
    }

    /// Stops the session of `kind` running under `resource` of `meeting` (its `DELETE`).
    pub fn stop_http_session(
        &self,
        meeting: MeetingId,
        kind: HttpSessionKind,
        resource: &str,
        token: &str,
    ) -> Result<(), StopSessionError> {
        let mut state = self.lock();
        let found = state
            .http_sessions
            .get_mut(resource)
            .filter(|r| r.meeting == meeting && r.kind == kind)
            .ok_or(StopSessionError::Unknown)?;
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(found.token.as_bytes(), token.as_bytes()).into();
        if !same {
            return Err(StopSessionError::WrongToken);
        }
        if let Some(stop) = found.stop.take() {
            let _ = stop.send(());
        }
        Ok(())
    }

    /// How many sessions of `kind` run in `meeting` now.
    pub fn http_sessions(&self, meeting: MeetingId, kind: HttpSessionKind) -> usize {
        self.lock()
            .http_sessions
            .values()
            .filter(|r| r.meeting == meeting && r.kind == kind)
            .count()
    }

    /// Holds a session's seat until its `DELETE`, the end of its media connection, or the
    /// meeting closing it (another encoder took over, the meeting ended, the hub stops).
    async fn hold_http_session(
        self: Arc<Self>,
        resource: String,
        session: Session,
        mut messages: OutboxReceiver,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let reason = loop {
            tokio::select! {
                _ = &mut stopped => break CloseReason::ClientClosed,
                message = messages.recv() => match message {
                    None | Some((_, true)) => break CloseReason::HubClosed,
                    Some((ServerMessage::MediaState { state: MediaState::Disconnected }, _)) => {
                        break CloseReason::ConnectionLost;
                    }
                    Some(_) => {}
                },
            }
        };
        self.lock().http_sessions.remove(&resource);
        tracing::info!(?reason, "HTTP media session ended");
        self.close(session, reason).await;
    }
}
