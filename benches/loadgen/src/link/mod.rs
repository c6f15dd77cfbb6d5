//! Emulated links between the hub and a simulated site: a rate limit (token bucket with a
//! bounded queue, tail drop), one-way delay with jitter, and random or bursty loss, applied in
//! the generator's own process before a datagram reaches the site's str0m (hub → site) and
//! before the site's datagrams leave for the hub (site → hub: its RTCP feedback, STUN, DTLS).
//!
//! [`Link`] is sans-IO: the caller passes the time in and asks when the next datagram is due,
//! as with str0m's `Rtc`. Sites are grouped in [`LinkClass`]es given on the command line
//! (`--link`), each a share of the sites; [`assign`] spreads the classes over the join order.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use diemcau_loadgen::link::{Admission, Link, LinkClass};
//!
//! let class: LinkClass = "weak=10%,rate=300kbit,delay=80ms,loss=2%".parse().unwrap();
//! let mut link = Link::new(&class.down, 7);
//! let now = Instant::now();
//! if link.send(now, 1200, "datagram") == Admission::Queued {
//!     let due = link.next_delivery().unwrap();
//!     assert!(due >= now + Duration::from_millis(80));
//!     assert_eq!(link.deliver(due), Some("datagram"));
//! }
//! ```
//!
//! Why not `str0m-netem`: its buffer limit counts packets still in their propagation delay as
//! queued (a 20 ms, 100 Mbit/s link would need a 250 kB "queue"), it keeps no drop counters,
//! and its jitter reorders packets, which a single bottleneck path does not.

mod class;
mod profile;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use class::{LinkClass, LinkParseError, assign};
pub use profile::{JITTER_PERIOD, LinkProfile};

use crate::media::Xorshift;

/// What happened to a datagram offered to a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It will come out of [`Link::deliver`].
    Queued,
    /// Lost on the way (random or burst loss).
    Lost,
    /// The rate limit's queue was full.
    QueueFull,
}

/// What a link did, in datagrams and bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkStats {
    pub offered: u64,
    pub offered_bytes: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
    pub lost: u64,
    pub queue_full: u64,
    /// Longest wait for the rate limit, in microseconds.
    pub max_queue_wait_us: u64,
}

impl LinkStats {
    pub fn add(&mut self, other: &LinkStats) {
        self.offered += other.offered;
        self.offered_bytes += other.offered_bytes;
        self.delivered += other.delivered;
        self.delivered_bytes += other.delivered_bytes;
        self.lost += other.lost;
        self.queue_full += other.queue_full;
        self.max_queue_wait_us = self.max_queue_wait_us.max(other.max_queue_wait_us);
    }
}

/// One direction of one site's link. States: idle (nothing in flight) ⇄ carrying (datagrams
/// wait for [`Link::deliver`]); it never closes.
#[derive(Debug)]
pub struct Link<T> {
    profile: LinkProfile,
    rng: Xorshift,
    /// Token bucket in bytes; negative when datagrams are waiting for the rate (their debt).
    tokens: f64,
    refilled_at: Option<Instant>,
    /// Gilbert–Elliott: in the bad (losing) state.
    in_burst: bool,
    /// The jitter drawn last and when it was drawn.
    jitter: Option<(Instant, Duration)>,
    in_flight: VecDeque<(Instant, usize, T)>,
    last_due: Option<Instant>,
    stats: LinkStats,
}

impl<T> Link<T> {
    pub fn new(profile: &LinkProfile, seed: u64) -> Link<T> {
        Link {
            profile: profile.clone(),
            rng: Xorshift::new(seed ^ 0x11AC),
            tokens: profile.burst_bytes as f64,
            refilled_at: None,
            in_burst: false,
            jitter: None,
            in_flight: VecDeque::new(),
            last_due: None,
            stats: LinkStats::default(),
        }
    }

    /// Offers a datagram of `size` bytes at `now`.
    pub fn send(&mut self, now: Instant, size: usize, packet: T) -> Admission {
        self.stats.offered += 1;
        self.stats.offered_bytes += size as u64;
        if self.lose() {
            self.stats.lost += 1;
            return Admission::Lost;
        }
        let mut leaves = now;
        if let Some(rate) = self.profile.rate_bps.filter(|r| *r > 0) {
            let bytes_per_s = rate as f64 / 8.0;
            if let Some(at) = self.refilled_at {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                self.tokens =
                    (self.tokens + elapsed * bytes_per_s).min(self.profile.burst_bytes as f64);
            }
            self.refilled_at = Some(now.max(self.refilled_at.unwrap_or(now)));
            let backlog = (-self.tokens).max(0.0);
            if backlog + size as f64 > self.profile.queue_bytes as f64 {
                self.stats.queue_full += 1;
                return Admission::QueueFull;
            }
            self.tokens -= size as f64;
            if self.tokens < 0.0 {
                let wait = Duration::from_secs_f64(-self.tokens / bytes_per_s);
                leaves = now + wait;
                self.stats.max_queue_wait_us =
                    self.stats.max_queue_wait_us.max(wait.as_micros() as u64);
            }
        }
        let mut due = leaves + self.delay(now);
        if let Some(last) = self.last_due {
            due = due.max(last);
        }
        self.last_due = Some(due);
        self.in_flight.push_back((due, size, packet));
        Admission::Queued
    }

    /// When the next datagram comes out, if any is on its way.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.front().map(|(due, _, _)| *due)
    }

    /// The next datagram due by `now`, if any; call until `None`.
    pub fn deliver(&mut self, now: Instant) -> Option<T> {
        if self
            .in_flight
            .front()
            .is_some_and(|(due, _, _)| *due <= now)
        {
            let (_, size, packet) = self.in_flight.pop_front()?;
            self.stats.delivered += 1;
            self.stats.delivered_bytes += size as u64;
            return Some(packet);
        }
        None
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    fn delay(&mut self, now: Instant) -> Duration {
        if self.profile.jitter.is_zero() {
            return self.profile.delay;
        }
        let extra = match self.jitter {
            Some((drawn, extra)) if now.saturating_duration_since(drawn) < JITTER_PERIOD => extra,
            _ => {
                let extra = self.profile.jitter.mul_f64(self.rng.unit());
                self.jitter = Some((now, extra));
                extra
            }
        };
        self.profile.delay + extra
    }

    /// Independent losses, or Gilbert–Elliott with every datagram lost in the bad state:
    /// bursts of mean length `burst`, entered so that the average loss is `loss`.
    fn lose(&mut self) -> bool {
        let loss = self.profile.loss;
        if loss <= 0.0 {
            return false;
        }
        let Some(burst) = self.profile.burst else {
            return self.rng.unit() < loss;
        };
        let leave = 1.0 / burst;
        // Stationary share of the bad state: enter / (enter + leave) = loss.
        let enter = (loss * leave / (1.0 - loss)).min(1.0);
        let switch = if self.in_burst { leave } else { enter };
        if self.rng.unit() < switch {
            self.in_burst = !self.in_burst;
        }
        self.in_burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> LinkClass {
        text.parse().expect("a valid --link")
    }

    #[test]
    fn rate_limit_spaces_datagrams() {
        // 1 Mbit/s: a 1250-byte datagram takes 10 ms.
        let c = class("x=1,rate=1mbit,queue=1s");
        let mut link = Link::new(&c.down, 1);
        let t0 = Instant::now();
        for i in 0..100u32 {
            assert_eq!(link.send(t0, 1250, i), Admission::Queued);
        }
        let mut delivered = Vec::new();
        let mut now = t0;
        while let Some(due) = link.next_delivery() {
            now = due;
            while let Some(i) = link.deliver(now) {
                delivered.push((i, now));
            }
        }
        assert_eq!(delivered.len(), 100);
        assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        // The first two pass on the bucket's burst; the other 98 take 10 ms each.
        let span = now - t0;
        assert!(
            span >= Duration::from_millis(975) && span <= Duration::from_millis(985),
            "{span:?}"
        );
        assert_eq!(link.stats().delivered_bytes, 125_000);
        // After a quiet second the bucket is full again, never fuller.
        let later = now + Duration::from_secs(1);
        link.send(later, 1250, 100);
        link.send(later, 1250, 101);
        link.send(later, 1250, 102);
        assert_eq!(link.deliver(later), Some(100));
        assert_eq!(link.deliver(later), Some(101));
        assert_eq!(link.deliver(later), None, "the third waits for the rate");
        assert_eq!(
            link.next_delivery(),
            Some(later + Duration::from_micros(10_000))
        );
    }

    #[test]
    fn a_full_queue_drops() {
        // 100 kbit/s with a 5,000-byte queue: of 20 datagrams at once, the burst (2,500 B)
        // and the queue (5,000 B) hold 6 of 1,250 bytes.
        let c = class("x=1,rate=100kbit,queue=5kb");
        assert_eq!(c.down.queue_bytes, 5000);
        let mut link = Link::new(&c.down, 1);
        let t0 = Instant::now();
        let admitted = (0..20)
            .filter(|i| link.send(t0, 1250, *i) == Admission::Queued)
            .count();
        assert_eq!(admitted, 6);
        assert_eq!(link.stats().queue_full, 14);
        assert_eq!(link.stats().max_queue_wait_us, 400_000);
        // Once the queue drained, datagrams pass again.
        let later = t0 + Duration::from_secs(1);
        while link.deliver(later).is_some() {}
        assert_eq!(link.send(later, 1250, 99), Admission::Queued);
    }

    #[test]
    fn delay_and_jitter_keep_order() {
        let c = class("x=1,delay=50ms,jitter=20ms");
        let mut link = Link::new(&c.down, 3);
        let t0 = Instant::now();
        let mut dues = Vec::new();
        for i in 0..1000u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            link.send(at, 100, i);
            dues.push(at);
        }
        let mut delays = Vec::new();
        let mut expected = 0;
        while let Some(now) = link.next_delivery() {
            while let Some(i) = link.deliver(now) {
                assert_eq!(i, expected, "never reordered");
                expected += 1;
                delays.push(now - dues[i as usize]);
            }
        }
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(50)));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(70)));
        let mean = delays.iter().sum::<Duration>() / 1000;
        assert!(
            mean >= Duration::from_millis(57) && mean <= Duration::from_millis(66),
            "{mean:?}"
        );
        let spread = delays.iter().max().copied().unwrap_or_default()
            - delays.iter().min().copied().unwrap_or_default();
        assert!(
            spread >= Duration::from_millis(15),
            "jitter shows: {spread:?}"
        );
        let plain = class("x=1,delay=40ms");
        let mut link = Link::new(&plain.down, 3);
        link.send(t0, 100, 0);
        assert_eq!(link.next_delivery(), Some(t0 + Duration::from_millis(40)));
        assert_eq!(link.deliver(t0 + Duration::from_millis(39)), None);
        assert_eq!(link.deliver(t0 + Duration::from_millis(40)), Some(0));
    }

    #[test]
    fn random_and_bursty_loss() {
        let t0 = Instant::now();
        let runs = |text: &str| {
            let c = class(text);
            let mut link = Link::new(&c.down, 9);
            let mut bursts = Vec::new();
            let mut run = 0;
            for i in 0..100_000u32 {
                if link.send(t0, 100, i) == Admission::Lost {
                    run += 1;
                } else if run > 0 {
                    bursts.push(run);
                    run = 0;
                }
                while link.deliver(t0).is_some() {}
            }
            let lost = link.stats().lost as f64 / 1000.0;
            let mean_burst = bursts.iter().sum::<u32>() as f64 / bursts.len().max(1) as f64;
            (lost, mean_burst)
        };
        let (loss, burst) = runs("x=1,loss=2%");
        assert!((1.8..2.2).contains(&loss), "{loss} %");
        assert!(burst < 1.1, "independent losses: bursts of {burst}");
        let (loss, burst) = runs("x=1,loss=2%,burst=4");
        assert!((1.6..2.4).contains(&loss), "{loss} %");
        assert!((3.5..4.5).contains(&burst), "bursts of {burst}");
        let (loss, _) = runs("x=1");
        assert_eq!(loss, 0.0);
    }
}
