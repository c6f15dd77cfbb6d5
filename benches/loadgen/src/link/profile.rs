//! One direction of an emulated link: its rate, queue, delay, jitter and loss.

use std::time::Duration;

use serde::Serialize;

/// How long a drawn jitter holds.
pub const JITTER_PERIOD: Duration = Duration::from_millis(20);

/// One direction of a link: what happens to every datagram that crosses it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkProfile {
    /// Bits per second the link carries; `None`: no limit.
    pub rate_bps: Option<u64>,
    /// Most bytes waiting for the rate limit; a datagram that does not fit is dropped.
    /// (Meaningless without a rate.)
    pub queue_bytes: usize,
    /// Bytes the token bucket lets through back to back at full speed.
    pub burst_bytes: usize,
    /// One-way propagation delay.
    #[serde(rename = "delay_ms", serialize_with = "milliseconds")]
    pub delay: Duration,
    /// Extra delay, uniform in 0..jitter, drawn anew every [`JITTER_PERIOD`] of sending time
    /// (a path's queues change slowly, not per datagram); datagrams never overtake each other.
    #[serde(rename = "jitter_ms", serialize_with = "milliseconds")]
    pub jitter: Duration,
    /// Share of datagrams lost, 0..1 (on average, with `burst`).
    pub loss: f64,
    /// Mean length of a loss burst in datagrams (Gilbert–Elliott); `None`: independent losses.
    pub burst: Option<f64>,
}

impl LinkProfile {
    /// A link that changes nothing.
    pub fn transparent() -> LinkProfile {
        LinkProfile {
            rate_bps: None,
            queue_bytes: 0,
            burst_bytes: 0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
        }
    }

    pub fn is_transparent(&self) -> bool {
        self.rate_bps.is_none() && self.delay.is_zero() && self.jitter.is_zero() && self.loss <= 0.0
    }
}

/// Serializes a duration as milliseconds (JSON reports).
fn milliseconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}
