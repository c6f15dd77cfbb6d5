//! Media over TCP (ICE-TCP, RFC 6544) for halls whose network passes only TCP.
//!
//! The hub is passive: one listener, shared by all workers, accepts connections on the
//! configured port. A connection's first packet must be a STUN binding request whose USERNAME
//! names a peer's ufrag; the listener hands the connection to the worker owning that peer, and
//! that worker's driver reads and writes it from then on beside its UDP socket. On the stream
//! each packet is prefixed by its length, a 16-bit big-endian integer (RFC 4571).
//!
//! Limits: connections in all and per remote address ([`ConnectionLimits`]); a connection
//! with no packet taken by a peer within [`TcpConfig::ice_timeout`] is closed, and so is one
//! silent for [`IDLE_TIMEOUT`]; each connection's send queue holds at most
//! [`TcpConfig::send_queue_bytes`], packets beyond it are dropped (media repairs or skips
//! them), and a queue that makes no progress for [`STALL_TIMEOUT`] closes the connection. A
//! framing error (an empty or oversized frame) closes that connection only.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diemcau_sfu::PeerId;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use super::{Command, WorkerHandle};

/// Largest packet a frame may carry: WebRTC keeps its packets under the path MTU (1,500
/// bytes); anything longer is not ICE, DTLS or SRTP from a browser.
pub const MAX_FRAME: usize = 1600;
/// A connection of a peer that sends nothing (not even ICE consent checks, every few seconds)
/// for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A send queue that has not shrunk for this long: the peer has stopped reading.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a worker looks for connections past their time.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The TCP side of the media plane.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Port of the listener (0: any free port).
    pub port: u16,
    /// Port put in the TCP candidates when a redirect in front of the hub (443 to `port`)
    /// changes it; `None`: the listener's port.
    pub announce_port: Option<u16>,
    /// TCP media connections open at once, in all.
    pub max_connections: usize,
    /// TCP media connections open at once from one IP address.
    pub max_per_address: usize,
    /// A connection whose packets no peer has taken this long after it opened is closed.
    pub ice_timeout: Duration,
    /// Bytes waiting to be sent on one connection before further packets are dropped.
    pub send_queue_bytes: usize,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            port: 40443,
            announce_port: None,
            max_connections: 2048,
            max_per_address: 128,
            ice_timeout: Duration::from_secs(10),
            send_queue_bytes: 256 * 1024,
        }
    }
}

/// Why a stream's framing is broken: the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {0} bytes, over {MAX_FRAME}")]
    Oversized(usize),
}

/// Reassembles RFC 4571 frames from a byte stream. States: collecting bytes → (a frame
/// complete) yielding it → collecting again; a framing error is final.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already yielded as frames.
    consumed: usize,
}

impl FrameReader {
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let rest = self.buffer.get(self.consumed..).unwrap_or_default();
        let Some(len) = frame_len(rest)? else {
            return Ok(None);
        };
        let start = self.consumed + 2;
        self.consumed = start + len;
        Ok(self.buffer.get(start..start + len))
    }

    /// The first frame, left in place for the worker that takes the connection.
    fn peek_frame(&self) -> Result<Option<&[u8]>, FrameError> {
        let rest = self.buffer.get(self.consumed..).unwrap_or_default();
        Ok(frame_len(rest)?.and_then(|len| rest.get(2..2 + len)))
    }

    /// Bytes buffered and not yet yielded.
    fn pending(&self) -> usize {
        self.buffer.len() - self.consumed
    }
}

/// The length of the frame at the start of `bytes` once all of it is there.
fn frame_len(bytes: &[u8]) -> Result<Option<usize>, FrameError> {
    let [high, low, body @ ..] = bytes else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([*high, *low]));
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME {
        return Err(FrameError::Oversized(len));
    }
    Ok((body.len() >= len).then_some(len))
}

/// Counts open TCP media connections against the caps; a [`Slot`] holds one place until
/// dropped.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// Connections closed at once for being over a cap, since start.
    refused: AtomicU64,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            open: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for a connection from `ip`, or `None` over either cap.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_address) = &mut *open;
        let from_address = by_address.entry(ip).or_default();
        if *total >= self.max_total || *from_address >= self.max_per_address {
            if *from_address == 0 {
                by_address.remove(&ip);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *total += 1;
        *from_address += 1;
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now, in all.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Connections refused for being over a cap, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One open connection's place under the caps.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_address) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_address.remove(&self.ip);
            }
        }
    }
}

/// Which worker serves each ICE ufrag, kept by the workers' drivers, read by the listener.
pub type UfragMap = Arc<Mutex<HashMap<String, usize>>>;

/// A connection whose first packet named a peer, on its way to that peer's worker.
#[derive(Debug)]
pub struct Handoff {
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    reader: FrameReader,
    opened: Instant,
    slot: Slot,
}

/// Starts the listener's thread. It runs until `stop` is set.
pub(super) fn start_listener(
    listener: std::net::TcpListener,
    config: &TcpConfig,
    limits: Arc<ConnectionLimits>,
    ufrags: UfragMap,
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let acceptor = Acceptor {
        listener,
        poll,
        limits,
        ufrags,
        workers,
        stop,
        ice_timeout: config.ice_timeout,
        pending: HashMap::new(),
        next_token: 1,
        accept_again: false,
    };
    crate::essential::spawn("media-tcp", move || acceptor.run())?;
    Ok(())
}

const LISTENER: Token = Token(0);

/// The listener's loop: accepts, waits for each connection's first frame, hands it over.
struct Acceptor {
    listener: TcpListener,
    poll: Poll,
    limits: Arc<ConnectionLimits>,
    ufrags: UfragMap,
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    ice_timeout: Duration,
    pending: HashMap<Token, Pending>,
    next_token: usize,
    /// The last accept failed (out of descriptors): try again each turn, since the listener's
    /// readiness will not be reported again for connections already waiting.
    accept_again: bool,
}

struct Pending {
    stream: TcpStream,
    remote: SocketAddr,
    reader: FrameReader,
    opened: Instant,
    slot: Slot,
}

impl Acceptor {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; 4096];
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self.next_deadline().map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1))
            });
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("media TCP poll failed: {e}");
                return;
            }
            let mut accept = self.accept_again;
            for event in events.iter() {
                if event.token() == LISTENER {
                    accept = true;
                } else {
                    self.read(event.token(), &mut buf);
                }
            }
            if accept {
                self.accept();
            }
            let now = Instant::now();
            let ice_timeout = self.ice_timeout;
            let expired: Vec<Token> = self
                .pending
                .iter()
                .filter(|(_, p)| now.saturating_duration_since(p.opened) >= ice_timeout)
                .map(|(token, _)| *token)
                .collect();
            for token in expired {
                if let Some(p) = self.pending.remove(&token) {
                    tracing::debug!(remote = %p.remote, "media TCP connection closed: no STUN request in time");
                    self.close(p);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.opened + self.ice_timeout)
            .min()
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, remote)) => {
                    let Some(slot) = self.limits.acquire(remote.ip()) else {
                        tracing::debug!(%remote, "media TCP connection refused: over the cap");
                        continue; // dropping the stream closes it
                    };
                    let token = Token(self.next_token);
                    self.next_token = self.next_token.wrapping_add(1).max(1);
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        tracing::debug!(%remote, "media TCP connection not registered: {e}");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.pending.insert(
                        token,
                        Pending {
                            stream,
                            remote,
                            reader: FrameReader::default(),
                            opened: Instant::now(),
                            slot,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_again = false;
                    return;
                }
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken.
                    tracing::warn!("media TCP accept failed: {e}");
                    self.accept_again = true;
                    return;
                }
            }
        }
    }

    fn read(&mut self, token: Token, buf: &mut [u8]) {
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        loop {
            match p.stream.read(buf) {
                Ok(0) => return self.close(p),
                Ok(n) => {
                    p.reader.extend(buf.get(..n).unwrap_or_default());
                    if p.reader.pending() > 2 + MAX_FRAME {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(p),
            }
        }
        let worker = match p.reader.peek_frame() {
            Ok(None) => {
                self.pending.insert(token, p);
                return;
            }
            Err(e) => {
                tracing::debug!(remote = %p.remote, "media TCP connection closed: {e}");
                return self.close(p);
            }
            Ok(Some(frame)) => diemcau_sfu::stun::local_ufrag(frame).and_then(|ufrag| {
                let ufrags = self.ufrags.lock().unwrap_or_else(|e| e.into_inner());
                ufrags.get(ufrag).copied()
            }),
        };
        let Some(handle) = worker.and_then(|w| self.workers.get(w)) else {
            tracing::debug!(remote = %p.remote, "media TCP connection closed: its first packet names no peer");
            return self.close(p);
        };
        if let Err(e) = self.poll.registry().deregister(&mut p.stream) {
            tracing::debug!(remote = %p.remote, "media TCP connection not handed over: {e}");
            return;
        }
        let local = p.stream.local_addr().unwrap_or(p.remote);
        handle.send(Command::TcpConnection(Handoff {
            stream: p.stream,
            remote: p.remote,
            local,
            reader: p.reader,
            opened: p.opened,
            slot: p.slot,
        }));
    }

    fn close(&mut self, mut p: Pending) {
        let _ = self.poll.registry().deregister(&mut p.stream);
    }
}

/// The TCP connections one worker serves, by remote address. States of each: open (waiting
/// for a packet a peer takes) → in use → closed (by the peer, an error, a limit).
#[derive(Debug)]
pub(super) struct Connections {
    by_remote: HashMap<SocketAddr, Connection>,
    by_token: HashMap<Token, SocketAddr>,
    next_token: usize,
    first_token: usize,
    /// Where a TCP packet is addressed, as the peer's ICE candidate pair names it: the
    /// announced TCP candidates, by the local address a connection was accepted on.
    announced: Vec<SocketAddr>,
    ice_timeout: Duration,
    send_queue_bytes: usize,
    next_sweep: Instant,
    /// Connections with packets queued this turn, to write at [`Connections::flush`].
    dirty: Vec<SocketAddr>,
    /// Connections whose reading stopped at the per-turn bound.
    pending_reads: Vec<SocketAddr>,
    /// Packets dropped because a connection's send queue was full.
    pub dropped: u64,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    token: Token,
    /// The address packets from it are addressed to.
    local: SocketAddr,
    reader: FrameReader,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    writable_interest: bool,
    opened: Instant,
    last_taken: Option<Instant>,
    /// When the send queue last shrank (or was last empty).
    last_progress: Instant,
    _slot: Slot,
}

impl Connections {
    /// Tokens from `first_token` up are this set's.
    pub fn new(config: &TcpConfig, announced: Vec<SocketAddr>, first_token: usize) -> Self {
        Connections {
            by_remote: HashMap::new(),
            by_token: HashMap::new(),
            next_token: first_token,
            first_token,
            announced,
            ice_timeout: config.ice_timeout,
            send_queue_bytes: config.send_queue_bytes.max(4 * (MAX_FRAME + 2)),
            next_sweep: Instant::now() + SWEEP_EVERY,
            dirty: Vec::new(),
            pending_reads: Vec::new(),
            dropped: 0,
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first_token
    }

    /// Takes a connection from the listener; returns its remote address (its frames are
    /// then read with [`Connections::read`]).
    pub fn adopt(&mut self, registry: &Registry, handoff: Handoff) -> Option<SocketAddr> {
        let Handoff {
            mut stream,
            remote,
            local,
            reader,
            opened,
            slot,
        } = handoff;
        let token = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1).max(self.first_token);
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            tracing::debug!(%remote, "media TCP connection not registered: {e}");
            return None;
        }
        // The candidate the client connected to: the announced TCP address on the port and
        // address family it reached, whatever interface the kernel saw.
        let local = self
            .announced
            .iter()
            .find(|a| a.ip() == local.ip())
            .or_else(|| {
                self.announced
                    .iter()
                    .find(|a| a.is_ipv4() == remote.is_ipv4())
            })
            .or(self.announced.first())
            .copied()
            .unwrap_or(local);
        if let Some(old) = self.by_remote.remove(&remote) {
            self.by_token.remove(&old.token);
            let mut old = old;
            let _ = registry.deregister(&mut old.stream);
        }
        self.by_token.insert(token, remote);
        self.by_remote.insert(
            remote,
            Connection {
                stream,
                token,
                local,
                reader,
                out: Vec::new(),
                written: 0,
                writable_interest: false,
                opened,
                last_taken: None,
                last_progress: Instant::now(),
                _slot: slot,
            },
        );
        Some(remote)
    }

    pub fn remote_of(&self, token: Token) -> Option<SocketAddr> {
        self.by_token.get(&token).copied()
    }

    /// Reads what the socket holds and hands each complete frame to `take`, with the address
    /// it was sent to; `take` says whether a peer took it. Closes the connection on end of
    /// stream, an error or broken framing.
    pub fn read(
        &mut self,
        registry: &Registry,
        remote: SocketAddr,
        buf: &mut [u8],
        mut take: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) {
        let Some(conn) = self.by_remote.get_mut(&remote) else {
            return;
        };
        let mut open = true;
        let mut reads = 0;
        loop {
            match conn.reader.next_frame() {
                Ok(Some(frame)) => {
                    if take(conn.local, frame) {
                        conn.last_taken = Some(Instant::now());
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%remote, "media TCP connection closed: {e}");
                    open = false;
                    break;
                }
            }
            // Bounded, so one busy connection cannot hold the worker's loop.
            if reads == 16 {
                break;
            }
            reads += 1;
            match conn.stream.read(buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => conn.reader.extend(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        if !open {
            self.close(registry, remote);
        } else if reads == 16 {
            // More may be waiting: mio's edge-triggered readiness will not tell again.
            self.pending_reads.push(remote);
        }
    }

    /// Queues a packet for `destination`, framed; dropped when the queue is full or no
    /// connection has that address.
    pub fn enqueue(&mut self, destination: SocketAddr, contents: &[u8]) {
        let Some(conn) = self.by_remote.get_mut(&destination) else {
            return;
        };
        let Ok(len) = u16::try_from(contents.len()) else {
            return;
        };
        if conn.out.len() - conn.written + 2 + contents.len() > self.send_queue_bytes {
            self.dropped += 1;
            return;
        }
        if conn.out.len() == conn.written {
            conn.last_progress = Instant::now();
        }
        conn.out.extend_from_slice(&len.to_be_bytes());
        conn.out.extend_from_slice(contents);
        if !self.dirty.contains(&destination) {
            self.dirty.push(destination);
        }
    }

    /// Writes every queued packet the sockets take now.
    pub fn flush(&mut self, registry: &Registry) {
        for remote in std::mem::take(&mut self.dirty) {
            self.write(registry, remote);
        }
    }

    /// The socket of `remote` can take more.
    pub fn write(&mut self, registry: &Registry, remote: SocketAddr) {
        let Some(conn) = self.by_remote.get_mut(&remote) else {
            return;
        };
        let mut failed = false;
        while conn.written < conn.out.len() {
            match conn
                .stream
                .write(conn.out.get(conn.written..).unwrap_or_default())
            {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    conn.written += n;
                    conn.last_progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            return self.close(registry, remote);
        }
        let drained = conn.written == conn.out.len();
        if drained {
            conn.out.clear();
            conn.written = 0;
        } else if conn.written > conn.out.len() / 2 {
            conn.out.drain(..conn.written);
            conn.written = 0;
        }
        // Ask to hear when the socket takes more only while something waits.
        if drained == conn.writable_interest {
            let interest = if drained {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if registry
                .reregister(&mut conn.stream, conn.token, interest)
                .is_err()
            {
                return self.close(registry, remote);
            }
            conn.writable_interest = !drained;
        }
    }

    /// Remote addresses whose reads stopped at the per-turn bound: read them again.
    pub fn take_pending_reads(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.pending_reads)
    }

    pub fn has_pending_reads(&self) -> bool {
        !self.pending_reads.is_empty()
    }

    /// Closes connections past their time; at most once a second.
    pub fn sweep(&mut self, registry: &Registry, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let ice_timeout = self.ice_timeout;
        let expired: Vec<SocketAddr> = self
            .by_remote
            .iter()
            .filter(|(_, c)| {
                let silent = match c.last_taken {
                    None => now.saturating_duration_since(c.opened) >= ice_timeout,
                    Some(at) => now.saturating_duration_since(at) >= IDLE_TIMEOUT,
                };
                let stalled = c.out.len() > c.written
                    && now.saturating_duration_since(c.last_progress) >= STALL_TIMEOUT;
                silent || stalled
            })
            .map(|(remote, _)| *remote)
            .collect();
        for remote in expired {
            tracing::debug!(%remote, "media TCP connection closed: silent or not reading");
            self.close(registry, remote);
        }
    }

    /// Closes the connection of `remote` (its peer's ICE notices and closes or fails over).
    pub fn close(&mut self, registry: &Registry, remote: SocketAddr) {
        if let Some(mut conn) = self.by_remote.remove(&remote) {
            self.by_token.remove(&conn.token);
            let _ = registry.deregister(&mut conn.stream);
        }
    }
}

/// The announced addresses of the TCP listener.
pub fn announced(announce: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    announce
        .iter()
        .map(|ip| SocketAddr::new(*ip, port))
        .collect()
}

/// Worker-side bookkeeping of which ufrag belongs to which of its peers, mirrored in the
/// shared [`UfragMap`] the listener reads.
#[derive(Debug)]
pub(super) struct Ufrags {
    shared: UfragMap,
    worker: usize,
    by_peer: HashMap<PeerId, String>,
}

impl Ufrags {
    pub fn new(shared: UfragMap, worker: usize) -> Ufrags {
        Ufrags {
            shared,
            worker,
            by_peer: HashMap::new(),
        }
    }

    /// Peer `id` answers to `ufrag` (`None`: it is gone).
    pub fn set(&mut self, id: PeerId, ufrag: Option<&str>) {
        if self.by_peer.get(&id).map(String::as_str) == ufrag {
            return;
        }
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = self.by_peer.remove(&id) {
            shared.remove(&old);
        }
        if let Some(ufrag) = ufrag {
            shared.insert(ufrag.to_owned(), self.worker);
            self.by_peer.insert(id, ufrag.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let stream = framed(&[b"first", &[7; 1200], b"x"]);
        for cut in 0..stream.len() {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                reader.extend(part);
                while let Some(frame) = reader.next_frame().unwrap() {
                    frames.push(frame.to_vec());
                }
            }
            assert_eq!(
                frames,
                vec![b"first".to_vec(), vec![7; 1200], b"x".to_vec()]
            );
        }
    }

    #[test]
    fn empty_and_oversized_frames_are_errors() {
        let mut reader = FrameReader::default();
        reader.extend(&[0, 0, 1, 2]);
        assert_eq!(reader.next_frame(), Err(FrameError::Empty));
        let mut reader = FrameReader::default();
        reader.extend(&((MAX_FRAME + 1) as u16).to_be_bytes());
        assert_eq!(
            reader.next_frame(),
            Err(FrameError::Oversized(MAX_FRAME + 1))
        );
        let mut reader = FrameReader::default();
        reader.extend(&[0xff, 0xff]);
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn limits_count_per_address_and_in_all() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_none(), "per address");
        let _b1 = limits.acquire(b).unwrap();
        assert!(limits.acquire(b).is_none(), "in all");
        drop(a1);
        let b2 = limits.acquire(b);
        assert!(b2.is_some(), "a closed connection frees its place");
        assert_eq!(limits.open(), 3);
        drop(b2);
        assert_eq!(limits.open(), 2);
    }
}
