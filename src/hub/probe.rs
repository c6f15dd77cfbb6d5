//! Connection checks: a page's short-lived peer connection, answered by a media worker and
//! never part of a meeting, so that a hall learns before the meeting whether media reaches the
//! hub over UDP, only over TCP, or not at all (the page reads the path ICE chose).
//!
//! A probe lives [`PROBE_LIFETIME`], then its peer is removed. At most [`MAX_PROBES`] live at
//! once, and [`MAX_PROBES_PER_ADDRESS`] from one address: the check is open to anyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use diemcau_sfu::{PeerId, RouterId};
use tokio::sync::oneshot;

use super::Hub;
use crate::media::Command;

/// How long a probe's peer connection is kept: ICE over TCP after UDP failed takes a few
/// seconds, and the page reads its statistics once connected.
pub const PROBE_LIFETIME: Duration = Duration::from_secs(20);
/// Probes alive at once, in all.
pub const MAX_PROBES: usize = 64;
/// Probes alive at once from one address (a hall checks once or twice; a few halls may share
/// one address behind NAT).
pub const MAX_PROBES_PER_ADDRESS: usize = 8;

/// Why a probe was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The page's offer is not one the hub can answer: the client's fault.
    #[error("invalid SDP: {0}")]
    InvalidOffer(String),
    /// Too many probes at once, from this address or in all: retry later.
    #[error("too many connection checks at once; try again in a minute")]
    Busy,
    /// The media worker is gone: the hub's fault.
    #[error("media worker stopped")]
    Internal,
}

/// Probes alive, by address.
#[derive(Debug, Default)]
pub(super) struct Probes {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Probes {
    fn admit(&mut self, ip: IpAddr) -> bool {
        let from = self.by_address.entry(ip).or_default();
        if self.total >= MAX_PROBES || *from >= MAX_PROBES_PER_ADDRESS {
            if *from == 0 {
                self.by_address.remove(&ip);
            }
            return false;
        }
        *from += 1;
        self.total += 1;
        true
    }

    fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_address.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_address.remove(&ip);
            }
        }
    }
}

impl Hub {
    /// Answers a connection check's offer from `ip` with the hub's answer (its UDP and TCP
    /// candidates); the peer is dropped after [`PROBE_LIFETIME`].
    pub async fn probe(self: &Arc<Self>, ip: IpAddr, offer: String) -> Result<String, ProbeError> {
        if !self.lock().probes.admit(ip) {
            return Err(ProbeError::Busy);
        }
        let peer = PeerId(self.ids.next());
        let router = RouterId(self.ids.next());
        let worker = self.media.pick_worker();
        let (reply, answer) = oneshot::channel();
        self.media.send(
            worker,
            Command::AddPeer {
                peer,
                router,
                offer,
                fixed: false,
                reply,
            },
        );
        let answer = match answer.await {
            Ok(Ok(sdp)) => sdp,
            // No peer was made: its place is free at once.
            refused => {
                self.lock().probes.release(ip);
                return Err(match refused {
                    Ok(Err(diemcau_sfu::SfuError::InvalidSdp(e))) => ProbeError::InvalidOffer(e),
                    Ok(Err(e)) => {
                        tracing::error!("connection check refused: {e}");
                        ProbeError::Internal
                    }
                    _ => ProbeError::Internal,
                });
            }
        };
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PROBE_LIFETIME).await;
            hub.media.send(worker, Command::RemovePeer { peer });
            hub.lock().probes.release(ip);
        });
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_capped_per_address_and_in_all() {
        let mut probes = Probes::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_PROBES_PER_ADDRESS {
            assert!(probes.admit(a));
        }
        assert!(!probes.admit(a), "per address");
        probes.release(a);
        assert!(probes.admit(a), "a probe ended frees its place");
        for i in 0..MAX_PROBES {
            probes.admit(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]));
        }
        assert_eq!(probes.total, MAX_PROBES);
        assert!(!probes.admit("10.9.9.9".parse().unwrap()), "in all");
    }
}
