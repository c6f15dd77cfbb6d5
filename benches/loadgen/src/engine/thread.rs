//! One engine thread: its peers' sockets on one epoll (mio), their wake-ups in one heap, and
//! the commands of the signalling tasks.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::Input;
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::oneshot;

use super::context::{Ctx, Timer};
use super::peer::Peer;
use super::reports::{EngineError, PeerSpec, PeerStatus, ThreadReport};
use super::tcp;

/// What a signalling task asks of a thread; each reply comes back on its channel.
pub enum Command {
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

/// The way to a running thread: its command queue and the waker of its poll.
#[derive(Debug)]
pub struct ThreadHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl ThreadHandle {
    /// Queues `command` and wakes the thread; `Gone` when it has ended.
    pub fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands.send(command).map_err(|_| EngineError::Gone)?;
        self.waker
            .wake()
            .map_err(|e| EngineError::Io(e.to_string()))
    }
}

/// Starts thread `index`; it runs until [`Command::Finish`].
pub fn spawn(index: usize, mut ctx: Ctx) -> io::Result<(ThreadHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    ctx.registry = Some(poll.registry().try_clone()?);
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (commands, inbox) = crossbeam_channel::unbounded();
    let worker = EngineThread {
        poll,
        inbox,
        peers: Vec::new(),
        slot_of: HashMap::new(),
        ctx,
    };
    let join = std::thread::Builder::new()
        .name(format!("loadgen-{index}"))
        .spawn(move || worker.run())?;
    Ok((ThreadHandle { commands, waker }, join))
}

/// Buffers a batched read fills at most.
const BATCH: usize = 32;
/// Each buffer holds what the kernel coalesced (UDP GRO, which quinn-udp turns on): a hub's
/// GSO send reaches the socket as one buffer of up to 64 segments.
const BATCH_BUFFER: usize = 65_536;

/// The poll token of the waker, out of the range of the peers' slots.
const WAKER: Token = Token(usize::MAX);

/// A thread and its peers. States: running → finished (on [`Command::Finish`], after which it
/// returns its report and ends).
struct EngineThread {
    poll: Poll,
    inbox: Receiver<Command>,
    /// Indexed by slot (the peer's socket token); a closed peer keeps its slot.
    peers: Vec<Peer>,
    slot_of: HashMap<u32, usize>,
    ctx: Ctx,
}

impl EngineThread {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        let mut batch = vec![vec![0u8; BATCH_BUFFER]; BATCH];
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
                match tcp::slot_of(event.token()) {
                    Some(slot) => self.read_tcp(slot, &mut buf),
                    None if self
                        .peers
                        .get(event.token().0)
                        .is_some_and(|p| p.udp_state.is_some()) =>
                    {
                        self.read_batches(event.token().0, &mut batch);
                    }
                    None => self.read_socket(event.token().0, &mut buf),
                }
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

    /// Reads a peer's socket `BATCH` buffers a call (`recvmmsg`), each split at its GRO
    /// stride: header-only reception.
    /// A short batch means the socket was empty (the poll is edge-triggered, and a datagram
    /// arriving later wakes it again).
    fn read_batches(&mut self, slot: usize, batch: &mut [Vec<u8>]) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return;
        };
        let mut meta = [quinn_udp::RecvMeta::default(); BATCH];
        let mut slices: Vec<io::IoSliceMut> =
            batch.iter_mut().map(|b| io::IoSliceMut::new(b)).collect();
        for _ in 0..64 {
            let Some(state) = &peer.udp_state else {
                return;
            };
            let count = match state.recv((&peer.socket).into(), &mut slices, &mut meta) {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue, // ICMP errors from the hub going away: keep reading
            };
            let now = Instant::now();
            let unix_now = peer.spec.kernel_arrivals.then(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
            });
            for (m, b) in meta.iter().zip(slices.iter()).take(count) {
                let arrived = match unix_now {
                    Some(unix_now) => peer.arrivals.arrival(now, unix_now, m.timestamp),
                    None => now,
                };
                let stride = m.stride.max(1);
                for datagram in b.get(..m.len).unwrap_or_default().chunks(stride) {
                    peer.receive(arrived, m.addr, datagram, &mut self.ctx);
                }
            }
            if count < BATCH {
                return;
            }
        }
    }

    /// Writes what waits on a peer's TCP connection and hands the frames that arrived to it.
    fn read_tcp(&mut self, slot: usize, buf: &mut [u8]) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return;
        };
        let Some(path) = &mut peer.tcp else {
            return;
        };
        let frames = path.ready(self.poll.registry(), buf);
        let Some(source) = path.remote() else {
            return;
        };
        let now = Instant::now();
        for frame in frames {
            peer.receive(now, source, &frame, &mut self.ctx);
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
                Timer::Feedback => peer.send_feedback(at, now, &mut self.ctx),
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
                    peer.facts.learn(&sdp);
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
                    peer.facts.learn(&sdp);
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
                    if let Some(path) = &mut peer.tcp {
                        path.fail(self.poll.registry());
                    }
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

        let batched = spec.receive_headers && !spec.tcp;
        let (mut peer, offer) = Peer::new(spec, socket, local, slot, &self.ctx)?;
        if batched {
            peer.udp_state =
                Some(quinn_udp::UdpSocketState::new((&peer.socket).into()).map_err(io)?);
        }
        self.slot_of.insert(peer.spec.id, slot);
        self.peers.push(peer);
        self.ctx.progress.created.fetch_add(1, Ordering::Relaxed);
        if let Some(peer) = self.peers.last_mut() {
            peer.drive(Instant::now(), &mut self.ctx);
        }
        Ok(offer)
    }

    fn finish(&mut self) -> ThreadReport {
        let mut report = std::mem::take(&mut self.ctx.report);
        for peer in &mut self.peers {
            report.peers.push(peer.report());
            peer.rtc.disconnect();
        }
        report.cpu_ns = crate::procfs::thread_cpu_ns().unwrap_or(0);
        report
    }
}
