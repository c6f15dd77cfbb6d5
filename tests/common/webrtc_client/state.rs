//! What the client's tasks share: counters of the media sent and received, the signalling
//! transcript, and the watched states its steps wait on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use webrtc::peer_connection::{
    RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState,
};

/// One track the hub sends this client, with live counters.
#[derive(Debug)]
pub struct RemoteTrackStats {
    pub stream_id: String,
    pub track_id: String,
    /// `"video"` or `"audio"`.
    pub kind: String,
    /// Codec mime type as negotiated (filled when known).
    pub mime: Mutex<String>,
    pub ssrcs: Vec<u32>,
    pub packets: AtomicU64,
    pub payload_bytes: AtomicU64,
    /// VP8 packets that start a keyframe (S=1, PID=0, frame tag bit 0 clear).
    pub keyframes: AtomicU64,
    /// The payload type of the first packet (the codec `mime` names is the first negotiated).
    pub first_payload_type: Mutex<Option<u8>>,
    /// The payload type of the latest packet: a track whose source changes (a WHEP player's
    /// one picture following the floor) may change codec.
    pub last_payload_type: Mutex<Option<u8>>,
    /// The sequence numbers seen: how many packets the sender's stream spanned.
    pub sequence: Mutex<SequenceSpan>,
    pub ended: AtomicBool,
    pub opened_at: Duration,
    pub last_packet_at: Mutex<Instant>,
}

impl RemoteTrackStats {
    /// Packets the stream's sequence numbers spanned so far, first to highest: what arrived
    /// plus what was lost for good (a gap nobody repaired).
    pub fn sequence_span(&self) -> u64 {
        lock(&self.sequence).span()
    }
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
    pub fn keyframes(&self) -> u64 {
        self.keyframes.load(Ordering::Relaxed)
    }
    /// Time since the last RTP packet (or since the track opened, if none came).
    pub fn quiet_for(&self) -> Duration {
        lock(&self.last_packet_at).elapsed()
    }
}

/// Counters of what this client sent.
#[derive(Debug, Default)]
pub struct SendStats {
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub write_errors: AtomicU64,
    pub last_write_error: Mutex<Option<String>>,
}

/// State shared by the signalling task, the peer connection's event handler and the test.
/// Lives as long as the client; after `closing` is set, failures are only noted.
#[derive(Debug)]
pub struct Shared {
    pub label: String,
    pub started: Instant,
    /// Signalling transcript and notable events, each with its time since the client started.
    pub transcript: Mutex<Vec<String>>,
    /// `error` messages from the hub, verbatim.
    pub hub_errors: Mutex<Vec<Value>>,
    /// Failures on this side (SDP rejected by webrtc-rs, WebSocket closed, ...).
    pub failures: Mutex<Vec<String>>,
    /// Participants we know of (from `joined` and `participant_joined`), id -> (name, role).
    pub participants: Mutex<BTreeMap<String, (String, String)>>,
    /// Participants announced as gone by `participant_left`.
    pub departed: Mutex<Vec<String>>,
    pub tracks: Mutex<Vec<Arc<RemoteTrackStats>>>,
    pub sent: SendStats,
    pub hub_offers_received: AtomicU64,
    pub hub_offers_answered: AtomicU64,
    /// The SDP of the hub's latest offer.
    pub last_hub_offer: Mutex<String>,
    /// The latest `console` message (the studio's).
    pub last_console: Mutex<Option<Value>>,
    /// Set by `WebrtcClient::close`: failures after it are expected and only noted.
    pub closing: AtomicBool,
}

impl Shared {
    pub fn new(label: String) -> Shared {
        Shared {
            label,
            started: Instant::now(),
            transcript: Mutex::new(Vec::new()),
            hub_errors: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            participants: Mutex::new(BTreeMap::new()),
            departed: Mutex::new(Vec::new()),
            tracks: Mutex::new(Vec::new()),
            sent: SendStats::default(),
            hub_offers_received: AtomicU64::new(0),
            hub_offers_answered: AtomicU64::new(0),
            last_hub_offer: Mutex::new(String::new()),
            last_console: Mutex::new(None),
            closing: AtomicBool::new(false),
        }
    }

    pub fn note(&self, line: impl AsRef<str>) {
        let t = self.started.elapsed();
        // Multi-line notes (SDPs) are indented under their time stamp.
        let line = format!(
            "[{:>7.3}s] {}",
            t.as_secs_f64(),
            line.as_ref()
                .trim_end()
                .replace("\r\n", "\n")
                .replace('\n', "\n             ")
        );
        if std::env::var_os("WEBRTC_CLIENT_TRACE").is_some() {
            eprintln!("{}: {}", self.label, line);
        }
        lock(&self.transcript).push(line);
    }

    pub fn fail(&self, what: impl Into<String>) {
        let what = what.into();
        if self.closing.load(Ordering::Relaxed) {
            self.note(format!("(while closing) {what}"));
            return;
        }
        self.note(format!("FAILURE: {what}"));
        lock(&self.failures).push(what);
    }

    /// The transcript, a line per note, for failure messages.
    pub fn transcript(&self) -> String {
        let mut out = String::from("transcript:\n");
        for line in lock(&self.transcript).iter() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Watched states, each updated from the handler (which runs on webrtc-rs's own reactor thread).
#[derive(Debug)]
pub struct Watches {
    pub joined: watch::Sender<Option<Value>>,
    pub answers: watch::Sender<u64>,
    /// Number of `left` replies.
    pub lefts: watch::Sender<u64>,
    pub media_state: watch::Sender<Option<String>>,
    pub gathering: watch::Sender<RTCIceGatheringState>,
    pub pc_state: watch::Sender<RTCPeerConnectionState>,
    pub ice_state: watch::Sender<RTCIceConnectionState>,
}

impl Watches {
    pub fn new() -> Watches {
        Watches {
            joined: watch::channel(None).0,
            answers: watch::channel(0).0,
            lefts: watch::channel(0).0,
            media_state: watch::channel(None).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            pc_state: watch::channel(RTCPeerConnectionState::New).0,
            ice_state: watch::channel(RTCIceConnectionState::New).0,
        }
    }
}

/// The guarded value, also after a panic elsewhere (the counters stay readable for reports).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The extended sequence numbers of a received stream: the first and the highest seen.
#[derive(Debug, Default)]
pub struct SequenceSpan {
    first: u64,
    highest: Option<u64>,
}

impl SequenceSpan {
    /// Notes `seq` (16 bits), unwrapped against the highest seen so far.
    pub fn note(&mut self, seq: u16) {
        match self.highest {
            None => {
                // Room below for packets that arrive out of order.
                let extended = (1 << 16) + u64::from(seq);
                self.first = extended;
                self.highest = Some(extended);
            }
            Some(highest) => {
                let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
                let extended = highest.saturating_add_signed(delta);
                self.first = self.first.min(extended);
                self.highest = Some(highest.max(extended));
            }
        }
    }

    pub fn span(&self) -> u64 {
        self.highest.map_or(0, |h| h - self.first + 1)
    }
}
