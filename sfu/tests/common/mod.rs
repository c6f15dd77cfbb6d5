//! A virtual network for scenario tests: one sans-IO [`Worker`] and in-process str0m clients,
//! exchanging datagrams in memory under a virtual clock. The test plays the hub's meeting logic
//! (which consumer takes which producer) through [`Net::on_producer`].

#![allow(dead_code, clippy::indexing_slicing)] // test harness: a bad index is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use diemcau_sfu::str0m::change::{SdpAnswer, SdpOffer};
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::{Direction, MediaKind, Mid};
use diemcau_sfu::str0m::net::{Protocol, Receive};
use diemcau_sfu::str0m::rtp::RtpWrite;
use diemcau_sfu::str0m::{Candidate, Event as RtcEvent, Input, Output as RtcOutput, Rtc};
use diemcau_sfu::{Event, Output, PeerId, ProducerInfo, RouterId, Worker, WorkerConfig};

pub const HUB: &str = "127.0.0.1:40000";
/// Simulcast rids, lowest layer first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
pub const STEP: Duration = Duration::from_millis(5);

/// A client endpoint (what a browser would be), in RTP mode so tests see raw packets.
pub struct Client {
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub send_mids: Vec<(MediaKind, Mid)>,
    pub connected: bool,
    /// RTP packets received, per kind.
    pub received: HashMap<MediaKind, u64>,
    /// Stream ids (publisher peers) of the tracks it was offered.
    pub offered_streams: Vec<String>,
    pub keyframe_requests: u64,
    /// RTP packets written, per kind.
    pub sent: HashMap<MediaKind, u64>,
    seq: HashMap<(MediaKind, u8), u64>,
    next_send: HashMap<MediaKind, Instant>,
    /// Publish video as three simulcast layers (`q`, `h`, `f`, lowest first).
    pub simulcast: bool,
    /// Video packets received per simulcast layer (read from the test payload).
    pub layers_received: [u64; 3],
    /// The hub-to-client link.
    pub downlink: Link,
    /// Layers asked for a keyframe by the hub.
    keyframe_wanted: [bool; 3],
    /// The latest audio packets received: payload type and payload.
    pub audio_packets: std::collections::VecDeque<(u8, Vec<u8>)>,
    /// The previous audio frame sent, carried again in the next one when RED is negotiated.
    last_audio: Option<Vec<u8>>,
}

impl Client {
    /// RTP packets of `kind` it received.
    pub fn received_count(&self, kind: MediaKind) -> u64 {
        self.received.get(&kind).copied().unwrap_or(0)
    }

    /// RTP packets of `kind` it wrote.
    pub fn sent_count(&self, kind: MediaKind) -> u64 {
        self.sent.get(&kind).copied().unwrap_or(0)
    }
}

/// A one-way link: a rate cap with a drop-tail queue, a fixed delay and random loss.
#[derive(Debug, Default)]
pub struct Link {
    pub rate_bps: Option<u64>,
    pub delay: Duration,
    pub loss_percent: u32,
    queue: std::collections::VecDeque<(Instant, Vec<u8>)>,
    next_free: Option<Instant>,
    rng: u64,
}

impl Link {
    /// Most time a datagram may wait in the queue before being dropped.
    const MAX_QUEUE: Duration = Duration::from_millis(250);

    fn push(&mut self, now: Instant, datagram: Vec<u8>) {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if ((self.rng >> 33) % 100) < u64::from(self.loss_percent) {
            return;
        }
        let mut release = now;
        if let Some(rate) = self.rate_bps {
            let start = self.next_free.unwrap_or(now).max(now);
            if start.saturating_duration_since(now) > Self::MAX_QUEUE {
                return;
            }
            let tx = Duration::from_nanos(datagram.len() as u64 * 8 * 1_000_000_000 / rate.max(1));
            self.next_free = Some(start + tx);
            release = start + tx;
        }
        self.queue.push_back((release + self.delay, datagram));
    }

    fn due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, d)) = self.queue.pop_front() {
                out.push(d);
            }
        }
        out
    }
}

pub struct Net {
    pub now: Instant,
    pub start: Instant,
    pub worker: Worker,
    pub hub: SocketAddr,
    pub router: RouterId,
    pub clients: Vec<Client>,
    pub producers: Vec<ProducerInfo>,
    /// Decides who consumes a new producer: `(subscriber, publisher) -> bool`.
    pub consumes: fn(PeerId, PeerId) -> bool,
    /// `Reception` events from the hub, in order.
    pub receptions: Vec<(PeerId, bool)>,
    /// Virtual time between two turns of the network.
    pub step: Duration,
    /// Clients that offer RFC 2198 RED for Opus (and send their audio as RED when the hub
    /// accepts it), as browsers do.
    pub red: Vec<PeerId>,
    /// Clients whose first offer has video alone (a hall without a microphone): every audio
    /// m-line they get is one the hub offers.
    pub video_only: Vec<PeerId>,
}

impl Net {
    pub fn new(consumes: fn(PeerId, PeerId) -> bool) -> Net {
        let now = Instant::now();
        let hub: SocketAddr = HUB.parse().expect("hub address");
        Net {
            now,
            start: now,
            worker: Worker::new(WorkerConfig::new(vec![hub])),
            hub,
            router: RouterId(1),
            clients: Vec::new(),
            producers: Vec::new(),
            consumes,
            receptions: Vec::new(),
            step: STEP,
            red: Vec::new(),
            video_only: Vec::new(),
        }
    }

    /// Adds a client publishing audio and video, and exchanges its first offer with the hub.
    pub fn join(&mut self, peer: PeerId) -> usize {
        self.join_with(peer, false)
    }

    /// Like [`Net::join`], publishing video in three simulcast layers when `simulcast`.
    pub fn join_with(&mut self, peer: PeerId, simulcast: bool) -> usize {
        let addr: SocketAddr = format!("127.0.0.{}:5000", 2 + self.clients.len())
            .parse()
            .expect("client address");
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, self.red.contains(&peer))
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let audio = (!self.video_only.contains(&peer))
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let layers = simulcast.then(|| {
            let mut s = diemcau_sfu::str0m::media::Simulcast::new();
            for rid in RIDS {
                s.add_send_layer(diemcau_sfu::str0m::media::SimulcastLayer::new(rid));
            }
            s
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = self
            .worker
            .add_peer(self.now, peer, self.router, &offer.to_sdp_string())
            .expect("hub accepts the offer");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("hub answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("client accepts the answer");
        self.clients.push(Client {
            peer,
            addr,
            rtc,
            send_mids: audio
                .map(|audio| (MediaKind::Audio, audio))
                .into_iter()
                .chain([(MediaKind::Video, video)])
                .collect(),
            connected: false,
            received: HashMap::new(),
            offered_streams: Vec::new(),
            keyframe_requests: 0,
            sent: HashMap::new(),
            seq: HashMap::new(),
            next_send: HashMap::new(),
            simulcast,
            layers_received: [0; 3],
            downlink: Link {
                rng: peer.0,
                ..Link::default()
            },
            keyframe_wanted: [true; 3],
            audio_packets: std::collections::VecDeque::new(),
            last_audio: None,
        });
        self.pump();
        self.clients.len() - 1
    }

    pub fn client(&mut self, peer: PeerId) -> &mut Client {
        self.clients
            .iter_mut()
            .find(|c| c.peer == peer)
            .expect("known client")
    }

    /// Runs the network for `duration` of virtual time; `each_step` may write media.
    pub fn run(&mut self, duration: Duration, mut each_step: impl FnMut(&mut Net)) {
        let end = self.now + duration;
        while self.now < end {
            self.now += self.step;
            let now = self.now;
            self.worker.handle_timeout(now);
            for c in &mut self.clients {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            each_step(self);
            self.pump();
        }
    }

    /// Publishes like a real client from `peer`: a 20 ms Opus packet every 20 ms and a video
    /// frame every 33 ms: `video_packets` packets of 1,000 bytes, or with simulcast three
    /// layers of about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s. Each layer sends a keyframe every
    /// 2 seconds and when the hub asks for one. The third payload byte names the layer.
    pub fn send_media(&mut self, peer: PeerId, video_packets: usize) {
        let now = self.now;
        let elapsed = (now - self.start).as_millis() as u64;
        let client = self.client(peer);
        if !client.connected {
            return;
        }
        let mids = client.send_mids.clone();
        for (kind, mid) in mids {
            let (codec, clock, interval) = match kind {
                MediaKind::Audio => (Codec::Opus, 48, Duration::from_millis(20)),
                MediaKind::Video => (Codec::Vp8, 90, Duration::from_millis(33)),
            };
            let due = client.next_send.entry(kind).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + interval;
            let Some(pt) = client
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let streams: Vec<(Option<&str>, u8, usize, usize)> = match (kind, client.simulcast) {
                (MediaKind::Audio, _) => vec![(None, 0, 1, 120)],
                (MediaKind::Video, false) => vec![(None, 0, video_packets, 1000)],
                (MediaKind::Video, true) => {
                    vec![
                        (Some(RIDS[0]), 0, 1, 560),
                        (Some(RIDS[1]), 1, 2, 940),
                        (Some(RIDS[2]), 2, 6, 940),
                    ]
                }
            };
            let frame = elapsed / 33;
            for (rid, layer, count, size) in streams {
                let keyframe = kind == MediaKind::Video
                    && (frame.is_multiple_of(60)
                        || std::mem::take(&mut client.keyframe_wanted[usize::from(layer)]));
                for i in 0..count {
                    let seq = client.seq.entry((kind, layer)).or_insert(0);
                    *seq += 1;
                    let seq = *seq;
                    let mut payload = vec![0u8; size];
                    if kind == MediaKind::Audio {
                        // The frame number, so receivers can tell frames apart.
                        payload[..8].copy_from_slice(&seq.to_be_bytes());
                    }
                    if kind == MediaKind::Video {
                        payload[0] = if i == 0 { 0x10 } else { 0x00 };
                        payload[1] = if keyframe { 0x00 } else { 0x01 };
                        payload[2] = layer;
                    }
                    let red = client
                        .rtc
                        .codec_config()
                        .find(|p| p.pt() == pt)
                        .and_then(|p| p.red());
                    let (pt, payload) = match (kind, red) {
                        (MediaKind::Audio, Some(red)) => {
                            let previous = client.last_audio.replace(payload.clone());
                            (red, red_payload(*pt, previous.as_deref(), &payload))
                        }
                        _ => (pt, payload),
                    };
                    let mut direct = client.rtc.direct_api();
                    let Some(stream) = direct.stream_tx_by_mid(mid, rid.map(Into::into)) else {
                        continue;
                    };
                    stream.write_rtp(
                        RtpWrite::new(pt, seq.into(), (elapsed * clock) as u32, now, payload)
                            .marker(i + 1 == count)
                            .nackable(kind == MediaKind::Video),
                    );
                    *client.sent.entry(kind).or_default() += 1;
                }
            }
        }
    }

    /// Moves every pending datagram and event until all parties are quiet. Each client is
    /// polled right after each datagram it receives, as a real driver does (in RTP mode str0m
    /// holds one received packet at a time).
    pub fn pump(&mut self) {
        // str0m may ask to be woken "now" again right after a timeout while the virtual clock
        // stands still: handle a due timeout once per pump.
        let mut timed_out = false;
        for _ in 0..10_000 {
            let mut busy = false;
            let mut to_clients = Vec::new();
            let mut events = Vec::new();
            loop {
                match self.worker.poll_output() {
                    Output::Transmit(t) => to_clients.push((t.destination, t.contents.to_vec())),
                    Output::Event(event) => events.push(event),
                    Output::Relay(_) => {}
                    Output::Timeout(at) if at <= self.now && !timed_out => {
                        timed_out = true;
                        self.worker.handle_timeout(self.now);
                        busy = true;
                        break;
                    }
                    Output::Timeout(_) => break,
                }
            }
            busy |= !to_clients.is_empty() || !events.is_empty();
            let mut to_hub = Vec::new();
            let now = self.now;
            for (destination, contents) in to_clients {
                if let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) {
                    c.downlink.push(now, contents);
                }
            }
            let mut deliveries = Vec::new();
            for c in &mut self.clients {
                for d in c.downlink.due(now) {
                    deliveries.push((c.addr, d));
                }
            }
            busy |= !deliveries.is_empty();
            for (destination, contents) in deliveries {
                let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) else {
                    continue;
                };
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: self.hub,
                        destination,
                        contents: (&contents[..]).try_into().expect("datagram"),
                    },
                );
                let _ = c.rtc.handle_input(input);
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            for event in events {
                self.on_event(event);
            }
            for c in &mut self.clients {
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            for (source, contents) in to_hub {
                self.worker
                    .handle_datagram(self.now, source, self.hub, &contents);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ProducerAdded(info) => {
                let subscribers: Vec<PeerId> = self
                    .clients
                    .iter()
                    .map(|c| c.peer)
                    .filter(|s| (self.consumes)(*s, info.peer))
                    .collect();
                for s in subscribers {
                    self.worker
                        .add_consumer(s, &info, u8::MAX)
                        .expect("consumer added");
                }
                self.producers.push(info);
            }
            Event::Offer { peer, sdp } => {
                let c = self.client(peer);
                let offer = SdpOffer::from_sdp_string(&sdp).expect("hub offer parses");
                // Streams of the m-lines the hub sends (sendonly from its side).
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
                        && !c.offered_streams.iter().any(|s| s == stream)
                    {
                        c.offered_streams.push(stream.to_owned());
                    }
                }
                let answer = c.rtc.sdp_api().accept_offer(offer).expect("client answers");
                self.worker
                    .accept_answer(self.now, peer, &answer.to_sdp_string())
                    .expect("hub accepts the answer");
            }
            Event::Reception { peer, audio_only } => self.receptions.push((peer, audio_only)),
            Event::PeerConnected(_) | Event::PeerClosed(_) | Event::Quality { .. } => {}
        }
    }

    /// Subscribes a late joiner to every producer the rules give it.
    pub fn subscribe_existing(&mut self, peer: PeerId) {
        let infos: Vec<ProducerInfo> = self
            .producers
            .iter()
            .filter(|p| (self.consumes)(peer, p.peer))
            .cloned()
            .collect();
        for info in infos {
            self.worker
                .add_consumer(peer, &info, u8::MAX)
                .expect("consumer added");
        }
        self.pump();
    }
}

/// Drains a client's output: events update its counters, datagrams go to `to_hub`.
fn poll_client(c: &mut Client, now: Instant, to_hub: &mut Vec<(SocketAddr, Vec<u8>)>) -> bool {
    let mut busy = false;
    loop {
        match c.rtc.poll_output() {
            Ok(RtcOutput::Transmit(t)) => {
                busy = true;
                to_hub.push((c.addr, t.contents.to_vec()));
            }
            Ok(RtcOutput::Event(e)) => {
                busy = true;
                match e {
                    RtcEvent::Connected => c.connected = true,
                    RtcEvent::RtpPacket(p) => {
                        let pt = p.header.payload_type;
                        let audio = c
                            .rtc
                            .codec_config()
                            .find(|x| x.pt() == pt || x.red() == Some(pt))
                            .is_some_and(|x| x.spec().codec == Codec::Opus);
                        if audio {
                            if c.audio_packets.len() == 50 {
                                c.audio_packets.pop_front();
                            }
                            c.audio_packets.push_back((*pt, p.payload.to_vec()));
                        }
                        let kind = if audio {
                            MediaKind::Audio
                        } else {
                            MediaKind::Video
                        };
                        *c.received.entry(kind).or_default() += 1;
                        if !audio
                            && let Some(layer) = p.payload.get(2)
                            && let Some(count) = c.layers_received.get_mut(usize::from(*layer))
                        {
                            *count += 1;
                        }
                    }
                    RtcEvent::KeyframeRequest(request) => {
                        c.keyframe_requests += 1;
                        let layer = request
                            .rid
                            .and_then(|rid| RIDS.iter().position(|r| rid == (*r).into()))
                            .unwrap_or(0);
                        if let Some(wanted) = c.keyframe_wanted.get_mut(layer) {
                            *wanted = true;
                        }
                    }
                    _ => {}
                }
            }
            Ok(RtcOutput::Timeout(at)) if at <= now => {
                busy = true;
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            Ok(RtcOutput::Timeout(_)) | Err(_) => return busy,
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
