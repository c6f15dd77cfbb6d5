//! Per-packet cost of the media core, without IO: one studio publishing into a
//! `diemcau_sfu::Worker` with 1, 10 or 100 consumers, all peers in memory (str0m clients of
//! `diemcau_sfu::testkit`), virtual clock.
//!
//! One iteration is one studio video packet (1,200-byte payload, about 300 a second of virtual
//! time, as a 2.5 Mbit/s stream sends them) and everything the worker does meanwhile: SRTP
//! decryption of the studio's packet, routing, per consumer str0m's RTP write, pacing and SRTP
//! encryption, and its share of the timers and of the sites' feedback (receiver reports,
//! transport-wide congestion control, which the hub's bandwidth allocation needs to keep
//! forwarding video). Only the worker's own calls are timed: the in-memory clients are not,
//! and no syscall is made. Criterion's throughput (elements/s) counts forwarded packets.
//!
//! `cargo bench -p diemcau-sfu --bench routing`; `ROUTING_CONSUMERS=10,100` sets up and runs
//! only those sizes (criterion's own filter still sets up every size before it skips one).

#![allow(clippy::indexing_slicing)] // fixtures: the studio is always client 0

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::{Direction, MediaKind, Pt};
use diemcau_sfu::str0m::rtp::RtpWrite;
use diemcau_sfu::testkit::{ClientConfig, Net};

const STUDIO: PeerId = PeerId(1);
/// Virtual time between two studio packets: a 2.5 Mbit/s stream sends about 300 a second.
const PACKET_SPACING: Duration = Duration::from_micros(3_300);
/// Packets per video frame: a marker and a new RTP timestamp every this many.
const FRAME_PACKETS: u64 = 8;

/// One worker, a publishing studio and `consumers` receiving sites.
struct Bench {
    net: Net,
    seq: u64,
    pt: Option<Pt>,
}

/// Sites receive the studio; the studio receives nothing (the sites publish nothing).
fn studio_to_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    publisher == STUDIO && subscriber != STUDIO
}

impl Bench {
    fn new(consumers: usize) -> Bench {
        let mut net = Net::new(studio_to_sites);
        net.join_client(STUDIO, ClientConfig::default());
        let site = ClientConfig {
            audio: Some(Direction::RecvOnly),
            video: false,
            ..ClientConfig::default()
        };
        for i in 0..consumers {
            net.join_client(PeerId(2 + i as u64), site);
        }
        // ICE, DTLS and the consumers' renegotiation settle.
        net.run(Duration::from_millis(1_500), |_| {});
        assert!(
            net.clients.iter().all(|c| c.connected),
            "every client connected"
        );
        let pt = net.clients[0]
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt());
        let mut bench = Bench { net, seq: 0, pt };
        // A few seconds of streaming: keyframes requested, bandwidth estimates settled.
        bench.run(3_000);
        let before = bench.net.workers[0].stats().packets_forwarded;
        let packets = 1_000;
        bench.run(packets);
        let forwarded = bench.net.workers[0].stats().packets_forwarded - before;
        assert!(
            forwarded >= packets * consumers as u64 * 9 / 10,
            "{forwarded} packets forwarded of {packets} to {consumers} consumers"
        );
        bench
    }

    /// Streams `packets` studio video packets; returns the time spent in the worker.
    fn run(&mut self, packets: u64) -> Duration {
        self.net.step = PACKET_SPACING;
        let before = self.net.worker_time;
        for _ in 0..packets {
            let (seq, pt) = (&mut self.seq, self.pt);
            self.net
                .run(PACKET_SPACING, |net| studio_writes(net, seq, pt));
        }
        self.net.worker_time - before
    }
}

/// The studio's str0m writes (and, when polled, encrypts) its next video packet.
fn studio_writes(net: &mut Net, seq: &mut u64, pt: Option<Pt>) {
    let now = net.now;
    let studio = net.client(STUDIO);
    let Some(mid) = studio
        .send_mids
        .iter()
        .find(|(kind, _)| *kind == MediaKind::Video)
        .map(|(_, mid)| *mid)
    else {
        return;
    };
    let Some(pt) = pt else {
        return;
    };
    *seq += 1;
    let first = *seq % FRAME_PACKETS == 1;
    let mut payload = vec![0u8; 1200];
    // VP8 payload descriptor (start of a partition), then a frame tag: every frame a
    // keyframe, so a consumer can start or switch at any frame.
    payload[0] = if first { 0x10 } else { 0x00 };
    let rtp_time = (*seq / FRAME_PACKETS * 3000) as u32;
    if let Some(stream) = studio.rtc.direct_api().stream_tx_by_mid(mid, None) {
        stream.write_rtp(
            RtpWrite::new(pt, (*seq).into(), rtp_time, now, payload)
                .marker(seq.is_multiple_of(FRAME_PACKETS))
                .nackable(true),
        );
    }
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_one_video_packet");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for consumers in sizes() {
        let mut bench = Bench::new(consumers);
        let before = bench.net.workers[0].stats();
        let (out_before, in_before) = (bench.net.datagrams_out, bench.net.datagrams_in);
        // Throughput in forwarded packets: criterion's "elem/s" is packets out per second.
        group.throughput(Throughput::Elements(consumers as u64));
        group.bench_function(BenchmarkId::new("consumers", consumers), |b| {
            b.iter_custom(|packets| bench.run(packets))
        });
        let after = bench.net.workers[0].stats();
        let packets_in = (after.packets_received - before.packets_received).max(1);
        eprintln!(
            "  {consumers} consumers: {packets_in} packets in, {} forwarded, {} datagrams out and {} in per packet in",
            after.packets_forwarded - before.packets_forwarded,
            (bench.net.datagrams_out - out_before) / packets_in,
            (bench.net.datagrams_in - in_before) / packets_in,
        );
    }
    group.finish();
}

/// The consumer counts to run: `ROUTING_CONSUMERS` (comma-separated), or 1, 10 and 100.
fn sizes() -> Vec<usize> {
    match std::env::var("ROUTING_CONSUMERS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("ROUTING_CONSUMERS: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![1, 10, 100],
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
