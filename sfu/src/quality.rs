//! A peer's link quality as the hub reports it, computed from str0m's periodic statistics.

use std::time::Instant;

use str0m::net::Protocol;
use str0m::stats::PeerStats;

/// A peer's link quality over the last interval, seen from the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quality {
    /// What the hub received from the peer.
    pub bitrate_in_kbps: u32,
    /// What the hub sent to the peer.
    pub bitrate_out_kbps: u32,
    /// Packet loss in tenths of a percent: the worse of the two directions.
    pub loss_permille: u32,
    pub rtt_ms: u32,
    /// What the peer's media travels over (its selected ICE candidate pair); `None` before
    /// ICE has chosen one.
    pub transport: Option<Transport>,
}

/// The transport of a peer's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// ICE over TCP (RFC 6544), each packet framed by its length (RFC 4571): for halls whose
    /// network passes only TCP.
    Tcp,
}

impl Transport {
    /// The name on the wire and in reports: `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    pub(crate) fn of(protocol: Protocol) -> Transport {
        match protocol {
            Protocol::Udp => Transport::Udp,
            Protocol::Tcp | Protocol::SslTcp | Protocol::Tls => Transport::Tcp,
        }
    }
}

/// Turns str0m's cumulative statistics into per-interval [`Quality`]. States: waiting for a
/// first report → reporting (each report against the previous one).
#[derive(Debug, Default)]
pub(crate) struct QualityMeter {
    /// Byte counters at the last statistics report, to turn the next into bitrates.
    last: Option<(u64, u64, Instant)>,
}

impl QualityMeter {
    /// Link quality since the previous statistics report (`None` for the first one).
    pub fn update(&mut self, stats: &PeerStats) -> Option<Quality> {
        let previous =
            self.last
                .replace((stats.peer_bytes_rx, stats.peer_bytes_tx, stats.timestamp));
        let (rx, tx, at) = previous?;
        let seconds = stats.timestamp.saturating_duration_since(at).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let kbps = |now: u64, before: u64| {
            (now.saturating_sub(before) as f64 * 8.0 / seconds / 1000.0).round() as u32
        };
        let loss = stats
            .ingress_loss_fraction
            .unwrap_or(0.0)
            .max(stats.egress_loss_fraction.unwrap_or(0.0))
            .clamp(0.0, 1.0);
        Some(Quality {
            bitrate_in_kbps: kbps(stats.peer_bytes_rx, rx),
            bitrate_out_kbps: kbps(stats.peer_bytes_tx, tx),
            loss_permille: (loss * 1000.0).round() as u32,
            rtt_ms: stats.rtt.map_or(0, |d| d.as_millis() as u32),
            transport: stats
                .selected_candidate_pair
                .as_ref()
                .map(|pair| Transport::of(pair.protocol)),
        })
    }
}
