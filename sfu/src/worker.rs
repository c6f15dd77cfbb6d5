//! The sans-IO state of one media worker: a set of peers, their routing, and their timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::config::DtlsCert;
use str0m::media::{KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::ExtensionValues;
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output as RtcOutput};
use str0m::{Rtc, RtcConfig};

use crate::SfuError;
use crate::ids::{ConsumerId, PeerId, ProducerId, RouterId};
use crate::peer::Peer;
use crate::router::KeyframeThrottle;
use crate::router::{Consumer, KeyframeDecision, LocalProducer, MediaPacket, Meter, Router};
use crate::stun;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Index of this worker among `workers`; ids it allocates are unique across all of them.
    pub index: u32,
    pub workers: u32,
    /// Host candidates announced to peers: the address(es) of this worker's UDP socket as the
    /// clients must reach it.
    pub candidates: Vec<SocketAddr>,
    /// At most one keyframe request per producer per this interval reaches its publisher.
    pub keyframe_interval: Duration,
    /// Shared DTLS certificate; one is generated when `None`.
    pub dtls_cert: Option<DtlsCert>,
    /// How often each peer's link quality is reported ([`Event::Quality`]); `None`: never.
    pub quality_interval: Option<Duration>,
    /// Bandwidth estimate each peer's link starts from, before feedback corrects it.
    pub initial_bitrate: Bitrate,
}

impl WorkerConfig {
    pub fn new(candidates: Vec<SocketAddr>) -> WorkerConfig {
        WorkerConfig {
            index: 0,
            workers: 1,
            candidates,
            keyframe_interval: Duration::from_millis(500),
            dtls_cert: None,
            quality_interval: Some(Duration::from_secs(10)),
            initial_bitrate: Bitrate::mbps(3),
        }
    }
}

/// A producer as the rest of the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerInfo {
    pub id: ProducerId,
    pub router: RouterId,
    pub peer: PeerId,
    pub kind: MediaKind,
}

/// Something that must reach the other workers: each gets it once.
#[derive(Debug, Clone)]
pub enum Relay {
    Media(Arc<MediaPacket>),
    KeyframeRequest {
        router: RouterId,
        producer: ProducerId,
        layer: u8,
    },
}

/// What happened, for the hub's meeting logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ICE and DTLS are up.
    PeerConnected(PeerId),
    /// The connection is gone (ICE timeout or DTLS close); the worker has dropped the peer.
    PeerClosed(PeerId),
    /// A peer started publishing a track.
    ProducerAdded(ProducerInfo),
    /// The hub renegotiates with a peer: send this offer to its client and feed back the answer.
    Offer { peer: PeerId, sdp: String },
    /// Periodic link quality of a connected peer.
    Quality { peer: PeerId, quality: Quality },
    /// The peer's link no longer carries any video it should receive (`audio_only`), or
    /// carries it again.
    Reception { peer: PeerId, audio_only: bool },
}

/// A peer's link quality over the last interval, seen from the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quality {
    /// What the hub received from the peer.
    pub bitrate_in_kbps: u32,
    /// What the hub sent to the peer.
    pub bitrate_out_kbps: u32,
    /// Packet loss in tenths of a percent: the worse of the two directions.
    pub loss_permille: u32,
    pub rtt_ms: u32,
}

/// Output of [`Worker::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Send this datagram from the worker's socket.
    Transmit(Transmit),
    Relay(Relay),
    Event(Event),
    /// Nothing more to do until this instant (or until new input).
    Timeout(Instant),
}

/// Counters, for the hub's statistics and for benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub datagrams_received: u64,
    /// Datagrams no peer claimed.
    pub datagrams_unrouted: u64,
    pub packets_received: u64,
    /// RTP packets written to consumers.
    pub packets_forwarded: u64,
    /// Payload bytes of those packets.
    pub bytes_forwarded: u64,
    /// Peers closed before ICE and DTLS came up.
    pub handshake_failures: u64,
    /// RTP packets of muted producers, dropped on arrival.
    pub packets_dropped_paused: u64,
    pub keyframe_requests_sent: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Peer(PeerId),
    Keyframe(RouterId, ProducerId, u8),
    /// Re-check every peer's layers against its bandwidth.
    Allocate,
}

/// A media worker's peers and routing, driven from outside: datagrams and relays come in
/// through `handle_*`, everything to do comes out of [`Worker::poll_output`].
///
/// ```no_run
/// # use diemcau_sfu::{Worker, WorkerConfig, Output};
/// # use std::time::Instant;
/// # fn send(_: &[u8], _: std::net::SocketAddr) {}
/// let mut worker = Worker::new(WorkerConfig::new(vec!["127.0.0.1:40000".parse().unwrap()]));
/// loop {
///     match worker.poll_output() {
///         Output::Transmit(t) => send(&t.contents, t.destination),
///         Output::Timeout(_at) => break, // wait for a datagram or `_at`, then handle it
///         _ => {}
///     }
/// }
/// worker.handle_timeout(Instant::now());
/// ```
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    rtc_config: RtcConfig,
    peers: HashMap<PeerId, Peer>,
    by_address: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    /// Peers written to since they were last driven, and the time of that input: each is
    /// driven once at the next [`Worker::poll_output`], however many packets it was given, so
    /// a frame's packets to one site cost one pass over its `Rtc`, not one per packet.
    touched: Vec<PeerId>,
    touched_at: Option<Instant>,
    /// Peers with consumer changes to offer: offered together at the next `poll_output`, so
    /// several tracks added at once cost one offer/answer round trip.
    to_renegotiate: Vec<PeerId>,
    core: Core,
}

/// Everything but the peers, so a peer can be driven while the rest is updated.
#[derive(Debug)]
struct Core {
    routers: HashMap<RouterId, Router>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    outputs: VecDeque<Output>,
    work: VecDeque<Work>,
    closed: Vec<PeerId>,
    next_id: u64,
    stride: u64,
    relay: bool,
    keyframe_interval: Duration,
    stats: WorkerStats,
    /// Bitrate of each producer's layers, as seen by this worker.
    meters: HashMap<(ProducerId, u8), Meter>,
    allocate_scheduled: bool,
    /// Peers with a new bandwidth estimate, to re-allocate.
    estimates_changed: Vec<PeerId>,
}

#[derive(Debug)]
enum Work {
    Forward(Arc<MediaPacket>),
    Keyframe(RouterId, ProducerId, u8),
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Worker {
        let mut rtc_config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            // Opus with in-band FEC, and RFC 2198 RED where the client offers it.
            .enable_opus(true, true)
            .enable_vp8(true)
            .set_stats_interval(config.quality_interval)
            .enable_bwe(Some(config.initial_bitrate))
            // Every consumer's stream keeps its recent packets for retransmission: over half a
            // second of 2.5 Mbit/s video, longer on the lower layers (str0m's default of 1,000
            // was most of a site's memory), and a second of audio.
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
            .set_send_buffer_audio(SEND_BUFFER_AUDIO);
        let cert = config.dtls_cert.clone().or_else(|| {
            str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate()
        });
        if let Some(cert) = cert {
            rtc_config = rtc_config.set_dtls_cert(cert);
        }
        let core = Core {
            routers: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            work: VecDeque::new(),
            closed: Vec::new(),
            next_id: u64::from(config.index) + 1,
            stride: u64::from(config.workers.max(1)),
            relay: config.workers > 1,
            keyframe_interval: config.keyframe_interval,
            stats: WorkerStats::default(),
            meters: HashMap::new(),
            allocate_scheduled: false,
            estimates_changed: Vec::new(),
        };
        Worker {
            config,
            rtc_config,
            peers: HashMap::new(),
            by_address: HashMap::new(),
            by_ufrag: HashMap::new(),
            touched: Vec::new(),
            touched_at: None,
            to_renegotiate: Vec::new(),
            core,
        }
    }

    pub fn stats(&self) -> WorkerStats {
        self.core.stats
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Creates a peer from its client's first offer and returns the hub's answer. Producers
    /// announced by the offer come out as [`Event::ProducerAdded`].
    pub fn add_peer(
        &mut self,
        now: Instant,
        id: PeerId,
        router: RouterId,
        offer: &str,
    ) -> Result<String, SfuError> {
        if self.peers.contains_key(&id) {
            return Err(SfuError::PeerExists(id));
        }
        let mut rtc = self.rtc_config.clone().build(now);
        for addr in &self.config.candidates {
            let candidate = Candidate::host(*addr, "udp")
                .map_err(|e| SfuError::Config(format!("candidate {addr}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let mut peer = Peer::new(id, router, rtc);
        // Layers are chosen from the configured estimate until str0m's own arrives.
        peer.estimate = Some(self.config.initial_bitrate.as_u64());
        let answer = peer.accept_offer(offer)?;
        self.by_ufrag.insert(peer.ufrag.clone(), id);
        self.core.routers.entry(router).or_default();
        self.core.drive(now, &mut peer);
        self.peers.insert(id, peer);
        self.settle(now);
        Ok(answer.to_sdp_string())
    }

    /// A later offer from the client (for example to publish another track).
    pub fn accept_offer(
        &mut self,
        now: Instant,
        id: PeerId,
        offer: &str,
    ) -> Result<String, SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer(id))?;
        let answer = peer.accept_offer(offer)?;
        self.core.drive(now, peer);
        self.settle(now);
        Ok(answer.to_sdp_string())
    }

    /// The client's answer to the hub's last offer.
    pub fn accept_answer(
        &mut self,
        now: Instant,
        id: PeerId,
        answer: &str,
    ) -> Result<(), SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer(id))?;
        let opened = peer.accept_answer(answer)?;
        if let Some(router) = self.core.routers.get_mut(&peer.router) {
            for (consumer_id, mid) in opened {
                if let Some(consumer) = router.consumers.get_mut(&consumer_id) {
                    consumer.mid = Some(mid);
                    consumer.open = true;
                    consumer.opened_at = Some(now);
                    if consumer.kind == MediaKind::Video {
                        let layer = consumer.target.unwrap_or(0);
                        self.core.work.push_back(Work::Keyframe(
                            peer.router,
                            consumer.producer,
                            layer,
                        ));
                    }
                }
            }
        }
        self.core.renegotiate(peer);
        self.core.drive(now, peer);
        self.settle(now);
        Ok(())
    }

    /// Forwards `producer` to peer `id` (on this worker), at most at simulcast layer
    /// `max_layer`; the hub offers the new track.
    pub fn add_consumer(
        &mut self,
        id: PeerId,
        producer: &ProducerInfo,
        max_layer: u8,
    ) -> Result<ConsumerId, SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer(id))?;
        let consumer_id = ConsumerId(self.core.allocate_id());
        let router = self.core.routers.entry(peer.router).or_default();
        router.add_consumer(
            consumer_id,
            Consumer::new(id, producer.id, producer.kind, max_layer),
        );
        peer.queue_consumer(
            consumer_id,
            producer.kind,
            producer.peer.to_string(),
            producer.id.to_string(),
        );
        if !self.to_renegotiate.contains(&id) {
            self.to_renegotiate.push(id);
        }
        Ok(consumer_id)
    }

    /// A producer is gone (its publisher left): drop its consumers here and renegotiate.
    pub fn remove_producer(&mut self, now: Instant, router_id: RouterId, producer: ProducerId) {
        let Some(router) = self.core.routers.get_mut(&router_id) else {
            return;
        };
        router.producers.remove(&producer);
        let consumers = router
            .consumers_of
            .get(&producer)
            .cloned()
            .unwrap_or_default();
        let removed: Vec<_> = consumers
            .into_iter()
            .filter_map(|id| router.remove_consumer(id).map(|c| (id, c)))
            .collect();
        for (consumer_id, consumer) in removed {
            if let Some(peer) = self.peers.get_mut(&consumer.peer) {
                peer.queue_consumer_removal(consumer_id, consumer.mid);
                if !self.to_renegotiate.contains(&peer.id) {
                    self.to_renegotiate.push(peer.id);
                }
            }
        }
        self.settle(now);
    }

    /// Stops forwarding `producer` to peer `id` (for example when a site loses the floor).
    pub fn remove_consumer(&mut self, now: Instant, id: PeerId, producer: ProducerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(router) = self.core.routers.get_mut(&peer.router) else {
            return;
        };
        let found = router
            .consumers
            .iter()
            .find(|(_, c)| c.peer == id && c.producer == producer)
            .map(|(cid, _)| *cid);
        if let Some(consumer_id) = found
            && let Some(consumer) = router.remove_consumer(consumer_id)
        {
            peer.queue_consumer_removal(consumer_id, consumer.mid);
            if !self.to_renegotiate.contains(&id) {
                self.to_renegotiate.push(id);
            }
        }
        self.settle(now);
    }

    /// Caps the simulcast layer peer `id` receives of `producer` (the wall takes the lowest;
    /// the site holding the floor is seen at full quality).
    pub fn set_max_layer(&mut self, now: Instant, id: PeerId, producer: ProducerId, max_layer: u8) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        if let Some(router) = self.core.routers.get_mut(&peer.router) {
            for c in router.consumers.values_mut() {
                if c.peer == id && c.producer == producer {
                    c.max_layer = max_layer;
                    if c.target.is_some_and(|t| t > max_layer) {
                        c.target = Some(max_layer);
                        let work = Work::Keyframe(peer.router, producer, max_layer);
                        self.core.work.push_back(work);
                    }
                }
            }
        }
        self.allocate(now, id);
        self.settle(now);
    }

    /// Pauses or resumes a producer published on this worker (the chair's mute, enforced here:
    /// a paused producer's packets reach nobody). Producers of other workers are ignored.
    pub fn set_producer_paused(&mut self, router: RouterId, producer: ProducerId, paused: bool) {
        if let Some(p) = self
            .core
            .routers
            .get_mut(&router)
            .and_then(|r| r.producers.get_mut(&producer))
        {
            p.paused = paused;
        }
    }

    /// Drops a peer (its participant left). Its producers are removed from this worker only:
    /// the hub tells the other workers.
    pub fn remove_peer(&mut self, now: Instant, id: PeerId) {
        if let Some(mut peer) = self.peers.remove(&id) {
            peer.rtc.disconnect();
            self.forget(&peer);
        }
        self.settle(now);
    }

    /// A datagram arrived on the worker's socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.core.stats.datagrams_received += 1;
        let Some(id) = self.route(source, contents) else {
            self.core.stats.datagrams_unrouted += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Ok(contents) = contents.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if !peer.rtc.accepts(&input) {
            self.core.stats.datagrams_unrouted += 1;
            return;
        }
        if !peer.addresses.contains(&source) {
            peer.addresses.push(source);
            self.by_address.insert(source, id);
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = %id, "datagram refused: {e}");
        }
        self.core.drive(now, peer);
        self.settle(now);
    }

    /// Something another worker relayed.
    pub fn handle_relay(&mut self, now: Instant, relay: Relay) {
        match relay {
            Relay::Media(packet) => self.core.work.push_back(Work::Forward(packet)),
            Relay::KeyframeRequest {
                router,
                producer,
                layer,
            } => {
                let local = self
                    .core
                    .routers
                    .get(&router)
                    .is_some_and(|r| r.producers.contains_key(&producer));
                if local {
                    self.core
                        .work
                        .push_back(Work::Keyframe(router, producer, layer));
                }
            }
        }
        self.settle(now);
    }

    /// Time passed: drive every peer whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(Reverse((at, timer))) = self.core.timers.peek().copied() {
            if at > now {
                break;
            }
            self.core.timers.pop();
            due.push((at, timer));
        }
        for (at, timer) in due {
            match timer {
                Timer::Peer(id) => {
                    let Some(peer) = self.peers.get_mut(&id) else {
                        continue;
                    };
                    if peer.next_timeout != Some(at) {
                        continue; // superseded by a later wake-up
                    }
                    peer.next_timeout = None;
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(peer = %id, "timeout refused: {e}");
                    }
                    self.core.drive(now, peer);
                }
                Timer::Keyframe(router, producer, layer) => {
                    let fire = self
                        .core
                        .routers
                        .get_mut(&router)
                        .and_then(|r| r.producers.get_mut(&producer))
                        .and_then(|p| p.keyframes.get_mut(usize::from(layer)))
                        .is_some_and(|k| k.fire_deferred(now));
                    if fire {
                        self.send_keyframe_request(now, router, producer, layer);
                    }
                }
                Timer::Allocate => {
                    self.core.allocate_scheduled = false;
                    let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                    for id in ids {
                        self.allocate(now, id);
                    }
                }
            }
        }
        self.settle(now);
    }

    /// The next thing to do. Call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.core.outputs.pop_front() {
            return output;
        }
        self.drive_touched();
        if let Some(output) = self.core.outputs.pop_front() {
            return output;
        }
        for id in std::mem::take(&mut self.to_renegotiate) {
            if let Some(peer) = self.peers.get_mut(&id) {
                self.core.renegotiate(peer);
            }
        }
        if let Some(output) = self.core.outputs.pop_front() {
            return output;
        }
        let next = self.core.timers.peek().map(|Reverse((at, _))| *at);
        Output::Timeout(next.unwrap_or_else(far_future))
    }

    /// Drives every peer written to since the last call, once each, and runs the work that
    /// produced (keyframe requests, new estimates), until no peer is left to drive.
    fn drive_touched(&mut self) {
        let Some(now) = self.touched_at else {
            return;
        };
        let mut touched = std::mem::take(&mut self.touched);
        while !touched.is_empty() {
            for id in touched.drain(..) {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.touched = false;
                    self.core.drive(now, peer);
                }
            }
            self.settle(now);
            std::mem::swap(&mut touched, &mut self.touched);
        }
        self.touched = touched;
        self.touched_at = None;
    }

    /// Finds the peer a datagram belongs to: by source address, else by STUN ufrag.
    fn route(&self, source: SocketAddr, contents: &[u8]) -> Option<PeerId> {
        if let Some(id) = self.by_address.get(&source) {
            return Some(*id);
        }
        let ufrag = stun::local_ufrag(contents)?;
        self.by_ufrag.get(ufrag).copied()
    }

    /// Runs queued work (forwarding, keyframe requests) and drops closed peers.
    fn settle(&mut self, now: Instant) {
        if !self.core.allocate_scheduled && !self.peers.is_empty() {
            self.core.allocate_scheduled = true;
            self.core
                .timers
                .push(Reverse((now + ALLOCATE_EVERY, Timer::Allocate)));
        }
        for id in std::mem::take(&mut self.core.estimates_changed) {
            self.allocate(now, id);
        }
        loop {
            if let Some(work) = self.core.work.pop_front() {
                match work {
                    Work::Forward(packet) => self.forward(now, &packet),
                    Work::Keyframe(router, producer, layer) => {
                        self.request_keyframe(now, router, producer, layer)
                    }
                }
                continue;
            }
            if let Some(id) = self.core.closed.pop() {
                if let Some(peer) = self.peers.remove(&id) {
                    if peer.connected_at.is_none() {
                        self.core.stats.handshake_failures += 1;
                    }
                    self.forget(&peer);
                    self.core
                        .outputs
                        .push_back(Output::Event(Event::PeerClosed(id)));
                }
                continue;
            }
            break;
        }
    }

    fn forget(&mut self, peer: &Peer) {
        for addr in &peer.addresses {
            if self.by_address.get(addr) == Some(&peer.id) {
                self.by_address.remove(addr);
            }
        }
        self.by_ufrag.remove(&peer.ufrag);
        if let Some(router) = self.core.routers.get_mut(&peer.router) {
            router.producers.retain(|_, p| p.peer != peer.id);
            let consumers: Vec<ConsumerId> = router
                .consumers
                .iter()
                .filter(|(_, c)| c.peer == peer.id)
                .map(|(id, _)| *id)
                .collect();
            for id in consumers {
                router.remove_consumer(id);
            }
            if router.is_empty() && !self.peers.values().any(|p| p.router == peer.router) {
                self.core.routers.remove(&peer.router);
            }
        }
    }

    /// Writes a packet to every open local consumer of its producer (for video, the consumers
    /// that forward this packet's layer, switching layers on a keyframe of the target layer).
    fn forward(&mut self, now: Instant, packet: &MediaPacket) {
        self.core
            .meters
            .entry((packet.producer, packet.layer))
            .or_default()
            .add(packet.received_at, packet.payload.len());
        let Some(router) = self.core.routers.get_mut(&packet.router) else {
            return;
        };
        let Some(consumers) = router.consumers_of.get(&packet.producer) else {
            return;
        };
        // str0m's VP8 descriptor, parsed once for every consumer that patches picture ids.
        let mut vp8_descriptor = None;
        for consumer_id in consumers {
            let Some(consumer) = router.consumers.get_mut(consumer_id) else {
                continue;
            };
            let (true, Some(mid)) = (consumer.open, consumer.mid) else {
                continue;
            };
            let video = packet.kind == MediaKind::Video;
            if video && consumer.current != Some(packet.layer) {
                let switch = consumer.target == Some(packet.layer)
                    && packet.vp8.is_none_or(|v| v.keyframe_start);
                if !switch {
                    continue;
                }
                consumer.current = Some(packet.layer);
                consumer.sequence.rebase();
                consumer.timestamps.rebase();
                consumer.pictures.rebase();
            }
            let Some(peer) = self.peers.get_mut(&consumer.peer) else {
                continue;
            };
            let pt = match consumer
                .payload_types
                .iter()
                .find(|(c, _)| *c == packet.codec)
            {
                Some((_, pt)) => *pt,
                None => {
                    let Some(pt) = peer.payload_type_for(packet.codec, mid) else {
                        continue;
                    };
                    consumer.payload_types.push((packet.codec, pt));
                    pt
                }
            };
            let (pt, payload) = if packet.kind == MediaKind::Audio {
                let Some(audio) = peer.audio_for(mid, packet, pt) else {
                    continue;
                };
                audio
            } else {
                (pt, packet.payload.clone())
            };
            let Some(seq_no) = consumer.sequence.rewrite(packet.seq_no) else {
                continue;
            };
            let timestamp = if video {
                consumer
                    .timestamps
                    .rewrite(packet.timestamp, packet.received_at, 90)
            } else {
                packet.timestamp
            };
            let mut write =
                str0m::rtp::RtpWrite::new(pt, seq_no, timestamp, packet.received_at, payload)
                    .marker(packet.marker)
                    .ext_vals(packet.extensions.clone())
                    .nackable(video);
            if let Some(info) = &packet.vp8
                && let (picture, tl0) = consumer.pictures.rewrite(info)
                && (picture.is_some() || tl0.is_some())
                && let Ok(descriptor) = *vp8_descriptor
                    .get_or_insert_with(|| str0m::rtp::Vp8Descriptor::parse(&packet.payload))
            {
                let mut patch = descriptor.patch();
                if let Some(picture) = picture {
                    patch = patch.picture_id(picture);
                }
                if let Some(tl0) = tl0 {
                    patch = patch.tl0_pic_idx(tl0);
                }
                if let Ok(patch) = patch.build() {
                    write = write.vp8_patch(patch);
                }
            }
            let mut direct = peer.rtc.direct_api();
            let Some(stream) = direct.stream_tx_by_mid(mid, None) else {
                continue;
            };
            stream.write_rtp(write);
            self.core.stats.packets_forwarded += 1;
            self.core.stats.bytes_forwarded += packet.payload.len() as u64;
            if !peer.touched {
                peer.touched = true;
                self.touched.push(peer.id);
            }
            self.touched_at = Some(now);
        }
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        router_id: RouterId,
        producer: ProducerId,
        layer: u8,
    ) {
        let interval = self.core.keyframe_interval;
        let decision = self
            .core
            .routers
            .get_mut(&router_id)
            .and_then(|r| r.producers.get_mut(&producer))
            .map(|p| {
                let index = usize::from(layer).min(p.keyframes.len().saturating_sub(1));
                p.keyframes
                    .get_mut(index)
                    .map(|k| k.request(now, interval))
                    .unwrap_or(KeyframeDecision::Merged)
            });
        match decision {
            None => {
                if self.core.relay {
                    self.core
                        .outputs
                        .push_back(Output::Relay(Relay::KeyframeRequest {
                            router: router_id,
                            producer,
                            layer,
                        }));
                }
            }
            Some(KeyframeDecision::SendNow) => {
                self.send_keyframe_request(now, router_id, producer, layer)
            }
            Some(KeyframeDecision::SendAt(at)) => {
                self.core
                    .timers
                    .push(Reverse((at, Timer::Keyframe(router_id, producer, layer))));
            }
            Some(KeyframeDecision::Merged) => {}
        }
    }

    fn send_keyframe_request(
        &mut self,
        now: Instant,
        router_id: RouterId,
        producer: ProducerId,
        layer: u8,
    ) {
        let Some(local) = self
            .core
            .routers
            .get(&router_id)
            .and_then(|r| r.producers.get(&producer))
        else {
            return;
        };
        let (peer_id, mid) = (local.peer, local.mid);
        let rid = local.rids.get(usize::from(layer)).copied();
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            self.core.stats.keyframe_requests_sent += 1;
        }
        self.core.drive(now, peer);
    }

    /// Chooses each video consumer's layer from its peer's bandwidth estimate: down when the
    /// layer has not fitted for a second, up one layer when the next has fitted with a quarter
    /// to spare for three seconds, and no video at all (audio only) below the lowest layer.
    /// Tells str0m's estimator what it would take to receive everything, so it probes upward.
    fn allocate(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(estimate) = peer.estimate else {
            return;
        };
        let Some(router) = self.core.routers.get_mut(&peer.router) else {
            return;
        };
        let mut ids: Vec<ConsumerId> = peer.consumers_by_mid.values().copied().collect();
        ids.sort_unstable();
        let audio: u64 = ids
            .iter()
            .filter_map(|c| router.consumers.get(c))
            .filter(|c| c.kind == MediaKind::Audio)
            .count() as u64
            * AUDIO_BUDGET_BPS;
        let mut budget = (estimate * 9 / 10).saturating_sub(audio);
        // The lowest layer may use the whole estimate: below it there is only audio, and on a
        // weak link the estimate already reads well under the link's capacity.
        let slack = estimate / 10;
        let (mut allocated, mut desired) = (audio, audio);
        let mut video_consumers = 0;
        let mut receiving_video = false;
        // The extra rate the next layer up would need: padded toward so the estimate can grow.
        let mut next_step = 0;
        for cid in ids {
            let Some(c) = router.consumers.get_mut(&cid) else {
                continue;
            };
            if c.kind != MediaKind::Video || !c.open {
                continue;
            }
            video_consumers += 1;
            let rate = |layer: u8| {
                self.core
                    .meters
                    .get(&(c.producer, layer))
                    .map_or(0, |m| m.rate)
            };
            let top = (0..=c.max_layer).rev().find(|l| rate(*l) > 0).unwrap_or(0);
            let target = match c.target {
                Some(t) if t > c.max_layer => Some(c.max_layer),
                Some(t) => {
                    let mut next = Some(t);
                    let limit = if t == 0 { budget + slack } else { budget };
                    if rate(t) > limit {
                        c.under_since = None;
                        let since = *c.over_since.get_or_insert(now);
                        let over = now.saturating_duration_since(since);
                        let settled = c
                            .opened_at
                            .is_some_and(|at| now.saturating_duration_since(at) >= STARTUP_GRACE);
                        if over >= DOWNGRADE_AFTER && t > 0 {
                            next = Some(
                                (0..t)
                                    .rev()
                                    .find(|l| rate(*l) <= budget && rate(*l) > 0)
                                    .unwrap_or(0),
                            );
                        } else if over >= AUDIO_ONLY_AFTER && t == 0 && settled {
                            next = None;
                        }
                    } else {
                        c.over_since = None;
                        let up = t + 1;
                        if up <= c.max_layer && rate(up) > 0 && rate(up) * 5 / 4 <= budget {
                            let since = *c.under_since.get_or_insert(now);
                            if now.saturating_duration_since(since) >= UPGRADE_AFTER {
                                next = Some(up);
                            }
                        } else {
                            c.under_since = None;
                        }
                    }
                    next
                }
                None => {
                    let mut next = None;
                    if rate(0) * COME_BACK_MARGIN.0 / COME_BACK_MARGIN.1 <= budget + slack {
                        let since = *c.under_since.get_or_insert(now);
                        if now.saturating_duration_since(since) >= UPGRADE_AFTER {
                            next = Some(0);
                        }
                    } else {
                        c.under_since = None;
                    }
                    next
                }
            };
            if target != c.target {
                c.target = target;
                c.over_since = None;
                c.under_since = None;
                match target {
                    Some(layer) => {
                        self.core
                            .work
                            .push_back(Work::Keyframe(peer.router, c.producer, layer))
                    }
                    None => c.current = None,
                }
            }
            if let Some(t) = c.target {
                receiving_video = true;
                budget = budget.saturating_sub(rate(t));
                allocated += rate(t);
            }
            // What the estimate must grow by to pass the test above for one more layer.
            match c.target {
                Some(t) if t < top => {
                    let need = rate(t + 1) * 5 / 4;
                    next_step = next_step.max(need.saturating_sub(rate(t)));
                }
                None => {
                    let need = rate(0) * COME_BACK_MARGIN.0 / COME_BACK_MARGIN.1;
                    next_step = next_step.max(need);
                }
                Some(_) => {}
            }
            desired += rate(top);
        }
        let audio_only = video_consumers > 0 && !receiving_video;
        if audio_only != peer.audio_only {
            peer.audio_only = audio_only;
            self.core.outputs.push_back(Output::Event(Event::Reception {
                peer: id,
                audio_only,
            }));
        }
        // No probing in a connection's first second (see PROBE_AFTER).
        let probing = peer
            .connected_at
            .is_some_and(|at| now.saturating_duration_since(at) >= PROBE_AFTER);
        if desired > 0 && probing {
            // Probe up to what the next layer's test needs (the estimate is used at 90 %), so
            // a site whose link recovers, audio-only ones included, can climb back.
            let minimum = match next_step {
                0 => allocated,
                step => (allocated + step) * 10 / 9,
            };
            let desired = (desired.max(allocated) * 5 / 4).max(minimum);
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
        }
    }
}

/// Bandwidth set aside per audio track when choosing video layers.
const AUDIO_BUDGET_BPS: u64 = 64_000;
const DOWNGRADE_AFTER: Duration = Duration::from_secs(1);
/// Below the lowest layer for this long, the consumer falls to audio only.
const AUDIO_ONLY_AFTER: Duration = Duration::from_secs(3);
/// A new consumer's estimate is still ramping up: no audio-only fall before this.
const STARTUP_GRACE: Duration = Duration::from_secs(8);
const UPGRADE_AFTER: Duration = Duration::from_secs(3);
/// Back from audio only once the estimate carries the lowest layer with this margin
/// (numerator, denominator): above the 1× that keeps a layer, so the state does not flap.
const COME_BACK_MARGIN: (u64, u64) = (11, 10);
const ALLOCATE_EVERY: Duration = Duration::from_millis(500);
/// str0m probes as soon as it is first given a desired bitrate. Probes sent in a connection's
/// first few hundred milliseconds, before the site's video has started, measured tens of
/// kbit/s and str0m adopts a probe's result outright: every new site's estimate fell from
/// 3 Mbit/s to about 300 kbit/s and took 3–4 s to climb back, while the pacer held its video
/// back (seconds of delay, and queues that keep their memory). So a connection is given its
/// desired bitrate, and probes, only after this long; until then the estimate comes from its
/// media alone, starting at the configured initial bitrate.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Packets each consumer stream keeps for NACK repair (and str0m's probing resends): 600 ms
/// of the 2.5 Mbit/s layer, enough for a repair across a 300 ms round trip; 300 cost a site
/// about 90 KiB more.
const SEND_BUFFER_VIDEO: usize = 150;
const SEND_BUFFER_AUDIO: usize = 50;
/// Most timeouts one [`Core::drive`] feeds a peer: a keyframe burst within the pacer's budget
/// goes out together, and one peer cannot hold the worker for long.
const DRIVE_ROUNDS: u32 = 64;
/// How far past the loop turn's `now` a peer's clock may be moved in one [`Core::drive`].
///
/// After each packet str0m's pacer asks for a timeout 1 µs later, even within the burst its
/// budget allows at once. Feeding those up to this far ahead releases up to about eight
/// packets per site and loop turn, which leave in one GSO send, instead of one packet per
/// site and turn; larger bursts are still spread over turns, interleaved with the other
/// sites. By the time a turn reaches a peer, real time is usually already past this.
const PACER_AHEAD: Duration = Duration::from_micros(8);

impl Core {
    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += self.stride;
        id
    }

    fn renegotiate(&mut self, peer: &mut Peer) {
        if let Some((sdp, _)) = peer.renegotiate() {
            self.outputs
                .push_back(Output::Event(Event::Offer { peer: peer.id, sdp }));
        }
    }

    /// Polls a peer's `Rtc` until it has nothing more to say before `now` (plus
    /// [`PACER_AHEAD`]), turning its events into work.
    ///
    /// str0m's pacer hands out one packet per `Input::Timeout` and then asks for another
    /// timeout 1 µs later. Those are fed here, while each round still produces something,
    /// rather than through the timer heap and one loop turn of the driver per packet; what the
    /// pacer holds back for later comes out as a future timeout and ends the loop. str0m
    /// ignores a later input dated before its clock, so the peer's clock never goes back.
    fn drive(&mut self, now: Instant, peer: &mut Peer) {
        let mut rounds = 0;
        let mut produced = true;
        loop {
            let output = match peer.rtc.poll_output() {
                Ok(output) => output,
                Err(e) => {
                    tracing::debug!(peer = %peer.id, "closing after error: {e}");
                    peer.rtc.disconnect();
                    self.closed.push(peer.id);
                    return;
                }
            };
            match output {
                RtcOutput::Transmit(t) => {
                    produced = true;
                    self.outputs.push_back(Output::Transmit(t));
                }
                RtcOutput::Timeout(at)
                    if at <= now + PACER_AHEAD && produced && rounds < DRIVE_ROUNDS =>
                {
                    rounds += 1;
                    produced = false;
                    if let Err(e) = peer.rtc.handle_input(Input::Timeout(at.max(now))) {
                        tracing::debug!(peer = %peer.id, "timeout refused: {e}");
                    }
                }
                RtcOutput::Timeout(at) => {
                    schedule(&mut self.timers, peer, at);
                    break;
                }
                RtcOutput::Event(event) => {
                    produced = true;
                    self.handle_event(now, peer, event);
                }
            }
        }
        if !peer.rtc.is_alive() && !self.closed.contains(&peer.id) {
            self.closed.push(peer.id);
        }
    }

    fn handle_event(&mut self, now: Instant, peer: &mut Peer, event: RtcEvent) {
        match event {
            RtcEvent::Connected => {
                peer.connected_at = Some(now);
                self.outputs
                    .push_back(Output::Event(Event::PeerConnected(peer.id)));
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                peer.rtc.disconnect();
            }
            RtcEvent::MediaAdded(added) => {
                let receiving = matches!(
                    added.direction,
                    str0m::media::Direction::RecvOnly | str0m::media::Direction::SendRecv
                );
                if !receiving || peer.producers_by_mid.contains_key(&added.mid) {
                    return;
                }
                let id = ProducerId(self.allocate_id());
                // Simulcast layers as the client lists them: lowest first (docs/protocol.md).
                let rids: Vec<str0m::media::Rid> = added
                    .simulcast
                    .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.rid)
                    .take(usize::from(u8::MAX))
                    .collect();
                peer.producers_by_mid.insert(added.mid, id);
                peer.layers.insert(added.mid, rids.clone());
                let router = self.routers.entry(peer.router).or_default();
                router.producers.insert(
                    id,
                    LocalProducer {
                        peer: peer.id,
                        mid: added.mid,
                        keyframes: (0..rids.len().max(1))
                            .map(|_| KeyframeThrottle::default())
                            .collect(),
                        rids,
                        paused: false,
                    },
                );
                self.outputs
                    .push_back(Output::Event(Event::ProducerAdded(ProducerInfo {
                        id,
                        router: peer.router,
                        peer: peer.id,
                        kind: added.kind,
                    })));
            }
            RtcEvent::RtpPacket(packet) => {
                self.stats.packets_received += 1;
                let Some((producer, layer)) = peer.producer_for(packet.header.ssrc) else {
                    return;
                };
                let paused = self
                    .routers
                    .get(&peer.router)
                    .and_then(|r| r.producers.get(&producer))
                    .is_none_or(|p| p.paused);
                if paused {
                    self.stats.packets_dropped_paused += 1;
                    return;
                }
                let Some(codec) = peer.codec_of(packet.header.payload_type, &packet.payload) else {
                    return;
                };
                let kind = if codec.is_audio() || codec == str0m::format::Codec::Red {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let ext = &packet.header.ext_vals;
                let media = Arc::new(MediaPacket {
                    router: peer.router,
                    producer,
                    kind,
                    codec,
                    seq_no: packet.seq_no,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    extensions: ExtensionValues {
                        audio_level: ext.audio_level,
                        voice_activity: ext.voice_activity,
                        video_orientation: ext.video_orientation,
                        ..Default::default()
                    },
                    layer,
                    vp8: (codec == str0m::format::Codec::Vp8)
                        .then(|| crate::vp8::parse(&packet.payload))
                        .flatten(),
                    payload: packet.payload,
                    received_at: now,
                });
                if self.relay {
                    self.outputs
                        .push_back(Output::Relay(Relay::Media(media.clone())));
                }
                self.work.push_back(Work::Forward(media));
            }
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                peer.estimate = Some(estimate.as_u64());
                tracing::debug!(peer = %peer.id, kbps = estimate.as_u64() / 1000, "bandwidth estimate");
                if !self.estimates_changed.contains(&peer.id) {
                    self.estimates_changed.push(peer.id);
                }
            }
            RtcEvent::PeerStats(stats) => {
                if let Some(quality) = peer.quality(&stats) {
                    self.outputs.push_back(Output::Event(Event::Quality {
                        peer: peer.id,
                        quality,
                    }));
                }
            }
            RtcEvent::KeyframeRequest(request) => {
                let Some(consumer) = peer.consumers_by_mid.get(&request.mid) else {
                    return;
                };
                let producer = self
                    .routers
                    .get(&peer.router)
                    .and_then(|r| r.consumers.get(consumer))
                    .and_then(|c| c.current.or(c.target).map(|l| (c.producer, l)));
                if let Some((producer, layer)) = producer {
                    self.work
                        .push_back(Work::Keyframe(peer.router, producer, layer));
                }
            }
            _ => {}
        }
    }
}

fn schedule(timers: &mut BinaryHeap<Reverse<(Instant, Timer)>>, peer: &mut Peer, at: Instant) {
    if peer.next_timeout != Some(at) {
        peer.next_timeout = Some(at);
        timers.push(Reverse((at, Timer::Peer(peer.id))));
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}
