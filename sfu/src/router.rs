//! One meeting's routing maps on one worker: which consumers take which producer's packets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, SeqNo};

use crate::ids::{ConsumerId, PeerId, ProducerId, RouterId};

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
    pub payload: Arc<[u8]>,
    /// When the hub received the packet.
    pub received_at: Instant,
}

/// A producer whose publisher is connected to this worker.
#[derive(Debug)]
pub(crate) struct LocalProducer {
    pub peer: PeerId,
    pub mid: Mid,
    pub keyframes: KeyframeThrottle,
    /// Muted by the chair: its packets are dropped here, before any forwarding.
    pub paused: bool,
}

/// An outgoing track to one peer. States: negotiating (the m-line is offered, no answer yet)
/// → open (packets flow) → removed.
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
/// rollover counter it never saw). Gaps in the publisher's stream stay gaps, so the receiver
/// still asks for them by NACK.
#[derive(Debug, Default)]
pub(crate) struct SequenceRewriter {
    base: Option<u64>,
}

impl SequenceRewriter {
    /// Starts every outgoing stream at 1000, leaving room for reordered packets.
    const FIRST: u64 = 1000;

    /// The outgoing sequence number for `seq`, or `None` for a packet older than the first
    /// one forwarded (a late retransmission the receiver never knew).
    pub fn rewrite(&mut self, seq: SeqNo) -> Option<SeqNo> {
        let seq = *seq;
        let base = *self.base.get_or_insert(seq.saturating_sub(Self::FIRST));
        let out = seq.checked_sub(base)?;
        (out > 0).then(|| out.into())
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
    fn rewriter_starts_low_and_keeps_gaps() {
        let mut r = SequenceRewriter::default();
        let big = 5 * 65_536 + 100;
        assert_eq!(r.rewrite(big.into()).map(|s| *s), Some(1000));
        assert_eq!(r.rewrite((big + 1).into()).map(|s| *s), Some(1001));
        assert_eq!(r.rewrite((big + 5).into()).map(|s| *s), Some(1005));
        assert_eq!(r.rewrite((big - 3).into()).map(|s| *s), Some(997));
        assert_eq!(r.rewrite((big - 2000).into()), None);
    }

    #[test]
    fn router_keeps_both_maps_in_step() {
        let mut router = Router::default();
        let producer = ProducerId(1);
        for i in 0..3 {
            router.add_consumer(
                ConsumerId(i),
                Consumer {
                    peer: PeerId(i),
                    producer,
                    kind: MediaKind::Video,
                    mid: None,
                    open: false,
                    sequence: SequenceRewriter::default(),
                    payload_types: Vec::new(),
                },
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
