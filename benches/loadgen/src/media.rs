//! What the simulated endpoints send: VP8-like video frames cut into RTP payloads the way an
//! encoder's packetizer does, Opus-like audio packets, and the stamp in every payload that lets
//! a receiver in the same process measure loss and delay.
//!
//! Every payload carries a [`Stamp`] right after its codec header: a magic, the send time in
//! nanoseconds since the run's shared [`Instant`], the publisher's index, the packet's index
//! in its stream and the simulcast layer it belongs to. Sender and receivers share the clock
//! because they share the process; the layer tells a receiver which layer the hub forwards.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Largest RTP payload the packetizer makes (VP8 payload descriptor included).
pub const MAX_PAYLOAD: usize = 1200;

/// Bytes of a [`Stamp`] in a payload.
pub const STAMP_LEN: usize = 21;

const STAMP_MAGIC: [u8; 4] = *b"dcLG";

/// VP8 payload descriptor (RFC 7741) of a frame's first packet: S bit, partition 0.
const VP8_START: u8 = 0x10;

/// Opus TOC byte: configuration 15 (hybrid, fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0x78;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audio,
    Video,
}

/// What a receiver reads back from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds since the run's clock epoch when the packet was handed to str0m.
    pub sent_ns: u64,
    /// The publishing participant's index (0: studio, i: site i).
    pub publisher: u32,
    /// The packet's index in its stream (one per simulcast layer), from 0, contiguous as the
    /// sender wrote them.
    pub index: u32,
    /// Simulcast layer, 0 the lowest (0 without simulcast).
    pub layer: u8,
}

impl Stamp {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&STAMP_MAGIC);
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.push(self.layer);
    }

    fn read(bytes: &[u8]) -> Option<Stamp> {
        let bytes = bytes.get(..STAMP_LEN)?;
        let (magic, rest) = bytes.split_at(4);
        if magic != STAMP_MAGIC {
            return None;
        }
        let (sent, rest) = rest.split_at(8);
        let (publisher, rest) = rest.split_at(4);
        let (index, layer) = rest.split_at(4);
        Some(Stamp {
            sent_ns: u64::from_be_bytes(sent.try_into().ok()?),
            publisher: u32::from_be_bytes(publisher.try_into().ok()?),
            index: u32::from_be_bytes(index.try_into().ok()?),
            layer: *layer.first()?,
        })
    }

    /// Finds the stamp in a payload of `kind`, after the codec's own header.
    pub fn parse(kind: Kind, payload: &[u8]) -> Option<Stamp> {
        let offset = match kind {
            Kind::Audio => 1,
            Kind::Video => vp8_header_len(payload)?,
        };
        Stamp::read(payload.get(offset..)?)
    }
}

/// Rewrites the send time of the stamp in `payload`, when it has one.
pub fn restamp(kind: Kind, payload: &mut [u8], sent_ns: u64) {
    let offset = match kind {
        Kind::Audio => Some(1),
        Kind::Video => vp8_header_len(payload),
    };
    if let Some(offset) = offset
        && Stamp::read(payload.get(offset..).unwrap_or_default()).is_some()
        && let Some(field) = payload.get_mut(offset + 4..offset + 12)
    {
        field.copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// Length of the VP8 payload descriptor plus, on a frame's first packet, the VP8 frame header.
fn vp8_header_len(payload: &[u8]) -> Option<usize> {
    let offset = vp8_descriptor_len(payload)?;
    if !starts_frame(payload) {
        return Some(offset);
    }
    let tag = *payload.get(offset)?;
    Some(offset + if tag & 0x01 == 0 { 10 } else { 3 })
}

/// Whether a VP8 payload is a keyframe's first packet: the start of partition 0, whose frame
/// tag says keyframe (bit 0 clear) and carries the start code (RFC 6386 §9.1).
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(offset) = vp8_descriptor_len(payload) else {
        return false;
    };
    starts_frame(payload)
        && payload.get(offset).is_some_and(|tag| tag & 0x01 == 0)
        && payload.get(offset + 3..offset + 6) == Some(&[0x9d, 0x01, 0x2a][..])
}

/// The payload descriptor's S bit with partition index 0.
fn starts_frame(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|d| d & 0x10 != 0 && d & 0x07 == 0)
}

/// Length of the VP8 payload descriptor (RFC 7741 §4.2).
fn vp8_descriptor_len(payload: &[u8]) -> Option<usize> {
    let descriptor = *payload.first()?;
    let mut offset = 1;
    if descriptor & 0x80 != 0 {
        let extension = *payload.get(1)?;
        offset += 1;
        if extension & 0x80 != 0 {
            // Picture id: 7 or 15 bits.
            offset += if payload.get(offset)? & 0x80 != 0 {
                2
            } else {
                1
            };
        }
        if extension & 0x40 != 0 {
            offset += 1;
        }
        if extension & 0x30 != 0 {
            offset += 1;
        }
    }
    Some(offset)
}

/// A small, fast, deterministic generator (xorshift64*): frame sizes and loss injection need
/// variety, not quality.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        let span = (high.saturating_sub(low) + 1) as u64;
        low + (self.next_u64() % span) as usize
    }
}

/// How a video stream is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VideoProfile {
    pub bitrate_bps: u64,
    pub fps: u32,
    /// A keyframe every this long (and on request).
    pub keyframe_every: Duration,
    /// A keyframe is this many times larger than an average delta frame.
    pub keyframe_factor: f64,
    pub width: u16,
    pub height: u16,
}

impl VideoProfile {
    /// The studio's camera: 2.5 Mbit/s, 30 frames/s, 720p, a keyframe every 3 s.
    pub fn studio() -> VideoProfile {
        VideoProfile {
            bitrate_bps: 2_500_000,
            fps: 30,
            keyframe_every: Duration::from_secs(3),
            keyframe_factor: 6.0,
            width: 1280,
            height: 720,
        }
    }

    /// A site's small picture for the studio's wall: 150 kbit/s, 15 frames/s, 320x180.
    pub fn site_thumbnail() -> VideoProfile {
        VideoProfile {
            bitrate_bps: 150_000,
            fps: 15,
            keyframe_every: Duration::from_secs(3),
            keyframe_factor: 4.0,
            width: 320,
            height: 180,
        }
    }

    /// The simulcast layers of a camera whose best layer is `self`, lowest first as they are
    /// offered (docs/protocol.md): rid `q` 150 kbit/s 320x180, `h` 600 kbit/s 640x360, `f`
    /// this profile. The lower layers never exceed the best one's bitrate.
    pub fn simulcast_layers(&self) -> Vec<(&'static str, VideoProfile)> {
        let lower = |bitrate_bps: u64, width, height| VideoProfile {
            bitrate_bps: bitrate_bps.min(self.bitrate_bps),
            width,
            height,
            ..*self
        };
        vec![
            ("q", lower(150_000, 320, 180)),
            ("h", lower(600_000, 640, 360)),
            ("f", *self),
        ]
    }

    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps.max(1)
    }
}

/// One encoded frame, ready to be cut into packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub keyframe: bool,
    /// Bytes of VP8 data (frame header included), before packetization.
    pub size: usize,
    /// RTP timestamp (90 kHz).
    pub rtp_time: u32,
}

/// Produces frame sizes like a rate-controlled encoder: delta frames around the average with
/// some spread, a larger keyframe periodically or when asked, and the average bitrate kept.
#[derive(Debug, Clone)]
pub struct VideoEncoder {
    profile: VideoProfile,
    rng: Xorshift,
    frame_number: u64,
    frames_since_keyframe: u64,
    keyframe_requested: bool,
    delta_size: f64,
    rtp_base: u32,
}

impl VideoEncoder {
    pub fn new(profile: VideoProfile, seed: u64) -> VideoEncoder {
        let fps = f64::from(profile.fps.max(1));
        let average = profile.bitrate_bps as f64 / 8.0 / fps;
        let gop = (profile.keyframe_every.as_secs_f64() * fps).max(1.0);
        // gop frames carry gop * average bytes: (gop - 1) deltas and one keyframe of factor x.
        let delta_size = gop * average / (gop - 1.0 + profile.keyframe_factor);
        let mut rng = Xorshift::new(seed);
        let rtp_base = rng.next_u64() as u32;
        VideoEncoder {
            profile,
            rng,
            frame_number: 0,
            frames_since_keyframe: 0,
            keyframe_requested: true,
            delta_size,
            rtp_base,
        }
    }

    pub fn profile(&self) -> &VideoProfile {
        &self.profile
    }

    /// The next frame is a keyframe (a receiver sent PLI or FIR).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    pub fn next_frame(&mut self) -> Frame {
        let gop = (self.profile.keyframe_every.as_secs_f64() * f64::from(self.profile.fps)).max(1.0)
            as u64;
        let keyframe = self.keyframe_requested || self.frames_since_keyframe >= gop;
        let size = if keyframe {
            self.keyframe_requested = false;
            self.frames_since_keyframe = 0;
            self.delta_size * self.profile.keyframe_factor
        } else {
            self.delta_size * (0.75 + 0.5 * self.rng.unit())
        };
        self.frames_since_keyframe += 1;
        let ticks_per_frame = 90_000 / u64::from(self.profile.fps.max(1));
        let rtp_time = self
            .rtp_base
            .wrapping_add((self.frame_number * ticks_per_frame) as u32);
        self.frame_number += 1;
        Frame {
            keyframe,
            size: (size as usize).max(64),
            rtp_time,
        }
    }
}

/// Payload sizes of a frame's packets: as libwebrtc's packetizer, the frame is split into
/// equal packets (the last may be smaller), each at most [`MAX_PAYLOAD`] with its descriptor.
pub fn packet_sizes(frame_size: usize) -> Vec<usize> {
    let room = MAX_PAYLOAD - 1;
    let count = frame_size.div_ceil(room).max(1);
    let each = frame_size.div_ceil(count);
    let mut sizes = vec![each + 1; count];
    if let Some(last) = sizes.last_mut() {
        let rest = frame_size - each * (count - 1);
        // Room for the stamp and the keyframe header even in a tiny last packet.
        *last = (rest + 1).max(STAMP_LEN + 11);
    }
    sizes
}

/// The RTP payloads of `frame`: VP8 payload descriptor, the VP8 frame header on the first
/// packet (keyframe: bit 0 of the tag clear and the start code 9d 01 2a), the stamp, filler.
/// `stamp.index` is the first packet's; the others follow it.
pub fn video_payloads(frame: &Frame, profile: &VideoProfile, stamp: Stamp) -> Vec<Vec<u8>> {
    let sizes = packet_sizes(frame.size);
    let mut out = Vec::with_capacity(sizes.len());
    for (i, size) in sizes.iter().enumerate() {
        let mut payload = Vec::with_capacity(*size);
        if i == 0 {
            payload.push(VP8_START);
            let first_partition = (frame.size / 4).min(0x7_FFFF) as u32;
            let show_frame = 1 << 4;
            let inter = u32::from(!frame.keyframe);
            let tag = inter | show_frame | (first_partition << 5);
            payload.extend_from_slice(&tag.to_le_bytes()[..3]);
            if frame.keyframe {
                payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                payload.extend_from_slice(&profile.width.to_le_bytes());
                payload.extend_from_slice(&profile.height.to_le_bytes());
            }
        } else {
            payload.push(0x00);
        }
        Stamp {
            index: stamp.index.wrapping_add(i as u32),
            ..stamp
        }
        .write(&mut payload);
        payload.resize((*size).max(payload.len()), (i as u8) | 0x40);
        out.push(payload);
    }
    out
}

/// An Opus packet of `size` bytes: TOC byte, stamp, filler.
pub fn audio_payload(size: usize, stamp: Stamp) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size);
    payload.push(OPUS_TOC);
    stamp.write(&mut payload);
    payload.resize(size.max(payload.len()), 0x55);
    payload
}

/// Opus at 20 ms: 50 packets a second of 80 to 160 bytes.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    rng: Xorshift,
    packet_number: u64,
    rtp_base: u32,
}

impl AudioEncoder {
    pub const INTERVAL: Duration = Duration::from_millis(20);

    pub fn new(seed: u64) -> AudioEncoder {
        let mut rng = Xorshift::new(seed ^ 0xA0D1_0000);
        let rtp_base = rng.next_u64() as u32;
        AudioEncoder {
            rng,
            packet_number: 0,
            rtp_base,
        }
    }

    /// Size and RTP timestamp (48 kHz) of the next packet.
    pub fn next_packet(&mut self) -> (usize, u32) {
        let size = self.rng.between(80, 160);
        let rtp_time = self
            .rtp_base
            .wrapping_add((self.packet_number * 960) as u32);
        self.packet_number += 1;
        (size, rtp_time)
    }
}

/// The run's shared clock: every stamp is nanoseconds since `epoch`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_looks_like_vp8_and_carries_stamps() {
        let profile = VideoProfile::studio();
        let mut encoder = VideoEncoder::new(profile, 7);
        let frame = encoder.next_frame();
        assert!(frame.keyframe, "the first frame is a keyframe");
        let stamp = Stamp {
            sent_ns: 123_456_789,
            publisher: 0,
            index: 40,
            layer: 2,
        };
        let payloads = video_payloads(&frame, &profile, stamp);
        assert!(payloads.len() > 5, "a keyframe spans many packets");
        let first = &payloads[0];
        assert_eq!(first[0], VP8_START);
        assert_eq!(first[1] & 0x01, 0, "keyframe bit");
        assert_eq!(&first[4..7], &[0x9d, 0x01, 0x2a]);
        assert!(is_vp8_keyframe_start(first));
        assert!(!is_vp8_keyframe_start(&payloads[1]), "not a frame's start");
        for (i, p) in payloads.iter().enumerate() {
            assert!(p.len() <= MAX_PAYLOAD, "packet {i} is {} bytes", p.len());
            let s = Stamp::parse(Kind::Video, p).expect("stamp");
            assert_eq!(s.index, 40 + i as u32);
            assert_eq!(s.layer, 2);
            assert_eq!(s.sent_ns, 123_456_789);
        }
        let total: usize = payloads.iter().map(|p| p.len() - 1).sum();
        assert!(total >= frame.size);
        let sizes: Vec<usize> = payloads.iter().map(Vec::len).collect();
        let (last, rest) = sizes.split_last().expect("packets");
        assert!(
            rest.iter().all(|s| *s == rest[0]),
            "equal packets: {sizes:?}"
        );
        assert!(*last <= rest[0]);
    }

    #[test]
    fn delta_frames_and_bitrate() {
        let profile = VideoProfile::studio();
        let mut encoder = VideoEncoder::new(profile, 1);
        let frames: Vec<Frame> = (0..300).map(|_| encoder.next_frame()).collect();
        let keyframes = frames.iter().filter(|f| f.keyframe).count();
        assert_eq!(keyframes, 4, "10 s at one keyframe per 3 s, plus the first");
        let bytes: usize = frames.iter().map(|f| f.size).sum();
        let bps = bytes as f64 * 8.0 / 10.0;
        assert!((bps / 2_500_000.0 - 1.0).abs() < 0.1, "{bps} bit/s");
        let delta = frames[1];
        let payload = &video_payloads(
            &delta,
            &profile,
            Stamp {
                sent_ns: 1,
                publisher: 3,
                index: 0,
                layer: 0,
            },
        )[0];
        assert_eq!(payload[1] & 0x01, 1, "inter frame bit");
        assert!(!is_vp8_keyframe_start(payload));
        assert_eq!(
            Stamp::parse(Kind::Video, payload).map(|s| s.publisher),
            Some(3)
        );
    }

    #[test]
    fn audio_packets() {
        let mut encoder = AudioEncoder::new(5);
        for _ in 0..100 {
            let (size, _) = encoder.next_packet();
            assert!((80..=160).contains(&size));
            let p = audio_payload(
                size,
                Stamp {
                    sent_ns: 9,
                    publisher: 1,
                    index: 2,
                    layer: 0,
                },
            );
            assert_eq!(p.len(), size);
            assert_eq!(Stamp::parse(Kind::Audio, &p).map(|s| s.index), Some(2));
        }
    }

    #[test]
    fn restamps_in_place() {
        let profile = VideoProfile::studio();
        let frame = VideoEncoder::new(profile, 2).next_frame();
        let stamp = Stamp {
            sent_ns: 1,
            publisher: 4,
            index: 9,
            layer: 1,
        };
        for mut p in video_payloads(&frame, &profile, stamp) {
            restamp(Kind::Video, &mut p, 777);
            let s = Stamp::parse(Kind::Video, &p).expect("stamp");
            assert_eq!((s.sent_ns, s.publisher, s.layer), (777, 4, 1));
        }
    }

    #[test]
    fn simulcast_layers_lowest_first() {
        let layers = VideoProfile::studio().simulcast_layers();
        let rates: Vec<(&str, u64, u16)> = layers
            .iter()
            .map(|(rid, p)| (*rid, p.bitrate_bps, p.width))
            .collect();
        assert_eq!(
            rates,
            [
                ("q", 150_000, 320),
                ("h", 600_000, 640),
                ("f", 2_500_000, 1280)
            ]
        );
        let small = VideoProfile {
            bitrate_bps: 400_000,
            ..VideoProfile::studio()
        };
        assert_eq!(small.simulcast_layers()[1].1.bitrate_bps, 400_000);
    }

    #[test]
    fn garbage_has_no_stamp() {
        assert_eq!(Stamp::parse(Kind::Video, &[]), None);
        assert_eq!(Stamp::parse(Kind::Video, &[0x90]), None);
        assert_eq!(Stamp::parse(Kind::Audio, &[0x78; 30]), None);
    }
}
