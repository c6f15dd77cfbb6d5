//! The studio's encoder (WHIP, `crate::whip`): its seat in a meeting, held by a task of the
//! hub for as long as its media connection lives, and the resources that name it.

use std::sync::Arc;

use diemcau_signaling::protocol::MediaState;
use diemcau_signaling::session::OutboxReceiver;
use diemcau_signaling::{
    ClientMessage, CloseReason, MeetingId, Outbox, ProtocolError, ServerMessage, SessionHandler,
};
use tokio::sync::oneshot;

use super::{ClientInfo, Hub, Session, internal};
use crate::store::random_text;

/// A publishing encoder, by its resource id (the last part of its WHIP resource URL).
#[derive(Debug)]
pub(super) struct EncoderResource {
    meeting: MeetingId,
    /// The token it started with: its `DELETE` must carry the same.
    token: String,
    stop: Option<oneshot::Sender<()>>,
}

/// Why an encoder's resource cannot be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StopEncoderError {
    #[error("no encoder publishes under this URL (it stopped, or another took over)")]
    Unknown,
    #[error("this is not the token the encoder started with")]
    WrongToken,
}

impl Hub {
    /// An encoder publishes `meeting`'s programme with `offer`: it takes the meeting's encoder
    /// seat (a previous encoder is told and dropped) and its offer is answered. Returns the
    /// resource id and the answer. The caller checked `token`.
    pub async fn start_encoder(
        self: &Arc<Self>,
        meeting: MeetingId,
        token: String,
        offer: String,
        client: ClientInfo,
    ) -> Result<(String, String), ProtocolError> {
        let resource = random_text(24)
            .map_err(|e| internal(&format!("no random bytes for a resource id: {e}")))?;
        let (outbox, messages) = Outbox::channel();
        let mut session = self.open(outbox, client);
        self.join_encoder(&mut session, meeting).await?;
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
        self.lock().encoders.insert(
            resource.clone(),
            EncoderResource {
                meeting,
                token,
                stop: Some(stop),
            },
        );
        tracing::info!(meeting = %meeting, participant = ?id, "encoder publishing");
        let hub = self.clone();
        let name = resource.clone();
        tokio::spawn(async move { hub.hold_encoder(name, session, messages, stopped).await });
        Ok((resource, answer))
    }

    /// Stops the encoder publishing under `resource` of `meeting` (its `DELETE`).
    pub fn stop_encoder(
        &self,
        meeting: MeetingId,
        resource: &str,
        token: &str,
    ) -> Result<(), StopEncoderError> {
        let mut state = self.lock();
        let found = state
            .encoders
            .get_mut(resource)
            .filter(|r| r.meeting == meeting)
            .ok_or(StopEncoderError::Unknown)?;
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(found.token.as_bytes(), token.as_bytes()).into();
        if !same {
            return Err(StopEncoderError::WrongToken);
        }
        if let Some(stop) = found.stop.take() {
            let _ = stop.send(());
        }
        Ok(())
    }

    /// Whether an encoder publishes `meeting` now.
    pub fn encoder_publishing(&self, meeting: MeetingId) -> bool {
        self.lock().encoders.values().any(|r| r.meeting == meeting)
    }

    /// Holds an encoder's seat until its `DELETE`, the end of its media connection, or the
    /// meeting closing its session (another encoder took over, the meeting ended, the hub
    /// stops).
    async fn hold_encoder(
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
        self.lock().encoders.remove(&resource);
        tracing::info!(?reason, "encoder stopped");
        self.close(session, reason).await;
    }
}
