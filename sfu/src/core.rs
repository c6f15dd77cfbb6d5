//! The part of a worker that is not its peers: routing maps, timers, queued work and outputs.
//! A peer is driven here ([`Core::drive`]) while it is borrowed out of the worker's peer map,
//! and what its `Rtc` reports becomes work and outputs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::net::{Protocol, Transmit};
use str0m::rtp::ExtensionValues;
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output as RtcOutput};

use crate::config::WorkerConfig;
use crate::ids::{IdMap, PeerId, ProducerId, RouterId};
use crate::keyframes::KeyframeThrottle;
use crate::output::{DatagramBuffers, Event, Output, ProducerInfo, Relay, WorkerStats};
use crate::peer::Peer;
use crate::quality::Transport;
use crate::router::{Consumer, LocalProducer, MediaPacket, Meter, Router};
use crate::stun;

/// What a timer of the worker's heap wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Peer(PeerId),
    Keyframe(RouterId, ProducerId, u8),
    /// Re-check every peer's layers against its bandwidth.
    Allocate,
}

/// Everything but the peers, so a peer can be driven while the rest is updated. It lives as
/// long as its worker; routers come and go with their meetings' peers.
#[derive(Debug)]
pub(crate) struct Core {
    pub routers: IdMap<RouterId, Router>,
    pub timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub outputs: VecDeque<Output>,
    /// Buffers for the datagrams in `outputs` written at once, reused once sent.
    pub buffers: DatagramBuffers,
    pub work: VecDeque<Work>,
    pub closed: Vec<PeerId>,
    /// Peers that handed out datagrams since the driver last said a batch was sent: their
    /// transport-wide send times are set when it does ([`crate::Worker::datagrams_sent`]).
    pub unsent: Vec<PeerId>,
    /// The next producer id this worker gives out, and the step to the one after (ids are
    /// unique across workers: worker `index` of `workers` gives `index + 1 + k × workers`).
    pub next_producer: u64,
    pub stride: u64,
    pub relay: bool,
    pub keyframe_interval: Duration,
    pub stats: WorkerStats,
    /// Bitrate of each producer's layers, as seen by this worker.
    pub meters: IdMap<ProducerId, Vec<Meter>>,
    pub allocate_scheduled: bool,
    /// Peers with a new bandwidth estimate, to re-allocate.
    pub estimates_changed: Vec<PeerId>,
    /// Producers whose packets are also handed out as [`Output::Tapped`] (a recording).
    pub taps: HashSet<(RouterId, ProducerId)>,
}

/// Work queued while a peer was driven, run once it is back in the worker's map.
#[derive(Debug)]
pub(crate) enum Work {
    Forward(Arc<MediaPacket>),
    Keyframe(RouterId, ProducerId, u8),
}

impl Work {
    /// The keyframe a video consumer's first packets need, of the layer the allocator chose
    /// for it (the lowest before it chose); `None` for audio.
    pub(crate) fn first_keyframe(router: RouterId, consumer: &Consumer) -> Option<Work> {
        (consumer.kind == MediaKind::Video).then(|| {
            Work::Keyframe(
                router,
                consumer.producer,
                consumer.allocation.target.unwrap_or(0),
            )
        })
    }
}

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
    pub fn new(config: &WorkerConfig) -> Core {
        Core {
            routers: IdMap::default(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            buffers: DatagramBuffers::default(),
            work: VecDeque::new(),
            closed: Vec::new(),
            unsent: Vec::new(),
            next_producer: u64::from(config.index) + 1,
            stride: u64::from(config.workers.max(1)),
            relay: config.workers > 1,
            keyframe_interval: config.keyframe_interval,
            stats: WorkerStats::default(),
            meters: IdMap::default(),
            allocate_scheduled: false,
            estimates_changed: Vec::new(),
            taps: HashSet::new(),
        }
    }

    fn allocate_producer_id(&mut self) -> ProducerId {
        let id = ProducerId(self.next_producer);
        self.next_producer += self.stride;
        id
    }

    /// Counts a packet of `producer`'s `layer` toward that layer's bitrate.
    pub fn meter(&mut self, producer: ProducerId, layer: u8, at: Instant, bytes: usize) {
        let meters = self.meters.entry(producer).or_default();
        let layer = usize::from(layer);
        if meters.len() <= layer {
            meters.resize(layer + 1, Meter::default());
        }
        if let Some(meter) = meters.get_mut(layer) {
            meter.add(at, bytes);
        }
    }

    pub fn renegotiate(&mut self, peer: &mut Peer) {
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
    ///
    /// The whole of it is contained ([`Peer::contain`]): a panic inside (str0m's, on
    /// something the peer sent) fails the peer, which the worker then drops, and no other.
    pub fn drive(&mut self, now: Instant, peer: &mut Peer) {
        peer.contain(|peer| self.drive_contained(now, peer));
        close_failed(&mut self.closed, peer);
    }

    fn drive_contained(&mut self, now: Instant, peer: &mut Peer) {
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
                    note_unsent(&mut self.unsent, peer);
                    push_transmit(&mut self.outputs, peer, t);
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
                // Nothing was forwarded to the peer before (see `forward`): its pictures start
                // from a keyframe asked for now.
                if let Some(router) = self.routers.get(&peer.router) {
                    let opened = peer
                        .consumers_by_mid
                        .values()
                        .filter_map(|id| router.consumers.get(id))
                        .filter(|c| c.open);
                    self.work
                        .extend(opened.filter_map(|c| Work::first_keyframe(peer.router, c)));
                }
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
                let id = self.allocate_producer_id();
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
                let layers = u8::try_from(rids.len().max(1)).unwrap_or(u8::MAX);
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
                        layers,
                        mid: added.mid,
                        stream: None,
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
                let kind = if codec.is_audio() || codec == Codec::Red {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let ext = &packet.header.ext_vals;
                let vp8 = (codec == Codec::Vp8)
                    .then(|| crate::vp8::parse(&packet.payload))
                    .flatten();
                let keyframe_start = match codec {
                    Codec::Vp8 => vp8.map(|v| v.keyframe_start),
                    Codec::H264 => Some(crate::h264::starts_keyframe(&packet.payload)),
                    _ => None,
                };
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
                    vp8,
                    keyframe_start,
                    payload: packet.payload,
                    received_at: now,
                });
                if self.relay {
                    self.outputs
                        .push_back(Output::Relay(Relay::Media(media.clone())));
                }
                if self.taps.contains(&(peer.router, producer)) {
                    self.outputs.push_back(Output::Tapped(media.clone()));
                }
                self.work.push_back(Work::Forward(media));
            }
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                peer.trend.record(now, peer.estimate, estimate.as_u64());
                peer.estimate = Some(estimate.as_u64());
                tracing::debug!(peer = %peer.id, kbps = estimate.as_u64() / 1000, "bandwidth estimate");
                if !self.estimates_changed.contains(&peer.id) {
                    self.estimates_changed.push(peer.id);
                }
            }
            RtcEvent::PeerStats(stats) => {
                if let Some(mut quality) = peer.quality.update(&stats) {
                    quality.transport = peer.transport.or(quality.transport);
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
                    .and_then(|c| c.current.or(c.allocation.target).map(|l| (c.producer, l)));
                if let Some((producer, layer)) = producer {
                    self.work
                        .push_back(Work::Keyframe(peer.router, producer, layer));
                }
            }
            _ => {}
        }
    }
}

/// Adds a peer that failed ([`Peer::contain`]) to the peers to close, once.
pub(crate) fn close_failed(closed: &mut Vec<PeerId>, peer: &Peer) {
    if peer.failed && !closed.contains(&peer.id) {
        closed.push(peer.id);
    }
}

/// Lists `peer` among those whose datagrams await a send time, once.
pub(crate) fn note_unsent(unsent: &mut Vec<PeerId>, peer: &mut Peer) {
    if !peer.unsent {
        peer.unsent = true;
        unsent.push(peer.id);
    }
}

/// Queues a datagram of `peer` to send. ICE answers checks on every path; the first packet
/// past ICE tells the path it chose, and is reported before it.
pub(crate) fn push_transmit(outputs: &mut VecDeque<Output>, peer: &mut Peer, t: Transmit) {
    if !stun::is_stun(&t.contents) {
        note_transport(outputs, peer, t.proto);
    }
    outputs.push_back(Output::Transmit(t));
}

/// Reports the path of `peer`'s media when a packet past ICE went over `proto` and the path
/// changed.
pub(crate) fn note_transport(outputs: &mut VecDeque<Output>, peer: &mut Peer, proto: Protocol) {
    let transport = Transport::of(proto);
    if peer.transport != Some(transport) {
        peer.transport = Some(transport);
        outputs.push_back(Output::Event(Event::Transport {
            peer: peer.id,
            transport,
        }));
    }
}

/// The measured bitrate of `producer`'s layers up to `max_layer`, lowest first.
pub(crate) fn layer_rates(
    meters: &IdMap<ProducerId, Vec<Meter>>,
    producer: ProducerId,
    max_layer: u8,
) -> Vec<u64> {
    meters.get(&producer).map_or_else(Vec::new, |meters| {
        meters
            .iter()
            .take(usize::from(max_layer) + 1)
            .map(|m| m.rate)
            .collect()
    })
}

pub(crate) fn schedule(
    timers: &mut BinaryHeap<Reverse<(Instant, Timer)>>,
    peer: &mut Peer,
    at: Instant,
) {
    if peer.next_timeout != Some(at) {
        peer.next_timeout = Some(at);
        timers.push(Reverse((at, Timer::Peer(peer.id))));
    }
}
