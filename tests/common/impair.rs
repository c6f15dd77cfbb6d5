//! A UDP impairment relay for end-to-end tests: it sits between browsers and the hub's media
//! port and gives each named path a link of its own, per direction: a rate cap with a drop-tail
//! queue, a fixed delay and random loss. This kernel has no `netem`, and a relay on loopback
//! needs no root.
//!
//! Each path has one client-facing UDP port; the browser is made to send there (its page
//! rewrites the hub's ICE candidate). Every client address seen on that port gets a socket of
//! its own toward the hub, so the hub sees one remote address per browser candidate, as it
//! would without the relay. Everything runs on one thread, woken by mio for a datagram, a
//! control command or the next release from a queue.
//!
//! Control (one UDP datagram of text to [`Relay::control_address`], answered with one):
//! `set NAME down|up rate=BPS|none delay=MS loss=PERMILLE` (fields optional) → `ok`, and
//! `stats` → one line per path and direction with the datagrams delivered and dropped, and the
//! RTP packets delivered per payload type (`rtp=63:1200,96:5400`).

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

/// One direction of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkSettings {
    /// The link's rate in bits per second; `None`: unlimited.
    pub rate_bps: Option<u64>,
    pub delay: Duration,
    /// Random loss, in datagrams per thousand.
    pub loss_permille: u32,
}

/// The relay: its paths by name, and the thread that moves their datagrams. Dropping it stops
/// the thread. States: running → stopped (dropped).
#[derive(Debug)]
pub struct Relay {
    paths: Vec<(String, SocketAddr)>,
    control: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay toward `hub` with one unimpaired path per name, on 127.0.0.1.
    pub fn start(hub: SocketAddr, names: &[&str]) -> io::Result<Relay> {
        let paths: Vec<(&str, SocketAddr)> = names.iter().map(|n| (*n, loopback())).collect();
        Relay::start_at(hub, &paths)
    }

    /// Starts a relay toward `hub` with one unimpaired path per `(name, client-facing address)`
    /// (say the address a hub announces while it listens elsewhere).
    pub fn start_at(hub: SocketAddr, named: &[(&str, SocketAddr)]) -> io::Result<Relay> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let mut sockets = Vec::new();
        let mut control = UdpSocket::bind(loopback())?;
        poll.registry()
            .register(&mut control, Token(0), Interest::READABLE)?;
        let control_address = control.local_addr()?;
        sockets.push(Socket {
            socket: control,
            role: Role::Control,
        });
        let mut paths = Vec::new();
        let mut state = Vec::new();
        for (index, (name, address)) in named.iter().enumerate() {
            let mut socket = UdpSocket::bind(*address)?;
            roomy(&socket);
            let token = Token(sockets.len());
            poll.registry()
                .register(&mut socket, token, Interest::READABLE)?;
            paths.push(((*name).to_owned(), socket.local_addr()?));
            sockets.push(Socket {
                socket,
                role: Role::Client { path: index },
            });
            state.push(Path {
                name: (*name).to_owned(),
                client_socket: token,
                toward_hub: HashMap::new(),
                down: Pipe::new(2 * index as u64 + 1),
                up: Pipe::new(2 * index as u64 + 2),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut run = Run {
            poll,
            sockets,
            paths: state,
            hub,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("impair-relay".into())
            .spawn(move || {
                if let Err(error) = run.run() {
                    eprintln!("impairment relay stopped: {error}");
                }
            })?;
        Ok(Relay {
            paths,
            control: control_address,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The client-facing address of path `name`.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.paths
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, address)| *address)
    }

    pub fn control_address(&self) -> SocketAddr {
        self.control
    }

    /// Sends one control command (see the module's documentation) and returns the answer.
    pub fn command(&self, text: &str) -> io::Result<String> {
        let socket = std::net::UdpSocket::bind(loopback())?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        socket.send_to(text.as_bytes(), self.control)?;
        let mut buf = vec![0u8; 65_536];
        let n = socket.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A failed wake only delays the stop until the next datagram or the poll's timeout.
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const WAKE: Token = Token(usize::MAX);
/// Longest a datagram may wait in a rate-capped queue before it is dropped (a modest router
/// buffer).
const MAX_QUEUE: Duration = Duration::from_millis(200);
/// The poll's longest sleep, so a stop is seen even without a wake.
const IDLE: Duration = Duration::from_millis(100);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[derive(Debug)]
struct Socket {
    socket: UdpSocket,
    role: Role,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Control,
    /// A path's client-facing port.
    Client {
        path: usize,
    },
    /// A path's socket toward the hub for one client address.
    Hub {
        path: usize,
        client: SocketAddr,
    },
}

#[derive(Debug)]
struct Path {
    name: String,
    client_socket: Token,
    toward_hub: HashMap<SocketAddr, Token>,
    /// Hub to client.
    down: Pipe,
    /// Client to hub.
    up: Pipe,
}

/// One direction's queue: datagrams with their release instant, the socket to send them from
/// and their destination.
#[derive(Debug)]
struct Pipe {
    settings: LinkSettings,
    queue: VecDeque<(Instant, Token, SocketAddr, Vec<u8>)>,
    next_free: Option<Instant>,
    rng: u64,
    delivered: u64,
    queue_drops: u64,
    loss_drops: u64,
    /// RTP packets delivered per payload type (SRTP leaves the RTP header readable).
    payload_types: std::collections::BTreeMap<u8, u64>,
}

impl Pipe {
    fn new(seed: u64) -> Pipe {
        Pipe {
            settings: LinkSettings::default(),
            queue: VecDeque::new(),
            next_free: None,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            delivered: 0,
            queue_drops: 0,
            loss_drops: 0,
            payload_types: std::collections::BTreeMap::new(),
        }
    }

    fn push(&mut self, now: Instant, from: Token, to: SocketAddr, datagram: Vec<u8>) {
        // xorshift64: a fixed, cheap sequence per pipe.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.rng % 1000 < u64::from(self.settings.loss_permille) {
            self.loss_drops += 1;
            return;
        }
        let mut release = now;
        if let Some(rate) = self.settings.rate_bps {
            let start = self.next_free.unwrap_or(now).max(now);
            if start.saturating_duration_since(now) > MAX_QUEUE {
                self.queue_drops += 1;
                return;
            }
            let bits = (datagram.len() as u64 + UDP_IP_OVERHEAD) * 8;
            let serialise = Duration::from_nanos(bits * 1_000_000_000 / rate.max(1));
            self.next_free = Some(start + serialise);
            release = start + serialise;
        }
        let release = (release + self.settings.delay).max(self.queue.back().map_or(now, |q| q.0));
        self.queue.push_back((release, from, to, datagram));
    }

    fn next_release(&self) -> Option<Instant> {
        self.queue.front().map(|(at, ..)| *at)
    }
}

/// The payload type of an RTP packet (version 2, not RTCP: RFC 5761 keeps RTCP's packet types
/// 192-223 apart), `None` for anything else (STUN, DTLS, RTCP).
fn rtp_payload_type(datagram: &[u8]) -> Option<u8> {
    let (first, second) = (*datagram.first()?, *datagram.get(1)?);
    (first >> 6 == 2 && datagram.len() >= 12 && !(192..=223).contains(&second))
        .then_some(second & 0x7f)
}

/// IPv4 and UDP headers, counted against the rate as a real link would.
const UDP_IP_OVERHEAD: u64 = 28;

struct Run {
    poll: Poll,
    sockets: Vec<Socket>,
    paths: Vec<Path>,
    hub: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Run {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let next = self
                .paths
                .iter()
                .flat_map(|p| [p.down.next_release(), p.up.next_release()])
                .flatten()
                .min();
            let timeout = next.map_or(IDLE, |at| at.saturating_duration_since(now).min(IDLE));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let ready: Vec<Token> = events.iter().map(|e| e.token()).collect();
            for token in ready {
                if token != WAKE {
                    self.drain(token, &mut buf)?;
                }
            }
            self.release(Instant::now());
        }
        Ok(())
    }

    /// Reads every datagram waiting on `token`'s socket.
    fn drain(&mut self, token: Token, buf: &mut [u8]) -> io::Result<()> {
        loop {
            let Some(socket) = self.sockets.get(token.0) else {
                return Ok(());
            };
            let (len, source) = match socket.socket.recv_from(buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // An ICMP error from an earlier send (a closed browser port): not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let datagram = buf.get(..len).unwrap_or_default().to_vec();
            let role = socket.role;
            let now = Instant::now();
            match role {
                Role::Control => {
                    let reply = self.command(&String::from_utf8_lossy(&datagram));
                    if let Some(control) = self.sockets.first() {
                        let _ = control.socket.send_to(reply.as_bytes(), source);
                    }
                }
                Role::Client { path } => {
                    let hub_socket = self.socket_toward_hub(path, source)?;
                    let hub = self.hub;
                    if let Some(p) = self.paths.get_mut(path) {
                        p.up.push(now, hub_socket, hub, datagram);
                    }
                }
                Role::Hub { path, client } => {
                    if source != self.hub {
                        continue;
                    }
                    if let Some(p) = self.paths.get_mut(path) {
                        let from = p.client_socket;
                        p.down.push(now, from, client, datagram);
                    }
                }
            }
        }
    }

    fn socket_toward_hub(&mut self, path: usize, client: SocketAddr) -> io::Result<Token> {
        if let Some(token) = self.paths.get(path).and_then(|p| p.toward_hub.get(&client)) {
            return Ok(*token);
        }
        let mut socket = UdpSocket::bind(loopback())?;
        roomy(&socket);
        let token = Token(self.sockets.len());
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)?;
        self.sockets.push(Socket {
            socket,
            role: Role::Hub { path, client },
        });
        if let Some(p) = self.paths.get_mut(path) {
            p.toward_hub.insert(client, token);
        }
        Ok(token)
    }

    /// Sends every datagram whose release instant has come.
    fn release(&mut self, now: Instant) {
        for path in &mut self.paths {
            for pipe in [&mut path.down, &mut path.up] {
                while pipe.next_release().is_some_and(|at| at <= now) {
                    let Some((_, from, to, datagram)) = pipe.queue.pop_front() else {
                        break;
                    };
                    if let Some(socket) = self.sockets.get(from.0) {
                        // A full socket buffer counts as a drop, like a router's.
                        match socket.socket.send_to(&datagram, to) {
                            Ok(_) => {
                                pipe.delivered += 1;
                                if let Some(pt) = rtp_payload_type(&datagram) {
                                    *pipe.payload_types.entry(pt).or_default() += 1;
                                }
                            }
                            Err(_) => pipe.queue_drops += 1,
                        }
                    }
                }
            }
        }
    }

    fn command(&mut self, text: &str) -> String {
        let mut words = text.split_whitespace();
        match words.next() {
            Some("stats") => self
                .paths
                .iter()
                .flat_map(|p| {
                    [("down", &p.down), ("up", &p.up)].map(|(direction, pipe)| {
                        let types: Vec<String> = pipe
                            .payload_types
                            .iter()
                            .map(|(pt, n)| format!("{pt}:{n}"))
                            .collect();
                        format!(
                            "{} {direction} delivered={} queue_drops={} loss_drops={} rtp={}",
                            p.name,
                            pipe.delivered,
                            pipe.queue_drops,
                            pipe.loss_drops,
                            types.join(",")
                        )
                    })
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some("set") => {
                let (Some(name), Some(direction)) = (words.next(), words.next()) else {
                    return "error: set NAME down|up [rate=BPS|none] [delay=MS] [loss=PERMILLE]"
                        .into();
                };
                let Some(path) = self.paths.iter_mut().find(|p| p.name == name) else {
                    return format!("error: no path {name}");
                };
                let pipe = match direction {
                    "down" => &mut path.down,
                    "up" => &mut path.up,
                    other => return format!("error: direction {other}"),
                };
                let mut settings = pipe.settings;
                for field in words {
                    let parsed = match field.split_once('=') {
                        Some(("rate", "none")) => {
                            settings.rate_bps = None;
                            Some(())
                        }
                        Some(("rate", v)) => v.parse().ok().map(|v| settings.rate_bps = Some(v)),
                        Some(("delay", v)) => v
                            .parse()
                            .ok()
                            .map(|v| settings.delay = Duration::from_millis(v)),
                        Some(("loss", v)) => v.parse().ok().map(|v| settings.loss_permille = v),
                        _ => None,
                    };
                    if parsed.is_none() {
                        return format!("error: {field}");
                    }
                }
                pipe.settings = settings;
                "ok".into()
            }
            _ => "error: unknown command".into(),
        }
    }
}

/// Gives a relay socket the receive buffer a hub's media socket asks for, so that the relay
/// thread, on a busy machine, loses no datagram but those its settings say.
fn roomy(socket: &UdpSocket) {
    let _ = socket2::SockRef::from(socket).set_recv_buffer_size(4 << 20);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(control: &std::net::UdpSocket, relay: &Relay, text: &str) -> String {
        control
            .send_to(text.as_bytes(), relay.control_address())
            .expect("send");
        let mut buf = [0u8; 2048];
        let (n, _) = control.recv_from(&mut buf).expect("reply");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn the_relay_carries_both_ways_and_caps_the_rate() {
        let hub = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let control = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for s in [&hub, &client, &control] {
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        let relay = Relay::start(hub.local_addr().expect("addr"), &["a"]).expect("relay");
        let path = relay.address("a").expect("path a");
        let mut buf = [0u8; 2048];

        client.send_to(b"hello", path).expect("send");
        let (n, relay_side) = hub.recv_from(&mut buf).expect("uplink");
        assert_eq!(&buf[..n], b"hello");
        hub.send_to(b"back", relay_side).expect("send");
        let (n, from) = client.recv_from(&mut buf).expect("downlink");
        assert_eq!((&buf[..n], from), (&b"back"[..], path));

        // 100 datagrams of 972 bytes (8 kbit with headers) into an 80 kbit/s link: 10 per
        // second get through, and the 200 ms queue holds about two.
        assert_eq!(command(&control, &relay, "set a down rate=80000"), "ok");
        for _ in 0..100 {
            hub.send_to(&[0u8; 972], relay_side).expect("send");
        }
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut got = 0;
        while client.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        assert!((2..=8).contains(&got), "{got} datagrams through the cap");
        let stats = command(&control, &relay, "stats");
        assert!(stats.contains("a down delivered="), "{stats}");
    }
}
