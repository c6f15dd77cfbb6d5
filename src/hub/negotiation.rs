//! Offers and answers between a participant and its media worker, and the workers' events
//! turned into inputs of the meeting core.

use std::sync::Arc;

use diemcau_sfu::{Event, PeerId};
use diemcau_signaling::{ErrorCode, ProtocolError, ServerMessage};
use tokio::sync::oneshot;

use super::{Hub, internal, sfu_error};
use crate::media::{Command, MediaEvents, WorkerIndex};
use crate::store::now_millis;

impl Hub {
    /// Handles the media workers' events until they stop.
    pub async fn run_media_events(self: Arc<Self>, mut events: MediaEvents) {
        while let Some((worker, event)) = events.recv().await {
            self.on_media_event(worker, event);
        }
    }

    fn on_media_event(&self, worker: WorkerIndex, event: Event) {
        let now = now_millis();
        let mut state = self.lock();
        let peer = match &event {
            Event::ProducerAdded(info) => info.peer,
            Event::Offer { peer, .. }
            | Event::PeerConnected(peer)
            | Event::PeerClosed(peer)
            | Event::Reception { peer, .. }
            | Event::Quality { peer, .. }
            | Event::Transport { peer, .. } => *peer,
        };
        let Some(connection) = state.participants.get_mut(&peer) else {
            // Left meanwhile: its worker drops what it had with the peer.
            return;
        };
        let meeting = connection.meeting;
        if let Event::PeerClosed(_) = event {
            tracing::info!(%peer, %worker, "media connection closed");
            connection.worker = None;
        }
        if let Event::Offer { sdp, .. } = event {
            connection.outbox.send(ServerMessage::Offer { sdp });
            return;
        }
        let Some(live) = state.meetings.get_mut(&meeting) else {
            return;
        };
        match event {
            Event::ProducerAdded(info) => live.producer_added(info),
            Event::PeerConnected(peer) => live.peer_connected(now, peer),
            Event::PeerClosed(peer) => live.peer_closed(now, peer),
            Event::Reception {
                peer,
                audio_only,
                shed,
            } => live.reception_changed(now, peer, audio_only, shed),
            Event::Quality { peer, quality } => live.quality_sampled(now, peer, quality),
            Event::Transport { peer, transport } => live.transport_chosen(peer, transport),
            Event::Offer { .. } => {}
        }
        self.carry_in_background(&mut state, meeting);
    }

    /// A participant's offer: its first one puts its peer on a worker.
    pub(super) async fn offer(
        &self,
        id: PeerId,
        sdp: String,
    ) -> Result<ServerMessage, ProtocolError> {
        let (worker, router, fixed) = {
            let state = self.lock();
            let connection = state
                .participants
                .get(&id)
                .ok_or_else(|| internal("participant vanished"))?;
            let router = state
                .meetings
                .get(&connection.meeting)
                .map(|live| live.router())
                .ok_or_else(|| internal("meeting vanished"))?;
            (connection.worker, router, connection.fixed)
        };
        let (reply, answer) = oneshot::channel();
        let new_worker = match worker {
            Some(w) => {
                self.media.send(
                    w,
                    Command::Offer {
                        peer: id,
                        offer: sdp,
                        reply,
                    },
                );
                None
            }
            None => {
                let w = self.media.pick_worker();
                self.media.send(
                    w,
                    Command::AddPeer {
                        peer: id,
                        router,
                        offer: sdp,
                        fixed,
                        reply,
                    },
                );
                Some(w)
            }
        };
        let answer = answer
            .await
            .map_err(|_| internal("media worker stopped"))?
            .map_err(sfu_error)?;
        if let Some(w) = new_worker {
            self.attach(id, w);
        }
        Ok(ServerMessage::Answer { sdp: answer })
    }

    /// The participant's peer now lives on worker `w`: it receives what the rules say.
    fn attach(&self, id: PeerId, w: WorkerIndex) {
        let mut state = self.lock();
        let Some(connection) = state.participants.get_mut(&id) else {
            // Left while the worker answered.
            self.media.send(w, Command::RemovePeer { peer: id });
            return;
        };
        connection.worker = Some(w);
        let meeting = connection.meeting;
        if let Some(live) = state.meetings.get_mut(&meeting) {
            live.attached(id);
        }
        self.carry_in_background(&mut state, meeting);
    }

    pub(super) async fn answer(&self, id: PeerId, sdp: String) -> Result<(), ProtocolError> {
        let worker = self.lock().participants.get(&id).and_then(|c| c.worker);
        let Some(w) = worker else {
            return Err(ProtocolError::new(
                ErrorCode::NoPendingOffer,
                "the hub has sent no offer to answer",
            ));
        };
        let (reply, done) = oneshot::channel();
        self.media.send(
            w,
            Command::Answer {
                peer: id,
                answer: sdp,
                reply,
            },
        );
        done.await
            .map_err(|_| internal("media worker stopped"))?
            .map_err(sfu_error)
    }
}
