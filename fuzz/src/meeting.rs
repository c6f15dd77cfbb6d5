//! One worker, one studio and some sites, all connected in memory under a virtual clock. The
//! harness plays the hub's meeting logic: sites consume the studio, the studio consumes every
//! site, and (optionally) every site consumes two producers published on another worker.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diemcau_sfu::str0m::change::{SdpAnswer, SdpOffer};
use diemcau_sfu::str0m::config::DtlsCert;
use diemcau_sfu::str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use diemcau_sfu::str0m::media::{Simulcast, SimulcastLayer};
use diemcau_sfu::str0m::net::{Protocol, Receive};
use diemcau_sfu::str0m::{Candidate, Event as RtcEvent, IceCreds, Input, Output as RtcOutput, Rtc};
use diemcau_sfu::{Event, Output, PeerId, ProducerId, ProducerInfo, Relay, RouterId};
use diemcau_sfu::{Worker, WorkerConfig};

/// The address of the worker's socket.
pub const HUB: &str = "127.0.0.1:40000";
/// One tick of the virtual clock.
pub const STEP: Duration = Duration::from_millis(5);
/// The studio: the first client, publishing audio and video to every site.
pub const STUDIO: PeerId = PeerId(1);
/// Simulcast rids of the studio's video (with [`MeetingConfig::simulcast`]), lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// How many of each client's first and of its latest datagrams are kept.
const KEPT_DATAGRAMS: usize = 32;

/// How to build a [`Meeting`].
#[derive(Debug, Clone, Copy)]
pub struct MeetingConfig {
    pub sites: usize,
    /// Whether the worker is one of two, so that it relays packets and keyframe requests and
    /// its sites consume two producers (audio, video) of the other worker.
    pub remote_producers: bool,
    /// Whether the studio publishes its video in three simulcast layers ([`RIDS`]).
    pub simulcast: bool,
}

/// A client endpoint (what a browser would be), in RTP mode.
pub struct Client {
    pub peer: PeerId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    /// Whether it publishes its video in simulcast layers ([`RIDS`]).
    pub simulcast: bool,
    /// The m-lines it publishes on.
    pub send_mids: Vec<(MediaKind, Mid)>,
    /// The m-lines the hub offered it (consumers).
    pub recv_mids: Vec<(MediaKind, Mid)>,
    pub connected: bool,
    /// Its own ICE username fragment.
    pub ufrag: String,
    /// The hub's ICE credentials for this client, from the hub's answer.
    pub hub_ice: IceCreds,
    /// Its latest datagrams to the hub, newest last.
    pub sent: VecDeque<Vec<u8>>,
    /// Its first datagrams to the hub (STUN checks, the DTLS ClientHello).
    pub first_sent: Vec<Vec<u8>>,
    pub rtp_received: u64,
    /// Extended sequence number and RTP time of the last packet it wrote, per published m-line.
    pub last_written: Vec<(Mid, u64, u32)>,
}

/// A worker and its connected clients.
pub struct Meeting {
    pub now: Instant,
    pub worker: Worker,
    pub hub: SocketAddr,
    pub router: RouterId,
    pub clients: Vec<Client>,
    /// Producers of this worker, as announced by it.
    pub producers: Vec<ProducerInfo>,
    /// Producers of the other worker that the sites consume.
    pub remote_producers: Vec<ProducerInfo>,
    /// Peers the worker reported closed.
    pub closed: Vec<PeerId>,
    /// Datagrams the worker addressed to no client.
    pub stray_transmits: u64,
    /// Relays the worker emitted.
    pub relays: Vec<Relay>,
}

impl Meeting {
    /// Builds the meeting and runs it until every client is connected and every consumer is
    /// negotiated. Panics if that does not happen: the harness is broken, not the input.
    pub fn new(config: MeetingConfig) -> Meeting {
        let now = Instant::now();
        let hub: SocketAddr = HUB.parse().expect("hub address");
        let mut worker_config = WorkerConfig::new(vec![hub]);
        worker_config.dtls_cert = Some(certificates().0.clone());
        if config.remote_producers {
            worker_config.workers = 2;
        }
        let mut meeting = Meeting {
            now,
            worker: Worker::new(worker_config),
            hub,
            router: RouterId(1),
            clients: Vec::new(),
            producers: Vec::new(),
            remote_producers: Vec::new(),
            closed: Vec::new(),
            stray_transmits: 0,
            relays: Vec::new(),
        };
        meeting.join(STUDIO, config.simulcast);
        for i in 0..config.sites {
            meeting.join(PeerId(2 + i as u64), false);
        }
        if config.remote_producers {
            // Ids of worker 1 of 2 are even; this worker allocates odd ones.
            for (id, kind) in [(2, MediaKind::Audio), (4, MediaKind::Video)] {
                let info = ProducerInfo {
                    id: ProducerId(id),
                    router: meeting.router,
                    peer: PeerId(1000),
                    kind,
                };
                for site in meeting.sites() {
                    meeting
                        .worker
                        .add_consumer(site, &info, u8::MAX)
                        .expect("consumer of a remote producer");
                }
                meeting.remote_producers.push(info);
            }
        }
        meeting.pump();
        let expected_recv = |c: &Client| {
            if c.peer == STUDIO {
                2 * config.sites
            } else {
                2 + if config.remote_producers { 2 } else { 0 }
            }
        };
        for _ in 0..400 {
            if meeting
                .clients
                .iter()
                .all(|c| c.connected && c.recv_mids.len() == expected_recv(c))
            {
                // A little more time for the first RTCP and keyframe requests to settle.
                meeting.run(Duration::from_millis(50), |_| {});
                return meeting;
            }
            meeting.run(STEP, |_| {});
        }
        panic!("harness: the meeting did not come up");
    }

    pub fn sites(&self) -> Vec<PeerId> {
        self.clients
            .iter()
            .map(|c| c.peer)
            .filter(|p| *p != STUDIO)
            .collect()
    }

    /// Whether `subscriber` receives what `publisher` publishes.
    fn consumes(subscriber: PeerId, publisher: PeerId) -> bool {
        (publisher == STUDIO) != (subscriber == STUDIO)
    }

    /// Adds a client publishing audio and video, and exchanges its first offer with the hub.
    fn join(&mut self, peer: PeerId, simulcast: bool) {
        let addr: SocketAddr = format!("127.0.0.{}:5000", 2 + self.clients.len())
            .parse()
            .expect("client address");
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_dtls_cert(certificates().1.clone())
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let layers = simulcast.then(|| {
            let mut layers = Simulcast::new();
            for rid in RIDS {
                layers.add_send_layer(SimulcastLayer::new(rid));
            }
            layers
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = self
            .worker
            .add_peer(self.now, peer, self.router, &offer.to_sdp_string())
            .expect("hub accepts the offer");
        let hub_ice = ice_credentials(&answer);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("hub answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("client accepts the answer");
        self.clients.push(Client {
            peer,
            addr,
            rtc,
            simulcast,
            send_mids: vec![(MediaKind::Audio, audio), (MediaKind::Video, video)],
            recv_mids: Vec::new(),
            connected: false,
            ufrag,
            hub_ice,
            sent: VecDeque::new(),
            first_sent: Vec::new(),
            rtp_received: 0,
            last_written: Vec::new(),
        });
        self.pump();
        let existing: Vec<ProducerInfo> = self
            .producers
            .iter()
            .filter(|p| Self::consumes(peer, p.peer))
            .cloned()
            .collect();
        for info in existing {
            self.worker
                .add_consumer(peer, &info, u8::MAX)
                .expect("consumer of an existing producer");
        }
        self.pump();
    }

    /// Runs the network for `duration` of virtual time; `each_step` may act at every tick.
    pub fn run(&mut self, duration: Duration, mut each_step: impl FnMut(&mut Meeting)) {
        let end = self.now + duration;
        while self.now < end {
            self.now += STEP;
            let now = self.now;
            self.worker.handle_timeout(now);
            for c in &mut self.clients {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            each_step(self);
            self.pump();
        }
    }

    /// Delivers a datagram to the worker as if it came from `source`, then lets everyone react.
    pub fn deliver(&mut self, source: SocketAddr, contents: &[u8]) {
        self.worker
            .handle_datagram(self.now, source, self.hub, contents);
        self.pump();
    }

    /// Client `client` (modulo their number) asks for a keyframe (FIR when `full`, else PLI)
    /// on the `mid`-th track it receives (modulo their number).
    pub fn request_keyframe(&mut self, client: u8, mid: u8, full: bool) {
        let index = usize::from(client) % self.clients.len();
        let c = &mut self.clients[index];
        if c.recv_mids.is_empty() {
            return;
        }
        let (_, mid) = c.recv_mids[usize::from(mid) % c.recv_mids.len()];
        let kind = if full {
            KeyframeRequestKind::Fir
        } else {
            KeyframeRequestKind::Pli
        };
        if let Some(stream) = c.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.request_keyframe(kind);
        }
    }

    /// Moves every pending datagram and event until all parties are quiet. Each client is
    /// polled right after each datagram it receives, as a real driver does (in RTP mode str0m
    /// holds one received packet at a time).
    pub fn pump(&mut self) {
        // str0m (with bandwidth estimation) may ask to be woken at `now` again right after
        // handling `now`: with a clock that only moves by ticks, that would never end. Each
        // party handles a due timeout once per pump, as a driver on a coarse clock would.
        let mut worker_timed_out = false;
        for _ in 0..10_000 {
            let mut busy = false;
            let mut to_clients = Vec::new();
            let mut events = Vec::new();
            loop {
                match self.worker.poll_output() {
                    Output::Transmit(t) => to_clients.push((t.destination, t.contents.to_vec())),
                    Output::Event(event) => events.push(event),
                    Output::Relay(relay) => {
                        if self.relays.len() < 1024 {
                            self.relays.push(relay);
                        }
                    }
                    Output::Timeout(at) if at <= self.now && !worker_timed_out => {
                        worker_timed_out = true;
                        self.worker.handle_timeout(self.now);
                        busy = true;
                        break;
                    }
                    Output::Timeout(_) => break,
                }
            }
            busy |= !to_clients.is_empty() || !events.is_empty();
            let mut to_hub = Vec::new();
            for (destination, contents) in to_clients {
                let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) else {
                    self.stray_transmits += 1;
                    continue;
                };
                let Ok(contents) = (&contents[..]).try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: self.hub,
                        destination,
                        contents,
                    },
                );
                let _ = c.rtc.handle_input(input);
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            for event in events {
                self.on_event(event);
            }
            for c in &mut self.clients {
                busy |= poll_client(c, self.now, &mut to_hub);
            }
            for (source, contents) in to_hub {
                self.worker
                    .handle_datagram(self.now, source, self.hub, &contents);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ProducerAdded(info) => {
                let subscribers: Vec<PeerId> = self
                    .clients
                    .iter()
                    .map(|c| c.peer)
                    .filter(|s| Self::consumes(*s, info.peer))
                    .collect();
                for s in subscribers {
                    // The subscriber may have been closed by what the fuzzer sent.
                    let _ = self.worker.add_consumer(s, &info, u8::MAX);
                }
                self.producers.push(info);
            }
            Event::Offer { peer, sdp } => {
                let Some(c) = self.clients.iter_mut().find(|c| c.peer == peer) else {
                    return;
                };
                let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                    panic!("the hub's offer does not parse: {sdp}");
                };
                let Ok(answer) = c.rtc.sdp_api().accept_offer(offer) else {
                    return;
                };
                let _ = self
                    .worker
                    .accept_answer(self.now, peer, &answer.to_sdp_string());
            }
            Event::PeerClosed(peer) => self.closed.push(peer),
            _ => {}
        }
    }
}

/// The DTLS certificates of the hub and of the clients, made once per process.
fn certificates() -> &'static (DtlsCert, DtlsCert) {
    static CERTIFICATES: OnceLock<(DtlsCert, DtlsCert)> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        let provider = diemcau_sfu::str0m::crypto::from_feature_flags().dtls_provider;
        let make = || provider.generate_certificate().expect("a DTLS certificate");
        (make(), make())
    })
}

/// `a=ice-ufrag` and `a=ice-pwd` of an SDP.
fn ice_credentials(sdp: &str) -> IceCreds {
    let find = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .expect("ICE credentials in the hub's answer")
    };
    IceCreds {
        ufrag: find("a=ice-ufrag:"),
        pass: find("a=ice-pwd:"),
    }
}

/// Drains a client's output: datagrams go to `to_hub` (and its replay buffer).
fn poll_client(c: &mut Client, now: Instant, to_hub: &mut Vec<(SocketAddr, Vec<u8>)>) -> bool {
    let mut busy = false;
    let mut timed_out = false;
    loop {
        match c.rtc.poll_output() {
            Ok(RtcOutput::Transmit(t)) => {
                busy = true;
                let contents = t.contents.to_vec();
                if c.first_sent.len() < KEPT_DATAGRAMS {
                    c.first_sent.push(contents.clone());
                }
                if c.sent.len() == KEPT_DATAGRAMS {
                    c.sent.pop_front();
                }
                c.sent.push_back(contents.clone());
                to_hub.push((c.addr, contents));
            }
            Ok(RtcOutput::Event(e)) => {
                busy = true;
                match e {
                    RtcEvent::Connected => c.connected = true,
                    RtcEvent::MediaAdded(added)
                        if added.direction == Direction::RecvOnly
                            && !c.recv_mids.iter().any(|(_, m)| *m == added.mid) =>
                    {
                        c.recv_mids.push((added.kind, added.mid));
                    }
                    RtcEvent::RtpPacket(_) => c.rtp_received += 1,
                    _ => {}
                }
            }
            Ok(RtcOutput::Timeout(at)) if at <= now && !timed_out => {
                timed_out = true;
                busy = true;
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
            Ok(RtcOutput::Timeout(_)) | Err(_) => return busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use diemcau_sfu::MediaPacket;
    use diemcau_sfu::str0m::format::Codec;
    use diemcau_sfu::str0m::rtp::{ExtensionValues, RtpWrite};

    use super::*;

    /// The targets explore nothing unless media really flows: check that it does, both ways in.
    #[test]
    fn studio_media_reaches_the_sites() {
        for simulcast in [false, true] {
            let mut meeting = Meeting::new(MeetingConfig {
                sites: 2,
                remote_producers: false,
                simulcast,
            });
            assert_eq!(meeting.producers.len(), 6, "audio and video of three peers");
            let studio = &mut meeting.clients[0];
            let (_, mid) = studio.send_mids[1];
            let pt = studio
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == Codec::Vp8)
                .map(|p| p.pt())
                .expect("VP8 negotiated");
            let now = meeting.now;
            for seq in 1..=10u64 {
                let mut direct = studio.rtc.direct_api();
                let rid = simulcast.then(|| RIDS[0].into());
                let stream = direct.stream_tx_by_mid(mid, rid).expect("video stream");
                // A VP8 keyframe start, then interframes.
                let header = if seq == 1 { 0x9c } else { 0x9d };
                let payload: Arc<[u8]> = Arc::from(vec![0x10, header, 0x01, 0x2a]);
                stream.write_rtp(
                    RtpWrite::new(pt, seq.into(), seq as u32 * 3000, now, payload).marker(true),
                );
            }
            let before: Vec<u64> = meeting.clients.iter().map(|c| c.rtp_received).collect();
            meeting.run(Duration::from_millis(100), |_| {});
            for (c, before) in meeting.clients.iter().zip(before).skip(1) {
                assert!(
                    c.rtp_received >= before + 10,
                    "{} got its packets (simulcast: {simulcast})",
                    c.peer
                );
            }
            assert!(meeting.closed.is_empty());
        }
    }

    #[test]
    fn relayed_media_reaches_the_sites() {
        let mut meeting = Meeting::new(MeetingConfig {
            sites: 2,
            remote_producers: true,
            simulcast: true,
        });
        let video = meeting.remote_producers[1].clone();
        let before: Vec<u64> = meeting.clients.iter().map(|c| c.rtp_received).collect();
        for seq in 1..=10u64 {
            let packet = MediaPacket {
                router: meeting.router,
                producer: video.id,
                kind: MediaKind::Video,
                codec: Codec::Vp8,
                seq_no: seq.into(),
                timestamp: seq as u32 * 3000,
                marker: true,
                extensions: ExtensionValues::default(),
                payload: Arc::from(vec![0x10; 100]),
                layer: 0,
                vp8: None,
                received_at: meeting.now,
            };
            let now = meeting.now;
            meeting
                .worker
                .handle_relay(now, Relay::Media(Arc::new(packet)));
            meeting.pump();
        }
        meeting.run(Duration::from_millis(100), |_| {});
        for (c, before) in meeting.clients.iter().zip(before).skip(1) {
            assert!(c.rtp_received >= before + 10, "{} got its packets", c.peer);
        }
        assert!(meeting.closed.is_empty());
    }
}
