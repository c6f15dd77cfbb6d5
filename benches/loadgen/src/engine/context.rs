//! What an engine thread keeps apart from its peers, so that a peer can be driven while it is
//! updated: the wake-up heap, the run's clock and window, and the thread's report; and the
//! emulated link a peer's datagrams wait in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use str0m::config::DtlsCert;

use super::reports::{Progress, ThreadReport};
use crate::link::{Admission, Link, LinkProfile};
use crate::measure::Window;
use crate::media::Clock;

/// A thread's state apart from its peers, so a peer can be driven while it is updated.
pub struct Ctx {
    pub clock: Clock,
    pub window: Arc<Window>,
    pub progress: Arc<Progress>,
    pub cert: DtlsCert,
    pub local_ip: IpAddr,
    pub report: ThreadReport,
    /// Every peer's wake-ups: (due, slot, what). An entry whose peer has since asked for
    /// another time is stale and skipped.
    pub timers: Timers,
    /// The thread's poll, for the TCP connections its peers open (set when the thread starts).
    pub registry: Option<mio::Registry>,
}

impl Ctx {
    /// A thread's state before it has peers: nothing scheduled, nothing measured.
    pub fn new(
        clock: Clock,
        window: Arc<Window>,
        progress: Arc<Progress>,
        cert: DtlsCert,
        local_ip: IpAddr,
    ) -> Ctx {
        Ctx {
            clock,
            window,
            progress,
            cert,
            local_ip,
            report: ThreadReport::default(),
            timers: Timers::new(),
            registry: None,
        }
    }

    pub fn schedule(&mut self, at: Instant, slot: usize, timer: Timer) {
        self.timers.push(Reverse((at, slot, timer)));
    }
}

/// What a peer's wake-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Rtc,
    Audio,
    Video,
    /// The next datagram of the peer's downlink is due.
    Downlink,
    /// The next datagram of the peer's uplink is due.
    Uplink,
    /// Header-only reception's RTCP is due.
    Feedback,
}

/// Every peer's wake-ups of one thread, earliest first.
pub type Timers = BinaryHeap<Reverse<(Instant, usize, Timer)>>;

/// One direction of a peer's emulated link, holding datagrams (address, bytes) until due,
/// with the wake-up it has pushed to the thread's heap.
pub struct HeldLink {
    pub link: Link<(SocketAddr, Vec<u8>)>,
    /// When the datagram at the head is due, as pushed; `None` while nothing is pushed.
    pub next: Option<Instant>,
}

impl HeldLink {
    /// `None` for a link that changes nothing: its datagrams go straight through.
    pub fn new(profile: &LinkProfile, seed: u64) -> Option<HeldLink> {
        (!profile.is_transparent()).then(|| HeldLink {
            link: Link::new(profile, seed),
            next: None,
        })
    }

    /// Holds a datagram; returns the wake-up to push when none is pushed yet.
    pub fn hold(&mut self, now: Instant, address: SocketAddr, datagram: &[u8]) -> Option<Instant> {
        let admitted = self
            .link
            .send(now, datagram.len(), (address, datagram.to_vec()));
        if admitted == Admission::Queued && self.next.is_none() {
            self.next = self.link.next_delivery();
            return self.next;
        }
        None
    }

    /// Whether `at` is the wake-up this link pushed last (an older one is stale); it is then
    /// no longer pending.
    pub fn wake(&mut self, at: Instant) -> bool {
        let current = self.next == Some(at);
        if current {
            self.next = None;
        }
        current
    }

    /// After the due datagrams are out: the wake-up to push for the next one, if any.
    pub fn rearm(&mut self) -> Option<Instant> {
        self.next = self.link.next_delivery();
        self.next
    }
}
