//! The sans-IO state of one media worker: a set of peers, their routing, and their timers.
//! Its parts live below it: [`crate::core`] drives one peer and queues what it reports,
//! [`crate::forward`] writes a packet to its consumers, [`crate::allocate`] chooses their
//! layers, [`crate::keyframes`] throttles keyframe requests.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Input, RtcConfig};

use crate::SfuError;
use crate::allocate;
use crate::config::{self, WorkerConfig};
use crate::core::{Core, Timer, Work, layer_rates};
use crate::forward;
use crate::ids::{ConsumerId, IdMap, PeerId, ProducerId, RouterId};
use crate::keyframes::KeyframeDecision;
use crate::output::{Event, Output, ProducerInfo, Relay, WorkerStats};
use crate::overload::Overload;
use crate::peer::Peer;
use crate::router::{Consumer, MediaPacket, Sending};
use crate::stun;

/// A media worker's peers and routing, driven from outside: datagrams and relays come in
/// through `handle_*`, everything to do comes out of [`Worker::poll_output`]. It serves from
/// `new` until dropped; peers, routers and consumers come and go meanwhile.
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
    /// Boxed: a peer is about 11 KiB (str0m's `Rtc` alone 10 KiB), and a table of them keeps
    /// up to half its slots spare.
    peers: IdMap<PeerId, Box<Peer>>,
    by_address: HashMap<(Protocol, SocketAddr), PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    /// Peers written to since they were last driven, and the time of that input: each is
    /// driven once at the next [`Worker::poll_output`], however many packets it was given, so
    /// a frame's packets to one site cost one pass over its `Rtc`, not one per packet.
    touched: Vec<PeerId>,
    touched_at: Option<Instant>,
    /// Media received since the last [`Worker::poll_output`], and the time of the latest
    /// input since the first of it: forwarded together there, each site written all of a
    /// producer's packets at once ([`forward`]).
    received: Vec<Arc<MediaPacket>>,
    received_at: Option<Instant>,
    /// Media being written to its consumers, a few sites per [`Worker::poll_output`].
    forwarding: forward::Batch,
    /// Peers with consumer changes to offer: offered together at the next `poll_output`, so
    /// several tracks added at once cost one offer/answer round trip.
    to_renegotiate: Vec<PeerId>,
    /// How much video the worker's load lets its peers receive.
    overload: Overload,
    core: Core,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Worker {
        let rtc_config = config::rtc_config(&config);
        let core = Core::new(&config);
        Worker {
            config,
            rtc_config,
            peers: IdMap::default(),
            by_address: HashMap::new(),
            by_ufrag: HashMap::new(),
            touched: Vec::new(),
            touched_at: None,
            received: Vec::new(),
            received_at: None,
            forwarding: forward::Batch::default(),
            to_renegotiate: Vec::new(),
            overload: Overload::default(),
            core,
        }
    }

    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            busy_permille: (self.overload.busy() * 1000.0).round() as u64,
            shed_level: self.overload.level(),
            ..self.core.stats
        }
    }

    /// The driver's loop was busy (not waiting for input) `busy` of the period that ended at
    /// `now`, from 0 to 1, and its thread ran `cpu` of it (the rest of `busy` it waited for
    /// its core); half a second is a good period. While it stays near 1 the worker
    /// sheds video, a step at a time, and gives it back once the load allows
    /// ([`crate::overload`]); sound is never shed. Each change is logged and shows in
    /// [`WorkerStats::shed_level`].
    pub fn handle_load(&mut self, now: Instant, busy: f32, cpu: f32) {
        let before = self.overload.level();
        let Some(level) = self.overload.update(now, busy, cpu) else {
            return;
        };
        if level > before {
            tracing::warn!(
                level,
                busy = f64::from(busy),
                "media worker over capacity: shedding video to keep every site's sound"
            );
        } else {
            tracing::info!(level, busy = f64::from(busy), "media worker load eased");
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.allocate(now, id);
        }
        self.settle(now);
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Outputs waiting for [`Worker::poll_output`]. Media received is forwarded only as
    /// outputs are polled, a few sites at a time, so a driver that reads many packets before
    /// it polls holds the packets, not an encrypted datagram of each for every site.
    pub fn queued_outputs(&self) -> usize {
        self.core.outputs.len()
    }

    /// Says that the datagrams handed out as [`Output::Transmit`] so far were sent at `at`
    /// (read just before the send): each peer that handed some out since the last call takes
    /// `at` as their transport-wide send time, where str0m took the time it protected them
    /// (str0m's `DirectApi::mark_sent`). A driver that sends a turn's datagrams together, some
    /// time after they were written, calls it after each send, so that a site's bandwidth
    /// estimate measures its link, not the worker's own queue of datagrams; as libwebrtc
    /// takes a packet's send time from its socket. Without it, the send time is when the
    /// packet was protected. Datagrams still waiting in the outputs are taken as sent with
    /// the others of their peer.
    pub fn datagrams_sent(&mut self, at: Instant) {
        for id in self.core.unsent.drain(..) {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.unsent = false;
                // A peer that failed is asked nothing more; the worker drops it.
                if !peer.failed {
                    peer.rtc.direct_api().mark_sent(at);
                }
            }
        }
    }

    /// Gives back the buffer of an [`Output::Transmit`] once its datagram is sent, for the
    /// datagrams of packets forwarded later (no allocation per packet and site).
    pub fn give_back(&mut self, datagram: Vec<u8>) {
        self.core.buffers.give_back(datagram);
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
        self.add_peer_of(now, id, router, offer, false)
    }

    /// Like [`Worker::add_peer`], for a receive-only client that cannot renegotiate (a WHEP
    /// player): the hub sends on the m-lines its offer asked to receive on, one consumer per
    /// m-line of the consumer's kind, and never offers. A consumer with no free m-line of its
    /// kind waits for one.
    pub fn add_fixed_peer(
        &mut self,
        now: Instant,
        id: PeerId,
        router: RouterId,
        offer: &str,
    ) -> Result<String, SfuError> {
        self.add_peer_of(now, id, router, offer, true)
    }

    fn add_peer_of(
        &mut self,
        now: Instant,
        id: PeerId,
        router: RouterId,
        offer: &str,
        fixed: bool,
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
        for addr in &self.config.tcp_candidates {
            let candidate = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| SfuError::Config(format!("TCP candidate {addr}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let mut peer = if fixed {
            Peer::new_fixed(id, router, rtc)
        } else {
            Peer::new(id, router, rtc)
        };
        // Layers are chosen from the configured estimate until str0m's own arrives.
        peer.estimate = Some(self.config.initial_bitrate.as_u64());
        let answer = peer.accept_offer(offer)?;
        self.by_ufrag.insert(peer.ufrag.clone(), id);
        self.core.routers.entry(router).or_default();
        self.core.drive(now, &mut peer);
        self.peers.insert(id, Box::new(peer));
        self.settle(now);
        Ok(answer)
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
        Ok(answer)
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
                let Some(consumer) = router.consumers.get_mut(&consumer_id) else {
                    // Removed while its offer awaited this answer: its m-line goes idle.
                    peer.consumers_by_mid.remove(&mid);
                    peer.queue_consumer_removal(consumer_id, Some(mid), None);
                    continue;
                };
                consumer.mid = Some(mid);
                consumer.open = true;
                consumer.allocation.opened_at = Some(now);
                // Its first packets must be decodable, on a new m-line as on a reused one.
                self.core
                    .work
                    .extend(Work::first_keyframe(peer.router, consumer));
            }
        }
        self.core.renegotiate(peer);
        self.core.drive(now, peer);
        self.settle(now);
        Ok(())
    }

    /// Forwards `producer` to peer `id` (on this worker) as consumer `consumer`, at most at
    /// simulcast layer `max_layer`; the hub offers the new track. The caller chooses the id
    /// and names the consumer by it from then on; an id already in use on this worker is
    /// refused.
    pub fn add_consumer(
        &mut self,
        id: PeerId,
        consumer: ConsumerId,
        producer: &ProducerInfo,
        max_layer: u8,
    ) -> Result<(), SfuError> {
        self.add_consumer_of(id, consumer, producer, max_layer, false)
    }

    /// Like [`Worker::add_consumer`], forwarding simulcast layer `layer` of `producer` only,
    /// whatever the peer's bandwidth: a hub relaying the meeting takes each layer on a track
    /// of its own (track id `<producer>-l<layer>`) and chooses layers for its own sites.
    pub fn add_pinned_consumer(
        &mut self,
        id: PeerId,
        consumer: ConsumerId,
        producer: &ProducerInfo,
        layer: u8,
    ) -> Result<(), SfuError> {
        self.add_consumer_of(id, consumer, producer, layer, true)
    }

    fn add_consumer_of(
        &mut self,
        id: PeerId,
        consumer: ConsumerId,
        producer: &ProducerInfo,
        max_layer: u8,
        pinned: bool,
    ) -> Result<(), SfuError> {
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer(id))?;
        if self
            .core
            .routers
            .values()
            .any(|r| r.consumers.contains_key(&consumer))
        {
            return Err(SfuError::ConsumerExists(consumer));
        }
        let router = self.core.routers.entry(peer.router).or_default();
        let mut added = Consumer::new(id, producer.id, producer.kind, max_layer);
        let track = if pinned {
            added.pinned = true;
            added.allocation.target = Some(max_layer);
            format!("{}-l{max_layer}", producer.id)
        } else {
            producer.id.to_string()
        };
        let fixed = peer.is_fixed();
        if !fixed {
            let stream = producer
                .stream
                .clone()
                .unwrap_or_else(|| producer.peer.to_string());
            peer.queue_consumer(consumer, producer.kind, stream, track);
        }
        router.add_consumer(consumer, added);
        if fixed {
            // A fixed peer's consumer takes a free m-line of its kind now, or waits for one.
            self.open_waiting(id);
        } else if !self.to_renegotiate.contains(&id) {
            self.to_renegotiate.push(id);
        }
        Ok(())
    }

    /// A producer is gone (its publisher left): drop its consumers here and renegotiate.
    pub fn remove_producer(&mut self, now: Instant, router_id: RouterId, producer: ProducerId) {
        let Some(router) = self.core.routers.get_mut(&router_id) else {
            return;
        };
        router.producers.remove(&producer);
        self.core.taps.remove(&(router_id, producer));
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
            let (peer_id, mid) = (consumer.peer, consumer.mid);
            if let Some(peer) = self.peers.get_mut(&peer_id) {
                peer.queue_consumer_removal(consumer_id, mid, Some(consumer.into_clocks()));
                if !self.to_renegotiate.contains(&peer.id) {
                    self.to_renegotiate.push(peer.id);
                }
            }
            self.open_waiting(peer_id);
        }
        self.settle(now);
    }

    /// Stops consumer `consumer` of peer `id` (for example when a site loses the floor).
    /// Unknown ids, and consumers of another peer, are ignored.
    pub fn remove_consumer(&mut self, now: Instant, id: PeerId, consumer: ConsumerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(router) = self.core.routers.get_mut(&peer.router) else {
            return;
        };
        if router
            .consumers
            .get(&consumer)
            .is_some_and(|c| c.peer == id)
            && let Some(removed) = router.remove_consumer(consumer)
        {
            let mid = removed.mid;
            peer.queue_consumer_removal(consumer, mid, Some(removed.into_clocks()));
            if !self.to_renegotiate.contains(&id) {
                self.to_renegotiate.push(id);
            }
            self.open_waiting(id);
        }
        self.settle(now);
    }

    /// An m-line of fixed peer `id` may have been freed: a consumer of it waiting for one of
    /// its kind takes it, from a decodable picture.
    fn open_waiting(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id).filter(|p| p.is_fixed()) else {
            return;
        };
        let Some(router) = self.core.routers.get_mut(&peer.router) else {
            return;
        };
        let waiting: Vec<(ConsumerId, MediaKind)> = router
            .consumers
            .iter()
            .filter(|(_, c)| c.peer == id && !c.open)
            .map(|(consumer, c)| (*consumer, c.kind))
            .collect();
        for (consumer_id, kind) in waiting {
            let Some(mid) = peer.queue_consumer(consumer_id, kind, String::new(), String::new())
            else {
                continue;
            };
            let Some(consumer) = router.consumers.get_mut(&consumer_id) else {
                continue;
            };
            consumer.mid = Some(mid);
            consumer.open = true;
            if let Some(clocks) = peer.take_line_clocks(mid) {
                consumer.continue_from(clocks);
            }
            self.core
                .work
                .extend(Work::first_keyframe(peer.router, consumer));
        }
    }

    /// Caps the simulcast layer consumer `consumer` of peer `id` receives (the wall takes the
    /// lowest; the site holding the floor is seen at full quality). Unknown ids, and
    /// consumers of another peer, are ignored.
    pub fn set_max_layer(&mut self, now: Instant, id: PeerId, consumer: ConsumerId, max_layer: u8) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(c) = self
            .core
            .routers
            .get_mut(&peer.router)
            .and_then(|r| r.consumers.get_mut(&consumer))
            .filter(|c| c.peer == id)
        else {
            return;
        };
        c.max_layer = max_layer;
        if c.allocation.target.is_some_and(|t| t > max_layer) {
            c.allocation.target = Some(max_layer);
            let work = Work::Keyframe(peer.router, c.producer, max_layer);
            self.core.work.push_back(work);
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

    /// Hands out every packet `producer` of `router` sends, from now on (`tapped`) or no more,
    /// as [`Output::Tapped`]: the worker its publisher is connected to does, once per packet.
    pub fn set_tapped(&mut self, router: RouterId, producer: ProducerId, tapped: bool) {
        if tapped {
            self.core.taps.insert((router, producer));
        } else {
            self.core.taps.remove(&(router, producer));
        }
    }

    /// Drops a peer (its participant left). Its producers are removed from this worker only:
    /// the hub tells the other workers.
    pub fn remove_peer(&mut self, now: Instant, id: PeerId) {
        if let Some(mut peer) = self.peers.remove(&id) {
            peer.contain(|p| p.rtc.disconnect());
            self.forget(&peer);
        }
        self.settle(now);
    }

    /// Makes the next call into peer `id`'s `Rtc` panic, as a fault of str0m on something the
    /// peer sent would: the worker closes that peer and goes on with the others.
    #[cfg(feature = "testkit")]
    pub fn fail_next_call(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.fail_next = true;
        }
    }

    /// A datagram arrived on the worker's socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.handle_packet(now, Protocol::Udp, source, destination, contents);
    }

    /// A packet arrived over `proto`: a UDP datagram, or one RFC 4571 frame of a TCP
    /// connection from `source`. Returns whether a peer took it, so that a driver can close a
    /// TCP connection that never carries anything of a peer's.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> bool {
        self.core.stats.datagrams_received += 1;
        let Some(id) = self.route(proto, source, contents) else {
            self.core.stats.datagrams_unrouted += 1;
            return false;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let Ok(contents) = contents.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        match peer.contain(|p| p.rtc.accepts(&input)) {
            Some(true) => {}
            Some(false) => {
                self.core.stats.datagrams_unrouted += 1;
                return false;
            }
            None => {
                crate::core::close_failed(&mut self.core.closed, peer);
                self.settle(now);
                return true;
            }
        }
        if !peer.addresses.contains(&(proto, source)) {
            peer.addresses.push((proto, source));
            self.by_address.insert((proto, source), id);
        }
        let Input::Receive(at, receive) = input else {
            return false;
        };
        // Only the datagram: `drive` feeds the timeout the peer then asks for if anything
        // fell due, instead of every timer of the session being looked at for each datagram.
        if let Some(Err(e)) = peer.contain(|p| p.rtc.handle_receive(at, receive)) {
            tracing::debug!(peer = %id, "datagram refused: {e}");
        }
        self.core.drive(now, peer);
        self.settle(now);
        true
    }

    /// The ICE username fragment peer `id` answers to: the first part of the USERNAME of the
    /// STUN requests meant for it (how a driver finds the worker of a new TCP connection).
    pub fn ufrag(&self, id: PeerId) -> Option<&str> {
        self.peers.get(&id).map(|p| p.ufrag.as_str())
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
                    if let Some(Err(e)) = peer.contain(|p| p.rtc.handle_input(Input::Timeout(now)))
                    {
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
        loop {
            if let Some(output) = self.core.outputs.pop_front() {
                return output;
            }
            if self.forward_some() || self.drive_touched() {
                continue;
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
            return Output::Timeout(next.unwrap_or_else(far_future));
        }
    }

    /// Drives every peer written to since the last call, once each, and runs the work that
    /// produced (keyframe requests, new estimates); returns whether there was any.
    fn drive_touched(&mut self) -> bool {
        let Some(now) = self.touched_at.take() else {
            return false;
        };
        let mut touched = std::mem::take(&mut self.touched);
        for id in touched.drain(..) {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.touched = false;
                self.core.drive(now, peer);
            }
        }
        self.touched = touched;
        self.settle(now);
        true
    }

    /// Finds the peer a datagram belongs to: by source address, else by STUN ufrag.
    fn route(&self, proto: Protocol, source: SocketAddr, contents: &[u8]) -> Option<PeerId> {
        if let Some(id) = self.by_address.get(&(proto, source)) {
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
                    Work::Forward(packet) => self.received.push(packet),
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
                    if peer.failed {
                        self.core.stats.peers_failed += 1;
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
        // Media waiting is written at the time of the latest input: a site whose report was
        // read after the packet has its clock there already, and str0m sends at once only
        // what it is given at its clock or later.
        if !self.received.is_empty() {
            self.received_at = self.received_at.max(Some(now));
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

    /// Forwards media received: the next few sites of the batch being written, or a new
    /// batch of what was received since the last one (each packet counted toward its layer's
    /// bitrate); returns whether there was any.
    fn forward_some(&mut self) -> bool {
        if !self.forwarding.is_pending() {
            let Some(now) = self.received_at.take() else {
                return false;
            };
            for packet in &self.received {
                self.core.meter(
                    packet.producer,
                    packet.layer,
                    packet.received_at,
                    packet.payload.len(),
                );
            }
            self.forwarding
                .start(now, &mut self.received, &self.core.routers);
        }
        let mut sink = forward::Sink {
            peers: &mut self.peers,
            touched: &mut self.touched,
            unsent: &mut self.core.unsent,
            outputs: &mut self.core.outputs,
            buffers: &mut self.core.buffers,
            closed: &mut self.core.closed,
        };
        let forwarded =
            self.forwarding
                .forward_some(&mut self.core.routers, &mut sink, FORWARD_OUTPUTS);
        if forwarded.packets > 0 {
            self.core.stats.packets_forwarded += forwarded.packets;
            self.core.stats.bytes_forwarded += forwarded.bytes;
            self.touched_at = self.touched_at.max(self.forwarding.now());
        }
        // A peer whose `Rtc` failed as it was written to goes now, before anything else can
        // ask its `Rtc` for something (its consumers leave the batch with it).
        if !self.core.closed.is_empty()
            && let Some(now) = self.forwarding.now()
        {
            self.settle(now);
        }
        true
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
        let requested = peer.contain(|p| {
            let mut direct = p.rtc.direct_api();
            let stream = direct.stream_rx_by_mid(mid, rid);
            stream.map(|s| s.request_keyframe(KeyframeRequestKind::Pli))
        });
        if let Some(Some(())) = requested {
            self.core.stats.keyframe_requests_sent += 1;
        }
        self.core.drive(now, peer);
    }

    /// Runs the allocator ([`allocate::allocate`]) for peer `id`'s open video consumers, and
    /// applies what it chose: a keyframe request for each new layer, [`Event::Reception`] when
    /// the peer falls to audio only or comes back, and the probe for str0m's estimator.
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
        // In consumer id order, so that who is served first does not depend on hashing.
        let mut ids: Vec<ConsumerId> = peer.consumers_by_mid.values().copied().collect();
        ids.sort_unstable();
        let mut audio_bps = 0;
        let mut pinned_bps = 0;
        let mut video = Vec::new();
        let mut consumers = Vec::new();
        for cid in ids {
            let Some(c) = router.consumers.get(&cid) else {
                continue;
            };
            match c.kind {
                MediaKind::Audio => {
                    let sending = self
                        .core
                        .meters
                        .get(&c.producer)
                        .and_then(|layers| layers.first())
                        .map_or(Sending::Nothing, |meter| meter.sending(now));
                    audio_bps += allocate::audio_set_aside(sending);
                }
                // Its one layer, always (a relaying hub's).
                MediaKind::Video if c.pinned => {
                    let rates = layer_rates(&self.core.meters, c.producer, c.max_layer);
                    pinned_bps += rates.get(usize::from(c.max_layer)).copied().unwrap_or(0);
                }
                MediaKind::Video if c.open => {
                    consumers.push(allocate::VideoConsumer {
                        max_layer: c.max_layer,
                        rates: layer_rates(&self.core.meters, c.producer, c.max_layer),
                        state: c.allocation,
                    });
                    video.push(cid);
                }
                MediaKind::Video => {}
            }
        }
        let link = allocate::Link {
            estimate,
            connected_at: peer.connected_at,
            audio_bps,
            pinned_bps,
            allowance: self.overload.allowance(id, consumers.len()),
            rising: peer.trend.rising(now),
        };
        let allocation = allocate::allocate(now, link, &consumers);
        for (cid, state) in video.into_iter().zip(allocation.states) {
            let Some(c) = router.consumers.get_mut(&cid) else {
                continue;
            };
            if state.target != c.allocation.target {
                match state.target {
                    Some(layer) => {
                        let work = Work::Keyframe(peer.router, c.producer, layer);
                        self.core.work.push_back(work);
                    }
                    None => c.current = None,
                }
            }
            c.allocation = state;
        }
        if (allocation.audio_only, allocation.shed) != (peer.audio_only, peer.shed) {
            tracing::debug!(
                peer = %id,
                audio_only = allocation.audio_only,
                shed = allocation.shed,
                estimate_bps = estimate,
                "reception changed"
            );
            peer.audio_only = allocation.audio_only;
            peer.shed = allocation.shed;
            self.core.outputs.push_back(Output::Event(Event::Reception {
                peer: id,
                audio_only: allocation.audio_only,
                shed: allocation.shed,
            }));
        }
        if let Some(probe) = allocation.probe {
            peer.contain(|p| {
                let mut bwe = p.rtc.bwe();
                bwe.set_bitrate(Bitrate::bps(probe.current), Bitrate::bps(probe.desired));
                bwe.set_automatic_padding(probe.pads());
            });
        }
    }
}

const ALLOCATE_EVERY: Duration = Duration::from_millis(500);
/// Datagrams one [`Worker::poll_output`] lets forwarding queue before it hands them out: the
/// sites written to at a time, at a few datagrams each. A driver that sends as it polls then
/// holds about this many encrypted datagrams, however many sites and packets a turn has.
const FORWARD_OUTPUTS: usize = 64;

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}
