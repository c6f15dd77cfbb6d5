//! One WebRTC connection to a participant, with the hub as offerer for every renegotiation; or,
//! for a receive-only client that cannot renegotiate (a WHEP player), with the m-lines its
//! offer asked to receive on as the only ones the hub sends on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid};
use str0m::net::Protocol;
use str0m::rtp::{SeqNo, Ssrc};

use crate::SfuError;
use crate::allocate::EstimateTrend;
use crate::ids::{ConsumerId, PeerId, ProducerId, RouterId};
use crate::quality::{QualityMeter, Transport};
use crate::rewrite::LineClocks;
use crate::router::MediaPacket;
use crate::sdp;

/// A participant's connection. States: awaiting its first offer's answer → ready (the hub may
/// offer) → connected (ICE and DTLS up) → closed (dropped by the worker).
#[derive(Debug)]
pub(crate) struct Peer {
    pub id: PeerId,
    pub router: RouterId,
    pub rtc: Rtc,
    pub ufrag: String,
    /// When ICE and DTLS completed; `None` until then.
    pub connected_at: Option<Instant>,
    /// Remote addresses this peer was seen at, to clean the worker's address map.
    pub addresses: Vec<(Protocol, SocketAddr)>,
    /// What its media goes over, once ICE has chosen.
    pub transport: Option<Transport>,
    /// The instant its `Rtc` last asked to be woken at.
    pub next_timeout: Option<Instant>,
    /// Packets were written to it that its `Rtc` has not been driven to send yet.
    pub touched: bool,
    /// It handed out datagrams since the driver last said a batch was sent
    /// ([`crate::Worker::datagrams_sent`]); listed in the core's `unsent`.
    pub unsent: bool,
    /// Its handling panicked ([`Peer::fail`]): its `Rtc` is asked nothing more, and the
    /// worker drops the peer.
    pub failed: bool,
    /// The next contained call or stretch of work on this peer panics, as a fault of str0m
    /// would (the test kit's [`crate::Worker::fail_next_call`]).
    #[cfg(feature = "testkit")]
    pub fail_next: bool,
    pub producers_by_mid: HashMap<Mid, ProducerId>,
    /// SSRC → producer and simulcast layer.
    pub producers_by_ssrc: HashMap<Ssrc, (ProducerId, u8)>,
    /// Simulcast rids per published m-line, lowest first.
    pub layers: HashMap<Mid, Vec<Rid>>,
    /// The latest bandwidth estimate toward this peer (bits per second).
    pub estimate: Option<u64>,
    /// Which way that estimate has been going.
    pub trend: EstimateTrend,
    /// Whether its link carries none of the video it should receive.
    pub audio_only: bool,
    /// Whether that is the worker's load, not its link.
    pub shed: bool,
    pub consumers_by_mid: HashMap<Mid, ConsumerId>,
    /// Payload type → codec, for packets this peer publishes (`Codec::Red` for RFC 2198
    /// redundant Opus).
    pub codecs: HashMap<Pt, Codec>,
    /// The RED payload type this peer negotiated and the Opus payload type it wraps.
    red: Option<(Pt, Pt)>,
    /// Audio m-lines whose last SDP from the client listed RED. The codec configuration is
    /// shared by all m-lines and keeps the hub's RED when the client's first offer had no
    /// audio, so it cannot tell whether the client accepted RED on an m-line the hub added.
    red_mids: HashSet<Mid>,
    /// Per outgoing audio m-line, the previous Opus frame sent (publisher's sequence number,
    /// timestamp, payload): repeated in the next packet when the hub adds redundancy itself.
    previous_audio: HashMap<Mid, (SeqNo, u32, Arc<[u8]>)>,
    /// Its link quality, from str0m's periodic statistics.
    pub quality: QualityMeter,
    negotiation: Negotiation,
    /// Every m-line the hub offered this peer, by mid: its kind, and the stream and track ids
    /// it announces (those of its latest consumer).
    hub_lines: HashMap<Mid, (MediaKind, (String, String))>,
    /// Hub m-lines left inactive by an answered offer, oldest first: a new consumer of the
    /// same kind takes one before the hub adds an m-line, so the SDP does not grow with every
    /// track that ever came and went.
    idle: Vec<Mid>,
    /// A fixed peer's free m-lines' numbering and clocks, left by their last consumer for the
    /// next one.
    line_clocks: HashMap<Mid, LineClocks>,
    /// The client's offer fixed the m-lines once and for all (WHEP): the hub sends on the
    /// m-lines it asked to receive on, a consumer takes a free one of its kind at once (or
    /// none is free and it waits), and the hub never offers.
    fixed: bool,
}

/// The hub's offer awaiting the client's answer, with the consumers it adds and the m-lines it
/// stops.
type PendingOffer = (SdpPendingOffer, Vec<(ConsumerId, Mid)>, Vec<Mid>);

#[derive(Debug, Default)]
struct Negotiation {
    pending: Option<PendingOffer>,
    /// Changes to offer once the pending offer (if any) is answered.
    queued_adds: Vec<QueuedConsumer>,
    queued_removes: Vec<Mid>,
}

#[derive(Debug)]
struct QueuedConsumer {
    consumer: ConsumerId,
    kind: MediaKind,
    stream_id: String,
    track_id: String,
}

impl Peer {
    /// Runs `f` on the peer (a call into its `Rtc`, or a whole stretch of work on it: the
    /// worker's polling of its `Rtc`, a batch's writes to it), unless it failed before. A panic
    /// inside (str0m's, on something the peer sent) fails this peer ([`Peer::fail`]) instead
    /// of ending the worker and every meeting on it. `None` when it failed, now or before.
    pub fn contain<T>(&mut self, f: impl FnOnce(&mut Peer) -> T) -> Option<T> {
        if self.failed {
            return None;
        }
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.injected_fault();
            f(self)
        }));
        match called {
            Ok(value) => Some(value),
            Err(panic) => {
                self.fail(panic.as_ref());
                None
            }
        }
    }

    /// Marks the peer failed after a panic in its handling, and says so in the log: the worker
    /// then drops it as it drops a peer whose `Rtc` returned an error, and nothing asks its
    /// `Rtc` anything again.
    fn fail(&mut self, panic: &(dyn std::any::Any + Send)) {
        self.failed = true;
        let message = panic_message(panic).unwrap_or_default();
        tracing::error!(
            peer = %self.id,
            "the connection failed inside its handling ({message}): the peer is closed"
        );
    }

    /// Panics where the test kit asked for a fault: at the start of what [`Peer::contain`]
    /// runs. Nothing without the test kit.
    fn injected_fault(&mut self) {
        #[cfg(feature = "testkit")]
        if std::mem::take(&mut self.fail_next) {
            panic!("a fault injected by the test kit");
        }
    }

    pub fn new(id: PeerId, router: RouterId, rtc: Rtc) -> Peer {
        let mut rtc = rtc;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Peer {
            id,
            router,
            rtc,
            ufrag,
            connected_at: None,
            addresses: Vec::new(),
            transport: None,
            next_timeout: None,
            touched: false,
            unsent: false,
            failed: false,
            #[cfg(feature = "testkit")]
            fail_next: false,
            producers_by_mid: HashMap::new(),
            producers_by_ssrc: HashMap::new(),
            layers: HashMap::new(),
            estimate: None,
            trend: EstimateTrend::default(),
            audio_only: false,
            shed: false,
            consumers_by_mid: HashMap::new(),
            codecs: HashMap::new(),
            red: None,
            red_mids: HashSet::new(),
            previous_audio: HashMap::new(),
            quality: QualityMeter::default(),
            negotiation: Negotiation::default(),
            hub_lines: HashMap::new(),
            idle: Vec::new(),
            line_clocks: HashMap::new(),
            fixed: false,
        }
    }

    /// Whether its m-lines are its client's (a WHEP player's), never offered by the hub.
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// A peer whose m-lines are those of its client's first offer ([`Peer::fixed`]).
    pub fn new_fixed(id: PeerId, router: RouterId, rtc: Rtc) -> Peer {
        Peer {
            fixed: true,
            ..Peer::new(id, router, rtc)
        }
    }

    /// Accepts a client offer and returns the hub's answer. Refused while a hub offer awaits
    /// its answer.
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, SfuError> {
        if self.negotiation.pending.is_some() {
            return Err(SfuError::NegotiationInProgress);
        }
        // A client publishes on the m-lines it offers; the hub sends on m-lines it offers
        // itself. A `sendrecv` line is taken as `sendonly`, so the hub never sends (padding
        // probes included) on a client's own track, and a `recvonly` one as `inactive`.
        // A fixed peer's `recvonly` lines are the hub's to send on.
        let text = sdp::client_offer(offer, |mid| self.fixed || self.hub_lines.contains_key(&mid));
        let offer =
            SdpOffer::from_sdp_string(&text).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        self.refresh_codecs();
        self.note_red(&text);
        let answer = answer.to_sdp_string();
        if self.fixed {
            for (mid, kind, msid) in sdp::sending_lines(&answer) {
                if let std::collections::hash_map::Entry::Vacant(line) = self.hub_lines.entry(mid) {
                    line.insert((kind, msid));
                    self.idle.push(mid);
                }
            }
        }
        Ok(self.outgoing(&answer))
    }

    /// Accepts the client's answer to the pending hub offer; returns the consumers now open.
    pub fn accept_answer(&mut self, text: &str) -> Result<Vec<(ConsumerId, Mid)>, SfuError> {
        let Some((pending, added, removed)) = self.negotiation.pending.take() else {
            return Err(SfuError::NoPendingOffer);
        };
        let answer = match SdpAnswer::from_sdp_string(text) {
            Ok(answer) => answer,
            Err(e) => {
                self.negotiation.pending = Some((pending, added, removed));
                return Err(SfuError::InvalidSdp(e.to_string()));
            }
        };
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        self.note_red(text);
        for mid in removed {
            self.consumers_by_mid.remove(&mid);
            self.previous_audio.remove(&mid);
            if !self.idle.contains(&mid) {
                self.idle.push(mid);
            }
        }
        for (consumer, mid) in &added {
            self.consumers_by_mid.insert(*mid, *consumer);
            self.previous_audio.remove(mid);
        }
        Ok(added)
    }

    /// Queues a consumer for the next hub offer. A fixed peer's consumer takes a free m-line
    /// of its kind at once instead: its mid is returned (none when none is free).
    pub fn queue_consumer(
        &mut self,
        consumer: ConsumerId,
        kind: MediaKind,
        stream_id: String,
        track_id: String,
    ) -> Option<Mid> {
        if self.fixed {
            let slot = self
                .idle
                .iter()
                .position(|mid| self.hub_lines.get(mid).is_some_and(|(k, _)| *k == kind))?;
            let mid = self.idle.remove(slot);
            self.consumers_by_mid.insert(mid, consumer);
            self.previous_audio.remove(&mid);
            return Some(mid);
        }
        self.negotiation.queued_adds.push(QueuedConsumer {
            consumer,
            kind,
            stream_id,
            track_id,
        });
        None
    }

    /// The numbering and clocks fixed m-line `mid`'s previous consumer left, if any.
    pub fn take_line_clocks(&mut self, mid: Mid) -> Option<LineClocks> {
        self.line_clocks.remove(&mid)
    }

    /// Drops a consumer: from the queue if not yet offered, else by stopping its m-line (a
    /// fixed peer's m-line is freed for the next consumer of its kind, which goes on from the
    /// numbering and `clocks` this one leaves).
    pub fn queue_consumer_removal(
        &mut self,
        consumer: ConsumerId,
        mid: Option<Mid>,
        clocks: Option<LineClocks>,
    ) {
        if self.fixed {
            if let Some(mid) = mid
                && self.consumers_by_mid.get(&mid) == Some(&consumer)
            {
                self.consumers_by_mid.remove(&mid);
                self.previous_audio.remove(&mid);
                if let Some(clocks) = clocks {
                    self.line_clocks.insert(mid, clocks);
                }
                self.idle.push(mid);
            }
            return;
        }
        self.negotiation
            .queued_adds
            .retain(|q| q.consumer != consumer);
        if let Some(mid) = mid {
            self.negotiation.queued_removes.push(mid);
        }
    }

    /// Makes the next hub offer when changes are queued and no offer is pending. Returns the
    /// SDP and the mids given to newly offered consumers.
    ///
    /// A removed consumer's m-line is set `inactive`, not stopped: str0m cannot offer a
    /// stopped m-line's slot to a new mid (RFC 8829 recycling), but it can make an inactive
    /// one send again. A new consumer takes an idle m-line of its kind, under a new SSRC and
    /// with its own stream and track ids; only when none is idle does the SDP gain an m-line.
    pub fn renegotiate(&mut self) -> Option<(String, Vec<(ConsumerId, Mid)>)> {
        let n = &mut self.negotiation;
        if self.fixed
            || n.pending.is_some()
            || (n.queued_adds.is_empty() && n.queued_removes.is_empty())
        {
            return None;
        }
        let adds = std::mem::take(&mut n.queued_adds);
        let removes = std::mem::take(&mut n.queued_removes);
        let slots: Vec<(QueuedConsumer, Option<Mid>)> = adds
            .into_iter()
            .map(|q| {
                let kind = q.kind;
                let slot = self
                    .idle
                    .iter()
                    .position(|mid| self.hub_lines.get(mid).is_some_and(|(k, _)| *k == kind))
                    .map(|i| self.idle.remove(i));
                (q, slot)
            })
            .collect();
        {
            // The new track gets its own SSRC: a receiver must not take it for the old one.
            let mut direct = self.rtc.direct_api();
            for mid in slots.iter().filter_map(|(_, slot)| *slot) {
                let Some(has_rtx) = direct
                    .stream_tx_by_mid(mid, None)
                    .map(|s| s.rtx().is_some())
                else {
                    continue;
                };
                let ssrc = direct.new_ssrc();
                let rtx = has_rtx.then(|| direct.new_ssrc());
                direct.reset_stream_tx(mid, None, ssrc, rtx);
            }
        }
        let mut api = self.rtc.sdp_api();
        let mut added = Vec::with_capacity(slots.len());
        let mut lines = Vec::with_capacity(slots.len());
        for (q, slot) in slots {
            let mid = match slot {
                Some(mid) => {
                    api.set_direction(mid, Direction::SendOnly);
                    mid
                }
                None => api.add_media(
                    q.kind,
                    Direction::SendOnly,
                    Some(q.stream_id.clone()),
                    Some(q.track_id.clone()),
                    None,
                ),
            };
            added.push((q.consumer, mid));
            lines.push((mid, (q.kind, (q.stream_id, q.track_id))));
        }
        for mid in &removes {
            api.set_direction(*mid, Direction::Inactive);
        }
        let applied = api.apply();
        self.hub_lines.extend(lines);
        let Some((offer, pending)) = applied else {
            // Nothing to negotiate: the m-lines to remove were inactive already.
            for mid in removes {
                self.consumers_by_mid.remove(&mid);
                self.previous_audio.remove(&mid);
                if !self.idle.contains(&mid) {
                    self.idle.push(mid);
                }
            }
            return None;
        };
        self.negotiation.pending = Some((pending, added.clone(), removes));
        Some((self.outgoing(&offer.to_sdp_string()), added))
    }

    /// An SDP of the hub as this peer gets it ([`sdp::hub_sdp`]).
    fn outgoing(&self, sdp: &str) -> String {
        sdp::hub_sdp(sdp, |mid| self.hub_lines.get(&mid).map(|(_, msid)| msid))
    }

    /// The producer and simulcast layer a received packet belongs to, by SSRC (cached) or by
    /// its stream's m-line and rid.
    pub fn producer_for(&mut self, ssrc: Ssrc) -> Option<(ProducerId, u8)> {
        if let Some(p) = self.producers_by_ssrc.get(&ssrc) {
            return Some(*p);
        }
        let (mid, rid) = {
            let mut direct = self.rtc.direct_api();
            let stream = direct.stream_rx(&ssrc)?;
            (stream.mid(), stream.rid())
        };
        let producer = *self.producers_by_mid.get(&mid)?;
        let layer = match (rid, self.layers.get(&mid)) {
            (Some(rid), Some(rids)) => rids.iter().position(|r| *r == rid)?,
            _ => 0,
        };
        let found = (producer, u8::try_from(layer).ok()?);
        self.producers_by_ssrc.insert(ssrc, found);
        Some(found)
    }

    /// The codec of a packet this peer published. A RED packet counts only when every block
    /// in it is the Opus it negotiated RED for; anything else is dropped.
    pub fn codec_of(&self, pt: Pt, payload: &[u8]) -> Option<Codec> {
        let codec = *self.codecs.get(&pt)?;
        if codec == Codec::Red {
            let (_, opus) = self.red?;
            return crate::red::carries_only(payload, *opus).then_some(codec);
        }
        Some(codec)
    }

    /// The payload type this peer accepted for `codec` on its m-line `mid`. For `Codec::Red`
    /// without RED accepted there, the Opus payload type: the peer then gets the primary block
    /// alone.
    ///
    /// The codec configuration alone is not enough: a client whose first offer had no audio
    /// m-line leaves the hub's own audio payload types (RED among them) in it, while the
    /// answer for an m-line the hub added later accepts only what the client supports.
    pub fn payload_type_for(&self, codec: Codec, mid: Mid) -> Option<Pt> {
        if codec == Codec::Red {
            if let Some(red) = self.red_on(mid) {
                return Some(red);
            }
            return self.payload_type_for(Codec::Opus, mid);
        }
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec && self.accepts(mid, p.pt()))
            .map(|p| p.pt())
    }

    /// Whether the m-line `mid` accepted payload type `pt` (any configured type while the
    /// m-line has no negotiated list).
    fn accepts(&self, mid: Mid, pt: Pt) -> bool {
        self.rtc
            .media(mid)
            .map(|m| m.remote_pts())
            .is_none_or(|pts| pts.is_empty() || pts.contains(&pt))
    }

    /// The RED payload type, when this peer negotiated RED and accepted it on `mid`.
    fn red_on(&self, mid: Mid) -> Option<Pt> {
        self.red
            .map(|(red, _)| red)
            .filter(|_| self.red_mids.contains(&mid))
    }

    /// Records which audio m-lines of a client's offer or answer list RED.
    fn note_red(&mut self, sdp: &str) {
        for (mid, red) in red_by_audio_mid(sdp) {
            if red {
                self.red_mids.insert(mid);
            } else {
                self.red_mids.remove(&mid);
            }
        }
    }

    /// An audio packet as this peer receives it on its m-line `mid`, given the payload type
    /// `pt` from [`Peer::payload_type_for`]: the payload type and payload to write, `None` for
    /// a malformed RED payload.
    ///
    /// RED from the publisher goes on as RED (blocks labelled with this peer's Opus payload
    /// type) or as its primary frame alone. Plain Opus to a peer that negotiated RED is wrapped
    /// in RED with the previous frame as redundancy, while its link has room for it.
    pub fn audio_for(&mut self, mid: Mid, packet: &MediaPacket, pt: Pt) -> Option<(Pt, Arc<[u8]>)> {
        if packet.codec == Codec::Red {
            let payload = match self.red {
                Some((red, opus)) if red == pt => {
                    crate::red::with_inner_type(&packet.payload, *opus)
                }
                _ => crate::red::primary(&packet.payload),
            }?;
            return Some((pt, payload));
        }
        let (Some((_, opus)), Some(red)) = (self.red, self.red_on(mid)) else {
            return Some((pt, packet.payload.clone()));
        };
        if pt != opus || self.estimate.is_none_or(|e| e < RED_MIN_ESTIMATE_BPS) {
            self.previous_audio.remove(&mid);
            return Some((pt, packet.payload.clone()));
        }
        let previous = self
            .previous_audio
            .insert(
                mid,
                (packet.seq_no, packet.timestamp, packet.payload.clone()),
            )
            .filter(|(seq, _, _)| **seq + 1 == *packet.seq_no)
            .map(|(_, timestamp, payload)| (packet.timestamp.wrapping_sub(timestamp), payload));
        let previous = previous
            .as_ref()
            .map(|(offset, payload)| (*offset, &payload[..]));
        Some((red, crate::red::wrap(*opus, previous, &packet.payload)))
    }

    fn refresh_codecs(&mut self) {
        let params = self.rtc.codec_config().params();
        self.red = params
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .and_then(|p| p.red().map(|red| (red, p.pt())));
        self.codecs = params
            .iter()
            .map(|p| (p.pt(), p.spec().codec))
            .chain(self.red.map(|(red, _)| (red, Codec::Red)))
            .collect();
    }
}

/// Below this bandwidth estimate the hub adds no redundancy of its own: doubling the audio
/// would cost more than it saves on a link that cannot carry it.
const RED_MIN_ESTIMATE_BPS: u64 = 150_000;

/// Each audio m-line of an SDP (by its mid), and whether it lists RFC 2198 RED
/// (`a=rtpmap:<pt> red/...`).
fn red_by_audio_mid(sdp: &str) -> Vec<(Mid, bool)> {
    let mut found = Vec::new();
    // The audio section being read: its mid once seen, and whether it lists RED.
    let mut audio: Option<(Option<Mid>, bool)> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            if let Some((Some(mid), red)) = audio.take() {
                found.push((mid, red));
            }
            audio = media.starts_with("audio ").then_some((None, false));
        } else if let Some((mid, red)) = audio.as_mut() {
            if let Some(value) = line.strip_prefix("a=mid:") {
                *mid = Some(Mid::from(value));
            } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
                let encoding = map.split_once(' ').map_or("", |(_, e)| e);
                *red |= encoding
                    .get(..4)
                    .is_some_and(|e| e.eq_ignore_ascii_case("red/"));
            }
        }
    }
    if let Some((Some(mid), red)) = audio {
        found.push((mid, red));
    }
    found
}

/// What a panic said, when it was a string (as `panic!` makes it).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> Option<String> {
    panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_is_read_per_audio_m_line() {
        let sdp = "v=0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n\
                   a=mid:0\r\n\
                   a=rtpmap:111 opus/48000/2\r\n\
                   a=rtpmap:63 red/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
                   a=mid:1\r\n\
                   a=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 RED/90000\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=rtpmap:111 opus/48000/2\r\n\
                   a=mid:2\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            red_by_audio_mid(sdp),
            vec![(Mid::from("0"), true), (Mid::from("2"), false)],
            "video sections and an audio section without a mid are skipped"
        );
    }
}
