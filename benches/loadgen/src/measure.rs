//! What a receiver measures per stream (loss, reordering, jitter) and a delay histogram.
//!
//! Only packets *sent* inside the measurement window count: the sender counts what it wrote in
//! the window, receivers count what arrived of it, so the two sides compare exactly however
//! long a packet was in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::media::Stamp;

/// The measurement window, in nanoseconds of the run's clock; shared by every thread.
#[derive(Debug)]
pub struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    pub fn new() -> Arc<Window> {
        Arc::new(Window {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        })
    }

    /// Sets the window to `[start_ns, end_ns)`. Set both before `start_ns` comes: a sender
    /// decides whether a packet is in the window when it writes it, its receivers when it
    /// arrives, and the two decisions agree only if the bounds do not change in between. (A
    /// bound stored some time after the instant it names counted the packets written in
    /// between as sent in the window and, arriving after the store, as outside it: a few lost
    /// packets a run where nothing was lost.)
    pub fn set(&self, start_ns: u64, end_ns: u64) {
        self.start.store(start_ns, Ordering::SeqCst);
        self.end.store(end_ns, Ordering::SeqCst);
    }

    pub fn contains(&self, ns: u64) -> bool {
        let start = self.start.load(Ordering::Relaxed);
        ns >= start && ns < self.end.load(Ordering::Relaxed)
    }
}

/// Packets of one stream as one receiver saw them.
#[derive(Debug, Clone, Default)]
pub struct StreamReception {
    /// Distinct packets sent in the window that arrived.
    pub received: u64,
    /// Packets that arrived twice (a retransmission of one that had arrived).
    pub duplicates: u64,
    /// Packets that arrived after a later one of the same stream: reordered, or repaired by a
    /// retransmission after a loss.
    pub late: u64,
    /// Packets too far behind the first one seen to be tracked (not counted as received).
    pub too_old: u64,
    /// Any packet of the stream, in the window or not.
    pub received_total: u64,
    /// RTP payload bytes of the distinct packets counted in `received`.
    pub received_bytes: u64,
    /// RFC 3550 interarrival jitter, in nanoseconds, from the one-way transit times.
    pub jitter_ns: f64,
    last_transit_ns: Option<i64>,
    highest: Option<u32>,
    seen: SeenSet,
}

impl StreamReception {
    /// Records a packet arriving at `arrival_ns`; `in_window` says whether it was sent in the
    /// window. Returns whether it counted: sent in the window and its first arrival.
    pub fn record(
        &mut self,
        stamp: &Stamp,
        payload_bytes: usize,
        arrival_ns: u64,
        in_window: bool,
    ) -> bool {
        self.received_total += 1;
        let transit = arrival_ns as i64 - stamp.sent_ns as i64;
        let late = self.highest.is_some_and(|h| stamp.index < h);
        if !late {
            self.highest = Some(stamp.index);
        }
        if !in_window {
            return false;
        }
        match self.seen.insert(stamp.index) {
            Insert::New => {}
            Insert::Duplicate => {
                self.duplicates += 1;
                return false;
            }
            Insert::TooOld => {
                self.too_old += 1;
                return false;
            }
        }
        self.received += 1;
        self.received_bytes += payload_bytes as u64;
        if late {
            self.late += 1;
        }
        if let Some(previous) = self.last_transit_ns {
            let d = (transit - previous).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit);
        true
    }
}

/// The RTP sequence numbers of one publisher's stream as one receiver got them, first
/// arrivals of packets sent in the window. The hub numbers what it forwards to each consumer
/// without gaps of its own, across simulcast layer switches and pictures it stopped and
/// started again (`sfu/src/rewrite.rs`): holes in the span are packets lost on the way, and
/// pictures the hub chose not to forward leave none.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardedSpan {
    /// Lowest and highest sequence number seen.
    range: Option<(u64, u64)>,
    /// Distinct packets seen.
    pub received: u64,
}

impl ForwardedSpan {
    /// Records the first arrival of a packet sent in the window, numbered `seq` (extended).
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        self.range = Some(match self.range {
            None => (seq, seq),
            Some((low, high)) => (low.min(seq), high.max(seq)),
        });
    }

    /// Packets the span says the hub forwarded.
    pub fn expected(&self) -> u64 {
        self.range.map_or(0, |(low, high)| high - low + 1)
    }
}

/// What a receiver can expect of a simulcast stream it receives one layer at a time: the hub
/// forwards whichever layer it chose and switches on keyframes, so the packets expected are
/// those between the first and the last arrival of each run on one layer. Holes inside a run
/// are loss; packets of layers the hub was not forwarding are not. Only packets sent in the
/// window count. States: no run → on a layer (a packet of another layer starts a new run).
#[derive(Debug, Clone, Default)]
pub struct LayerRuns {
    /// Packets expected so far: the span of every run.
    pub expected: u64,
    /// Runs started (the first layer, then one per switch).
    pub runs: u64,
    /// The layer of the current run, and the highest packet index seen in it.
    current: Option<(u8, u32)>,
    /// The layer and arrival (run clock, ns) of the last packet sent in the window.
    pub last: Option<(u8, u64)>,
}

impl LayerRuns {
    /// Records an arrival of a packet sent in the window.
    pub fn record(&mut self, stamp: &Stamp, arrival_ns: u64) {
        match self.current {
            Some((layer, high)) if layer == stamp.layer => {
                if stamp.index > high {
                    self.expected += u64::from(stamp.index - high);
                    self.current = Some((layer, stamp.index));
                }
            }
            _ => {
                self.runs += 1;
                self.expected += 1;
                self.current = Some((stamp.layer, stamp.index));
            }
        }
        self.last = Some((stamp.layer, arrival_ns));
    }
}

/// Which packet indices arrived, as a bitmap starting a margin before the first one seen.
#[derive(Debug, Clone, Default)]
struct SeenSet {
    base: Option<u32>,
    bits: Vec<u64>,
}

enum Insert {
    New,
    Duplicate,
    TooOld,
}

impl SeenSet {
    /// How far before the first seen index a repaired packet is still tracked.
    const MARGIN: u32 = 4096;

    fn insert(&mut self, index: u32) -> Insert {
        let base = *self.base.get_or_insert(index.saturating_sub(Self::MARGIN));
        let Some(offset) = index.checked_sub(base) else {
            return Insert::TooOld;
        };
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let Some(w) = self.bits.get_mut(word) else {
            return Insert::TooOld;
        };
        if *w & (1 << bit) != 0 {
            return Insert::Duplicate;
        }
        *w |= 1 << bit;
        Insert::New
    }
}

/// Log-linear histogram of microseconds: exact below 1 ms, then 64 steps per power of two
/// (under 1.6 % error). Mergeable across threads.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; Self::bucket(u64::MAX) + 1],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Histogram {
    const LINEAR: u64 = 1024;
    const STEPS_LOG2: u32 = 6;

    fn bucket(us: u64) -> usize {
        if us < Self::LINEAR {
            return us as usize;
        }
        let exponent = 63 - us.leading_zeros(); // >= 10
        let step = (us >> (exponent - Self::STEPS_LOG2)) & ((1 << Self::STEPS_LOG2) - 1);
        (Self::LINEAR + u64::from(exponent - 10) * (1 << Self::STEPS_LOG2) + step) as usize
    }

    /// The lowest value of a bucket.
    fn value(bucket: usize) -> u64 {
        let bucket = bucket as u64;
        if bucket < Self::LINEAR {
            return bucket;
        }
        let rest = bucket - Self::LINEAR;
        let exponent = 10 + (rest >> Self::STEPS_LOG2);
        let step = rest & ((1 << Self::STEPS_LOG2) - 1);
        (1 << exponent) + (step << (exponent - u64::from(Self::STEPS_LOG2)))
    }

    pub fn record(&mut self, us: u64) {
        if let Some(c) = self.counts.get_mut(Self::bucket(us)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(us);
        self.sum += u128::from(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::value(bucket).min(self.max);
            }
        }
        self.max
    }

    pub fn percentiles(&self) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            samples: self.total,
            p50_ms: ms(self.quantile(0.5)),
            p90_ms: ms(self.quantile(0.9)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
            mean_ms: if self.total == 0 {
                0.0
            } else {
                self.sum as f64 / self.total as f64 / 1000.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(index: u32, sent_ns: u64) -> Stamp {
        Stamp {
            sent_ns,
            publisher: 0,
            index,
            layer: 0,
        }
    }

    #[test]
    fn a_window_set_ahead_holds_what_is_sent_within_its_bounds() {
        let window = Window::new();
        assert!(!window.contains(0), "nothing is in a window not yet set");
        window.set(1_000, 2_000);
        assert!(!window.contains(999));
        assert!(window.contains(1_000));
        assert!(window.contains(1_999));
        assert!(!window.contains(2_000));
    }

    #[test]
    fn counts_loss_duplicates_and_late_packets() {
        let mut s = StreamReception::default();
        for i in [10, 11, 13, 14, 12, 14] {
            s.record(&stamp(i, 0), 100, 1_000, true);
        }
        assert_eq!(s.received, 5);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.late, 1, "12 came after 14");
        assert!(
            !s.record(&stamp(99, 0), 100, 1_000, false),
            "outside the window"
        );
        assert_eq!(s.received, 5);
        assert_eq!(s.received_total, 7);
        assert_eq!(s.received_bytes, 500);
    }

    #[test]
    fn a_forwarded_span_counts_holes_not_pauses() {
        let mut span = ForwardedSpan::default();
        assert_eq!(span.expected(), 0);
        // The hub numbers on without a gap after a pause: 103 follows 102 whatever the
        // publisher sent meanwhile. 105 is lost, 104 comes late.
        for seq in [100, 101, 102, 103, 106, 104, 107] {
            span.record(seq);
        }
        assert_eq!((span.expected(), span.received), (8, 7));
    }

    #[test]
    fn jitter_of_a_steady_stream_is_zero() {
        let mut s = StreamReception::default();
        for i in 0..100u32 {
            let sent = u64::from(i) * 20_000_000;
            s.record(&stamp(i, sent), 100, sent + 5_000_000, true);
        }
        assert!(s.jitter_ns < 1.0);
    }

    #[test]
    fn layer_runs_count_holes_not_switches() {
        let on = |layer: u8, index: u32| Stamp {
            sent_ns: 0,
            publisher: 0,
            index,
            layer,
        };
        let mut runs = LayerRuns::default();
        // Layer 2 from 100 with 103 lost, then a switch to layer 0 at its index 5000.
        for (layer, index) in [(2, 100), (2, 101), (2, 102), (2, 104), (0, 5000), (0, 5001)] {
            runs.record(&on(layer, index), 7);
        }
        assert_eq!(runs.expected, 5 + 2, "the hole counts, the switch does not");
        assert_eq!(runs.runs, 2);
        // A late repair inside the run adds nothing; back to layer 2 starts a new run.
        runs.record(&on(0, 5001), 8);
        runs.record(&on(2, 900), 9);
        assert_eq!(runs.expected, 8);
        assert_eq!(runs.last, Some((2, 9)));
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        let p = h.percentiles();
        assert_eq!(p.samples, 10_000);
        assert!((p.p50_ms - 5.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.2, "{p:?}");
        assert_eq!(p.max_ms, 10.0);
        let mut other = Histogram::default();
        other.record(50_000);
        h.merge(&other);
        assert_eq!(h.percentiles().max_ms, 50.0);
        for us in [0, 1, 1023, 1024, 5000, 1 << 20, u64::MAX / 2] {
            let b = Histogram::bucket(us);
            assert!(Histogram::value(b) <= us);
            assert!(Histogram::bucket(Histogram::value(b)) == b);
        }
    }
}
