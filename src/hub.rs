//! The hub's signalling logic: sessions join meetings with join codes, the meeting rules decide
//! who receives whom, the media plane is told, and every attendance fact goes to the log before
//! the hub acknowledges it. Implements [`SessionHandler`] for the WebSocket layer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use diemcau_sfu::{Event, PeerId, ProducerInfo, RouterId, SfuError};
use diemcau_signaling::protocol::{MediaState, PROTOCOL_VERSION, ParticipantInfo};
use diemcau_signaling::{ClientMessage, CloseReason, ErrorCode, Outbox, ProtocolError, Role};
use diemcau_signaling::{ServerMessage, SessionHandler};
use tokio::sync::oneshot;

use crate::attendance::{EventKind, LeaveReason, Millis, Reception};
use crate::media::{Command, MediaEvents, MediaPlane};
use crate::meeting::{JoinError, Meeting};
use crate::store::{CodeError, MeetingState, Recorder, Store, StoreError, now_millis};

/// Shared state of the running hub.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    media: MediaPlane,
    store: Store,
    recorder: Recorder,
    next_id: AtomicU64,
    /// Prefix that makes session ids unique across restarts of the hub.
    boot: String,
    max_participants: usize,
    grace: Millis,
}

#[derive(Debug, Default)]
struct State {
    /// Meetings with at least one participant connected.
    meetings: HashMap<i64, Meeting>,
    participants: HashMap<PeerId, Participant>,
}

#[derive(Debug)]
struct Participant {
    meeting: i64,
    router: RouterId,
    info: ParticipantInfo,
    outbox: Outbox,
    /// The media worker holding this participant's peer, once its first offer is answered.
    worker: Option<usize>,
    producers: Vec<ProducerInfo>,
    /// For sites: the attendance session.
    attendance: Option<SiteSession>,
}

#[derive(Debug, Clone)]
struct SiteSession {
    site: String,
    session: String,
}

/// Where a WebSocket comes from, for the attendance log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub address: Option<SocketAddr>,
    pub user_agent: String,
}

/// One WebSocket session's state: joined to a meeting or not.
#[derive(Debug)]
pub struct Session {
    outbox: Outbox,
    client: ClientInfo,
    participant: Option<PeerId>,
}

/// Why an organizer's request about a meeting is refused.
#[derive(Debug, thiserror::Error)]
pub enum MeetingError {
    #[error("meeting {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hub {
    pub fn new(
        media: MediaPlane,
        store: Store,
        recorder: Recorder,
        max_participants: usize,
        grace: Millis,
    ) -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            media,
            store,
            recorder,
            next_id: AtomicU64::new(1),
            boot: format!("{:x}", now_millis()),
            max_participants,
            grace,
        }
    }

    pub fn media(&self) -> &MediaPlane {
        &self.media
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Participants connected in every meeting.
    pub fn participant_count(&self) -> usize {
        self.lock().participants.len()
    }

    /// Every few seconds, notes which site sessions are alive (see [`Store::touch_sessions`]).
    pub async fn run_liveness(self: std::sync::Arc<Self>, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let sessions: Vec<(i64, String)> = self
                .lock()
                .participants
                .values()
                .filter_map(|p| {
                    p.attendance
                        .as_ref()
                        .map(|a| (p.meeting, a.session.clone()))
                })
                .collect();
            if sessions.is_empty() {
                continue;
            }
            let store = self.store.clone();
            let touched =
                tokio::task::spawn_blocking(move || store.touch_sessions(&sessions, now_millis()))
                    .await;
            if let Ok(Err(e)) = touched {
                tracing::warn!("liveness not recorded: {e}");
            }
        }
    }

    /// Handles the media workers' events until they stop.
    pub async fn run_media_events(self: std::sync::Arc<Self>, mut events: MediaEvents) {
        while let Some((worker, event)) = events.recv().await {
            self.on_media_event(worker, event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a meeting: its time counts in reports from now.
    pub async fn start_meeting(&self, id: i64) -> Result<(), MeetingError> {
        let view = self.meeting(id)?;
        if view.state != MeetingState::Scheduled {
            return Err(MeetingError::Conflict(format!(
                "meeting {id} has already been started"
            )));
        }
        self.recorder
            .append(id, now_millis(), EventKind::MeetingStarted)
            .await?;
        tracing::info!(meeting = id, "meeting started");
        Ok(())
    }

    /// Closes a meeting: every connected participant's session ends.
    pub async fn end_meeting(&self, id: i64) -> Result<(), MeetingError> {
        let view = self.meeting(id)?;
        if view.state != MeetingState::InProgress {
            return Err(MeetingError::Conflict(format!(
                "meeting {id} is not in progress"
            )));
        }
        let at = now_millis();
        let ended = self.recorder.append(id, at, EventKind::MeetingEnded);
        let members: Vec<PeerId> = self
            .lock()
            .participants
            .iter()
            .filter(|(_, p)| p.meeting == id)
            .map(|(peer, _)| *peer)
            .collect();
        let mut pending = Vec::new();
        for peer in members {
            if let Some((outbox, logged)) = self.remove(peer, LeaveReason::MeetingEnded, at) {
                outbox.close_with(error_message(
                    ErrorCode::MeetingEnded,
                    "the organizer has ended the meeting",
                ));
                pending.extend(logged.map(|l| l.future));
            }
        }
        ended.await?;
        for logged in pending {
            logged.await?;
        }
        tracing::info!(meeting = id, "meeting ended");
        Ok(())
    }

    /// Ends every session before the hub stops, recording each site as left by shutdown.
    pub async fn shutdown_sessions(&self) {
        let at = now_millis();
        let peers: Vec<PeerId> = self.lock().participants.keys().copied().collect();
        let mut pending = Vec::new();
        for peer in peers {
            if let Some((outbox, logged)) = self.remove(peer, LeaveReason::HubShutdown, at) {
                outbox.close_with(error_message(
                    ErrorCode::Internal,
                    "the hub is shutting down; the page will reconnect when it is back",
                ));
                pending.extend(logged.map(|l| l.future));
            }
        }
        for logged in pending {
            if let Err(e) = logged.await {
                tracing::error!("recording a shutdown leave failed: {e}");
            }
        }
    }

    fn meeting(&self, id: i64) -> Result<crate::store::MeetingView, MeetingError> {
        self.store.meeting(id).map_err(|e| match e {
            StoreError::NotFound(_) => MeetingError::NotFound(id),
            other => MeetingError::Store(other),
        })
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
                let meeting_id = publisher.meeting;
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
                    p.outbox.send(ServerMessage::Offer { sdp });
                }
            }
            Event::PeerConnected(peer) => {
                if let Some(p) = state.participants.get(&peer) {
                    p.outbox.send(ServerMessage::MediaState {
                        state: MediaState::Connected,
                    });
                    self.log_media(p, Reception::Video);
                }
            }
            Event::PeerClosed(peer) => {
                tracing::info!(%peer, worker, "media connection closed");
                let Some(p) = state.participants.get_mut(&peer) else {
                    return;
                };
                p.worker = None;
                let producers = std::mem::take(&mut p.producers);
                p.outbox.send(ServerMessage::MediaState {
                    state: MediaState::Disconnected,
                });
                self.log_media(p, Reception::Nothing);
                self.remove_producers(&producers);
            }
            Event::Quality { peer, quality } => {
                let Some(p) = state.participants.get(&peer) else {
                    return;
                };
                let Some(a) = &p.attendance else { return };
                let logged = self.recorder.append(
                    p.meeting,
                    now_millis(),
                    EventKind::QualitySample {
                        site: a.site.clone(),
                        session: a.session.clone(),
                        bitrate_in_kbps: quality.bitrate_in_kbps,
                        bitrate_out_kbps: quality.bitrate_out_kbps,
                        loss_permille: quality.loss_permille,
                        rtt_ms: quality.rtt_ms,
                    },
                );
                tokio::spawn(report_failure(logged));
            }
        }
    }

    /// Records what a site receives (in the order of the calls; written in the background).
    fn log_media(&self, p: &Participant, media: Reception) {
        if let Some(a) = &p.attendance {
            let logged = self.recorder.append(
                p.meeting,
                now_millis(),
                EventKind::MediaChanged {
                    site: a.site.clone(),
                    session: a.session.clone(),
                    media,
                },
            );
            tokio::spawn(report_failure(logged));
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

    async fn join(
        &self,
        session: &mut Session,
        code: &str,
        meeting: Option<i64>,
    ) -> Result<ServerMessage, ProtocolError> {
        if session.participant.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "this session has joined already; send leave first",
            ));
        }
        let grant = self.store.resolve_code(code, meeting).map_err(|e| {
            let code = match e {
                CodeError::Unknown => ErrorCode::CodeUnknown,
                CodeError::Revoked => ErrorCode::CodeRevoked,
                CodeError::OtherMeeting => ErrorCode::CodeOtherMeeting,
                CodeError::MeetingEnded => ErrorCode::MeetingEnded,
            };
            ProtocolError::new(code, e.to_string())
        })?;
        let title = self
            .store
            .meeting(grant.meeting_id)
            .map(|m| m.plan.title)
            .map_err(|e| internal(&e.to_string()))?;
        let id = PeerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (role, name, site) = match &grant.site {
            Some(site) => (Role::Site, site.name.clone(), Some(site.code.clone())),
            None => (Role::Studio, grant.studio_name.clone(), None),
        };
        let info = ParticipantInfo {
            id: id.to_string(),
            name: name.clone(),
            role,
            site: site.clone(),
        };
        let attendance = site.as_ref().map(|site| SiteSession {
            site: site.clone(),
            session: format!("{}-{}", self.boot, id),
        });

        // A site joining again replaces its earlier session.
        let replaced = site.as_ref().and_then(|code| {
            self.lock()
                .participants
                .iter()
                .find(|(_, p)| {
                    p.meeting == grant.meeting_id
                        && p.attendance.as_ref().is_some_and(|a| &a.site == code)
                })
                .map(|(peer, _)| *peer)
        });
        let now = now_millis();
        let mut previous = None;
        if let Some(old) = replaced
            && let Some((outbox, logged)) = self.remove(old, LeaveReason::NetworkTimeout, now)
        {
            outbox.close_with(error_message(
                ErrorCode::Replaced,
                "this site joined again from another page, which took over",
            ));
            previous = logged_session(&logged);
            if let Some(logged) = logged {
                logged.future.await.map_err(|e| internal(&e.to_string()))?;
            }
        }

        {
            let mut state = self.lock();
            let State {
                meetings,
                participants,
            } = &mut *state;
            let meeting = meetings.entry(grant.meeting_id).or_insert_with(|| {
                Meeting::new(
                    grant.meeting_id.to_string(),
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
                    meetings.remove(&grant.meeting_id);
                }
                return Err(ProtocolError::new(code, e.to_string()));
            }
            let router = meeting.router;
            participants.insert(
                id,
                Participant {
                    meeting: grant.meeting_id,
                    router,
                    info: info.clone(),
                    outbox: session.outbox.clone(),
                    worker: None,
                    producers: Vec::new(),
                    attendance: attendance.clone(),
                },
            );
        }

        // The join is acknowledged only once it is in the log.
        if let Some(a) = &attendance {
            if previous.is_none() {
                previous = self
                    .store
                    .last_leave(grant.meeting_id, &a.site)
                    .map_err(|e| internal(&e.to_string()))?
                    .filter(|(_, at)| now - at <= self.grace)
                    .map(|(session, _)| session);
            }
            let client = session.client.user_agent.clone();
            let address = session
                .client
                .address
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let kind = match previous {
                Some(previous_session) => EventKind::SiteReconnected {
                    site: a.site.clone(),
                    session: a.session.clone(),
                    previous_session,
                    client,
                    address,
                },
                None => EventKind::SiteJoined {
                    site: a.site.clone(),
                    session: a.session.clone(),
                    client,
                    address,
                },
            };
            if let Err(e) = self.recorder.append(grant.meeting_id, now, kind).await {
                self.remove(id, LeaveReason::Closed, now);
                return Err(internal(&format!("the join could not be recorded: {e}")));
            }
        }

        let others = {
            let state = self.lock();
            let mut others = Vec::new();
            if let Some(meeting) = state.meetings.get(&grant.meeting_id) {
                for (other, _) in meeting.members() {
                    if other == id {
                        continue;
                    }
                    if let Some(p) = state.participants.get(&other) {
                        others.push(p.info.clone());
                        p.outbox.send(ServerMessage::ParticipantJoined {
                            participant: info.clone(),
                        });
                    }
                }
            }
            others
        };
        session.participant = Some(id);
        tracing::info!(meeting = grant.meeting_id, participant = %id, ?role, "joined");
        Ok(ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            meeting: grant.meeting_id.to_string(),
            title,
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

    /// The participant's peer now lives on worker `w`: subscribe it to what it should receive.
    fn attach(&self, id: PeerId, w: usize) {
        let mut state = self.lock();
        let Some(p) = state.participants.get_mut(&id) else {
            // Left while the worker answered.
            self.media.send(w, Command::RemovePeer { peer: id });
            return;
        };
        p.worker = Some(w);
        let meeting_id = p.meeting;
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

    async fn head_count(
        &self,
        id: PeerId,
        count: u32,
        confirmed_by: String,
        position: String,
    ) -> Result<ServerMessage, ProtocolError> {
        let (meeting, site) = {
            let state = self.lock();
            let p = state
                .participants
                .get(&id)
                .ok_or_else(|| internal("participant vanished"))?;
            let Some(a) = &p.attendance else {
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "only a site declares its head count",
                ));
            };
            (p.meeting, a.site.clone())
        };
        let event = self
            .recorder
            .append(
                meeting,
                now_millis(),
                EventKind::HeadCount {
                    site,
                    count,
                    confirmed_by,
                    position,
                },
            )
            .await
            .map_err(|e| internal(&format!("the head count could not be recorded: {e}")))?;
        Ok(ServerMessage::HeadCountRecorded {
            count,
            at: event.at,
        })
    }

    /// Takes a participant out of its meeting and the media plane. Returns its outbox and, for
    /// a site, the pending write of its `site_left` event.
    fn remove(
        &self,
        id: PeerId,
        reason: LeaveReason,
        at: Millis,
    ) -> Option<(Outbox, Option<LoggedLeave>)> {
        let mut state = self.lock();
        let p = state.participants.remove(&id)?;
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
                        other.outbox.send(ServerMessage::ParticipantLeft {
                            participant: id.to_string(),
                        });
                    }
                }
            }
        }
        let logged = p.attendance.map(|a| LoggedLeave {
            session: a.session.clone(),
            future: Box::pin(self.recorder.append(
                p.meeting,
                at,
                EventKind::SiteLeft {
                    site: a.site,
                    session: a.session,
                    reason,
                },
            )),
        });
        tracing::info!(meeting = p.meeting, participant = %id, reason = reason.as_str(), "left");
        Some((p.outbox, logged))
    }

    async fn leave(&self, id: PeerId, reason: LeaveReason) {
        if let Some((_, Some(logged))) = self.remove(id, reason, now_millis())
            && let Err(e) = logged.future.await
        {
            tracing::error!(participant = %id, "recording a leave failed: {e}");
        }
    }
}

/// A `site_left` on its way to disk.
struct LoggedLeave {
    session: String,
    future: PendingEvent,
}

type PendingEvent = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<crate::attendance::Event, StoreError>> + Send>,
>;

fn logged_session(logged: &Option<LoggedLeave>) -> Option<String> {
    logged.as_ref().map(|l| l.session.clone())
}

async fn report_failure(
    logged: impl std::future::Future<Output = Result<crate::attendance::Event, StoreError>>,
) {
    if let Err(e) = logged.await {
        tracing::error!("attendance event not recorded: {e}");
    }
}

impl SessionHandler for Hub {
    type Session = Session;
    type ClientInfo = ClientInfo;

    fn open(&self, outbox: Outbox, client: ClientInfo) -> Session {
        Session {
            outbox,
            client,
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
        if let ClientMessage::Join { code, meeting } = &message {
            return self.join(session, code, *meeting).await.map(Some);
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
            ClientMessage::HeadCount {
                count,
                confirmed_by,
                position,
            } => self
                .head_count(id, count, confirmed_by, position)
                .await
                .map(Some),
            ClientMessage::Leave => {
                self.leave(id, LeaveReason::Closed).await;
                session.participant = None;
                Ok(Some(ServerMessage::Left))
            }
            ClientMessage::Join { .. } | ClientMessage::Ping => Ok(None),
        }
    }

    async fn close(&self, session: Session, reason: CloseReason) {
        if let Some(id) = session.participant {
            let reason = match reason {
                CloseReason::ClientClosed | CloseReason::HubClosed => LeaveReason::Closed,
                CloseReason::ConnectionLost => LeaveReason::NetworkTimeout,
            };
            self.leave(id, reason).await;
        }
    }
}

fn error_message(code: ErrorCode, message: &str) -> ServerMessage {
    ProtocolError::new(code, message).to_message()
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
