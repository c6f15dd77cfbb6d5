//! Forwarding: one publisher's packet written to every open consumer of its producer on this
//! worker, each with its own payload type, sequence numbers, timestamps and VP8 picture ids,
//! switching simulcast layers on a keyframe of the layer the allocator chose.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use str0m::media::MediaKind;

use crate::core::note_transport;
use crate::ids::PeerId;
use crate::output::{DatagramBuffers, Output};
use crate::peer::Peer;
use crate::router::{MediaPacket, Router};

/// What one [`forward`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub packets: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
}

/// Writes `packet` to every open consumer of its producer in `router` (for video, the
/// consumers that forward this packet's layer, switching layers on a keyframe of the target
/// layer), at `now`. What each consumer's pacer lets go at once is queued in `outputs`
/// straight away, written into one of `buffers`; peers that keep something to send, or must
/// be driven for another reason, are marked and listed in `touched`, to be driven once later.
pub(crate) fn forward(
    now: Instant,
    packet: &MediaPacket,
    router: &mut Router,
    peers: &mut HashMap<PeerId, Box<Peer>>,
    touched: &mut Vec<PeerId>,
    outputs: &mut VecDeque<Output>,
    buffers: &mut DatagramBuffers,
) -> Forwarded {
    let mut forwarded = Forwarded::default();
    let Some(consumers) = router.consumers_of.get(&packet.producer) else {
        return forwarded;
    };
    // str0m's VP8 descriptor, parsed once for every consumer that patches picture ids.
    let mut vp8_descriptor = None;
    for consumer_id in consumers {
        let Some(consumer) = router.consumers.get_mut(consumer_id) else {
            continue;
        };
        let (true, Some(mid)) = (consumer.open, consumer.mid) else {
            continue;
        };
        let video = packet.kind == MediaKind::Video;
        if video && consumer.current != Some(packet.layer) {
            let switch = consumer.allocation.target == Some(packet.layer)
                && packet.keyframe_start != Some(false);
            if !switch {
                continue;
            }
            consumer.current = Some(packet.layer);
            consumer.sequence.rebase();
            consumer.timestamps.rebase();
            consumer.pictures.rebase();
        }
        let Some(peer) = peers.get_mut(&consumer.peer) else {
            continue;
        };
        // Until its connection is up (and while it is down), a peer is written nothing: str0m
        // would queue it all, a second of video per site in a join storm, and send it late in
        // one burst. It gets a keyframe once connected.
        if !peer.rtc.is_connected() {
            continue;
        }
        let pt = match consumer
            .payload_types
            .iter()
            .find(|(c, _)| *c == packet.codec)
        {
            Some((_, pt)) => *pt,
            None => {
                let Some(pt) = peer.payload_type_for(packet.codec, mid) else {
                    continue;
                };
                consumer.payload_types.push((packet.codec, pt));
                pt
            }
        };
        let (pt, payload) = if packet.kind == MediaKind::Audio {
            let Some(audio) = peer.audio_for(mid, packet, pt) else {
                continue;
            };
            audio
        } else {
            (pt, packet.payload.clone())
        };
        let Some(seq_no) = consumer.sequence.rewrite(packet.seq_no) else {
            continue;
        };
        // The clock moves only across a layer switch, or for a fixed m-line's new source.
        let clock_per_ms = if video { 90 } else { 48 };
        let timestamp =
            consumer
                .timestamps
                .rewrite(packet.timestamp, packet.received_at, clock_per_ms);
        let mut write =
            str0m::rtp::RtpWrite::new(pt, seq_no, timestamp, packet.received_at, payload)
                .marker(packet.marker)
                .ext_vals(packet.extensions.clone())
                .nackable(video);
        if let Some(info) = &packet.vp8
            && let (picture, tl0) = consumer.pictures.rewrite(info)
            && (picture.is_some() || tl0.is_some())
            && let Ok(descriptor) = *vp8_descriptor
                .get_or_insert_with(|| str0m::rtp::Vp8Descriptor::parse(&packet.payload))
        {
            let mut patch = descriptor.patch();
            if let Some(picture) = picture {
                patch = patch.picture_id(picture);
            }
            if let Some(tl0) = tl0 {
                patch = patch.tl0_pic_idx(tl0);
            }
            if let Ok(patch) = patch.build() {
                write = write.vp8_patch(patch);
            }
        }
        let mut proto = None;
        let Some(idle) = peer.rtc.direct_api().write_rtp_now(
            now,
            mid,
            None,
            write,
            || buffers.take(),
            |t| {
                proto = Some(t.proto);
                outputs.push_back(Output::Transmit(t));
            },
        ) else {
            continue;
        };
        if let Some(proto) = proto {
            note_transport(outputs, peer, proto);
        }
        forwarded.packets += 1;
        forwarded.bytes += packet.payload.len() as u64;
        if !idle && !peer.touched {
            peer.touched = true;
            touched.push(peer.id);
        }
    }
    forwarded
}
