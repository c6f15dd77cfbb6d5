//! A one-way link of the virtual network.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A one-way link: a rate cap with a drop-tail queue, a fixed delay and random loss. With its
/// defaults it delivers every datagram at once. Datagrams wait in it from `push` until `due`.
#[derive(Debug, Default)]
pub struct Link {
    pub rate_bps: Option<u64>,
    pub delay: Duration,
    pub loss_percent: u32,
    queue: VecDeque<(Instant, Vec<u8>)>,
    next_free: Option<Instant>,
    rng: u64,
}

impl Link {
    /// Most time a datagram may wait in the queue before being dropped.
    const MAX_QUEUE: Duration = Duration::from_millis(250);

    /// A link whose losses are drawn from `seed`.
    pub fn seeded(seed: u64) -> Link {
        Link {
            rng: seed,
            ..Link::default()
        }
    }

    pub(crate) fn push(&mut self, now: Instant, datagram: Vec<u8>) {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if ((self.rng >> 33) % 100) < u64::from(self.loss_percent) {
            return;
        }
        let mut release = now;
        if let Some(rate) = self.rate_bps {
            let start = self.next_free.unwrap_or(now).max(now);
            if start.saturating_duration_since(now) > Self::MAX_QUEUE {
                return;
            }
            let tx = Duration::from_nanos(datagram.len() as u64 * 8 * 1_000_000_000 / rate.max(1));
            self.next_free = Some(start + tx);
            release = start + tx;
        }
        self.queue.push_back((release + self.delay, datagram));
    }

    /// The datagrams that have arrived by `now`, oldest first.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, d)) = self.queue.pop_front() {
                out.push(d);
            }
        }
        out
    }
}
