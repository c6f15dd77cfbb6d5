//! Recording benchmark: the CPU time the recording thread spends per recorded packet.
//!
//! `cargo bench --bench recording` (add `-- --quick` for 60 s of programme instead of 600 s)
//! feeds the recording thread the packets of a programme as the media workers hand them out
//! (VP8 at 30 fps in 1,100-byte packets, a keyframe each second, and the studio's and a floor
//! holder's Opus at 50 packets/s each), as fast as it takes them, and reads the process's CPU
//! time (the thread's work, plus handing the packets over) and the file written. Prints a
//! table; the figures go into BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diemcau::meeting::RecordingSources;
use diemcau::recording::{Command, Recordings, Report};
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::str0m::rtp::ExtensionValues;
use diemcau_sfu::{MediaPacket, ProducerId, RouterId};
use diemcau_signaling::MeetingId;

const VIDEO: ProducerId = ProducerId(1);
const STUDIO_AUDIO: ProducerId = ProducerId(2);
const FLOOR_AUDIO: ProducerId = ProducerId(3);
/// Payload bytes per video packet (after the descriptor) and packets per frame: 30 fps of
/// this is a 1.3 Mbit/s picture, keyframes three times larger.
const VIDEO_CHUNK: usize = 1_100;
const PACKETS_PER_FRAME: usize = 5;

fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    time(usage.user_time()) + time(usage.system_time())
}

#[allow(clippy::too_many_arguments)] // one packet's fields, named at each call
fn packet(
    producer: ProducerId,
    codec: Codec,
    seq: u64,
    timestamp: u32,
    marker: bool,
    keyframe_start: Option<bool>,
    payload: Vec<u8>,
    received_at: Instant,
) -> Arc<MediaPacket> {
    Arc::new(MediaPacket {
        router: RouterId(1),
        producer,
        kind: if codec == Codec::Vp8 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        },
        codec,
        seq_no: seq.into(),
        timestamp,
        marker,
        extensions: ExtensionValues::default(),
        layer: 0,
        vp8: None,
        keyframe_start,
        payload: payload.into(),
        received_at,
    })
}

/// The packets of `seconds` of programme, in arrival order.
fn programme(seconds: u64, start: Instant) -> Vec<Arc<MediaPacket>> {
    let mut packets = Vec::new();
    let mut video_seq = 1000u64;
    let mut audio_seq = [(STUDIO_AUDIO, 1000u64), (FLOOR_AUDIO, 5000u64)];
    for ms in 0..seconds * 1000 {
        let at = start + Duration::from_millis(ms);
        if ms % 20 == 0 {
            for (producer, seq) in &mut audio_seq {
                let ts = (ms * 48) as u32;
                let mut opus = vec![0xf8u8];
                opus.extend((0..79u64).map(|n| (n + ms) as u8));
                packets.push(packet(
                    *producer,
                    Codec::Opus,
                    *seq,
                    ts,
                    false,
                    None,
                    opus,
                    at,
                ));
                *seq += 1;
            }
        }
        if ms % 33 == 0 {
            let frame = ms / 33;
            let keyframe = frame % 30 == 0;
            let count = if keyframe {
                PACKETS_PER_FRAME * 3
            } else {
                PACKETS_PER_FRAME
            };
            for p in 0..count {
                let first = p == 0;
                let mut payload = vec![if first { 0x10 } else { 0x00 }];
                if first {
                    // A keyframe's (or interframe's) first bytes, then filler.
                    payload.extend([
                        if keyframe { 0x50 } else { 0x51 },
                        0x42,
                        0x00,
                        0x9d,
                        0x01,
                        0x2a,
                        0x80,
                        0x02,
                        0x68,
                        0x01,
                    ]);
                }
                payload.resize(VIDEO_CHUNK + 1, (frame % 251) as u8);
                let ts = (frame * 3000) as u32;
                packets.push(packet(
                    VIDEO,
                    Codec::Vp8,
                    video_seq,
                    ts,
                    p + 1 == count,
                    Some(first && keyframe),
                    payload,
                    at,
                ));
                video_seq += 1;
            }
        }
    }
    packets
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 60 } else { 600 };
    let dir = std::env::temp_dir().join(format!("diemcau-bench-recording-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (taps_tx, taps) = crossbeam_channel::bounded(1 << 20);
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let recordings = Recordings::start(dir.clone(), 0, taps, reports_tx).expect("recording thread");
    let start = Instant::now();
    let packets = programme(seconds, start);
    let count = packets.len();
    let meeting = MeetingId(1);
    recordings.send(Command::Start {
        meeting,
        router: RouterId(1),
        part: 1,
        path: recordings.path(meeting, 1),
        sources: RecordingSources {
            video: Some((VIDEO, 1)),
            programme_audio: Some(STUDIO_AUDIO),
            floor_audio: Some(FLOOR_AUDIO),
        },
    });
    let before = cpu_time();
    let wall = Instant::now();
    for p in packets {
        taps_tx.send(p).expect("the thread takes packets");
    }
    while !taps_tx.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    recordings.send(Command::Stop {
        meeting,
        reason: diemcau::attendance::RecordingStop::MeetingEnded,
    });
    let bytes = loop {
        match reports.blocking_recv() {
            Some(Report::Stopped { bytes, .. }) => break bytes,
            Some(_) => {}
            None => panic!("the recording thread is gone"),
        }
    };
    let cpu = cpu_time() - before;
    let wall = wall.elapsed();
    println!("| programme | packets | CPU | CPU per packet | wall | file |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {seconds} s | {count} | {:.2} s | {:.2} µs | {:.2} s | {:.1} MB |",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / count as f64,
        wall.as_secs_f64(),
        bytes as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
