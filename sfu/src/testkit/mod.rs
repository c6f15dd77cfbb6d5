//! A virtual network for scenario tests, benchmarks and fuzz targets (feature `testkit`): one
//! or more sans-IO [`Worker`]s and in-memory str0m clients exchanging datagrams under a virtual
//! clock, the workers' relays handed to each other as the hub's driver does. The network
//! plays the hub's meeting logic: who consumes whom ([`Net::consumes`]), consumer ids kept by
//! `(subscriber, producer)`, hub offers answered by the clients.
//!
//! ```no_run
//! use std::time::Duration;
//! use diemcau_sfu::PeerId;
//! use diemcau_sfu::testkit::Net;
//!
//! const STUDIO: PeerId = PeerId(1);
//! // The studio receives every site, and every site the studio.
//! let mut net = Net::new(|subscriber, publisher| (publisher == STUDIO) != (subscriber == STUDIO));
//! net.join(STUDIO);
//! net.join(PeerId(2));
//! net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
//! assert!(net.client(PeerId(2)).rtp_received() > 0);
//! ```

mod client;
mod link;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::MediaKind;

pub use client::{Client, ClientConfig, RIDS, red_payload};
pub use link::Link;

use crate::{ConsumerId, Event, Output, PeerId, ProducerId, ProducerInfo, Relay, RouterId};
use crate::{MediaPacket, SfuError, Worker, WorkerConfig};

/// One tick of the virtual clock, unless [`Net::step`] says otherwise.
pub const STEP: Duration = Duration::from_millis(5);
/// Relays kept in [`Net::relays`].
const KEPT_RELAYS: usize = 1024;

/// Workers, their clients, and the hub's meeting logic between them. States: built (no
/// client) → clients join one by one ([`Net::join`]) → it runs ([`Net::run`]) for as long as
/// the test wants.
#[derive(Debug)]
pub struct Net {
    pub now: Instant,
    pub start: Instant,
    pub workers: Vec<Worker>,
    /// Each worker's socket address, by index.
    pub hubs: Vec<SocketAddr>,
    pub router: RouterId,
    pub clients: Vec<Client>,
    /// Every producer the workers announced or the test added, in order.
    pub producers: Vec<ProducerInfo>,
    /// The consumer id of each `(subscriber, producer)`, as the hub keeps them.
    pub consumers: HashMap<(PeerId, ProducerId), ConsumerId>,
    next_consumer: u64,
    /// Decides who consumes a new producer: `(subscriber, publisher) -> bool`.
    pub consumes: fn(PeerId, PeerId) -> bool,
    /// Virtual time between two turns of the network.
    pub step: Duration,
    /// Clients that offer RED ([`ClientConfig::red`]) when they join with [`Net::join_with`].
    pub red: Vec<PeerId>,
    /// Clients that offer no audio m-line when they join with [`Net::join_with`].
    pub video_only: Vec<PeerId>,
    /// Clients that join with a hub-to-client link that loses everything, so that their
    /// connection does not come up until the test restores their [`Client::downlink`].
    pub unreachable: Vec<PeerId>,
    /// Whether a refusal of the hub logic's calls (a consumer not added, an answer refused)
    /// is tolerated; otherwise it panics. Fuzz targets close peers on purpose.
    pub tolerate_refusals: bool,
    /// `Reception` events, in order.
    pub receptions: Vec<(PeerId, bool)>,
    /// Their `shed` flags, in the same order.
    pub shed: Vec<(PeerId, bool)>,
    /// Peers a worker reported closed.
    pub closed: Vec<PeerId>,
    /// Datagrams a worker addressed to no client.
    pub stray_transmits: u64,
    /// The first relays the workers emitted.
    pub relays: Vec<Relay>,
    /// Time spent inside the workers' calls (for benchmarks).
    pub worker_time: Duration,
    /// Datagrams the workers sent to clients, and the clients to the workers.
    pub datagrams_out: u64,
    pub datagrams_in: u64,
    /// Packets of tapped producers, as the workers handed them out.
    pub tapped: Vec<Arc<MediaPacket>>,
    /// How long the workers' datagrams wait before they leave, by the virtual time since the
    /// start: a driver whose core is busy writes a turn's datagrams and sends them later
    /// together. None: they leave as they are polled.
    pub send_wait: Option<fn(Duration) -> Duration>,
    /// Whether the driver tells a worker when its datagrams left
    /// ([`Worker::datagrams_sent`]), as the hub's driver does after each send.
    pub says_sent: bool,
}

impl Net {
    /// One worker.
    pub fn new(consumes: fn(PeerId, PeerId) -> bool) -> Net {
        Net::with_workers(consumes, 1, |_| {})
    }

    /// `workers` workers, worker `i` at `127.0.0.1:40000 + i`, each configured by `configure`
    /// after its index, count, address and the shared DTLS certificate are set.
    pub fn with_workers(
        consumes: fn(PeerId, PeerId) -> bool,
        workers: usize,
        configure: impl Fn(&mut WorkerConfig),
    ) -> Net {
        let now = Instant::now();
        let hubs: Vec<SocketAddr> = (0..workers)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16)))
            .collect();
        let workers = hubs
            .iter()
            .enumerate()
            .map(|(index, hub)| {
                let mut config = WorkerConfig::new(vec![*hub]);
                config.index = index as u32;
                config.workers = hubs.len() as u32;
                config.dtls_cert = Some(client::certificates().0.clone());
                configure(&mut config);
                Worker::new(config)
            })
            .collect();
        Net {
            now,
            start: now,
            workers,
            hubs,
            router: RouterId(1),
            clients: Vec::new(),
            producers: Vec::new(),
            consumers: HashMap::new(),
            next_consumer: 1,
            consumes,
            step: STEP,
            red: Vec::new(),
            video_only: Vec::new(),
            unreachable: Vec::new(),
            tolerate_refusals: false,
            receptions: Vec::new(),
            shed: Vec::new(),
            closed: Vec::new(),
            stray_transmits: 0,
            relays: Vec::new(),
            worker_time: Duration::ZERO,
            send_wait: None,
            says_sent: true,
            datagrams_out: 0,
            datagrams_in: 0,
            tapped: Vec::new(),
        }
    }

    /// Adds a client publishing audio and video on worker 0; see [`Net::join_client`].
    pub fn join(&mut self, peer: PeerId) -> usize {
        self.join_with(peer, false)
    }

    /// Like [`Net::join`], publishing video in three simulcast layers when `simulcast`, with
    /// RED and without audio as [`Net::red`] and [`Net::video_only`] say.
    pub fn join_with(&mut self, peer: PeerId, simulcast: bool) -> usize {
        let config = ClientConfig {
            simulcast,
            red: self.red.contains(&peer),
            audio: (!self.video_only.contains(&peer)).then_some(str0m::media::Direction::SendOnly),
            ..ClientConfig::default()
        };
        self.join_client(peer, config)
    }

    /// Adds a client, exchanges its first offer with its worker, and subscribes it to every
    /// producer the rules give it. Returns its index in [`Net::clients`].
    pub fn join_client(&mut self, peer: PeerId, config: ClientConfig) -> usize {
        let index = self.clients.len();
        let addr = SocketAddr::from(([127, 0, (index / 250) as u8, (2 + index % 250) as u8], 5000));
        let (mut client, offer, pending) = Client::offer(self.now, peer, addr, config);
        if self.unreachable.contains(&peer) {
            client.downlink.loss_percent = 100;
        }
        let worker = self
            .workers
            .get_mut(config.worker)
            .expect("the client's worker");
        let answer = worker
            .add_peer(self.now, peer, self.router, &offer)
            .expect("hub accepts the offer");
        client.hub_ice = client::ice_credentials(&answer);
        answer.clone_into(&mut client.first_answer);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("hub answer parses");
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("client accepts the answer");
        self.clients.push(client);
        self.pump();
        self.subscribe_existing(peer);
        index
    }

    pub fn client(&mut self, peer: PeerId) -> &mut Client {
        self.clients
            .iter_mut()
            .find(|c| c.peer == peer)
            .expect("known client")
    }

    /// Asserts that `subscriber` received at least 95 % of the audio and the video packets
    /// `publisher` sent, and that it sent over a hundred of each.
    pub fn assert_receives(&mut self, subscriber: PeerId, publisher: PeerId) {
        let sent = self.client(publisher).sent.clone();
        let c = self.client(subscriber);
        assert!(c.connected, "{subscriber} connected");
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let got = c.received_count(kind);
            let sent = sent.get(&kind).copied().unwrap_or(0);
            assert!(sent > 100, "{publisher} sent {sent} {kind} packets");
            assert!(
                got * 100 >= sent * 95,
                "{subscriber} received {got} of {sent} {kind} packets"
            );
        }
    }

    /// RTP packets each client received so far, in [`Net::clients`] order.
    pub fn rtp_received(&self) -> Vec<u64> {
        self.clients.iter().map(Client::rtp_received).collect()
    }

    /// The worker `peer` is connected to.
    pub fn worker_of(&mut self, peer: PeerId) -> &mut Worker {
        let index = self.client(peer).config.worker;
        self.workers.get_mut(index).expect("the client's worker")
    }

    /// Subscribes `peer` to every known producer the rules give it and it does not consume yet.
    pub fn subscribe_existing(&mut self, peer: PeerId) {
        let infos: Vec<ProducerInfo> = self
            .producers
            .iter()
            .filter(|p| (self.consumes)(peer, p.peer))
            .filter(|p| !self.consumers.contains_key(&(peer, p.id)))
            .cloned()
            .collect();
        for info in infos {
            self.consume(peer, &info, u8::MAX);
        }
        self.pump();
    }

    /// A producer of a worker outside this network (or one the test makes up): every client
    /// the rules give it consumes it, as if a worker had announced it.
    pub fn add_producer(&mut self, info: ProducerInfo) {
        self.announce(info);
        self.pump();
    }

    /// Tells `subscriber`'s worker to forward `producer` to it, under a new consumer id; the
    /// worker's refusal is returned.
    pub fn add_consumer(
        &mut self,
        subscriber: PeerId,
        producer: &ProducerInfo,
        max_layer: u8,
    ) -> Result<ConsumerId, SfuError> {
        let consumer = self.new_consumer(subscriber, |worker, consumer| {
            worker.add_consumer(subscriber, consumer, producer, max_layer)
        })?;
        self.consumers.insert((subscriber, producer.id), consumer);
        Ok(consumer)
    }

    /// Tells `subscriber`'s worker to forward layer `layer` of `producer` only, on a track of
    /// its own (a relaying hub's); the worker's refusal is returned.
    pub fn add_pinned_consumer(
        &mut self,
        subscriber: PeerId,
        producer: &ProducerInfo,
        layer: u8,
    ) -> Result<ConsumerId, SfuError> {
        self.new_consumer(subscriber, |worker, consumer| {
            worker.add_pinned_consumer(subscriber, consumer, producer, layer)
        })
    }

    /// A new consumer id, added by `add` on `subscriber`'s worker.
    fn new_consumer(
        &mut self,
        subscriber: PeerId,
        add: impl FnOnce(&mut Worker, ConsumerId) -> Result<(), SfuError>,
    ) -> Result<ConsumerId, SfuError> {
        let consumer = ConsumerId(self.next_consumer);
        self.next_consumer += 1;
        let index = self
            .clients
            .iter()
            .find(|c| c.peer == subscriber)
            .map_or(0, |c| c.config.worker);
        let worker = self.workers.get_mut(index).expect("the client's worker");
        add(worker, consumer)?;
        Ok(consumer)
    }

    /// `peer` leaves: its worker drops it, every worker its producers, and the network its
    /// client.
    pub fn leave(&mut self, peer: PeerId) {
        let now = self.now;
        self.worker_of(peer).remove_peer(now, peer);
        let gone: Vec<ProducerId> = self
            .producers
            .iter()
            .filter(|p| p.peer == peer)
            .map(|p| p.id)
            .collect();
        for producer in gone {
            self.remove_producer(producer);
        }
        self.consumers
            .retain(|(subscriber, _), _| *subscriber != peer);
        self.clients.retain(|c| c.peer != peer);
        self.pump();
    }

    /// A producer is gone: every worker drops it and its consumers.
    pub fn remove_producer(&mut self, producer: ProducerId) {
        let now = self.now;
        for worker in &mut self.workers {
            worker.remove_producer(now, self.router, producer);
        }
        self.consumers.retain(|(_, p), _| *p != producer);
        self.producers.retain(|p| p.id != producer);
        self.pump();
    }

    /// Runs the network for `duration` of virtual time; `each_step` may act at every tick.
    pub fn run(&mut self, duration: Duration, mut each_step: impl FnMut(&mut Net)) {
        let end = self.now + duration;
        while self.now < end {
            self.now += self.step;
            let now = self.now;
            let start = Instant::now();
            for worker in &mut self.workers {
                worker.handle_timeout(now);
            }
            self.worker_time += start.elapsed();
            for c in &mut self.clients {
                let _ = c.rtc.handle_input(str0m::Input::Timeout(now));
            }
            each_step(self);
            self.pump();
        }
    }

    /// Tells every worker its loop was busy `busy` of the last period
    /// ([`Worker::handle_load`]), as a driver does every half second.
    pub fn load(&mut self, busy: f32) {
        let now = self.now;
        for worker in &mut self.workers {
            worker.handle_load(now, busy, busy);
        }
        self.pump();
    }

    /// Publishes like a real client from `peer` (see [`Client::send_media`]).
    pub fn send_media(&mut self, peer: PeerId, video_packets: usize) {
        let (now, elapsed) = (self.now, self.now - self.start);
        self.client(peer).send_media(now, elapsed, video_packets);
    }

    /// Delivers a datagram to worker 0 as if it came from `source`, then lets everyone react.
    pub fn deliver(&mut self, source: SocketAddr, contents: &[u8]) {
        let (now, hub) = (self.now, self.hubs.first().copied().expect("a worker"));
        if let Some(worker) = self.workers.first_mut() {
            worker.handle_datagram(now, source, hub, contents);
        }
        self.pump();
    }

    /// Moves every pending datagram, relay and event until all parties are quiet. Each client
    /// is polled right after each datagram it receives, as a real driver does (in RTP mode
    /// str0m holds one received packet at a time).
    pub fn pump(&mut self) {
        // str0m (with bandwidth estimation) may ask to be woken at `now` again right after
        // handling `now`: with a clock that only moves by ticks, that would never end. Each
        // worker handles a due timeout once per pump, as a driver on a coarse clock would.
        let mut timed_out = vec![false; self.workers.len()];
        for _ in 0..10_000 {
            let mut busy = false;
            let mut to_clients = Vec::new();
            let mut events = Vec::new();
            let mut relays = Vec::new();
            let start = Instant::now();
            let sent_at = self.now
                + self
                    .send_wait
                    .map_or(Duration::ZERO, |wait| wait(self.now - self.start));
            for ((index, worker), timed_out) in
                self.workers.iter_mut().enumerate().zip(&mut timed_out)
            {
                let transmitted = to_clients.len();
                loop {
                    match worker.poll_output() {
                        Output::Transmit(t) => {
                            // The kernel copies a datagram out as it is sent, and the driver
                            // gives its buffer back for the next (see `Worker::give_back`).
                            to_clients.push((t.destination, t.contents.to_vec()));
                            worker.give_back(t.contents.into());
                        }
                        Output::Event(event) => events.push(event),
                        Output::Relay(relay) => relays.push((index, relay)),
                        Output::Tapped(packet) => self.tapped.push(packet),
                        Output::Timeout(at) if at <= self.now && !*timed_out => {
                            *timed_out = true;
                            worker.handle_timeout(self.now);
                            busy = true;
                            break;
                        }
                        Output::Timeout(_) => break,
                    }
                }
                if self.says_sent && to_clients.len() > transmitted {
                    worker.datagrams_sent(sent_at);
                }
            }
            // Each other worker gets each relay once, as the driver hands them over.
            for (from, relay) in relays {
                busy = true;
                for (index, worker) in self.workers.iter_mut().enumerate() {
                    if index != from {
                        worker.handle_relay(self.now, relay.clone());
                    }
                }
                if self.relays.len() < KEPT_RELAYS {
                    self.relays.push(relay);
                }
            }
            self.worker_time += start.elapsed();
            self.datagrams_out += to_clients.len() as u64;
            busy |= !to_clients.is_empty() || !events.is_empty();
            let now = self.now;
            for (destination, contents) in to_clients {
                match self.clients.iter_mut().find(|c| c.addr == destination) {
                    Some(c) => c.downlink.push(sent_at, contents),
                    None => self.stray_transmits += 1,
                }
            }
            let mut to_hub = Vec::new();
            for c in &mut self.clients {
                let Some(hub) = self.hubs.get(c.config.worker).copied() else {
                    continue;
                };
                for datagram in c.downlink.due(now) {
                    busy = true;
                    c.receive(now, hub, &datagram);
                    c.poll(now, &mut to_hub);
                }
            }
            for event in events {
                self.on_event(event);
            }
            for c in &mut self.clients {
                busy |= c.poll(now, &mut to_hub);
            }
            self.datagrams_in += to_hub.len() as u64;
            let start = Instant::now();
            for (index, source, contents) in to_hub {
                if let (Some(worker), Some(hub)) =
                    (self.workers.get_mut(index), self.hubs.get(index))
                {
                    worker.handle_datagram(now, source, *hub, &contents);
                }
            }
            self.worker_time += start.elapsed();
            if !busy {
                return;
            }
        }
    }

    /// The hub's meeting logic.
    fn on_event(&mut self, event: Event) {
        match event {
            Event::ProducerAdded(info) => self.announce(info),
            Event::Offer { peer, sdp } => {
                let now = self.now;
                let tolerate = self.tolerate_refusals;
                let c = self.client(peer);
                c.note_offer(&sdp);
                let offer = SdpOffer::from_sdp_string(&sdp)
                    .unwrap_or_else(|e| panic!("the hub's offer does not parse ({e}): {sdp}"));
                let answer = match c.rtc.sdp_api().accept_offer(offer) {
                    Ok(answer) => answer,
                    Err(_) if tolerate => return,
                    Err(e) => panic!("{peer} does not answer: {e}"),
                };
                let accepted =
                    self.worker_of(peer)
                        .accept_answer(now, peer, &answer.to_sdp_string());
                if let Err(e) = accepted
                    && !tolerate
                {
                    panic!("hub refuses {peer}'s answer: {e}");
                }
            }
            Event::Reception {
                peer,
                audio_only,
                shed,
            } => {
                self.receptions.push((peer, audio_only));
                self.shed.push((peer, shed));
            }
            Event::PeerClosed(peer) => self.closed.push(peer),
            Event::PeerConnected(_) | Event::Quality { .. } | Event::Transport { .. } => {}
        }
    }

    /// Every client the rules give `info` consumes it; it joins the known producers.
    fn announce(&mut self, info: ProducerInfo) {
        let subscribers: Vec<PeerId> = self
            .clients
            .iter()
            .map(|c| c.peer)
            .filter(|s| (self.consumes)(*s, info.peer))
            .collect();
        for s in subscribers {
            self.consume(s, &info, u8::MAX);
        }
        self.producers.push(info);
    }

    fn consume(&mut self, subscriber: PeerId, info: &ProducerInfo, max_layer: u8) {
        if let Err(e) = self.add_consumer(subscriber, info, max_layer)
            && !self.tolerate_refusals
        {
            panic!("consumer of {} for {subscriber} not added: {e}", info.id);
        }
    }
}
