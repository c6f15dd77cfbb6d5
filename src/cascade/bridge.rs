//! The media half of a relay: three WebRTC endpoints (str0m in RTP mode). One faces the
//! parent hub, where this hub receives the national studio's programme like a site would (and
//! the floor when a site elsewhere in the tree holds it), and publishes this hub's own sites
//! that something above uses: the one holding the floor, the small pictures the national
//! chair shows, the sound of unmuted sites, each site on a pair of tracks of its own (an
//! upward slot, [`UP_SLOTS`] of them, reused as sites come and go; the parent hears which
//! site each carries, [`Bridge::take_upward`]). One faces this hub's media workers as the
//! local meeting's studio: it publishes the programme and receives those sites. One faces
//! them as the floor held elsewhere ([`crate::meeting::Seat::Above`]): it publishes that site.
//! RTP packets cross as they are (no decoding), with their sequence numbers kept continuous
//! when the source changes (a studio that joins again, the chair switching between the studio
//! and its encoder, the floor moving from site to site);
//! keyframe requests go the other way, merged. Sans-IO: datagrams and the time come in,
//! datagrams and signalling needs go out; [`super::relay`] drives it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use diemcau_sfu::TimestampRewriter;
use diemcau_sfu::str0m;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

use diemcau_signaling::Role;

use super::sdp_text::{layer_of, stream_ids, udp_candidates};

/// Keyframe requests reach the source at most this often: a hub merges them again with every
/// other request it gets.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(500);

/// The simulcast layers the programme is published with here, lowest first: the parent sends
/// each layer of the national studio's video on a track of its own (track id ending in
/// `-l<layer>`), and this hub chooses each commune's layer. A studio without simulcast fills
/// the lowest only.
const PROGRAMME_RIDS: [&str; 3] = ["l0", "l1", "l2"];

/// How many sites a relay can send up at once (each on an audio and a video track): the one
/// holding the floor, the small pictures the national chair shows and the unmuted sounds. A
/// site beyond them is not sent up until a slot is free.
pub const UP_SLOTS: usize = 32;

/// A slot freed by one site is given to another only after this long, so that the parent has
/// heard it is free before packets of another site come on it.
const SLOT_REST: Duration = Duration::from_secs(2);

/// What the relay received from the parent, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RelayFigures {
    /// RTP packets of the programme published here.
    pub packets: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Loss of the programme's video on the link, as this hub last reported it (0–1).
    pub loss: Option<f32>,
    /// RTP packets of this hub's sites sent up (the floor, small pictures, sounds).
    pub floor_up_packets: u64,
    /// Sites sent up now.
    pub up_sites: usize,
    /// RTP packets of sites not sent up for want of a free slot.
    pub up_dropped_packets: u64,
    /// RTP packets of the floor held elsewhere, published here.
    pub floor_down_packets: u64,
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Faces the parent hub.
    Parent,
    /// Faces this hub's media workers as the studio.
    Local,
    /// Faces this hub's media workers as the floor held elsewhere.
    Floor,
}

impl Side {
    /// Every endpoint, in the order the bridge drives them.
    const ALL: [Side; 3] = [Side::Parent, Side::Local, Side::Floor];
}

/// A datagram to send from one side's socket.
#[derive(Debug)]
pub struct Datagram {
    pub side: Side,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Why the bridge cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("SDP: {0}")]
    Sdp(String),
    #[error("WebRTC: {0}")]
    Rtc(String),
}

/// RTP clock ticks a millisecond: Opus's, and every video codec's.
const OPUS_CLOCK_PER_MS: u32 = 48;
const VIDEO_CLOCK_PER_MS: u32 = 90;

/// Sequence numbers of one kind of media as published locally: continuous across the parent's
/// stream changes, so the local hub sees one stream.
#[derive(Debug, Default)]
struct Renumber {
    ssrc: Option<Ssrc>,
    /// Added to the parent's extended sequence number.
    offset: i64,
    last: Option<u64>,
}

impl Renumber {
    fn map(&mut self, ssrc: Ssrc, seq: SeqNo) -> SeqNo {
        let seq = *seq as i64;
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            let next = self.last.map_or(seq, |last| last as i64 + 1);
            self.offset = next - seq;
        }
        let out = (seq + self.offset).max(0) as u64;
        self.last = Some(self.last.map_or(out, |last| last.max(out)));
        out.into()
    }
}

/// RTP timestamps of one kind of media as published locally: continuous across the parent's
/// stream changes (the SFU's rewriter, rebased when the stream's SSRC changes), so the local
/// hub's receivers see one clock.
#[derive(Debug, Default)]
struct Retime {
    ssrc: Option<Ssrc>,
    clock: TimestampRewriter,
}

impl Retime {
    /// The local timestamp of a packet of `ssrc` with `timestamp` (`clock_per_ms` ticks a
    /// millisecond).
    fn map(&mut self, ssrc: Ssrc, timestamp: u32, now: Instant, clock_per_ms: u32) -> u32 {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.clock.rebase();
        }
        self.clock.rewrite(timestamp, now, clock_per_ms)
    }
}

/// An audio and a video m-line published together.
type Pair = (Mid, Mid);

/// One endpoint: its `Rtc`, the candidate address its socket has, its first offer's pending
/// state until the answer comes.
struct Endpoint {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
}

impl Endpoint {
    /// An endpoint publishing `pairs` pairs of one audio and one video track (with simulcast
    /// layers `rids`, lowest first, when there are any), with its first offer.
    fn publishing(
        now: Instant,
        local: SocketAddr,
        stats: bool,
        stream: &str,
        pairs: usize,
        rids: &[&str],
    ) -> Result<(Endpoint, Vec<Pair>, String), BridgeError> {
        let mut config = Rtc::builder()
            .set_crypto_provider(diemcau_sfu::crypto_provider())
            .set_stats_interval(stats.then_some(Duration::from_secs(2)))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true);
        // The programme may be a studio encoder's H.264.
        diemcau_sfu::add_h264_profiles(config.codec_config());
        let mut rtc = config.build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| BridgeError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let mut mids = Vec::with_capacity(pairs);
        for pair in 0..pairs {
            let stream = if pairs == 1 {
                stream.to_owned()
            } else {
                format!("{stream}-{pair}")
            };
            let audio = api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}-audio")),
                None,
            );
            let simulcast = (!rids.is_empty()).then(|| {
                let mut simulcast = Simulcast::new();
                for rid in rids {
                    simulcast.add_send_layer(SimulcastLayer::new(rid));
                }
                simulcast
            });
            let video = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(stream.clone()),
                Some(format!("{stream}-video")),
                simulcast,
            );
            mids.push((audio, video));
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| BridgeError::Sdp("no offer".to_owned()))?;
        let endpoint = Endpoint {
            rtc,
            local,
            pending: Some(pending),
        };
        Ok((endpoint, mids, offer.to_sdp_string()))
    }

    /// The m-line an incoming packet of `ssrc` arrives on.
    fn mid_of(&mut self, ssrc: Ssrc) -> Option<Mid> {
        self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())
    }
}

/// One way packets cross: from what arrives at one endpoint to the audio and video tracks
/// another publishes, renumbered; keyframe requests the other way, merged. Its video has one
/// or more simulcast layers, each with its own source, numbering and requests.
#[derive(Debug)]
struct Leg {
    from: Side,
    to: Side,
    audio: Mid,
    video: Mid,
    audio_seq: Renumber,
    audio_time: Retime,
    layers: Vec<Layer>,
}

/// One simulcast layer of a leg's video (the only one without simulcast).
#[derive(Debug, Default)]
struct Layer {
    /// Its rid where it is published (none without simulcast).
    rid: Option<Rid>,
    seq: Renumber,
    time: Retime,
    /// The m-line it arrives on now: keyframe requests go there.
    source: Option<Mid>,
    keyframe_wanted: bool,
    last_keyframe_request: Option<Instant>,
}

impl Layer {
    /// Where a keyframe request is to be sent now.
    fn keyframe_due(&self, now: Instant) -> Option<Mid> {
        let due = self.keyframe_wanted
            && self
                .last_keyframe_request
                .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_REQUEST_GAP);
        self.source.filter(|_| due)
    }
}

impl Leg {
    fn new(from: Side, to: Side, audio: Mid, video: Mid, rids: &[&str]) -> Leg {
        let layers = if rids.is_empty() {
            vec![Layer::default()]
        } else {
            rids.iter()
                .map(|rid| Layer {
                    rid: Some(Rid::from(*rid)),
                    ..Layer::default()
                })
                .collect()
        };
        Leg {
            from,
            to,
            audio,
            video,
            audio_seq: Renumber::default(),
            audio_time: Retime::default(),
            layers,
        }
    }
}

/// Who publishes the programme at the parent: the national studio, or its encoder while the
/// encoder is on air.
#[derive(Debug, Default)]
struct ProgrammeStreams {
    studio: Option<String>,
    encoder: Option<String>,
}

impl ProgrammeStreams {
    fn contains(&self, stream: &str) -> bool {
        [&self.studio, &self.encoder]
            .into_iter()
            .any(|s| s.as_deref() == Some(stream))
    }
}

/// The legs of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The national studio, from the parent to the local studio seat.
    Programme,
    /// One of this hub's sites, from the local studio seat to the parent, in upward slot
    /// `n`.
    Up(usize),
    /// The floor held elsewhere, from the parent to the local floor seat.
    FloorDown,
}

/// An upward slot: a pair of tracks to the parent, and the site it carries now.
#[derive(Debug)]
struct UpSlot {
    leg: Leg,
    site: Option<String>,
    /// When it was freed, while it rests ([`SLOT_REST`]).
    freed: Option<Instant>,
}

/// The three endpoints and what crosses between them. States: offered (each side's first
/// offer awaits its answer) → connected → closed (an `Rtc` failed or was closed).
pub struct Bridge {
    parent: Endpoint,
    local: Endpoint,
    floor: Endpoint,
    programme: Leg,
    floor_down: Leg,
    up: Vec<UpSlot>,
    /// The participant id (at this hub) of each m-line this hub's workers send the local
    /// studio seat on, from their latest offer.
    local_streams: HashMap<Mid, String>,
    /// The site of each participant at this hub.
    local_sites: HashMap<String, String>,
    /// The upward slot the packets of each of those m-lines go to, once found; forgotten
    /// whenever a slot, a stream or a site changes.
    local_slots: HashMap<Mid, usize>,
    /// The sites the upward slots carry changed since the parent was told.
    upward_changed: bool,
    /// This hub's site holding the floor: it goes up even when every slot is taken.
    floor_site: Option<String>,
    /// The stream and track ids (the publisher's participant id at the parent, and the
    /// track's) of each m-line the parent sends on, from its offers.
    parent_streams: HashMap<Mid, (String, String)>,
    /// The participant ids at the parent of the national studio and of its encoder: their
    /// tracks are the programme (the parent sends one of them at a time); any other track the
    /// parent sends is the floor held elsewhere.
    programme_streams: ProgrammeStreams,
    out: VecDeque<Datagram>,
    /// Where this machine reaches its own hub's workers (their candidates are given again at
    /// this address, so no route through a NAT is needed).
    local_reach: IpAddr,
    pub figures: RelayFigures,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("figures", &self.figures)
            .finish_non_exhaustive()
    }
}

/// The first offers of a new bridge, one per side.
#[derive(Debug)]
pub struct Offers {
    pub parent: String,
    pub local: String,
    pub floor: String,
}

impl Bridge {
    /// A bridge whose sides send from `parent_addr`, `local_addr` and `floor_addr`, with each
    /// side's first offer; this hub's workers are reached at `local_reach`.
    pub fn new(
        now: Instant,
        parent_addr: SocketAddr,
        local_addr: SocketAddr,
        floor_addr: SocketAddr,
        local_reach: IpAddr,
        stream: &str,
    ) -> Result<(Bridge, Offers), BridgeError> {
        let (parent, up_mids, parent_offer) = Endpoint::publishing(
            now,
            parent_addr,
            true,
            &format!("{stream}-up"),
            UP_SLOTS,
            &[],
        )?;
        let (local, local_mids, local_offer) =
            Endpoint::publishing(now, local_addr, false, stream, 1, &PROGRAMME_RIDS)?;
        let (floor, floor_mids, floor_offer) =
            Endpoint::publishing(now, floor_addr, false, &format!("{stream}-floor"), 1, &[])?;
        let (Some(&(audio, video)), Some(&(down_audio, down_video))) =
            (local_mids.first(), floor_mids.first())
        else {
            return Err(BridgeError::Sdp("no m-lines".to_owned()));
        };
        let up = up_mids
            .into_iter()
            .map(|(audio, video)| UpSlot {
                leg: Leg::new(Side::Local, Side::Parent, audio, video, &[]),
                site: None,
                freed: None,
            })
            .collect();
        let bridge = Bridge {
            parent,
            local,
            floor,
            programme: Leg::new(Side::Parent, Side::Local, audio, video, &PROGRAMME_RIDS),
            floor_down: Leg::new(Side::Parent, Side::Floor, down_audio, down_video, &[]),
            up,
            local_streams: HashMap::new(),
            local_sites: HashMap::new(),
            local_slots: HashMap::new(),
            upward_changed: true,
            floor_site: None,
            parent_streams: HashMap::new(),
            programme_streams: ProgrammeStreams::default(),
            out: VecDeque::new(),
            local_reach,
            figures: RelayFigures::default(),
        };
        let offers = Offers {
            parent: parent_offer,
            local: local_offer,
            floor: floor_offer,
        };
        Ok((bridge, offers))
    }

    fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::Parent => &mut self.parent,
            Side::Local => &mut self.local,
            Side::Floor => &mut self.floor,
        }
    }

    fn leg(&mut self, way: Way) -> Option<&mut Leg> {
        match way {
            Way::Programme => Some(&mut self.programme),
            Way::Up(slot) => self.up.get_mut(slot).map(|s| &mut s.leg),
            Way::FloorDown => Some(&mut self.floor_down),
        }
    }

    fn ways(&self) -> impl Iterator<Item = Way> + use<> {
        [Way::Programme, Way::FloorDown]
            .into_iter()
            .chain((0..self.up.len()).map(Way::Up))
    }

    /// This hub's participant `participant` is site `site` (`None`: it left).
    pub fn set_local_site(&mut self, participant: &str, site: Option<&str>) {
        self.local_slots.clear();
        match site {
            Some(site) => {
                self.local_sites
                    .insert(participant.to_owned(), site.to_owned());
            }
            None => {
                self.local_sites.remove(participant);
            }
        }
    }

    /// What the parent must hear of the upward slots, when it changed since last asked:
    /// each slot's video and audio m-line with the site it carries.
    pub fn take_upward(&mut self) -> Option<Vec<super::RelayStream>> {
        if !std::mem::take(&mut self.upward_changed) {
            return None;
        }
        let streams = self
            .up
            .iter()
            .filter_map(|slot| Some((slot.site.as_ref()?, &slot.leg)))
            .flat_map(|(site, leg)| {
                [leg.audio, leg.video].map(|mid| super::RelayStream {
                    mid: mid.to_string(),
                    site: site.clone(),
                })
            })
            .collect();
        Some(streams)
    }

    /// The parent's chair gave the floor to this hub's site `site` (`None`: to none of them).
    pub fn set_floor_site(&mut self, site: Option<&str>) {
        self.floor_site = site.map(str::to_owned);
    }

    /// The upward slot of `site`: the one carrying it, else a free one rested enough (the
    /// parent is told). The site holding the floor takes another site's slot when none is
    /// free.
    fn slot_for(&mut self, now: Instant, site: &str) -> Option<usize> {
        if let Some(index) = self
            .up
            .iter()
            .position(|slot| slot.site.as_deref() == Some(site))
        {
            return Some(index);
        }
        let free = self.up.iter().position(|slot| {
            slot.site.is_none()
                && slot
                    .freed
                    .is_none_or(|at| now.saturating_duration_since(at) >= SLOT_REST)
        });
        let index = match free {
            Some(index) => index,
            None if self.floor_site.as_deref() == Some(site) => {
                tracing::info!(site, "every upward slot is taken: the floor takes one");
                self.up.iter().position(|slot| slot.site.is_some())?
            }
            None => return None,
        };
        let slot = self.up.get_mut(index)?;
        slot.site = Some(site.to_owned());
        slot.freed = None;
        self.slots_changed();
        Some(index)
    }

    /// A slot changed hands: the parent is to be told, the figures and the local m-lines'
    /// slots follow.
    fn slots_changed(&mut self) {
        self.upward_changed = true;
        self.local_slots.clear();
        self.figures.up_sites = self.up.iter().filter(|s| s.site.is_some()).count();
    }

    /// This hub's workers now send the local studio seat the tracks of the participants in
    /// `local_streams`: a slot whose site has none of them left is freed.
    fn release_slots(&mut self, now: Instant) {
        let present: std::collections::HashSet<&String> = self
            .local_streams
            .values()
            .filter_map(|participant| self.local_sites.get(participant))
            .collect();
        let mut freed = false;
        for slot in &mut self.up {
            if slot
                .site
                .as_ref()
                .is_some_and(|site| !present.contains(site))
            {
                slot.site = None;
                slot.freed = Some(now);
                freed = true;
            }
        }
        if freed {
            self.slots_changed();
        }
    }

    /// The participant id at the parent (from `joined` and `participant_joined`) of the
    /// national studio (`role` studio) or of its encoder (`encoder`): its tracks are the
    /// programme. Another role is no source of the programme and changes nothing.
    pub fn set_programme_stream(&mut self, role: Role, participant: &str) {
        let slot = match role {
            Role::Studio => &mut self.programme_streams.studio,
            Role::Encoder => &mut self.programme_streams.encoder,
            _ => return,
        };
        *slot = Some(participant.to_owned());
    }

    /// The hub's answer to our first offer on `side`.
    pub fn accept_answer(&mut self, side: Side, sdp: &str) -> Result<(), BridgeError> {
        let endpoint = self.endpoint(side);
        let pending = endpoint
            .pending
            .take()
            .ok_or_else(|| BridgeError::Sdp("no offer of ours awaits an answer".to_owned()))?;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| BridgeError::Sdp(e.to_string()))?;
        endpoint
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| BridgeError::Sdp(e.to_string()))?;
        self.reach_own_hub(side, sdp);
        Ok(())
    }

    /// This hub's workers announce the addresses sites reach them at, which this machine
    /// may not (a NAT without hairpin): each of their UDP candidates is added again at
    /// [`Bridge::local_reach`], where they listen too.
    fn reach_own_hub(&mut self, side: Side, sdp: &str) {
        if side == Side::Parent {
            return;
        }
        let reach = self.local_reach;
        for candidate in udp_candidates(sdp) {
            if candidate.ip() == reach {
                continue;
            }
            let twin = SocketAddr::new(reach, candidate.port());
            match Candidate::host(twin, "udp") {
                Ok(twin) => self.endpoint(side).rtc.add_remote_candidate(twin),
                Err(e) => tracing::debug!("no candidate at {twin}: {e}"),
            }
        }
    }

    /// A hub's offer on `side` (tracks come or go) at `now`: our answer.
    pub fn accept_offer(
        &mut self,
        now: Instant,
        side: Side,
        sdp: &str,
    ) -> Result<String, BridgeError> {
        match side {
            Side::Parent => {
                for (mid, stream, track) in stream_ids(sdp) {
                    self.parent_streams
                        .insert(Mid::from(mid.as_str()), (stream, track));
                }
            }
            Side::Local => {
                self.local_streams = stream_ids(sdp)
                    .into_iter()
                    .map(|(mid, stream, _)| (Mid::from(mid.as_str()), stream))
                    .collect();
                self.local_slots.clear();
                self.release_slots(now);
            }
            Side::Floor => {}
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| BridgeError::Sdp(e.to_string()))?;
        let answer = self
            .endpoint(side)
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| BridgeError::Sdp(e.to_string()))?;
        self.reach_own_hub(side, sdp);
        Ok(answer.to_sdp_string())
    }

    /// A datagram arrived on `side`'s socket.
    pub fn receive(&mut self, now: Instant, side: Side, source: SocketAddr, datagram: &[u8]) {
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let endpoint = self.endpoint(side);
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: endpoint.local,
                contents,
            },
        );
        if let Err(e) = endpoint.rtc.handle_input(input) {
            tracing::debug!(?side, "relay datagram refused: {e}");
        }
    }

    /// Runs the endpoints up to `now`: what they send is queued ([`Bridge::poll_datagram`]),
    /// the packets cross. Returns when to be called again.
    pub fn drive(&mut self, now: Instant) -> Result<Instant, BridgeError> {
        let mut next = now + Duration::from_millis(100);
        for side in Side::ALL {
            for _ in 0..10_000 {
                let output = self.endpoint(side).rtc.poll_output();
                match output.map_err(|e| BridgeError::Rtc(e.to_string()))? {
                    Output::Transmit(t) => self.out.push_back(Datagram {
                        side,
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    }),
                    Output::Event(event) => self.handle(now, side, event),
                    Output::Timeout(at) => {
                        if at <= now {
                            let _ = self.endpoint(side).rtc.handle_input(Input::Timeout(now));
                            continue;
                        }
                        next = next.min(at);
                        break;
                    }
                }
            }
            if !self.endpoint(side).rtc.is_alive() {
                return Err(BridgeError::Rtc(format!("the {side:?} connection closed")));
            }
        }
        for way in self.ways() {
            self.ask_keyframe(now, way);
        }
        Ok(next)
    }

    /// The next datagram to send.
    pub fn poll_datagram(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    /// The datagrams polled since the last call left their sockets at `at` (read just
    /// before the sends): each side's transport-wide send records take that time where it is
    /// later than when str0m protected them (str0m's `DirectApi::mark_sent`), so that the
    /// estimate of each link measures the link, not this loop's own turn, as the media
    /// worker's sessions do (`Worker::datagrams_sent`).
    pub fn datagrams_sent(&mut self, at: Instant) {
        for side in Side::ALL {
            self.endpoint(side).rtc.direct_api().mark_sent(at);
        }
    }

    fn handle(&mut self, now: Instant, side: Side, event: Event) {
        match (side, event) {
            (Side::Parent | Side::Local, Event::RtpPacket(packet)) => {
                self.receive_rtp(now, side, packet);
            }
            (Side::Parent, Event::MediaIngressStats(stats)) => {
                // The programme's best layer: what the province's best-served communes see.
                let best = self.programme.layers.iter().rev().find_map(|l| l.source);
                if best == Some(stats.mid) {
                    self.figures.loss = stats.loss;
                }
            }
            (side, Event::KeyframeRequest(request)) => {
                let legs = [&mut self.programme, &mut self.floor_down]
                    .into_iter()
                    .chain(self.up.iter_mut().map(|slot| &mut slot.leg));
                for leg in legs {
                    if leg.to != side || leg.video != request.mid {
                        continue;
                    }
                    // A request naming no layer (or one not published) asks for every layer.
                    let named = leg
                        .layers
                        .iter()
                        .any(|l| l.rid.is_some() && l.rid == request.rid);
                    for layer in &mut leg.layers {
                        if !named || layer.rid == request.rid {
                            layer.keyframe_wanted = true;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A packet that arrived at `side`: which way it goes, then across.
    fn receive_rtp(&mut self, now: Instant, side: Side, packet: str0m::rtp::RtpPacket) {
        let Some(mid) = self.endpoint(side).mid_of(packet.header.ssrc) else {
            return;
        };
        let (way, layer) = match side {
            Side::Local => {
                let slot = match self.local_slots.get(&mid) {
                    Some(slot) => Some(*slot),
                    None => {
                        let site = self
                            .local_streams
                            .get(&mid)
                            .and_then(|participant| self.local_sites.get(participant))
                            .cloned();
                        let slot = site.and_then(|site| self.slot_for(now, &site));
                        if let Some(slot) = slot {
                            self.local_slots.insert(mid, slot);
                        }
                        slot
                    }
                };
                let Some(slot) = slot else {
                    self.figures.up_dropped_packets += 1;
                    return;
                };
                (Way::Up(slot), 0)
            }
            _ => match self.parent_streams.get(&mid) {
                Some((stream, track)) if self.programme_streams.contains(stream) => {
                    (Way::Programme, layer_of(track))
                }
                _ => (Way::FloorDown, 0),
            },
        };
        let from = match side {
            Side::Local => &self.local.rtc,
            _ => &self.parent.rtc,
        };
        let Some(codec) = from
            .codec_config()
            .find(|p| p.pt() == packet.header.payload_type)
            .map(|p| p.spec().codec)
        else {
            return;
        };
        let Some(leg) = self.leg(way) else {
            return;
        };
        let (ssrc, timestamp) = (packet.header.ssrc, packet.header.timestamp);
        let (target, rid, seq, timestamp) = if codec.is_audio() {
            let seq = leg.audio_seq.map(ssrc, packet.seq_no);
            let timestamp = leg.audio_time.map(ssrc, timestamp, now, OPUS_CLOCK_PER_MS);
            (leg.audio, None, seq, timestamp)
        } else {
            let Some(layer) = leg.layers.get_mut(usize::from(layer)) else {
                return;
            };
            layer.source = Some(mid);
            let seq = layer.seq.map(ssrc, packet.seq_no);
            let timestamp = layer.time.map(ssrc, timestamp, now, VIDEO_CLOCK_PER_MS);
            (leg.video, layer.rid, seq, timestamp)
        };
        let to = leg.to;
        let rtc = &mut self.endpoint(to).rtc;
        let Some(pt) = payload_type(rtc, target, codec) else {
            return;
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(target, rid) else {
            return;
        };
        stream.write_rtp(
            RtpWrite::new(pt, seq, timestamp, now, packet.payload.to_vec())
                .marker(packet.header.marker)
                .nackable(!codec.is_audio()),
        );
        match way {
            Way::Programme => {
                self.figures.packets += 1;
                self.figures.bytes += packet.payload.len() as u64;
            }
            Way::Up(_) => self.figures.floor_up_packets += 1,
            Way::FloorDown => self.figures.floor_down_packets += 1,
        }
    }

    fn ask_keyframe(&mut self, now: Instant, way: Way) {
        let Some(leg) = self.leg(way) else {
            return;
        };
        let from = leg.from;
        let due: Vec<(usize, Mid)> = leg
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.keyframe_due(now).map(|mid| (i, mid)))
            .collect();
        for (index, mid) in due {
            let mut api = self.endpoint(from).rtc.direct_api();
            let Some(stream) = api.stream_rx_by_mid(mid, None) else {
                continue;
            };
            stream.request_keyframe(KeyframeRequestKind::Pli);
            if let Some(layer) = self.leg(way).and_then(|leg| leg.layers.get_mut(index)) {
                layer.keyframe_wanted = false;
                layer.last_keyframe_request = Some(now);
            }
        }
    }

    /// Closes the endpoints.
    pub fn close(&mut self) {
        for side in Side::ALL {
            self.endpoint(side).rtc.disconnect();
        }
    }
}

/// The payload type `rtc` negotiated for `codec` on `mid`.
fn payload_type(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config()
        .find(|p| p.spec().codec == codec && (remote.is_empty() || remote.contains(&p.pt())))
        .map(|p| p.pt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(now: Instant) -> Bridge {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (bridge, offers) = Bridge::new(
            now,
            at(1),
            at(2),
            at(3),
            IpAddr::from([127, 0, 0, 1]),
            "relay-7",
        )
        .expect("a bridge");
        assert_eq!(
            offers.parent.matches("a=sendonly").count(),
            2 * UP_SLOTS,
            "a pair of tracks per upward slot"
        );
        bridge
    }

    /// This hub's workers send the relay the tracks of `sites` (participant `p<code>`).
    fn local_tracks(bridge: &mut Bridge, now: Instant, sites: &[u32]) {
        bridge.local_streams = sites
            .iter()
            .map(|code| (Mid::from(code.to_string().as_str()), format!("p{code}")))
            .collect();
        bridge.release_slots(now);
    }

    fn sites_up(bridge: &mut Bridge) -> Option<std::collections::BTreeSet<String>> {
        let streams = bridge.take_upward()?;
        Some(streams.into_iter().map(|s| s.site).collect())
    }

    #[test]
    fn each_site_going_up_takes_a_slot_freed_when_its_hub_no_longer_sends_it() {
        let t0 = Instant::now();
        let mut bridge = bridge(t0);
        assert_eq!(
            sites_up(&mut bridge),
            Some(Default::default()),
            "none at first"
        );
        let sites: Vec<u32> = (1..=40).collect();
        for code in &sites {
            bridge.set_local_site(&format!("p{code}"), Some(&code.to_string()));
        }
        local_tracks(&mut bridge, t0, &sites);
        let slots: Vec<Option<usize>> = sites
            .iter()
            .map(|code| bridge.slot_for(t0, &code.to_string()))
            .collect();
        assert_eq!(slots.iter().flatten().count(), UP_SLOTS, "32 at once");
        assert_eq!(bridge.slot_for(t0, "1"), slots[0], "a site keeps its slot");
        assert_eq!(bridge.slot_for(t0, "40"), None, "the 33rd waits");
        assert_eq!(bridge.figures.up_sites, UP_SLOTS);
        let up = sites_up(&mut bridge).expect("the parent is told");
        assert_eq!(up.len(), UP_SLOTS);
        assert_eq!(sites_up(&mut bridge), None, "told once");

        // The floor goes to the 40th: it takes a slot all the same.
        bridge.set_floor_site(Some("40"));
        assert!(bridge.slot_for(t0, "40").is_some());
        let up = sites_up(&mut bridge).expect("the parent is told");
        assert!(up.contains("40"), "{up:?}");
        assert_eq!(up.len(), UP_SLOTS);

        // The first site gave its slot to the floor and waits for another.
        assert!(!up.contains("1"), "{up:?}");
        assert_eq!(bridge.slot_for(t0, "1"), None);

        // Site 2 is no longer sent here (muted, its tile off screen, or gone): its slot is
        // freed, and rests before another site takes it.
        let others: Vec<u32> = sites.iter().copied().filter(|c| *c != 2).collect();
        local_tracks(&mut bridge, t0, &others);
        let up = sites_up(&mut bridge).expect("the parent is told");
        assert!(!up.contains("2"), "{up:?}");
        assert_eq!(bridge.figures.up_sites, UP_SLOTS - 1);
        let resting = t0 + Duration::from_millis(500);
        assert_eq!(bridge.slot_for(resting, "39"), None, "the freed slot rests");
        assert!(
            bridge.slot_for(t0 + SLOT_REST, "39").is_some(),
            "then 39 takes it"
        );
        assert!(sites_up(&mut bridge).expect("told").contains("39"));
    }

    #[test]
    fn timestamps_stay_continuous_when_the_parent_stream_changes() {
        let t0 = Instant::now();
        let mut retime = Retime::default();
        let (studio, encoder) = (Ssrc::from(1), Ssrc::from(2));
        assert_eq!(retime.map(studio, 1_000, t0, 90), 1_000);
        let t1 = t0 + Duration::from_millis(40);
        assert_eq!(retime.map(studio, 1_000 + 3_600, t1, 90), 4_600);
        assert_eq!(
            retime.map(studio, 1_000, t1, 90),
            1_000,
            "a late packet keeps its time"
        );
        // The chair switched to the encoder, whose clock started elsewhere: 20 ms later.
        let t2 = t1 + Duration::from_millis(20);
        let encoder_clock = u32::MAX - 1_000;
        assert_eq!(retime.map(encoder, encoder_clock, t2, 90), 4_600 + 1_800);
        assert_eq!(
            retime.map(encoder, encoder_clock.wrapping_add(3_000), t2, 90),
            4_600 + 1_800 + 3_000,
            "the encoder's clock goes on from there, across its wrap"
        );
    }

    #[test]
    fn sequence_numbers_stay_continuous_when_the_parent_stream_changes() {
        let mut renumber = Renumber::default();
        let (a, b) = (Ssrc::from(1), Ssrc::from(2));
        assert_eq!(*renumber.map(a, 500.into()), 500);
        assert_eq!(*renumber.map(a, 501.into()), 501);
        assert_eq!(
            *renumber.map(a, 503.into()),
            503,
            "a gap stays a gap (a loss)"
        );
        // The studio joined again: a new stream starting anywhere goes on after 503.
        assert_eq!(*renumber.map(b, 90.into()), 504);
        assert_eq!(*renumber.map(b, 91.into()), 505);
        assert_eq!(
            *renumber.map(b, 90.into()),
            504,
            "a late packet keeps its place"
        );
    }
}
