//! Header-only reception (`--receive headers`): a site that counts what arrives from the clear
//! RTP header instead of handing every packet to str0m.
//!
//! Under SRTP the RTP header (payload type, sequence number, SSRC, header extensions) is in the
//! clear; only the payload is encrypted. Once str0m has completed ICE, DTLS and the SRTP key
//! exchange, [`HeaderReception`] takes the session's keys (`Rtc::srtp_contexts`, a change of
//! the str0m the workspace carries) and from then on:
//!
//! - counts every RTP packet from its header: per media stream the distinct sequence numbers,
//!   gaps, duplicates; repairs (RTX) and padding apart;
//! - unprotects a sample: one media packet in [`SAMPLE_EVERY`] per stream and each stream's
//!   first, for the delay (the send-time stamp in the payload) and the integrity figures (it
//!   must authenticate and carry a readable stamp); the first packet of every keyframe (see
//!   [`Frames`]); and the retransmissions that may repair a gap, for the sequence number they
//!   carry;
//! - answers as a browser would, with its own RTCP under the session's SRTCP keys:
//!   transport-wide congestion control feedback every 50 ms (what the hub's bandwidth
//!   estimator reads), generic NACKs for the picture's gaps (up to three times each; sound is
//!   not retransmitted), and a receiver report per stream every second.
//!
//! A packet arrives, in the feedback and in the delay figures, when the engine's thread reads
//! its batch (`--arrival handled`, the default) or when the kernel received it (`--arrival
//! kernel`, `SO_TIMESTAMPNS` read with the batch): one thread plays every site, and a burst of
//! its own work delays what it reads, where a browser's network thread reads at once.
//!
//! str0m keeps the rest of the connection (ICE consent, RTCP from the hub); the RTCP it would
//! send itself is dropped, so the hub hears one receiver. Loss here is what a receiver's
//! RTCP reports: gaps in the sequence numbers of the hub's streams (between the hub and the
//! site), over the packets that arrived in the measurement window.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::rtp::{RtpHeader, SrtpContext};

use crate::media::{Kind, Stamp, is_vp8_keyframe_start};

/// One media packet in this many per stream is unprotected for its stamp.
pub const SAMPLE_EVERY: u64 = 50;
/// Transport-wide feedback (and due NACKs) this often, as str0m and browsers do.
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// A gap is asked for again after this, up to [`NACK_TRIES`] times.
const NACK_RETRY: Duration = Duration::from_millis(40);
const NACK_TRIES: u8 = 3;
/// Gaps tracked per stream for NACKs; a larger hole is counted, not asked for.
const NACK_TRACKED: usize = 512;
/// Sequence numbers remembered per stream (a power of two): later arrivals and repairs of
/// older ones are not counted.
const SEEN: u64 = 4096;
/// Packets reported per transport-wide feedback; more wait for the next one.
const TWCC_PER_FEEDBACK: u64 = 400;
/// A frame with at least this many times the packets of the stream's average frame (and at
/// least two) may be a keyframe: its first packet is unprotected to see. The studio's
/// keyframes are 4–6 times its average frame.
const KEYFRAME_FACTOR: u32 = 2;

/// What a site learned from the hub's SDP: the transport-wide sequence number's extension id
/// and which retransmission SSRC repairs which stream.
#[derive(Debug, Clone, Default)]
pub struct SdpFacts {
    pub twcc_id: Option<u8>,
    /// RTX SSRC → the SSRC it repairs (`a=ssrc-group:FID`).
    pub repairs: HashMap<u32, u32>,
}

impl SdpFacts {
    /// Adds what `sdp` says (a later offer adds streams; ids do not change in a session).
    pub fn learn(&mut self, sdp: &str) {
        for line in sdp.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("a=extmap:") {
                let mut parts = rest.split_whitespace();
                let id = parts
                    .next()
                    .and_then(|id| id.split('/').next()?.parse().ok());
                if parts.next()
                    == Some(
                        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                    )
                {
                    self.twcc_id = id.or(self.twcc_id);
                }
            } else if let Some(rest) = line.strip_prefix("a=ssrc-group:FID ") {
                let ssrcs: Vec<u32> = rest
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if let [main, rtx] = ssrcs[..] {
                    self.repairs.insert(rtx, main);
                }
            }
        }
    }
}

/// What header-only reception counted at one site.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderCounts {
    /// RTP datagrams taken from the hub once header-only reception began.
    pub rtp_datagrams: u64,
    /// Media packets (first arrivals and duplicates) of the hub's streams.
    pub media_packets: u64,
    pub duplicates: u64,
    /// Retransmissions that filled a gap.
    pub repairs: u64,
    /// Packets that came after a later one of their stream (a gap they filled themselves,
    /// without a retransmission): a retransmission the hub had from its publisher late, or a
    /// reordering. No longer asked for.
    pub reordered: u64,
    /// Padding and probes (packets of a retransmission or probe SSRC with the padding bit).
    pub padding: u64,
    /// Retransmissions of packets that had arrived (or too late to count).
    pub redundant_repairs: u64,
    /// Packets of an SSRC or payload type the site does not know.
    pub unknown: u64,
    /// Packets unprotected for their stamp, and of those the ones that did not authenticate
    /// or carried no readable stamp.
    pub sampled: u64,
    pub sample_failures: u64,
    /// Frames of the picture large enough to be keyframes ([`KEYFRAME_FACTOR`]) whose first
    /// arrived packet was unprotected; of those, the ones that were a keyframe's first packet
    /// with a readable stamp (sampled for the delay too), and the ones that did not
    /// authenticate. The rest are large delta frames, or keyframes whose first packet was lost.
    pub keyframe_candidates: u64,
    pub keyframes_sampled: u64,
    pub keyframe_sample_failures: u64,
    /// Packets the site never got, as its last receiver reports would say (gaps in the
    /// sequence numbers of each stream).
    pub lost: u64,
    /// RTCP compound packets sent, and what they carried.
    pub feedback_packets: u64,
    pub twcc_feedbacks: u64,
    pub nacked_packets: u64,
    pub receiver_reports: u64,
    /// RTCP that str0m wrote and the site did not send (the site answers itself).
    pub dropped_rtc_rtcp: u64,
    /// Per kind, in the measurement window: distinct packets that arrived, and those the
    /// sequence numbers say were sent (from the first to the last that arrived).
    pub window: HashMap<Kind, WindowCount>,
}

impl HeaderCounts {
    /// Adds another site's counts.
    pub fn add(&mut self, other: &HeaderCounts) {
        self.rtp_datagrams += other.rtp_datagrams;
        self.media_packets += other.media_packets;
        self.duplicates += other.duplicates;
        self.repairs += other.repairs;
        self.reordered += other.reordered;
        self.padding += other.padding;
        self.redundant_repairs += other.redundant_repairs;
        self.unknown += other.unknown;
        self.sampled += other.sampled;
        self.sample_failures += other.sample_failures;
        self.keyframe_candidates += other.keyframe_candidates;
        self.keyframes_sampled += other.keyframes_sampled;
        self.keyframe_sample_failures += other.keyframe_sample_failures;
        self.lost += other.lost;
        self.feedback_packets += other.feedback_packets;
        self.twcc_feedbacks += other.twcc_feedbacks;
        self.nacked_packets += other.nacked_packets;
        self.receiver_reports += other.receiver_reports;
        self.dropped_rtc_rtcp += other.dropped_rtc_rtcp;
        for (kind, w) in &other.window {
            let mine = self.window.entry(*kind).or_default();
            mine.expected += w.expected;
            mine.received += w.received;
        }
    }
}

/// One kind's packets in the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WindowCount {
    pub expected: u64,
    pub received: u64,
}

/// A received packet's sample, for the thread's delay histograms.
pub struct Sample {
    pub stamp: Stamp,
    /// When the packet arrived: a keyframe's first packet is sampled once its frame is
    /// complete, after it arrived.
    pub arrived: Instant,
}

/// What one datagram gave to sample: a packet of its stream, and a keyframe's first packet
/// whose frame it completed.
#[derive(Default)]
pub struct Samples {
    pub packet: Option<Sample>,
    pub keyframe: Option<Sample>,
}

impl Samples {
    pub fn all(self) -> impl Iterator<Item = Sample> {
        [self.packet, self.keyframe].into_iter().flatten()
    }
}

/// One site's header-only reception. States: counting (from the handover until the run ends).
pub struct HeaderReception {
    rx: SrtpContext,
    tx: SrtpContext,
    /// Our SSRC as an RTCP sender.
    ssrc: u32,
    epoch: Instant,
    streams: HashMap<u32, Stream>,
    /// The highest SSRC-extended index of each retransmission stream.
    rtx_highest: HashMap<u32, u64>,
    twcc: Twcc,
    next_report: Instant,
    /// The hub's address, from the datagrams it sends.
    pub remote: Option<SocketAddr>,
    pub counts: HeaderCounts,
}

impl HeaderReception {
    pub fn new(rx: SrtpContext, tx: SrtpContext, ssrc: u32, now: Instant) -> HeaderReception {
        HeaderReception {
            rx,
            tx,
            ssrc,
            epoch: now,
            streams: HashMap::new(),
            rtx_highest: HashMap::new(),
            twcc: Twcc::default(),
            next_report: now + REPORT_INTERVAL,
            remote: None,
            counts: HeaderCounts::default(),
        }
    }

    /// Counts one RTP datagram; returns what it gave to sample. `kind_of` names the kind of a
    /// payload type and whether it is a retransmission one.
    pub fn receive(
        &mut self,
        now: Instant,
        datagram: &[u8],
        in_window: bool,
        facts: &SdpFacts,
        kind_of: impl FnOnce(u8) -> Option<(Kind, bool)>,
    ) -> Samples {
        self.counts.rtp_datagrams += 1;
        let Some(header) = Header::parse(datagram, facts.twcc_id) else {
            return Samples::default();
        };
        if let Some(seq) = header.twcc {
            self.twcc.record(seq, now);
        }
        // A retransmission SSRC may carry padding under the main payload type: the SSRC says.
        let Some((kind, retransmission)) = kind_of(header.pt) else {
            self.counts.unknown += 1;
            return Samples::default();
        };
        if retransmission || facts.repairs.contains_key(&header.ssrc) || header.ssrc == 0 {
            self.repair(&header, datagram, facts);
            return Samples::default();
        }
        let stream = self
            .streams
            .entry(header.ssrc)
            .or_insert_with(|| Stream::new(kind));
        let arrival = stream.rtp_units(now.saturating_duration_since(self.epoch));
        let Arrival {
            index,
            first: arrived,
            late,
        } = stream.arrive(header.seq, now, in_window);
        if !arrived {
            self.counts.duplicates += 1;
        }
        if late {
            self.counts.reordered += 1;
        }
        self.counts.media_packets += 1;
        stream.jitter(arrival, header.timestamp);
        stream.packets += 1;
        let sampled = stream.packets % SAMPLE_EVERY == 1;
        let completed =
            kind == Kind::Video && arrived && stream.frames.arrive(&header, datagram, index, now);
        let mut samples = Samples::default();
        if completed {
            samples.keyframe = self.sample_keyframe(header.ssrc, facts);
        }
        if !sampled {
            return samples;
        }
        self.counts.sampled += 1;
        samples.packet = unprotect(&mut self.rx, datagram, &header, index)
            .and_then(|payload| Stamp::parse(kind, payload))
            .map(|stamp| Sample {
                stamp,
                arrived: now,
            });
        if samples.packet.is_none() {
            self.counts.sample_failures += 1;
        }
        samples
    }

    /// Unprotects the first packet of the large frame stream `ssrc` has just completed; a
    /// sample when it is a keyframe's first packet with a readable stamp.
    fn sample_keyframe(&mut self, ssrc: u32, facts: &SdpFacts) -> Option<Sample> {
        let frames = &self.streams.get(&ssrc)?.frames;
        let kept = &frames.candidate;
        let header = Header::parse(&kept.datagram, facts.twcc_id)?;
        self.counts.keyframe_candidates += 1;
        let Some(payload) = unprotect(&mut self.rx, &kept.datagram, &header, kept.index) else {
            self.counts.keyframe_sample_failures += 1;
            return None;
        };
        if !is_vp8_keyframe_start(payload) {
            return None;
        }
        let Some(stamp) = Stamp::parse(Kind::Video, payload) else {
            self.counts.keyframe_sample_failures += 1;
            return None;
        };
        self.counts.keyframes_sampled += 1;
        Some(Sample {
            stamp,
            arrived: kept.arrived?,
        })
    }

    /// A packet of a retransmission stream: a repair when its stream has a gap it may fill
    /// (then it is unprotected for the sequence number it carries), else padding.
    fn repair(&mut self, header: &Header, datagram: &[u8], facts: &SdpFacts) {
        let highest = self.rtx_highest.get(&header.ssrc).copied();
        let index = extend(highest, header.seq);
        if highest.is_none_or(|h| index > h) {
            self.rtx_highest.insert(header.ssrc, index);
        }
        let main = facts.repairs.get(&header.ssrc).copied();
        let stream = main
            .and_then(|m| self.streams.get_mut(&m))
            .filter(|s| !s.missing.is_empty());
        let filled = stream.is_some_and(|stream| {
            unprotect(&mut self.rx, datagram, header, index)
                .and_then(|payload| Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?])))
                .is_some_and(|seq| stream.fill(seq))
        });
        if filled {
            self.counts.repairs += 1;
        } else if header.padding {
            self.counts.padding += 1;
        } else {
            self.counts.redundant_repairs += 1;
        }
    }

    /// The RTCP due at `now` (transport-wide feedback, NACKs, receiver reports), protected,
    /// or `None` when nothing is due.
    pub fn feedback(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut rtcp = Vec::new();
        if now >= self.next_report && !self.streams.is_empty() {
            self.next_report = now + REPORT_INTERVAL;
            self.write_report(&mut rtcp);
            self.counts.receiver_reports += 1;
        }
        for (ssrc, stream) in &mut self.streams {
            let nacks = stream.due_nacks(now);
            if !nacks.is_empty() {
                self.counts.nacked_packets += nacks.len() as u64;
                write_nack(&mut rtcp, self.ssrc, *ssrc, &nacks);
            }
        }
        if self.twcc.write(&mut rtcp, self.ssrc, self.epoch) {
            self.counts.twcc_feedbacks += 1;
        }
        if rtcp.is_empty() {
            return None;
        }
        self.counts.feedback_packets += 1;
        Some(self.tx.protect_rtcp(&rtcp))
    }

    /// A receiver report with a block per stream (RFC 3550 §6.4.2), at most 31.
    fn write_report(&mut self, out: &mut Vec<u8>) {
        let blocks: Vec<[u8; 24]> = self
            .streams
            .iter_mut()
            .take(31)
            .map(|(ssrc, s)| s.report_block(*ssrc))
            .collect();
        let words = 1 + 6 * blocks.len();
        out.push(0x80 | blocks.len() as u8);
        out.push(201);
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for block in blocks {
            out.extend_from_slice(&block);
        }
    }

    /// The counts, with the loss the sequence numbers show at the end of the run.
    pub fn finish(&self) -> HeaderCounts {
        let mut counts = self.counts.clone();
        counts.lost = self.streams.values().map(Stream::lost).sum();
        for s in self.streams.values() {
            let w = counts.window.entry(s.kind).or_default();
            w.expected += s.window_expected();
            w.received += s.window_received;
        }
        counts
    }
}

/// The payload of `datagram`, unprotected, without its padding.
fn unprotect<'a>(
    rx: &'a mut SrtpContext,
    datagram: &[u8],
    header: &Header,
    index: u64,
) -> Option<&'a [u8]> {
    let parsed = RtpHeader {
        ssrc: header.ssrc.into(),
        sequence_number: header.seq,
        payload_type: header.pt.into(),
        has_padding: header.padding,
        header_len: header.len,
        ..RtpHeader::default()
    };
    let payload = rx.unprotect_rtp(datagram, &parsed, index)?;
    if header.padding {
        let pad = usize::from(*payload.last()?);
        return payload.get(..payload.len().checked_sub(pad)?);
    }
    Some(payload)
}

/// Extends a 16-bit sequence number to the index nearest `highest` (RFC 3711 §3.3.1).
fn extend(highest: Option<u64>, seq: u16) -> u64 {
    let Some(highest) = highest else {
        return u64::from(seq);
    };
    let roc = highest >> 16;
    let candidates = [roc.checked_sub(1), Some(roc), Some(roc + 1)];
    candidates
        .into_iter()
        .flatten()
        .map(|r| (r << 16) | u64::from(seq))
        .min_by_key(|i| i.abs_diff(highest))
        .unwrap_or(u64::from(seq))
}

/// A packet kept until its frame is complete.
#[derive(Debug, Default)]
struct Kept {
    datagram: Vec<u8>,
    index: u64,
    arrived: Option<Instant>,
}

/// Watches a picture stream's frames for keyframes without unprotecting them: the frame's
/// first arrived packet is kept (a copy, in a buffer reused from frame to frame) until the
/// frame is complete, at its marker bit or at the first packet of a later frame; a frame of
/// at least [`KEYFRAME_FACTOR`] times the average frame's packets hands its first packet over
/// ([`Frames::candidate`]) to be unprotected. A keyframe's size shows only at its end, and its
/// type only under the encryption. States per frame: open (packets arriving) → decided.
#[derive(Debug, Default)]
pub struct Frames {
    timestamp: Option<u32>,
    packets: u32,
    open: bool,
    first: Kept,
    /// The first packet of the last large frame.
    candidate: Kept,
    /// Packets per frame, a moving average (×16) over about the last 16 frames.
    average16: Option<u32>,
}

impl Frames {
    /// Takes a first arrival of the stream's media; returns whether it completed a large frame
    /// (then its first packet is in [`Frames::candidate`]). A packet of an earlier frame than
    /// the open one (reordered) is left out.
    fn arrive(&mut self, header: &Header, datagram: &[u8], index: u64, now: Instant) -> bool {
        let mut large = false;
        if self.timestamp != Some(header.timestamp) {
            let later = self
                .timestamp
                .is_none_or(|t| (header.timestamp.wrapping_sub(t) as i32) > 0);
            if !later {
                return false;
            }
            if self.open {
                large = self.close();
            }
            self.timestamp = Some(header.timestamp);
            self.packets = 0;
            self.open = true;
            self.first.datagram.clear();
            self.first.datagram.extend_from_slice(datagram);
            self.first.index = index;
            self.first.arrived = Some(now);
        }
        self.packets += 1;
        if header.marker && self.open {
            // A frame of one packet is never large: `large` from above stays.
            large |= self.close();
        }
        large
    }

    /// Decides the open frame; whether it was large.
    fn close(&mut self) -> bool {
        self.open = false;
        let packets16 = self.packets * 16;
        let large = self.packets >= 2
            && self
                .average16
                .is_none_or(|average| packets16 >= average * KEYFRAME_FACTOR);
        let average = self.average16.unwrap_or(packets16);
        self.average16 = Some(average - average / 16 + self.packets);
        if large {
            std::mem::swap(&mut self.first, &mut self.candidate);
        }
        large
    }
}

/// The clear part of an RTP packet.
struct Header {
    pt: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    padding: bool,
    marker: bool,
    /// Length of the header with its CSRCs and extensions.
    len: usize,
    /// The transport-wide sequence number, when the packet has one.
    twcc: Option<u16>,
}

impl Header {
    fn parse(buf: &[u8], twcc_id: Option<u8>) -> Option<Header> {
        let fixed: &[u8; 12] = buf.get(..12)?.try_into().ok()?;
        if fixed[0] >> 6 != 2 {
            return None;
        }
        let csrcs = usize::from(fixed[0] & 0x0F);
        let mut len = 12 + 4 * csrcs;
        let mut twcc = None;
        if fixed[0] & 0x10 != 0 {
            let ext: &[u8; 4] = buf.get(len..len + 4)?.try_into().ok()?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            let body = buf.get(len + 4..len + 4 + 4 * words)?;
            if let Some(id) = twcc_id {
                twcc = find_extension(profile, body, id)
                    .and_then(|v| Some(u16::from_be_bytes([*v.first()?, *v.get(1)?])));
            }
            len += 4 + 4 * words;
        }
        (buf.len() > len).then(|| Header {
            pt: fixed[1] & 0x7F,
            seq: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            padding: fixed[0] & 0x20 != 0,
            marker: fixed[1] & 0x80 != 0,
            len,
            twcc,
        })
    }
}

/// The value of extension `id` in a one-byte (0xBEDE) or two-byte (0x100x) block.
fn find_extension(profile: u16, mut body: &[u8], id: u8) -> Option<&[u8]> {
    let two_byte = profile & 0xFFF0 == 0x1000;
    if profile != 0xBEDE && !two_byte {
        return None;
    }
    while let Some(&first) = body.first() {
        if first == 0 {
            body = body.get(1..)?;
            continue;
        }
        let (this, len, start) = if two_byte {
            (first, usize::from(*body.get(1)?), 2)
        } else if first >> 4 == 15 {
            return None;
        } else {
            (first >> 4, usize::from(first & 0x0F) + 1, 1)
        };
        let value = body.get(start..start + len)?;
        if this == id {
            return Some(value);
        }
        body = body.get(start + len..)?;
    }
    None
}

/// What [`Stream::arrive`] made of a packet.
struct Arrival {
    /// Its extended sequence number.
    index: u64,
    /// Its first arrival (else a duplicate, or too old to tell).
    first: bool,
    /// It came after a later packet of its stream.
    late: bool,
}

/// One of the hub's media streams to this site.
struct Stream {
    kind: Kind,
    packets: u64,
    first: Option<u64>,
    highest: u64,
    /// Distinct indices that arrived.
    received: u64,
    /// Whether index `i` arrived, for the last [`SEEN`] indices.
    seen: Vec<u64>,
    /// Gaps to ask for: (index, when next, tries).
    missing: VecDeque<(u64, Instant, u8)>,
    window_first: Option<u64>,
    window_highest: u64,
    window_received: u64,
    /// Receiver report state: expected and received at the last report, and the RFC 3550
    /// jitter (in RTP units, ×16) with the last transit time.
    prior_expected: u64,
    prior_received: u64,
    jitter16: u64,
    last_transit: Option<i64>,
    /// The picture's frames, watched for keyframes (a sound stream's stay empty).
    frames: Frames,
}

impl Stream {
    fn new(kind: Kind) -> Stream {
        Stream {
            kind,
            packets: 0,
            first: None,
            highest: 0,
            received: 0,
            seen: vec![0; (SEEN / 64) as usize],
            missing: VecDeque::new(),
            window_first: None,
            window_highest: 0,
            window_received: 0,
            prior_expected: 0,
            prior_received: 0,
            jitter16: 0,
            last_transit: None,
            frames: Frames::default(),
        }
    }

    fn clock_rate(&self) -> u64 {
        match self.kind {
            Kind::Audio => 48_000,
            Kind::Video => 90_000,
        }
    }

    fn rtp_units(&self, since: Duration) -> u64 {
        (since.as_nanos() * u128::from(self.clock_rate()) / 1_000_000_000) as u64
    }

    /// Sets whether `index` arrived; returns whether it was marked before.
    fn set_seen(&mut self, index: u64, arrived: bool) -> bool {
        let slot = index % SEEN;
        let Some(word) = self.seen.get_mut((slot / 64) as usize) else {
            return false;
        };
        let bit = 1 << (slot % 64);
        let before = *word & bit != 0;
        if arrived {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        before
    }

    /// Records the arrival of `seq`: its index, whether it was its first arrival, and whether
    /// it filled a gap (then it is no longer asked for by NACK, as a browser's receiver does).
    fn arrive(&mut self, seq: u16, now: Instant, in_window: bool) -> Arrival {
        let index = extend(self.first.map(|_| self.highest), seq);
        let Some(_) = self.first else {
            self.first = Some(index);
            self.highest = index;
            return Arrival {
                index,
                first: self.mark(index, in_window),
                late: false,
            };
        };
        if index > self.highest {
            if index - self.highest > SEEN {
                self.seen.fill(0);
            } else {
                // The slots the ring reuses, the new index's own included, start unseen.
                for reused in self.highest + 1..=index {
                    self.set_seen(reused, false);
                }
            }
            for gap in (self.highest + 1).max(index.saturating_sub(SEEN - 1))..index {
                // Sound is not retransmitted (Opus has no NACK feedback in WebRTC's SDP).
                if self.kind == Kind::Video && self.missing.len() < NACK_TRACKED {
                    self.missing.push_back((gap, now, 0));
                }
            }
            self.highest = index;
        } else if self.highest - index >= SEEN || Some(index) < self.first {
            return Arrival {
                index,
                first: false,
                late: false,
            };
        }
        let first = self.mark(index, in_window);
        let late = first && index < self.highest;
        if late && let Some(at) = self.missing.iter().position(|(i, _, _)| *i == index) {
            self.missing.remove(at);
        }
        Arrival { index, first, late }
    }

    /// Marks `index` as arrived; false when it had.
    fn mark(&mut self, index: u64, in_window: bool) -> bool {
        if self.set_seen(index, true) {
            return false;
        }
        self.received += 1;
        if in_window {
            let first = *self.window_first.get_or_insert(index);
            if index >= first {
                self.window_received += 1;
                self.window_highest = self.window_highest.max(index);
            }
        }
        true
    }

    /// A retransmission of `seq` arrived: true when it filled a gap.
    fn fill(&mut self, seq: u16) -> bool {
        let index = extend(Some(self.highest), seq);
        if index > self.highest || self.highest - index >= SEEN {
            return false;
        }
        let position = self.missing.iter().position(|(i, _, _)| *i == index);
        let Some(position) = position else {
            return false;
        };
        self.missing.remove(position);
        // A repair counts in the window when the gap it fills is inside the window's range
        // of arrivals (it may arrive after the window closed).
        let in_window = self
            .window_first
            .is_some_and(|f| (f..=self.window_highest).contains(&index));
        self.mark(index, in_window)
    }

    fn due_nacks(&mut self, now: Instant) -> Vec<u16> {
        let mut due = Vec::new();
        let highest = self.highest;
        self.missing
            .retain(|(index, _, tries)| *tries < NACK_TRIES && highest - *index < SEEN);
        for (index, next, tries) in &mut self.missing {
            if *next <= now {
                due.push(*index as u16);
                *next = now + NACK_RETRY;
                *tries += 1;
            }
        }
        due
    }

    fn jitter(&mut self, arrival: u64, timestamp: u32) {
        let transit = arrival as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as i64;
            let j = self.jitter16 as i64;
            self.jitter16 = (j + d * 16 / 16 - (j + 8) / 16).max(0) as u64;
        }
        self.last_transit = Some(transit);
    }

    fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.highest - f + 1)
    }

    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    fn window_expected(&self) -> u64 {
        self.window_first
            .map_or(0, |f| self.window_highest.saturating_sub(f) + 1)
    }

    fn report_block(&mut self, ssrc: u32) -> [u8; 24] {
        let expected = self.expected();
        let interval_expected = expected.saturating_sub(self.prior_expected);
        let interval_received = self.received.saturating_sub(self.prior_received);
        self.prior_expected = expected;
        self.prior_received = self.received;
        let interval_lost = interval_expected.saturating_sub(interval_received);
        let fraction = (interval_lost << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        let cumulative = self.lost().min(0x7F_FFFF) as u32;
        let mut block = [0u8; 24];
        block[..4].copy_from_slice(&ssrc.to_be_bytes());
        block[4] = fraction;
        block[5..8].copy_from_slice(&cumulative.to_be_bytes()[1..]);
        block[8..12].copy_from_slice(&(self.highest as u32).to_be_bytes());
        block[12..16].copy_from_slice(&((self.jitter16 / 16) as u32).to_be_bytes());
        // No sender report is read: last SR and delay since it stay zero.
        block
    }
}

fn write_nack(out: &mut Vec<u8>, sender: u32, media: u32, seqs: &[u16]) {
    // (PID, BLP) pairs: a lost packet and a bitmask of the 16 after it.
    let mut pairs: Vec<(u16, u16)> = Vec::new();
    for &seq in seqs {
        match pairs.last_mut() {
            Some((pid, blp)) if seq.wrapping_sub(*pid).wrapping_sub(1) < 16 && seq != *pid => {
                *blp |= 1 << seq.wrapping_sub(*pid).wrapping_sub(1);
            }
            _ => pairs.push((seq, 0)),
        }
    }
    out.push(0x80 | 1);
    out.push(205);
    out.extend_from_slice(&((2 + pairs.len()) as u16).to_be_bytes());
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    for (pid, blp) in pairs {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
}

/// Transport-wide sequence numbers that arrived and are not yet reported
/// (draft-holmer-rmcat-transport-wide-cc-extensions-01).
#[derive(Default)]
struct Twcc {
    /// (extended sequence number, arrival), in arrival order.
    pending: Vec<(u64, Instant)>,
    highest: Option<u64>,
    /// The first sequence number the next feedback reports.
    next: Option<u64>,
    count: u8,
}

impl Twcc {
    fn record(&mut self, seq: u16, now: Instant) {
        let index = extend(self.highest, seq);
        if self.highest.is_none_or(|h| index > h) {
            self.highest = Some(index);
        }
        if self.next.is_none_or(|n| index >= n) {
            self.pending.push((index, now));
        }
    }

    /// Writes one feedback of what is pending; false when nothing is.
    fn write(&mut self, out: &mut Vec<u8>, sender: u32, epoch: Instant) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        self.pending.sort_unstable_by_key(|(i, _)| *i);
        self.pending.dedup_by_key(|(i, _)| *i);
        let Some(&(lowest, _)) = self.pending.first() else {
            return false;
        };
        // A hole longer than one feedback carries is skipped, not reported a piece at a time.
        let base = match self.next {
            Some(next) if lowest - next < TWCC_PER_FEEDBACK => next,
            _ => lowest,
        };
        let last = self
            .pending
            .iter()
            .map(|(i, _)| *i)
            .take_while(|i| *i < base + TWCC_PER_FEEDBACK)
            .last()
            .unwrap_or(base);
        let taken = self.pending.iter().take_while(|(i, _)| *i <= last).count();
        let reported: Vec<(u64, Instant)> = self.pending.drain(..taken).collect();
        self.next = Some(last + 1);

        let units = |at: Instant| (at.saturating_duration_since(epoch).as_micros() / 250) as i64;
        let first_arrival = reported.iter().map(|(_, at)| *at).min().unwrap_or(epoch);
        // The reference time is in 64 ms steps (256 units of 250 µs).
        let reference = units(first_arrival) / 256;
        let mut previous = reference * 256;
        let mut symbols = Vec::with_capacity((last - base + 1) as usize);
        let mut deltas = Vec::new();
        let mut arrivals = reported.iter().peekable();
        for seq in base..=last {
            match arrivals.next_if(|(i, _)| *i == seq) {
                Some((_, at)) => {
                    let now = units(*at);
                    let delta = now - previous;
                    previous = now;
                    if (0..=255).contains(&delta) {
                        symbols.push(1u8);
                        deltas.push(delta as u8);
                    } else {
                        symbols.push(2);
                        let d = delta.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
                        deltas.extend_from_slice(&d.to_be_bytes());
                    }
                }
                None => symbols.push(0),
            }
        }
        let start = out.len();
        out.extend_from_slice(&[0x80 | 15, 205, 0, 0]);
        out.extend_from_slice(&sender.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(base as u16).to_be_bytes());
        out.extend_from_slice(&(symbols.len() as u16).to_be_bytes());
        out.extend_from_slice(&(reference as u32 & 0xFF_FFFF).to_be_bytes()[1..]);
        out.push(self.count);
        self.count = self.count.wrapping_add(1);
        // Status vector chunks of seven 2-bit symbols each.
        for chunk in symbols.chunks(7) {
            let mut word: u16 = 0b11 << 14;
            for (i, s) in chunk.iter().enumerate() {
                word |= u16::from(*s) << (12 - 2 * i);
            }
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&deltas);
        let pad = (4 - (out.len() - start) % 4) % 4;
        if pad > 0 {
            out.extend(std::iter::repeat_n(0, pad - 1));
            out.push(pad as u8);
        }
        let words = ((out.len() - start) / 4 - 1) as u16;
        if let Some(header) = out
            .get_mut(start..start + 4)
            .and_then(|h| <&mut [u8; 4]>::try_from(h).ok())
        {
            header[0] |= if pad > 0 { 0x20 } else { 0 };
            header[2..4].copy_from_slice(&words.to_be_bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_sequence_numbers_across_a_wrap() {
        assert_eq!(extend(None, 65_530), 65_530);
        assert_eq!(extend(Some(65_530), 3), 65_539);
        assert_eq!(extend(Some(65_539), 65_534), 65_534);
        assert_eq!(extend(Some(3 << 16 | 10), 5), 3 << 16 | 5);
    }

    #[test]
    fn reads_the_transport_wide_sequence_number_from_a_one_byte_extension() {
        // V=2, X=1, PT 96, seq 7, ts, ssrc; 0xBEDE, one word: id 3 len 2 → 0x01 0x02, pad.
        let mut packet = vec![0x90, 96, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9];
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31, 0x01, 0x02, 0]);
        packet.extend_from_slice(&[1, 2, 3]);
        let header = Header::parse(&packet, Some(3)).expect("parses");
        assert_eq!((header.pt, header.seq, header.ssrc), (96, 7, 9));
        assert_eq!(header.len, 20);
        assert_eq!(header.twcc, Some(0x0102));
        assert!(
            Header::parse(&packet[..20], Some(3)).is_none(),
            "no payload"
        );
    }

    #[test]
    fn counts_gaps_repairs_and_duplicates() {
        let now = Instant::now();
        let mut audio = Stream::new(Kind::Audio);
        for seq in [1u16, 3] {
            audio.arrive(seq, now, true);
        }
        assert_eq!(audio.lost(), 1);
        assert!(
            audio.due_nacks(now).is_empty(),
            "sound is not asked for again"
        );
        let mut s = Stream::new(Kind::Video);
        for seq in [10u16, 11, 13, 14, 14] {
            s.arrive(seq, now, true);
        }
        assert_eq!((s.received, s.lost(), s.window_expected()), (4, 1, 5));
        assert_eq!(s.due_nacks(now), vec![12]);
        assert!(s.due_nacks(now).is_empty(), "not again before the retry");
        assert!(s.fill(12));
        assert!(!s.fill(12), "a second repair is padding");
        assert_eq!((s.received, s.lost(), s.window_received), (5, 0, 5));
        // A packet that comes after a later one fills its gap: no longer asked for.
        for seq in [15u16, 18] {
            assert!(!s.arrive(seq, now, true).late);
        }
        let late = s.arrive(16, now, true);
        assert!(late.first && late.late);
        assert!(!s.arrive(16, now, true).late, "a duplicate is not late");
        assert_eq!(s.due_nacks(now), vec![17]);
        assert_eq!(s.lost(), 1);
        assert!(s.arrive(17, now, true).late);
        assert_eq!(s.lost(), 0);
        // Far past the ring's length, every packet still counts once.
        for seq in 19..19 + 3 * SEEN as u16 {
            s.arrive(seq, now, true);
        }
        assert_eq!((s.received, s.lost()), (9 + 3 * SEEN, 0));
    }

    /// An RTP packet of SSRC 9 with no extension: sequence number, timestamp, marker.
    fn packet(seq: u16, timestamp: u32, marker: bool) -> Vec<u8> {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9, 0x10, 0xAA]);
        p
    }

    /// Feeds frames of `sizes` packets (the marker on each frame's last unless `markers` is
    /// false); returns the first sequence number of each frame handed over as large.
    fn large_frames(frames: &mut Frames, sizes: &[u16], markers: bool) -> Vec<u64> {
        let now = Instant::now();
        let mut seq = 0u16;
        let mut large = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            for i in 0..*size {
                let datagram = packet(seq, 3000 * n as u32, markers && i + 1 == *size);
                let header = Header::parse(&datagram, None).expect("parses");
                if frames.arrive(&header, &datagram, u64::from(seq), now) {
                    let kept = Header::parse(&frames.candidate.datagram, None).expect("kept");
                    large.push(u64::from(kept.seq));
                }
                seq += 1;
            }
        }
        large
    }

    #[test]
    fn hands_over_the_first_packet_of_each_frame_far_above_the_average() {
        // A keyframe of 50 packets, deltas of 8 to 10, another keyframe, more deltas.
        let mut sizes = vec![50];
        sizes.extend([9, 8, 10, 9].repeat(5));
        sizes.push(50);
        sizes.extend([9, 10]);
        let second = 50 + 20 * 9;
        let mut frames = Frames::default();
        assert_eq!(large_frames(&mut frames, &sizes, true), vec![0, second]);
        // Without marker bits a frame is decided at the next one's first packet.
        let mut frames = Frames::default();
        assert_eq!(large_frames(&mut frames, &sizes, false), vec![0, second]);
    }

    #[test]
    fn a_lowest_layer_keyframe_of_three_packets_is_large_among_frames_of_one() {
        let mut sizes = vec![1; 30];
        sizes.push(3);
        sizes.extend([1, 1]);
        let mut frames = Frames::default();
        assert_eq!(large_frames(&mut frames, &sizes, true), vec![30]);
    }

    #[test]
    fn a_reordered_packet_of_an_earlier_frame_does_not_split_the_open_one() {
        let now = Instant::now();
        let mut frames = Frames::default();
        let feed = |frames: &mut Frames, seq: u16, ts: u32, marker: bool| {
            let datagram = packet(seq, ts, marker);
            let header = Header::parse(&datagram, None).expect("parses");
            frames.arrive(&header, &datagram, u64::from(seq), now)
        };
        assert!(!feed(&mut frames, 0, 0, true));
        assert!(!feed(&mut frames, 2, 3000, false));
        assert!(!feed(&mut frames, 1, 0, false), "late: left out");
        assert!(
            feed(&mut frames, 3, 3000, true),
            "two packets after one: large"
        );
        assert_eq!(frames.candidate.index, 2);
    }

    #[test]
    fn writes_nacks_as_pid_and_bitmask() {
        let mut out = Vec::new();
        write_nack(&mut out, 1, 2, &[100, 101, 103, 140]);
        assert_eq!(&out[..4], &[0x81, 205, 0, 4]);
        assert_eq!(&out[12..16], &[0, 100, 0, 0b101]);
        assert_eq!(&out[16..20], &[0, 140, 0, 0]);
    }

    #[test]
    fn transport_feedback_marks_lost_packets_and_pads_to_words() {
        let epoch = Instant::now();
        let mut twcc = Twcc::default();
        twcc.record(5, epoch + Duration::from_millis(70));
        twcc.record(7, epoch + Duration::from_millis(71));
        let mut out = Vec::new();
        assert!(twcc.write(&mut out, 1, epoch));
        assert_eq!(out.len() % 4, 0);
        assert_eq!(
            u16::from_be_bytes([out[2], out[3]]) as usize,
            out.len() / 4 - 1
        );
        assert_eq!(u16::from_be_bytes([out[12], out[13]]), 5, "base");
        assert_eq!(u16::from_be_bytes([out[14], out[15]]), 3, "status count");
        assert_eq!(&out[16..19], &[0, 0, 1], "reference time: 64 ms");
        // Symbols: received small, not received, received small.
        assert_eq!(
            u16::from_be_bytes([out[20], out[21]]),
            0b11_01_00_01_00_00_00_00
        );
        assert_eq!(out[22], 24, "6 ms after the reference, in 250 µs units");
        assert_eq!(out[23], 4);
        assert!(!twcc.write(&mut out, 1, epoch), "nothing pending");
        twcc.record(6, epoch + Duration::from_millis(80));
        assert!(
            twcc.pending.is_empty(),
            "a packet already reported as lost is late"
        );
        // After a hole of a thousand, the next feedback starts at the first that arrived.
        twcc.record(1_008, epoch + Duration::from_millis(90));
        out.clear();
        assert!(twcc.write(&mut out, 1, epoch));
        assert_eq!(u16::from_be_bytes([out[12], out[13]]), 1_008, "base");
        assert_eq!(u16::from_be_bytes([out[14], out[15]]), 1, "status count");
    }
}
