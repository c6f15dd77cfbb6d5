//! A client endpoint of the virtual network: what a browser would be, as a str0m `Rtc` in RTP
//! mode so that tests see raw packets.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event as RtcEvent, IceCreds, Input, Output as RtcOutput, Rtc};

use super::link::Link;
use crate::ids::PeerId;

/// Simulcast rids, lowest layer first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// How many of a client's first and of its latest datagrams are kept (for replays).
const KEPT_DATAGRAMS: usize = 32;
/// How many of the latest audio packets received are kept.
const KEPT_AUDIO: usize = 50;

/// What a client offers when it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// The worker it connects to, by index.
    pub worker: usize,
    /// Its audio m-line: `SendOnly` publishes a microphone, `RecvOnly` only listens, `None`
    /// offers none (a hall without a microphone: every audio m-line it gets is the hub's).
    pub audio: Option<Direction>,
    /// Whether it publishes video.
    pub video: bool,
    /// Publish video as three simulcast layers ([`RIDS`]).
    pub simulcast: bool,
    /// Offer RFC 2198 RED for Opus (and send audio as RED when the hub accepts it), as
    /// browsers do.
    pub red: bool,
}

impl Default for ClientConfig {
    /// Publishes audio and video on worker 0, without simulcast or RED.
    fn default() -> ClientConfig {
        ClientConfig {
            worker: 0,
            audio: Some(Direction::SendOnly),
            video: true,
            simulcast: false,
            red: false,
        }
    }
}

/// A client connected to one worker. States: offered (its first offer answered) → connected
/// (ICE and DTLS up, [`Client::connected`]); it never leaves on its own.
#[derive(Debug)]
pub struct Client {
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub config: ClientConfig,
    /// The m-lines it publishes on.
    pub send_mids: Vec<(MediaKind, Mid)>,
    /// The m-lines the hub offered it (its consumers).
    pub recv_mids: Vec<(MediaKind, Mid)>,
    pub connected: bool,
    /// Its own ICE username fragment.
    pub ufrag: String,
    /// The hub's ICE credentials for this client, from the hub's answer.
    pub hub_ice: IceCreds,
    /// RTP packets received, per kind.
    pub received: HashMap<MediaKind, u64>,
    /// RTP packets written, per kind.
    pub sent: HashMap<MediaKind, u64>,
    /// Stream ids (publisher peers) of the tracks it was offered.
    pub offered_streams: Vec<String>,
    /// The hub's answer to its first offer.
    pub first_answer: String,
    /// The hub's latest offer to it.
    pub last_offer: String,
    /// Keyframe requests (PLI, FIR) the hub sent it.
    pub keyframe_requests: u64,
    /// Video packets received per simulcast layer (read from the test payload).
    pub layers_received: [u64; 3],
    /// The latest audio packets received: payload type and payload.
    pub audio_packets: VecDeque<(u8, Vec<u8>)>,
    /// The hub-to-client link.
    pub downlink: Link,
    /// Its latest datagrams to the hub, newest last.
    pub datagrams_sent: VecDeque<Vec<u8>>,
    /// Its first datagrams to the hub (STUN checks, the DTLS ClientHello).
    pub first_datagrams_sent: Vec<Vec<u8>>,
    seq: HashMap<(MediaKind, u8), u64>,
    next_send: HashMap<MediaKind, Instant>,
    /// Layers asked for a keyframe by the hub.
    keyframe_wanted: [bool; 3],
    /// The previous audio frame sent, carried again in the next one when RED is negotiated.
    last_audio: Option<Vec<u8>>,
}

impl Client {
    /// A client at `addr` and its first offer, to hand to the hub.
    pub(crate) fn offer(
        now: Instant,
        peer: PeerId,
        addr: SocketAddr,
        config: ClientConfig,
    ) -> (Client, String, SdpPendingOffer) {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, config.red)
            .enable_vp8(true)
            .set_dtls_cert(certificates().1.clone())
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut api = rtc.sdp_api();
        let audio = config
            .audio
            .map(|direction| api.add_media(MediaKind::Audio, direction, None, None, None));
        let layers = config.simulcast.then(|| {
            let mut layers = Simulcast::new();
            for rid in RIDS {
                layers.add_send_layer(SimulcastLayer::new(rid));
            }
            layers
        });
        let video = config
            .video
            .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers));
        let (offer, pending) = api.apply().expect("an offer");
        let send_mids = audio
            .filter(|_| config.audio == Some(Direction::SendOnly))
            .map(|mid| (MediaKind::Audio, mid))
            .into_iter()
            .chain(video.map(|mid| (MediaKind::Video, mid)))
            .collect();
        let client = Client {
            peer,
            addr,
            rtc,
            config,
            send_mids,
            recv_mids: Vec::new(),
            connected: false,
            ufrag,
            hub_ice: IceCreds {
                ufrag: String::new(),
                pass: String::new(),
            },
            received: HashMap::new(),
            sent: HashMap::new(),
            offered_streams: Vec::new(),
            first_answer: String::new(),
            last_offer: String::new(),
            keyframe_requests: 0,
            layers_received: [0; 3],
            audio_packets: VecDeque::new(),
            downlink: Link::seeded(peer.0),
            datagrams_sent: VecDeque::new(),
            first_datagrams_sent: Vec::new(),
            seq: HashMap::new(),
            next_send: HashMap::new(),
            keyframe_wanted: [true; 3],
            last_audio: None,
        };
        (client, offer.to_sdp_string(), pending)
    }

    /// RTP packets of `kind` it received.
    pub fn received_count(&self, kind: MediaKind) -> u64 {
        self.received.get(&kind).copied().unwrap_or(0)
    }

    /// RTP packets of any kind it received.
    pub fn rtp_received(&self) -> u64 {
        self.received.values().sum()
    }

    /// RTP packets of `kind` it wrote.
    pub fn sent_count(&self, kind: MediaKind) -> u64 {
        self.sent.get(&kind).copied().unwrap_or(0)
    }

    /// Notes the streams a hub offer sends it (its `sendonly` m-lines' msid).
    pub(crate) fn note_offer(&mut self, sdp: &str) {
        sdp.clone_into(&mut self.last_offer);
        for section in sdp.split("\r\nm=").skip(1) {
            if !section.contains("a=sendonly") {
                continue;
            }
            let stream = section
                .lines()
                .filter_map(|l| l.strip_prefix("a=msid:"))
                .filter_map(|l| l.split(' ').next())
                .next();
            if let Some(stream) = stream
                && !self.offered_streams.iter().any(|s| s == stream)
            {
                self.offered_streams.push(stream.to_owned());
            }
        }
    }

    /// Publishes like a real client, `elapsed` into the meeting: a 20 ms Opus packet every
    /// 20 ms and a video frame every 33 ms: `video_packets` packets of 1,000 bytes, or with
    /// simulcast three layers of about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s. Each layer sends
    /// a keyframe every 2 seconds and when the hub asks for one. The third payload byte names
    /// the layer; an audio payload starts with its frame number.
    pub fn send_media(&mut self, now: Instant, elapsed: Duration, video_packets: usize) {
        if !self.connected {
            return;
        }
        let elapsed = elapsed.as_millis() as u64;
        for (kind, mid) in self.send_mids.clone() {
            let (codec, clock, interval) = match kind {
                MediaKind::Audio => (Codec::Opus, 48, Duration::from_millis(20)),
                MediaKind::Video => (Codec::Vp8, 90, Duration::from_millis(33)),
            };
            let due = self.next_send.entry(kind).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + interval;
            let Some(pt) = self
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let red = self
                .rtc
                .codec_config()
                .find(|p| p.pt() == pt)
                .and_then(|p| p.red());
            let streams: &[(Option<&str>, u8, usize, usize)] = match (kind, self.config.simulcast) {
                (MediaKind::Audio, _) => &[(None, 0, 1, 120)],
                (MediaKind::Video, false) => &[(None, 0, video_packets, 1000)],
                (MediaKind::Video, true) => &[
                    (Some(RIDS[0]), 0, 1, 560),
                    (Some(RIDS[1]), 1, 2, 940),
                    (Some(RIDS[2]), 2, 6, 940),
                ],
            };
            let frame = elapsed / 33;
            for &(rid, layer, count, size) in streams {
                let wanted = self.keyframe_wanted.get_mut(usize::from(layer));
                let keyframe = kind == MediaKind::Video
                    && (frame.is_multiple_of(60) || wanted.is_some_and(std::mem::take));
                for i in 0..count {
                    let seq = self.seq.entry((kind, layer)).or_insert(0);
                    *seq += 1;
                    let seq = *seq;
                    let mut payload = vec![0u8; size];
                    match kind {
                        // The frame number, so receivers can tell frames apart.
                        MediaKind::Audio => {
                            for (p, b) in payload.iter_mut().zip(seq.to_be_bytes()) {
                                *p = b;
                            }
                        }
                        MediaKind::Video => {
                            for (p, b) in payload.iter_mut().zip([
                                if i == 0 { 0x10 } else { 0x00 },
                                if keyframe { 0x00 } else { 0x01 },
                                layer,
                            ]) {
                                *p = b;
                            }
                        }
                    }
                    let (pt, payload) = match (kind, red) {
                        (MediaKind::Audio, Some(red)) => {
                            let previous = self.last_audio.replace(payload.clone());
                            (red, red_payload(*pt, previous.as_deref(), &payload))
                        }
                        _ => (pt, payload),
                    };
                    let mut direct = self.rtc.direct_api();
                    let Some(stream) = direct.stream_tx_by_mid(mid, rid.map(Into::into)) else {
                        continue;
                    };
                    stream.write_rtp(
                        RtpWrite::new(pt, seq.into(), (elapsed * clock) as u32, now, payload)
                            .marker(i + 1 == count)
                            .nackable(kind == MediaKind::Video),
                    );
                    *self.sent.entry(kind).or_default() += 1;
                }
            }
        }
    }

    /// Takes a datagram from the hub.
    pub(crate) fn receive(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let Ok(contents) = contents.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            str0m::net::Receive {
                proto: str0m::net::Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        );
        let _ = self.rtc.handle_input(input);
    }

    /// Drains its output: events update its counters, datagrams go to `to_hub`. A due timeout
    /// is handled once per call: str0m may ask for `now` again right after handling it.
    /// Returns whether anything happened.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        to_hub: &mut Vec<(usize, SocketAddr, Vec<u8>)>,
    ) -> bool {
        let mut busy = false;
        let mut timed_out = false;
        loop {
            match self.rtc.poll_output() {
                Ok(RtcOutput::Transmit(t)) => {
                    busy = true;
                    let contents = t.contents.to_vec();
                    if self.first_datagrams_sent.len() < KEPT_DATAGRAMS {
                        self.first_datagrams_sent.push(contents.clone());
                    }
                    if self.datagrams_sent.len() == KEPT_DATAGRAMS {
                        self.datagrams_sent.pop_front();
                    }
                    self.datagrams_sent.push_back(contents.clone());
                    to_hub.push((self.config.worker, self.addr, contents));
                }
                Ok(RtcOutput::Event(event)) => {
                    busy = true;
                    self.handle_event(event);
                }
                Ok(RtcOutput::Timeout(at)) if at <= now && !timed_out => {
                    timed_out = true;
                    busy = true;
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
                Ok(RtcOutput::Timeout(_)) | Err(_) => return busy,
            }
        }
    }

    fn handle_event(&mut self, event: RtcEvent) {
        match event {
            RtcEvent::Connected => self.connected = true,
            RtcEvent::MediaAdded(added)
                if added.direction == Direction::RecvOnly
                    && !self.recv_mids.iter().any(|(_, m)| *m == added.mid) =>
            {
                self.recv_mids.push((added.kind, added.mid));
            }
            RtcEvent::RtpPacket(p) => {
                let pt = p.header.payload_type;
                let audio = self
                    .rtc
                    .codec_config()
                    .find(|x| x.pt() == pt || x.red() == Some(pt))
                    .is_some_and(|x| x.spec().codec == Codec::Opus);
                if audio {
                    if self.audio_packets.len() == KEPT_AUDIO {
                        self.audio_packets.pop_front();
                    }
                    self.audio_packets.push_back((*pt, p.payload.to_vec()));
                }
                let kind = if audio {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                *self.received.entry(kind).or_default() += 1;
                if !audio
                    && let Some(layer) = p.payload.get(2)
                    && let Some(count) = self.layers_received.get_mut(usize::from(*layer))
                {
                    *count += 1;
                }
            }
            RtcEvent::KeyframeRequest(request) => {
                self.keyframe_requests += 1;
                let layer = request
                    .rid
                    .and_then(|rid| RIDS.iter().position(|r| rid == (*r).into()))
                    .unwrap_or(0);
                if let Some(wanted) = self.keyframe_wanted.get_mut(layer) {
                    *wanted = true;
                }
            }
            _ => {}
        }
    }
}

/// An RFC 2198 payload: `previous` (one 20 ms frame back) as the redundant block, then
/// `primary`, both of payload type `opus`.
pub fn red_payload(opus: u8, previous: Option<&[u8]>, primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(primary.len() * 2 + 5);
    if let Some(previous) = previous {
        let offset: u32 = 960;
        let len = previous.len() as u32;
        out.extend_from_slice(&[
            0x80 | opus,
            (offset >> 6) as u8,
            (((offset & 0x3f) << 2) | (len >> 8)) as u8,
            (len & 0xff) as u8,
        ]);
    }
    out.push(opus);
    if let Some(previous) = previous {
        out.extend_from_slice(previous);
    }
    out.extend_from_slice(primary);
    out
}

/// The DTLS certificates of the hub and of the clients, made once per process: set-up is then
/// the ICE and DTLS handshakes alone.
pub(crate) fn certificates() -> &'static (DtlsCert, DtlsCert) {
    static CERTIFICATES: OnceLock<(DtlsCert, DtlsCert)> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        let provider = str0m::crypto::from_feature_flags().dtls_provider;
        let make = || provider.generate_certificate().expect("a DTLS certificate");
        (make(), make())
    })
}

/// `a=ice-ufrag` and `a=ice-pwd` of an SDP.
pub(crate) fn ice_credentials(sdp: &str) -> IceCreds {
    let find = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .expect("ICE credentials in the hub's answer")
    };
    IceCreds {
        ufrag: find("a=ice-ufrag:"),
        pass: find("a=ice-pwd:"),
    }
}
