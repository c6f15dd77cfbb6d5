//! A signalling + media test client built on **webrtc-rs** (crate `webrtc` 0.21.1 over the
//! sans-IO `rtc` crate): a WebRTC stack we did not write, speaking `docs/protocol.md` over a
//! tokio-tungstenite WebSocket.
//!
//! Include it from an integration test with
//! `#[path = "common/webrtc_client.rs"] mod webrtc_client;`.
//!
//! What a [`WebrtcClient`] does:
//! - opens `ws://ADDR/ws`, sends `join`, waits for `joined`;
//! - builds one `PeerConnection` bound to 127.0.0.1, adds a VP8 video and an Opus audio track
//!   (when publishing), sends one `offer` after ICE gathering, applies the hub's `answer`;
//! - answers every hub `offer` (the hub renegotiates to add tracks to receive);
//! - counts RTP packets, bytes and VP8 keyframes per remote track, keyed by the track's stream id
//!   (which the hub sets to the publisher's participant id);
//! - on [`WebrtcClient::start_media`], sends ~30 fps VP8-shaped samples (a keyframe-looking
//!   frame each second) and 20 ms Opus-shaped samples.
//!
//! Everything that can wait has a timeout, and [`WebrtcClient::report`] renders the client's
//! whole view (signalling transcript, errors, tracks, counters) for failure messages.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::{MediaStreamTrack, Track};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

/// Payload types this client offers (the same numbers Chromium uses for these codecs).
const PT_OPUS: u8 = 111;
const PT_VP8: u8 = 96;
const PT_VP8_RTX: u8 = 97;

/// How long one signalling step (connect, joined, answer, ICE gathering) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client is in the meeting.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `"studio"` or `"site"`.
    pub role: &'static str,
    pub name: String,
    /// The meeting id and the join code (the studio's or a site's).
    pub meeting: i64,
    pub code: String,
    /// Add a VP8 video and an Opus audio track to the first offer.
    pub publish: bool,
}

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
    pub ended: AtomicBool,
    pub opened_at: Duration,
    pub last_packet_at: Mutex<Instant>,
}

impl RemoteTrackStats {
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
#[derive(Debug)]
struct Shared {
    label: String,
    started: Instant,
    /// Signalling transcript and notable events, each with its time since the client started.
    transcript: Mutex<Vec<String>>,
    /// `error` messages from the hub, verbatim.
    hub_errors: Mutex<Vec<Value>>,
    /// Failures on this side (SDP rejected by webrtc-rs, WebSocket closed, ...).
    failures: Mutex<Vec<String>>,
    /// Participants we know of (from `joined` and `participant_joined`), id -> (name, role).
    participants: Mutex<BTreeMap<String, (String, String)>>,
    /// Participants announced as gone by `participant_left`.
    departed: Mutex<Vec<String>>,
    tracks: Mutex<Vec<Arc<RemoteTrackStats>>>,
    sent: SendStats,
    hub_offers_received: AtomicU64,
    hub_offers_answered: AtomicU64,
    /// Set by [`WebrtcClient::close`]: failures after it are expected and only noted.
    closing: AtomicBool,
}

impl Shared {
    fn note(&self, line: impl AsRef<str>) {
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

    fn fail(&self, what: impl Into<String>) {
        let what = what.into();
        if self.closing.load(Ordering::Relaxed) {
            self.note(format!("(while closing) {what}"));
            return;
        }
        self.note(format!("FAILURE: {what}"));
        lock(&self.failures).push(what);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Watched states, each updated from the handler (which runs on webrtc-rs's own reactor thread).
#[derive(Debug)]
struct Watches {
    joined: watch::Sender<Option<Value>>,
    answers: watch::Sender<u64>,
    /// Number of `left` replies.
    lefts: watch::Sender<u64>,
    media_state: watch::Sender<Option<String>>,
    gathering: watch::Sender<RTCIceGatheringState>,
    pc_state: watch::Sender<RTCPeerConnectionState>,
    ice_state: watch::Sender<RTCIceConnectionState>,
}

/// The `PeerConnectionEventHandler`: forwards state to watch channels and starts one reader task
/// per remote track on the test's tokio runtime.
///
/// The trait is declared with `#[async_trait]`; the methods below are its expansion written out
/// by hand, so the tests need no `async-trait` dependency. Each does its work synchronously and
/// returns a ready future, so it never blocks webrtc-rs's driver.
struct Handler {
    shared: Arc<Shared>,
    watches: Arc<Watches>,
    runtime: tokio::runtime::Handle,
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl PeerConnectionEventHandler for Handler {
    fn on_ice_gathering_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceGatheringState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("ice gathering: {state}"));
        self.watches.gathering.send_replace(state);
        Box::pin(async {})
    }

    fn on_ice_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceConnectionState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("ice connection: {state}"));
        self.watches.ice_state.send_replace(state);
        Box::pin(async {})
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("peer connection: {state}"));
        self.watches.pc_state.send_replace(state);
        Box::pin(async {})
    }

    fn on_track<'life0, 'async_trait>(
        &'life0 self,
        track: Arc<dyn TrackRemote>,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let shared = Arc::clone(&self.shared);
        self.runtime.spawn(read_remote_track(shared, track));
        Box::pin(async {})
    }
}

/// Reads one remote track until it ends, counting what arrives.
async fn read_remote_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let stream_id = track.stream_id().await.to_string();
    let track_id = track.track_id().await.to_string();
    let kind = track.kind().await;
    let ssrcs = track.ssrcs().await;
    let mut mime = String::new();
    if let Some(ssrc) = ssrcs.first()
        && let Some(codec) = track.codec(*ssrc).await
    {
        mime = codec.mime_type;
    }
    let is_video = kind == RtpCodecKind::Video;
    let stats = Arc::new(RemoteTrackStats {
        stream_id: stream_id.clone(),
        track_id: track_id.clone(),
        kind: if is_video { "video" } else { "audio" }.to_string(),
        mime: Mutex::new(mime.clone()),
        ssrcs: ssrcs.clone(),
        packets: AtomicU64::new(0),
        payload_bytes: AtomicU64::new(0),
        keyframes: AtomicU64::new(0),
        ended: AtomicBool::new(false),
        opened_at: shared.started.elapsed(),
        last_packet_at: Mutex::new(Instant::now()),
    });
    shared.note(format!(
        "on_track: kind={kind} stream_id={stream_id:?} track_id={track_id:?} ssrcs={ssrcs:?} mime={mime:?}"
    ));
    lock(&shared.tracks).push(Arc::clone(&stats));

    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let first = stats.packets.fetch_add(1, Ordering::Relaxed) == 0;
                *lock(&stats.last_packet_at) = Instant::now();
                stats
                    .payload_bytes
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                if is_video && vp8_packet_starts_keyframe(&packet.payload) {
                    stats.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                if first {
                    if lock(&stats.mime).is_empty()
                        && let Some(codec) = track.codec(packet.header.ssrc).await
                    {
                        *lock(&stats.mime) = codec.mime_type;
                    }
                    shared.note(format!(
                        "first RTP on {kind} track of {stream_id:?}: pt={} ssrc={} {} bytes",
                        packet.header.payload_type,
                        packet.header.ssrc,
                        packet.payload.len()
                    ));
                }
            }
            TrackRemoteEvent::OnEnded => {
                shared.note(format!("{kind} track of {stream_id:?} ended"));
                break;
            }
            _ => {}
        }
    }
    stats.ended.store(true, Ordering::Relaxed);
}

/// True when a VP8 RTP payload (RFC 7741) starts a keyframe: S=1, partition 0, and the VP8
/// frame tag's bit 0 (P, inverse keyframe flag) clear.
pub fn vp8_packet_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1usize;
    if extended {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M bit).
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

/// A VP8-shaped frame: a keyframe header (frame tag + start code + 640x360) or an interframe tag,
/// then filler. Not decodable, but any depacketizer or keyframe detector takes it for VP8.
pub fn fake_vp8_frame(index: u64, keyframe: bool) -> Vec<u8> {
    let mut frame = if keyframe {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        f.resize(3000, 0);
        f
    } else {
        let mut f = vec![0x11, 0x02, 0x00];
        f.resize(700, 0);
        f
    };
    // Vary the filler so packets are not all identical.
    for (n, byte) in frame.iter_mut().enumerate().skip(10) {
        *byte = (n as u64).wrapping_add(index) as u8;
    }
    frame
}

/// A peer connection plus its signalling session with the hub.
pub struct WebrtcClient {
    pub opts: ClientOptions,
    /// Our participant id, from `joined`.
    pub participant_id: String,
    /// The whole `joined` message.
    pub joined: Value,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    watches: Arc<Watches>,
    outbox: mpsc::UnboundedSender<Message>,
    video: Option<(Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>)>,
    audio: Option<(Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for WebrtcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcClient")
            .field("role", &self.opts.role)
            .field("participant_id", &self.participant_id)
            .finish_non_exhaustive()
    }
}

fn media_engine() -> Result<MediaEngine, String> {
    let mut me = MediaEngine::default();
    let video_feedback = ["goog-remb:", "ccm:fir", "nack:", "nack:pli"]
        .iter()
        .map(|s| {
            let (typ, parameter) = s.split_once(':').unwrap_or((s, ""));
            RTCPFeedback {
                typ: typ.to_string(),
                parameter: parameter.to_string(),
            }
        })
        .collect::<Vec<_>>();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )
    .map_err(|e| format!("register opus: {e}"))?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                rtcp_feedback: video_feedback,
                ..vp8_codec()
            },
            payload_type: PT_VP8,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register vp8: {e}"))?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_RTX.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!("apt={PT_VP8}"),
                rtcp_feedback: vec![],
            },
            payload_type: PT_VP8_RTX,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register rtx: {e}"))?;
    Ok(me)
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn local_track(
    stream_id: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> Result<Arc<TrackLocalStaticSample>, String> {
    let ssrc = rand_u32();
    let kind_name = if kind == RtpCodecKind::Video {
        "video"
    } else {
        "audio"
    };
    let track = MediaStreamTrack::new(
        stream_id.to_string(),
        format!("{stream_id}-{kind_name}"),
        format!("{kind_name} of {stream_id}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    TrackLocalStaticSample::new(Instant::now(), track)
        .map(Arc::new)
        .map_err(|e| format!("TrackLocalStaticSample::new({kind_name}): {e}"))
}

/// A random-enough u32 without a `rand` dependency.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() as u32) | 1
}

async fn step<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {STEP_TIMEOUT:?}")),
    }
}

impl WebrtcClient {
    /// Connects, joins, publishes (if asked) and completes the first offer/answer.
    ///
    /// Returns once the hub's answer is applied; ICE/DTLS then proceed in the background
    /// (see [`WebrtcClient::wait_connected`]). On failure the error carries the transcript.
    pub async fn connect(http_addr: SocketAddr, opts: ClientOptions) -> Result<Self, String> {
        let label = format!("{}:{}", opts.role, opts.name);
        let shared = Arc::new(Shared {
            label: label.clone(),
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
            closing: AtomicBool::new(false),
        });
        let watches = Arc::new(Watches {
            joined: watch::channel(None).0,
            answers: watch::channel(0).0,
            lefts: watch::channel(0).0,
            media_state: watch::channel(None).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            pc_state: watch::channel(RTCPeerConnectionState::New).0,
            ice_state: watch::channel(RTCIceConnectionState::New).0,
        });

        let fail =
            |e: String| -> String { format!("{label}: {e}\n{}", render_transcript(&shared)) };

        // 1. The peer connection (before join, so the signalling task can own a handle to it).
        let mut me = media_engine().map_err(&fail)?;
        let registry = register_default_interceptors(Registry::new(), &mut me)
            .map_err(|e| fail(format!("register_default_interceptors: {e}")))?;
        let handler = Arc::new(Handler {
            shared: Arc::clone(&shared),
            watches: Arc::clone(&watches),
            runtime: tokio::runtime::Handle::current(),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .map_err(|e| fail(format!("PeerConnectionBuilder::build: {e}")))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        // 2. The WebSocket: a writer task fed by `outbox`, a reader task that handles every
        //    hub message.
        let url = format!("ws://{http_addr}/ws");
        let mut request = {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            url.as_str()
                .into_client_request()
                .map_err(|e| fail(format!("WebSocket request for {url}: {e}")))?
        };
        if opts.role == "studio" {
            // The studio's code needs an organizer logged in, as in the studio's browser.
            let cookie = step("log in as the test organizer", organizer_cookie(http_addr))
                .await
                .map_err(&fail)?;
            let value = cookie
                .parse()
                .map_err(|e| fail(format!("cookie header: {e}")))?;
            request.headers_mut().insert("cookie", value);
        }
        let (ws, _response) = step(
            &format!("WebSocket connect to {url}"),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map_err(&fail)?;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<Message>();
        let mut tasks = Vec::new();
        {
            let shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = outbox_rx.recv().await {
                    let closing = matches!(msg, Message::Close(_));
                    if let Err(e) = ws_tx.send(msg).await {
                        shared.fail(format!("WebSocket send: {e}"));
                        break;
                    }
                    if closing {
                        break;
                    }
                }
            }));
        }
        {
            let shared = Arc::clone(&shared);
            let watches = Arc::clone(&watches);
            let pc = Arc::clone(&pc);
            let outbox = outbox.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(frame) = ws_rx.next().await {
                    match frame {
                        Ok(Message::Text(text)) => {
                            handle_hub_message(&shared, &watches, &pc, &outbox, text.as_str())
                                .await;
                        }
                        Ok(Message::Close(frame)) => {
                            shared.note(format!("WebSocket closed: {frame:?}"));
                            break;
                        }
                        Ok(Message::Binary(b)) => {
                            shared.fail(format!("unexpected binary frame ({} bytes)", b.len()))
                        }
                        Ok(_) => {}
                        Err(e) => {
                            shared.note(format!("WebSocket read error: {e}"));
                            break;
                        }
                    }
                }
            }));
        }

        let send = |shared: &Shared, v: Value| -> Result<(), String> {
            shared.note(format!("-> {}", summarize(&v)));
            outbox
                .send(Message::text(v.to_string()))
                .map_err(|_| "WebSocket writer is gone".to_string())
        };

        // 3. join -> joined.
        send(
            &shared,
            json!({"type": "join", "code": opts.code, "meeting": opts.meeting}),
        )
        .map_err(&fail)?;
        let joined = wait_watch(&watches.joined, &shared, "joined", |j| j.clone())
            .await
            .map_err(&fail)?;
        let participant_id = joined
            .pointer("/participant/id")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(format!("`joined` has no participant.id: {joined}")))?
            .to_string();

        // 4. Our tracks. The stream id is our participant id, like a browser's MediaStream id
        //    would be arbitrary; the hub must not rely on it (it rewrites msid for receivers).
        let mut video = None;
        let mut audio = None;
        if opts.publish {
            let v =
                local_track(&participant_id, RtpCodecKind::Video, vp8_codec()).map_err(&fail)?;
            let vs = pc
                .add_track(Arc::clone(&v) as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| fail(format!("add_track(video): {e}")))?;
            video = Some((v, vs));
            let a =
                local_track(&participant_id, RtpCodecKind::Audio, opus_codec()).map_err(&fail)?;
            let asx = pc
                .add_track(Arc::clone(&a) as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| fail(format!("add_track(audio): {e}")))?;
            audio = Some((a, asx));
        }

        // 5. offer -> answer. Wait for ICE gathering so our host candidate is in the SDP.
        let offer = step("create_offer", pc.create_offer(None))
            .await
            .map_err(&fail)?;
        step(
            "set_local_description(offer)",
            pc.set_local_description(offer.clone()),
        )
        .await
        .map_err(&fail)?;
        if wait_watch(&watches.gathering, &shared, "ICE gathering complete", |s| {
            (*s == RTCIceGatheringState::Complete).then_some(())
        })
        .await
        .is_err()
        {
            shared.note("ICE gathering not complete; sending the offer as it is");
        }
        let sdp = pc.local_description().await.unwrap_or(offer).sdp;
        shared.note(format!("our offer SDP:\n{sdp}"));
        let answers_before = *watches.answers.borrow();
        send(&shared, json!({"type": "offer", "sdp": sdp})).map_err(&fail)?;
        wait_watch(&watches.answers, &shared, "hub answer", |n| {
            (*n > answers_before).then_some(())
        })
        .await
        .map_err(&fail)?;

        Ok(Self {
            opts,
            participant_id,
            joined,
            pc,
            shared,
            watches,
            outbox,
            video,
            audio,
            tasks,
        })
    }

    /// Waits until webrtc-rs reports the peer connection `connected` (ICE + DTLS up).
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), String> {
        let mut rx = self.watches.pc_state.subscribe();
        let res = tokio::time::timeout(limit, async {
            loop {
                let state = *rx.borrow_and_update();
                match state {
                    RTCPeerConnectionState::Connected => return Ok(()),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        return Err(format!("peer connection went {state}"));
                    }
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err("peer connection state channel closed".to_string());
                }
            }
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}\n{}", self.label(), self.report())),
            Err(_) => Err(format!(
                "{}: peer connection not connected after {limit:?}\n{}",
                self.label(),
                self.report()
            )),
        }
    }

    /// Starts sending media on the published tracks: VP8-shaped frames at 30 fps (a keyframe
    /// each second, so a late subscriber can start) and 20 ms Opus-shaped frames.
    pub async fn start_media(&mut self) -> Result<(), String> {
        let mut spawned = Vec::new();
        if let Some((track, sender)) = &self.video {
            let (ssrc, pt) = sender_ssrc_pt(track, sender, MIME_TYPE_VP8)
                .await
                .map_err(|e| format!("{}: video: {e}", self.label()))?;
            self.shared
                .note(format!("sending video: ssrc={ssrc} pt={pt}"));
            let track = Arc::clone(track);
            let shared = Arc::clone(&self.shared);
            spawned.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(33));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut index = 0u64;
                loop {
                    tick.tick().await;
                    let keyframe = index.is_multiple_of(30);
                    let sample = Sample {
                        data: fake_vp8_frame(index, keyframe).into(),
                        duration: Duration::from_millis(33),
                        ..Sample::new(Instant::now())
                    };
                    match track.sample_writer(ssrc, pt).write_sample(&sample).await {
                        Ok(()) => {
                            shared.sent.video_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            shared.sent.write_errors.fetch_add(1, Ordering::Relaxed);
                            *lock(&shared.sent.last_write_error) = Some(format!("video: {e}"));
                        }
                    }
                    index += 1;
                }
            }));
        }
        if let Some((track, sender)) = &self.audio {
            let (ssrc, pt) = sender_ssrc_pt(track, sender, MIME_TYPE_OPUS)
                .await
                .map_err(|e| format!("{}: audio: {e}", self.label()))?;
            self.shared
                .note(format!("sending audio: ssrc={ssrc} pt={pt}"));
            let track = Arc::clone(track);
            let shared = Arc::clone(&self.shared);
            spawned.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut index = 0u64;
                loop {
                    tick.tick().await;
                    // An Opus TOC byte (config 31: CELT FB 20 ms, mono, one frame), then noise.
                    let mut data = vec![0xf8u8];
                    data.extend((0..79u64).map(|n| (n * 7 + index) as u8));
                    let sample = Sample {
                        data: data.into(),
                        duration: Duration::from_millis(20),
                        ..Sample::new(Instant::now())
                    };
                    match track.sample_writer(ssrc, pt).write_sample(&sample).await {
                        Ok(()) => {
                            shared.sent.audio_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            shared.sent.write_errors.fetch_add(1, Ordering::Relaxed);
                            *lock(&shared.sent.last_write_error) = Some(format!("audio: {e}"));
                        }
                    }
                    index += 1;
                }
            }));
        }
        self.tasks.extend(spawned);
        Ok(())
    }

    pub fn label(&self) -> String {
        format!(
            "{} {:?} ({})",
            self.opts.role, self.opts.name, self.participant_id
        )
    }

    /// Remote tracks seen so far.
    pub fn remote_tracks(&self) -> Vec<Arc<RemoteTrackStats>> {
        lock(&self.shared.tracks).clone()
    }

    /// The remote track of `kind` (`"video"`/`"audio"`) whose stream id is `stream_id`.
    pub fn remote_track(&self, stream_id: &str, kind: &str) -> Option<Arc<RemoteTrackStats>> {
        lock(&self.shared.tracks)
            .iter()
            .rev()
            .find(|t| t.stream_id == stream_id && t.kind == kind)
            .cloned()
    }

    /// Participants this client learnt of (`joined.participants` and `participant_joined`).
    pub fn known_participants(&self) -> BTreeMap<String, (String, String)> {
        lock(&self.shared.participants).clone()
    }

    pub fn hub_errors(&self) -> Vec<Value> {
        lock(&self.shared.hub_errors).clone()
    }

    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared.failures).clone()
    }

    pub fn media_state(&self) -> Option<String> {
        self.watches.media_state.borrow().clone()
    }

    pub fn hub_offers_answered(&self) -> u64 {
        self.shared.hub_offers_answered.load(Ordering::Relaxed)
    }

    pub fn hub_offers_received(&self) -> u64 {
        self.shared.hub_offers_received.load(Ordering::Relaxed)
    }

    /// Participant ids announced by `participant_left`, in order.
    pub fn departed(&self) -> Vec<String> {
        lock(&self.shared.departed).clone()
    }

    /// Sends `leave` and waits for the hub's `left`. The WebSocket stays open.
    pub async fn leave(&self) -> Result<(), String> {
        let before = *self.watches.lefts.borrow();
        let v = json!({"type": "leave"});
        self.shared.note(format!("-> {}", summarize(&v)));
        self.outbox
            .send(Message::text(v.to_string()))
            .map_err(|_| format!("{}: WebSocket writer is gone", self.label()))?;
        wait_watch(&self.watches.lefts, &self.shared, "left", |n| {
            (*n > before).then_some(())
        })
        .await
        .map_err(|e| format!("{}: {e}\n{}", self.label(), self.report()))
    }

    /// Everything this client saw, for failure messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let s = &self.shared;
        let _ = writeln!(out, "=== {} ===", self.label());
        let _ = writeln!(
            out,
            "pc={} ice={} gathering={} media_state={:?} hub offers received={} answered={}",
            *self.watches.pc_state.borrow(),
            *self.watches.ice_state.borrow(),
            *self.watches.gathering.borrow(),
            self.media_state(),
            self.hub_offers_received(),
            self.hub_offers_answered()
        );
        let _ = writeln!(
            out,
            "sent: video frames={} audio frames={} write errors={} last error={:?}",
            s.sent.video_frames.load(Ordering::Relaxed),
            s.sent.audio_frames.load(Ordering::Relaxed),
            s.sent.write_errors.load(Ordering::Relaxed),
            lock(&s.sent.last_write_error)
        );
        let _ = writeln!(out, "known participants: {:?}", lock(&s.participants));
        let _ = writeln!(out, "departed participants: {:?}", lock(&s.departed));
        let _ = writeln!(out, "hub errors: {:?}", lock(&s.hub_errors));
        let _ = writeln!(out, "local failures: {:?}", lock(&s.failures));
        let tracks = lock(&s.tracks);
        if tracks.is_empty() {
            let _ = writeln!(out, "remote tracks: none");
        }
        for t in tracks.iter() {
            let _ = writeln!(
                out,
                "remote track: kind={} stream_id={:?} track_id={:?} mime={:?} ssrcs={:?} packets={} bytes={} keyframes={} ended={} opened at {:.3}s",
                t.kind,
                t.stream_id,
                t.track_id,
                lock(&t.mime),
                t.ssrcs,
                t.packets(),
                t.payload_bytes.load(Ordering::Relaxed),
                t.keyframes(),
                t.ended.load(Ordering::Relaxed),
                t.opened_at.as_secs_f64()
            );
        }
        drop(tracks);
        out.push_str(&render_transcript(s));
        out
    }

    /// Sends `leave`, closes the WebSocket and the peer connection, stops the tasks.
    pub async fn close(self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        let _ = self
            .outbox
            .send(Message::text(json!({"type": "leave"}).to_string()));
        let _ = self.outbox.send(Message::Close(None));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pc.close()).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn render_transcript(s: &Shared) -> String {
    let mut out = String::from("transcript:\n");
    for line in lock(&s.transcript).iter() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The SSRC of a local track and the payload type the hub's answer negotiated for `mime`.
async fn sender_ssrc_pt(
    track: &TrackLocalStaticSample,
    sender: &Arc<dyn RtpSender>,
    mime: &str,
) -> Result<(u32, u8), String> {
    let ssrc = *track.ssrcs().await.first().ok_or("track has no SSRC")?;
    let params = sender
        .get_parameters()
        .await
        .map_err(|e| format!("get_parameters: {e}"))?;
    let pt = params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
        .ok_or_else(|| {
            format!(
                "{mime} not negotiated; sender codecs: {:?}",
                params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .map(|c| (c.payload_type, c.rtp_codec.mime_type.clone()))
                    .collect::<Vec<_>>()
            )
        })?;
    Ok((ssrc, pt))
}

/// Waits (up to [`STEP_TIMEOUT`]) until `pick` returns `Some` for the watched value; fails
/// early if the hub sent an `error` in the meantime.
async fn wait_watch<T, R>(
    w: &watch::Sender<T>,
    shared: &Shared,
    what: &str,
    pick: impl Fn(&T) -> Option<R>,
) -> Result<R, String> {
    let mut rx = w.subscribe();
    let errors_before = lock(&shared.hub_errors).len();
    let res = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            if let Some(r) = pick(&rx.borrow_and_update()) {
                return Ok(r);
            }
            if let Some(e) = lock(&shared.hub_errors).get(errors_before) {
                return Err(format!(
                    "hub replied with an error while waiting for {what}: {e}"
                ));
            }
            // Wake on the watched value, and poll now and then for hub errors.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    })
    .await;
    match res {
        Ok(r) => r,
        Err(_) => Err(format!("no {what} within {STEP_TIMEOUT:?}")),
    }
}

/// A one-line summary of a signalling message (SDP shortened to its length and m-lines).
fn summarize(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(sdp) = v.get("sdp").and_then(Value::as_str) {
        let mlines: Vec<&str> = sdp
            .lines()
            .filter(|l| {
                l.starts_with("m=")
                    || l.starts_with("a=msid:")
                    || l.starts_with("a=send")
                    || l.starts_with("a=recv")
                    || l.starts_with("a=inactive")
            })
            .collect();
        let short = format!("<{} bytes; {}>", sdp.len(), mlines.join(" | "));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("sdp".into(), Value::String(short));
        }
    }
    v.to_string()
}

async fn handle_hub_message(
    shared: &Shared,
    watches: &Watches,
    pc: &Arc<dyn PeerConnection>,
    outbox: &mpsc::UnboundedSender<Message>,
    text: &str,
) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            shared.fail(format!("hub sent invalid JSON ({e}): {text}"));
            return;
        }
    };
    shared.note(format!("<- {}", summarize(&msg)));
    let typ = msg.get("type").and_then(Value::as_str).unwrap_or("");
    let sdp = msg.get("sdp").and_then(Value::as_str).map(str::to_string);
    match typ {
        "joined" => {
            if let Some(list) = msg.get("participants").and_then(Value::as_array) {
                let mut known = lock(&shared.participants);
                for p in list {
                    record_participant(&mut known, p);
                }
            }
            watches.joined.send_replace(Some(msg.clone()));
        }
        "participant_joined" => {
            if let Some(p) = msg.get("participant") {
                record_participant(&mut lock(&shared.participants), p);
            }
        }
        "participant_left" => {
            if let Some(id) = msg.get("participant").and_then(Value::as_str) {
                lock(&shared.departed).push(id.to_string());
            }
        }
        "media_state" => {
            let state = msg.get("state").and_then(Value::as_str).map(str::to_string);
            watches.media_state.send_replace(state);
        }
        "answer" => {
            let Some(sdp) = sdp else {
                shared.fail("hub `answer` without sdp");
                return;
            };
            shared.note(format!("hub answer SDP:\n{sdp}"));
            let result = async {
                let desc = RTCSessionDescription::answer(sdp).map_err(|e| format!("parse: {e}"))?;
                pc.set_remote_description(desc)
                    .await
                    .map_err(|e| format!("set_remote_description: {e}"))
            }
            .await;
            match result {
                Ok(()) => {
                    watches.answers.send_modify(|n| *n += 1);
                }
                Err(e) => shared.fail(format!("applying the hub's answer: {e}")),
            }
        }
        "offer" => {
            let Some(sdp) = sdp else {
                shared.fail("hub `offer` without sdp");
                return;
            };
            shared.hub_offers_received.fetch_add(1, Ordering::Relaxed);
            shared.note(format!("hub offer SDP:\n{sdp}"));
            let result = async {
                let desc = RTCSessionDescription::offer(sdp).map_err(|e| format!("parse: {e}"))?;
                pc.set_remote_description(desc)
                    .await
                    .map_err(|e| format!("set_remote_description: {e}"))?;
                let answer = pc
                    .create_answer(None)
                    .await
                    .map_err(|e| format!("create_answer: {e}"))?;
                pc.set_local_description(answer.clone())
                    .await
                    .map_err(|e| format!("set_local_description: {e}"))?;
                Ok::<String, String>(pc.local_description().await.unwrap_or(answer).sdp)
            }
            .await;
            match result {
                Ok(sdp) => {
                    shared.note(format!("our answer SDP:\n{sdp}"));
                    let v = json!({"type": "answer", "sdp": sdp});
                    shared.note(format!("-> {}", summarize(&v)));
                    if outbox.send(Message::text(v.to_string())).is_err() {
                        shared.fail("WebSocket writer is gone; could not answer the hub's offer");
                    } else {
                        shared.hub_offers_answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => shared.fail(format!("answering the hub's offer: {e}")),
            }
        }
        "error" => {
            lock(&shared.hub_errors).push(msg.clone());
        }
        "left" => {
            watches.lefts.send_modify(|n| *n += 1);
        }
        // Meeting state this client does not act on.
        "pong" | "floor" | "console" | "muted" | "roll_call" | "roll_call_answer" | "done" => {}
        other => shared.fail(format!("unexpected message type {other:?}: {text}")),
    }
}

fn record_participant(known: &mut BTreeMap<String, (String, String)>, p: &Value) {
    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let id = field("id");
    if !id.is_empty() {
        known.insert(id, (field("name"), field("role")));
    }
}

/// Logs in as the test organizer (`Config::for_tests`) and returns the session cookie
/// (`diemcau_session=...`, or `__Host-diemcau_session=...` from a hub with Secure cookies).
async fn organizer_cookie(http_addr: SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (username, password) = diemcau::config::TEST_ORGANIZER;
    let body = json!({"username": username, "password": password}).to_string();
    let mut stream = tokio::net::TcpStream::connect(http_addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {http_addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| {
                value
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .filter(|cookie| {
            cookie
                .trim_start_matches("__Host-")
                .starts_with("diemcau_session=")
        })
        .ok_or_else(|| format!("no session cookie in the login reply: {text}"))
}
