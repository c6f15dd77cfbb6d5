//! Per-packet cost of the media core, without IO: one studio publishing into a
//! `diemcau_sfu::Worker` with 1, 10 or 100 consumers, all peers in memory (str0m clients as in
//! `tests/common`), virtual clock.
//!
//! One iteration is one studio video packet (1,200-byte payload, about 300 a second of virtual
//! time, as a 2.5 Mbit/s stream sends them) and everything the worker does meanwhile: SRTP
//! decryption of the studio's packet, routing, per consumer str0m's RTP write, pacing and SRTP
//! encryption, and its share of the timers and of the sites' feedback (receiver reports,
//! transport-wide congestion control, which the hub's bandwidth allocation needs to keep
//! forwarding video). Only the worker's own calls are timed: the in-memory clients are not,
//! and no syscall is made. Criterion's throughput (elements/s) counts forwarded packets.
//!
//! `cargo bench -p diemcau-sfu --bench routing`

#![allow(clippy::indexing_slicing)] // fixtures: the studio is always client 0

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diemcau_sfu::str0m::change::{SdpAnswer, SdpOffer};
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::{Direction, MediaKind, Mid, Pt};
use diemcau_sfu::str0m::net::{Protocol, Receive};
use diemcau_sfu::str0m::rtp::RtpWrite;
use diemcau_sfu::str0m::{Candidate, Event as RtcEvent, Input, Output as RtcOutput, Rtc};
use diemcau_sfu::{Event, Output, PeerId, ProducerInfo, RouterId, Worker, WorkerConfig};

const HUB: &str = "127.0.0.1:40000";
const STUDIO: PeerId = PeerId(1);
/// Virtual time between two studio packets: a 2.5 Mbit/s stream sends about 300 a second.
const PACKET_SPACING: Duration = Duration::from_micros(3_300);
/// Packets per video frame: a marker and a new RTP timestamp every this many.
const FRAME_PACKETS: u64 = 8;

struct Client {
    peer: PeerId,
    addr: SocketAddr,
    rtc: Rtc,
    video: Option<Mid>,
    connected: bool,
}

/// One worker, a publishing studio and `consumers` receiving sites.
struct Bench {
    now: Instant,
    worker: Worker,
    hub: SocketAddr,
    clients: Vec<Client>,
    seq: u64,
    pt: Option<Pt>,
    /// The studio's tracks, which every site consumes.
    producers: Vec<ProducerInfo>,
    /// Time spent inside the worker's calls.
    spent: Duration,
    /// Datagrams the worker sent, and the sites sent it.
    datagrams_out: u64,
    datagrams_in: u64,
}

impl Bench {
    fn new(consumers: usize) -> Bench {
        let hub: SocketAddr = HUB.parse().expect("hub address");
        let mut bench = Bench {
            now: Instant::now(),
            worker: Worker::new(WorkerConfig::new(vec![hub])),
            hub,
            clients: Vec::new(),
            seq: 0,
            pt: None,
            producers: Vec::new(),
            spent: Duration::ZERO,
            datagrams_out: 0,
            datagrams_in: 0,
        };
        bench.join(STUDIO, true);
        for i in 0..consumers {
            bench.join(PeerId(2 + i as u64), false);
        }
        // ICE, DTLS and the consumers' renegotiation settle.
        for _ in 0..300 {
            bench.now += Duration::from_millis(5);
            bench.worker.handle_timeout(bench.now);
            bench.pump();
        }
        assert!(
            bench.clients.iter().all(|c| c.connected),
            "every client connected"
        );
        bench.pt = bench.clients[0]
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt());
        // A few seconds of streaming: keyframes requested, bandwidth estimates settled.
        bench.run(3_000);
        let before = bench.worker.stats().packets_forwarded;
        let packets = 1_000;
        bench.run(packets);
        let forwarded = bench.worker.stats().packets_forwarded - before;
        assert!(
            forwarded >= packets * consumers as u64 * 9 / 10,
            "{forwarded} packets forwarded of {packets} to {consumers} consumers"
        );
        bench
    }

    fn join(&mut self, peer: PeerId, publish: bool) {
        let index = self.clients.len();
        let addr: SocketAddr = format!("127.0.{}.{}:5000", index / 250, 2 + index % 250)
            .parse()
            .expect("client address");
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let video = if publish {
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None))
        } else {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            None
        };
        let (offer, pending) = api.apply().expect("an offer");
        let answer = self
            .worker
            .add_peer(self.now, peer, RouterId(1), &offer.to_sdp_string())
            .expect("hub accepts the offer");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("client accepts the answer");
        self.clients.push(Client {
            peer,
            addr,
            rtc,
            video,
            connected: false,
        });
        if !publish {
            for info in self.producers.clone() {
                self.worker
                    .add_consumer(peer, &info, u8::MAX)
                    .expect("consumer added");
            }
        }
        self.pump();
    }

    /// Streams `packets` studio video packets; returns the time spent in the worker.
    fn run(&mut self, packets: u64) -> Duration {
        self.spent = Duration::ZERO;
        for _ in 0..packets {
            self.now += PACKET_SPACING;
            let now = self.now;
            let start = Instant::now();
            self.worker.handle_timeout(now);
            self.spent += start.elapsed();
            for c in &mut self.clients {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            self.studio_writes();
            self.pump();
        }
        self.spent
    }

    /// The studio's str0m writes (and, when polled, encrypts) its next video packet.
    fn studio_writes(&mut self) {
        let (Some(pt), Some(mid)) = (self.pt, self.clients[0].video) else {
            return;
        };
        self.seq += 1;
        let now = self.now;
        let first = self.seq % FRAME_PACKETS == 1;
        let mut payload = vec![0u8; 1200];
        // VP8 payload descriptor (start of a partition), then a frame tag: every frame a
        // keyframe, so a consumer can start or switch at any frame.
        payload[0] = if first { 0x10 } else { 0x00 };
        let rtp_time = (self.seq / FRAME_PACKETS * 3000) as u32;
        if let Some(stream) = self.clients[0].rtc.direct_api().stream_tx_by_mid(mid, None) {
            stream.write_rtp(
                RtpWrite::new(pt, self.seq.into(), rtp_time, now, payload)
                    .marker(self.seq.is_multiple_of(FRAME_PACKETS))
                    .nackable(true),
            );
        }
    }

    /// Moves datagrams and events between the worker and the clients until all are quiet,
    /// polling each client right after each datagram (str0m's RTP mode holds one at a time).
    /// The worker's calls are timed.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            let mut to_clients = Vec::new();
            let mut events = Vec::new();
            let start = Instant::now();
            loop {
                match self.worker.poll_output() {
                    Output::Transmit(t) => to_clients.push((t.destination, t.contents.to_vec())),
                    Output::Event(event) => events.push(event),
                    Output::Relay(_) => {}
                    Output::Timeout(at) if at <= self.now => {
                        self.worker.handle_timeout(self.now);
                        busy = true;
                        break;
                    }
                    Output::Timeout(_) => break,
                }
            }
            self.spent += start.elapsed();
            self.datagrams_out += to_clients.len() as u64;
            busy |= !to_clients.is_empty() || !events.is_empty();
            let mut to_hub = Vec::new();
            for (destination, contents) in to_clients {
                let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) else {
                    continue;
                };
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: self.hub,
                        destination,
                        contents: (&contents[..]).try_into().expect("datagram"),
                    },
                );
                let _ = c.rtc.handle_input(input);
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            for event in events {
                self.on_event(event);
            }
            for c in &mut self.clients {
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            self.datagrams_in += to_hub.len() as u64;
            let start = Instant::now();
            for (source, contents) in to_hub {
                self.worker
                    .handle_datagram(self.now, source, self.hub, &contents);
            }
            self.spent += start.elapsed();
            if !busy {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ProducerAdded(info) => self.subscribe_sites(&info),
            Event::Offer { peer, sdp } => {
                let Some(c) = self.clients.iter_mut().find(|c| c.peer == peer) else {
                    return;
                };
                let offer = SdpOffer::from_sdp_string(&sdp).expect("hub offer parses");
                let answer = c.rtc.sdp_api().accept_offer(offer).expect("client answers");
                self.worker
                    .accept_answer(self.now, peer, &answer.to_sdp_string())
                    .expect("hub accepts the answer");
            }
            _ => {}
        }
    }

    fn subscribe_sites(&mut self, info: &ProducerInfo) {
        if info.peer != STUDIO {
            return;
        }
        let sites: Vec<PeerId> = self
            .clients
            .iter()
            .map(|c| c.peer)
            .filter(|p| *p != STUDIO)
            .collect();
        for site in sites {
            self.worker
                .add_consumer(site, info, u8::MAX)
                .expect("consumer added");
        }
        self.producers.push(info.clone());
    }
}

fn poll_client(c: &mut Client, now: Instant, to_hub: &mut Vec<(SocketAddr, Vec<u8>)>) -> bool {
    let mut busy = false;
    loop {
        match c.rtc.poll_output() {
            Ok(RtcOutput::Transmit(t)) => {
                busy = true;
                to_hub.push((c.addr, t.contents.to_vec()));
            }
            Ok(RtcOutput::Event(e)) => {
                busy = true;
                if matches!(e, RtcEvent::Connected) {
                    c.connected = true;
                }
            }
            Ok(RtcOutput::Timeout(at)) if at <= now => {
                busy = true;
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            Ok(RtcOutput::Timeout(_)) | Err(_) => return busy,
        }
    }
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_one_video_packet");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for consumers in [1usize, 10, 100] {
        let mut bench = Bench::new(consumers);
        let before = bench.worker.stats();
        let (out_before, in_before) = (bench.datagrams_out, bench.datagrams_in);
        // Throughput in forwarded packets: criterion's "elem/s" is packets out per second.
        group.throughput(Throughput::Elements(consumers as u64));
        group.bench_function(BenchmarkId::new("consumers", consumers), |b| {
            b.iter_custom(|packets| bench.run(packets))
        });
        let after = bench.worker.stats();
        let packets_in = (after.packets_received - before.packets_received).max(1);
        eprintln!(
            "  {consumers} consumers: {packets_in} packets in, {} forwarded, {} datagrams out and {} in per packet in",
            after.packets_forwarded - before.packets_forwarded,
            (bench.datagrams_out - out_before) / packets_in,
            (bench.datagrams_in - in_before) / packets_in,
        );
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
