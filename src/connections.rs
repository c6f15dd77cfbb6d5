//! Who is connected and what was turned away: per-address and total connection caps
//! ([`ConnectionCounter`]), and the counts and rate-limited log lines of refused and timed-out
//! connections ([`ConnectionStats`]) that `/metrics` shows.
//!
//! It knows nothing of HTTP or of the rest of the hub, so the web server, the signalling
//! sessions and the hub can all hold its types.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open connections per IP address and in all, to refuse a flood from one address and to
/// keep the total below what the process can hold.
#[derive(Debug)]
pub struct ConnectionCounter {
    max_per_address: usize,
    max_total: usize,
    open: Mutex<OpenConnections>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds as many connections as one address may.
    PerAddress,
    /// The hub holds as many connections as it may in all.
    Total,
}

impl Refusal {
    /// The `reason` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::PerAddress => "per_address",
            Refusal::Total => "total",
        }
    }
}

impl ConnectionCounter {
    /// A counter with a per-address cap and no cap in all.
    pub fn new(max_per_address: usize) -> ConnectionCounter {
        ConnectionCounter::with_total(max_per_address, usize::MAX)
    }

    /// A counter with a per-address cap and a cap in all.
    pub fn with_total(max_per_address: usize, max_total: usize) -> ConnectionCounter {
        ConnectionCounter {
            max_per_address,
            max_total,
            open: Mutex::new(OpenConnections::default()),
        }
    }

    /// A slot for one more connection from `ip`, released when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.admit_capped(ip, true)
    }

    /// A slot for one more connection from `ip` under the cap in all only: for a trusted
    /// reverse proxy, which carries many clients' connections.
    pub fn admit_uncapped_address(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.admit_capped(ip, false)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// The cap in all.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    fn admit_capped(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address: bool,
    ) -> Result<ConnectionSlot, Refusal> {
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let count = open.per_address.entry(ip).or_insert(0);
        if per_address && *count >= self.max_per_address {
            if *count == 0 {
                open.per_address.remove(&ip);
            }
            return Err(Refusal::PerAddress);
        }
        *count += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_address.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_address.remove(&self.ip);
            }
        }
    }
}

/// The stage of a connection at which a timeout cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutStage {
    /// The TLS handshake did not finish in time.
    TlsHandshake,
    /// A request's head (request line and headers) did not arrive in time.
    RequestHeader,
    /// A request's body did not arrive, or its answer was not ready, in time.
    Request,
    /// The connection sat unused between requests for too long.
    Idle,
}

impl TimeoutStage {
    /// The `stage` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            TimeoutStage::TlsHandshake => "tls_handshake",
            TimeoutStage::RequestHeader => "request_header",
            TimeoutStage::Request => "request",
            TimeoutStage::Idle => "idle",
        }
    }

    /// Every stage, in the order `/metrics` lists them.
    pub const ALL: [TimeoutStage; 4] = [
        TimeoutStage::TlsHandshake,
        TimeoutStage::RequestHeader,
        TimeoutStage::Request,
        TimeoutStage::Idle,
    ];
}

impl Refusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 2] = [Refusal::PerAddress, Refusal::Total];
}

/// Counts of refused and timed-out connections since start, each kind also logged at most
/// once per [`LOG_INTERVAL`] with the count since its last line (a flood must not flood the
/// log as well).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    refused_per_address: Tally,
    refused_total: Tally,
    timed_out_tls_handshake: Tally,
    timed_out_request_header: Tally,
    timed_out_request: Tally,
    timed_out_idle: Tally,
    accept_failed: Tally,
}

/// The least time between two log lines about the same kind of refusal or timeout.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

impl ConnectionStats {
    /// Counts a connection from `ip` refused for `reason`.
    pub fn refused(&self, reason: Refusal, ip: IpAddr) {
        if let Some((count, ip)) = self.refusal_tally(reason).add(ip) {
            log_refused(reason, count, ip);
        }
    }

    /// Counts a connection from `ip` closed by a timeout at `stage`.
    pub fn timed_out(&self, stage: TimeoutStage, ip: IpAddr) {
        if let Some((count, ip)) = self.timeout_tally(stage).add(ip) {
            log_timed_out(stage, count, ip);
        }
    }

    /// Counts a failed `accept` (the process out of descriptors, or the network stack out of
    /// memory).
    pub fn accept_failed(&self, error: &std::io::Error) {
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        if let Some((count, _)) = self.accept_failed.add(unspecified) {
            tracing::error!(failed = count, "cannot accept connections: {error}");
        }
    }

    /// Logs the counts held back since their kind's last line once [`LOG_INTERVAL`] has
    /// passed, so that the end of a burst is logged too; call it every [`LOG_INTERVAL`].
    pub fn log_held_back(&self) {
        for reason in Refusal::ALL {
            if let Some((count, ip)) = self.refusal_tally(reason).take_due() {
                log_refused(reason, count, ip);
            }
        }
        for stage in TimeoutStage::ALL {
            if let Some((count, ip)) = self.timeout_tally(stage).take_due() {
                log_timed_out(stage, count, ip);
            }
        }
    }

    /// Connections refused for `reason` since start.
    pub fn refused_count(&self, reason: Refusal) -> u64 {
        self.refusal_tally(reason).total()
    }

    /// Connections closed by a timeout at `stage` since start.
    pub fn timed_out_count(&self, stage: TimeoutStage) -> u64 {
        self.timeout_tally(stage).total()
    }

    fn refusal_tally(&self, reason: Refusal) -> &Tally {
        match reason {
            Refusal::PerAddress => &self.refused_per_address,
            Refusal::Total => &self.refused_total,
        }
    }

    fn timeout_tally(&self, stage: TimeoutStage) -> &Tally {
        match stage {
            TimeoutStage::TlsHandshake => &self.timed_out_tls_handshake,
            TimeoutStage::RequestHeader => &self.timed_out_request_header,
            TimeoutStage::Request => &self.timed_out_request,
            TimeoutStage::Idle => &self.timed_out_idle,
        }
    }
}

fn log_refused(reason: Refusal, count: u64, last_ip: IpAddr) {
    match reason {
        Refusal::PerAddress => tracing::warn!(
            %last_ip,
            refused = count,
            "connections refused: too many from one address (count since the last such line)"
        ),
        Refusal::Total => tracing::warn!(
            %last_ip,
            refused = count,
            "connections refused: the hub holds as many connections as it may \
             (count since the last such line)"
        ),
    }
}

fn log_timed_out(stage: TimeoutStage, count: u64, last_ip: IpAddr) {
    tracing::info!(
        %last_ip,
        stage = stage.label(),
        closed = count,
        "connections closed by a timeout (count since the last such line)"
    );
}

/// A count since start, and the count since the last log line.
#[derive(Debug, Default)]
struct Tally {
    total: AtomicU64,
    unlogged: Mutex<Unlogged>,
}

#[derive(Debug, Default)]
struct Unlogged {
    count: u64,
    last_ip: Option<IpAddr>,
    last_line: Option<Instant>,
}

impl Tally {
    /// Adds one from `ip`; returns the count to log and the last address when a line is due.
    fn add(&self, ip: IpAddr) -> Option<(u64, IpAddr)> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut unlogged = self.lock();
        unlogged.count += 1;
        unlogged.last_ip = Some(ip);
        unlogged.take_due(Instant::now())
    }

    /// The count held back and the last address, when a line is due.
    fn take_due(&self) -> Option<(u64, IpAddr)> {
        self.lock().take_due(Instant::now())
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unlogged> {
        self.unlogged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Unlogged {
    fn take_due(&mut self, now: Instant) -> Option<(u64, IpAddr)> {
        if self.count == 0
            || self
                .last_line
                .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return None;
        }
        self.last_line = Some(now);
        let ip = self.last_ip?;
        Some((std::mem::take(&mut self.count), ip))
    }
}

#[derive(Debug, Default)]
struct OpenConnections {
    per_address: HashMap<IpAddr, usize>,
    total: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn caps_per_address_and_in_all_and_frees_on_drop() {
        let counter = Arc::new(ConnectionCounter::with_total(2, 3));
        let a1 = counter.admit(A).expect("first from A");
        let _a2 = counter.admit(A).expect("second from A");
        assert_eq!(counter.admit(A).err(), Some(Refusal::PerAddress));
        let _b1 = counter.admit(B).expect("first from B");
        assert_eq!(counter.admit(B).err(), Some(Refusal::Total));
        assert_eq!(counter.open(), 3);
        drop(a1);
        assert_eq!(counter.open(), 2);
        assert!(counter.admit(B).is_ok(), "a freed slot is free for anyone");
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_cap_in_all_only() {
        let counter = Arc::new(ConnectionCounter::with_total(1, 3));
        let slots: Vec<_> = (0..3)
            .map(|_| {
                counter
                    .admit_uncapped_address(A)
                    .expect("under the cap in all")
            })
            .collect();
        assert_eq!(
            counter.admit_uncapped_address(A).err(),
            Some(Refusal::Total)
        );
        drop(slots);
        assert_eq!(counter.open(), 0);
    }

    #[test]
    fn counts_every_refusal_and_logs_a_burst_once() {
        let stats = ConnectionStats::default();
        assert_eq!(stats.refused_per_address.add(A), Some((1, A)));
        for _ in 0..9 {
            assert_eq!(
                stats.refused_per_address.add(B),
                None,
                "within the interval"
            );
        }
        assert_eq!(stats.refused_count(Refusal::PerAddress), 10);
        assert_eq!(stats.refused_per_address.take_due(), None, "not due yet");
        let later = Instant::now() + LOG_INTERVAL;
        assert_eq!(
            stats.refused_per_address.lock().take_due(later),
            Some((9, B)),
            "the rest of the burst, once due"
        );
        stats.timed_out(TimeoutStage::Idle, A);
        assert_eq!(stats.timed_out_count(TimeoutStage::Idle), 1);
        assert_eq!(stats.timed_out_count(TimeoutStage::TlsHandshake), 0);
    }
}
