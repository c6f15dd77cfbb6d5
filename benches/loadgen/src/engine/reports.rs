//! What the engine is asked to create and what it reports: a peer's spec, its status while it
//! joins, and what each peer and thread measured.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

use serde::Serialize;

use super::headers::HeaderCounts;
use crate::link::{LinkProfile, LinkStats};
use crate::measure::{ForwardedSpan, Histogram, LayerRuns, StreamReception};
use crate::media::{Kind, VideoProfile};

/// Publisher index of the studio; sites are 1..=N.
pub const STUDIO: u32 = 0;

/// What one simulated endpoint publishes and how it misbehaves.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Participant index: [`STUDIO`] or a site's number.
    pub id: u32,
    pub audio: bool,
    pub video: Option<VideoProfile>,
    /// Publish `video` as three simulcast layers ([`VideoProfile::simulcast_layers`]).
    pub simulcast: bool,
    /// Percentage of this peer's outgoing RTP datagrams dropped after str0m (loss injection;
    /// str0m's retransmissions can be dropped too).
    pub drop_percent: f64,
    /// Percentage of the RTP datagrams from the hub dropped before this peer counts them.
    pub drop_down_percent: f64,
    /// The emulated link this peer sits behind.
    pub link: Option<PeerLink>,
    /// Reach the hub over ICE-TCP only (its passive TCP candidate), as a hall whose firewall
    /// drops UDP.
    pub tcp: bool,
    /// Count what arrives from the RTP headers once connected ([`super::headers`]) instead
    /// of handing every packet to str0m.
    pub receive_headers: bool,
    /// In header-only reception, a datagram arrives when the kernel stamped it, not when
    /// the engine's thread got to it ([`super::arrival`]).
    pub kernel_arrivals: bool,
    /// Make no offer: the server offers first (a Janus subscriber).
    pub answer_only: bool,
}

/// A peer's emulated link: its class (an index into the run's `--link` classes) and what each
/// direction does.
#[derive(Debug, Clone)]
pub struct PeerLink {
    pub class: usize,
    /// Hub → peer.
    pub down: LinkProfile,
    /// Peer → hub.
    pub up: LinkProfile,
}

/// How far a peer got. Times are nanoseconds of the run's clock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStatus {
    pub id: u32,
    pub created_ns: Option<u64>,
    pub ice_connected_ns: Option<u64>,
    /// ICE and DTLS up (str0m's `Event::Connected`).
    pub connected_ns: Option<u64>,
    /// First media packet with a stamp received.
    pub first_media_ns: Option<u64>,
    /// str0m's error, when the `Rtc` failed (a DTLS failure, typically).
    pub error: Option<String>,
    /// ICE went `disconnected` after it was up.
    pub disconnected: bool,
    /// The `Rtc` is no longer alive.
    pub closed: bool,
}

/// One stream a peer published.
#[derive(Debug, Clone, Serialize)]
pub struct SentStream {
    pub publisher: u32,
    pub kind: Kind,
    /// The simulcast layer's rid, for a layer of a simulcast video.
    pub rid: Option<String>,
    /// The encoder's target bitrate (video).
    pub bitrate_bps: Option<u64>,
    /// Packets written whose send time is inside the measurement window.
    pub sent_window: u64,
    pub sent_total: u64,
    pub frames: u64,
    pub keyframes: u64,
}

/// One stream a peer received.
#[derive(Debug, Clone)]
pub struct ReceivedStream {
    pub publisher: u32,
    pub kind: Kind,
    /// Simulcast layer (0 without simulcast).
    pub layer: u8,
    pub reception: StreamReception,
}

/// Everything one peer measured.
#[derive(Debug, Clone)]
pub struct PeerReport {
    pub status: PeerStatus,
    pub sent: Vec<SentStream>,
    pub received: Vec<ReceivedStream>,
    /// Outgoing RTP datagrams dropped by loss injection.
    pub dropped_injected: u64,
    /// Incoming RTP datagrams dropped by loss injection.
    pub dropped_down_injected: u64,
    pub rtp_datagrams_sent: u64,
    pub keyframe_requests: u64,
    /// RTP packets without a readable stamp.
    pub unstamped: u64,
    /// The runs on one simulcast layer of each video received, by publisher.
    pub video_runs: Vec<(u32, LayerRuns)>,
    /// The sequence numbers of each stream received, by publisher and kind (full reception).
    pub forwarded: Vec<((u32, Kind), ForwardedSpan)>,
    /// The emulated link's class, when the peer has one.
    pub link_class: Option<usize>,
    pub downlink: Option<LinkStats>,
    pub uplink: Option<LinkStats>,
    /// What header-only reception counted, for a site that used it.
    pub headers: Option<HeaderCounts>,
}

/// What one engine thread measured.
#[derive(Debug, Clone, Default)]
pub struct ThreadReport {
    pub peers: Vec<PeerReport>,
    /// One-way delay (µs) of the studio's packets to sites, first arrivals sent in the window.
    pub downstream_delay: Histogram,
    /// One-way delay (µs) of sites' packets to the studio.
    pub upstream_delay: Histogram,
    /// `downstream_delay` by the receiving site's link class (`None`: no link).
    pub downstream_delay_by_class: BTreeMap<Option<usize>, Histogram>,
    pub send_would_block: u64,
    pub send_errors: u64,
    /// Media timers that fired more than 100 ms late (the thread could not keep up).
    pub late_media_timers: u64,
    /// CPU time of this thread, in nanoseconds, from /proc.
    pub cpu_ns: u64,
}

/// Live counts, for the scenario to watch joins progress without stopping the threads.
#[derive(Debug, Default)]
pub struct Progress {
    pub created: AtomicUsize,
    pub ice_connected: AtomicUsize,
    pub connected: AtomicUsize,
    pub receiving: AtomicUsize,
    pub failed: AtomicUsize,
}

/// Why the engine could not do what signalling asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The hub's SDP was refused by str0m.
    #[error("SDP refused: {0}")]
    Sdp(String),
    /// A socket could not be opened.
    #[error("socket: {0}")]
    Io(String),
    /// No such peer, or the engine stopped.
    #[error("peer or engine gone")]
    Gone,
}

impl SentStream {
    pub fn new(publisher: u32, kind: Kind) -> SentStream {
        SentStream {
            publisher,
            kind,
            rid: None,
            bitrate_bps: None,
            sent_window: 0,
            sent_total: 0,
            frames: 0,
            keyframes: 0,
        }
    }
}
