//! The media driver: a fixed pool of worker threads, each owning one UDP socket and one
//! sans-IO [`Worker`]. This is the only place where media touches the network or the clock.
//!
//! A datagram reaches its peer through the worker's address map; a worker sleeps in `epoll`
//! until a datagram, a command or its next timer; a producer's packet is handed to each other
//! worker once per loop turn, in a batch, as reference-counted [`Relay`]s.
//!
//! Each loop turn reads every datagram that is ready (a video frame's packets arrive
//! together), up to 16 messages a `recvmmsg` call, each split at its GRO stride, before it
//! collects the worker's output, so each site's `Rtc` is driven once per turn, not once per
//! packet ([`receive`]). The turn's datagrams are then sent in the order the worker wrote
//! them, which writes a producer's packets of the turn to one site after the other: a run
//! of equal-size datagrams to one site (the last may be shorter) becomes one UDP GSO message
//! (`UDP_SEGMENT`, each datagram read from its own buffer), and the messages to all sites
//! leave together, 64 to a `sendmmsg` call ([`batch`]); where the kernel refuses GSO, each
//! datagram is a message of its own. Each destination's datagrams keep their order.
//!
//! A worker that falls behind (its socket more than an eighth full) reads RTCP and drops it
//! unhandled until the socket is empty, so that the kernel does not drop the studio's packets
//! and the sites' handshakes with the rest once the buffer is full ([`backlog`]).
//!
//! Beside UDP, [`tcp`] serves ICE over TCP for halls whose network passes only TCP: one
//! listener hands each connection to the worker of the peer its first STUN request names, and
//! that worker's loop reads and writes it with its UDP socket.
//!
//! With [`MediaConfig::single_port`] every worker's socket binds the same port
//! ([`single_port`]): a datagram read by a worker that does not own its peer is handed to the
//! one that does, and every worker announces the same candidates.

mod backlog;
mod batch;
mod receive;
mod single_port;
mod tcp;

pub use tcp::{FrameError, FrameReader, MAX_FRAME, TcpConfig};

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use diemcau_sfu::SfuError;
use diemcau_sfu::str0m::net::{Protocol, Transmit};
use diemcau_sfu::{ConsumerId, Event, Output, PeerId, ProducerId, ProducerInfo, Relay, RouterId};
use diemcau_sfu::{MediaPacket, Worker, WorkerConfig, WorkerStats};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{mpsc, oneshot};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Tokens from here up are the worker's TCP connections.
const FIRST_TCP: usize = 2;
/// Datagrams read before the worker's output is sent: bounds how long the first of them waits.
const RECV_BATCH: usize = 64;
/// Outputs that may wait in the worker while a turn is read: once this many wait (answers,
/// reports, what the sites' pacers release), the driver polls and sends them before
/// [`RECV_BATCH`] datagrams are read.
const FLUSH_OUTPUTS: usize = 1024;
/// Datagrams sent together while the worker is polled and a turn's media is forwarded, site
/// by site: four per site (about a turn's studio packets at 200 sites), at least this many and
/// at most [`FLUSH_OUTPUTS`]. Each waiting datagram holds a buffer, and the allocator keeps
/// what the largest send took: a keyframe read whole, forwarded to hundreds of sites, would
/// otherwise wait as 64 × sites datagrams (about 80 KiB per site). With few sites the bound of
/// 1,024 kept about 20 KiB a site at 50 sites for buffers a turn seldom needs, and with many a
/// send of 256 cost a few per cent more CPU a packet at 200 sites (BENCHMARKS.md, "A smaller
/// send"). Since a turn's media is written site by site, a site's packets of the turn lie
/// together whatever the bound.
const SEND_OUTPUTS_MIN: usize = 256;
/// Datagrams read in one turn of the loop at most: a loop that cannot keep up still runs its
/// timers (pacing, feedback) and reports its load every turn, and reads the rest next turn.
const RECV_PER_TURN: usize = 4 * RECV_BATCH;
/// Datagrams read and dropped unhandled in one turn at most while the socket is behind
/// ([`backlog`]): reading one costs a fraction of handling it.
const SHED_PER_TURN: usize = 4 * RECV_PER_TURN;
/// Most bytes in one GSO send (the kernel's limit is a 64 KiB IP datagram).
const GSO_MAX_BYTES: usize = 65_000;

/// An instruction for one worker thread.
#[derive(Debug)]
pub enum Command {
    AddPeer {
        peer: PeerId,
        router: RouterId,
        offer: String,
        /// A WHEP player's peer: the hub sends on its offer's m-lines and never offers.
        fixed: bool,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Offer {
        peer: PeerId,
        offer: String,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Answer {
        peer: PeerId,
        answer: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// Forward `producer` to `peer` as `consumer`: an id the hub chose, by which it names the
    /// consumer from then on.
    AddConsumer {
        peer: PeerId,
        consumer: ConsumerId,
        producer: ProducerInfo,
        /// Highest simulcast layer to forward.
        max_layer: u8,
        /// Forward `max_layer` only (a relaying hub's track of one layer).
        pinned: bool,
    },
    SetMaxLayer {
        peer: PeerId,
        consumer: ConsumerId,
        max_layer: u8,
    },
    RemoveProducer {
        router: RouterId,
        producer: ProducerId,
    },
    RemoveConsumer {
        peer: PeerId,
        consumer: ConsumerId,
    },
    SetProducerPaused {
        router: RouterId,
        producer: ProducerId,
        paused: bool,
    },
    RemovePeer {
        peer: PeerId,
    },
    /// Hand out `producer`'s packets for the recording (`tapped`), or no more.
    SetTapped {
        router: RouterId,
        producer: ProducerId,
        tapped: bool,
    },
    Relay(Vec<Relay>),
    /// A TCP connection whose first packet names one of this worker's peers.
    TcpConnection(tcp::Handoff),
    Stop,
    /// Panics in the worker's own code, outside any peer's containment: for the tests of what
    /// the hub does when an essential thread fails ([`crate::essential`]).
    #[cfg(feature = "testkit")]
    Fail,
}

/// Where each worker binds and what it announces.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub workers: usize,
    pub bind_ip: IpAddr,
    /// First UDP port: worker `i` binds `port + i`, or every worker binds `port` with
    /// [`MediaConfig::single_port`]. Zero picks free ports.
    pub port: u16,
    /// One UDP port for all workers (`SO_REUSEPORT`), instead of one port per worker.
    pub single_port: bool,
    /// Addresses put in ICE candidates (with each worker's port).
    pub announce: Vec<IpAddr>,
    /// ICE over TCP on one shared port (with `bind_ip` and `announce`); `None`: UDP only.
    pub tcp: Option<TcpConfig>,
}

/// One worker thread of the [`MediaPlane`], by its place in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerIndex(pub usize);

impl std::fmt::Display for WorkerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Events from the workers, tagged with the worker they come from.
pub type MediaEvents = mpsc::UnboundedReceiver<(WorkerIndex, Event)>;

/// Handle to the worker threads. They run until [`MediaPlane::stop`] or the end of the process;
/// nothing waits for them, since the hub shares this handle with every session.
#[derive(Debug)]
pub struct MediaPlane {
    workers: Vec<WorkerHandle>,
    next: AtomicUsize,
    /// The TCP listener's announced addresses; empty without one.
    tcp_addresses: Vec<SocketAddr>,
    tcp_limits: Option<Arc<tcp::ConnectionLimits>>,
    handoffs: Arc<single_port::HandoffCounters>,
    stopped: Arc<AtomicBool>,
    /// Where this machine reaches the workers itself: their bind address, or loopback when
    /// they listen on every interface.
    local_reach: IpAddr,
    /// Packets of tapped producers, for the recording thread.
    taps: Receiver<Arc<MediaPacket>>,
    /// Tapped packets dropped because the recording thread fell behind.
    tap_drops: Arc<AtomicU64>,
    sockets: Arc<SocketCounters>,
}

/// What the workers' UDP sockets lost, summed over the workers.
#[derive(Debug, Default)]
struct SocketCounters {
    /// Datagrams the kernel dropped (mostly a full receive buffer: a worker behind).
    drops: AtomicU64,
    /// RTCP datagrams read and dropped unhandled by a worker behind ([`backlog`]).
    shed: AtomicU64,
}

#[derive(Debug, Clone)]
struct WorkerHandle {
    index: usize,
    commands: Sender<Command>,
    waker: Arc<Waker>,
    /// Datagrams other workers read for this worker's peers (with one UDP port for all).
    handoff: Sender<single_port::Datagram>,
    addresses: Vec<SocketAddr>,
    /// The worker's counters, published after each turn of its loop.
    stats: Arc<Mutex<WorkerStats>>,
}

impl WorkerHandle {
    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok()
            && let Err(e) = self.waker.wake()
        {
            tracing::error!("waking a media worker failed: {e}");
        }
    }
}

impl MediaPlane {
    /// Binds every worker's socket and starts its thread.
    pub fn start(config: &MediaConfig) -> io::Result<(MediaPlane, MediaEvents)> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let count = config.workers.max(1);
        let dtls_cert = diemcau_sfu::str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        let mut handles = Vec::with_capacity(count);
        let mut pending = Vec::with_capacity(count);
        let tcp_listener = match &config.tcp {
            Some(tcp) => {
                let listener =
                    std::net::TcpListener::bind(SocketAddr::new(config.bind_ip, tcp.port))?;
                let port = listener.local_addr()?.port();
                let announced = tcp::announced(&config.announce, tcp.announce_port.unwrap_or(port));
                Some((listener, tcp, announced))
            }
            None => None,
        };
        let tcp_addresses = tcp_listener
            .as_ref()
            .map(|(_, _, a)| a.clone())
            .unwrap_or_default();
        if let Some((listener, _, announced)) = &tcp_listener {
            tracing::info!(local = ?listener.local_addr().ok(), announce = ?announced, "media TCP listener bound");
        }
        let ufrags = tcp::UfragMap::default();
        let stopped = Arc::new(AtomicBool::new(false));
        let (taps_tx, taps) = crossbeam_channel::bounded(crate::recording::TAP_CAPACITY);
        let tap_drops = Arc::new(AtomicU64::new(0));
        let sockets = Arc::new(SocketCounters::default());
        let handoffs = Arc::new(single_port::HandoffCounters::default());
        let mut shared_sockets = if config.single_port {
            single_port::bind(config.bind_ip, config.port, count)?
        } else {
            Vec::new()
        }
        .into_iter();
        for index in 0..count {
            let std_socket = match shared_sockets.next() {
                Some(socket) => socket,
                None => {
                    let port = if config.port == 0 {
                        0
                    } else {
                        config.port.checked_add(index as u16).ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!(
                                    "media port {} + {count} workers passes 65535",
                                    config.port
                                ),
                            )
                        })?
                    };
                    let socket = std::net::UdpSocket::bind(SocketAddr::new(config.bind_ip, port))?;
                    socket.set_nonblocking(true)?;
                    socket
                }
            };
            let local = std_socket.local_addr()?;
            size_buffers(&std_socket, index == 0);
            let socket = UdpSocket::from_std(std_socket);
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (commands, inbox) = crossbeam_channel::unbounded();
            let (handoff, handed) = crossbeam_channel::bounded(if config.single_port {
                single_port::HANDOFF_CAPACITY
            } else {
                0
            });
            let addresses: Vec<SocketAddr> = config
                .announce
                .iter()
                .map(|ip| SocketAddr::new(*ip, local.port()))
                .collect();
            tracing::info!(worker = index, %local, announce = ?addresses, "media worker bound");
            handles.push(WorkerHandle {
                index,
                commands,
                waker,
                handoff,
                addresses: addresses.clone(),
                stats: Arc::default(),
            });
            let destination = addresses.first().copied().unwrap_or(local);
            let mut worker_config = WorkerConfig::new(addresses);
            worker_config.index = index as u32;
            worker_config.workers = count as u32;
            worker_config.dtls_cert = dtls_cert.clone();
            worker_config.tcp_candidates = tcp_addresses.clone();
            pending.push((socket, poll, inbox, handed, worker_config, destination));
        }
        for (index, (socket, poll, inbox, handed, worker_config, destination)) in
            pending.into_iter().enumerate()
        {
            let others: Vec<WorkerHandle> = handles
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, h)| h.clone())
                .collect();
            let stats = handles
                .get(index)
                .map(|h| h.stats.clone())
                .unwrap_or_default();
            let udp_state = quinn_udp::UdpSocketState::new(quinn_udp::UdpSockRef::from(&socket))
                .inspect_err(|e| tracing::warn!(worker = index, "no batched sends or reads: {e}"))
                .ok();
            let gso_segments = udp_state.as_ref().map_or(1, |state| {
                state.max_gso_segments().clamp(1, batch::MAX_SEGMENTS)
            });
            let driver = Driver {
                tcp: config
                    .tcp
                    .as_ref()
                    .map(|c| tcp::Connections::new(c, tcp_addresses.clone(), FIRST_TCP)),
                ufrags: tcp::Ufrags::new(ufrags.clone(), index),
                steering: config
                    .single_port
                    .then(|| single_port::Steering::new(index, ufrags.clone(), Instant::now())),
                handed,
                handing: (0..count).map(|_| Vec::new()).collect(),
                handoffs: handoffs.clone(),
                tcp_buf: vec![0u8; 16 * 1024],
                stats,
                index,
                gso_segments,
                udp_state,
                outgoing: Vec::new(),
                runs: Vec::new(),
                udp_sent: (0, 0),
                socket,
                poll,
                inbox,
                others,
                events: events_tx.clone(),
                worker: Worker::new(worker_config),
                destination,
                taps: taps_tx.clone(),
                tap_drops: tap_drops.clone(),
                backlog: backlog::Backlog::default(),
                sockets: sockets.clone(),
                counted: (0, 0),
            };
            crate::essential::spawn(&format!("media-{index}"), move || driver.run())?;
        }
        let mut tcp_limits = None;
        if let Some((listener, tcp_config, _)) = tcp_listener {
            let limits =
                tcp::ConnectionLimits::new(tcp_config.max_connections, tcp_config.max_per_address);
            tcp::start_listener(
                listener,
                tcp_config,
                limits.clone(),
                ufrags,
                handles.clone(),
                stopped.clone(),
            )?;
            tcp_limits = Some(limits);
        }
        Ok((
            MediaPlane {
                workers: handles,
                next: AtomicUsize::new(0),
                tcp_addresses,
                tcp_limits,
                handoffs,
                stopped,
                local_reach: match config.bind_ip {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                },
                taps,
                tap_drops,
                sockets,
            },
            events_rx,
        ))
    }

    /// The packets of tapped producers ([`Command::SetTapped`]), for the recording thread.
    pub fn taps(&self) -> Receiver<Arc<MediaPacket>> {
        self.taps.clone()
    }

    /// Tapped packets dropped because the recording thread fell behind.
    pub fn tap_drops(&self) -> u64 {
        self.tap_drops.load(Ordering::Relaxed)
    }

    /// Datagrams the workers' UDP sockets dropped since they opened, and RTCP datagrams the
    /// workers read and dropped unhandled while behind (updated once a second).
    pub fn socket_losses(&self) -> (u64, u64) {
        (
            self.sockets.drops.load(Ordering::Relaxed),
            self.sockets.shed.load(Ordering::Relaxed),
        )
    }

    /// Every worker's counters, added up.
    pub fn stats(&self) -> WorkerStats {
        let mut total = WorkerStats::default();
        for w in &self.workers {
            let s = *w.stats.lock().unwrap_or_else(|p| p.into_inner());
            total.datagrams_received += s.datagrams_received;
            total.datagrams_unrouted += s.datagrams_unrouted;
            total.packets_received += s.packets_received;
            total.packets_forwarded += s.packets_forwarded;
            total.bytes_forwarded += s.bytes_forwarded;
            total.packets_dropped_paused += s.packets_dropped_paused;
            total.keyframe_requests_sent += s.keyframe_requests_sent;
            total.handshake_failures += s.handshake_failures;
            total.peers_failed += s.peers_failed;
            total.udp_datagrams_sent += s.udp_datagrams_sent;
            total.udp_messages_sent += s.udp_messages_sent;
            total.busy_permille = total.busy_permille.max(s.busy_permille);
            total.shed_level = total.shed_level.max(s.shed_level);
        }
        total
    }

    /// Each worker's load: how busy its loop was (per mille) and its shed level.
    pub fn loads(&self) -> Vec<(u64, u8)> {
        self.workers
            .iter()
            .map(|w| {
                let s = *w.stats.lock().unwrap_or_else(|p| p.into_inner());
                (s.busy_permille, s.shed_level)
            })
            .collect()
    }

    /// Datagrams handed from the worker that read them to the worker owning their peer, and
    /// those dropped because that worker's queue was full (with one UDP port for all).
    pub fn handoffs(&self) -> (u64, u64) {
        (self.handoffs.handed_over(), self.handoffs.dropped())
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The UDP addresses announced by the workers, each once (for the operator: open these
    /// ports; one with a single port for all workers).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut addresses: Vec<SocketAddr> = Vec::new();
        for address in self.workers.iter().flat_map(|w| w.addresses.iter()) {
            if !addresses.contains(address) {
                addresses.push(*address);
            }
        }
        addresses
    }

    /// The address a process on this machine reaches the workers at (their bind address, or
    /// loopback when they listen on every interface), whatever they announce: a relay of this
    /// hub needs no route through a NAT to its own hub.
    pub fn local_reach(&self) -> IpAddr {
        self.local_reach
    }

    /// The announced addresses of the TCP listener (for the operator: open this port); empty
    /// when media goes over UDP only.
    pub fn tcp_addresses(&self) -> &[SocketAddr] {
        &self.tcp_addresses
    }

    /// TCP media connections open now.
    pub fn tcp_connections(&self) -> usize {
        self.tcp_limits.as_ref().map_or(0, |l| l.open())
    }

    /// TCP media connections refused for being over a cap, since start.
    pub fn tcp_refused(&self) -> u64 {
        self.tcp_limits.as_ref().map_or(0, |l| l.refused())
    }

    /// The worker a new peer goes to (round robin).
    pub fn pick_worker(&self) -> WorkerIndex {
        WorkerIndex(self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len())
    }

    pub fn send(&self, worker: WorkerIndex, command: Command) {
        if let Some(handle) = self.workers.get(worker.0) {
            handle.send(command);
        }
    }

    pub fn broadcast(&self, command: impl Fn() -> Command) {
        for handle in &self.workers {
            handle.send(command());
        }
    }

    /// Tells every worker thread to end its loop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.broadcast(|| Command::Stop);
    }
}

/// How much of each period a worker's loop spends working rather than waiting in `poll`:
/// the measure of its load that [`Worker::handle_load`] sheds video by. Wall time: a loop
/// that never waits is behind, whether it computes or another thread holds its core; with
/// the thread's own CPU time beside it, so that a loop slowed only by others is told apart.
struct Load {
    since: Instant,
    waited: Duration,
    /// The thread's CPU time at `since`.
    cpu_since: Duration,
}

/// How often a worker reports its load.
const LOAD_PERIOD: Duration = Duration::from_millis(500);

impl Load {
    fn new(now: Instant) -> Load {
        Load {
            since: now,
            waited: Duration::ZERO,
            cpu_since: thread_cpu(),
        }
    }

    fn waited(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// The busy share of the period just ended and the share its thread ran, once a period
    /// has passed.
    fn busy(&mut self, now: Instant) -> Option<(f32, f32)> {
        let period = now.saturating_duration_since(self.since);
        if period < LOAD_PERIOD {
            return None;
        }
        let busy = 1.0 - self.waited.as_secs_f32() / period.as_secs_f32();
        let cpu = thread_cpu().saturating_sub(self.cpu_since).as_secs_f32() / period.as_secs_f32();
        *self = Load::new(now);
        Some((busy.clamp(0.0, 1.0), cpu.clamp(0.0, 1.0)))
    }
}

/// CPU time of the calling thread; zero where the clock cannot be read (then the worker
/// never counts as over capacity).
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// One worker thread's loop.
struct Driver {
    /// This worker's TCP connections; `None` when media goes over UDP only.
    tcp: Option<tcp::Connections>,
    ufrags: tcp::Ufrags,
    /// Finds the worker of each datagram's peer when all workers share one port; `None`
    /// with a port per worker (every datagram on a worker's socket is its own).
    steering: Option<single_port::Steering>,
    /// Datagrams other workers read for this worker's peers.
    handed: Receiver<single_port::Datagram>,
    /// This turn's datagrams for other workers, by worker index.
    handing: Vec<Vec<single_port::Datagram>>,
    handoffs: Arc<single_port::HandoffCounters>,
    tcp_buf: Vec<u8>,
    stats: Arc<Mutex<WorkerStats>>,
    index: usize,
    socket: UdpSocket,
    /// Most datagrams in one GSO send: 1 where the platform or the kernel offers none (plain
    /// sends then).
    gso_segments: usize,
    /// The socket's options as quinn-udp set them (GSO, GRO), handed to the batched reader
    /// when the loop starts; `None` where they could not be set.
    udp_state: Option<quinn_udp::UdpSocketState>,
    /// This turn's datagrams, sent together by [`Driver::send_outgoing`].
    outgoing: Vec<Transmit>,
    /// How [`Driver::outgoing`] is cut into messages, kept for its room.
    runs: Vec<batch::Run>,
    /// UDP datagrams handed to the kernel, and the messages they left in.
    udp_sent: (u64, u64),
    poll: Poll,
    inbox: Receiver<Command>,
    others: Vec<WorkerHandle>,
    events: mpsc::UnboundedSender<(WorkerIndex, Event)>,
    worker: Worker,
    /// Datagrams are handed to str0m with the first announced address as destination: the
    /// address the client sent to, as its ICE candidate pair names it.
    destination: SocketAddr,
    taps: Sender<Arc<MediaPacket>>,
    tap_drops: Arc<AtomicU64>,
    /// Sheds RTCP while the socket is behind.
    backlog: backlog::Backlog,
    sockets: Arc<SocketCounters>,
    /// The socket's drops and the datagrams shed, as last added to [`Driver::sockets`].
    counted: (u64, u64),
}

impl Driver {
    fn run(mut self) {
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut self.socket, SOCKET, Interest::READABLE)
        {
            crate::essential::fail(
                &format!("media-{}", self.index),
                &format!("cannot register its socket: {e}"),
            );
        }
        let destination = self.destination;
        let mut events = Events::with_capacity(64);
        let mut reception = receive::Reception::new(self.udp_state.take());
        let mut relays = Vec::new();
        let mut tcp_ready = Vec::new();
        let mut load = Load::new(Instant::now());
        // The socket still holds datagrams the last turn left for this one.
        let mut backlog = false;
        loop {
            let deadline = self.flush(&mut relays);
            let timeout = deadline.saturating_duration_since(Instant::now());
            let mut timeout = timeout.min(Duration::from_secs(1));
            if backlog || self.tcp.as_ref().is_some_and(|t| t.has_pending_reads()) {
                timeout = Duration::ZERO;
            }
            let waiting = Instant::now();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.index, "poll failed: {e}");
            }
            load.waited(waiting.elapsed());
            let mut readable = false;
            for event in events.iter() {
                match event.token() {
                    SOCKET => readable = true,
                    WAKER => {}
                    token => tcp_ready.push((token, event.is_readable(), event.is_writable())),
                }
            }
            self.serve_tcp(&mut tcp_ready);
            if readable || backlog {
                if (backlog || self.backlog.shedding())
                    && let Some(memory) = backlog::socket_memory(&self.socket)
                {
                    self.backlog.observe(memory.queued, memory.capacity);
                }
                backlog = false;
                let (mut read, mut handled, mut shed) = (0, 0, 0);
                loop {
                    if handled >= RECV_PER_TURN || shed >= SHED_PER_TURN {
                        // Edge-triggered: no new event comes for what is left; read it next turn.
                        backlog = true;
                        break;
                    }
                    match reception.read(&self.socket) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.backlog.drained();
                            break;
                        }
                        Err(e) => {
                            // ICMP errors from a vanished client surface here; keep serving.
                            tracing::debug!(worker = self.index, "recv failed: {e}");
                            continue;
                        }
                    }
                    for (source, datagram) in reception.datagrams() {
                        if self.backlog.sheds(datagram) {
                            shed += 1;
                            continue;
                        }
                        let owner = self
                            .steering
                            .as_mut()
                            .map_or(self.index, |s| s.owner(source, datagram));
                        match self.handing.get_mut(owner) {
                            Some(queue) if owner != self.index => {
                                queue.push(single_port::Datagram {
                                    source,
                                    contents: datagram.to_vec(),
                                });
                            }
                            _ => self.worker.handle_datagram(
                                Instant::now(),
                                source,
                                destination,
                                datagram,
                            ),
                        }
                        handled += 1;
                        read += 1;
                        if self.send_due(read) {
                            read = 0;
                            self.hand_over();
                            self.flush(&mut relays);
                        }
                    }
                }
            }
            self.hand_over();
            // At most a queue's worth per turn, so that commands and timers are not starved.
            let mut read = 0;
            for _ in 0..single_port::HANDOFF_CAPACITY {
                let Ok(datagram) = self.handed.try_recv() else {
                    break;
                };
                self.worker.handle_datagram(
                    Instant::now(),
                    datagram.source,
                    destination,
                    &datagram.contents,
                );
                read += 1;
                if self.send_due(read) {
                    read = 0;
                    self.flush(&mut relays);
                }
            }
            while let Ok(command) = self.inbox.try_recv() {
                if !self.handle_command(command) {
                    return;
                }
            }
            let now = Instant::now();
            if let Some(steering) = self.steering.as_mut() {
                steering.prune(now);
            }
            self.worker.handle_timeout(now);
            if let Some((busy, cpu)) = load.busy(now) {
                self.worker.handle_load(now, busy, cpu);
                self.count_socket_losses();
            }
            if let Some(tcp) = self.tcp.as_mut() {
                tcp.sweep(self.poll.registry(), now);
            }
            if let Ok(mut stats) = self.stats.lock() {
                *stats = WorkerStats {
                    udp_datagrams_sent: self.udp_sent.0,
                    udp_messages_sent: self.udp_sent.1,
                    ..self.worker.stats()
                };
            }
        }
    }

    /// Adds what the socket dropped and what was shed since the last count to the plane's
    /// counters.
    fn count_socket_losses(&mut self) {
        let drops = backlog::socket_memory(&self.socket).map_or(self.counted.0, |m| m.drops);
        let shed = self.backlog.shed();
        let (counters, (drops_before, shed_before)) = (&self.sockets, self.counted);
        counters
            .drops
            .fetch_add(drops.saturating_sub(drops_before), Ordering::Relaxed);
        counters
            .shed
            .fetch_add(shed.saturating_sub(shed_before), Ordering::Relaxed);
        self.counted = (drops, shed);
    }

    /// Whether what the worker produced is sent now, after `read` datagrams since the last
    /// send: [`RECV_BATCH`] of them, or [`FLUSH_OUTPUTS`] outputs waiting.
    fn send_due(&self, read: usize) -> bool {
        read == RECV_BATCH || self.worker.queued_outputs() >= FLUSH_OUTPUTS
    }

    /// Queues the datagrams read for other workers' peers on their handoff queues, waking each
    /// of them once; a full queue drops the rest, never waits.
    fn hand_over(&mut self) {
        let (mut handed_over, mut dropped) = (0, 0);
        for (owner, queue) in self.handing.iter_mut().enumerate() {
            if queue.is_empty() {
                continue;
            }
            let Some(handle) = self.others.iter().find(|h| h.index == owner) else {
                dropped += queue.len() as u64;
                queue.clear();
                continue;
            };
            let mut sent = false;
            for datagram in queue.drain(..) {
                if handle.handoff.try_send(datagram).is_ok() {
                    handed_over += 1;
                    sent = true;
                } else {
                    dropped += 1;
                }
            }
            if sent && let Err(e) = handle.waker.wake() {
                tracing::error!("waking a media worker failed: {e}");
            }
        }
        self.handoffs.count(handed_over, dropped);
    }

    /// Sends what the worker produced; returns when it next wants to be woken.
    fn flush(&mut self, relays: &mut Vec<Relay>) -> Instant {
        let send_every = (4 * self.worker.peer_count()).clamp(SEND_OUTPUTS_MIN, FLUSH_OUTPUTS);
        let deadline = loop {
            match self.worker.poll_output() {
                Output::Transmit(t) => {
                    self.outgoing.push(t);
                    // The worker forwards a turn's media a few sites at a time as it is polled:
                    // what is sent here holds no site's datagrams longer than that.
                    if self.outgoing.len() >= send_every {
                        self.send_outgoing();
                    }
                }
                Output::Relay(relay) => relays.push(relay),
                Output::Tapped(packet) => {
                    if self.taps.try_send(packet).is_err() {
                        self.tap_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Event(event) => {
                    if let Event::PeerClosed(peer) = event {
                        self.ufrags.set(peer, None);
                    }
                    let _ = self.events.send((WorkerIndex(self.index), event));
                }
                Output::Timeout(at) => break at,
            }
        };
        self.send_outgoing();
        if !relays.is_empty() {
            if let Some((last, rest)) = self.others.split_last() {
                for other in rest {
                    other.send(Command::Relay(relays.clone()));
                }
                last.send(Command::Relay(std::mem::take(relays)));
            } else {
                relays.clear();
            }
        }
        deadline
    }

    /// Sends this turn's datagrams in the order they were written, a run of equal-size ones
    /// to one destination (the last may be shorter) per GSO send.
    fn send_outgoing(&mut self) {
        let mut outgoing = std::mem::take(&mut self.outgoing);
        // When they leave: the sessions' transport-wide send times (`Worker::datagrams_sent`).
        let sent_at = (!outgoing.is_empty()).then(Instant::now);
        if let Some(tcp) = self.tcp.as_mut() {
            outgoing.retain(|t| {
                if t.proto == Protocol::Udp {
                    return true;
                }
                tcp.enqueue(t.destination, &t.contents);
                false
            });
            tcp.flush(self.poll.registry());
        }
        // Not sorted by destination: the worker writes each producer's packets of a turn to
        // one site after the other, so a site's datagrams already lie together, and a sort
        // joined 0.1-0.45 % of the runs for 1.2 % of the core (BENCHMARKS.md, "A turn's
        // datagrams as written").
        batch::plan(&outgoing, self.gso_segments, GSO_MAX_BYTES, &mut self.runs);
        let mut gso_refused = false;
        // The runs cover every datagram of `outgoing`: all sent, less what is refused.
        let mut sent = (outgoing.len() as u64, self.runs.len() as u64);
        batch::send(&self.socket, &outgoing, &self.runs, |run, error| {
            sent.0 = sent.0.saturating_sub(run.count as u64);
            sent.1 = sent.1.saturating_sub(1);
            // `plan` cut every run from `outgoing`.
            let Some(destination) = outgoing.get(run.start).map(|t| t.destination) else {
                return;
            };
            match error {
                // Runs of a turn are cut before a refusal turns GSO off: the rest go one by
                // one.
                batch::SendError::Unsupported(e) if run.count > 1 => {
                    if !gso_refused {
                        tracing::info!(
                            worker = self.index,
                            "GSO send refused ({e}): sending datagrams one by one from now on"
                        );
                    }
                    gso_refused = true;
                    for t in outgoing.iter().skip(run.start).take(run.count) {
                        match self.socket.send_to(&t.contents, t.destination) {
                            Ok(_) => {
                                sent.0 += 1;
                                sent.1 += 1;
                            }
                            Err(e) => tracing::trace!(
                                worker = self.index,
                                "send to {} failed: {e}",
                                t.destination
                            ),
                        }
                    }
                }
                batch::SendError::WouldBlock => {
                    tracing::trace!(worker = self.index, "send to {destination} would block");
                }
                batch::SendError::Unsupported(e) | batch::SendError::Other(e) => {
                    tracing::trace!(worker = self.index, "send to {destination} failed: {e}");
                }
            }
        });
        self.udp_sent.0 += sent.0;
        self.udp_sent.1 += sent.1;
        if gso_refused {
            self.gso_segments = 1;
        }
        if let Some(at) = sent_at {
            self.worker.datagrams_sent(at);
        }
        // Their buffers serve the datagrams of packets forwarded later.
        for t in outgoing.drain(..) {
            self.worker.give_back(t.contents.into());
        }
        self.outgoing = outgoing;
    }

    /// Returns false on `Stop`.
    fn handle_command(&mut self, command: Command) -> bool {
        let now = Instant::now();
        match command {
            Command::AddPeer {
                peer,
                router,
                offer,
                fixed,
                reply,
            } => {
                let answer = if fixed {
                    self.worker.add_fixed_peer(now, peer, router, &offer)
                } else {
                    self.worker.add_peer(now, peer, router, &offer)
                };
                self.ufrags.set(peer, self.worker.ufrag(peer));
                let _ = reply.send(answer);
            }
            Command::Offer { peer, offer, reply } => {
                let answer = self.worker.accept_offer(now, peer, &offer);
                self.ufrags.set(peer, self.worker.ufrag(peer));
                let _ = reply.send(answer);
            }
            Command::Answer {
                peer,
                answer,
                reply,
            } => {
                let _ = reply.send(self.worker.accept_answer(now, peer, &answer));
            }
            Command::SetMaxLayer {
                peer,
                consumer,
                max_layer,
            } => self.worker.set_max_layer(now, peer, consumer, max_layer),
            Command::AddConsumer {
                peer,
                consumer,
                producer,
                max_layer,
                pinned,
            } => {
                let added = if pinned {
                    self.worker
                        .add_pinned_consumer(peer, consumer, &producer, max_layer)
                } else {
                    self.worker
                        .add_consumer(peer, consumer, &producer, max_layer)
                };
                if let Err(e) = added {
                    tracing::debug!(worker = self.index, "consumer not added: {e}");
                }
            }
            Command::RemoveProducer { router, producer } => {
                self.worker.remove_producer(now, router, producer)
            }
            Command::RemoveConsumer { peer, consumer } => {
                self.worker.remove_consumer(now, peer, consumer)
            }
            Command::SetProducerPaused {
                router,
                producer,
                paused,
            } => self.worker.set_producer_paused(router, producer, paused),
            Command::RemovePeer { peer } => {
                self.worker.remove_peer(now, peer);
                self.ufrags.set(peer, None);
            }
            Command::SetTapped {
                router,
                producer,
                tapped,
            } => self.worker.set_tapped(router, producer, tapped),
            Command::Relay(relays) => {
                for relay in relays {
                    self.worker.handle_relay(now, relay);
                }
            }
            Command::TcpConnection(handoff) => {
                if let Some(tcp) = self.tcp.as_mut()
                    && let Some(remote) = tcp.adopt(self.poll.registry(), handoff)
                {
                    // Its first packets were read by the listener: take them now.
                    self.read_tcp(remote);
                }
            }
            Command::Stop => return false,
            #[cfg(feature = "testkit")]
            Command::Fail => panic!("a fault injected into media worker {}", self.index),
        }
        true
    }

    /// Reads and writes the TCP connections that are ready, and those left with unread data.
    fn serve_tcp(&mut self, ready: &mut Vec<(Token, bool, bool)>) {
        let Some(tcp) = self.tcp.as_mut() else {
            ready.clear();
            return;
        };
        let mut to_read = tcp.take_pending_reads();
        for (token, readable, writable) in ready.drain(..) {
            if !tcp.owns(token) {
                continue;
            }
            let Some(remote) = tcp.remote_of(token) else {
                continue;
            };
            if writable {
                tcp.write(self.poll.registry(), remote);
            }
            if readable && !to_read.contains(&remote) {
                to_read.push(remote);
            }
        }
        for remote in to_read {
            self.read_tcp(remote);
        }
    }

    /// Hands the complete frames of one TCP connection to the worker.
    fn read_tcp(&mut self, remote: SocketAddr) {
        let Some(tcp) = self.tcp.as_mut() else {
            return;
        };
        let worker = &mut self.worker;
        tcp.read(
            self.poll.registry(),
            remote,
            &mut self.tcp_buf,
            |local, frame| {
                worker.handle_packet(Instant::now(), Protocol::Tcp, remote, local, frame)
            },
        );
    }
}

/// The kernel buffer a media socket asks for each way. At the default (about 200 KiB) a
/// worker that pauses for a few milliseconds while a keyframe arrives from every site at once
/// (the floor changes, a roll call starts) loses datagrams in the kernel, where no counter of
/// ours sees them; 4 MiB holds about 3,000 full packets.
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER_BYTES`] of receive and send buffer on a UDP socket. The kernel
/// grants at most `net.core.rmem_max` / `wmem_max`: what it granted is logged (`report`: at
/// info level, with the sysctl to raise where it fell short; otherwise at debug level).
pub(crate) fn size_buffers(socket: &impl std::os::fd::AsFd, report: bool) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    // Linux doubles what it grants (half for its own bookkeeping) and reports the double.
    let receive = socket.recv_buffer_size().unwrap_or(0) / 2;
    let send = socket.send_buffer_size().unwrap_or(0) / 2;
    if !report {
        tracing::debug!(receive, send, "media socket buffers");
    } else if receive < SOCKET_BUFFER_BYTES || send < SOCKET_BUFFER_BYTES {
        tracing::info!(
            receive,
            send,
            wanted = SOCKET_BUFFER_BYTES,
            "media socket buffers are smaller than wanted: raise net.core.rmem_max and \
             net.core.wmem_max (see docs/operations.md)"
        );
    } else {
        tracing::info!(receive, send, "media socket buffers");
    }
}

impl batch::Datagram for Transmit {
    fn destination(&self) -> SocketAddr {
        self.destination
    }

    fn contents(&self) -> &[u8] {
        &self.contents
    }
}
