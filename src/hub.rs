//! The hub's signalling logic: sessions join meetings, the meeting rules decide who receives
//! whom, and the media plane is told. Implements [`SessionHandler`] for the WebSocket layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use diemcau_sfu::{Event, PeerId, ProducerInfo, RouterId, SfuError};
use diemcau_signaling::SessionHandler;
use diemcau_signaling::protocol::{MediaState, PROTOCOL_VERSION, ParticipantInfo};
use diemcau_signaling::{ClientMessage, ErrorCode, Outbox, ProtocolError, Role, ServerMessage};
use tokio::sync::oneshot;

use crate::media::{Command, MediaEvents, MediaPlane};
use crate::meeting::{JoinError, Meeting};

/// Shared state of the running hub.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    media: MediaPlane,
    next_id: AtomicU64,
    max_participants: usize,
}

#[derive(Debug, Default)]
struct State {
    meetings: HashMap<String, Meeting>,
    participants: HashMap<PeerId, Participant>,
}

#[derive(Debug)]
struct Participant {
    meeting: String,
    router: RouterId,
    info: ParticipantInfo,
    outbox: Outbox,
    /// The media worker holding this participant's peer, once its first offer is answered.
    worker: Option<usize>,
    producers: Vec<ProducerInfo>,
}

/// One WebSocket session's state: joined to a meeting or not.
#[derive(Debug)]
pub struct Session {
    outbox: Outbox,
    participant: Option<PeerId>,
}

impl Hub {
    pub fn new(media: MediaPlane, max_participants: usize) -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            media,
            next_id: AtomicU64::new(1),
            max_participants,
        }
    }

    pub fn media(&self) -> &MediaPlane {
        &self.media
    }

    /// Stops the media workers (after the HTTP server has stopped).
    pub fn into_media(self) -> MediaPlane {
        self.media
    }

    /// Number of participants in every meeting.
    pub fn participant_count(&self) -> usize {
        self.lock().participants.len()
    }

    /// Handles the media workers' events until they stop.
    pub async fn run_media_events(self: Arc<Self>, mut events: MediaEvents) {
        while let Some((worker, event)) = events.recv().await {
            self.on_media_event(worker, event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn on_media_event(&self, worker: usize, event: Event) {
        let mut state = self.lock();
        match event {
            Event::ProducerAdded(info) => {
                let Some(publisher) = state.participants.get_mut(&info.peer) else {
                    // Left meanwhile: its worker drops the producer with the peer.
                    return;
                };
                publisher.producers.push(info.clone());
                let meeting_id = publisher.meeting.clone();
                let Some(meeting) = state.meetings.get(&meeting_id) else {
                    return;
                };
                for (id, _) in meeting.members() {
                    if !meeting.receives(id, info.peer) {
                        continue;
                    }
                    if let Some(w) = state.participants.get(&id).and_then(|p| p.worker) {
                        self.media.send(
                            w,
                            Command::AddConsumer {
                                peer: id,
                                producer: info.clone(),
                            },
                        );
                    }
                }
            }
            Event::Offer { peer, sdp } => {
                if let Some(p) = state.participants.get(&peer) {
                    let _ = p.outbox.send(ServerMessage::Offer { sdp });
                }
            }
            Event::PeerConnected(peer) => {
                if let Some(p) = state.participants.get(&peer) {
                    let _ = p.outbox.send(ServerMessage::MediaState {
                        state: MediaState::Connected,
                    });
                }
            }
            Event::PeerClosed(peer) => {
                tracing::info!(%peer, worker, "media connection closed");
                let Some(p) = state.participants.get_mut(&peer) else {
                    return;
                };
                p.worker = None;
                let producers = std::mem::take(&mut p.producers);
                let _ = p.outbox.send(ServerMessage::MediaState {
                    state: MediaState::Disconnected,
                });
                self.remove_producers(&producers);
            }
        }
    }

    fn remove_producers(&self, producers: &[ProducerInfo]) {
        for p in producers {
            self.media.broadcast(|| Command::RemoveProducer {
                router: p.router,
                producer: p.id,
            });
        }
    }

    fn join(
        &self,
        session: &mut Session,
        meeting_id: String,
        role: Role,
        name: String,
    ) -> Result<ServerMessage, ProtocolError> {
        if session.participant.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "this session has joined already; send leave first",
            ));
        }
        let id = PeerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let info = ParticipantInfo {
            id: id.to_string(),
            name: name.clone(),
            role,
        };
        let mut state = self.lock();
        let State {
            meetings,
            participants,
        } = &mut *state;
        let meeting = meetings.entry(meeting_id.clone()).or_insert_with(|| {
            Meeting::new(
                meeting_id.clone(),
                RouterId(self.next_id.fetch_add(1, Ordering::Relaxed)),
                self.max_participants,
            )
        });
        if let Err(e) = meeting.join(id, role, name) {
            let code = match e {
                JoinError::StudioTaken => ErrorCode::StudioTaken,
                JoinError::Full => ErrorCode::MeetingFull,
            };
            if meeting.is_empty() {
                meetings.remove(&meeting_id);
            }
            return Err(ProtocolError::new(code, e.to_string()));
        }
        let mut others = Vec::new();
        for (other, _) in meeting.members() {
            if let Some(p) = participants.get(&other) {
                others.push(p.info.clone());
                let _ = p.outbox.send(ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                });
            }
        }
        let router = meeting.router;
        participants.insert(
            id,
            Participant {
                meeting: meeting_id.clone(),
                router,
                info: info.clone(),
                outbox: session.outbox.clone(),
                worker: None,
                producers: Vec::new(),
            },
        );
        session.participant = Some(id);
        tracing::info!(meeting = %meeting_id, participant = %id, ?role, "joined");
        Ok(ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            meeting: meeting_id,
            participant: info,
            participants: others,
        })
    }

    async fn offer(&self, id: PeerId, sdp: String) -> Result<ServerMessage, ProtocolError> {
        let (worker, router) = {
            let state = self.lock();
            let p = state
                .participants
                .get(&id)
                .ok_or_else(|| internal("participant vanished"))?;
            (p.worker, p.router)
        };
        let (reply, answer) = oneshot::channel();
        match worker {
            Some(w) => self.media.send(
                w,
                Command::Offer {
                    peer: id,
                    offer: sdp,
                    reply,
                },
            ),
            None => {
                let w = self.media.pick_worker();
                self.media.send(
                    w,
                    Command::AddPeer {
                        peer: id,
                        router,
                        offer: sdp,
                        reply,
                    },
                );
                let answer = answer
                    .await
                    .map_err(|_| internal("media worker stopped"))?
                    .map_err(sfu_error)?;
                self.attach(id, w);
                return Ok(ServerMessage::Answer { sdp: answer });
            }
        }
        let answer = answer
            .await
            .map_err(|_| internal("media worker stopped"))?
            .map_err(sfu_error)?;
        Ok(ServerMessage::Answer { sdp: answer })
    }

    /// The participant's peer now lives on worker `w`: subscribe it to what it should receive.
    fn attach(&self, id: PeerId, w: usize) {
        let mut state = self.lock();
        let Some(p) = state.participants.get_mut(&id) else {
            // Left while the worker answered.
            self.media.send(w, Command::RemovePeer { peer: id });
            return;
        };
        p.worker = Some(w);
        let meeting_id = p.meeting.clone();
        let Some(meeting) = state.meetings.get(&meeting_id) else {
            return;
        };
        for (other, _) in meeting.members() {
            if !meeting.receives(id, other) {
                continue;
            }
            let Some(publisher) = state.participants.get(&other) else {
                continue;
            };
            for producer in &publisher.producers {
                self.media.send(
                    w,
                    Command::AddConsumer {
                        peer: id,
                        producer: producer.clone(),
                    },
                );
            }
        }
    }

    async fn answer(&self, id: PeerId, sdp: String) -> Result<(), ProtocolError> {
        let worker = self.lock().participants.get(&id).and_then(|p| p.worker);
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

    fn leave(&self, id: PeerId) {
        let mut state = self.lock();
        let Some(p) = state.participants.remove(&id) else {
            return;
        };
        if let Some(w) = p.worker {
            self.media.send(w, Command::RemovePeer { peer: id });
        }
        self.remove_producers(&p.producers);
        if let Some(meeting) = state.meetings.get_mut(&p.meeting) {
            meeting.leave(id);
            if meeting.is_empty() {
                state.meetings.remove(&p.meeting);
            } else {
                let members: Vec<PeerId> = meeting.members().map(|(m, _)| m).collect();
                for m in members {
                    if let Some(other) = state.participants.get(&m) {
                        let _ = other.outbox.send(ServerMessage::ParticipantLeft {
                            participant: id.to_string(),
                        });
                    }
                }
            }
        }
        tracing::info!(meeting = %p.meeting, participant = %id, "left");
    }
}

impl SessionHandler for Hub {
    type Session = Session;

    fn open(&self, outbox: Outbox) -> Session {
        Session {
            outbox,
            participant: None,
        }
    }

    async fn handle(
        &self,
        session: &mut Session,
        message: ClientMessage,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        if let ClientMessage::Ping = message {
            return Ok(Some(ServerMessage::Pong));
        }
        if let ClientMessage::Join {
            meeting,
            role,
            name,
        } = message
        {
            return self.join(session, meeting, role, name).map(Some);
        }
        let Some(id) = session.participant else {
            return Err(ProtocolError::new(
                ErrorCode::NotJoined,
                "send join before any other message",
            ));
        };
        match message {
            ClientMessage::Offer { sdp } => self.offer(id, sdp).await.map(Some),
            ClientMessage::Answer { sdp } => self.answer(id, sdp).await.map(|()| None),
            ClientMessage::Leave => {
                self.leave(id);
                session.participant = None;
                Ok(Some(ServerMessage::Left))
            }
            ClientMessage::Join { .. } | ClientMessage::Ping => Ok(None),
        }
    }

    async fn close(&self, session: Session) {
        if let Some(id) = session.participant {
            self.leave(id);
        }
    }
}

fn internal(message: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::Internal, message)
}

fn sfu_error(e: SfuError) -> ProtocolError {
    let code = match e {
        SfuError::InvalidSdp(_) => ErrorCode::InvalidSdp,
        SfuError::NegotiationInProgress => ErrorCode::NegotiationInProgress,
        SfuError::NoPendingOffer => ErrorCode::NoPendingOffer,
        SfuError::UnknownPeer(_) | SfuError::PeerExists(_) | SfuError::Config(_) => {
            ErrorCode::Internal
        }
    };
    ProtocolError::new(code, e.to_string())
}
