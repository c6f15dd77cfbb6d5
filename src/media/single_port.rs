//! One UDP port for every worker (`--single-port`).
//!
//! Every worker binds its own socket to the same address and port with `SO_REUSEPORT`; the
//! kernel spreads datagrams across the sockets by a hash of their 4-tuple, so a site's
//! datagrams always reach the same socket, but not necessarily the one of the worker owning
//! its peer. The worker that reads a datagram finds its owner ([`Steering`]): by source address
//! once known, and for a STUN binding request (a new peer's first packets, and its consent
//! checks every few seconds) by the USERNAME's hub ufrag, the same map the ICE-TCP listener
//! reads. A datagram for another worker is handed over through that worker's bounded
//! [`HANDOFF_CAPACITY`] queue; when the queue is full it is dropped and counted, never waited
//! for (media repairs or skips it, ICE retries). Since every socket has the same local address,
//! each worker sends from its own socket directly.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diemcau_sfu::stun;
use socket2::{Domain, Protocol, Socket, Type};

use super::tcp::UfragMap;

/// Datagrams waiting in one worker's handoff queue, at most.
pub const HANDOFF_CAPACITY: usize = 4096;
/// Source addresses a worker remembers the owner of, at most (one or two per site).
const MAX_ROUTES: usize = 65_536;
/// How often a worker forgets the sources of peers that are gone.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Binds `count` UDP sockets to one address and port (`port` 0: one free port), all in one
/// `SO_REUSEPORT` group, non-blocking. A port already in use is an error, even when its holder
/// (another hub of the same user) would let this one join its group and take part of its
/// datagrams.
pub fn bind(ip: IpAddr, port: u16, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut address = SocketAddr::new(ip, port);
    if port != 0 {
        // A plain bind fails on a port held by anyone, SO_REUSEPORT group or not.
        drop(std::net::UdpSocket::bind(address).map_err(|e| {
            io::Error::new(e.kind(), format!("media UDP port {address} is in use: {e}"))
        })?);
    }
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        reuse_port(&socket)?;
        socket.bind(&address.into())?;
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        // The first socket picked the port when asked for any: the others join it.
        address = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "one UDP port for all workers needs SO_REUSEPORT (Linux, FreeBSD)",
    ))
}

/// A datagram read by one worker for a peer of another.
#[derive(Debug)]
pub struct Datagram {
    pub source: SocketAddr,
    pub contents: Vec<u8>,
}

/// Datagrams handed from worker to worker, and those dropped because the owner's queue was
/// full; shared by all workers.
#[derive(Debug, Default)]
pub struct HandoffCounters {
    handed_over: AtomicU64,
    dropped: AtomicU64,
}

impl HandoffCounters {
    pub fn handed_over(&self) -> u64 {
        self.handed_over.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn count(&self, handed_over: u64, dropped: u64) {
        if handed_over > 0 {
            self.handed_over.fetch_add(handed_over, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// One worker's view of which worker owns the peer behind each source address.
///
/// A route is learnt from a STUN binding request naming a live peer's ufrag, refreshed by each
/// later one (so an address reused by a new peer moves to its worker at its first request),
/// and forgotten once that ufrag no longer belongs to the worker it named.
#[derive(Debug)]
pub struct Steering {
    index: usize,
    ufrags: UfragMap,
    routes: HashMap<SocketAddr, Route>,
    pruned_at: Instant,
}

#[derive(Debug)]
struct Route {
    worker: usize,
    ufrag: Box<str>,
}

impl Steering {
    pub fn new(index: usize, ufrags: UfragMap, now: Instant) -> Steering {
        Steering {
            index,
            ufrags,
            routes: HashMap::new(),
            pruned_at: now,
        }
    }

    /// The worker owning the peer a datagram from `source` belongs to; this worker when no
    /// peer is known for it (its worker then counts it unrouted).
    pub fn owner(&mut self, source: SocketAddr, contents: &[u8]) -> usize {
        if let Some(ufrag) = stun::local_ufrag(contents) {
            let owner = self
                .ufrags
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(ufrag)
                .copied();
            if let Some(worker) = owner {
                let fits = self.routes.len() < MAX_ROUTES || self.routes.contains_key(&source);
                let unchanged = self
                    .routes
                    .get(&source)
                    .is_some_and(|r| r.worker == worker && *r.ufrag == *ufrag);
                if fits && !unchanged {
                    let ufrag = ufrag.into();
                    self.routes.insert(source, Route { worker, ufrag });
                }
                return worker;
            }
        }
        self.routes.get(&source).map_or(self.index, |r| r.worker)
    }

    /// Forgets the sources of peers gone (or moved by an ICE restart) since the last prune.
    pub fn prune(&mut self, now: Instant) {
        if now.saturating_duration_since(self.pruned_at) < PRUNE_EVERY || self.routes.is_empty() {
            return;
        }
        self.pruned_at = now;
        let ufrags = self.ufrags.lock().unwrap_or_else(|p| p.into_inner());
        self.routes
            .retain(|_, route| ufrags.get(&*route.ufrag) == Some(&route.worker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06]);
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username.as_bytes());
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn sockets_share_one_port() {
        let sockets = bind(IpAddr::from([127, 0, 0, 1]), 0, 3).expect("bind");
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().expect("address").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
    }

    #[test]
    fn a_port_taken_without_reuse_is_an_error() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        assert!(bind(IpAddr::from([127, 0, 0, 1]), port, 2).is_err());
    }

    #[test]
    fn a_port_another_hub_shares_is_an_error() {
        let first = bind(IpAddr::from([127, 0, 0, 1]), 0, 2).expect("bind");
        let port = first[0].local_addr().expect("address").port();
        let second = bind(IpAddr::from([127, 0, 0, 1]), port, 2);
        assert!(second.is_err(), "a second group joined port {port}");
    }

    #[test]
    fn routes_follow_the_ufrag_then_the_source() {
        let ufrags = UfragMap::default();
        ufrags.lock().expect("lock").insert("abcd".into(), 1);
        let now = Instant::now();
        let mut steering = Steering::new(0, ufrags.clone(), now);
        let site = address(5000);
        // Unknown source, not STUN: this worker (which counts it unrouted).
        assert_eq!(steering.owner(site, &[0x80, 0, 0, 1]), 0);
        // A binding request names the peer's ufrag: its worker, and the source is learnt.
        assert_eq!(steering.owner(site, &binding_request("abcd:site")), 1);
        assert_eq!(steering.owner(site, &[0x80, 0, 0, 1]), 1);
        // An unknown ufrag falls back to the learnt source.
        assert_eq!(steering.owner(site, &binding_request("zzzz:site")), 1);
        assert_eq!(steering.owner(address(5001), &[0x80, 0, 0, 1]), 0);

        // The address is reused by a new peer on another worker: its first request moves it.
        ufrags.lock().expect("lock").insert("efgh".into(), 2);
        assert_eq!(steering.owner(site, &binding_request("efgh:site")), 2);
        assert_eq!(steering.owner(site, &[0x80, 0, 0, 1]), 2);

        // Its peer leaves: the route is forgotten at the next prune.
        ufrags.lock().expect("lock").remove("efgh");
        steering.prune(now + PRUNE_EVERY);
        assert_eq!(steering.owner(site, &[0x80, 0, 0, 1]), 0);
    }
}
