//! The hub's signalling logic: sessions join meetings with join codes, the meeting rules decide
//! who receives whom, the media plane is told, and every attendance fact goes to the log before
//! the hub acknowledges it. Implements [`SessionHandler`] for the WebSocket layer.
//!
//! - this file: sessions, joining and leaving, media-plane events;
//! - [`chair`]: what the chair does (floor, mute, roll call, calling a site) and site requests;
//! - [`console`]: the chair's live view of every expected site.

mod chair;
mod console;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use diemcau_sfu::{Event, PeerId, ProducerInfo, Quality, RouterId, SfuError};
use diemcau_signaling::protocol::{MediaState, PROTOCOL_VERSION, ParticipantInfo};
use diemcau_signaling::{ClientMessage, CloseReason, ErrorCode, Outbox, ProtocolError, Role};
use diemcau_signaling::{ServerMessage, SessionHandler};
use tokio::sync::oneshot;

use crate::attendance::Reception;
use crate::attendance::{Event as LogEvent, EventKind, ExpectedSite, LeaveReason, Millis};
use crate::media::{Command, MediaEvents, MediaPlane};
use crate::meeting::{ChairError, JoinError, Meeting};
use crate::store::{CodeError, Grant, MeetingState, Recorder, Store, StoreError, now_millis};

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
    /// Meetings with at least one participant or standby page connected.
    meetings: HashMap<i64, Live>,
    participants: HashMap<PeerId, Participant>,
    /// Site pages open but not joined, by session key.
    standby: HashMap<u64, Standby>,
}

/// A meeting while anyone is connected to it: its rules and what the chair's console shows.
#[derive(Debug)]
struct Live {
    rules: Meeting,
    roster: Vec<ExpectedSite>,
    /// Roll calls held so far in this meeting (the next one is numbered one more).
    roll_calls: u32,
    /// Per expected site (by code).
    sites: HashMap<String, SiteLive>,
}

/// What the hub knows of one expected site right now.
#[derive(Debug, Default, Clone)]
struct SiteLive {
    participant: Option<PeerId>,
    connected: bool,
    audio_only: bool,
    quality: Quality,
    last_leave: Option<(LeaveReason, Millis)>,
    head_count: Option<u32>,
    answered_roll_call: bool,
}

#[derive(Debug)]
struct Standby {
    meeting: i64,
    site: String,
    outbox: Outbox,
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
    /// For the studio: the token hash of the organizer's login it chairs with; its logout ends
    /// the studio's session.
    login: Option<String>,
}

#[derive(Debug, Clone)]
struct SiteSession {
    site: String,
    session: String,
}

/// Where a WebSocket comes from, for the attendance log.
#[derive(Debug, Default)]
pub struct ClientInfo {
    pub address: Option<SocketAddr>,
    pub user_agent: String,
    /// The connection's place in the per-address limit, freed with the session.
    pub slot: Option<crate::connections::ConnectionSlot>,
    /// The account logged in with the upgrade request's session cookie, if any, and that
    /// session's token hash (the login is checked again before it grants anything).
    pub login: Option<(crate::auth::Account, String)>,
}

/// One WebSocket session's state: joined to a meeting, on standby, or neither.
#[derive(Debug)]
pub struct Session {
    key: u64,
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

type PendingEvent =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<LogEvent, StoreError>> + Send>>;

/// A `site_left` on its way to disk.
struct LoggedLeave {
    session: String,
    future: PendingEvent,
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

    /// Participants and sites joined in every meeting.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        let sites = state
            .participants
            .values()
            .filter(|p| p.attendance.is_some())
            .count();
        (state.participants.len(), sites)
    }

    /// The worst loss among connected sites in their latest quality sample.
    pub fn worst_loss_permille(&self) -> u32 {
        let state = self.lock();
        state
            .meetings
            .values()
            .flat_map(|live| live.sites.values())
            .filter(|s| s.participant.is_some())
            .map(|s| s.quality.loss_permille)
            .max()
            .unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles the media workers' events until they stop.
    pub async fn run_media_events(self: Arc<Self>, mut events: MediaEvents) {
        while let Some((worker, event)) = events.recv().await {
            self.on_media_event(worker, event);
        }
    }

    /// Every few seconds, notes which site sessions are alive (see [`Store::touch_sessions`]).
    pub async fn run_liveness(self: Arc<Self>, every: Duration) {
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

    /// Opens a meeting: its time counts in reports from now.
    pub async fn start_meeting(&self, id: i64) -> Result<(), MeetingError> {
        let view = self.meeting_view(id)?;
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
        let view = self.meeting_view(id)?;
        if view.state != MeetingState::InProgress {
            return Err(MeetingError::Conflict(format!(
                "meeting {id} is not in progress"
            )));
        }
        let at = now_millis();
        let ended = self.recorder.append(id, at, EventKind::MeetingEnded);
        let (members, standby): (Vec<PeerId>, Vec<Outbox>) = {
            let mut state = self.lock();
            let members = state
                .participants
                .iter()
                .filter(|(_, p)| p.meeting == id)
                .map(|(peer, _)| *peer)
                .collect();
            let standby = state
                .standby
                .extract_if(|_, s| s.meeting == id)
                .map(|(_, s)| s.outbox)
                .collect();
            (members, standby)
        };
        let closing = error_message(
            ErrorCode::MeetingEnded,
            "the organizer has ended the meeting",
        );
        let pending = self.close_sessions(standby, members, LeaveReason::MeetingEnded, at, closing);
        ended.await?;
        for logged in pending {
            logged.await?;
        }
        tracing::info!(meeting = id, "meeting ended");
        Ok(())
    }

    /// Ends the studio sessions chairing with a login that has just ended (its logout): a
    /// chair's rights last no longer than the login they came from.
    pub async fn end_login(&self, token_sha256: &str) {
        let at = now_millis();
        let peers: Vec<PeerId> = self
            .lock()
            .participants
            .iter()
            .filter(|(_, p)| p.login.as_deref() == Some(token_sha256))
            .map(|(id, _)| *id)
            .collect();
        let closing = error_message(
            ErrorCode::LoginRequired,
            "this login has ended; log in again to chair the meeting",
        );
        let pending =
            self.close_sessions(Vec::new(), peers.clone(), LeaveReason::Closed, at, closing);
        for logged in pending {
            let _ = logged.await;
        }
        for peer in peers {
            tracing::info!(participant = %peer, "studio session ended with its login");
        }
    }

    /// Checks, every `every`, that the login of each session chairing a meeting is still
    /// valid, and ends the sessions whose login has ended outside this process: a password
    /// changed or an account disabled with `diemcau account`, or a session expired. A logout
    /// through this hub ends them at once ([`Hub::end_login`]).
    pub async fn run_login_checks(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut logins: Vec<String> = self
                .lock()
                .participants
                .values()
                .filter_map(|p| p.login.clone())
                .collect();
            logins.sort_unstable();
            logins.dedup();
            if logins.is_empty() {
                continue;
            }
            let store = self.store.clone();
            let ended = tokio::task::spawn_blocking(move || {
                let now = now_millis();
                logins
                    .into_iter()
                    .filter(|login| matches!(store.login_session(login, now), Ok(None)))
                    .collect::<Vec<String>>()
            })
            .await
            .unwrap_or_default();
            for login in ended {
                self.end_login(&login).await;
            }
        }
    }

    /// Ends every session before the hub stops, recording each site as left by shutdown.
    pub async fn shutdown_sessions(&self) {
        let at = now_millis();
        let (peers, standby): (Vec<PeerId>, Vec<Outbox>) = {
            let mut state = self.lock();
            let peers = state.participants.keys().copied().collect();
            let standby = state.standby.drain().map(|(_, s)| s.outbox).collect();
            (peers, standby)
        };
        let closing = error_message(
            ErrorCode::Internal,
            "the hub is shutting down; the page will reconnect when it is back",
        );
        for logged in self.close_sessions(standby, peers, LeaveReason::HubShutdown, at, closing) {
            if let Err(e) = logged.await {
                tracing::error!("recording a shutdown leave failed: {e}");
            }
        }
    }

    /// Closes standby pages and takes participants out with `reason`, each session closed with
    /// `closing`. Returns the pending writes of the sites' `site_left` events.
    fn close_sessions(
        &self,
        standby: Vec<Outbox>,
        peers: Vec<PeerId>,
        reason: LeaveReason,
        at: Millis,
        closing: ServerMessage,
    ) -> Vec<PendingEvent> {
        for outbox in standby {
            outbox.close_with(closing.clone());
        }
        let mut pending = Vec::new();
        for peer in peers {
            if let Some((outbox, logged)) = self.remove(peer, reason, at) {
                outbox.close_with(closing.clone());
                pending.extend(logged.map(|l| l.future));
            }
        }
        pending
    }

    fn meeting_view(&self, id: i64) -> Result<crate::store::MeetingView, MeetingError> {
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
                let Some(live) = state.meetings.get(&meeting_id) else {
                    return;
                };
                if info.kind == diemcau_sfu::str0m::media::MediaKind::Audio
                    && live.rules.is_muted(info.peer)
                {
                    self.media.broadcast(|| Command::SetProducerPaused {
                        router: info.router,
                        producer: info.id,
                        paused: true,
                    });
                }
                for (id, _) in live.rules.members() {
                    if live.rules.receives(id, info.peer) {
                        self.consume(&state, id, &info);
                    }
                }
            }
            Event::Offer { peer, sdp } => {
                if let Some(p) = state.participants.get(&peer) {
                    p.outbox.send(ServerMessage::Offer { sdp });
                }
            }
            Event::PeerConnected(peer) => {
                let Some(p) = state.participants.get(&peer) else {
                    return;
                };
                p.outbox.send(ServerMessage::MediaState {
                    state: MediaState::Connected,
                });
                self.log_media(p, Reception::Video);
                let (meeting, site) = (p.meeting, p.attendance.as_ref().map(|a| a.site.clone()));
                if let Some(s) = site_live(&mut state, meeting, site.as_deref()) {
                    s.connected = true;
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
                let (meeting, site) = (p.meeting, p.attendance.as_ref().map(|a| a.site.clone()));
                if let Some(p) = state.participants.get(&peer) {
                    self.log_media(p, Reception::Nothing);
                }
                if let Some(s) = site_live(&mut state, meeting, site.as_deref()) {
                    s.connected = false;
                }
                self.remove_producers(&producers);
            }
            Event::Reception { peer, audio_only } => {
                let Some(p) = state.participants.get(&peer) else {
                    return;
                };
                p.outbox.send(ServerMessage::Reception { audio_only });
                let reception = if audio_only {
                    Reception::AudioOnly
                } else {
                    Reception::Video
                };
                self.log_media(p, reception);
                let (meeting, site) = (p.meeting, p.attendance.as_ref().map(|a| a.site.clone()));
                if let Some(s) = site_live(&mut state, meeting, site.as_deref()) {
                    s.audio_only = audio_only;
                }
            }
            Event::Quality { peer, quality } => {
                let Some(p) = state.participants.get(&peer) else {
                    return;
                };
                let Some(a) = p.attendance.clone() else {
                    return;
                };
                let meeting = p.meeting;
                let logged = self.recorder.append(
                    meeting,
                    now_millis(),
                    EventKind::QualitySample {
                        site: a.site.clone(),
                        session: a.session,
                        bitrate_in_kbps: quality.bitrate_in_kbps,
                        bitrate_out_kbps: quality.bitrate_out_kbps,
                        loss_permille: quality.loss_permille,
                        rtt_ms: quality.rtt_ms,
                    },
                );
                tokio::spawn(report_failure(logged));
                if let Some(s) = site_live(&mut state, meeting, Some(&a.site)) {
                    s.quality = quality;
                }
            }
        }
    }

    /// Tells `subscriber`'s worker to forward `producer` to it (if it has a peer yet).
    fn consume(&self, state: &State, subscriber: PeerId, producer: &ProducerInfo) {
        let Some(p) = state.participants.get(&subscriber) else {
            return;
        };
        if let Some(w) = p.worker {
            let max_layer = state
                .meetings
                .get(&p.meeting)
                .map_or(0, |live| max_layer(live, subscriber, producer.peer));
            self.media.send(
                w,
                Command::AddConsumer {
                    peer: subscriber,
                    producer: producer.clone(),
                    max_layer,
                },
            );
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

    /// Appends an event in the background (for facts whose order matters but whose sender
    /// does not wait for them).
    fn log(&self, meeting: i64, kind: EventKind) {
        tokio::spawn(report_failure(self.recorder.append(
            meeting,
            now_millis(),
            kind,
        )));
    }

    fn remove_producers(&self, producers: &[ProducerInfo]) {
        for p in producers {
            self.media.broadcast(|| Command::RemoveProducer {
                router: p.router,
                producer: p.id,
            });
        }
    }

    /// Checks a join code and makes sure the meeting is live (loading its roster once).
    fn grant(&self, code: &str, meeting: Option<i64>) -> Result<(Grant, String), ProtocolError> {
        let grant = self.store.resolve_code(code, meeting).map_err(|e| {
            let code = match e {
                CodeError::Unknown => ErrorCode::CodeUnknown,
                CodeError::Revoked => ErrorCode::CodeRevoked,
                CodeError::OtherMeeting => ErrorCode::CodeOtherMeeting,
                CodeError::MeetingEnded => ErrorCode::MeetingEnded,
            };
            ProtocolError::new(code, e.to_string())
        })?;
        let view = self
            .store
            .meeting(grant.meeting_id)
            .map_err(|e| internal(&e.to_string()))?;
        self.ensure_live(grant.meeting_id)?;
        Ok((grant, view.plan.title))
    }

    /// Makes sure a meeting is live in memory, loading its roster and history from the store
    /// when it is not (first participant, or again after everyone left).
    fn ensure_live(&self, meeting: i64) -> Result<(), ProtocolError> {
        if self.lock().meetings.contains_key(&meeting) {
            return Ok(());
        }
        let view = self
            .store
            .meeting(meeting)
            .map_err(|e| internal(&e.to_string()))?;
        let history = self
            .store
            .events(meeting)
            .map_err(|e| internal(&e.to_string()))?;
        let live = Live {
            rules: Meeting::new(
                meeting.to_string(),
                RouterId(self.next_id()),
                self.max_participants,
            ),
            sites: console::sites_from_history(&view.plan.roster, &history),
            roll_calls: history
                .iter()
                .filter(|e| matches!(e.kind, EventKind::RollCallStarted { .. }))
                .count() as u32,
            roster: view.plan.roster,
        };
        self.lock().meetings.entry(meeting).or_insert(live);
        Ok(())
    }

    async fn standby(
        &self,
        session: &mut Session,
        code: &str,
        meeting: Option<i64>,
    ) -> Result<ServerMessage, ProtocolError> {
        if session.participant.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "this session has joined already",
            ));
        }
        let (grant, title) = self.grant(code, meeting)?;
        let Some(site) = grant.site else {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "only a site page waits on standby",
            ));
        };
        self.lock().standby.insert(
            session.key,
            Standby {
                meeting: grant.meeting_id,
                site: site.code.clone(),
                outbox: session.outbox.clone(),
            },
        );
        Ok(ServerMessage::StandbyAccepted {
            meeting: grant.meeting_id.to_string(),
            title,
            site: site.code,
            name: site.name,
        })
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
        let (grant, title) = self.grant(code, meeting)?;
        if grant.site.is_none() {
            // Checked now, not at the upgrade: the login may have ended since.
            let account = session.client.login.as_ref().and_then(|(_, token_sha256)| {
                crate::auth::http::account_of_session(self.store(), token_sha256)
            });
            let account = account.as_ref();
            crate::meeting::may_chair(account.map(|a| a.role)).map_err(|e| {
                let code = match e {
                    ChairError::LoginRequired => ErrorCode::LoginRequired,
                    ChairError::NotOrganizer => ErrorCode::Forbidden,
                };
                tracing::warn!(
                    meeting = grant.meeting_id,
                    username = ?account.map(|a| &a.username),
                    "studio join refused: {e}"
                );
                ProtocolError::new(code, e.to_string())
            })?;
        }
        let id = PeerId(self.next_id());
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
            if let Some(logged) = logged {
                previous = Some(logged.session);
                logged.future.await.map_err(|e| internal(&e.to_string()))?;
            }
        }

        // Removing the replaced session (or anyone else leaving) may have emptied the meeting
        // meanwhile: make it live again until it is there under the lock.
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.ensure_live(grant.meeting_id)?;
            let mut state = self.lock();
            if !state.meetings.contains_key(&grant.meeting_id) {
                if attempts < 5 {
                    continue;
                }
                return Err(internal("the meeting closed while joining"));
            }
            state.standby.remove(&session.key);
            let State {
                meetings,
                participants,
                ..
            } = &mut *state;
            let Some(live) = meetings.get_mut(&grant.meeting_id) else {
                return Err(internal("the meeting closed while joining"));
            };
            if let Err(e) = live.rules.join(id, role, name) {
                let code = match e {
                    JoinError::StudioTaken => ErrorCode::StudioTaken,
                    JoinError::Full => ErrorCode::MeetingFull,
                };
                return Err(ProtocolError::new(code, e.to_string()));
            }
            if let Some(site) = &site {
                let s = live.sites.entry(site.clone()).or_default();
                s.participant = Some(id);
                s.connected = false;
                s.audio_only = false;
                s.quality = Quality::default();
            }
            participants.insert(
                id,
                Participant {
                    meeting: grant.meeting_id,
                    router: live.rules.router,
                    info: info.clone(),
                    outbox: session.outbox.clone(),
                    worker: None,
                    producers: Vec::new(),
                    attendance: attendance.clone(),
                    login: match role {
                        Role::Studio => session.client.login.as_ref().map(|(_, t)| t.clone()),
                        Role::Site => None,
                    },
                },
            );
            break;
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

        let (others, floor, roll_call) = {
            let state = self.lock();
            let mut others = Vec::new();
            let (mut floor, mut roll_call) = (None, None);
            if let Some(live) = state.meetings.get(&grant.meeting_id) {
                for (other, _) in live.rules.members() {
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
                floor = Some(chair::floor_message(&state, live));
                roll_call = live.rules.roll_call();
            }
            (others, floor, roll_call)
        };
        session.participant = Some(id);
        // What a newcomer must know at once: the floor, and a roll call waiting for it.
        if let Some(floor) = floor {
            session.outbox.send(floor);
        }
        if let (Some(roll_call), Role::Site) = (roll_call, role) {
            session.outbox.send(ServerMessage::RollCall {
                roll_call,
                active: true,
            });
        }
        if role == Role::Studio {
            // The console follows the `joined` reply in the session's outbox.
            self.send_consoles();
        }
        let username = session
            .client
            .login
            .as_ref()
            .map(|(a, _)| a.username.as_str());
        tracing::info!(meeting = grant.meeting_id, participant = %id, ?role, ?username, "joined");
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
        let Some(live) = state.meetings.get(&meeting_id) else {
            return;
        };
        for (other, _) in live.rules.members() {
            if !live.rules.receives(id, other) {
                continue;
            }
            let Some(publisher) = state.participants.get(&other) else {
                continue;
            };
            for producer in &publisher.producers {
                self.consume(&state, id, producer);
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
        let mut floor_returned = false;
        if let Some(live) = state.meetings.get_mut(&p.meeting) {
            floor_returned = live.rules.leave(id).is_some();
            if let Some(a) = &p.attendance
                && let Some(s) = live.sites.get_mut(&a.site)
                && s.participant == Some(id)
            {
                s.participant = None;
                s.connected = false;
                s.last_leave = Some((reason, at));
            }
        }
        // The floor-returned fact goes before the site-left fact.
        if floor_returned && let Some(a) = &p.attendance {
            self.log(
                p.meeting,
                EventKind::FloorReturned {
                    site: a.site.clone(),
                },
            );
        }
        if let Some(live) = state.meetings.get(&p.meeting) {
            let floor = chair::floor_message(&state, live);
            for (m, _) in live.rules.members() {
                if let Some(other) = state.participants.get(&m) {
                    other.outbox.send(ServerMessage::ParticipantLeft {
                        participant: id.to_string(),
                    });
                    if floor_returned {
                        other.outbox.send(floor.clone());
                    }
                }
            }
        }
        drop_if_idle(&mut state, p.meeting);
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

/// Best layer a subscriber takes of a publisher: full quality of the studio and of the site
/// holding the floor; the lowest of every other site (the chair's wall of small pictures).
fn max_layer(live: &Live, subscriber: PeerId, publisher: PeerId) -> u8 {
    let publisher_is_site = live.rules.role(publisher) == Some(Role::Site);
    let subscriber_is_studio = live.rules.role(subscriber) == Some(Role::Studio);
    if subscriber_is_studio && publisher_is_site && live.rules.floor() != Some(publisher) {
        0
    } else {
        FULL_QUALITY
    }
}

/// Any layer the bandwidth allows.
const FULL_QUALITY: u8 = u8::MAX;

/// The console entry of a site of a live meeting.
fn site_live<'a>(
    state: &'a mut State,
    meeting: i64,
    site: Option<&str>,
) -> Option<&'a mut SiteLive> {
    state.meetings.get_mut(&meeting)?.sites.get_mut(site?)
}

/// Forgets a meeting nobody is connected to any more.
fn drop_if_idle(state: &mut State, meeting: i64) {
    let idle = state
        .meetings
        .get(&meeting)
        .is_some_and(|live| live.rules.is_empty())
        && !state.standby.values().any(|s| s.meeting == meeting);
    if idle {
        state.meetings.remove(&meeting);
    }
}

async fn report_failure(logged: impl std::future::Future<Output = Result<LogEvent, StoreError>>) {
    if let Err(e) = logged.await {
        tracing::error!("attendance event not recorded: {e}");
    }
}

impl SessionHandler for Hub {
    type Session = Session;
    type ClientInfo = ClientInfo;

    fn open(&self, outbox: Outbox, client: ClientInfo) -> Session {
        Session {
            key: self.next_id(),
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
        match &message {
            ClientMessage::Ping => return Ok(Some(ServerMessage::Pong)),
            ClientMessage::Join { code, meeting } => {
                return self
                    .join(session, code.as_str(), meeting.map(|m| m.0))
                    .await
                    .map(Some);
            }
            ClientMessage::Standby { code, meeting } => {
                return self
                    .standby(session, code.as_str(), meeting.map(|m| m.0))
                    .await
                    .map(Some);
            }
            _ => {}
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
                self.leave(id, LeaveReason::Closed).await;
                session.participant = None;
                Ok(Some(ServerMessage::Left))
            }
            ClientMessage::Join { .. } | ClientMessage::Standby { .. } | ClientMessage::Ping => {
                Ok(None)
            }
            other => self.chair_or_site_action(id, other).await,
        }
    }

    async fn close(&self, session: Session, reason: CloseReason) {
        {
            let mut state = self.lock();
            if let Some(standby) = state.standby.remove(&session.key) {
                drop_if_idle(&mut state, standby.meeting);
            }
        }
        if let Some(id) = session.participant {
            let reason = match reason {
                CloseReason::ClientClosed | CloseReason::HubClosed => LeaveReason::Closed,
                CloseReason::ConnectionLost | CloseReason::LimitExceeded => {
                    LeaveReason::NetworkTimeout
                }
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
