//! The meeting core: one [`LiveMeeting`] per meeting that someone is connected to, a state
//! machine with no IO in the manner of str0m's `Rtc` and quinn-proto's `Connection`.
//!
//! It takes inputs (a participant joined, left or was replaced; a chair action; a media event;
//! time passing, as a `now` argument) and queues outputs ([`Output`]): route changes for the
//! media plane, messages to participants and standby pages, attendance events to append. It
//! reads no clock, opens no socket and touches no database. Every decision of who may join,
//! who holds the floor and who receives whom at which layer is made here and nowhere else; the
//! hub ([`crate::hub`]) is its driver: it feeds inputs and carries the outputs out.
//!
//! ```
//! use diemcau::meeting::{IdAllocator, LiveMeeting, MeetingConfig, MeetingSetup, Seat, Output};
//! use diemcau_sfu::{PeerId, RouterId};
//! use diemcau_signaling::{MeetingId, SessionId};
//!
//! let setup = MeetingSetup { id: MeetingId(1), title: "Họp".into(), roster: vec![], history: vec![] };
//! let mut meeting = LiveMeeting::new(setup, RouterId(1), MeetingConfig::default(), IdAllocator::default());
//! let now = 1_000;
//! let studio = Seat::Studio { name: "Studio".into(), session: SessionId("s1".into()), relayed: false };
//! let joined = meeting.join(now, PeerId(7), studio, "", "");
//! assert!(joined.is_ok());
//! while let Some(output) = meeting.poll_output() {
//!     // The driver sends messages, appends events, tells the media plane...
//!     let _ = output;
//! }
//! ```

mod chair;
mod console;
mod invariants;
mod join_limit;
mod media;
mod output;
mod presence;
mod rebuild;
mod recording;
mod remote;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diemcau_sfu::str0m::media::{MediaKind, Mid};
use diemcau_sfu::{ConsumerId, PeerId, ProducerId, ProducerInfo, RouterId};
use diemcau_signaling::protocol::{FloorSite, ParticipantInfo, ProgrammeSource, RollCallResult};
use diemcau_signaling::{ErrorCode, MeetingId, ProtocolError, Role, ServerMessage};
use diemcau_signaling::{SessionId, SiteCode};

use chair::RunningRollCall;
pub use chair::{Declaration, FloorAbove};
pub use output::{Output, PageKey, Recipient, Route};
pub use recording::{RecordingMode, RecordingOutput, RecordingSources};

use crate::attendance::{Event, EventKind, ExpectedSite, Millis};
use console::SiteStatus;

/// Hands out ids unique across the hub's meetings (consumers of the media plane). Cheap to
/// clone; every clone draws from the same counter.
#[derive(Debug, Clone)]
pub struct IdAllocator(Arc<AtomicU64>);

impl Default for IdAllocator {
    fn default() -> Self {
        IdAllocator(Arc::new(AtomicU64::new(1)))
    }
}

impl IdAllocator {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the store says of a meeting when the hub opens it.
#[derive(Debug, Clone)]
pub struct MeetingSetup {
    pub id: MeetingId,
    pub title: String,
    /// The expected sites, in the order the console lists them.
    pub roster: Vec<ExpectedSite>,
    /// The meeting's log so far (empty for a meeting nobody joined yet).
    pub history: Vec<Event>,
}

/// The rules' numbers, from the hub's configuration.
#[derive(Debug, Clone, Copy)]
pub struct MeetingConfig {
    /// Most participants (studio and sites).
    pub max_participants: usize,
    /// Most WHEP viewers of one meeting at once (not counted in `max_participants`).
    pub max_viewers: usize,
    /// A site back within this time continues its attendance row.
    pub grace: Millis,
    /// How often the chair's console is refreshed.
    pub console_interval: Millis,
    /// When recordings start.
    pub recording: RecordingMode,
}

impl Default for MeetingConfig {
    fn default() -> Self {
        MeetingConfig {
            max_participants: 1500,
            max_viewers: 50,
            grace: 120_000,
            console_interval: 2_000,
            // The hub's `--recording` decides; a core on its own records when asked.
            recording: RecordingMode::Manual,
        }
    }
}

/// Who joins: the studio (the chair's seat) or a site with its attendance session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seat {
    Studio {
        name: String,
        session: SessionId,
        /// The national studio as a provincial hub relays it (docs/cascade.md): sites
        /// receive it as their studio; it receives what of theirs goes up to the centre (the
        /// floor, the unmuted sounds, the small pictures the national chair shows).
        relayed: bool,
    },
    Site {
        code: SiteCode,
        name: String,
        session: SessionId,
    },
    /// A child hub relaying the meeting to its own communes: it receives the programme (what
    /// a site receives) and is not part of the attendance (its communes are, from its log).
    Node { node: String, session: SessionId },
    /// In a province's part of a national meeting: its organizer, watching (the national
    /// chair runs it). Receives the programme, its sites' small pictures and the console.
    Observer { session: SessionId },
    /// In a province's part of a national meeting: the floor held elsewhere in the tree (at
    /// the root or in another province), published here by this hub's relay. A `node`
    /// participant that receives nothing and is heard and seen only while it holds the floor.
    Above { session: SessionId },
    /// The studio's encoder publishing the programme over WHIP: while it is here, sites (and
    /// child hubs, and a province's organizer) receive it instead of the chair's camera; the
    /// chair sees it too. It receives nothing; a new one replaces the one before.
    Encoder { session: SessionId },
    /// A player watching the programme over WHEP: one picture and one sound, what a site
    /// receives (the site holding the floor while one does, else the studio or its encoder).
    Viewer { session: SessionId },
}

/// Why a join is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this meeting already has a studio")]
    StudioTaken,
    #[error("this meeting is full")]
    Full,
    #[error("this meeting's watch link has as many viewers as it may")]
    ViewersFull,
    #[error("this meeting has ended")]
    Ended,
    #[error(
        "this site's join code is being tried too often; wait, or ask the organizer for a new link"
    )]
    CodeFlooded,
    #[error("this site joined moments ago; try again in a few seconds")]
    TooSoon,
}

/// Why a chair action or a site request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("only the chair (the studio) may do this")]
    ChairOnly,
    #[error("only a site may do this")]
    SiteOnly,
    #[error("site {0} is not connected to this meeting")]
    SiteNotConnected(SiteCode),
    #[error("site {0} has no page open waiting to join")]
    NoPageOpen(SiteCode),
    #[error("no roll call is running")]
    NoRollCall,
    #[error("this roll call is over")]
    WrongRollCall,
    #[error("this participant is not in the meeting")]
    NotJoined,
    #[error("this message is not a chair action or a site request")]
    NotAnAction,
    #[error("this hub records no meeting (it runs with --recording off)")]
    RecordingOff,
}

/// Why a person may not take a meeting's chair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChairError {
    #[error("the studio's code needs an organizer logged in on this browser; log in first")]
    LoginRequired,
    #[error("only an organizer account may chair a meeting")]
    NotOrganizer,
}

/// The studio's join code alone does not make a chair: whoever uses it must also be logged in
/// with an organizer account (`account` is the role logged in, if any). A code that leaks with
/// a forwarded link then gives nobody the chair.
pub fn may_chair(account: Option<crate::store::Role>) -> Result<(), ChairError> {
    match account {
        None => Err(ChairError::LoginRequired),
        Some(crate::store::Role::Organizer) => Ok(()),
        Some(crate::store::Role::Staff) => Err(ChairError::NotOrganizer),
    }
}

/// Forward any layer the subscriber's bandwidth allows.
const ANY_LAYER: u8 = u8::MAX;
/// The lowest simulcast layer: the chair's wall of small pictures.
const LOWEST_LAYER: u8 = 0;

/// A meeting while anyone is connected to it, or was since the hub opened it. States:
/// open (participants and standby pages come and go; when the last one goes, the running roll
/// call ends with it) → ended (everyone sent away, joins refused).
#[derive(Debug)]
pub struct LiveMeeting {
    id: MeetingId,
    router: RouterId,
    title: String,
    config: MeetingConfig,
    ids: IdAllocator,
    /// The expected sites in console order, each with its code parsed once.
    roster: Vec<(SiteCode, ExpectedSite)>,
    sites: HashMap<SiteCode, SiteStatus>,
    participants: BTreeMap<PeerId, Participant>,
    studio: Option<PeerId>,
    /// The studio's encoder ([`Seat::Encoder`]), publishing the programme.
    encoder: Option<PeerId>,
    /// The chair's choice of programme while the encoder publishes.
    programme: ProgrammeSource,
    /// The studio is the national one, relayed by this provincial hub.
    studio_relayed: bool,
    /// For a province's part of a national meeting: the centre is out of reach now.
    centre_unreachable: bool,
    /// The attendance log waits on the hub's disk for an unreachable database: how many
    /// events, since when.
    log_buffered: Option<(u64, Millis)>,
    /// The hub's media workers' shed level, as last told.
    hub_load: u8,
    /// The latest media figures of each child hub's relay here, by node name.
    node_quality: BTreeMap<String, diemcau_sfu::Quality>,
    /// Sites joined to a child hub, as that hub's console last showed them: (node, row).
    remote_sites: BTreeMap<SiteCode, (String, diemcau_signaling::protocol::ConsoleSite)>,
    floor: Option<PeerId>,
    /// When the floor is a `node` participant's: the site of another hub it stands for (a
    /// child hub's commune at the root; at a child, a site elsewhere in the tree).
    floor_remote: Option<(SiteCode, String)>,
    /// The participant publishing here the floor held elsewhere in the tree ([`Seat::Above`]).
    floor_seat: Option<PeerId>,
    /// What each child hub's relay sends up, by its m-lines: the site of its own each one
    /// carries now (its audio, its small picture, or its full picture while it holds the floor).
    upward: HashMap<PeerId, HashMap<Mid, SiteCode>>,
    /// The sites whose pictures the chair's console shows now (`tiles`): a site of a child
    /// hub sends its small picture up only while its tile is on screen; at a child, the sites
    /// the national chair shows, which its relay sends up.
    tiles: BTreeSet<SiteCode>,
    /// Sites that asked for the floor, each with when, oldest first.
    queue: Vec<(PeerId, Millis)>,
    /// Sites of child hubs asking for the floor there, as their consoles show, each with when
    /// (by their hub's clock), oldest first.
    remote_queue: Vec<(SiteCode, Millis)>,
    muted: BTreeSet<PeerId>,
    /// The site holding the floor as the log left it when the meeting was opened again
    /// (after a crash, or taken over from another hub), until it joins again here and holds
    /// it, or the chair moves the floor.
    floor_absent: Option<SiteCode>,
    /// Sites muted as the log left them, muted again when they join here.
    muted_absent: BTreeSet<SiteCode>,
    roll_call: Option<RunningRollCall>,
    /// Roll calls held so far (the next one is numbered one more).
    roll_calls: u32,
    /// The last roll call that ended since the hub opened the meeting, as it ended: shown to a
    /// chair who joins afterwards.
    last_roll_call: Option<(u32, RollCallResult)>,
    pages: BTreeMap<PageKey, SiteCode>,
    /// What each subscriber receives of each producer: one consumer, or, for a track pinned to
    /// one simulcast layer, one per layer (the third part of the key).
    consumers: HashMap<(PeerId, ProducerId, Option<u8>), Consumer>,
    next_console: Option<Millis>,
    ended: bool,
    recording: recording::Recording,
    outputs: VecDeque<Output>,
}

/// One participant of a live meeting. States: joined → attached (its media connection is on a
/// worker; it publishes and receives) → detached (the connection closed; it may offer again)
/// → removed.
#[derive(Debug)]
struct Participant {
    info: ParticipantInfo,
    /// For sites: the site it is.
    site: Option<SiteCode>,
    /// Its session in the attendance log: from its join to its leave.
    session: SessionId,
    attached: bool,
    producers: Vec<ProducerInfo>,
}

#[derive(Debug, Clone, Copy)]
struct Consumer {
    id: ConsumerId,
    max_layer: u8,
}

impl LiveMeeting {
    pub fn new(
        setup: MeetingSetup,
        router: RouterId,
        config: MeetingConfig,
        ids: IdAllocator,
    ) -> LiveMeeting {
        let roll_calls = setup
            .history
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RollCallStarted { .. }))
            .count();
        let rebuilt = rebuild::rebuild(&setup.history);
        let recording = recording::Recording::from_history(&setup.history, config.recording);
        // The store checked every code on import: one that does not parse is not listed.
        let roster: Vec<(SiteCode, ExpectedSite)> = setup
            .roster
            .into_iter()
            .filter_map(|site| Some((SiteCode::try_from(site.code.as_str()).ok()?, site)))
            .collect();
        let mut sites = console::sites_from_history(&roster, &setup.history);
        for (site, _) in rebuilt.roll_call.iter().flat_map(|r| &r.answers) {
            if let Some(status) = sites.get_mut(site) {
                status.answered_roll_call = true;
            }
        }
        LiveMeeting {
            id: setup.id,
            router,
            title: setup.title,
            config,
            ids,
            sites,
            roster,
            participants: BTreeMap::new(),
            studio: None,
            encoder: None,
            programme: rebuilt.programme,
            studio_relayed: false,
            log_buffered: None,
            hub_load: 0,
            centre_unreachable: setup
                .history
                .iter()
                .rev()
                .find_map(|e| match e.kind {
                    EventKind::CentreUnreachable { .. } => Some(true),
                    EventKind::CentreReachable { .. } => Some(false),
                    _ => None,
                })
                .unwrap_or(false),
            node_quality: BTreeMap::new(),
            remote_sites: BTreeMap::new(),
            floor: None,
            floor_remote: None,
            floor_seat: None,
            upward: HashMap::new(),
            tiles: BTreeSet::new(),
            queue: Vec::new(),
            remote_queue: Vec::new(),
            muted: BTreeSet::new(),
            floor_absent: rebuilt.floor,
            muted_absent: rebuilt.muted,
            roll_call: rebuilt.roll_call,
            roll_calls: u32::try_from(roll_calls).unwrap_or(u32::MAX),
            last_roll_call: None,
            pages: BTreeMap::new(),
            consumers: HashMap::new(),
            next_console: None,
            ended: false,
            recording,
            outputs: VecDeque::new(),
        }
    }

    pub fn id(&self) -> MeetingId {
        self.id
    }

    pub fn router(&self) -> RouterId {
        self.router
    }

    /// The next output for the driver, in the order they were made.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.start_recording_if_wanted();
            self.refresh_recording();
        }
        self.outputs.pop_front()
    }

    /// When [`LiveMeeting::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_console
    }

    /// Time passed: refreshes the chair's console when it is due.
    pub fn handle_timeout(&mut self, now: Millis) {
        let Some(due) = self.next_console.filter(|at| now >= *at) else {
            return;
        };
        self.send_console(now);
        // Keep to the schedule, so a driver ticking at the interval sends at every tick.
        let next = due + self.config.console_interval;
        if next > now {
            self.next_console = self.next_console.map(|_| next);
        }
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// Nobody is connected: the driver may forget the meeting once it has ended.
    pub fn is_idle(&self) -> bool {
        self.participants.is_empty() && self.pages.is_empty()
    }

    pub fn has_ended(&self) -> bool {
        self.ended
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    pub fn site_count(&self) -> usize {
        self.participants
            .values()
            .filter(|p| p.site.is_some())
            .count()
    }

    pub fn contains(&self, id: PeerId) -> bool {
        self.participants.contains_key(&id)
    }

    /// The attendance sessions of everyone joined now, studio and sites (for the liveness
    /// marks).
    pub fn sessions(&self) -> impl Iterator<Item = &SessionId> {
        self.participants.values().map(|p| &p.session)
    }

    /// The worst loss among joined sites in their latest quality sample.
    pub fn worst_loss_permille(&self) -> u32 {
        self.sites
            .values()
            .filter(|s| s.participant.is_some())
            .map(|s| s.quality.loss_permille)
            .max()
            .unwrap_or(0)
    }

    /// The floor holder, if any.
    pub fn floor(&self) -> Option<PeerId> {
        self.floor
    }

    /// Whether `subscriber` receives `publisher`'s media, and at most at which simulcast layer.
    /// The one rule of routing: sites receive the studio; the studio receives every site, the
    /// one holding the floor at full quality and the others at the lowest layer (its wall of
    /// small pictures); every site receives the site holding the floor.
    ///
    /// Across hubs (docs/cascade.md): a child hub's relay (`node`) takes the programme once for
    /// all its communes and chooses their layers itself; the floor held elsewhere
    /// ([`Seat::Above`]) reaches this hub's sites, and it receives nothing. What goes up (the
    /// relay's tracks here, what the relayed studio of a province's part takes) depends on the
    /// track and the site it carries: [`LiveMeeting::route_track`], which every consumer
    /// follows.
    pub fn route(&self, subscriber: PeerId, publisher: PeerId) -> Option<u8> {
        if subscriber == publisher || self.floor_seat == Some(subscriber) {
            return None;
        }
        let (s, p) = (self.role(subscriber)?, self.role(publisher)?);
        let holds_floor = self.floor == Some(publisher);
        let floor_held = self.floor.is_some();
        match (s, p) {
            // The encoder's programme goes where the studio's would, and to the chair; while
            // it is on air the chair's own camera stays in the studio. The chair may switch
            // the programme to its camera ([`LiveMeeting::switch_programme`]).
            (Role::Encoder | Role::Viewer, Role::Viewer) => None,
            (Role::Encoder, _) => None,
            // A viewer has one picture and one sound: the site holding the floor while one
            // does, else the programme.
            (Role::Viewer, Role::Site | Role::Node) => holds_floor.then_some(ANY_LAYER),
            (Role::Viewer, Role::Encoder) => {
                (!floor_held && self.encoder_on_air()).then_some(ANY_LAYER)
            }
            (Role::Viewer, Role::Studio) => {
                (!floor_held && !self.encoder_on_air()).then_some(ANY_LAYER)
            }
            (Role::Viewer, Role::Observer) => None,
            (_, Role::Viewer) => None,
            // The chair sees the encoder's picture whichever is on air.
            (Role::Studio, Role::Encoder) => Some(ANY_LAYER),
            (Role::Site | Role::Node | Role::Observer, Role::Encoder) => {
                self.encoder_on_air().then_some(ANY_LAYER)
            }
            (Role::Site | Role::Node | Role::Observer, Role::Studio) if self.encoder_on_air() => {
                None
            }
            (Role::Site, Role::Studio) => Some(ANY_LAYER),
            (Role::Studio, Role::Site) if self.studio_relayed => holds_floor.then_some(ANY_LAYER),
            (Role::Studio, Role::Site) if holds_floor => Some(ANY_LAYER),
            (Role::Studio, Role::Site) => Some(LOWEST_LAYER),
            (Role::Site, Role::Site) => holds_floor.then_some(ANY_LAYER),
            (Role::Studio, Role::Studio) => None,
            (Role::Node, Role::Studio) => Some(ANY_LAYER),
            (Role::Node, Role::Site) => holds_floor.then_some(ANY_LAYER),
            (Role::Studio, Role::Node) if self.studio_relayed => None,
            (Role::Studio | Role::Site | Role::Node, Role::Node) => {
                holds_floor.then_some(ANY_LAYER)
            }
            // A province's organizer watches what the chair would: the programme, the site
            // holding the floor, the others small.
            (Role::Observer, Role::Studio) => Some(ANY_LAYER),
            (Role::Observer, Role::Site) if holds_floor => Some(ANY_LAYER),
            (Role::Observer, Role::Site) => Some(LOWEST_LAYER),
            (Role::Observer, Role::Node) => holds_floor.then_some(ANY_LAYER),
            (_, Role::Observer) => None,
        }
    }

    /// Whether the studio's encoder is here and publishing (its first track arrived).
    fn encoder_publishes(&self) -> bool {
        self.encoder
            .and_then(|id| self.participants.get(&id))
            .is_some_and(|p| !p.producers.is_empty())
    }

    /// Whether the sites receive the encoder's programme rather than the chair's camera: it
    /// publishes, and the chair has not switched to the camera.
    fn encoder_on_air(&self) -> bool {
        self.programme == ProgrammeSource::Encoder && self.encoder_publishes()
    }

    /// The programme's state, for the chair.
    fn programme_message(&self) -> ServerMessage {
        ServerMessage::Programme {
            source: self.programme,
            encoder: self.encoder_publishes(),
        }
    }

    /// The consumers `subscriber` should have of `producer`, as (pinned layer, highest layer):
    /// none when [`LiveMeeting::route_track`] says so; one per simulcast layer, each pinned to
    /// its layer, for a child hub's relay taking the programme's video (it chooses each of its
    /// communes' layers itself); else one, up to the layer the route allows.
    pub fn wanted_consumers(
        &self,
        subscriber: PeerId,
        producer: &ProducerInfo,
    ) -> Vec<(Option<u8>, u8)> {
        let Some(max_layer) = self.route_track(subscriber, producer) else {
            return Vec::new();
        };
        let every_layer = producer.kind == MediaKind::Video
            && producer.layers > 1
            && self.role(subscriber) == Some(Role::Node)
            && self.role(producer.peer) == Some(Role::Studio);
        if every_layer {
            (0..producer.layers).map(|l| (Some(l), l)).collect()
        } else {
            vec![(None, max_layer)]
        }
    }

    /// [`LiveMeeting::route`] for one track, where the kind of track or the site it carries
    /// matters: what goes up a national tree (docs/cascade.md). A provincial hub's relay
    /// (the relayed studio of its part) takes the sound of each unmuted site, the site holding
    /// the floor at full quality and the small pictures of the sites the national chair
    /// shows; at the parent, each of a relay's tracks is the site it carries now
    /// ([`LiveMeeting::relay_streams`]): the chair hears it and sees its small picture while
    /// its tile is on screen, and everyone receives it while that site holds the floor.
    pub fn route_track(&self, subscriber: PeerId, producer: &ProducerInfo) -> Option<u8> {
        if self.is_relay(producer.peer) {
            return self.route_upward(subscriber, producer);
        }
        let relayed_studio = self.studio_relayed && self.studio == Some(subscriber);
        if relayed_studio && self.role(producer.peer) == Some(Role::Site) {
            let holds_floor = self.floor == Some(producer.peer);
            return match producer.kind {
                MediaKind::Audio => {
                    (holds_floor || !self.muted.contains(&producer.peer)).then_some(ANY_LAYER)
                }
                MediaKind::Video if holds_floor => Some(ANY_LAYER),
                MediaKind::Video => self
                    .site_of(producer.peer)
                    .is_some_and(|site| self.tiles.contains(site))
                    .then_some(LOWEST_LAYER),
            };
        }
        self.route(subscriber, producer.peer)
    }

    /// A track a child hub's relay sends up, carrying one of its sites (or none yet).
    fn route_upward(&self, subscriber: PeerId, producer: &ProducerInfo) -> Option<u8> {
        let site = self.upward.get(&producer.peer)?.get(&producer.mid)?;
        if subscriber == producer.peer || self.floor_seat == Some(subscriber) {
            return None;
        }
        let role = self.role(subscriber)?;
        let holds_floor = self.floor == Some(producer.peer)
            && self.floor_remote.as_ref().is_some_and(|(s, _)| s == site);
        match role {
            Role::Encoder => None,
            Role::Studio if self.studio_relayed => None,
            _ if holds_floor => Some(ANY_LAYER),
            Role::Studio | Role::Observer => match producer.kind {
                MediaKind::Audio => Some(ANY_LAYER),
                MediaKind::Video => self.tiles.contains(site).then_some(LOWEST_LAYER),
            },
            Role::Site | Role::Node | Role::Viewer => None,
        }
    }

    /// Whether `peer` is a child hub's relay (a `node` participant that is not the floor held
    /// elsewhere, [`Seat::Above`]).
    fn is_relay(&self, peer: PeerId) -> bool {
        self.role(peer) == Some(Role::Node) && self.floor_seat != Some(peer)
    }

    /// The stream id under which a relay's tracks of one of its sites reach this hub's
    /// participants (docs/protocol.md): the relay's participant id and the site's code.
    fn remote_stream_id(relay: PeerId, site: &SiteCode) -> String {
        format!("{relay}-{site}")
    }

    /// `producer` as its consumers announce it: a relay's track under the site it carries.
    fn labelled(&self, producer: &ProducerInfo) -> ProducerInfo {
        let site = self
            .upward
            .get(&producer.peer)
            .and_then(|streams| streams.get(&producer.mid));
        ProducerInfo {
            stream: site.map(|site| Self::remote_stream_id(producer.peer, site)),
            ..producer.clone()
        }
    }

    /// This hub lost (or found again) the national centre of this meeting: everyone here is
    /// told, and whoever joins while it is away.
    pub fn centre_changed(&mut self, reachable: bool) {
        if self.centre_unreachable != reachable {
            return;
        }
        self.centre_unreachable = !reachable;
        for id in self.participants.keys().copied().collect::<Vec<_>>() {
            self.send(id, ServerMessage::Centre { reachable });
        }
    }

    /// The hub's attendance log waits on its disk for the database (`Some`: how many events,
    /// since when), or is written to it again (`None`): the chair is told of each change.
    pub fn log_buffering(&mut self, buffered: Option<(u64, Millis)>) {
        if self.log_buffered == buffered {
            return;
        }
        self.log_buffered = buffered;
        if let Some(studio) = self.studio {
            self.send(studio, self.log_state_message());
        }
    }

    /// The hub's media workers shed video to keep up (`level` above 0), or no longer: the
    /// chair is told of each change ([`ServerMessage::HubLoad`]).
    pub fn hub_load(&mut self, level: u8) {
        if self.hub_load == level {
            return;
        }
        self.hub_load = level;
        if let Some(studio) = self.studio {
            self.send(studio, ServerMessage::HubLoad { level });
        }
    }

    fn log_state_message(&self) -> ServerMessage {
        ServerMessage::LogState {
            buffered: self.log_buffered.map_or(0, |(count, _)| count),
            since: self.log_buffered.map(|(_, since)| since),
        }
    }

    /// The media figures of node `node`'s relay in this meeting, while it is here.
    pub fn node_quality(&self, node: &str) -> Option<diemcau_sfu::Quality> {
        let here = self
            .participants
            .values()
            .any(|p| p.info.role == Role::Node && p.info.name == node);
        here.then(|| self.node_quality.get(node).copied()).flatten()
    }

    /// Whether the chair has muted this participant.
    pub fn is_muted(&self, id: PeerId) -> bool {
        self.muted.contains(&id)
    }

    fn role(&self, id: PeerId) -> Option<Role> {
        self.participants.get(&id).map(|p| p.info.role)
    }

    fn session_of(&self, id: PeerId) -> Option<SessionId> {
        Some(self.participants.get(&id)?.session.clone())
    }

    /// Whether `site` is one of this meeting's expected sites.
    fn invited(&self, site: &SiteCode) -> bool {
        self.roster.iter().any(|(c, _)| c == site)
    }

    fn site_of(&self, id: PeerId) -> Option<&SiteCode> {
        self.participants.get(&id)?.site.as_ref()
    }

    /// Producers gone with their participant or its connection: every worker drops them.
    fn drop_producers(&mut self, producers: &[ProducerInfo]) {
        for producer in producers {
            self.consumers.retain(|(_, p, _), _| *p != producer.id);
            self.outputs.push_back(Output::Route(Route::RemoveProducer {
                router: producer.router,
                producer: producer.id,
            }));
        }
    }

    /// The floor as participants see it.
    fn floor_message(&self) -> ServerMessage {
        let describe = |id: &PeerId| {
            let p = self.participants.get(id)?;
            if p.info.role == Role::Node {
                let (site, name) = self.floor_remote.as_ref()?;
                let participant = if self.is_relay(*id) {
                    Self::remote_stream_id(*id, site)
                } else {
                    p.info.id.clone()
                };
                return Some(FloorSite {
                    site: site.to_string(),
                    name: name.clone(),
                    participant,
                });
            }
            Some(FloorSite {
                site: p.info.site.clone().unwrap_or_default(),
                name: p.info.name.clone(),
                participant: p.info.id.clone(),
            })
        };
        let absent = || {
            let site = self.floor_absent.as_ref()?;
            let (_, expected) = self.roster.iter().find(|(code, _)| code == site)?;
            Some(FloorSite {
                site: site.to_string(),
                name: expected.name.clone(),
                participant: String::new(),
            })
        };
        ServerMessage::Floor {
            holder: self.floor.as_ref().and_then(describe).or_else(absent),
            queue: self.floor_queue(describe),
        }
    }

    /// The sites waiting for the floor, here and on child hubs, in the order they asked.
    fn floor_queue(&self, describe: impl Fn(&PeerId) -> Option<FloorSite>) -> Vec<FloorSite> {
        let here = self
            .queue
            .iter()
            .filter_map(|(id, at)| Some((*at, describe(id)?)));
        let below = self.remote_queue.iter().filter_map(|(site, at)| {
            let (_, row) = self.remote_sites.get(site)?;
            let relay = self.remote_relay_of(site)?;
            Some((
                *at,
                FloorSite {
                    site: site.to_string(),
                    name: row.name.clone(),
                    participant: Self::remote_stream_id(relay, site),
                },
            ))
        });
        let mut queue: Vec<(Millis, FloorSite)> = here.chain(below).collect();
        // Stable: asked at the same millisecond, a site here comes first.
        queue.sort_by_key(|(at, _)| *at);
        queue.into_iter().map(|(_, site)| site).collect()
    }

    /// When participant `id` asked for the floor, while it waits.
    fn queued_at(&self, id: PeerId) -> Option<Millis> {
        self.queue.iter().find(|(q, _)| *q == id).map(|(_, at)| *at)
    }

    fn send(&mut self, to: PeerId, message: ServerMessage) {
        self.outputs.push_back(Output::Send {
            to: Recipient::Participant(to),
            message,
        });
    }

    fn send_to_everyone(&mut self, message: &ServerMessage) {
        for id in self.participants.keys().copied().collect::<Vec<_>>() {
            self.send(id, message.clone());
        }
    }

    fn log(&mut self, at: Millis, kind: EventKind) {
        self.outputs.push_back(Output::Log { at, kind });
    }
}

fn error_message(code: ErrorCode, message: &str) -> ServerMessage {
    ProtocolError::new(code, message).to_message()
}
