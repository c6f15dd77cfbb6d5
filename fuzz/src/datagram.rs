//! Operations of the `router_datagram` target: what arrives on the worker's socket, and how an
//! input's bytes say it.
//!
//! Input format: operations one after the other, each a kind byte then the fields of that kind
//! as `arbitrary` reads them (integers little-endian, `bool` and `Option` tag one byte); `Raw`
//! and `Stun` end with `len` more bytes. [`DatagramOp::encode`] writes it (for the seeds).

use std::net::SocketAddr;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use diemcau_sfu::str0m::format::Codec;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::str0m::rtp::RtpWrite;

use crate::encode::Encode;
use crate::meeting::{Meeting, RIDS, STEP};
use crate::stun::{ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_PRIORITY};
use crate::stun::{ATTR_USE_CANDIDATE, ATTR_USERNAME, Integrity, StunMessage};

/// Extended sequence numbers a client writes are masked with this. Only their low 16 bits
/// reach the hub; near 2^64 they overflow the client's own str0m (its RTX cache,
/// `rtx_cache_buf.rs`), which is no concern of the hub's.
pub const CLIENT_SEQUENCE_MASK: u64 = (1 << 48) - 1;

/// Addresses of no client (`source % 8` from 2 to 6).
const STRANGERS: [&str; 5] = [
    "127.0.0.200:5000",
    "127.0.0.200:5001",
    "[::1]:5000",
    "0.0.0.0:0",
    "255.255.255.255:65535",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramOp {
    /// Kind 0.
    Raw(Raw, Vec<u8>),
    /// Kind 1.
    Stun(Stun, Vec<u8>),
    /// Kind 2.
    Replay(Replay),
    /// Kind 3.
    Media(Media),
    /// Kind 4.
    Keyframe(Keyframe),
    /// Kind 5.
    Advance(Advance),
    /// Kind 6.
    Srtcp(Srtcp, Vec<u8>),
}

/// These bytes, as they are. `source % 8`: 0 the studio's address, 1 the site's, 2 to 6 a
/// stranger's ([`STRANGERS`]), 7 the hub's own.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Raw {
    pub source: u8,
    pub len: u16,
}

/// A STUN message. The `len` bytes after it are `username_len` bytes for USERNAME (`username`
/// 4 and 5), then raw attributes appended as they are.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Stun {
    pub source: u8,
    /// Whose ICE credentials (USERNAME, password) to use.
    pub client: u8,
    /// 0: binding request, 1: binding success, 2: binding error, 3: binding indication,
    /// else `raw_type`.
    pub message_type: u8,
    pub raw_type: u16,
    pub transaction: [u8; 12],
    /// 0: `hub-ufrag:client-ufrag` (valid), 1: swapped, 2: the hub's ufrag alone, 3: absent,
    /// 4: the hub's ufrag, a colon and the given bytes, 5: the given bytes.
    pub username: u8,
    pub username_len: u8,
    pub priority: Option<u32>,
    pub use_candidate: bool,
    /// 0: no role, 1: ICE-CONTROLLING, 2: ICE-CONTROLLED.
    pub role: u8,
    pub tie_breaker: u64,
    /// 0: the hub's real ICE password, 1: no MESSAGE-INTEGRITY, 2: a wrong key.
    pub integrity: u8,
    pub fingerprint: bool,
    pub len: u16,
}

/// One of a client's recent datagrams again.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Replay {
    pub client: u8,
    /// Below 128: how far back in the client's latest datagrams (0: the last one); else
    /// `back - 128`-th of its first datagrams (its STUN checks and DTLS handshake).
    pub back: u8,
    pub source: u8,
    pub cut_to: Option<u16>,
    /// (position, xor) pairs.
    pub flips: [(u16, u8); 4],
}

/// RTP written by a client on one of its m-lines.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Media {
    pub client: u8,
    pub video: bool,
    /// For simulcast video, the layer (`% 3`: `q`, `h`, `f`).
    pub layer: u8,
    /// Index into every payload type the client negotiated (also the other m-line's).
    pub payload_type: u8,
    /// 0: next, 1: `value` further, 2: `value` back, else: `value` itself (masked with
    /// [`CLIENT_SEQUENCE_MASK`]).
    pub sequence: u8,
    pub value: u64,
    pub timestamp_step: u32,
    pub marker: bool,
    /// Payload length, modulo 1501.
    pub length: u16,
    /// The payload's first bytes (zeros after): for VP8, the payload descriptor and header.
    pub head: [u8; 8],
}

/// A client asks for a keyframe on a track it receives.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Keyframe {
    pub client: u8,
    pub mid: u8,
    pub full: bool,
}

/// RTCP a client writes itself: the `len` bytes after it, as they are (a compound of any
/// reports and feedback, well formed or not; zeros up to 8 bytes, the header and sender SSRC
/// that SRTCP leaves in the clear), protected under the client's session keys
/// (`Rtc::srtp_contexts`) and sent from its address. What str0m parses and acts on after
/// SRTCP, which raw bytes and replays cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Srtcp {
    pub client: u8,
    pub len: u16,
}

/// The clock moves on by `ticks % 64 + 1` ticks.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Advance {
    pub ticks: u8,
}

impl DatagramOp {
    /// Reads the next operation.
    pub fn read(u: &mut Unstructured<'_>) -> arbitrary::Result<DatagramOp> {
        Ok(match u.arbitrary::<u8>()? % 7 {
            0 => {
                let raw: Raw = u.arbitrary()?;
                let bytes = u.bytes(usize::from(raw.len).min(u.len()))?.to_vec();
                DatagramOp::Raw(raw, bytes)
            }
            1 => {
                let stun: Stun = u.arbitrary()?;
                let bytes = u.bytes(usize::from(stun.len).min(u.len()))?.to_vec();
                DatagramOp::Stun(stun, bytes)
            }
            2 => DatagramOp::Replay(u.arbitrary()?),
            3 => DatagramOp::Media(u.arbitrary()?),
            4 => DatagramOp::Keyframe(u.arbitrary()?),
            5 => DatagramOp::Advance(u.arbitrary()?),
            _ => {
                let srtcp: Srtcp = u.arbitrary()?;
                let bytes = u.bytes(usize::from(srtcp.len).min(u.len()))?.to_vec();
                DatagramOp::Srtcp(srtcp, bytes)
            }
        })
    }

    /// Reads up to `max` operations from an input.
    pub fn read_all(data: &[u8], max: usize) -> Vec<DatagramOp> {
        crate::read_ops(data, max, DatagramOp::read)
    }

    /// Writes the operation as [`DatagramOp::read`] reads it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DatagramOp::Raw(raw, bytes) => {
                out.push(0);
                raw.source.encode(out);
                raw.len.encode(out);
                out.extend_from_slice(bytes);
            }
            DatagramOp::Stun(s, bytes) => {
                out.push(1);
                s.source.encode(out);
                s.client.encode(out);
                s.message_type.encode(out);
                s.raw_type.encode(out);
                s.transaction.encode(out);
                s.username.encode(out);
                s.username_len.encode(out);
                s.priority.encode(out);
                s.use_candidate.encode(out);
                s.role.encode(out);
                s.tie_breaker.encode(out);
                s.integrity.encode(out);
                s.fingerprint.encode(out);
                s.len.encode(out);
                out.extend_from_slice(bytes);
            }
            DatagramOp::Replay(r) => {
                out.push(2);
                r.client.encode(out);
                r.back.encode(out);
                r.source.encode(out);
                r.cut_to.encode(out);
                r.flips.encode(out);
            }
            DatagramOp::Media(m) => {
                out.push(3);
                m.encode(out);
            }
            DatagramOp::Keyframe(k) => {
                out.push(4);
                k.encode(out);
            }
            DatagramOp::Advance(a) => {
                out.push(5);
                a.encode(out);
            }
            DatagramOp::Srtcp(srtcp, bytes) => {
                out.push(6);
                srtcp.client.encode(out);
                srtcp.len.encode(out);
                out.extend_from_slice(bytes);
            }
        }
    }

    /// Whether anyone could send this without a client's secrets.
    pub fn forgeable(&self) -> bool {
        match self {
            DatagramOp::Raw(..) | DatagramOp::Advance(_) => true,
            DatagramOp::Stun(stun, _) => stun.integrity != 0,
            DatagramOp::Replay(_)
            | DatagramOp::Media(_)
            | DatagramOp::Keyframe(_)
            | DatagramOp::Srtcp(..) => false,
        }
    }

    /// Does it to the meeting, and lets every party react.
    pub fn apply(&self, meeting: &mut Meeting) {
        match self {
            DatagramOp::Raw(raw, bytes) => {
                let source = address(meeting, raw.source);
                meeting.net.deliver(source, bytes);
            }
            DatagramOp::Stun(stun, bytes) => {
                let message = stun_bytes(meeting, stun, bytes);
                let source = address(meeting, stun.source);
                meeting.net.deliver(source, &message);
            }
            DatagramOp::Replay(replay) => {
                let c =
                    &meeting.net.clients[usize::from(replay.client) % meeting.net.clients.len()];
                let mut bytes = if replay.back < 128 {
                    if c.datagrams_sent.is_empty() {
                        return;
                    }
                    c.datagrams_sent[c.datagrams_sent.len()
                        - 1
                        - usize::from(replay.back) % c.datagrams_sent.len()]
                    .clone()
                } else {
                    if c.first_datagrams_sent.is_empty() {
                        return;
                    }
                    c.first_datagrams_sent
                        [usize::from(replay.back - 128) % c.first_datagrams_sent.len()]
                    .clone()
                };
                if !bytes.is_empty() {
                    for (at, xor) in replay.flips {
                        let at = usize::from(at) % bytes.len();
                        bytes[at] ^= xor;
                    }
                }
                if let Some(cut) = replay.cut_to {
                    bytes.truncate(usize::from(cut));
                }
                let source = address(meeting, replay.source);
                meeting.net.deliver(source, &bytes);
            }
            DatagramOp::Media(media) => media.apply(meeting),
            DatagramOp::Keyframe(keyframe) => keyframe.apply(meeting),
            DatagramOp::Advance(advance) => advance.apply(meeting),
            DatagramOp::Srtcp(srtcp, bytes) => {
                let c = &meeting.net.clients[usize::from(srtcp.client) % meeting.net.clients.len()];
                // Before its handshake a client has no keys, and nothing to send this with.
                // Fresh contexts start at the SRTCP index the client's own str0m uses next,
                // which str0m does not check for replays.
                let Some((_, mut context)) = c.rtc.srtp_contexts() else {
                    return;
                };
                let source = c.addr;
                // SRTCP leaves the first 8 bytes (the RTCP header and the sender's SSRC) in the
                // clear and takes its IV from them: str0m's `protect_rtcp` reads them, so a
                // client always has them. Shorter bytes are padded with zeros.
                let mut bytes = bytes.clone();
                if bytes.len() < 8 {
                    bytes.resize(8, 0);
                }
                let protected = context.protect_rtcp(&bytes);
                meeting.net.deliver(source, &protected);
            }
        }
    }
}

// `Media`, `Keyframe` and `Advance` are operations of the `router_relay` target too.

impl Media {
    /// Writes the RTP through the client's own str0m, as its browser would (but with any
    /// values), and lets a tick pass.
    pub fn apply(&self, meeting: &mut Meeting) {
        write_media(meeting, self);
        meeting.net.run(STEP, |_| {});
    }
}

impl Keyframe {
    pub fn apply(&self, meeting: &mut Meeting) {
        meeting.request_keyframe(self.client, self.mid, self.full);
        meeting.net.run(STEP, |_| {});
    }
}

impl Advance {
    pub fn apply(&self, meeting: &mut Meeting) {
        meeting
            .net
            .run(STEP * (u32::from(self.ticks % 64) + 1), |_| {});
    }
}

impl Encode for Media {
    fn encode(&self, out: &mut Vec<u8>) {
        self.client.encode(out);
        self.video.encode(out);
        self.layer.encode(out);
        self.payload_type.encode(out);
        self.sequence.encode(out);
        self.value.encode(out);
        self.timestamp_step.encode(out);
        self.marker.encode(out);
        self.length.encode(out);
        self.head.encode(out);
    }
}

impl Encode for Keyframe {
    fn encode(&self, out: &mut Vec<u8>) {
        self.client.encode(out);
        self.mid.encode(out);
        self.full.encode(out);
    }
}

impl Encode for Advance {
    fn encode(&self, out: &mut Vec<u8>) {
        self.ticks.encode(out);
    }
}

/// The STUN message a [`Stun`] operation describes, with the meeting's real credentials.
fn stun_bytes(meeting: &Meeting, stun: &Stun, bytes: &[u8]) -> Vec<u8> {
    let c = &meeting.net.clients[usize::from(stun.client) % meeting.net.clients.len()];
    let (given, raw_attributes) = bytes.split_at(usize::from(stun.username_len).min(bytes.len()));
    let hub_ufrag = c.hub_ice.ufrag.as_bytes();
    let username: Option<Vec<u8>> = match stun.username {
        0 => Some([hub_ufrag, b":", c.ufrag.as_bytes()].concat()),
        1 => Some([c.ufrag.as_bytes(), b":", hub_ufrag].concat()),
        2 => Some(hub_ufrag.to_vec()),
        4 => Some([hub_ufrag, b":", given].concat()),
        5 => Some(given.to_vec()),
        _ => None,
    };
    let priority = stun.priority.map(u32::to_be_bytes);
    let tie_breaker = stun.tie_breaker.to_be_bytes();
    let mut attributes: Vec<(u16, &[u8])> = Vec::new();
    if let Some(username) = &username {
        attributes.push((ATTR_USERNAME, username));
    }
    if let Some(priority) = &priority {
        attributes.push((ATTR_PRIORITY, priority));
    }
    if stun.use_candidate {
        attributes.push((ATTR_USE_CANDIDATE, &[]));
    }
    match stun.role {
        1 => attributes.push((ATTR_ICE_CONTROLLING, &tie_breaker)),
        2 => attributes.push((ATTR_ICE_CONTROLLED, &tie_breaker)),
        _ => {}
    }
    let integrity = match stun.integrity {
        0 => Integrity::Key(c.hub_ice.pass.as_bytes()),
        1 => Integrity::None,
        _ => Integrity::Key(b"not the password"),
    };
    let message_type = match stun.message_type {
        0 => 0x0001,
        1 => 0x0101,
        2 => 0x0111,
        3 => 0x0011,
        _ => stun.raw_type & 0x3FFF,
    };
    StunMessage {
        message_type,
        transaction: stun.transaction,
        attributes: &attributes,
        raw_attributes,
        integrity,
        fingerprint: stun.fingerprint,
    }
    .to_bytes()
}

/// Writes RTP through the client's own str0m, as its browser would (but with any values).
fn write_media(meeting: &mut Meeting, media: &Media) {
    let now = meeting.net.now;
    let index = usize::from(media.client) % meeting.net.clients.len();
    let c = &mut meeting.net.clients[index];
    if !c.connected {
        return;
    }
    let kind = if media.video {
        MediaKind::Video
    } else {
        MediaKind::Audio
    };
    let Some(mid) = c
        .send_mids
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, m)| *m)
    else {
        return;
    };
    let pts: Vec<_> = c
        .rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| p.spec().codec != Codec::Rtx)
        .map(|p| p.pt())
        .collect();
    if pts.is_empty() {
        return;
    }
    let pt = pts[usize::from(media.payload_type) % pts.len()];
    // One sequence per m-line: layers share it, which a real simulcast sender would not do.
    let written = &mut meeting.last_written;
    let (seq, time) = match written
        .iter()
        .find(|(p, m, _, _)| *p == c.peer && *m == mid)
    {
        Some((_, _, seq, time)) => (*seq, *time),
        None => (0, 0),
    };
    let seq = crate::next_sequence(seq, media.sequence, media.value) & CLIENT_SEQUENCE_MASK;
    let time = time.wrapping_add(media.timestamp_step);
    written.retain(|(p, m, _, _)| !(*p == c.peer && *m == mid));
    written.push((c.peer, mid, seq, time));
    let payload = crate::payload(media.length, &media.head);
    let mut direct = c.rtc.direct_api();
    let rid =
        (c.config.simulcast && media.video).then(|| RIDS[usize::from(media.layer) % 3].into());
    let Some(stream) = direct.stream_tx_by_mid(mid, rid) else {
        return;
    };
    stream.write_rtp(
        RtpWrite::new(pt, seq.into(), time, now, Arc::<[u8]>::from(payload))
            .marker(media.marker)
            .nackable(media.video),
    );
}

/// The address a datagram claims to come from (see [`Raw::source`]).
fn address(meeting: &Meeting, source: u8) -> SocketAddr {
    match source % 8 {
        i @ 0..=1 => meeting.net.clients[usize::from(i) % meeting.net.clients.len()].addr,
        i @ 2..=6 => STRANGERS[usize::from(i - 2)]
            .parse()
            .expect("stranger address"),
        _ => meeting.net.hubs[0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Srtcp` operation gets past the hub's SRTCP to what str0m acts on: a site's own
    /// picture loss indication for the studio's video makes the hub ask the studio for a
    /// keyframe.
    #[test]
    fn rtcp_a_site_writes_reaches_the_worker() {
        let mut meeting = Meeting::new(crate::MeetingConfig {
            sites: 1,
            remote_producers: false,
            simulcast: false,
        });
        meeting.net.run(STEP * 200, |_| {});
        let site = &mut meeting.net.clients[1];
        let (_, mid) = *site
            .recv_mids
            .iter()
            .find(|(kind, _)| *kind == MediaKind::Video)
            .expect("the site receives the studio's video");
        let ssrc = site
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .map(|stream| *stream.ssrc())
            .expect("its receiving stream");
        let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1];
        pli.extend_from_slice(&ssrc.to_be_bytes());
        let before = meeting.net.clients[0].keyframe_requests;
        DatagramOp::Srtcp(Srtcp { client: 1, len: 12 }, pli).apply(&mut meeting);
        meeting.net.run(STEP * 10, |_| {});
        let after = meeting.net.clients[0].keyframe_requests;
        assert!(after > before, "keyframe requests {before} -> {after}");
    }

    #[test]
    fn encode_is_what_read_reads() {
        let ops = vec![
            DatagramOp::Raw(Raw { source: 2, len: 3 }, vec![1, 2, 3]),
            DatagramOp::Stun(
                Stun {
                    source: 3,
                    client: 1,
                    message_type: 0,
                    raw_type: 0,
                    transaction: [9; 12],
                    username: 4,
                    username_len: 2,
                    priority: Some(7),
                    use_candidate: true,
                    role: 1,
                    tie_breaker: 5,
                    integrity: 0,
                    fingerprint: true,
                    len: 6,
                },
                b"ab\x80\x22\0\0".to_vec(),
            ),
            DatagramOp::Replay(Replay {
                client: 0,
                back: 1,
                source: 4,
                cut_to: None,
                flips: [(1, 2), (3, 4), (5, 6), (7, 8)],
            }),
            DatagramOp::Replay(Replay {
                client: 0,
                back: 1,
                source: 4,
                cut_to: Some(12),
                flips: [(0, 0); 4],
            }),
            DatagramOp::Media(Media {
                client: 0,
                video: true,
                layer: 1,
                payload_type: 2,
                sequence: 3,
                value: u64::MAX,
                timestamp_step: 3000,
                marker: true,
                length: 1200,
                head: [0x10, 0, 0x9d, 0x01, 0x2a, 0, 0, 0],
            }),
            DatagramOp::Keyframe(Keyframe {
                client: 1,
                mid: 1,
                full: true,
            }),
            DatagramOp::Advance(Advance { ticks: 9 }),
            DatagramOp::Srtcp(Srtcp { client: 1, len: 4 }, vec![0x81, 205, 0, 0]),
        ];
        let mut bytes = Vec::new();
        for op in &ops {
            op.encode(&mut bytes);
        }
        assert_eq!(DatagramOp::read_all(&bytes, 100), ops);
    }
}
