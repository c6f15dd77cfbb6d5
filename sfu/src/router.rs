//! One meeting's routing maps on one worker: which consumers take which producer's packets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, SeqNo};

use crate::ids::{ConsumerId, PeerId, ProducerId, RouterId};
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
/// (`current`), the one its peer's bandwidth asks for (`target`, switched to on that layer's
/// next keyframe), or none at all (audio only).
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
    pub target: Option<u8>,
    pub current: Option<u8>,
    pub timestamps: TimestampRewriter,
    pub pictures: PictureRewriter,
    /// Since when the bandwidth has been too low for the target, or high enough for more.
    pub over_since: Option<Instant>,
    pub under_since: Option<Instant>,
    /// When the consumer opened: no fall to audio only while the estimate is still young.
    pub opened_at: Option<Instant>,
}

impl Consumer {
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
            target: Some(0),
            current: None,
            timestamps: TimestampRewriter::default(),
            pictures: PictureRewriter::default(),
            over_since: None,
            under_since: None,
            opened_at: None,
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

/// Merges and throttles keyframe requests toward one producer: at most one request per
/// interval reaches the publisher's encoder, and requests inside the interval are merged into
/// one sent when it ends.
#[derive(Debug, Default)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    deferred: bool,
}

/// What to do with a keyframe request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyframeDecision {
    SendNow,
    /// Send at this instant (merged with any other request until then).
    SendAt(Instant),
    /// Already scheduled; nothing more to do.
    Merged,
}

impl KeyframeThrottle {
    pub fn request(&mut self, now: Instant, interval: Duration) -> KeyframeDecision {
        match self.last_sent {
            Some(last) if now < last + interval => {
                if self.deferred {
                    KeyframeDecision::Merged
                } else {
                    self.deferred = true;
                    KeyframeDecision::SendAt(last + interval)
                }
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred = false;
                KeyframeDecision::SendNow
            }
        }
    }

    /// The deferred request is due: whether to send it now.
    pub fn fire_deferred(&mut self, now: Instant) -> bool {
        if !self.deferred {
            return false;
        }
        self.deferred = false;
        self.last_sent = Some(now);
        true
    }
}

/// Gives one consumer a contiguous sequence-number space that starts near zero, whatever the
/// publisher's extended sequence number was when the consumer joined (a receiver cannot guess a
/// rollover counter it never saw), and that goes on without a jump when the consumer switches
/// to another simulcast layer. Gaps in the publisher's stream stay gaps, so the receiver still
/// asks for them by NACK.
#[derive(Debug, Default)]
pub(crate) struct SequenceRewriter {
    offset: Option<i64>,
    last_out: i64,
}

impl SequenceRewriter {
    /// Starts every outgoing stream at 1000, leaving room for reordered packets.
    const FIRST: i64 = 1000;

    /// The outgoing sequence number for `seq`, or `None` for a packet older than the first
    /// one forwarded since the last switch (a late retransmission the receiver never knew).
    pub fn rewrite(&mut self, seq: SeqNo) -> Option<SeqNo> {
        let seq = i64::try_from(*seq).ok()?;
        let next = if self.last_out == 0 {
            Self::FIRST
        } else {
            self.last_out + 1
        };
        let offset = *self.offset.get_or_insert(next.checked_sub(seq)?);
        let out = seq.checked_add(offset)?;
        if out <= 0 || (self.last_out > 0 && out <= self.last_out - 1000) {
            return None;
        }
        self.last_out = self.last_out.max(out);
        Some((out as u64).into())
    }

    /// The next packet continues right after the last one sent (a layer switch).
    pub fn rebase(&mut self) {
        self.offset = None;
    }
}

/// Keeps RTP timestamps continuous across a layer switch: the new layer's clock is shifted so
/// that its first packet lands where the old layer would have been by then.
#[derive(Debug, Default)]
pub(crate) struct TimestampRewriter {
    offset: u32,
    last: Option<(u32, Instant)>,
    rebase: bool,
}

impl TimestampRewriter {
    /// `clock_per_ms`: 90 for video.
    pub fn rewrite(&mut self, timestamp: u32, at: Instant, clock_per_ms: u32) -> u32 {
        if self.rebase {
            self.rebase = false;
            if let Some((last, last_at)) = self.last {
                let elapsed = at.saturating_duration_since(last_at).as_millis() as u32;
                let expected = last.wrapping_add(elapsed.max(1).wrapping_mul(clock_per_ms));
                self.offset = expected.wrapping_sub(timestamp);
            }
        }
        let out = timestamp.wrapping_add(self.offset);
        self.last = Some((out, at));
        out
    }

    pub fn rebase(&mut self) {
        self.rebase = true;
    }
}

/// Keeps VP8 PictureID and TL0PICIDX continuous across a layer switch.
#[derive(Debug, Default)]
pub(crate) struct PictureRewriter {
    picture_offset: u16,
    tl0_offset: u8,
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    rebase: bool,
}

impl PictureRewriter {
    /// The rewritten (picture id, tl0picidx) for a packet, `None` where unchanged.
    pub fn rewrite(&mut self, info: &Vp8Info) -> (Option<u16>, Option<u8>) {
        if self.rebase {
            self.rebase = false;
            if let (Some((pid, _)), Some(last)) = (info.picture_id, self.last_picture) {
                self.picture_offset = last.wrapping_add(1).wrapping_sub(pid);
            }
            if let (Some(tl0), Some(last)) = (info.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
        }
        let picture = info.picture_id.map(|(pid, long)| {
            let mask = if long { 0x7fff } else { 0x7f };
            pid.wrapping_add(self.picture_offset) & mask
        });
        let tl0 = info.tl0_pic_idx.map(|t| t.wrapping_add(self.tl0_offset));
        if picture.is_some() {
            self.last_picture = picture;
        }
        if tl0.is_some() {
            self.last_tl0 = tl0;
        }
        let changed = self.picture_offset != 0 || self.tl0_offset != 0;
        if changed {
            (picture, tl0)
        } else {
            (None, None)
        }
    }

    pub fn rebase(&mut self) {
        self.rebase = true;
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
    fn throttle_merges_requests_inside_interval() {
        let start = Instant::now();
        let interval = Duration::from_millis(500);
        let mut t = KeyframeThrottle::default();
        assert_eq!(t.request(start, interval), KeyframeDecision::SendNow);
        let at = start + interval;
        assert_eq!(
            t.request(start + Duration::from_millis(10), interval),
            KeyframeDecision::SendAt(at)
        );
        assert_eq!(
            t.request(start + Duration::from_millis(20), interval),
            KeyframeDecision::Merged
        );
        assert!(t.fire_deferred(at));
        assert!(!t.fire_deferred(at));
        assert_eq!(
            t.request(at + interval, interval),
            KeyframeDecision::SendNow
        );
    }

    #[test]
    fn rewriter_starts_low_keeps_gaps_and_continues_across_a_switch() {
        let mut r = SequenceRewriter::default();
        let big: u64 = 5 * 65_536 + 100;
        assert_eq!(r.rewrite(big.into()).map(|s| *s), Some(1000));
        assert_eq!(r.rewrite((big + 1).into()).map(|s| *s), Some(1001));
        assert_eq!(r.rewrite((big + 5).into()).map(|s| *s), Some(1005));
        assert_eq!(r.rewrite((big - 3).into()).map(|s| *s), Some(997));
        assert_eq!(r.rewrite((big - 2000).into()), None);
        // Another layer, with its own numbering, continues at 1006.
        r.rebase();
        assert_eq!(r.rewrite(17.into()).map(|s| *s), Some(1006));
        assert_eq!(r.rewrite(18.into()).map(|s| *s), Some(1007));
        // A number near the top of the range is dropped, not an overflow.
        assert_eq!(r.rewrite((i64::MAX as u64).into()), None);
        assert_eq!(r.rewrite(u64::MAX.into()), None);
    }

    #[test]
    fn timestamps_and_pictures_continue_across_a_switch() {
        let t0 = Instant::now();
        let mut ts = TimestampRewriter::default();
        assert_eq!(ts.rewrite(1_000, t0, 90), 1_000);
        ts.rebase();
        let later = t0 + Duration::from_millis(33);
        assert_eq!(ts.rewrite(555_555, later, 90), 1_000 + 33 * 90);
        assert_eq!(
            ts.rewrite(555_555 + 2_970, later + Duration::from_millis(33), 90),
            1_000 + 66 * 90
        );

        let mut p = PictureRewriter::default();
        let info = |pid, tl0| Vp8Info {
            keyframe_start: true,
            picture_id: Some((pid, true)),
            tl0_pic_idx: Some(tl0),
        };
        assert_eq!(
            p.rewrite(&info(100, 5)),
            (None, None),
            "nothing to patch before a switch"
        );
        p.rebase();
        assert_eq!(p.rewrite(&info(9_000, 200)), (Some(101), Some(6)));
        assert_eq!(p.rewrite(&info(9_001, 201)), (Some(102), Some(7)));
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
