//! The floor: what forwarding the same packets costs with nothing but the unavoidable work.
//!
//! One thread SRTP-encrypts the studio's packets (same sizes, same order: each packet to every
//! destination in turn, as an SFU forwards) for as many destinations as the run has sites and
//! sends them over loopback UDP to sockets that a second thread drains. No ICE, no DTLS, no
//! RTCP, no routing. Its CPU time per packet is the floor the hub's cost is compared with.
//!
//! Variants: encryption only (AEAD-AES-256-GCM, str0m's first choice and what the hub and the
//! generator's str0m peers negotiate, and AES-128-CM + HMAC-SHA1-80, the profile every WebRTC
//! stack has), one `sendto` per packet without and
//! with encryption, encryption with UDP GSO (`UDP_SEGMENT`, one send per frame and
//! destination) through quinn-udp's safe wrapper, and encryption with every datagram its own
//! message, [`MESSAGES_PER_CALL`] messages to a `sendmmsg` call (nix's safe wrapper) as the
//! hub's driver makes them: what the kernel asks for a datagram to each site where a pacer per
//! site lets one packet go at a time (the hub sends a site's packets of a turn as one message,
//! which the report's `hub_cost.datagrams_per_message` counts). A last variant is the GSO one
//! with what a forwarding unit that paces, estimates bandwidth and resends per site must keep
//! of each datagram besides (a transport-wide send record, the packet held for a resend, the
//! site's leaky bucket; [`SiteState`]): the least such a send path could cost, and so what a
//! send path rebuilt for fan-out could come down to. The ciphers are the hub's own
//! (`diemcau_sfu::crypto_provider`: str0m's aws-lc-rs provider, AES-GCM sealed from the payload
//! into the datagram), so the floor pays what the hub pays per cipher call.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage};
use serde::Serialize;
use str0m::crypto::{AeadAes256GcmCipher, Aes128CmSha1_80Cipher};

use crate::media::{AudioEncoder, VideoEncoder, VideoProfile, packet_sizes};
use crate::procfs;

/// RTP header as a forwarding hub writes it: 12 bytes and a one-byte-header extension block
/// of two words (transport-wide sequence number, absolute send time).
const HEADER_LEN: usize = 24;
const GCM_TAG_LEN: usize = 16;
const HMAC_TAG_LEN: usize = 10;
/// Messages in one `sendmmsg` call, as the hub sends them.
const MESSAGES_PER_CALL: usize = 64;
/// Room for one datagram in the send buffer.
const SLOT: usize = 1500;

/// What to measure.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    pub destinations: usize,
    pub video: VideoProfile,
    pub audio: bool,
    /// CPU time each variant runs for.
    pub budget: Duration,
    pub local_ip: IpAddr,
}

/// One variant's cost.
#[derive(Debug, Clone, Serialize)]
pub struct FloorVariant {
    pub name: &'static str,
    pub packets: u64,
    /// Syscalls made (sends).
    pub sends: u64,
    pub cpu_ns: u64,
    pub wall_ns: u64,
    pub ns_per_packet: f64,
    /// Datagrams the destinations read while the variant ran (and up to 100 ms after):
    /// those sent, less what a full socket buffer dropped. 0 for encryption alone.
    pub received: u64,
}

/// The floor measurement.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    pub destinations: usize,
    pub srtp_profile: &'static str,
    /// Mean size of the encrypted datagrams sent.
    pub mean_datagram_bytes: f64,
    /// Most segments one GSO send may carry here (1: no GSO).
    pub gso_max_segments: usize,
    pub variants: Vec<FloorVariant>,
}

impl FloorReport {
    pub fn ns_per_packet(&self, name: &str) -> Option<f64> {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.ns_per_packet)
    }
}

/// Variant names, for reports.
pub const GCM_ONLY: &str = "srtp_gcm_only";
pub const CM_HMAC_ONLY: &str = "srtp_cm_hmac_sha1_only";
pub const SENDTO_PLAIN: &str = "sendto_plain";
pub const GCM_SENDTO: &str = "srtp_gcm_sendto";
pub const GCM_GSO: &str = "srtp_gcm_gso";
pub const GCM_SENDMMSG: &str = "srtp_gcm_sendmmsg";
pub const GCM_GSO_SITE_STATE: &str = "srtp_gcm_gso_site_state";

/// Runs every variant one after the other on the calling thread.
pub fn measure(config: &FloorConfig) -> io::Result<FloorReport> {
    let sinks = Sinks::start(config.local_ip, config.destinations.max(1))?;
    let sender = UdpSocket::bind(SocketAddr::new(config.local_ip, 0))?;
    let _ = socket2::SockRef::from(&sender).set_send_buffer_size(4 << 20);
    let gso = quinn_udp::UdpSocketState::new(quinn_udp::UdpSockRef::from(&sender))?;
    let schedule = Schedule::new(&config.video, config.audio);
    // The hub's own ciphers: AES-GCM sealed from the payload into the datagram.
    let provider = diemcau_sfu::crypto_provider();
    let mut streams: Vec<Stream> = sinks
        .addresses
        .iter()
        .enumerate()
        .map(|(i, address)| Stream::new(*address, i as u32, provider.srtp_provider))
        .collect();
    let mut out = Forwarder {
        sender,
        gso,
        buf: vec![0; MESSAGES_PER_CALL * SLOT],
        headers: MultiHeaders::preallocate(MESSAGES_PER_CALL, None),
        pending: Vec::with_capacity(MESSAGES_PER_CALL),
        datagram_bytes: 0,
        datagrams: 0,
    };
    let mut variants = Vec::new();
    for mode in [
        Mode::GcmOnly,
        Mode::CmHmacOnly,
        Mode::SendtoPlain,
        Mode::GcmSendto,
        Mode::GcmGso,
        Mode::GcmSendmmsg,
        Mode::GcmGsoSiteState,
    ] {
        let before = sinks.received();
        let mut variant = run_variant(mode, &schedule, &mut streams, &mut out, config.budget)?;
        variant.received = sinks.received_since(before);
        variants.push(variant);
    }
    sinks.stop();
    Ok(FloorReport {
        destinations: config.destinations,
        srtp_profile: "SRTP_AEAD_AES_256_GCM",
        mean_datagram_bytes: if out.datagrams == 0 {
            0.0
        } else {
            out.datagram_bytes as f64 / out.datagrams as f64
        },
        gso_max_segments: out.gso.max_gso_segments(),
        variants,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    GcmOnly,
    CmHmacOnly,
    SendtoPlain,
    GcmSendto,
    GcmGso,
    GcmSendmmsg,
    GcmGsoSiteState,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::GcmOnly => GCM_ONLY,
            Mode::CmHmacOnly => CM_HMAC_ONLY,
            Mode::SendtoPlain => SENDTO_PLAIN,
            Mode::GcmSendto => GCM_SENDTO,
            Mode::GcmGso => GCM_GSO,
            Mode::GcmSendmmsg => GCM_SENDMMSG,
            Mode::GcmGsoSiteState => GCM_GSO_SITE_STATE,
        }
    }
}

/// One second of the studio's media as payload sizes, in sending order: each burst is one
/// video frame's packets or one audio packet.
struct Schedule {
    bursts: Vec<Vec<usize>>,
}

impl Schedule {
    fn new(video: &VideoProfile, audio: bool) -> Schedule {
        let mut encoder = VideoEncoder::new(*video, 1);
        let mut audio_encoder = AudioEncoder::new(1);
        let mut bursts = Vec::new();
        // A whole keyframe period, so keyframes weigh as much as in the real stream.
        let frames = (video.keyframe_every.as_secs_f64() * f64::from(video.fps)).max(1.0) as u32;
        let audio_per_frame = 50.0 / f64::from(video.fps.max(1));
        let mut audio_due = 0.0;
        for _ in 0..frames {
            bursts.push(packet_sizes(encoder.next_frame().size));
            audio_due += audio_per_frame;
            while audio && audio_due >= 1.0 {
                bursts.push(vec![audio_encoder.next_packet().0]);
                audio_due -= 1.0;
            }
        }
        Schedule { bursts }
    }
}

/// One destination's SRTP context: its SSRC, sequence numbers and ciphers.
struct Stream {
    address: SocketAddr,
    sockaddr: SockaddrStorage,
    ssrc: u32,
    seq: u64,
    gcm: Box<dyn AeadAes256GcmCipher>,
    gcm_salt: [u8; 12],
    cm: Box<dyn Aes128CmSha1_80Cipher>,
    cm_salt: [u8; 14],
    auth_key: [u8; 20],
    hmac: &'static dyn str0m::crypto::Sha1HmacProvider,
    state: SiteState,
}

impl Stream {
    fn new(
        address: SocketAddr,
        index: u32,
        srtp: &'static dyn str0m::crypto::SrtpProvider,
    ) -> Stream {
        let key = [index as u8 ^ 0x5A; 16];
        let key256 = [index as u8 ^ 0xA5; 32];
        Stream {
            address,
            sockaddr: SockaddrStorage::from(address),
            ssrc: 0x1000_0000 + index,
            seq: u64::from(index) * 7,
            gcm: srtp.aead_aes_256_gcm().create_cipher(key256, true),
            gcm_salt: [0x3C; 12],
            cm: srtp.aes_128_cm_sha1_80().create_cipher(key, true),
            cm_salt: [0x5C; 14],
            auth_key: [0x77; 20],
            hmac: str0m::crypto::from_feature_flags().sha1_hmac_provider,
            state: SiteState::new(),
        }
    }

    fn header(&mut self, out: &mut [u8], marker: bool) {
        self.seq += 1;
        let seq = (self.seq & 0xFFFF) as u16;
        let header: [u8; HEADER_LEN] = {
            let mut h = [0u8; HEADER_LEN];
            h[0] = 0x90;
            h[1] = 96 | if marker { 0x80 } else { 0 };
            h[2..4].copy_from_slice(&seq.to_be_bytes());
            h[4..8].copy_from_slice(&(self.seq as u32).wrapping_mul(3000).to_be_bytes());
            h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            h[12..16].copy_from_slice(&[0xBE, 0xDE, 0x00, 0x02]);
            h[16] = 0x31; // transport-wide sequence number, 2 bytes
            h[17..19].copy_from_slice(&seq.to_be_bytes());
            h[19] = 0x22; // absolute send time, 3 bytes
            h
        };
        if let Some(o) = out.get_mut(..HEADER_LEN) {
            o.copy_from_slice(&header);
        }
    }

    /// Writes an encrypted RTP packet of `payload_len` into `out`; returns its length.
    fn seal_gcm(&mut self, out: &mut [u8], payload: &[u8], marker: bool) -> usize {
        self.header(out, marker);
        let mut iv = self.gcm_salt;
        let ssrc = self.ssrc.to_be_bytes();
        let index = (self.seq & 0xFFFF_FFFF_FFFF).to_be_bytes();
        // RFC 7714: IV = salt XOR (00 00 || SSRC || ROC || SEQ).
        for (v, b) in iv
            .iter_mut()
            .skip(2)
            .zip(ssrc.iter().chain(index.iter().skip(2)))
        {
            *v ^= b;
        }
        let end = HEADER_LEN + payload.len() + GCM_TAG_LEN;
        let (header, body) = out.split_at_mut(HEADER_LEN);
        if let Some(body) = body.get_mut(..payload.len() + GCM_TAG_LEN) {
            let _ = self.gcm.encrypt(&iv, header, payload, body);
        }
        end
    }

    fn seal_cm(&mut self, out: &mut [u8], payload: &[u8], marker: bool) -> usize {
        self.header(out, marker);
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        let index = self.seq.to_be_bytes();
        for i in 0..8 {
            if let (Some(v), Some(b)) = (iv.get_mut(i + 6), index.get(i)) {
                *v ^= b;
            }
        }
        for (v, s) in iv.iter_mut().zip(self.cm_salt) {
            *v ^= s;
        }
        let len = HEADER_LEN + payload.len();
        if let Some(body) = out.get_mut(HEADER_LEN..len) {
            let _ = self.cm.encrypt(&iv, payload, body);
        }
        let roc = ((self.seq >> 16) as u32).to_be_bytes();
        let tag = match out.get(..len) {
            Some(signed) => self.hmac.sha1_hmac(&self.auth_key, &[signed, &roc]),
            None => [0; 20],
        };
        if let (Some(o), Some(t)) = (
            out.get_mut(len..len + HMAC_TAG_LEN),
            tag.get(..HMAC_TAG_LEN),
        ) {
            o.copy_from_slice(t);
        }
        len + HMAC_TAG_LEN
    }
}

/// Transport-wide send records a site keeps: as many as the hub's str0m keeps.
const SEND_RECORDS: usize = 256;
/// Packets a site keeps for resending: as many as the hub keeps of a video stream.
const RESEND_SLOTS: usize = 150;
/// The rate a site's leaky bucket drains at, in bytes a second (3 Mbit/s).
const DRAIN_BYTES_PER_SECOND: f64 = 375_000.0;
/// Datagrams a site's transport-wide feedback acknowledges at a time: one feedback each 50 ms
/// of about 325 packets a second, as the generator's sites send it.
const FEEDBACK_EVERY: u64 = 16;

/// The least that a forwarding unit which paces, estimates bandwidth and resends per site keeps
/// of each packet it sends a site: the transport-wide send record the site's feedback is
/// matched against (and reads back, [`FEEDBACK_EVERY`] datagrams at a time), the packet held
/// for a resend (the shared payload and the header as written), and the site's leaky bucket.
/// Each site's in its own allocations, as a forwarding unit's sites are. The
/// `srtp_gcm_gso_site_state` variant writes it for each datagram it seals: what a send path
/// that did nothing else per site and packet would cost beside the GSO floor. It leaves out
/// what a bandwidth estimator makes of the feedback.
struct SiteState {
    records: Box<[SendRecord]>,
    resend: Box<[Option<Resend>]>,
    debt_bytes: f64,
    drained_at: Option<Instant>,
    /// What the last feedback acknowledged: its bytes and the time they took to send.
    acknowledged: (u64, Duration),
}

#[derive(Clone, Copy)]
struct SendRecord {
    seq: u64,
    sent_at: Option<Instant>,
    size: u32,
}

#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "kept for a resend, which the floor never makes: its cost is the keeping"
    )
)]
struct Resend {
    seq: u64,
    payload: Arc<[u8]>,
    header: [u8; HEADER_LEN],
}

impl SiteState {
    fn new() -> SiteState {
        let record = SendRecord {
            seq: 0,
            sent_at: None,
            size: 0,
        };
        SiteState {
            records: vec![record; SEND_RECORDS].into_boxed_slice(),
            resend: std::iter::repeat_with(|| None).take(RESEND_SLOTS).collect(),
            debt_bytes: 0.0,
            drained_at: None,
            acknowledged: (0, Duration::ZERO),
        }
    }

    /// Keeps what the site's feedback, a resend and the pacer need of the datagram `seq`, sent
    /// at `now` (its header the first [`HEADER_LEN`] bytes), and reads the send records back
    /// when a feedback would come.
    fn record(&mut self, seq: u64, now: Instant, datagram: &[u8], payload: &Arc<[u8]>) {
        let size = datagram.len();
        if let Some(record) = self.records.get_mut(seq as usize % SEND_RECORDS) {
            *record = SendRecord {
                seq,
                sent_at: Some(now),
                size: size as u32,
            };
        }
        let mut header = [0u8; HEADER_LEN];
        if let Some(written) = datagram.get(..HEADER_LEN) {
            header.copy_from_slice(written);
        }
        if let Some(slot) = self.resend.get_mut(seq as usize % RESEND_SLOTS) {
            *slot = Some(Resend {
                seq,
                payload: Arc::clone(payload),
                header,
            });
        }
        if let Some(at) = self.drained_at.filter(|at| *at != now) {
            let drained = now.saturating_duration_since(at).as_secs_f64() * DRAIN_BYTES_PER_SECOND;
            self.debt_bytes = (self.debt_bytes - drained).max(0.0);
        }
        self.drained_at = Some(now);
        self.debt_bytes += size as f64;
        if (seq + 1).is_multiple_of(FEEDBACK_EVERY) {
            self.acknowledge(seq + 1 - FEEDBACK_EVERY..=seq);
        }
    }

    /// Reads the send records of `seqs` back, as a site's feedback that reports them all
    /// received makes a forwarding unit do.
    fn acknowledge(&mut self, seqs: std::ops::RangeInclusive<u64>) {
        let (mut bytes, mut first, mut last) = (0u64, None::<Instant>, None::<Instant>);
        for seq in seqs {
            let Some(record) = self.records.get(seq as usize % SEND_RECORDS) else {
                continue;
            };
            if record.seq != seq {
                continue;
            }
            bytes += u64::from(record.size);
            first = first.or(record.sent_at);
            last = record.sent_at.or(last);
        }
        let span = match (first, last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        // What an estimator would take in; kept from being optimised away with nobody reading it.
        self.acknowledged = std::hint::black_box((bytes, span));
    }
}

struct Forwarder {
    sender: UdpSocket,
    gso: quinn_udp::UdpSocketState,
    buf: Vec<u8>,
    /// `sendmmsg`'s message headers, kept between calls.
    headers: MultiHeaders<SockaddrStorage>,
    /// The datagrams sealed into `buf` and not yet sent: each one's stream and length, the
    /// `n`th in slot `n`.
    pending: Vec<(usize, usize)>,
    datagram_bytes: u64,
    datagrams: u64,
}

impl Forwarder {
    /// Sends the pending datagrams, every one its own message, in one `sendmmsg` call (more
    /// where the kernel takes fewer); returns the calls made.
    fn send_pending(&mut self, streams: &[Stream]) -> io::Result<u64> {
        let buf = &self.buf;
        let slices: [[IoSlice<'_>; 1]; MESSAGES_PER_CALL] = std::array::from_fn(|n| {
            let len = self.pending.get(n).map_or(0, |p| p.1);
            [IoSlice::new(
                buf.get(n * SLOT..n * SLOT + len).unwrap_or_default(),
            )]
        });
        let addresses: [Option<SockaddrStorage>; MESSAGES_PER_CALL] = std::array::from_fn(|n| {
            let (stream, _) = self.pending.get(n)?;
            streams.get(*stream).map(|s| s.sockaddr)
        });
        let count = self.pending.len().min(MESSAGES_PER_CALL);
        let mut sent = 0;
        let mut calls = 0;
        while sent < count {
            let result = nix::sys::socket::sendmmsg(
                self.sender.as_raw_fd(),
                &mut self.headers,
                slices.get(sent..count).unwrap_or_default(),
                addresses.get(sent..count).unwrap_or_default(),
                [],
                MsgFlags::empty(),
            );
            calls += 1;
            match result {
                Ok(results) => sent += results.count().max(1),
                // A full buffer drops the rest, as the other variants drop a packet.
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        for (_, len) in self.pending.drain(..) {
            self.datagram_bytes += len as u64;
            self.datagrams += 1;
        }
        Ok(calls)
    }
}

fn run_variant(
    mode: Mode,
    schedule: &Schedule,
    streams: &mut [Stream],
    out: &mut Forwarder,
    budget: Duration,
) -> io::Result<FloorVariant> {
    let payload = vec![0xA5u8; 1500];
    let max_segments = out.gso.max_gso_segments().max(1);
    let start_cpu = procfs::thread_cpu_ns().unwrap_or(0);
    let start = Instant::now();
    let mut packets = 0u64;
    let mut sends = 0u64;
    let budget_ns = budget.as_nanos() as u64;
    'outer: loop {
        for burst in &schedule.bursts {
            match mode {
                Mode::GcmGso | Mode::GcmGsoSiteState => {
                    // A GSO send carries at most 64 KiB.
                    let datagram = burst.first().map_or(1, |s| s + HEADER_LEN + GCM_TAG_LEN);
                    let per_send = max_segments.min(65_000 / datagram).max(1);
                    // As a forwarding unit receives them: each packet once, shared by the
                    // sites, and the time of the turn that forwards them. The plain GSO
                    // variant, the target's floor, takes neither.
                    let site_state = mode == Mode::GcmGsoSiteState;
                    let shared: Vec<Arc<[u8]>> = if site_state {
                        let body =
                            |size: &usize| Arc::from(payload.get(..*size).unwrap_or_default());
                        burst.iter().map(body).collect()
                    } else {
                        Vec::new()
                    };
                    let now = site_state.then(Instant::now);
                    for stream in streams.iter_mut() {
                        for (c, chunk) in burst.chunks(per_send).enumerate() {
                            let mut len = 0;
                            let mut segment = 0;
                            for (i, size) in chunk.iter().enumerate() {
                                let packet = shared.get(c * per_send + i);
                                let body = match packet {
                                    Some(packet) => &packet[..],
                                    None => payload.get(..*size).unwrap_or_default(),
                                };
                                let dst = out.buf.get_mut(len..).unwrap_or_default();
                                let n = stream.seal_gcm(dst, body, i + 1 == chunk.len());
                                if let (Some(packet), Some(now)) = (packet, now) {
                                    let written = out.buf.get(len..len + n).unwrap_or_default();
                                    stream.state.record(stream.seq, now, written, packet);
                                }
                                if i == 0 {
                                    segment = n;
                                }
                                len += n;
                                out.datagram_bytes += n as u64;
                                out.datagrams += 1;
                            }
                            let contents = out.buf.get(..len).unwrap_or_default();
                            let transmit = quinn_udp::Transmit {
                                destination: stream.address,
                                ecn: None,
                                contents,
                                segment_size: (chunk.len() > 1).then_some(segment),
                                src_ip: None,
                            };
                            let sent = out
                                .gso
                                .try_send(quinn_udp::UdpSockRef::from(&out.sender), &transmit);
                            match sent {
                                Ok(()) => {}
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                Err(e) => return Err(e),
                            }
                            sends += 1;
                            packets += chunk.len() as u64;
                        }
                    }
                }
                Mode::GcmSendmmsg => {
                    // Each packet to every destination in turn, a pacer's one packet per
                    // site; a burst's datagrams leave before the next burst is sealed.
                    for (i, size) in burst.iter().enumerate() {
                        let marker = i + 1 == burst.len();
                        let body = payload.get(..*size).unwrap_or_default();
                        for index in 0..streams.len() {
                            let slot = out.pending.len() * SLOT;
                            let dst = out.buf.get_mut(slot..slot + SLOT).unwrap_or_default();
                            let Some(stream) = streams.get_mut(index) else {
                                continue;
                            };
                            let n = stream.seal_gcm(dst, body, marker);
                            out.pending.push((index, n));
                            packets += 1;
                            if out.pending.len() == MESSAGES_PER_CALL {
                                sends += out.send_pending(streams)?;
                            }
                        }
                    }
                    if !out.pending.is_empty() {
                        sends += out.send_pending(streams)?;
                    }
                }
                _ => {
                    for (i, size) in burst.iter().enumerate() {
                        let marker = i + 1 == burst.len();
                        let body = payload.get(..*size).unwrap_or_default();
                        for stream in streams.iter_mut() {
                            let n = match mode {
                                Mode::GcmOnly | Mode::GcmSendto => {
                                    stream.seal_gcm(&mut out.buf, body, marker)
                                }
                                Mode::CmHmacOnly => stream.seal_cm(&mut out.buf, body, marker),
                                _ => {
                                    stream.header(&mut out.buf, marker);
                                    HEADER_LEN + body.len() + GCM_TAG_LEN
                                }
                            };
                            if matches!(mode, Mode::SendtoPlain | Mode::GcmSendto) {
                                let datagram = out.buf.get(..n).unwrap_or_default();
                                match out.sender.send_to(datagram, stream.address) {
                                    Ok(_) => {}
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                    Err(e) => return Err(e),
                                }
                                sends += 1;
                                out.datagram_bytes += n as u64;
                                out.datagrams += 1;
                            }
                            packets += 1;
                        }
                    }
                }
            }
            let used = procfs::thread_cpu_ns()
                .unwrap_or(0)
                .saturating_sub(start_cpu);
            if used >= budget_ns {
                break 'outer;
            }
        }
    }
    let cpu_ns = procfs::thread_cpu_ns()
        .unwrap_or(0)
        .saturating_sub(start_cpu);
    Ok(FloorVariant {
        name: mode.name(),
        packets,
        sends,
        cpu_ns,
        wall_ns: start.elapsed().as_nanos() as u64,
        ns_per_packet: if packets == 0 {
            0.0
        } else {
            cpu_ns as f64 / packets as f64
        },
        received: 0,
    })
}

/// The destinations: UDP sockets drained by their own thread, as the sites' sockets are.
struct Sinks {
    addresses: Vec<SocketAddr>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sinks {
    fn start(ip: IpAddr, count: usize) -> io::Result<Sinks> {
        let mut poll = mio::Poll::new()?;
        let mut sockets = Vec::with_capacity(count);
        let mut addresses = Vec::with_capacity(count);
        for i in 0..count {
            let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            socket.set_nonblocking(true)?;
            let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
            addresses.push(socket.local_addr()?);
            let mut socket = mio::net::UdpSocket::from_std(socket);
            poll.registry()
                .register(&mut socket, mio::Token(i), mio::Interest::READABLE)?;
            sockets.push(socket);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counted = received.clone();
        let thread = std::thread::Builder::new()
            .name("floor-sink".to_owned())
            .spawn(move || {
                let mut events = mio::Events::with_capacity(1024);
                let mut buf = vec![0u8; 65536];
                while !stopping.load(Ordering::Relaxed) {
                    if poll
                        .poll(&mut events, Some(Duration::from_millis(20)))
                        .is_err()
                    {
                        continue;
                    }
                    for event in events.iter() {
                        if let Some(socket) = sockets.get(event.token().0) {
                            while socket.recv_from(&mut buf).is_ok() {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })?;
        Ok(Sinks {
            addresses,
            received,
            stop,
            thread: Some(thread),
        })
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// What was read since the count was `before`, once the reading has stopped growing
    /// (at most 100 ms later).
    fn received_since(&self, before: u64) -> u64 {
        let mut last = self.received();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.received();
            if now == last {
                break;
            }
            last = now;
        }
        last - before
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_runs_every_variant() {
        let config = FloorConfig {
            destinations: 3,
            video: VideoProfile::studio(),
            audio: true,
            budget: Duration::from_millis(20),
            local_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        };
        let report = measure(&config).expect("floor");
        assert_eq!(report.variants.len(), 7);
        for v in &report.variants {
            assert!(v.packets > 0, "{v:?}");
            assert!(v.ns_per_packet > 0.0, "{v:?}");
        }
        let gso = report
            .variants
            .iter()
            .find(|v| v.name == GCM_GSO)
            .expect("gso");
        if report.gso_max_segments > 1 {
            assert!(gso.sends < gso.packets, "GSO batches: {gso:?}");
        }
        for v in &report.variants {
            if v.name != GCM_ONLY && v.name != CM_HMAC_ONLY {
                assert!(v.sends > 0 && v.received > 0, "nothing arrived: {v:?}");
            }
        }
        let sendmmsg = report
            .variants
            .iter()
            .find(|v| v.name == GCM_SENDMMSG)
            .expect("sendmmsg");
        assert!(
            sendmmsg.sends < sendmmsg.packets,
            "one call sends each packet to every destination: {sendmmsg:?}"
        );
        assert!(report.mean_datagram_bytes > 500.0);
    }

    #[test]
    fn a_sites_state_keeps_the_last_packets_and_drains_its_debt() {
        let mut state = SiteState::new();
        let start = Instant::now();
        let first: Arc<[u8]> = Arc::from(vec![1u8; 1000]);
        let datagram = [7u8; 1040];
        state.record(5, start, &datagram, &first);
        assert_eq!(Arc::strong_count(&first), 2, "kept for a resend");
        assert_eq!(state.debt_bytes, 1040.0);
        let record = state.records.get(5).copied().expect("record");
        assert_eq!(
            (record.seq, record.sent_at, record.size),
            (5, Some(start), 1040)
        );
        // The same slot a ring later: the first packet is let go, the new one kept.
        let later = start + Duration::from_millis(2);
        let second: Arc<[u8]> = Arc::from(vec![2u8; 1000]);
        state.record(5 + RESEND_SLOTS as u64, later, &datagram, &second);
        assert_eq!(Arc::strong_count(&first), 1, "overwritten");
        let kept = state.resend.get(5).and_then(Option::as_ref).expect("kept");
        assert_eq!(kept.seq, 5 + RESEND_SLOTS as u64);
        assert_eq!(kept.header, [7u8; HEADER_LEN]);
        assert!(Arc::ptr_eq(&kept.payload, &second));
        // 2 ms at 375,000 bytes a second drain 750 of the 1,040 bytes owed.
        assert!(
            (state.debt_bytes - (1040.0 - 750.0 + 1040.0)).abs() < 1e-6,
            "{}",
            state.debt_bytes
        );
        // The sixteenth datagram brings the site's feedback on 0..=15: 5 sent at the start,
        // 6..=15 2 ms later (155 went to a send record of its own).
        for seq in 6..=15 {
            state.record(seq, later, &datagram, &second);
        }
        assert_eq!(state.acknowledged, (11 * 1040, Duration::from_millis(2)));
    }
}
