//! The peer engine: a few threads, each driving many str0m `Rtc`s (the simulated studio and
//! sites) in RTP mode.
//!
//! Each peer has its own UDP socket on loopback (the hub tells peers apart by source address,
//! so they cannot share one); a thread registers all its peers' sockets with one epoll (mio),
//! so a datagram reaches its peer by the socket's token, never by a scan. Each thread keeps its
//! peers' wake-ups (str0m timeouts, the next audio packet, the next video frame) in one binary
//! heap and drives only the due ones. A peer is polled right after every datagram it is fed:
//! in RTP mode str0m holds one received packet at a time.
//!
//! A site behind an emulated link ([`crate::link`]) has its datagrams from the hub held in
//! its downlink until they are due, and its own datagrams in its uplink; their due times are
//! wake-ups in the same heap.
//!
//! The signalling tasks (tokio) talk to the engine through [`Engine`]: create a peer and get its
//! offer, apply the hub's answer, answer the hub's offers. With several threads the studio
//! has the first to itself and the sites share the others.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::oneshot;

use crate::link::{Admission, Link, LinkProfile, LinkStats};
use crate::measure::{Histogram, LayerRuns, StreamReception, Window};
use crate::media::{self, AudioEncoder, Clock, Kind, Stamp, VideoEncoder, VideoProfile, Xorshift};

const WAKER: Token = Token(usize::MAX);

/// Publisher index of the studio; sites are 1..=N.
pub const STUDIO: u32 = 0;

/// What one simulated endpoint publishes and how it misbehaves.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Participant index: [`STUDIO`] or a site's number.
    pub id: u32,
    pub audio: bool,
    pub video: Option<VideoProfile>,
    /// Publish `video` as three simulcast layers ([`VideoProfile::simulcast_layers`]).
    pub simulcast: bool,
    /// Percentage of this peer's outgoing RTP datagrams dropped after str0m (loss injection;
    /// str0m's retransmissions can be dropped too).
    pub drop_percent: f64,
    /// The emulated link this peer sits behind.
    pub link: Option<PeerLink>,
}

/// A peer's emulated link: its class (an index into the run's `--link` classes) and what each
/// direction does.
#[derive(Debug, Clone)]
pub struct PeerLink {
    pub class: usize,
    /// Hub → peer.
    pub down: LinkProfile,
    /// Peer → hub.
    pub up: LinkProfile,
}

/// How far a peer got. Times are nanoseconds of the run's clock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStatus {
    pub id: u32,
    pub created_ns: Option<u64>,
    pub ice_connected_ns: Option<u64>,
    /// ICE and DTLS up (str0m's `Event::Connected`).
    pub connected_ns: Option<u64>,
    /// First media packet with a stamp received.
    pub first_media_ns: Option<u64>,
    /// str0m's error, when the `Rtc` failed (a DTLS failure, typically).
    pub error: Option<String>,
    /// ICE went `disconnected` after it was up.
    pub disconnected: bool,
    /// The `Rtc` is no longer alive.
    pub closed: bool,
}

/// One stream a peer published.
#[derive(Debug, Clone, Serialize)]
pub struct SentStream {
    pub publisher: u32,
    pub kind: Kind,
    /// The simulcast layer's rid, for a layer of a simulcast video.
    pub rid: Option<String>,
    /// The encoder's target bitrate (video).
    pub bitrate_bps: Option<u64>,
    /// Packets written whose send time is inside the measurement window.
    pub sent_window: u64,
    pub sent_total: u64,
    pub frames: u64,
    pub keyframes: u64,
}

/// One stream a peer received.
#[derive(Debug, Clone)]
pub struct ReceivedStream {
    pub publisher: u32,
    pub kind: Kind,
    /// Simulcast layer (0 without simulcast).
    pub layer: u8,
    pub reception: StreamReception,
}

/// Everything one peer measured.
#[derive(Debug, Clone)]
pub struct PeerReport {
    pub status: PeerStatus,
    pub sent: Vec<SentStream>,
    pub received: Vec<ReceivedStream>,
    /// Outgoing RTP datagrams dropped by loss injection.
    pub dropped_injected: u64,
    pub rtp_datagrams_sent: u64,
    pub keyframe_requests: u64,
    /// RTP packets without a readable stamp.
    pub unstamped: u64,
    /// The runs on one simulcast layer of each video received, by publisher.
    pub video_runs: Vec<(u32, LayerRuns)>,
    /// The emulated link's class, when the peer has one.
    pub link_class: Option<usize>,
    pub downlink: Option<LinkStats>,
    pub uplink: Option<LinkStats>,
}

/// What one engine thread measured.
#[derive(Debug, Clone, Default)]
pub struct ThreadReport {
    pub peers: Vec<PeerReport>,
    /// One-way delay (µs) of the studio's packets to sites, first arrivals sent in the window.
    pub downstream_delay: Histogram,
    /// One-way delay (µs) of sites' packets to the studio.
    pub upstream_delay: Histogram,
    /// `downstream_delay` by the receiving site's link class (`None`: no link).
    pub downstream_delay_by_class: BTreeMap<Option<usize>, Histogram>,
    pub send_would_block: u64,
    pub send_errors: u64,
    /// Media timers that fired more than 100 ms late (the thread could not keep up).
    pub late_media_timers: u64,
    /// CPU time of this thread, in nanoseconds, from /proc.
    pub cpu_ns: u64,
}

/// Live counts, for the scenario to watch joins progress without stopping the threads.
#[derive(Debug, Default)]
pub struct Progress {
    pub created: AtomicUsize,
    pub ice_connected: AtomicUsize,
    pub connected: AtomicUsize,
    pub receiving: AtomicUsize,
    pub failed: AtomicUsize,
}

/// Why the engine could not do what signalling asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The hub's SDP was refused by str0m.
    #[error("SDP refused: {0}")]
    Sdp(String),
    /// A socket could not be opened.
    #[error("socket: {0}")]
    Io(String),
    /// No such peer, or the engine stopped.
    #[error("peer or engine gone")]
    Gone,
}

enum Command {
    Create {
        spec: Box<PeerSpec>,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Answer {
        id: u32,
        sdp: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Offer {
        id: u32,
        sdp: String,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Close {
        id: u32,
    },
    Status {
        reply: oneshot::Sender<Vec<PeerStatus>>,
    },
    Finish {
        reply: oneshot::Sender<ThreadReport>,
    },
}

#[derive(Debug)]
struct ThreadHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

/// The engine's threads. States: running → finished ([`Engine::finish`] collects the reports
/// and ends the threads).
#[derive(Debug)]
pub struct Engine {
    threads: Vec<ThreadHandle>,
    joins: std::sync::Mutex<Vec<JoinHandle<()>>>,
    pub progress: Arc<Progress>,
}

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub threads: usize,
    /// Address the peers' sockets bind to (and announce as their ICE host candidate).
    pub local_ip: IpAddr,
    pub clock: Clock,
    pub window: Arc<Window>,
}

impl Engine {
    pub fn start(config: EngineConfig) -> io::Result<Engine> {
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| io::Error::other("no DTLS certificate"))?;
        let progress = Arc::new(Progress::default());
        let mut threads = Vec::new();
        let mut joins = Vec::new();
        for index in 0..config.threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (commands, inbox) = crossbeam_channel::unbounded();
            let worker = EngineThread {
                poll,
                inbox,
                peers: Vec::new(),
                slot_of: HashMap::new(),
                ctx: Ctx {
                    clock: config.clock,
                    window: config.window.clone(),
                    progress: progress.clone(),
                    cert: cert.clone(),
                    local_ip: config.local_ip,
                    report: ThreadReport::default(),
                    timers: Timers::new(),
                },
            };
            let join = std::thread::Builder::new()
                .name(format!("loadgen-{index}"))
                .spawn(move || worker.run())?;
            threads.push(ThreadHandle { commands, waker });
            joins.push(join);
        }
        Ok(Engine {
            threads,
            joins: std::sync::Mutex::new(joins),
            progress,
        })
    }

    /// The thread of peer `id`. With two threads or more the studio has one to itself: it
    /// sends every packet the sites receive, and its timing is what delay is measured from.
    fn thread_of(&self, id: u32) -> usize {
        let threads = self.threads.len().max(1);
        match threads {
            1 => 0,
            _ if id == STUDIO => 0,
            _ => 1 + (id as usize - 1) % (threads - 1),
        }
    }

    fn send_to_thread(&self, index: usize, command: Command) -> Result<(), EngineError> {
        let thread = self.threads.get(index).ok_or(EngineError::Gone)?;
        thread
            .commands
            .send(command)
            .map_err(|_| EngineError::Gone)?;
        thread
            .waker
            .wake()
            .map_err(|e| EngineError::Io(e.to_string()))
    }

    /// Sends a command to the thread of peer `id` and waits for its reply.
    async fn ask<T>(
        &self,
        id: u32,
        command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send_to_thread(self.thread_of(id), command(reply))?;
        answer.await.map_err(|_| EngineError::Gone)?
    }

    /// Sends a command to every thread in turn; the replies of those that answer.
    async fn ask_every_thread<T>(&self, command: impl Fn(oneshot::Sender<T>) -> Command) -> Vec<T> {
        let mut replies = Vec::new();
        for index in 0..self.threads.len() {
            let (reply, answer) = oneshot::channel();
            if self.send_to_thread(index, command(reply)).is_ok()
                && let Ok(reply) = answer.await
            {
                replies.push(reply);
            }
        }
        replies
    }

    /// Creates a peer and returns its first offer (its published tracks).
    pub async fn create(&self, spec: PeerSpec) -> Result<String, EngineError> {
        let id = spec.id;
        self.ask(id, |reply| Command::Create {
            spec: Box::new(spec),
            reply,
        })
        .await
    }

    /// Applies the hub's answer to the peer's offer.
    pub async fn accept_answer(&self, id: u32, sdp: String) -> Result<(), EngineError> {
        self.ask(id, |reply| Command::Answer { id, sdp, reply })
            .await
    }

    /// Answers a hub offer.
    pub async fn accept_offer(&self, id: u32, sdp: String) -> Result<String, EngineError> {
        self.ask(id, |reply| Command::Offer { id, sdp, reply })
            .await
    }

    /// Closes a peer (its participant left).
    pub fn close(&self, id: u32) {
        let _ = self.send_to_thread(self.thread_of(id), Command::Close { id });
    }

    /// Every peer's status.
    pub async fn status(&self) -> Vec<PeerStatus> {
        self.ask_every_thread(|reply| Command::Status { reply })
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Ends every thread and returns what each measured.
    pub async fn finish(&self) -> Vec<ThreadReport> {
        let reports = self
            .ask_every_thread(|reply| Command::Finish { reply })
            .await;
        let joins = std::mem::take(&mut *self.joins.lock().unwrap_or_else(|e| e.into_inner()));
        for join in joins {
            let _ = join.join();
        }
        reports
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Rtc,
    Audio,
    Video,
    /// The next datagram of the peer's downlink is due.
    Downlink,
    /// The next datagram of the peer's uplink is due.
    Uplink,
}

struct EngineThread {
    poll: Poll,
    inbox: Receiver<Command>,
    /// Indexed by slot (the peer's socket token); a closed peer keeps its slot.
    peers: Vec<Peer>,
    slot_of: HashMap<u32, usize>,
    ctx: Ctx,
}

/// A thread's state apart from its peers, so a peer can be driven while it is updated.
struct Ctx {
    clock: Clock,
    window: Arc<Window>,
    progress: Arc<Progress>,
    cert: DtlsCert,
    local_ip: IpAddr,
    report: ThreadReport,
    /// Every peer's wake-ups: (due, slot, what). An entry whose peer has since asked for
    /// another time is stale and skipped.
    timers: Timers,
}

impl Ctx {
    fn schedule(&mut self, at: Instant, slot: usize, timer: Timer) {
        self.timers.push(Reverse((at, slot, timer)));
    }
}

struct Peer {
    spec: PeerSpec,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// Index in the thread's peers and the socket's token.
    slot: usize,
    pending: Option<SdpPendingOffer>,
    next_rtc: Option<Instant>,
    status: PeerStatus,
    audio: Option<AudioSender>,
    video: Option<VideoSender>,
    received: HashMap<(u32, Kind, u8), StreamReception>,
    video_runs: HashMap<u32, LayerRuns>,
    kinds_by_pt: HashMap<Pt, Option<Kind>>,
    /// Datagrams from the hub on their way through the emulated link: (source, bytes).
    downlink: Option<HeldLink>,
    /// Datagrams to the hub on their way: (destination, bytes).
    uplink: Option<HeldLink>,
    drop_rng: Xorshift,
    dropped_injected: u64,
    rtp_datagrams_sent: u64,
    keyframe_requests: u64,
    unstamped: u64,
    dead: bool,
}

struct AudioSender {
    mid: Mid,
    pt: Option<Pt>,
    encoder: AudioEncoder,
    seq: u64,
    index: u32,
    next: Option<Instant>,
    stats: SentStream,
}

struct VideoSender {
    mid: Mid,
    pt: Option<Pt>,
    next: Option<Instant>,
    /// One without simulcast; else lowest first.
    layers: Vec<VideoLayer>,
}

struct VideoLayer {
    rid: Option<Rid>,
    encoder: VideoEncoder,
    seq: u64,
    index: u32,
    stats: SentStream,
}

/// One direction of a peer's emulated link, holding datagrams (address, bytes) until due,
/// with the wake-up it has pushed to the thread's heap.
struct HeldLink {
    link: Link<(SocketAddr, Vec<u8>)>,
    /// When the datagram at the head is due, as pushed; `None` while nothing is pushed.
    next: Option<Instant>,
}

impl HeldLink {
    /// `None` for a link that changes nothing: its datagrams go straight through.
    fn new(profile: &LinkProfile, seed: u64) -> Option<HeldLink> {
        (!profile.is_transparent()).then(|| HeldLink {
            link: Link::new(profile, seed),
            next: None,
        })
    }

    /// Holds a datagram; returns the wake-up to push when none is pushed yet.
    fn hold(&mut self, now: Instant, address: SocketAddr, datagram: &[u8]) -> Option<Instant> {
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
    fn wake(&mut self, at: Instant) -> bool {
        let current = self.next == Some(at);
        if current {
            self.next = None;
        }
        current
    }

    /// After the due datagrams are out: the wake-up to push for the next one, if any.
    fn rearm(&mut self) -> Option<Instant> {
        self.next = self.link.next_delivery();
        self.next
    }
}

impl EngineThread {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let timeout = self
                .ctx
                .timers
                .peek()
                .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("engine poll failed: {e}");
                return;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                self.read_socket(event.token().0, &mut buf);
            }
            while let Ok(command) = self.inbox.try_recv() {
                if let Command::Finish { reply } = command {
                    let _ = reply.send(self.finish());
                    return;
                }
                self.handle_command(command);
            }
            self.run_timers();
        }
    }

    fn read_socket(&mut self, slot: usize, buf: &mut [u8]) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return;
        };
        loop {
            match peer.socket.recv_from(buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    let Some(datagram) = buf.get(..n) else {
                        continue;
                    };
                    peer.receive(now, source, datagram, &mut self.ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {} // ICMP errors from the hub going away: keep reading
            }
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, slot, timer))) = self.ctx.timers.peek().copied() {
            if at > now {
                break;
            }
            self.ctx.timers.pop();
            let Some(peer) = self.peers.get_mut(slot) else {
                continue;
            };
            match timer {
                Timer::Rtc => {
                    if peer.next_rtc != Some(at) {
                        continue;
                    }
                    peer.next_rtc = None;
                    let _ = peer.rtc.handle_input(Input::Timeout(now));
                    peer.drive(now, &mut self.ctx);
                }
                Timer::Audio => peer.send_audio(at, now, &mut self.ctx),
                Timer::Video => peer.send_video(at, now, &mut self.ctx),
                Timer::Downlink => peer.deliver_downlink(at, now, &mut self.ctx),
                Timer::Uplink => peer.deliver_uplink(at, now, &mut self.ctx),
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Create { spec, reply } => {
                let _ = reply.send(self.create(*spec));
            }
            Command::Answer { id, sdp, reply } => {
                let result = self.with_peer(id, |peer, ctx| {
                    let pending = peer.pending.take().ok_or(EngineError::Sdp(
                        "no offer of ours awaits an answer".to_owned(),
                    ))?;
                    let answer = SdpAnswer::from_sdp_string(&sdp)
                        .map_err(|e| EngineError::Sdp(e.to_string()))?;
                    peer.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| EngineError::Sdp(e.to_string()))?;
                    peer.drive(Instant::now(), ctx);
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::Offer { id, sdp, reply } => {
                let result = self.with_peer(id, |peer, ctx| {
                    let offer = SdpOffer::from_sdp_string(&sdp)
                        .map_err(|e| EngineError::Sdp(e.to_string()))?;
                    let answer = peer
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .map_err(|e| EngineError::Sdp(e.to_string()))?;
                    peer.kinds_by_pt.clear();
                    peer.drive(Instant::now(), ctx);
                    Ok(answer.to_sdp_string())
                });
                let _ = reply.send(result);
            }
            Command::Close { id } => {
                if let Some(peer) = self
                    .slot_of
                    .get(&id)
                    .and_then(|slot| self.peers.get_mut(*slot))
                {
                    peer.rtc.disconnect();
                    peer.drive(Instant::now(), &mut self.ctx);
                    peer.dead = true;
                    let _ = self.poll.registry().deregister(&mut peer.socket);
                }
            }
            Command::Status { reply } => {
                let statuses = self.peers.iter().map(|p| p.status.clone()).collect();
                let _ = reply.send(statuses);
            }
            Command::Finish { .. } => {}
        }
    }

    fn with_peer<T>(
        &mut self,
        id: u32,
        f: impl FnOnce(&mut Peer, &mut Ctx) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let peer = self
            .slot_of
            .get(&id)
            .and_then(|slot| self.peers.get_mut(*slot))
            .ok_or(EngineError::Gone)?;
        f(peer, &mut self.ctx)
    }

    fn create(&mut self, spec: PeerSpec) -> Result<String, EngineError> {
        if self.slot_of.contains_key(&spec.id) {
            return Err(EngineError::Sdp(format!("peer {} exists", spec.id)));
        }
        let io = |e: io::Error| EngineError::Io(e.to_string());
        let std_socket =
            std::net::UdpSocket::bind(SocketAddr::new(self.ctx.local_ip, 0)).map_err(io)?;
        std_socket.set_nonblocking(true).map_err(io)?;
        // Room for a keyframe burst to every site of a thread while it is busy elsewhere.
        let sock = socket2::SockRef::from(&std_socket);
        let _ = sock.set_recv_buffer_size(1 << 20);
        let _ = sock.set_send_buffer_size(1 << 20);
        let local = std_socket.local_addr().map_err(io)?;
        let mut socket = UdpSocket::from_std(std_socket);
        let slot = self.peers.len();
        self.poll
            .registry()
            .register(&mut socket, Token(slot), Interest::READABLE)
            .map_err(io)?;

        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_dtls_cert(self.ctx.cert.clone())
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| EngineError::Io(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let stream_id = format!("loadgen-{}", spec.id);
        let audio_mid = spec.audio.then(|| {
            api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(format!("{stream_id}-audio")),
                None,
            )
        });
        let layers: Vec<(Option<Rid>, VideoProfile)> = match spec.video {
            Some(profile) if spec.simulcast => profile
                .simulcast_layers()
                .into_iter()
                .map(|(rid, p)| (Some(Rid::from(rid)), p))
                .collect(),
            Some(profile) => vec![(None, profile)],
            None => Vec::new(),
        };
        let video_mid = spec.video.map(|_| {
            let simulcast = spec.simulcast.then(|| {
                let mut simulcast = Simulcast::new();
                for (rid, _) in &layers {
                    if let Some(rid) = rid {
                        simulcast.add_send_layer(SimulcastLayer::new(rid));
                    }
                }
                simulcast
            });
            api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(format!("{stream_id}-video")),
                simulcast,
            )
        });
        if audio_mid.is_none() && video_mid.is_none() {
            // A viewer that publishes nothing still offers something, as a browser with a
            // receive-only transceiver does; the hub adds its own m-lines later.
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| EngineError::Sdp("str0m made no offer".to_owned()))?;
        let seed = u64::from(spec.id) * 7919 + 17;
        let publisher = spec.id;
        let link = spec.link.clone();
        let peer = Peer {
            audio: audio_mid.map(|mid| AudioSender {
                mid,
                pt: None,
                encoder: AudioEncoder::new(seed),
                seq: 1000 + seed % 20_000,
                index: 0,
                next: None,
                stats: SentStream::new(publisher, Kind::Audio),
            }),
            video: video_mid.map(|mid| VideoSender {
                mid,
                pt: None,
                next: None,
                layers: layers
                    .iter()
                    .enumerate()
                    .map(|(i, (rid, profile))| VideoLayer {
                        rid: *rid,
                        encoder: VideoEncoder::new(*profile, seed + i as u64),
                        seq: 2000 + seed % 20_000 + i as u64 * 10_000,
                        index: 0,
                        stats: SentStream {
                            rid: rid.map(|r| r.to_string()),
                            bitrate_bps: Some(profile.bitrate_bps),
                            ..SentStream::new(publisher, Kind::Video)
                        },
                    })
                    .collect(),
            }),
            drop_rng: Xorshift::new(seed ^ 0xD0D0),
            status: PeerStatus {
                id: spec.id,
                created_ns: Some(self.ctx.clock.ns(now)),
                ..PeerStatus::default()
            },
            spec,
            rtc,
            socket,
            local,
            slot,
            pending: Some(pending),
            next_rtc: None,
            received: HashMap::new(),
            video_runs: HashMap::new(),
            kinds_by_pt: HashMap::new(),
            downlink: link
                .as_ref()
                .and_then(|l| HeldLink::new(&l.down, seed ^ 0xD0)),
            uplink: link
                .as_ref()
                .and_then(|l| HeldLink::new(&l.up, seed ^ 0x0F)),
            dropped_injected: 0,
            rtp_datagrams_sent: 0,
            keyframe_requests: 0,
            unstamped: 0,
            dead: false,
        };
        self.slot_of.insert(peer.spec.id, slot);
        self.peers.push(peer);
        self.ctx.progress.created.fetch_add(1, Ordering::Relaxed);
        if let Some(peer) = self.peers.last_mut() {
            peer.drive(now, &mut self.ctx);
        }
        Ok(offer.to_sdp_string())
    }

    fn finish(&mut self) -> ThreadReport {
        let mut report = std::mem::take(&mut self.ctx.report);
        for peer in &mut self.peers {
            let mut sent = Vec::new();
            if let Some(a) = &peer.audio {
                sent.push(a.stats.clone());
            }
            if let Some(v) = &peer.video {
                sent.extend(v.layers.iter().map(|l| l.stats.clone()));
            }
            let mut received: Vec<ReceivedStream> = peer
                .received
                .iter()
                .map(|((publisher, kind, layer), reception)| ReceivedStream {
                    publisher: *publisher,
                    kind: *kind,
                    layer: *layer,
                    reception: reception.clone(),
                })
                .collect();
            received.sort_by_key(|r| (r.publisher, r.kind, r.layer));
            let mut video_runs: Vec<(u32, LayerRuns)> = peer
                .video_runs
                .iter()
                .map(|(p, r)| (*p, r.clone()))
                .collect();
            video_runs.sort_by_key(|(p, _)| *p);
            report.peers.push(PeerReport {
                status: peer.status.clone(),
                sent,
                received,
                dropped_injected: peer.dropped_injected,
                rtp_datagrams_sent: peer.rtp_datagrams_sent,
                keyframe_requests: peer.keyframe_requests,
                unstamped: peer.unstamped,
                video_runs,
                link_class: peer.spec.link.as_ref().map(|l| l.class),
                downlink: peer.downlink.as_ref().map(|l| l.link.stats().clone()),
                uplink: peer.uplink.as_ref().map(|l| l.link.stats().clone()),
            });
            peer.rtc.disconnect();
        }
        report.cpu_ns = crate::procfs::thread_cpu_ns().unwrap_or(0);
        report
    }
}

impl SentStream {
    fn new(publisher: u32, kind: Kind) -> SentStream {
        SentStream {
            publisher,
            kind,
            rid: None,
            bitrate_bps: None,
            sent_window: 0,
            sent_total: 0,
            frames: 0,
            keyframes: 0,
        }
    }
}

type Timers = BinaryHeap<Reverse<(Instant, usize, Timer)>>;

impl Peer {
    fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        if let Some(downlink) = &mut self.downlink {
            if let Some(at) = downlink.hold(now, source, datagram) {
                ctx.schedule(at, self.slot, Timer::Downlink);
            }
            return;
        }
        self.feed(now, source, datagram, ctx);
    }

    /// Hands the datagrams of the downlink that are due to the `Rtc`.
    fn deliver_downlink(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if !self.downlink.as_mut().is_some_and(|l| l.wake(at)) {
            return;
        }
        while let Some((source, datagram)) =
            self.downlink.as_mut().and_then(|l| l.link.deliver(now))
        {
            self.feed(now, source, &datagram, ctx);
        }
        if let Some(next) = self.downlink.as_mut().and_then(HeldLink::rearm) {
            ctx.schedule(next, self.slot, Timer::Downlink);
        }
    }

    /// Sends the datagrams of the uplink that are due.
    fn deliver_uplink(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if !self.uplink.as_mut().is_some_and(|l| l.wake(at)) {
            return;
        }
        while let Some((destination, datagram)) =
            self.uplink.as_mut().and_then(|l| l.link.deliver(now))
        {
            self.send_datagram(&datagram, destination, ctx);
        }
        if let Some(next) = self.uplink.as_mut().and_then(HeldLink::rearm) {
            ctx.schedule(next, self.slot, Timer::Uplink);
        }
    }

    /// A datagram from the hub reaches the `Rtc`.
    fn feed(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(peer = self.spec.id, "datagram refused: {e}");
        }
        self.drive(now, ctx);
    }

    /// Polls the `Rtc` until it has nothing more to say.
    fn drive(&mut self, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        for _ in 0..100_000 {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.transmit(now, &t.contents, t.destination, ctx),
                Ok(Output::Event(event)) => self.handle_event(now, event, ctx),
                Ok(Output::Timeout(at)) => {
                    if at <= now {
                        let _ = self.rtc.handle_input(Input::Timeout(now));
                        continue;
                    }
                    if self.next_rtc != Some(at) {
                        self.next_rtc = Some(at);
                        ctx.schedule(at, self.slot, Timer::Rtc);
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = self.spec.id, "rtc failed: {e}");
                    if self.status.error.is_none() {
                        self.status.error = Some(e.to_string());
                        ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.rtc.disconnect();
                    self.dead = true;
                    break;
                }
            }
        }
        if !self.rtc.is_alive() {
            self.status.closed = true;
            self.dead = true;
        }
    }

    fn transmit(&mut self, now: Instant, contents: &[u8], destination: SocketAddr, ctx: &mut Ctx) {
        if is_rtp(contents) {
            if self.spec.drop_percent > 0.0 && self.drop_rng.unit() * 100.0 < self.spec.drop_percent
            {
                self.dropped_injected += 1;
                return;
            }
            self.rtp_datagrams_sent += 1;
        }
        if let Some(uplink) = &mut self.uplink {
            if let Some(at) = uplink.hold(now, destination, contents) {
                ctx.schedule(at, self.slot, Timer::Uplink);
            }
            return;
        }
        self.send_datagram(contents, destination, ctx);
    }

    fn send_datagram(&mut self, contents: &[u8], destination: SocketAddr, ctx: &mut Ctx) {
        match self.socket.send_to(contents, destination) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ctx.report.send_would_block += 1,
            Err(_) => ctx.report.send_errors += 1,
        }
    }

    fn handle_event(&mut self, now: Instant, event: Event, ctx: &mut Ctx) {
        match event {
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.status.ice_connected_ns.is_none() => {
                self.status.ice_connected_ns = Some(ctx.clock.ns(now));
                ctx.progress.ice_connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.status.ice_connected_ns.is_some() =>
            {
                self.status.disconnected = true;
            }
            Event::Connected => {
                if self.status.connected_ns.is_none() {
                    self.status.connected_ns = Some(ctx.clock.ns(now));
                    ctx.progress.connected.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(a) = &mut self.audio
                    && a.next.is_none()
                {
                    a.next = Some(now);
                    ctx.schedule(now, self.slot, Timer::Audio);
                }
                if let Some(v) = &mut self.video
                    && v.next.is_none()
                {
                    v.next = Some(now);
                    ctx.schedule(now, self.slot, Timer::Video);
                }
            }
            Event::RtpPacket(packet) => {
                let Some(kind) = self.kind_of(packet.header.payload_type) else {
                    self.unstamped += 1;
                    return;
                };
                let Some(stamp) = Stamp::parse(kind, &packet.payload) else {
                    self.unstamped += 1;
                    return;
                };
                let arrival = ctx.clock.ns(now);
                let in_window = ctx.window.contains(stamp.sent_ns);
                let first = self
                    .received
                    .entry((stamp.publisher, kind, stamp.layer))
                    .or_default()
                    .record(&stamp, packet.payload.len(), arrival, in_window);
                if in_window && kind == Kind::Video {
                    self.video_runs
                        .entry(stamp.publisher)
                        .or_default()
                        .record(&stamp, arrival);
                }
                if self.status.first_media_ns.is_none() {
                    self.status.first_media_ns = Some(arrival);
                    ctx.progress.receiving.fetch_add(1, Ordering::Relaxed);
                }
                if first && in_window {
                    let delay_us = arrival.saturating_sub(stamp.sent_ns) / 1000;
                    if stamp.publisher == STUDIO {
                        ctx.report.downstream_delay.record(delay_us);
                        ctx.report
                            .downstream_delay_by_class
                            .entry(self.spec.link.as_ref().map(|l| l.class))
                            .or_default()
                            .record(delay_us);
                    } else {
                        ctx.report.upstream_delay.record(delay_us);
                    }
                }
            }
            Event::KeyframeRequest(request) => {
                if let Some(v) = &mut self.video
                    && v.mid == request.mid
                {
                    // Without a rid, every layer: the request names no layer.
                    for layer in &mut v.layers {
                        if request.rid.is_none() || layer.rid == request.rid {
                            layer.encoder.request_keyframe();
                        }
                    }
                    self.keyframe_requests += 1;
                }
            }
            _ => {}
        }
    }

    fn kind_of(&mut self, pt: Pt) -> Option<Kind> {
        if let Some(kind) = self.kinds_by_pt.get(&pt) {
            return *kind;
        }
        let kind = self
            .rtc
            .codec_config()
            .find(|p| p.pt() == pt || p.resend() == Some(pt))
            .map(|p| {
                if p.spec().codec.is_audio() {
                    Kind::Audio
                } else {
                    Kind::Video
                }
            });
        self.kinds_by_pt.insert(pt, kind);
        kind
    }

    fn send_audio(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        let Some(a) = self.audio.as_mut().filter(|a| a.next == Some(at)) else {
            return;
        };
        let next = next_tick(at, AudioEncoder::INTERVAL, now, &mut ctx.report);
        a.next = Some(next);
        ctx.schedule(next, self.slot, Timer::Audio);
        if a.pt.is_none() {
            a.pt = payload_type(&self.rtc, a.mid, Codec::Opus);
        }
        let Some(pt) = a.pt else {
            return;
        };
        let sent_ns = ctx.clock.ns(now);
        let in_window = ctx.window.contains(sent_ns);
        let (size, rtp_time) = a.encoder.next_packet();
        let payload = media::audio_payload(
            size,
            Stamp {
                sent_ns,
                publisher: self.spec.id,
                index: a.index,
                layer: 0,
            },
        );
        a.index = a.index.wrapping_add(1);
        a.seq += 1;
        let seq = a.seq;
        a.stats.sent_total += 1;
        if in_window {
            a.stats.sent_window += 1;
        }
        if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(a.mid, None) {
            stream.write_rtp(
                RtpWrite::new(pt, seq.into(), rtp_time, now, payload)
                    .marker(false)
                    .nackable(false),
            );
        }
        self.drive(now, ctx);
    }

    fn send_video(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        let Some(v) = self.video.as_mut().filter(|v| v.next == Some(at)) else {
            return;
        };
        let interval = v.layers.first().map_or(Duration::from_millis(33), |l| {
            l.encoder.profile().frame_interval()
        });
        let next = next_tick(at, interval, now, &mut ctx.report);
        v.next = Some(next);
        ctx.schedule(next, self.slot, Timer::Video);
        if v.pt.is_none() {
            v.pt = payload_type(&self.rtc, v.mid, Codec::Vp8);
        }
        let Some(pt) = v.pt else {
            return;
        };
        let (mid, layers) = (v.mid, v.layers.len());
        for layer in 0..layers {
            self.send_frame(layer, mid, pt, now, ctx);
        }
    }

    /// Encodes and writes the next frame of one video layer.
    fn send_frame(&mut self, layer: usize, mid: Mid, pt: Pt, now: Instant, ctx: &mut Ctx) {
        let publisher = self.spec.id;
        let Some(l) = self.video.as_mut().and_then(|v| v.layers.get_mut(layer)) else {
            return;
        };
        let frame = l.encoder.next_frame();
        let profile = *l.encoder.profile();
        let payloads = media::video_payloads(
            &frame,
            &profile,
            Stamp {
                sent_ns: ctx.clock.ns(now),
                publisher,
                index: l.index,
                layer: layer as u8,
            },
        );
        let count = payloads.len();
        l.index = l.index.wrapping_add(count as u32);
        l.stats.frames += 1;
        if frame.keyframe {
            l.stats.keyframes += 1;
        }
        l.stats.sent_total += count as u64;
        let first_seq = l.seq + 1;
        l.seq += count as u64;
        let rid = l.rid;
        // Each packet is stamped when it is handed to str0m and sent at once, so a keyframe's
        // last packet does not count the time spent encrypting the ones before it as delay.
        for (i, mut payload) in payloads.into_iter().enumerate() {
            let at = if i == 0 { now } else { Instant::now() };
            let sent_ns = ctx.clock.ns(at);
            media::restamp(Kind::Video, &mut payload, sent_ns);
            if ctx.window.contains(sent_ns)
                && let Some(l) = self.video.as_mut().and_then(|v| v.layers.get_mut(layer))
            {
                l.stats.sent_window += 1;
            }
            if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(mid, rid) {
                stream.write_rtp(
                    RtpWrite::new(
                        pt,
                        (first_seq + i as u64).into(),
                        frame.rtp_time,
                        now,
                        payload,
                    )
                    .marker(i + 1 == count)
                    .nackable(true),
                );
            }
            self.drive(at, ctx);
        }
    }
}

/// The next media tick after `at`; when the thread fell far behind, restart from `now` rather
/// than send a burst of stale frames.
fn next_tick(at: Instant, interval: Duration, now: Instant, report: &mut ThreadReport) -> Instant {
    let next = at + interval;
    if next + Duration::from_millis(100) < now {
        report.late_media_timers += 1;
        now + interval
    } else {
        next
    }
}

/// The payload type negotiated for `codec` on `mid`.
fn payload_type(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config()
        .find(|p| p.spec().codec == codec && (remote.is_empty() || remote.contains(&p.pt())))
        .map(|p| p.pt())
}

/// An RTP (not RTCP, STUN or DTLS) datagram, by RFC 5761/7983 demultiplexing.
fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(64..=95).contains(&(second & 0x7F)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demultiplexes_rtp() {
        assert!(is_rtp(&[0x80, 96, 0, 0]));
        assert!(is_rtp(&[0x80, 0x80 | 111]));
        assert!(!is_rtp(&[0x80, 200]), "RTCP sender report");
        assert!(!is_rtp(&[0x81, 201]), "RTCP receiver report");
        assert!(!is_rtp(&[0x00, 0x01]), "STUN");
        assert!(!is_rtp(&[22, 254]), "DTLS");
    }
}
