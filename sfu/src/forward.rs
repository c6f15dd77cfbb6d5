//! Forwarding: the publishers' packets a loop turn read, written to every open consumer of
//! their producers on this worker, each with its own payload type, sequence numbers,
//! timestamps and VP8 picture ids, switching simulcast layers on a keyframe of the layer the
//! allocator chose.
//!
//! The packets are written site by site, not packet by packet: a site is given all of a
//! producer's packets of the turn at once, so its consumer state, its connection and its send
//! queues are brought into the cache once for all of them. With hundreds of sites, each site's
//! state is evicted between two packets written one at a time to every site, and bringing it
//! back is much of a write's cost (BENCHMARKS.md, "Site by site"). The writes are done a few
//! sites at a time ([`Batch::forward_some`]), so the datagrams they queue are sent before the
//! next sites are written: what waits is the turn's received packets, shared by all sites,
//! not an encrypted copy of each for every site.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};

use crate::core::note_transport;
use crate::ids::{ConsumerId, IdMap, PeerId, RouterId};
use crate::output::{DatagramBuffers, Output};
use crate::peer::Peer;
use crate::router::{Consumer, MediaPacket, Router};

/// What a [`Batch`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub packets: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
}

/// str0m's VP8 descriptor of a packet, parsed once for every consumer that patches picture ids.
type Vp8Parsed = Option<Result<str0m::rtp::Vp8Descriptor, str0m::error::Vp8DescriptorError>>;

/// Where forwarded packets go: the worker's peers, the peers to drive once the writes are done,
/// and the datagrams to send.
pub(crate) struct Sink<'a> {
    pub peers: &'a mut IdMap<PeerId, Box<Peer>>,
    pub touched: &'a mut Vec<PeerId>,
    /// Peers that handed out datagrams not yet sent (`Core::unsent`).
    pub unsent: &'a mut Vec<PeerId>,
    pub outputs: &'a mut VecDeque<Output>,
    pub buffers: &'a mut DatagramBuffers,
    /// Peers to close: those whose `Rtc` panicked as they were written to.
    pub closed: &'a mut Vec<PeerId>,
}

/// One producer's packets in a [`Batch`], and the consumers they go to.
#[derive(Debug)]
struct Group {
    router: RouterId,
    /// Where its packets lie in [`Batch::packets`].
    packets: std::ops::Range<usize>,
    /// The producer's consumers when the batch was made: one removed since is skipped, one
    /// added since starts with the next batch (its first picture waits for a keyframe anyway).
    consumers: Vec<ConsumerId>,
}

/// Packets received together, being written to their consumers a few sites at a time. One
/// lives as long as its worker and serves batch after batch, keeping what its lists grew to:
/// a batch allocates nothing once the worker has seen its largest.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// When the packets were received (the latest of them): the time they are written at.
    now: Option<Instant>,
    /// Grouped by producer, each producer's in the order they arrived, sound first.
    packets: Vec<Arc<MediaPacket>>,
    /// Each packet's VP8 descriptor, once parsed.
    vp8: Vec<Vp8Parsed>,
    /// The first `used` are this batch's; the others keep their lists for later batches.
    groups: Vec<Group>,
    used: usize,
    /// The next consumer to write to: its group, and its place in the group's list.
    group: usize,
    consumer: usize,
}

impl Batch {
    /// When the batch's packets were received: the time they are written at.
    pub fn now(&self) -> Option<Instant> {
        self.now
    }

    /// Whether some consumers are still to be written this batch's packets.
    pub fn is_pending(&self) -> bool {
        self.group < self.used
    }

    /// Starts a batch of the packets in `received` (left empty), received by `now`, to the
    /// consumers their producers have now. The batch before must be done.
    pub fn start(
        &mut self,
        now: Instant,
        received: &mut Vec<Arc<MediaPacket>>,
        routers: &IdMap<RouterId, Router>,
    ) {
        self.now = Some(now);
        self.packets.clear();
        std::mem::swap(&mut self.packets, received);
        // Stable: each producer's packets keep their order. Sound goes first: a turn's
        // video to every site does not delay it.
        self.packets
            .sort_by_key(|p| (p.kind != MediaKind::Audio, p.router, p.producer));
        self.vp8.clear();
        self.vp8.resize(self.packets.len(), None);
        self.used = 0;
        let mut start = 0;
        let same_producer = |a: &Arc<MediaPacket>, b: &Arc<MediaPacket>| {
            (a.router, a.producer) == (b.router, b.producer)
        };
        for same in self.packets.chunk_by(same_producer) {
            let end = start + same.len();
            if let Some(first) = same.first()
                && let Some(consumers) = routers
                    .get(&first.router)
                    .and_then(|r| r.consumers_of.get(&first.producer))
            {
                match self.groups.get_mut(self.used) {
                    Some(group) => {
                        group.router = first.router;
                        group.packets = start..end;
                        group.consumers.clear();
                        group.consumers.extend_from_slice(consumers);
                    }
                    None => self.groups.push(Group {
                        router: first.router,
                        packets: start..end,
                        consumers: consumers.clone(),
                    }),
                }
                self.used += 1;
            }
            start = end;
        }
        self.group = 0;
        self.consumer = 0;
    }

    /// Writes the packets to the next consumers until the sink's outputs hold `enough` or
    /// every consumer has had its packets (then the batch lets go of its packets); returns
    /// what it wrote. What each consumer's pacer lets go at once is queued in the outputs straight
    /// away, written into one of the sink's buffers; peers that keep something to send, or
    /// must be driven for another reason, are marked and listed as touched, to be driven once
    /// later.
    pub fn forward_some(
        &mut self,
        routers: &mut IdMap<RouterId, Router>,
        sink: &mut Sink<'_>,
        enough: usize,
    ) -> Forwarded {
        let mut forwarded = Forwarded::default();
        let Some(now) = self.now else {
            return forwarded;
        };
        while let Some(group) = self
            .groups
            .get(self.group)
            .filter(|_| self.group < self.used)
        {
            if sink.outputs.len() >= enough {
                return forwarded;
            }
            let Some(&consumer) = group.consumers.get(self.consumer) else {
                self.group += 1;
                self.consumer = 0;
                continue;
            };
            self.consumer += 1;
            let (Some(consumer), Some(packets), Some(vp8)) = (
                routers
                    .get_mut(&group.router)
                    .and_then(|r| r.consumers.get_mut(&consumer)),
                self.packets.get(group.packets.clone()),
                self.vp8.get_mut(group.packets.clone()),
            ) else {
                continue;
            };
            write_to(now, packets, vp8, consumer, sink, &mut forwarded);
        }
        self.packets.clear();
        forwarded
    }
}

/// Writes `packets`, all of one producer, to its `consumer` (for video, the packets of the
/// layer it forwards, switching layers on a keyframe of the target layer), at `now`.
fn write_to(
    now: Instant,
    packets: &[Arc<MediaPacket>],
    vp8_descriptors: &mut [Vp8Parsed],
    consumer: &mut Consumer,
    sink: &mut Sink<'_>,
    forwarded: &mut Forwarded,
) {
    let (true, Some(mid)) = (consumer.open, consumer.mid) else {
        return;
    };
    let Some(peer) = sink.peers.get_mut(&consumer.peer) else {
        return;
    };
    // Until its connection is up (and while it is down), a peer is written nothing: str0m
    // would queue it all, a second of video per site in a join storm, and send it late in
    // one burst. It gets a keyframe once connected.
    if peer.failed || !peer.rtc.is_connected() {
        return;
    }
    // The writes are contained as a whole: a panic inside (str0m's, on something the peer
    // sent) fails this peer alone, which the worker then drops.
    let (outputs, buffers) = (&mut *sink.outputs, &mut *sink.buffers);
    let queued = outputs.len();
    let written = peer.contain(|peer| {
        write_packets(
            now,
            mid,
            packets,
            vp8_descriptors,
            consumer,
            peer,
            (outputs, buffers),
            forwarded,
        )
    });
    if sink.outputs.len() > queued {
        crate::core::note_unsent(sink.unsent, peer);
    }
    let Some(drive) = written else {
        crate::core::close_failed(sink.closed, peer);
        return;
    };
    if drive && !peer.touched {
        peer.touched = true;
        sink.touched.push(peer.id);
    }
}

/// [`write_to`]'s packets written to `peer`'s `Rtc`, the datagrams it sends at once queued
/// in `outputs`; returns whether the `Rtc` needs driving.
#[allow(clippy::too_many_arguments)]
fn write_packets(
    now: Instant,
    mid: Mid,
    packets: &[Arc<MediaPacket>],
    vp8_descriptors: &mut [Vp8Parsed],
    consumer: &mut Consumer,
    peer: &mut Peer,
    (outputs, buffers): (&mut VecDeque<Output>, &mut DatagramBuffers),
    forwarded: &mut Forwarded,
) -> bool {
    let mut drive = false;
    for (packet, vp8_descriptor) in packets.iter().zip(vp8_descriptors.iter_mut()) {
        let video = packet.kind == MediaKind::Video;
        if video && consumer.current != Some(packet.layer) {
            let switch = consumer.allocation.target == Some(packet.layer)
                && packet.keyframe_start != Some(false);
            if !switch {
                continue;
            }
            consumer.current = Some(packet.layer);
            consumer.sequence.rebase();
            consumer.timestamps.rebase();
            consumer.pictures.rebase();
        }
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
        // The clock moves only across a layer switch, or for a fixed m-line's new source.
        let clock_per_ms = if video { 90 } else { 48 };
        let timestamp =
            consumer
                .timestamps
                .rewrite(packet.timestamp, packet.received_at, clock_per_ms);
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
        let mut proto = None;
        let Some(idle) = peer.rtc.direct_api().write_rtp_now(
            now,
            mid,
            None,
            write,
            || buffers.take(),
            |t| {
                proto = Some(t.proto);
                outputs.push_back(Output::Transmit(t));
            },
        ) else {
            continue;
        };
        if let Some(proto) = proto {
            note_transport(outputs, peer, proto);
        }
        drive |= !idle;
        forwarded.packets += 1;
        forwarded.bytes += packet.payload.len() as u64;
    }
    drive
}

#[cfg(test)]
mod tests {
    use str0m::format::Codec;
    use str0m::rtp::{ExtensionValues, SeqNo};

    use super::*;
    use crate::ids::ProducerId;

    const ROUTER: RouterId = RouterId(1);
    const CAMERA: ProducerId = ProducerId(10);
    const MICROPHONE: ProducerId = ProducerId(11);

    fn packet(producer: ProducerId, kind: MediaKind, seq: u64, at: Instant) -> Arc<MediaPacket> {
        Arc::new(MediaPacket {
            router: ROUTER,
            producer,
            kind,
            codec: if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            },
            seq_no: SeqNo::from(seq),
            timestamp: 0,
            marker: false,
            extensions: ExtensionValues::default(),
            layer: 0,
            vp8: None,
            keyframe_start: None,
            payload: Arc::from(vec![0u8; 100]),
            received_at: at,
        })
    }

    fn order(batch: &Batch) -> Vec<(ProducerId, u64)> {
        batch
            .packets
            .iter()
            .map(|p| (p.producer, *p.seq_no))
            .collect()
    }

    #[test]
    fn a_batch_writes_sound_first_and_each_producers_packets_in_order_site_by_site() {
        let start = Instant::now();
        let mut routers = IdMap::default();
        let router: &mut Router = routers.entry(ROUTER).or_default();
        for (id, peer) in [(1, 100), (2, 101), (3, 102)] {
            let consumer = Consumer::new(PeerId(peer), CAMERA, MediaKind::Video, 2);
            router.add_consumer(ConsumerId(id), consumer);
        }
        router.add_consumer(
            ConsumerId(4),
            Consumer::new(PeerId(100), MICROPHONE, MediaKind::Audio, 0),
        );
        // A frame's packets with the sound read between them, as a loop turn reads them; and
        // a producer nobody consumes.
        let mut received = vec![
            packet(CAMERA, MediaKind::Video, 7, start),
            packet(MICROPHONE, MediaKind::Audio, 40, start),
            packet(CAMERA, MediaKind::Video, 8, start),
            packet(ProducerId(12), MediaKind::Video, 1, start),
            packet(CAMERA, MediaKind::Video, 9, start),
            packet(MICROPHONE, MediaKind::Audio, 41, start),
        ];
        let mut batch = Batch::default();
        assert!(!batch.is_pending(), "a new batch has nothing to write");
        batch.start(start, &mut received, &routers);
        assert!(received.is_empty(), "the batch took the packets");
        assert!(batch.is_pending());
        assert_eq!(
            order(&batch),
            vec![
                (MICROPHONE, 40),
                (MICROPHONE, 41),
                (CAMERA, 7),
                (CAMERA, 8),
                (CAMERA, 9),
                (ProducerId(12), 1),
            ],
            "sound first, each producer's packets in the order they came"
        );
        let groups: Vec<_> = batch.groups[..batch.used]
            .iter()
            .map(|g| (g.packets.clone(), g.consumers.clone()))
            .collect();
        assert_eq!(
            groups,
            vec![
                (0..2, vec![ConsumerId(4)]),
                (2..5, vec![ConsumerId(1), ConsumerId(2), ConsumerId(3)]),
            ],
            "one group per consumed producer, with the consumers it has now"
        );

        // A consumer removed while the batch is written is skipped; one added waits for the
        // next batch. (No peer is connected here: nothing is sent.)
        let router = routers.get_mut(&ROUTER).expect("router");
        router.remove_consumer(ConsumerId(2));
        router.add_consumer(
            ConsumerId(5),
            Consumer::new(PeerId(103), CAMERA, MediaKind::Video, 2),
        );
        let (mut peers, mut touched, mut unsent, mut outputs, mut buffers, mut closed) = (
            IdMap::default(),
            Vec::new(),
            Vec::new(),
            VecDeque::new(),
            DatagramBuffers::default(),
            Vec::new(),
        );
        let mut sink = Sink {
            peers: &mut peers,
            touched: &mut touched,
            unsent: &mut unsent,
            outputs: &mut outputs,
            buffers: &mut buffers,
            closed: &mut closed,
        };
        let forwarded = batch.forward_some(&mut routers, &mut sink, 64);
        assert_eq!(forwarded, Forwarded::default());
        assert!(!batch.is_pending(), "every consumer was visited");
        assert!(
            batch.packets.is_empty(),
            "a done batch lets go of its packets"
        );

        // The next batch reuses the lists.
        let mut received = vec![packet(CAMERA, MediaKind::Video, 10, start)];
        batch.start(start, &mut received, &routers);
        assert_eq!(order(&batch), vec![(CAMERA, 10)]);
        assert_eq!(
            batch.groups.first().map(|g| g.consumers.clone()),
            Some(vec![ConsumerId(1), ConsumerId(3), ConsumerId(5)])
        );
        assert_eq!(batch.used, 1);
    }
}
