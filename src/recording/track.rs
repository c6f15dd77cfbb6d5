//! From tapped RTP packets to the frames of one track of a recording, sans IO: packets are
//! put back in order, VP8 frames and H.264 pictures joined from their packets, Opus taken out
//! of RED, and each
//! frame given its time in the recording from its RTP timestamp. The clock is passed in.
//!
//! A track follows one source at a time (the programme's picture, the studio's sound, the
//! floor holder's sound); a new source starts at its next keyframe. Each source's timestamps
//! are anchored at its first packet to the recording's time (the hub's clock), so a source that
//! comes back (the floor returned to the studio) goes on where its clock says, and anchored
//! again where its clock and the hub's part by more than [`MAX_DRIFT`] (a sender that stalled
//! and stamps its frames by their count, a clock that runs fast): the file keeps to the
//! meeting's time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::{MediaPacket, ProducerId};

/// How long a missing video packet is waited for (a repair by NACK) before the frames up to
/// the next keyframe are given up.
pub const REPAIR_WAIT: Duration = Duration::from_millis(300);
/// How far a source's timestamps may stray from the hub's clock before they are anchored to it
/// again.
pub const MAX_DRIFT: Duration = Duration::from_millis(500);
/// A simulcast layer that sent nothing for this long is taken as stopped.
const LAYER_SILENT: Duration = Duration::from_millis(1500);
/// Most packets waiting in one track's reorder buffer (a keyframe of a 4K picture is ~300).
const MAX_PENDING: usize = 2_000;

/// One frame, ready for the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its time from the start of the recording.
    pub at: Duration,
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Opus, VP8, or H.264 (its NAL units with 4-byte lengths).
    pub codec: Codec,
}

/// What a track asks of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeWanted {
    pub producer: ProducerId,
    pub layer: u8,
}

/// The timestamp clock of one source (a producer's layer): the first packet's timestamp,
/// extended, and its time in the recording.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    rtp: u64,
    at: Duration,
    /// The latest timestamp seen, extended past wrap-arounds.
    last: u64,
}

impl Anchor {
    fn new(timestamp: u32, at: Duration) -> Anchor {
        Anchor {
            rtp: u64::from(timestamp) + (1 << 32),
            at,
            last: u64::from(timestamp) + (1 << 32),
        }
    }

    /// `timestamp`'s time in the recording at `clock_rate`, extending it around the one seen
    /// last (a jump of under half the range either way is a step, not a wrap); `arrival` (its
    /// packet's arrival in the recording's time) when it strays from that by more than
    /// [`MAX_DRIFT`], anchoring the clock there.
    fn time_of(&mut self, timestamp: u32, clock_rate: u64, arrival: Duration) -> Duration {
        let last_low = self.last as u32;
        let forward = timestamp.wrapping_sub(last_low);
        let extended = if forward < (1 << 31) {
            self.last + u64::from(forward)
        } else {
            self.last
                .saturating_sub(u64::from(last_low.wrapping_sub(timestamp)))
        };
        self.last = self.last.max(extended);
        let ticks = extended.saturating_sub(self.rtp);
        let behind = self.rtp.saturating_sub(extended);
        let step = |t: u64| Duration::from_micros(t.saturating_mul(1_000_000) / clock_rate.max(1));
        let at = (self.at + step(ticks)).saturating_sub(step(behind));
        let strays = at.abs_diff(arrival) > MAX_DRIFT;
        if strays && extended >= self.rtp {
            self.rtp = extended;
            self.at = arrival;
            return arrival;
        }
        at
    }
}

/// One audio track: each Opus packet is a frame.
#[derive(Debug, Default)]
pub struct AudioTrack {
    source: Option<ProducerId>,
    anchors: HashMap<ProducerId, Anchor>,
}

impl AudioTrack {
    /// Follows `source` from now on (`None`: silence).
    pub fn follow(&mut self, source: Option<ProducerId>) {
        self.source = source;
    }

    pub fn source(&self) -> Option<ProducerId> {
        self.source
    }

    /// The frame `packet` carries, if it is of this track's source; `start` is when the
    /// recording started.
    pub fn push(&mut self, start: Instant, packet: &MediaPacket) -> Option<Frame> {
        if Some(packet.producer) != self.source {
            return None;
        }
        let data: Vec<u8> = match packet.codec {
            Codec::Opus => packet.payload.to_vec(),
            Codec::Red => diemcau_sfu::red::primary(&packet.payload)?.to_vec(),
            _ => return None,
        };
        if data.is_empty() {
            return None;
        }
        let arrival = packet.received_at.saturating_duration_since(start);
        let anchor = self
            .anchors
            .entry(packet.producer)
            .or_insert_with(|| Anchor::new(packet.timestamp, arrival));
        Some(Frame {
            at: anchor.time_of(packet.timestamp, 48_000, arrival),
            data,
            keyframe: true,
            codec: Codec::Opus,
        })
    }
}

/// The video track: VP8 frames or H.264 pictures joined from their packets, one simulcast layer
/// at a time (the highest one flowing), from a keyframe on.
#[derive(Debug, Default)]
pub struct VideoTrack {
    source: Option<ProducerId>,
    layers: u8,
    /// The layer being joined into frames; `None` until a keyframe of the wanted one comes.
    layer: Option<u8>,
    /// When each layer last sent a packet.
    seen: Vec<Option<Instant>>,
    /// Packets of `layer` not yet joined, by sequence number.
    pending: BTreeMap<u64, Arc<MediaPacket>>,
    /// The next packet to join; `None`: waiting for a keyframe.
    next: Option<u64>,
    anchors: HashMap<(ProducerId, u8), Anchor>,
    /// Keyframes to ask for, taken by [`VideoTrack::take_requests`].
    requests: Vec<KeyframeWanted>,
    /// When a keyframe was last asked for.
    asked_at: Option<Instant>,
    /// Frames of another codec than VP8 and H.264 given up (not recorded).
    pub other_codec_frames: u64,
}

impl VideoTrack {
    /// Follows `source` (with `layers` simulcast layers) from its next keyframe on.
    pub fn follow(&mut self, now: Instant, source: Option<(ProducerId, u8)>) {
        let id = source.map(|(id, _)| id);
        if id == self.source {
            return;
        }
        self.source = id;
        self.layers = source.map_or(0, |(_, layers)| layers.max(1));
        self.seen = vec![None; usize::from(self.layers)];
        self.restart(now);
    }

    pub fn source(&self) -> Option<ProducerId> {
        self.source
    }

    /// The frames `packet` completes (none, one, or several after a repair).
    pub fn push(&mut self, now: Instant, start: Instant, packet: Arc<MediaPacket>) -> Vec<Frame> {
        if Some(packet.producer) != self.source {
            return Vec::new();
        }
        if !matches!(packet.codec, Codec::Vp8 | Codec::H264) {
            if packet.marker {
                self.other_codec_frames += 1;
            }
            return Vec::new();
        }
        if let Some(seen) = self.seen.get_mut(usize::from(packet.layer)) {
            *seen = Some(now);
        }
        let wanted = self.wanted_layer(now);
        let starts = packet.keyframe_start == Some(true);
        if starts && Some(packet.layer) == wanted && self.layer != wanted {
            // Switch here: the wanted layer's keyframe, a clean start.
            self.layer = wanted;
            self.pending.clear();
            self.next = Some(*packet.seq_no);
        } else if Some(packet.layer) != self.layer {
            if Some(packet.layer) == wanted {
                self.ask(now, packet.producer, packet.layer);
            }
            return Vec::new();
        }
        if self.next.is_some_and(|next| *packet.seq_no < next) {
            return Vec::new(); // already joined (a repeat), or before the keyframe
        }
        if self.pending.len() >= MAX_PENDING {
            self.restart(now);
            return Vec::new();
        }
        let seq = *packet.seq_no;
        self.pending.insert(seq, packet);
        if self.next.is_none() {
            // Waiting for a keyframe: the packets after its first one are kept.
            if !starts {
                if let Some(source) = self.source {
                    self.ask(now, source, self.layer.unwrap_or(0));
                }
                return Vec::new();
            }
            self.next = Some(seq);
            self.pending = self.pending.split_off(&seq);
        }
        self.join(now, start)
    }

    /// Time passed: a gap waited on too long gives up the frames to the next keyframe.
    pub fn tick(&mut self, now: Instant, start: Instant) -> Vec<Frame> {
        self.join(now, start)
    }

    /// The keyframes to ask for since the last call.
    pub fn take_requests(&mut self) -> Vec<KeyframeWanted> {
        std::mem::take(&mut self.requests)
    }

    /// The highest layer that sends, else the lowest.
    fn wanted_layer(&self, now: Instant) -> Option<u8> {
        self.source?;
        let flowing = |l: &u8| {
            self.seen
                .get(usize::from(*l))
                .copied()
                .flatten()
                .is_some_and(|at| now.saturating_duration_since(at) < LAYER_SILENT)
        };
        (0..self.layers).rev().find(flowing).or(Some(0))
    }

    fn restart(&mut self, now: Instant) {
        self.layer = self.wanted_layer(now);
        self.pending.clear();
        self.next = None;
        self.asked_at = None;
        if let (Some(source), Some(layer)) = (self.source, self.wanted_layer(now)) {
            self.ask(now, source, layer);
        }
    }

    /// Asks for a keyframe of `layer`, at most once a second.
    fn ask(&mut self, now: Instant, producer: ProducerId, layer: u8) {
        if self
            .asked_at
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.asked_at = Some(now);
        self.requests.push(KeyframeWanted { producer, layer });
    }

    /// Joins every frame complete from `next` on; a gap older than [`REPAIR_WAIT`] drops
    /// what is pending and waits for a keyframe.
    fn join(&mut self, now: Instant, start: Instant) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let Some(next) = self.next else {
                return frames;
            };
            match self.complete_frame(next) {
                Some(end) => {
                    let packets: Vec<Arc<MediaPacket>> = (next..=end)
                        .filter_map(|s| self.pending.remove(&s))
                        .collect();
                    self.next = Some(end + 1);
                    if let Some(frame) = self.frame_of(start, &packets) {
                        frames.push(frame);
                    }
                }
                None => {
                    let oldest = self.pending.values().map(|p| p.received_at).min();
                    let missing = !self.pending.contains_key(&next);
                    let stale =
                        oldest.is_some_and(|at| now.saturating_duration_since(at) > REPAIR_WAIT);
                    if missing && stale {
                        self.restart(now);
                    }
                    return frames;
                }
            }
        }
    }

    /// The last sequence number of the frame starting at `first`, when all its packets are
    /// here: up to its marker, or to the packet before the next timestamp.
    fn complete_frame(&self, first: u64) -> Option<u64> {
        let timestamp = self.pending.get(&first)?.timestamp;
        let mut seq = first;
        loop {
            let packet = self.pending.get(&seq)?;
            if packet.timestamp != timestamp {
                return Some(seq - 1);
            }
            if packet.marker {
                return Some(seq);
            }
            seq += 1;
        }
    }

    fn frame_of(&mut self, start: Instant, packets: &[Arc<MediaPacket>]) -> Option<Frame> {
        let first = packets.first()?;
        if packets.iter().any(|p| p.codec != first.codec) {
            return None;
        }
        let (data, keyframe) = match first.codec {
            Codec::H264 => {
                let sample =
                    diemcau_sfu::h264::access_unit(packets.iter().map(|p| &p.payload[..]))?;
                let keyframe = super::h264::is_keyframe(&sample);
                (sample, keyframe)
            }
            _ => {
                let mut data = Vec::with_capacity(packets.iter().map(|p| p.payload.len()).sum());
                for packet in packets {
                    data.extend_from_slice(diemcau_sfu::vp8::frame_data(&packet.payload)?);
                }
                let keyframe = data.first().is_some_and(|b| b & 0x01 == 0);
                (data, keyframe)
            }
        };
        let arrival = first.received_at.saturating_duration_since(start);
        let anchor = self
            .anchors
            .entry((first.producer, first.layer))
            .or_insert_with(|| Anchor::new(first.timestamp, arrival));
        Some(Frame {
            at: anchor.time_of(first.timestamp, 90_000, arrival),
            keyframe,
            data,
            codec: first.codec,
        })
    }
}

/// The picture size a VP8 keyframe declares (RFC 6386 9.1).
pub fn vp8_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.first()? & 0x01 != 0 || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let dimension = |at: usize| -> Option<u32> {
        let bytes = frame.get(at..at + 2)?;
        Some(u32::from(
            u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) & 0x3fff,
        ))
    };
    Some((dimension(6)?, dimension(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diemcau_sfu::RouterId;
    use diemcau_sfu::str0m::media::MediaKind;
    use diemcau_sfu::str0m::rtp::ExtensionValues;

    const VIDEO: ProducerId = ProducerId(1);

    /// A VP8 packet: `keyframe` starts a keyframe (a plain descriptor with S=1, then a
    /// keyframe's first byte), else a continuation.
    fn vp8(
        start: Instant,
        seq: u64,
        ts: u32,
        marker: bool,
        keyframe: bool,
        at_ms: u64,
    ) -> Arc<MediaPacket> {
        let payload: Vec<u8> = if keyframe {
            vec![0x10, 0x00, 0xaa]
        } else {
            vec![0x00, 0xbb]
        };
        Arc::new(MediaPacket {
            router: RouterId(1),
            producer: VIDEO,
            kind: MediaKind::Video,
            codec: Codec::Vp8,
            seq_no: seq.into(),
            timestamp: ts,
            marker,
            extensions: ExtensionValues::default(),
            layer: 0,
            vp8: None,
            keyframe_start: Some(keyframe),
            payload: payload.into(),
            received_at: start + Duration::from_millis(at_ms),
        })
    }

    #[test]
    fn frames_are_joined_in_order_and_a_lost_packet_waits_for_the_next_keyframe() {
        let start = Instant::now();
        let mut track = VideoTrack::default();
        track.follow(start, Some((VIDEO, 1)));
        assert_eq!(
            track.take_requests().len(),
            1,
            "a new source starts at a keyframe"
        );
        // A keyframe of two packets arriving out of order, then an interframe.
        assert!(
            track
                .push(start, start, vp8(start, 11, 9000, true, false, 100))
                .is_empty()
        );
        let frames = track.push(start, start, vp8(start, 10, 9000, false, true, 101));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, vec![0x00, 0xaa, 0xbb]);
        assert!(frames[0].keyframe);
        assert_eq!(frames[0].at, Duration::from_millis(101));
        let frames = track.push(start, start, vp8(start, 12, 12000, true, false, 133));
        assert_eq!(
            frames[0].at,
            Duration::from_micros(101_000 + 33_333),
            "3000 ticks at 90 kHz"
        );

        // Packet 13 is lost: 14 waits, then is given up, and frames start again at a keyframe.
        let later = start + Duration::from_millis(200);
        assert!(
            track
                .push(later, start, vp8(start, 14, 18000, true, false, 200))
                .is_empty()
        );
        let late = start + Duration::from_millis(1200) + REPAIR_WAIT;
        assert!(track.tick(late, start).is_empty());
        assert_eq!(track.take_requests().len(), 1, "a keyframe is asked for");
        assert!(
            track
                .push(late, start, vp8(start, 15, 21000, true, false, 700))
                .is_empty()
        );
        let frames = track.push(late, start, vp8(start, 16, 24000, true, true, 733));
        assert_eq!(frames.len(), 1, "back from the keyframe");
    }

    #[test]
    fn audio_keeps_its_clock_across_a_wrap_and_red_gives_its_primary() {
        let start = Instant::now();
        let mut track = AudioTrack::default();
        track.follow(Some(VIDEO));
        let packet = |ts: u32, at_ms: u64, codec: Codec, payload: Vec<u8>| MediaPacket {
            router: RouterId(1),
            producer: VIDEO,
            kind: MediaKind::Audio,
            codec,
            seq_no: 1.into(),
            timestamp: ts,
            marker: false,
            extensions: ExtensionValues::default(),
            layer: 0,
            vp8: None,
            keyframe_start: None,
            payload: payload.into(),
            received_at: start + Duration::from_millis(at_ms),
        };
        let first = track
            .push(start, &packet(u32::MAX - 479, 50, Codec::Opus, vec![1]))
            .expect("a frame");
        assert_eq!(first.at, Duration::from_millis(50));
        // 960 ticks later, past the wrap: 20 ms later, whenever it arrives.
        let next = track
            .push(start, &packet(480, 90, Codec::Opus, vec![2]))
            .expect("a frame");
        assert_eq!(next.at, Duration::from_millis(70));
        // RED with no redundant block: a one-byte header (F=0, payload type), then the primary.
        let red = track
            .push(start, &packet(1440, 95, Codec::Red, vec![111, 7, 8]))
            .expect("a frame");
        assert_eq!((red.at, red.data), (Duration::from_millis(90), vec![7, 8]));
        track.follow(None);
        assert!(
            track
                .push(start, &packet(2400, 110, Codec::Opus, vec![3]))
                .is_none()
        );
    }

    #[test]
    fn a_keyframe_declares_its_size() {
        let keyframe = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00];
        assert_eq!(vp8_size(&keyframe), Some((320, 180)));
        assert_eq!(vp8_size(&[0x51, 0x42, 0x00]), None, "an interframe");
    }
}
