//! One meeting's routing maps on one worker: which consumers take which producer's packets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, SeqNo};

use crate::allocate::LayerState;
use crate::ids::{ConsumerId, PeerId, ProducerId, RouterId};
use crate::keyframes::KeyframeThrottle;
use crate::rewrite::{LineClocks, PictureRewriter, SequenceRewriter, TimestampRewriter};
use crate::vp8::Vp8Info;

/// A publisher's RTP packet on its way to consumers, shared by every worker that forwards it
/// (an `Arc`, so crossing to another worker costs a reference count, not a copy).
#[derive(Debug, Clone)]
pub struct MediaPacket {
    pub router: RouterId,
    pub producer: ProducerId,
    pub kind: MediaKind,
    pub codec: Codec,
    /// The publisher's extended sequence number.
    pub seq_no: SeqNo,
    pub timestamp: u32,
    pub marker: bool,
    /// Header extensions worth forwarding (audio level, voice activity, video orientation).
    pub extensions: ExtensionValues,
    /// Simulcast layer, 0 the lowest (0 too for a producer without simulcast).
    pub layer: u8,
    /// The VP8 descriptor, for VP8 video.
    pub vp8: Option<Vp8Info>,
    /// Whether the packet starts a picture a receiver can begin decoding with, for the video
    /// codecs that say so (VP8, H.264); `None` for the others and for audio.
    pub keyframe_start: Option<bool>,
    pub payload: Arc<[u8]>,
    /// When the hub received the packet.
    pub received_at: Instant,
}

/// A producer whose publisher is connected to this worker.
#[derive(Debug)]
pub(crate) struct LocalProducer {
    pub peer: PeerId,
    pub mid: Mid,
    /// Simulcast rids, lowest layer first (empty without simulcast).
    pub rids: Vec<str0m::media::Rid>,
    /// One throttle per layer.
    pub keyframes: Vec<KeyframeThrottle>,
    /// Muted by the chair: its packets are dropped here, before any forwarding.
    pub paused: bool,
}

/// An outgoing track to one peer. States: negotiating (the m-line is offered, no answer yet)
/// → open (packets flow) → removed. A video consumer also has a layer: the one it forwards
/// (`current`), the one its peer's bandwidth asks for (`allocation.target`, switched to on that
/// layer's next keyframe), or none at all (audio only).
#[derive(Debug)]
pub(crate) struct Consumer {
    pub peer: PeerId,
    pub producer: ProducerId,
    pub kind: MediaKind,
    pub mid: Option<Mid>,
    pub open: bool,
    pub sequence: SequenceRewriter,
    /// Producer codec → this peer's negotiated payload type, filled on first use.
    pub payload_types: Vec<(Codec, Pt)>,
    /// Highest simulcast layer this consumer may take (the chair's wall takes the lowest).
    pub max_layer: u8,
    /// It forwards `max_layer` only, whatever its peer's bandwidth (one of the tracks that
    /// carry every layer to a hub relaying the meeting): the allocator leaves it alone.
    pub pinned: bool,
    /// The layer its peer's bandwidth asks for, and the allocator's clocks.
    pub allocation: LayerState,
    pub current: Option<u8>,
    pub timestamps: TimestampRewriter,
    pub pictures: PictureRewriter,
}

impl Consumer {
    /// Its numbering and clocks, for the next consumer of its m-line (a fixed peer's).
    pub fn into_clocks(self) -> LineClocks {
        LineClocks {
            sequence: self.sequence,
            timestamps: self.timestamps,
            pictures: self.pictures,
        }
    }

    /// Goes on from the numbering and clocks of its m-line's previous consumer.
    pub fn continue_from(&mut self, clocks: LineClocks) {
        let LineClocks {
            sequence,
            timestamps,
            pictures,
        } = clocks.continued();
        self.sequence = sequence;
        self.timestamps = timestamps;
        self.pictures = pictures;
    }

    pub fn new(peer: PeerId, producer: ProducerId, kind: MediaKind, max_layer: u8) -> Consumer {
        Consumer {
            peer,
            producer,
            kind,
            mid: None,
            open: false,
            sequence: SequenceRewriter::default(),
            payload_types: Vec::new(),
            max_layer,
            pinned: false,
            allocation: LayerState::default(),
            current: None,
            timestamps: TimestampRewriter::default(),
            pictures: PictureRewriter::default(),
        }
    }
}

/// The routing maps of one meeting on one worker: producer → consumers and consumer → producer.
#[derive(Debug, Default)]
pub(crate) struct Router {
    pub producers: HashMap<ProducerId, LocalProducer>,
    pub consumers: HashMap<ConsumerId, Consumer>,
    pub consumers_of: HashMap<ProducerId, Vec<ConsumerId>>,
}

impl Router {
    pub fn add_consumer(&mut self, id: ConsumerId, consumer: Consumer) {
        self.consumers_of
            .entry(consumer.producer)
            .or_default()
            .push(id);
        self.consumers.insert(id, consumer);
    }

    pub fn remove_consumer(&mut self, id: ConsumerId) -> Option<Consumer> {
        let consumer = self.consumers.remove(&id)?;
        if let Some(list) = self.consumers_of.get_mut(&consumer.producer) {
            list.retain(|c| *c != id);
            if list.is_empty() {
                self.consumers_of.remove(&consumer.producer);
            }
        }
        Some(consumer)
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty() && self.consumers.is_empty()
    }
}

/// The bitrate of one stream (a producer's layer), measured over half-second windows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meter {
    window_start: Option<Instant>,
    bytes: u64,
    /// Bits per second, smoothed.
    pub rate: u64,
}

impl Meter {
    const WINDOW: Duration = Duration::from_millis(500);

    pub fn add(&mut self, at: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(at);
        self.bytes += bytes as u64;
        let elapsed = at.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let rate = self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.rate = if self.rate == 0 {
                rate
            } else {
                (self.rate + rate) / 2
            };
            self.window_start = Some(at);
            self.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_keeps_both_maps_in_step() {
        let mut router = Router::default();
        let producer = ProducerId(1);
        for i in 0..3 {
            router.add_consumer(
                ConsumerId(i),
                Consumer::new(PeerId(i), producer, MediaKind::Video, 2),
            );
        }
        assert_eq!(router.consumers_of[&producer].len(), 3);
        router.remove_consumer(ConsumerId(1));
        assert_eq!(
            router.consumers_of[&producer],
            vec![ConsumerId(0), ConsumerId(2)]
        );
        router.remove_consumer(ConsumerId(0));
        router.remove_consumer(ConsumerId(2));
        assert!(router.consumers_of.is_empty());
        assert!(router.is_empty());
    }
}
