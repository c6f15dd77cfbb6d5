//! One simulated endpoint: a str0m `Rtc` in RTP mode with its own UDP socket (or a TCP
//! connection, [`super::tcp`]), what it
//! publishes (paced audio and video, simulcast layers), and what it measures of what it
//! receives.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::context::{Ctx, HeldLink, Timer};
use super::headers::{FEEDBACK_INTERVAL, HeaderReception, SdpFacts};
use super::reports::{
    EngineError, PeerReport, PeerSpec, PeerStatus, ReceivedStream, STUDIO, SentStream, ThreadReport,
};
use super::tcp::{Sent, TcpPath};
use crate::measure::{ForwardedSpan, LayerRuns, StreamReception};
use crate::media::{self, AudioEncoder, Kind, Stamp, VideoEncoder, VideoProfile, Xorshift};

/// A peer of an engine thread. States: offered (its first offer awaits the hub's answer) →
/// connected → dead (closed; it keeps its slot).
pub struct Peer {
    pub spec: PeerSpec,
    pub rtc: Rtc,
    pub socket: UdpSocket,
    /// The way to the hub when this peer reaches it over TCP only.
    pub tcp: Option<TcpPath>,
    pub local: SocketAddr,
    /// Index in the thread's peers and the socket's token.
    pub slot: usize,
    pub pending: Option<SdpPendingOffer>,
    pub next_rtc: Option<Instant>,
    pub status: PeerStatus,
    audio: Option<AudioSender>,
    video: Option<VideoSender>,
    pub received: HashMap<(u32, Kind, u8), StreamReception>,
    pub video_runs: HashMap<u32, LayerRuns>,
    /// The sequence numbers received of each publisher's stream of each kind.
    pub forwarded: HashMap<(u32, Kind), ForwardedSpan>,
    /// Each payload type's kind, and whether it is a retransmission one.
    pub kinds_by_pt: HashMap<Pt, Option<(Kind, bool)>>,
    /// Header-only reception, from the moment the session's keys are known
    /// ([`PeerSpec::receive_headers`]).
    pub headers: Option<HeaderReception>,
    /// What the hub's SDP said that header-only reception needs.
    pub facts: SdpFacts,
    /// Batched reads (`recvmmsg`) for header-only reception.
    pub udp_state: Option<quinn_udp::UdpSocketState>,
    /// The kernel's receive stamps of the batched reads as arrival times
    /// ([`PeerSpec::kernel_arrivals`]).
    pub arrivals: super::arrival::ArrivalClock,
    next_feedback: Option<Instant>,
    /// Datagrams from the hub on their way through the emulated link: (source, bytes).
    pub downlink: Option<HeldLink>,
    /// Datagrams to the hub on their way: (destination, bytes).
    pub uplink: Option<HeldLink>,
    pub drop_rng: Xorshift,
    pub dropped_injected: u64,
    pub dropped_down_injected: u64,
    pub rtp_datagrams_sent: u64,
    pub keyframe_requests: u64,
    pub unstamped: u64,
    pub dead: bool,
}

impl Peer {
    /// A peer for `spec` on `socket` (registered as `slot`), and its first offer: its
    /// published tracks, or a receive-only m-line for a viewer.
    pub fn new(
        spec: PeerSpec,
        socket: UdpSocket,
        local: SocketAddr,
        slot: usize,
        ctx: &Ctx,
    ) -> Result<(Peer, String), EngineError> {
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_dtls_cert(ctx.cert.clone())
            .build(now);
        // Over TCP, the one candidate is an active one (RFC 6544): it pairs only with the
        // hub's passive TCP candidate, whatever UDP the hub offers.
        let candidate = if spec.tcp {
            Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(TcpType::Active)
                .build()
        } else {
            Candidate::host(local, "udp")
        }
        .map_err(|e| EngineError::Io(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let (offer, pending, audio_mid, video_mid, layers) = if spec.answer_only {
            (String::new(), None, None, None, Vec::new())
        } else {
            let o = first_offer(&mut rtc, &spec)?;
            (o.sdp, Some(o.pending), o.audio_mid, o.video_mid, o.layers)
        };
        let seed = u64::from(spec.id) * 7919 + 17;
        let publisher = spec.id;
        let link = spec.link.clone();
        let peer = Peer {
            audio: audio_mid.map(|mid| AudioSender {
                mid,
                pt: None,
                encoder: AudioEncoder::new(seed),
                seq: 1000 + seed % 20_000,
                index: 0,
                next: None,
                stats: SentStream::new(publisher, Kind::Audio),
            }),
            video: video_mid.map(|mid| VideoSender {
                mid,
                pt: None,
                next: None,
                layers: layers
                    .iter()
                    .enumerate()
                    .map(|(i, (rid, profile))| VideoLayer {
                        rid: *rid,
                        encoder: VideoEncoder::new(*profile, seed + i as u64),
                        seq: 2000 + seed % 20_000 + i as u64 * 10_000,
                        index: 0,
                        stats: SentStream {
                            rid: rid.map(|r| r.to_string()),
                            bitrate_bps: Some(profile.bitrate_bps),
                            ..SentStream::new(publisher, Kind::Video)
                        },
                    })
                    .collect(),
            }),
            drop_rng: Xorshift::new(seed ^ 0xD0D0),
            status: PeerStatus {
                id: spec.id,
                created_ns: Some(ctx.clock.ns(now)),
                ..PeerStatus::default()
            },
            tcp: spec.tcp.then(TcpPath::default),
            spec,
            rtc,
            socket,
            local,
            slot,
            pending,
            next_rtc: None,
            received: HashMap::new(),
            video_runs: HashMap::new(),
            forwarded: HashMap::new(),
            kinds_by_pt: HashMap::new(),
            headers: None,
            facts: SdpFacts::default(),
            udp_state: None,
            arrivals: super::arrival::ArrivalClock::new(),
            next_feedback: None,
            downlink: link
                .as_ref()
                .and_then(|l| HeldLink::new(&l.down, seed ^ 0xD0)),
            uplink: link
                .as_ref()
                .and_then(|l| HeldLink::new(&l.up, seed ^ 0x0F)),
            dropped_injected: 0,
            dropped_down_injected: 0,
            rtp_datagrams_sent: 0,
            keyframe_requests: 0,
            unstamped: 0,
            dead: false,
        };
        Ok((peer, offer))
    }

    /// What this peer measured.
    pub fn report(&self) -> PeerReport {
        let mut sent = Vec::new();
        if let Some(a) = &self.audio {
            sent.push(a.stats.clone());
        }
        if let Some(v) = &self.video {
            sent.extend(v.layers.iter().map(|l| l.stats.clone()));
        }
        let mut received: Vec<ReceivedStream> = self
            .received
            .iter()
            .map(|((publisher, kind, layer), reception)| ReceivedStream {
                publisher: *publisher,
                kind: *kind,
                layer: *layer,
                reception: reception.clone(),
            })
            .collect();
        received.sort_by_key(|r| (r.publisher, r.kind, r.layer));
        let mut video_runs: Vec<(u32, LayerRuns)> = self
            .video_runs
            .iter()
            .map(|(p, r)| (*p, r.clone()))
            .collect();
        video_runs.sort_by_key(|(p, _)| *p);
        let mut forwarded: Vec<((u32, Kind), ForwardedSpan)> =
            self.forwarded.iter().map(|(k, s)| (*k, *s)).collect();
        forwarded.sort_by_key(|(k, _)| *k);
        PeerReport {
            status: self.status.clone(),
            sent,
            received,
            dropped_injected: self.dropped_injected,
            dropped_down_injected: self.dropped_down_injected,
            rtp_datagrams_sent: self.rtp_datagrams_sent,
            keyframe_requests: self.keyframe_requests,
            unstamped: self.unstamped,
            video_runs,
            forwarded,
            link_class: self.spec.link.as_ref().map(|l| l.class),
            downlink: self.downlink.as_ref().map(|l| l.link.stats().clone()),
            uplink: self.uplink.as_ref().map(|l| l.link.stats().clone()),
            headers: self.headers.as_ref().map(HeaderReception::finish),
        }
    }

    pub fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        if let Some(downlink) = &mut self.downlink {
            if let Some(at) = downlink.hold(now, source, datagram) {
                ctx.schedule(at, self.slot, Timer::Downlink);
            }
            return;
        }
        self.feed(now, source, datagram, ctx);
    }

    /// Hands the datagrams of the downlink that are due to the `Rtc`.
    pub fn deliver_downlink(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if !self.downlink.as_mut().is_some_and(|l| l.wake(at)) {
            return;
        }
        while let Some((source, datagram)) =
            self.downlink.as_mut().and_then(|l| l.link.deliver(now))
        {
            self.feed(now, source, &datagram, ctx);
        }
        if let Some(next) = self.downlink.as_mut().and_then(HeldLink::rearm) {
            ctx.schedule(next, self.slot, Timer::Downlink);
        }
    }

    /// Sends the datagrams of the uplink that are due.
    pub fn deliver_uplink(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if !self.uplink.as_mut().is_some_and(|l| l.wake(at)) {
            return;
        }
        while let Some((destination, datagram)) =
            self.uplink.as_mut().and_then(|l| l.link.deliver(now))
        {
            self.send_datagram(&datagram, destination, ctx);
        }
        if let Some(next) = self.uplink.as_mut().and_then(HeldLink::rearm) {
            ctx.schedule(next, self.slot, Timer::Uplink);
        }
    }

    /// A datagram from the hub reaches the `Rtc`.
    fn feed(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        if self.spec.drop_down_percent > 0.0
            && is_rtp(datagram)
            && self.drop_rng.unit() * 100.0 < self.spec.drop_down_percent
        {
            self.dropped_down_injected += 1;
            return;
        }
        if self.headers.is_some() && is_rtp(datagram) {
            self.count_headers(now, source, datagram, ctx);
            return;
        }
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: if self.tcp.is_some() {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                },
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(peer = self.spec.id, "datagram refused: {e}");
        }
        self.drive(now, ctx);
    }

    /// Polls the `Rtc` until it has nothing more to say.
    pub fn drive(&mut self, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        for _ in 0..100_000 {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.transmit(now, &t.contents, t.destination, ctx),
                Ok(Output::Event(event)) => self.handle_event(now, event, ctx),
                Ok(Output::Timeout(at)) => {
                    if at <= now {
                        let _ = self.rtc.handle_input(Input::Timeout(now));
                        continue;
                    }
                    if self.next_rtc != Some(at) {
                        self.next_rtc = Some(at);
                        ctx.schedule(at, self.slot, Timer::Rtc);
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = self.spec.id, "rtc failed: {e}");
                    if self.status.error.is_none() {
                        self.status.error = Some(e.to_string());
                        ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.rtc.disconnect();
                    self.dead = true;
                    break;
                }
            }
        }
        if !self.rtc.is_alive() {
            self.status.closed = true;
            self.dead = true;
        }
    }

    /// Counts an RTP datagram from its header (header-only reception).
    fn count_headers(&mut self, now: Instant, source: SocketAddr, datagram: &[u8], ctx: &mut Ctx) {
        let Some(headers) = &mut self.headers else {
            return;
        };
        headers.remote = Some(source);
        let arrival = ctx.clock.ns(now);
        let (rtc, kinds) = (&self.rtc, &mut self.kinds_by_pt);
        let samples = headers.receive(
            now,
            datagram,
            ctx.window.contains(arrival),
            &self.facts,
            |pt| kind_of(rtc, kinds, pt.into()),
        );
        if headers.counts.media_packets > 0 {
            self.media_arrived(arrival, ctx);
        }
        for sample in samples.all() {
            if ctx.window.contains(sample.stamp.sent_ns) {
                self.record_delay(&sample.stamp, ctx.clock.ns(sample.arrived), ctx);
            }
        }
    }

    /// The first media packet arrived, at `arrival`, if none had.
    fn media_arrived(&mut self, arrival: u64, ctx: &mut Ctx) {
        if self.status.first_media_ns.is_none() {
            self.status.first_media_ns = Some(arrival);
            ctx.progress.receiving.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the one-way delay of a packet stamped `stamp` that arrived at `arrival`.
    fn record_delay(&self, stamp: &Stamp, arrival: u64, ctx: &mut Ctx) {
        let delay_us = arrival.saturating_sub(stamp.sent_ns) / 1000;
        if stamp.publisher == STUDIO {
            ctx.report.downstream_delay.record(delay_us);
            ctx.report
                .downstream_delay_by_class
                .entry(self.spec.link.as_ref().map(|l| l.class))
                .or_default()
                .record(delay_us);
        } else {
            ctx.report.upstream_delay.record(delay_us);
        }
    }

    /// Sends the RTCP of header-only reception that is due, and schedules the next.
    pub fn send_feedback(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if self.dead || self.next_feedback != Some(at) {
            return;
        }
        // Behind schedule (the thread is overloaded), the next one is an interval from now.
        let next = (at + FEEDBACK_INTERVAL).max(now);
        self.next_feedback = Some(next);
        ctx.schedule(next, self.slot, Timer::Feedback);
        let Some(headers) = &mut self.headers else {
            return;
        };
        let (Some(remote), Some(rtcp)) = (headers.remote, headers.feedback(now)) else {
            return;
        };
        self.send_out(now, &rtcp, remote, ctx);
    }

    /// Takes the session's keys and counts from the headers from now on.
    fn start_header_reception(&mut self, now: Instant, ctx: &mut Ctx) {
        let Some((rx, tx)) = self.rtc.srtp_contexts() else {
            tracing::warn!(peer = self.spec.id, "connected without SRTP keys");
            return;
        };
        let ssrc = 0x10AD_0000 ^ self.spec.id;
        self.headers = Some(HeaderReception::new(rx, tx, ssrc, now));
        // Spread the sites' feedback over the interval.
        let offset = Duration::from_micros(
            (u64::from(self.spec.id) * 7_919) % FEEDBACK_INTERVAL.as_micros() as u64,
        );
        let first = now + offset;
        self.next_feedback = Some(first);
        ctx.schedule(first, self.slot, Timer::Feedback);
    }

    fn transmit(&mut self, now: Instant, contents: &[u8], destination: SocketAddr, ctx: &mut Ctx) {
        if let Some(headers) = &mut self.headers
            && is_rtcp(contents)
        {
            // The site answers with its own RTCP; the `Rtc` saw none of the packets.
            headers.counts.dropped_rtc_rtcp += 1;
            return;
        }
        if is_rtp(contents) {
            if self.spec.drop_percent > 0.0 && self.drop_rng.unit() * 100.0 < self.spec.drop_percent
            {
                self.dropped_injected += 1;
                return;
            }
            self.rtp_datagrams_sent += 1;
        }
        self.send_out(now, contents, destination, ctx);
    }

    /// Sends a datagram through the peer's uplink, if it has one.
    fn send_out(&mut self, now: Instant, contents: &[u8], destination: SocketAddr, ctx: &mut Ctx) {
        if let Some(uplink) = &mut self.uplink {
            if let Some(at) = uplink.hold(now, destination, contents) {
                ctx.schedule(at, self.slot, Timer::Uplink);
            }
            return;
        }
        self.send_datagram(contents, destination, ctx);
    }

    fn send_datagram(&mut self, contents: &[u8], destination: SocketAddr, ctx: &mut Ctx) {
        if let Some(path) = &mut self.tcp {
            let Some(registry) = &ctx.registry else {
                ctx.report.send_errors += 1;
                return;
            };
            match path.send(registry, self.slot, destination, contents) {
                Sent::Queued => {}
                Sent::Dropped => ctx.report.send_would_block += 1,
                Sent::Failed => ctx.report.send_errors += 1,
            }
            return;
        }
        match self.socket.send_to(contents, destination) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ctx.report.send_would_block += 1,
            Err(_) => ctx.report.send_errors += 1,
        }
    }

    fn handle_event(&mut self, now: Instant, event: Event, ctx: &mut Ctx) {
        match event {
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.status.ice_connected_ns.is_none() => {
                self.status.ice_connected_ns = Some(ctx.clock.ns(now));
                ctx.progress.ice_connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.status.ice_connected_ns.is_some() =>
            {
                self.status.disconnected = true;
            }
            Event::Connected => {
                if self.status.connected_ns.is_none() {
                    self.status.connected_ns = Some(ctx.clock.ns(now));
                    ctx.progress.connected.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(a) = &mut self.audio
                    && a.next.is_none()
                {
                    a.next = Some(now);
                    ctx.schedule(now, self.slot, Timer::Audio);
                }
                if let Some(v) = &mut self.video
                    && v.next.is_none()
                {
                    v.next = Some(now);
                    ctx.schedule(now, self.slot, Timer::Video);
                }
                if self.spec.receive_headers && self.headers.is_none() {
                    self.start_header_reception(now, ctx);
                }
            }
            Event::RtpPacket(packet) => {
                let Some(kind) = self.kind_of(packet.header.payload_type) else {
                    self.unstamped += 1;
                    return;
                };
                let Some(stamp) = Stamp::parse(kind, &packet.payload) else {
                    self.unstamped += 1;
                    return;
                };
                let arrival = ctx.clock.ns(now);
                let in_window = ctx.window.contains(stamp.sent_ns);
                let first = self
                    .received
                    .entry((stamp.publisher, kind, stamp.layer))
                    .or_default()
                    .record(&stamp, packet.payload.len(), arrival, in_window);
                if in_window && kind == Kind::Video {
                    self.video_runs
                        .entry(stamp.publisher)
                        .or_default()
                        .record(&stamp, arrival);
                }
                self.media_arrived(arrival, ctx);
                if first && in_window {
                    self.forwarded
                        .entry((stamp.publisher, kind))
                        .or_default()
                        .record(*packet.seq_no);
                    self.record_delay(&stamp, arrival, ctx);
                }
            }
            Event::KeyframeRequest(request) => {
                if let Some(v) = &mut self.video
                    && v.mid == request.mid
                {
                    // Without a rid, every layer: the request names no layer.
                    for layer in &mut v.layers {
                        if request.rid.is_none() || layer.rid == request.rid {
                            layer.encoder.request_keyframe();
                        }
                    }
                    self.keyframe_requests += 1;
                }
            }
            _ => {}
        }
    }

    fn kind_of(&mut self, pt: Pt) -> Option<Kind> {
        kind_of(&self.rtc, &mut self.kinds_by_pt, pt).map(|(kind, _)| kind)
    }

    pub fn send_audio(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        let Some(a) = self.audio.as_mut().filter(|a| a.next == Some(at)) else {
            return;
        };
        let next = next_tick(at, AudioEncoder::INTERVAL, now, &mut ctx.report);
        a.next = Some(next);
        ctx.schedule(next, self.slot, Timer::Audio);
        if a.pt.is_none() {
            a.pt = payload_type(&self.rtc, a.mid, Codec::Opus);
        }
        let Some(pt) = a.pt else {
            return;
        };
        let sent_ns = ctx.clock.ns(now);
        let in_window = ctx.window.contains(sent_ns);
        let (size, rtp_time) = a.encoder.next_packet();
        let payload = media::audio_payload(
            size,
            Stamp {
                sent_ns,
                publisher: self.spec.id,
                index: a.index,
                layer: 0,
            },
        );
        a.index = a.index.wrapping_add(1);
        a.seq += 1;
        let seq = a.seq;
        a.stats.sent_total += 1;
        if in_window {
            a.stats.sent_window += 1;
        }
        if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(a.mid, None) {
            stream.write_rtp(
                RtpWrite::new(pt, seq.into(), rtp_time, now, payload)
                    .marker(false)
                    .nackable(false),
            );
        }
        self.drive(now, ctx);
    }

    pub fn send_video(&mut self, at: Instant, now: Instant, ctx: &mut Ctx) {
        if self.dead {
            return;
        }
        let Some(v) = self.video.as_mut().filter(|v| v.next == Some(at)) else {
            return;
        };
        let interval = v.layers.first().map_or(Duration::from_millis(33), |l| {
            l.encoder.profile().frame_interval()
        });
        let next = next_tick(at, interval, now, &mut ctx.report);
        v.next = Some(next);
        ctx.schedule(next, self.slot, Timer::Video);
        if v.pt.is_none() {
            v.pt = payload_type(&self.rtc, v.mid, Codec::Vp8);
        }
        let Some(pt) = v.pt else {
            return;
        };
        let (mid, layers) = (v.mid, v.layers.len());
        for layer in 0..layers {
            self.send_frame(layer, mid, pt, now, ctx);
        }
    }

    /// Encodes and writes the next frame of one video layer.
    fn send_frame(&mut self, layer: usize, mid: Mid, pt: Pt, now: Instant, ctx: &mut Ctx) {
        let publisher = self.spec.id;
        let Some(l) = self.video.as_mut().and_then(|v| v.layers.get_mut(layer)) else {
            return;
        };
        let frame = l.encoder.next_frame();
        let profile = *l.encoder.profile();
        let payloads = media::video_payloads(
            &frame,
            &profile,
            Stamp {
                sent_ns: ctx.clock.ns(now),
                publisher,
                index: l.index,
                layer: layer as u8,
            },
        );
        let count = payloads.len();
        l.index = l.index.wrapping_add(count as u32);
        l.stats.frames += 1;
        if frame.keyframe {
            l.stats.keyframes += 1;
        }
        l.stats.sent_total += count as u64;
        let first_seq = l.seq + 1;
        l.seq += count as u64;
        let rid = l.rid;
        // Each packet is stamped when it is handed to str0m and sent at once, so a keyframe's
        // last packet does not count the time spent encrypting the ones before it as delay.
        for (i, mut payload) in payloads.into_iter().enumerate() {
            let at = if i == 0 { now } else { Instant::now() };
            let sent_ns = ctx.clock.ns(at);
            media::restamp(Kind::Video, &mut payload, sent_ns);
            if ctx.window.contains(sent_ns)
                && let Some(l) = self.video.as_mut().and_then(|v| v.layers.get_mut(layer))
            {
                l.stats.sent_window += 1;
            }
            if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(mid, rid) {
                stream.write_rtp(
                    RtpWrite::new(
                        pt,
                        (first_seq + i as u64).into(),
                        frame.rtp_time,
                        now,
                        payload,
                    )
                    .marker(i + 1 == count)
                    .nackable(true),
                );
            }
            self.drive(at, ctx);
        }
    }
}

/// A peer's first offer: its published tracks, or a receive-only m-line for a viewer.
struct FirstOffer {
    sdp: String,
    pending: SdpPendingOffer,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    layers: Vec<(Option<Rid>, VideoProfile)>,
}

fn first_offer(rtc: &mut Rtc, spec: &PeerSpec) -> Result<FirstOffer, EngineError> {
    let mut api = rtc.sdp_api();
    let stream_id = format!("loadgen-{}", spec.id);
    let audio_mid = spec.audio.then(|| {
        api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-audio")),
            None,
        )
    });
    let layers: Vec<(Option<Rid>, VideoProfile)> = match spec.video {
        Some(profile) if spec.simulcast => profile
            .simulcast_layers()
            .into_iter()
            .map(|(rid, p)| (Some(Rid::from(rid)), p))
            .collect(),
        Some(profile) => vec![(None, profile)],
        None => Vec::new(),
    };
    let video_mid = spec.video.map(|_| {
        let simulcast = spec.simulcast.then(|| {
            let mut simulcast = Simulcast::new();
            for (rid, _) in &layers {
                if let Some(rid) = rid {
                    simulcast.add_send_layer(SimulcastLayer::new(rid));
                }
            }
            simulcast
        });
        api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-video")),
            simulcast,
        )
    });
    if audio_mid.is_none() && video_mid.is_none() {
        // A viewer that publishes nothing still offers something, as a browser with a
        // receive-only transceiver does; the hub adds its own m-lines later.
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| EngineError::Sdp("str0m made no offer".to_owned()))?;
    Ok(FirstOffer {
        sdp: offer.to_sdp_string(),
        pending,
        audio_mid,
        video_mid,
        layers,
    })
}

struct AudioSender {
    mid: Mid,
    pt: Option<Pt>,
    encoder: AudioEncoder,
    seq: u64,
    index: u32,
    next: Option<Instant>,
    stats: SentStream,
}

struct VideoSender {
    mid: Mid,
    pt: Option<Pt>,
    next: Option<Instant>,
    /// One without simulcast; else lowest first.
    layers: Vec<VideoLayer>,
}

struct VideoLayer {
    rid: Option<Rid>,
    encoder: VideoEncoder,
    seq: u64,
    index: u32,
    stats: SentStream,
}

/// The next media tick after `at`; when the thread fell far behind, restart from `now` rather
/// than send a burst of stale frames.
fn next_tick(at: Instant, interval: Duration, now: Instant, report: &mut ThreadReport) -> Instant {
    let next = at + interval;
    if next + Duration::from_millis(100) < now {
        report.late_media_timers += 1;
        now + interval
    } else {
        next
    }
}

/// The kind of payload type `pt`, and whether it is a retransmission one; remembered in
/// `cache`.
fn kind_of(
    rtc: &Rtc,
    cache: &mut HashMap<Pt, Option<(Kind, bool)>>,
    pt: Pt,
) -> Option<(Kind, bool)> {
    if let Some(kind) = cache.get(&pt) {
        return *kind;
    }
    let kind = rtc
        .codec_config()
        .find(|p| p.pt() == pt || p.resend() == Some(pt))
        .map(|p| {
            let kind = if p.spec().codec.is_audio() {
                Kind::Audio
            } else {
                Kind::Video
            };
            (kind, p.pt() != pt)
        });
    cache.insert(pt, kind);
    kind
}

/// The payload type negotiated for `codec` on `mid`.
fn payload_type(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config()
        .find(|p| p.spec().codec == codec && (remote.is_empty() || remote.contains(&p.pt())))
        .map(|p| p.pt())
}

/// An RTP (not RTCP, STUN or DTLS) datagram, by RFC 5761/7983 demultiplexing.
fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(64..=95).contains(&(second & 0x7F)),
        _ => false,
    }
}

/// An RTCP datagram (payload types 192–223 under RFC 5761).
fn is_rtcp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && (64..=95).contains(&(second & 0x7F)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demultiplexes_rtp() {
        assert!(is_rtp(&[0x80, 96, 0, 0]));
        assert!(is_rtp(&[0x80, 0x80 | 111]));
        assert!(!is_rtp(&[0x80, 200]), "RTCP sender report");
        assert!(!is_rtp(&[0x81, 201]), "RTCP receiver report");
        assert!(!is_rtp(&[0x00, 0x01]), "STUN");
        assert!(!is_rtp(&[22, 254]), "DTLS");
        assert!(is_rtcp(&[0x81, 201]));
        assert!(is_rtcp(&[0x8F, 205]), "transport-wide feedback");
        assert!(!is_rtcp(&[0x80, 96]));
    }
}
