//! One meeting's routing maps on one worker: which consumers take which producer's packets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, SeqNo};

use crate::allocate::LayerState;
use crate::ids::{ConsumerId, IdMap, PeerId, ProducerId, RouterId};
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
    pub producers: IdMap<ProducerId, LocalProducer>,
    pub consumers: IdMap<ConsumerId, Consumer>,
    pub consumers_of: IdMap<ProducerId, Vec<ConsumerId>>,
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
    packets: u64,
    /// Payload bits per second, smoothed.
    pub rate: u64,
    /// Packets per second, smoothed like `rate`.
    packet_rate: u64,
    /// When the last packet came.
    last_at: Option<Instant>,
    /// When the stream last sent again after falling silent.
    resumed_at: Option<Instant>,
    /// A window has been measured since the stream last fell silent.
    measured: bool,
}

/// What a stream sends now, as [`Meter::sending`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// Nothing for [`Meter::SILENT_AFTER`], or nothing ever: a producer the chair muted, or
    /// one that has not started.
    Nothing,
    /// It sends again, and its first window is not measured yet.
    Unmeasured,
    /// Bits per second on the wire: payload, and per packet [`Meter::PACKET_OVERHEAD_BYTES`].
    Bps(u64),
}

impl Meter {
    const WINDOW: Duration = Duration::from_millis(500);
    /// Silent after this long without a packet (Opus DTX sends one every 400 ms at most).
    pub const SILENT_AFTER: Duration = Duration::from_secs(1);
    /// What a packet takes on the wire beside its payload: the RTP header with a few header
    /// extensions (about 24 bytes), the SRTP tag (16 with AES-GCM), UDP (8) and IPv4 (20).
    pub const PACKET_OVERHEAD_BYTES: u64 = 68;

    pub fn add(&mut self, at: Instant, bytes: usize) {
        if self
            .last_at
            .is_some_and(|last| at.saturating_duration_since(last) > Self::SILENT_AFTER)
        {
            // Back from silence: what was measured before is not what it sends now. The
            // windows go on as they were (a sparse stream, a still screen one frame a second,
            // is measured across its gaps).
            self.resumed_at = Some(at);
            self.measured = false;
        }
        self.last_at = Some(at);
        let start = *self.window_start.get_or_insert(at);
        self.bytes += bytes as u64;
        self.packets += 1;
        let elapsed = at.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let ms = elapsed.as_millis().max(1) as u64;
            let rate = self.bytes * 8 * 1000 / ms;
            let packet_rate = self.packets * 1000 / ms;
            let smooth = |old: u64, new: u64| if old == 0 { new } else { (old + new) / 2 };
            self.rate = smooth(self.rate, rate);
            self.packet_rate = smooth(self.packet_rate, packet_rate);
            // A window that began before the stream fell silent spans the silence.
            if self.resumed_at.is_none_or(|resumed| start >= resumed) {
                self.measured = true;
            }
            self.window_start = Some(at);
            self.bytes = 0;
            self.packets = 0;
        }
    }

    /// What the stream sends as of `now`.
    pub fn sending(&self, now: Instant) -> Sending {
        match self.last_at {
            Some(last) if now.saturating_duration_since(last) <= Self::SILENT_AFTER => {
                if self.measured {
                    Sending::Bps(self.rate + self.packet_rate * Self::PACKET_OVERHEAD_BYTES * 8)
                } else {
                    Sending::Unmeasured
                }
            }
            _ => Sending::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_tells_silence_and_the_wire_rate() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut meter = Meter::default();
        assert_eq!(meter.sending(start), Sending::Nothing, "nothing ever sent");
        // Opus: 120 bytes every 20 ms.
        for i in 0..25 {
            meter.add(at(i * 20), 120);
        }
        assert_eq!(
            meter.sending(at(490)),
            Sending::Unmeasured,
            "the first window is open"
        );
        for i in 25..=50 {
            meter.add(at(i * 20), 120);
        }
        // 48 kbit/s of payload, 50 packets a second of 68 bytes of headers.
        let Sending::Bps(bps) = meter.sending(at(1000)) else {
            panic!("measured: {:?}", meter.sending(at(1000)));
        };
        assert!((73_000..=78_000).contains(&bps), "{bps}");
        // Muted: silent a second after the last packet.
        assert!(matches!(meter.sending(at(1900)), Sending::Bps(_)));
        assert_eq!(meter.sending(at(2100)), Sending::Nothing);
        // Speaking again: not measured until a window that began after the silence ends (the
        // one that spans the silence reads too low).
        meter.add(at(5000), 120);
        assert_eq!(meter.sending(at(5000)), Sending::Unmeasured);
        for i in 1..25 {
            meter.add(at(5000 + i * 20), 120);
        }
        assert_eq!(meter.sending(at(5480)), Sending::Unmeasured);
        meter.add(at(5500), 120);
        assert!(matches!(meter.sending(at(5500)), Sending::Bps(b) if b > 50_000));
    }

    #[test]
    fn a_sparse_stream_is_measured_across_its_gaps() {
        // A still screen: a frame of five 1,000-byte packets every 1.5 s.
        let start = Instant::now();
        let mut meter = Meter::default();
        for frame in 0..6 {
            for i in 0..5 {
                meter.add(start + Duration::from_millis(frame * 1500 + i), 1000);
            }
        }
        // 40,000 bits every 1.5 s: about 27 kbit/s.
        assert!((15_000..=40_000).contains(&meter.rate), "{}", meter.rate);
    }

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
