//! Operations of the `router_relay` target: what other workers relay to this one, and how an
//! input's bytes say it.
//!
//! Input format: operations one after the other, each a kind byte then the fields of that kind
//! as `arbitrary` reads them (integers little-endian, `bool` and `Option` tag one byte).
//! [`RelayOp::encode`] writes it (for the seeds).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::str0m::rtp::{ExtensionValues, VideoOrientation};
use diemcau_sfu::{ConsumerId, MediaPacket, ProducerId, Relay, RouterId};

use crate::datagram::{Advance, Keyframe};
use crate::encode::Encode;
use crate::meeting::{Meeting, STUDIO};

/// The codecs a relayed packet may claim; the two the meeting negotiates come first and again
/// last, so that most packets are forwarded.
pub const CODECS: [Codec; 19] = [
    Codec::Opus,
    Codec::Vp8,
    Codec::PCMU,
    Codec::PCMA,
    Codec::G722,
    Codec::CN,
    Codec::AmrWb,
    Codec::H264,
    Codec::H265,
    Codec::H266,
    Codec::Vp9,
    Codec::Av1,
    Codec::Tele,
    Codec::Rtx,
    Codec::Red,
    Codec::Null,
    Codec::Unknown,
    Codec::Opus,
    Codec::Vp8,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOp {
    /// Kind 0.
    Media(Media),
    /// Kind 1.
    KeyframeRequest(KeyframeRequest),
    /// Kind 2: a client asks for a keyframe on a track it receives.
    ClientKeyframe(Keyframe),
    /// Kind 3.
    Advance(Advance),
    /// Kind 4: the studio writes RTP.
    StudioMedia(crate::datagram::Media),
    /// Kind 5.
    Republish(Republish),
    /// Kind 6.
    Control(Control),
}

/// `Relay::Media`.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Media {
    /// `None`: the meeting's router.
    pub router: Option<u64>,
    /// `producer % 3`: 0 one of the studio's (local) producers, 1 one of the other worker's,
    /// picked by `producer / 3`; 2 `producer_raw`.
    pub producer: u8,
    pub producer_raw: u64,
    pub video: bool,
    /// Index into [`CODECS`].
    pub codec: u8,
    /// Simulcast layer.
    pub layer: u8,
    /// 0: next, 1: `value` further, 2: `value` back, else: `value` itself (the producer's
    /// extended sequence number, any `u64`).
    pub sequence: u8,
    pub value: u64,
    /// `None`: the producer's last RTP time plus 960.
    pub timestamp: Option<u32>,
    pub marker: bool,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    /// Modulo 4: 0°, 90°, 180°, 270°.
    pub orientation: Option<u8>,
    /// Payload length, modulo 1501.
    pub length: u16,
    /// The payload's first bytes (zeros after).
    pub head: [u8; 4],
    /// Reception instant relative to the worker's clock, in milliseconds.
    pub received_offset_ms: i16,
}

/// `Relay::KeyframeRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct KeyframeRequest {
    pub router: Option<u64>,
    /// As [`Media::producer`].
    pub producer: u8,
    pub producer_raw: u64,
    pub layer: u8,
}

/// One of the packets this worker itself relayed (with the VP8 descriptor it parsed from a
/// real packet of the studio's), handed back with some fields changed.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Republish {
    /// How far back among the relayed packets (0: the latest).
    pub back: u8,
    /// As [`Media::producer`]; `None` keeps the packet's.
    pub producer: Option<u8>,
    pub producer_raw: u64,
    pub layer: Option<u8>,
    /// Added to the packet's sequence number.
    pub sequence_shift: i32,
    pub marker: Option<bool>,
}

/// A call of the hub's meeting logic, interleaved with the packets.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Control {
    /// `% 5`: 0 `set_max_layer`, 1 `set_producer_paused`, 2 `remove_consumer`, 3
    /// `add_consumer`, 4 `remove_producer`.
    pub action: u8,
    /// A client, modulo their number.
    pub client: u8,
    /// As [`Media::producer`].
    pub producer: u8,
    pub producer_raw: u64,
    /// The layer, or (lowest bit) whether paused.
    pub value: u8,
}

/// What the target remembers between operations: each producer's last sequence number and RTP
/// time, for "next" and relative values.
#[derive(Debug, Default)]
pub struct RelayState {
    last: HashMap<ProducerId, (u64, u32)>,
}

impl RelayOp {
    /// Reads the next operation.
    pub fn read(u: &mut Unstructured<'_>) -> arbitrary::Result<RelayOp> {
        Ok(match u.arbitrary::<u8>()? % 7 {
            0 => RelayOp::Media(u.arbitrary()?),
            1 => RelayOp::KeyframeRequest(u.arbitrary()?),
            2 => RelayOp::ClientKeyframe(u.arbitrary()?),
            3 => RelayOp::Advance(u.arbitrary()?),
            4 => RelayOp::StudioMedia(u.arbitrary()?),
            5 => RelayOp::Republish(u.arbitrary()?),
            _ => RelayOp::Control(u.arbitrary()?),
        })
    }

    /// Reads up to `max` operations from an input.
    pub fn read_all(data: &[u8], max: usize) -> Vec<RelayOp> {
        crate::read_ops(data, max, RelayOp::read)
    }

    /// Writes the operation as [`RelayOp::read`] reads it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RelayOp::Media(m) => {
                out.push(0);
                m.router.encode(out);
                m.producer.encode(out);
                m.producer_raw.encode(out);
                m.video.encode(out);
                m.codec.encode(out);
                m.layer.encode(out);
                m.sequence.encode(out);
                m.value.encode(out);
                m.timestamp.encode(out);
                m.marker.encode(out);
                m.audio_level.encode(out);
                m.voice_activity.encode(out);
                m.orientation.encode(out);
                m.length.encode(out);
                m.head.encode(out);
                m.received_offset_ms.encode(out);
            }
            RelayOp::KeyframeRequest(k) => {
                out.push(1);
                k.router.encode(out);
                k.producer.encode(out);
                k.producer_raw.encode(out);
                k.layer.encode(out);
            }
            RelayOp::ClientKeyframe(k) => {
                out.push(2);
                k.encode(out);
            }
            RelayOp::Advance(a) => {
                out.push(3);
                a.encode(out);
            }
            RelayOp::StudioMedia(m) => {
                out.push(4);
                m.encode(out);
            }
            RelayOp::Republish(r) => {
                out.push(5);
                r.back.encode(out);
                r.producer.encode(out);
                r.producer_raw.encode(out);
                r.layer.encode(out);
                r.sequence_shift.encode(out);
                r.marker.encode(out);
            }
            RelayOp::Control(c) => {
                out.push(6);
                c.action.encode(out);
                c.client.encode(out);
                c.producer.encode(out);
                c.producer_raw.encode(out);
                c.value.encode(out);
            }
        }
    }

    /// Does it to the meeting, and lets every party react.
    pub fn apply(&self, meeting: &mut Meeting, state: &mut RelayState) {
        match self {
            RelayOp::Media(media) => {
                let packet = media_packet(meeting, state, media);
                let now = meeting.net.now;
                meeting
                    .worker()
                    .handle_relay(now, Relay::Media(Arc::new(packet)));
                meeting.net.pump();
            }
            RelayOp::KeyframeRequest(request) => {
                let relay = Relay::KeyframeRequest {
                    router: router_id(meeting, request.router),
                    producer: producer_id(meeting, request.producer, request.producer_raw),
                    layer: request.layer,
                };
                let now = meeting.net.now;
                meeting.worker().handle_relay(now, relay);
                meeting.net.pump();
            }
            RelayOp::ClientKeyframe(request) => request.apply(meeting),
            RelayOp::Advance(advance) => advance.apply(meeting),
            RelayOp::StudioMedia(media) => media.apply(meeting),
            RelayOp::Republish(republish) => {
                let packets: Vec<&Arc<MediaPacket>> = meeting
                    .net
                    .relays
                    .iter()
                    .filter_map(|r| match r {
                        Relay::Media(p) => Some(p),
                        Relay::KeyframeRequest { .. } => None,
                    })
                    .collect();
                if packets.is_empty() {
                    return;
                }
                let index = packets.len() - 1 - usize::from(republish.back) % packets.len();
                let mut packet = MediaPacket::clone(packets[index]);
                if let Some(producer) = republish.producer {
                    packet.producer = producer_id(meeting, producer, republish.producer_raw);
                }
                if let Some(layer) = republish.layer {
                    packet.layer = layer;
                }
                let shift = i64::from(republish.sequence_shift);
                packet.seq_no = (*packet.seq_no).wrapping_add_signed(shift).into();
                if let Some(marker) = republish.marker {
                    packet.marker = marker;
                }
                let now = meeting.net.now;
                meeting
                    .worker()
                    .handle_relay(now, Relay::Media(Arc::new(packet)));
                meeting.net.pump();
            }
            RelayOp::Control(control) => {
                let now = meeting.net.now;
                let router = meeting.net.router;
                let peer = meeting.net.clients
                    [usize::from(control.client) % meeting.net.clients.len()]
                .peer;
                let producer = producer_id(meeting, control.producer, control.producer_raw);
                // The consumer the hub knows for this pair, else an id nobody chose.
                let consumer = meeting
                    .net
                    .consumers
                    .get(&(peer, producer))
                    .copied()
                    .unwrap_or(ConsumerId(control.producer_raw));
                match control.action % 5 {
                    0 => meeting
                        .worker()
                        .set_max_layer(now, peer, consumer, control.value),
                    1 => meeting.worker().set_producer_paused(
                        router,
                        producer,
                        control.value & 1 == 1,
                    ),
                    2 => {
                        meeting.worker().remove_consumer(now, peer, consumer);
                        meeting.net.consumers.remove(&(peer, producer));
                    }
                    3 => {
                        let info = meeting
                            .net
                            .producers
                            .iter()
                            .chain(&meeting.remote_producers)
                            .find(|p| p.id == producer)
                            .cloned();
                        // A pair the hub already consumes adds its id again: refused.
                        if let Some(info) = info {
                            let _ = meeting.net.add_consumer(peer, &info, control.value);
                        }
                    }
                    _ => meeting.worker().remove_producer(now, router, producer),
                }
                meeting.net.pump();
            }
        }
    }
}

fn media_packet(meeting: &Meeting, state: &mut RelayState, media: &Media) -> MediaPacket {
    let producer = producer_id(meeting, media.producer, media.producer_raw);
    let (seq, time) = state.last.get(&producer).copied().unwrap_or((0, 0));
    let seq = crate::next_sequence(seq, media.sequence, media.value);
    let time = media.timestamp.unwrap_or(time.wrapping_add(960));
    state.last.insert(producer, (seq, time));
    let offset = Duration::from_millis(u64::from(media.received_offset_ms.unsigned_abs()));
    let received_at = if media.received_offset_ms < 0 {
        meeting
            .net
            .now
            .checked_sub(offset)
            .unwrap_or(meeting.net.now)
    } else {
        meeting.net.now + offset
    };
    let payload = crate::payload(media.length, &media.head);
    MediaPacket {
        router: router_id(meeting, media.router),
        producer,
        kind: if media.video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        },
        codec: CODECS[usize::from(media.codec) % CODECS.len()],
        seq_no: seq.into(),
        timestamp: time,
        marker: media.marker,
        layer: media.layer,
        // The VP8 descriptor cannot be built outside the crate; `Republish` reuses real ones.
        vp8: None,
        keyframe_start: None,
        extensions: ExtensionValues {
            audio_level: media.audio_level,
            voice_activity: media.voice_activity,
            video_orientation: media.orientation.map(|o| match o % 4 {
                0 => VideoOrientation::Deg0,
                1 => VideoOrientation::Deg90,
                2 => VideoOrientation::Deg180,
                _ => VideoOrientation::Deg270,
            }),
            ..Default::default()
        },
        payload: Arc::from(payload),
        received_at,
    }
}

fn router_id(meeting: &Meeting, router: Option<u64>) -> RouterId {
    router.map_or(meeting.net.router, RouterId)
}

/// See [`Media::producer`].
fn producer_id(meeting: &Meeting, producer: u8, raw: u64) -> ProducerId {
    let index = usize::from(producer / 3);
    let pick = |list: Vec<ProducerId>| {
        list.get(index % list.len().max(1))
            .copied()
            .unwrap_or(ProducerId(0))
    };
    match producer % 3 {
        0 => pick(
            meeting
                .net
                .producers
                .iter()
                .filter(|p| p.peer == STUDIO)
                .map(|p| p.id)
                .collect(),
        ),
        1 => pick(meeting.remote_producers.iter().map(|p| p.id).collect()),
        _ => ProducerId(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_what_read_reads() {
        let ops = vec![
            RelayOp::Media(Media {
                router: None,
                producer: 4,
                producer_raw: 0,
                video: true,
                codec: 1,
                layer: 2,
                sequence: 3,
                value: 1 << 40,
                timestamp: Some(90_000),
                marker: true,
                audio_level: Some(-30),
                voice_activity: None,
                orientation: Some(1),
                length: 1200,
                head: [0x10, 0, 0, 0],
                received_offset_ms: -5,
            }),
            RelayOp::KeyframeRequest(KeyframeRequest {
                router: Some(7),
                producer: 2,
                producer_raw: 99,
                layer: 1,
            }),
            RelayOp::StudioMedia(crate::datagram::Media {
                client: 0,
                video: true,
                layer: 2,
                payload_type: 1,
                sequence: 0,
                value: 0,
                timestamp_step: 3000,
                marker: true,
                length: 900,
                head: [0x90, 0x80, 0x81, 0x02, 0x00, 0x9d, 0x01, 0x2a],
            }),
            RelayOp::Republish(Republish {
                back: 3,
                producer: Some(1),
                producer_raw: 5,
                layer: None,
                sequence_shift: -70_000,
                marker: Some(false),
            }),
            RelayOp::Control(Control {
                action: 3,
                client: 2,
                producer: 4,
                producer_raw: 0,
                value: 1,
            }),
            RelayOp::ClientKeyframe(Keyframe {
                client: 1,
                mid: 3,
                full: false,
            }),
            RelayOp::Advance(Advance { ticks: 63 }),
        ];
        let mut bytes = Vec::new();
        for op in &ops {
            op.encode(&mut bytes);
        }
        assert_eq!(RelayOp::read_all(&bytes, 100), ops);
    }
}
