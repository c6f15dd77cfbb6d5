//! Recording benchmark: the CPU time the recording thread spends per recorded packet.
//!
//! `cargo bench --bench recording` (add `-- --quick` for 60 s of programme instead of 600 s)
//! feeds the recording thread the packets of a programme as the media workers hand them out
//! (VP8 at 30 fps in 1,100-byte packets, a keyframe each second, and the studio's and a floor
//! holder's Opus at 50 packets/s each), as fast as it takes them, and reads the process's CPU
//! time (the thread's work, plus handing the packets over) and the file written; then the same
//! with the picture in H.264 (an encoder's: FU-A fragments, the parameter sets before each
//! keyframe in a STAP-A). Prints a table; the figures go into BENCHMARKS.md.

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
        kind: if matches!(codec, Codec::Vp8 | Codec::H264) {
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

/// x264's sequence and picture parameter sets for 1280x720.
const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

/// Packet `p` of `count` of a frame's payload: VP8 with its descriptor, or H.264 as FU-A
/// fragments of one slice (an IDR one on a keyframe, whose parameter sets come first in a
/// STAP-A packet of their own).
fn video_payload(codec: Codec, frame: u64, keyframe: bool, p: usize, count: usize) -> Vec<u8> {
    let first = p == 0;
    let filler = (frame % 251) as u8;
    if codec == Codec::H264 {
        if keyframe && first {
            let mut stap = vec![0x78];
            for set in [SPS, PPS] {
                stap.extend((set.len() as u16).to_be_bytes());
                stap.extend(set);
            }
            return stap;
        }
        let fragment = if keyframe { p - 1 } else { p };
        let fragments = if keyframe { count - 1 } else { count };
        let (indicator, unit_type) = if keyframe { (0x7c, 5) } else { (0x5c, 1) };
        let mut header = unit_type;
        if fragment == 0 {
            header |= 0x80;
        }
        if fragment + 1 == fragments {
            header |= 0x40;
        }
        let mut payload = vec![indicator, header];
        payload.resize(VIDEO_CHUNK + 2, filler);
        return payload;
    }
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
    payload.resize(VIDEO_CHUNK + 1, filler);
    payload
}

/// The packets of `seconds` of programme with its picture in `codec`, in arrival order.
fn programme(seconds: u64, start: Instant, codec: Codec) -> Vec<Arc<MediaPacket>> {
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
                let payload = video_payload(codec, frame, keyframe, p, count);
                let ts = (frame * 3000) as u32;
                packets.push(packet(
                    VIDEO,
                    codec,
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

/// Records `seconds` of programme with its picture in `codec` as part `meeting` and prints
/// its row.
fn run(
    recordings: &Recordings,
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>,
    taps_tx: &crossbeam_channel::Sender<Arc<MediaPacket>>,
    seconds: u64,
    codec: Codec,
    meeting: MeetingId,
) {
    let start = Instant::now();
    let packets = programme(seconds, start, codec);
    let count = packets.len();
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
    println!(
        "| {seconds} s, {codec} | {count} | {:.2} s | {:.2} µs | {:.2} s | {:.1} MB |",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / count as f64,
        wall.as_secs_f64(),
        bytes as f64 / 1e6
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 60 } else { 600 };
    let dir = std::env::temp_dir().join(format!("diemcau-bench-recording-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (taps_tx, taps) = crossbeam_channel::bounded(1 << 20);
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let recordings = Recordings::start(dir.clone(), 0, taps, reports_tx).expect("recording thread");
    println!("| programme | packets | CPU | CPU per packet | wall | file |");
    println!("|---|---|---|---|---|---|");
    for (meeting, codec) in [(1, Codec::Vp8), (2, Codec::H264)] {
        run(
            &recordings,
            &mut reports,
            &taps_tx,
            seconds,
            codec,
            MeetingId(meeting),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
