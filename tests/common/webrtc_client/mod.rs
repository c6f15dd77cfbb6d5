//! A signalling + media test client built on **webrtc-rs** (crate `webrtc` 0.21.1 over the
//! sans-IO `rtc` crate): a WebRTC stack we did not write, speaking `docs/protocol.md` over a
//! tokio-tungstenite WebSocket.
//!
//! Include it from an integration test, beside `common/http.rs` (the studio logs in with it),
//! with `#[path = "common/http.rs"] mod http;` and
//! `#[path = "common/webrtc_client/mod.rs"] mod webrtc_client;`.
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

mod media;
mod peer_events;
mod signalling;
mod state;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

// What a test may name; not every test does.
#[allow(unused_imports)]
pub use media::{fake_vp8_frame, vp8_packet_starts_keyframe};
#[allow(unused_imports)]
pub use signalling::STEP_TIMEOUT;
#[allow(unused_imports)]
pub use state::{RemoteTrackStats, SendStats};

use media::{local_track, media_engine, opus_codec, vp8_codec};
use peer_events::Handler;
use signalling::{handle_hub_message, step, summarize, wait_watch};
use state::{Shared, Watches, lock};

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

/// What the client's network lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// UDP, as on most links.
    Udp,
    /// TCP only (a hall behind a firewall that drops UDP): no UDP socket at all, ICE over TCP
    /// to the hub's passive candidates.
    TcpOnly,
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
    /// What the video track sends: the fake VP8 camera, or a studio encoder's H.264.
    video_source: &'static media::Source,
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

impl WebrtcClient {
    /// Connects, joins, publishes (if asked) and completes the first offer/answer.
    ///
    /// Returns once the hub's answer is applied; ICE/DTLS then proceed in the background
    /// (see [`WebrtcClient::wait_connected`]). On failure the error carries the transcript.
    pub async fn connect(http_addr: SocketAddr, opts: ClientOptions) -> Result<Self, String> {
        Self::connect_over(http_addr, opts, Network::Udp).await
    }

    /// Like [`WebrtcClient::connect`], over the given network.
    pub async fn connect_over(
        http_addr: SocketAddr,
        opts: ClientOptions,
        network: Network,
    ) -> Result<Self, String> {
        let label = format!("{}:{}", opts.role, opts.name);
        let shared = Arc::new(Shared::new(label.clone()));
        let watches = Arc::new(Watches::new());

        let fail = |e: String| -> String { format!("{label}: {e}\n{}", shared.transcript()) };

        // 1. The peer connection (before join, so the signalling task can own a handle to it).
        let me = media_engine().map_err(&fail)?;
        let pc = new_peer(&shared, &watches, me, network)
            .await
            .map_err(&fail)?;

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
            let cookie = crate::http::organizer(http_addr).await.cookie;
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
        if network == Network::TcpOnly {
            // webrtc-rs dials a passive TCP candidate only when it is added on its own, not
            // when it comes in the answer's SDP: add the hub's.
            let answer = pc
                .remote_description()
                .await
                .map(|d| d.sdp)
                .unwrap_or_default();
            let mut dialled = 0;
            for line in answer.lines() {
                let Some(candidate) = line.trim().strip_prefix("a=") else {
                    continue;
                };
                if candidate.starts_with("candidate:")
                    && candidate.contains(" tcp ")
                    && candidate.contains("tcptype passive")
                {
                    shared.note(format!("dialling the hub's {candidate}"));
                    pc.add_ice_candidate(webrtc::peer_connection::RTCIceCandidateInit {
                        candidate: candidate.to_owned(),
                        sdp_mid: Some("0".into()),
                        sdp_mline_index: Some(0),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| fail(format!("add_ice_candidate({candidate}): {e}")))?;
                    dialled += 1;
                }
            }
            if dialled == 0 {
                return Err(fail("the hub's answer has no passive TCP candidate".into()));
            }
        }

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
            video_source: &media::CAMERA,
            tasks,
        })
    }

    /// A studio encoder publishing H.264 (the fixture's frames) and Opus to `meeting` over
    /// WHIP with `token`, as OBS does: one `POST` of its offer. Returns the client and the
    /// resource URL of the `201` answer; an error carries the hub's status and text.
    pub async fn publish_whip(
        http_addr: SocketAddr,
        meeting: i64,
        token: &str,
    ) -> Result<(Self, String), String> {
        let label = format!("encoder:{meeting}");
        let shared = Arc::new(Shared::new(label.clone()));
        let watches = Arc::new(Watches::new());
        let fail = |e: String| -> String { format!("{label}: {e}\n{}", shared.transcript()) };
        let me = media::encoder_media_engine().map_err(&fail)?;
        let pc = new_peer(&shared, &watches, me, Network::Udp)
            .await
            .map_err(&fail)?;
        let v =
            local_track("programme", RtpCodecKind::Video, media::h264_codec()).map_err(&fail)?;
        let vs = pc
            .add_track(Arc::clone(&v) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| fail(format!("add_track(video): {e}")))?;
        let a = local_track("programme", RtpCodecKind::Audio, opus_codec()).map_err(&fail)?;
        let asx = pc
            .add_track(Arc::clone(&a) as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| fail(format!("add_track(audio): {e}")))?;
        let location = http_offer(
            http_addr,
            &format!("/whip/{meeting}"),
            token,
            &pc,
            &shared,
            &watches,
        )
        .await?;
        let mut client = Self::over_http(label, meeting, pc, shared, watches);
        client.video = Some((v, vs));
        client.audio = Some((a, asx));
        client.video_source = &media::ENCODER;
        Ok((client, location))
    }

    /// A player watching `meeting`'s programme over WHEP with `token`: one `POST` of an
    /// offer with a `recvonly` video and audio line (VP8, H.264, Opus). Returns the client and
    /// the resource URL; an error carries the hub's status and text.
    /// The payload types of VP8 and of H.264 constrained baseline, this client's as the hub's.
    pub const PT_VP8: u8 = media::PT_VP8;
    pub const PT_H264: u8 = media::PT_H264;

    /// The payload type of the latest video packet received (a track whose source changes, a
    /// WHEP player's one picture, may change codec).
    pub fn last_video_payload_type(&self) -> Option<u8> {
        self.remote_tracks()
            .iter()
            .filter(|t| t.kind == "video")
            .find_map(|t| *t.last_payload_type.lock().expect("lock"))
    }

    /// A studio encoder publishing over WHIP to meeting `meeting` with `token`, connected and
    /// sending its media; panics otherwise.
    pub async fn encoder_on_air(http_addr: SocketAddr, meeting: i64, token: &str) -> Self {
        let (mut encoder, _) = Self::publish_whip(http_addr, meeting, token)
            .await
            .unwrap_or_else(|e| panic!("the encoder publishes: {e}"));
        encoder
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("the encoder connects: {e}"));
        encoder
            .start_media()
            .await
            .unwrap_or_else(|e| panic!("the encoder sends: {e}"));
        encoder
    }

    /// A player of meeting `meeting`'s watch link with `token`, connected, and the location
    /// of its resource; panics otherwise.
    pub async fn player_connected(
        http_addr: SocketAddr,
        meeting: i64,
        token: &str,
    ) -> (Self, String) {
        let (player, location) = Self::watch_whep(http_addr, meeting, token)
            .await
            .unwrap_or_else(|e| panic!("a player watches: {e}"));
        player
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("the player connects: {e}"));
        (player, location)
    }

    pub async fn watch_whep(
        http_addr: SocketAddr,
        meeting: i64,
        token: &str,
    ) -> Result<(Self, String), String> {
        let label = format!("viewer:{meeting}");
        let shared = Arc::new(Shared::new(label.clone()));
        let watches = Arc::new(Watches::new());
        let fail = |e: String| -> String { format!("{label}: {e}\n{}", shared.transcript()) };
        let me = media_engine().map_err(&fail)?;
        let pc = new_peer(&shared, &watches, me, Network::Udp)
            .await
            .map_err(&fail)?;
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            pc.add_transceiver_from_kind(
                kind,
                Some(webrtc::rtp_transceiver::RTCRtpTransceiverInit {
                    direction: webrtc::rtp_transceiver::RTCRtpTransceiverDirection::Recvonly,
                    streams: Vec::new(),
                    send_encodings: Vec::new(),
                }),
            )
            .await
            .map_err(|e| fail(format!("add_transceiver_from_kind: {e}")))?;
        }
        let location = http_offer(
            http_addr,
            &format!("/whep/{meeting}"),
            token,
            &pc,
            &shared,
            &watches,
        )
        .await?;
        Ok((
            Self::over_http(label, meeting, pc, shared, watches),
            location,
        ))
    }

    /// A client whose session is an HTTP resource (WHIP, WHEP), without a WebSocket.
    fn over_http(
        label: String,
        meeting: i64,
        pc: Arc<dyn PeerConnection>,
        shared: Arc<Shared>,
        watches: Arc<Watches>,
    ) -> Self {
        // No WebSocket: the hub's messages have nowhere to come from.
        let (outbox, _) = mpsc::unbounded_channel::<Message>();
        Self {
            opts: ClientOptions {
                role: "http",
                name: label,
                meeting,
                code: String::new(),
                publish: false,
            },
            participant_id: String::new(),
            joined: Value::Null,
            pc,
            shared,
            watches,
            outbox,
            video: None,
            audio: None,
            video_source: &media::CAMERA,
            tasks: Vec::new(),
        }
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

    /// From the next [`WebrtcClient::start_media`] on, the video track sends real VP8 that a
    /// decoder decodes (a short libvpx clip, looped) instead of VP8-shaped filler.
    #[allow(dead_code)] // not every test binary records
    pub fn send_decodable_video(&mut self) {
        self.video_source = &media::DECODABLE_CAMERA;
    }

    /// Starts sending media on the published tracks: VP8-shaped frames at 30 fps (a keyframe
    /// each second, so a late subscriber can start) and 20 ms Opus-shaped frames.
    pub async fn start_media(&mut self) -> Result<(), String> {
        let published = [
            (&self.video, self.video_source),
            (&self.audio, &media::MICROPHONE),
        ];
        let mut spawned = Vec::new();
        for (track, source) in published {
            if let Some((track, sender)) = track {
                let shared = Arc::clone(&self.shared);
                let task = media::start_sending(shared, track, sender, source)
                    .await
                    .map_err(|e| format!("{}: {}: {e}", self.label(), source.kind))?;
                spawned.push(task);
            }
        }
        self.tasks.extend(spawned);
        Ok(())
    }

    /// Video frames this client has sent since [`WebrtcClient::start_media`].
    pub fn video_frames_sent(&self) -> u64 {
        self.shared.sent.video_frames.load(Ordering::Relaxed)
    }

    /// Audio frames this client has sent since [`WebrtcClient::start_media`].
    pub fn audio_frames_sent(&self) -> u64 {
        self.shared.sent.audio_frames.load(Ordering::Relaxed)
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

    /// The hub's messages of type `kind` so far, in order (from the transcript).
    pub fn received(&self, kind: &str) -> Vec<Value> {
        lock(&self.shared.transcript)
            .iter()
            .filter_map(|line| line.split_once("] <- ").map(|(_, json)| json))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .filter(|message| message["type"] == kind)
            .collect()
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

    /// The SDP of the hub's latest offer to this client (empty before the first).
    /// The latest `console` message the hub sent (to the studio).
    pub fn console(&self) -> Option<Value> {
        lock(&self.shared.last_console).clone()
    }

    pub fn last_hub_offer(&self) -> String {
        lock(&self.shared.last_hub_offer).clone()
    }

    /// Participant ids announced by `participant_left`, in order.
    pub fn departed(&self) -> Vec<String> {
        lock(&self.shared.departed).clone()
    }

    /// Sends `message` to the hub (a chair's action, say); what comes back is in
    /// [`WebrtcClient::received`].
    pub fn send(&self, message: &Value) -> Result<(), String> {
        self.shared.note(format!("-> {}", summarize(message)));
        self.outbox
            .send(Message::text(message.to_string()))
            .map_err(|_| format!("{}: WebSocket writer is gone", self.label()))
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
        out.push_str(&s.transcript());
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

/// A peer connection with `me`'s codecs and the default interceptors, its events going to
/// `shared` and `watches`, on loopback over `network`.
async fn new_peer(
    shared: &Arc<Shared>,
    watches: &Arc<Watches>,
    mut me: webrtc::peer_connection::MediaEngine,
    network: Network,
) -> Result<Arc<dyn PeerConnection>, String> {
    let registry = register_default_interceptors(Registry::new(), &mut me)
        .map_err(|e| format!("register_default_interceptors: {e}"))?;
    let handler = Arc::new(Handler {
        shared: Arc::clone(shared),
        watches: Arc::clone(watches),
        runtime: tokio::runtime::Handle::current(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(match network {
            Network::Udp => vec!["127.0.0.1:0"],
            Network::TcpOnly => vec![],
        })
        .with_tcp_addrs(match network {
            Network::Udp => vec![],
            Network::TcpOnly => vec!["127.0.0.1:0"],
        })
        .build()
        .await
        .map_err(|e| format!("PeerConnectionBuilder::build: {e}"))?;
    Ok(Arc::new(pc))
}

/// Offers `pc`'s SDP (once ICE gathering completes) with `POST path`, `token` as the bearer,
/// and applies the `201` answer; returns its `Location`. Another status is the error, with
/// the hub's text.
async fn http_offer(
    http_addr: SocketAddr,
    path: &str,
    token: &str,
    pc: &Arc<dyn PeerConnection>,
    shared: &Arc<Shared>,
    watches: &Arc<Watches>,
) -> Result<String, String> {
    let fail = |e: String| -> String { format!("{path}: {e}\n{}", shared.transcript()) };
    let offer = step("create_offer", pc.create_offer(None))
        .await
        .map_err(&fail)?;
    step(
        "set_local_description(offer)",
        pc.set_local_description(offer.clone()),
    )
    .await
    .map_err(&fail)?;
    let _ = wait_watch(&watches.gathering, shared, "ICE gathering complete", |s| {
        (*s == RTCIceGatheringState::Complete).then_some(())
    })
    .await;
    let sdp = pc.local_description().await.unwrap_or(offer).sdp;
    shared.note(format!("our offer SDP:\n{sdp}"));
    let authorization = format!("Bearer {token}");
    let reply = crate::http::send(
        http_addr,
        "POST",
        path,
        sdp.as_bytes(),
        None,
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", "application/sdp"),
        ],
    )
    .await;
    if reply.status != 201 {
        return Err(format!("{} {}", reply.status, reply.text()));
    }
    shared.note(format!("hub answer SDP:\n{}", reply.text()));
    let location = reply
        .header("location")
        .ok_or_else(|| fail("a 201 without Location".into()))?
        .to_owned();
    let answer = RTCSessionDescription::answer(reply.text())
        .map_err(|e| fail(format!("the answer: {e}")))?;
    step(
        "set_remote_description(answer)",
        pc.set_remote_description(answer),
    )
    .await
    .map_err(&fail)?;
    Ok(location)
}
