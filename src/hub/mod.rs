//! The hub: the driver of the meeting core. It turns signalling messages and the media
//! workers' events into inputs of each [`LiveMeeting`], and carries the outputs out: messages to
//! the WebSocket sessions, commands to the media workers, events to the attendance log (an
//! event a client waits for is acknowledged only once it is on disk). It decides nothing about
//! a meeting itself. Implements [`SessionHandler`] for the WebSocket layer.
//!
//! - this file: the hub's state and the WebSocket sessions;
//! - [`join`]: join codes, opening a meeting, joining, standby pages, leaving;
//! - [`actions`]: chair actions and site requests, translated to the core;
//! - [`programme`]: the programme over HTTP, a studio encoder's seat (WHIP) and players'
//!   (WHEP), and the tasks holding them;
//! - [`negotiation`]: offers and answers with the media workers, and their events;
//! - [`lifecycle`]: starting and ending meetings, ended logins, shutdown;
//! - [`lease`]: which hub runs a meeting when hubs share a database, and taking one over;
//! - [`periodic`]: liveness marks, the chair's console, login checks;
//! - [`carry`]: how each output of the core is carried out.

mod actions;
mod carry;
mod join;
mod lease;
mod lifecycle;
mod negotiation;
mod peers;
mod periodic;
mod probe;
mod programme;
mod recording;
mod relays;

pub use lease::{LEASE_MILLIS, Sharing};
pub use probe::ProbeError;
pub use programme::{HttpSessionKind, StopSessionError};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use diemcau_sfu::{PeerId, SfuError};
use diemcau_signaling::{ClientMessage, CloseReason, ErrorCode, Outbox, ProtocolError};
use diemcau_signaling::{MeetingId, ServerMessage, SessionHandler};

pub use lifecycle::MeetingError;

use crate::attendance::LeaveReason;
use crate::media::MediaPlane;
use crate::meeting::{IdAllocator, LiveMeeting, MeetingConfig, PageKey};
use crate::store::{Recorder, Store};

/// The running hub's meetings and sessions.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<HubState>,
    media: MediaPlane,
    store: Store,
    recorder: Recorder,
    /// Writes the meetings' recordings; `None`: the hub records nothing.
    recordings: Option<crate::recording::Recordings>,
    /// Participants, routers, consumers and session keys, unique in this process.
    ids: IdAllocator,
    /// When this run of the hub started: the store notes the run's liveness and clean stop
    /// under it, and attendance session ids start with it (unique across restarts).
    started_at: crate::attendance::Millis,
    config: MeetingConfig,
    /// Set when the hub begins to stop: no join or standby is taken after it.
    stopping: std::sync::atomic::AtomicBool,
    /// With a shared database: this hub among the others ([`lease`]).
    sharing: Option<Sharing>,
    /// When the leases were last renewed (or one taken).
    leases: Mutex<std::time::Instant>,
    /// Held while a meeting is opened (its lease taken, its cut sessions closed, its log
    /// read): two joins arriving together open it once.
    opening: tokio::sync::Mutex<()>,
}

/// Everything behind the hub's one lock, which is never held across an await.
#[derive(Debug, Default)]
struct HubState {
    /// Meetings opened since the hub started (an ended one refuses joins).
    meetings: HashMap<MeetingId, LiveMeeting>,
    /// The IO side of each participant.
    participants: HashMap<PeerId, Connection>,
    /// Site pages open on standby, by session key.
    pages: HashMap<PageKey, Page>,
    /// Connection checks alive.
    probes: probe::Probes,
    /// Studio encoders publishing (WHIP) and players watching (WHEP), by resource id.
    http_sessions: HashMap<String, programme::HttpSession>,
    /// The producers each meeting's recording taps.
    taps: recording::Taps,
}

/// What the driver holds for a participant: where to reach it. States: joined → on a media
/// worker once its first offer is answered → gone when the core says `Removed`.
#[derive(Debug)]
struct Connection {
    meeting: MeetingId,
    outbox: Outbox,
    /// The media worker holding its peer.
    worker: Option<crate::media::WorkerIndex>,
    /// A WHEP player's: the m-lines of its offer are all it ever has (no renegotiation).
    fixed: bool,
    /// For the studio: the token hash of the organizer's login it chairs with; its end ends the
    /// studio's session.
    login: Option<String>,
}

#[derive(Debug)]
struct Page {
    meeting: MeetingId,
    outbox: Outbox,
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
    pub login: Option<(crate::store::Account, String)>,
}

/// One WebSocket session: neither joined nor on standby → on standby → joined → left.
#[derive(Debug)]
pub struct Session {
    key: PageKey,
    outbox: Outbox,
    client: ClientInfo,
    participant: Option<PeerId>,
}

impl Hub {
    pub fn new(
        media: MediaPlane,
        store: Store,
        recorder: Recorder,
        config: MeetingConfig,
        started_at: crate::attendance::Millis,
    ) -> Hub {
        Hub {
            state: Mutex::new(HubState::default()),
            media,
            store,
            recorder,
            recordings: None,
            ids: IdAllocator::default(),
            started_at,
            config,
            stopping: std::sync::atomic::AtomicBool::new(false),
            sharing: None,
            leases: Mutex::new(std::time::Instant::now()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// The hub shares its database with other hubs: meetings run under leases.
    pub fn sharing(mut self, sharing: Sharing) -> Hub {
        self.sharing = Some(sharing);
        self
    }

    pub fn media(&self) -> &MediaPlane {
        &self.media
    }

    /// The attendance log's writer.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The hub's `--recording`: the default of new meetings, and `off` for all.
    pub fn recording_mode(&self) -> crate::meeting::RecordingMode {
        self.config.recording
    }

    /// Most WHEP viewers of one meeting at once.
    pub fn max_viewers(&self) -> usize {
        self.config.max_viewers
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
        let sites = state.meetings.values().map(LiveMeeting::site_count).sum();
        (state.participants.len(), sites)
    }

    /// What child hub `node`'s relays receive from this hub, summed over the meetings they
    /// relay (loss and round trip: the worst): `None` while it relays nothing.
    pub fn node_media(&self, node: &str) -> Option<diemcau_sfu::Quality> {
        let state = self.lock();
        state
            .meetings
            .values()
            .filter_map(|m| m.node_quality(node))
            .reduce(|a, b| diemcau_sfu::Quality {
                bitrate_in_kbps: a.bitrate_in_kbps + b.bitrate_in_kbps,
                bitrate_out_kbps: a.bitrate_out_kbps + b.bitrate_out_kbps,
                loss_permille: a.loss_permille.max(b.loss_permille),
                rtt_ms: a.rtt_ms.max(b.rtt_ms),
                transport: a.transport.or(b.transport),
            })
    }

    /// The worst loss among connected sites in their latest quality sample.
    pub fn worst_loss_permille(&self) -> u32 {
        let state = self.lock();
        state
            .meetings
            .values()
            .map(LiveMeeting::worst_loss_permille)
            .max()
            .unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SessionHandler for Hub {
    type Session = Session;
    type ClientInfo = ClientInfo;

    fn open(&self, outbox: Outbox, client: ClientInfo) -> Session {
        Session {
            key: PageKey(self.ids.next()),
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
                return self.join(session, code, *meeting).await.map(Some);
            }
            ClientMessage::Standby { code, meeting } => {
                return self.standby(session, code, *meeting).await.map(Some);
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
            other => self.act(id, other).await,
        }
    }

    async fn close(&self, session: Session, reason: CloseReason) {
        self.close_page(session.key);
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

fn internal(message: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::Internal, message)
}

fn sfu_error(e: SfuError) -> ProtocolError {
    let code = match e {
        SfuError::InvalidSdp(_) => ErrorCode::InvalidSdp,
        SfuError::NegotiationInProgress => ErrorCode::NegotiationInProgress,
        SfuError::NoPendingOffer => ErrorCode::NoPendingOffer,
        SfuError::UnknownPeer(_)
        | SfuError::PeerExists(_)
        | SfuError::ConsumerExists(_)
        | SfuError::Config(_) => ErrorCode::Internal,
    };
    ProtocolError::new(code, e.to_string())
}
