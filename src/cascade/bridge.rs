//! The media half of a relay: two WebRTC endpoints (str0m in RTP mode), one facing the
//! parent hub, where this hub receives the national studio's programme like a site would, and
//! one facing this hub's own media workers, where it publishes that programme as the local
//! meeting's studio. RTP packets cross from one to the other as they are (no decoding), with
//! their sequence numbers kept continuous when the parent's stream changes (a studio that
//! joins again); keyframe requests go the other way, merged. Sans-IO: datagrams and the time
//! come in, datagrams and signalling needs go out; [`super::relay`] drives it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use diemcau_sfu::str0m;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Keyframe requests from this hub's sites reach the parent at most this often: the parent
/// merges them again with every other province's.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(500);

/// What the relay received from the parent, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RelayFigures {
    /// RTP packets of the programme published here.
    pub packets: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Loss of the programme's video on the link, as this hub last reported it (0–1).
    pub loss: Option<f32>,
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Faces the parent hub: receives.
    Parent,
    /// Faces this hub's media workers: publishes.
    Local,
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

/// One endpoint: its `Rtc` and the candidate address its socket has.
struct Endpoint {
    rtc: Rtc,
    local: SocketAddr,
}

impl Endpoint {
    fn new(now: Instant, local: SocketAddr, stats: bool) -> Result<Endpoint, BridgeError> {
        let mut rtc = Rtc::builder()
            .set_stats_interval(stats.then_some(Duration::from_secs(2)))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| BridgeError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        Ok(Endpoint { rtc, local })
    }
}

/// The two endpoints and what crosses between them. States: offered (each side's first offer
/// awaits its answer) → connected → closed (either `Rtc` failed or was closed).
pub struct Bridge {
    parent: Endpoint,
    local: Endpoint,
    parent_pending: Option<SdpPendingOffer>,
    local_pending: Option<SdpPendingOffer>,
    local_audio: Mid,
    local_video: Mid,
    /// The parent's video m-line the programme arrives on (for keyframe requests).
    parent_video: Option<Mid>,
    audio_seq: Renumber,
    video_seq: Renumber,
    last_keyframe_request: Option<Instant>,
    keyframe_wanted: bool,
    out: VecDeque<Datagram>,
    pub figures: RelayFigures,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("figures", &self.figures)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// A bridge whose parent side sends from `parent_addr` and local side from `local_addr`,
    /// with each side's first offer: (parent offer, local offer).
    pub fn new(
        now: Instant,
        parent_addr: SocketAddr,
        local_addr: SocketAddr,
        stream: &str,
    ) -> Result<(Bridge, String, String), BridgeError> {
        let mut parent = Endpoint::new(now, parent_addr, true)?;
        let mut local = Endpoint::new(now, local_addr, false)?;
        // The parent side publishes nothing: one receive-only section, as a hall without a
        // camera offers; the parent then offers the programme's tracks.
        let mut api = parent.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (parent_offer, parent_pending) = api
            .apply()
            .ok_or_else(|| BridgeError::Sdp("no parent offer".to_owned()))?;
        let mut api = local.rtc.sdp_api();
        let local_audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.to_owned()),
            Some(format!("{stream}-audio")),
            None,
        );
        let local_video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream.to_owned()),
            Some(format!("{stream}-video")),
            None,
        );
        let (local_offer, local_pending) = api
            .apply()
            .ok_or_else(|| BridgeError::Sdp("no local offer".to_owned()))?;
        let bridge = Bridge {
            parent,
            local,
            parent_pending: Some(parent_pending),
            local_pending: Some(local_pending),
            local_audio,
            local_video,
            parent_video: None,
            audio_seq: Renumber::default(),
            video_seq: Renumber::default(),
            last_keyframe_request: None,
            keyframe_wanted: false,
            out: VecDeque::new(),
            figures: RelayFigures::default(),
        };
        Ok((
            bridge,
            parent_offer.to_sdp_string(),
            local_offer.to_sdp_string(),
        ))
    }

    fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::Parent => &mut self.parent,
            Side::Local => &mut self.local,
        }
    }

    /// The hub's answer to our first offer on `side`.
    pub fn accept_answer(&mut self, side: Side, sdp: &str) -> Result<(), BridgeError> {
        let pending = match side {
            Side::Parent => self.parent_pending.take(),
            Side::Local => self.local_pending.take(),
        }
        .ok_or_else(|| BridgeError::Sdp("no offer of ours awaits an answer".to_owned()))?;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| BridgeError::Sdp(e.to_string()))?;
        self.endpoint(side)
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| BridgeError::Sdp(e.to_string()))
    }

    /// A hub's offer on `side` (tracks come or go): our answer.
    pub fn accept_offer(&mut self, side: Side, sdp: &str) -> Result<String, BridgeError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| BridgeError::Sdp(e.to_string()))?;
        let answer = self
            .endpoint(side)
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| BridgeError::Sdp(e.to_string()))?;
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

    /// Runs both endpoints up to `now`: what they send is queued ([`Bridge::poll_datagram`]),
    /// the programme's packets cross. Returns when to be called again.
    pub fn drive(&mut self, now: Instant) -> Result<Instant, BridgeError> {
        let mut next = now + Duration::from_millis(100);
        for side in [Side::Parent, Side::Local] {
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
        self.ask_keyframe(now);
        Ok(next)
    }

    /// The next datagram to send.
    pub fn poll_datagram(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn handle(&mut self, now: Instant, side: Side, event: Event) {
        match (side, event) {
            (Side::Parent, Event::MediaAdded(added)) if added.kind == MediaKind::Video => {
                self.parent_video = Some(added.mid);
            }
            (Side::Parent, Event::RtpPacket(packet)) => self.forward(now, packet),
            (Side::Parent, Event::MediaIngressStats(stats))
                if Some(stats.mid) == self.parent_video =>
            {
                self.figures.loss = stats.loss;
            }
            (Side::Local, Event::KeyframeRequest(request)) if request.mid == self.local_video => {
                self.keyframe_wanted = true;
            }
            _ => {}
        }
    }

    /// One packet of the programme, published locally as it came.
    fn forward(&mut self, now: Instant, packet: str0m::rtp::RtpPacket) {
        let Some(codec) = self
            .parent
            .rtc
            .codec_config()
            .find(|p| p.pt() == packet.header.payload_type)
            .map(|p| p.spec().codec)
        else {
            return;
        };
        let (mid, seq) = if codec.is_audio() {
            let seq = self.audio_seq.map(packet.header.ssrc, packet.seq_no);
            (self.local_audio, seq)
        } else {
            let seq = self.video_seq.map(packet.header.ssrc, packet.seq_no);
            (self.local_video, seq)
        };
        let Some(pt) = payload_type(&self.local.rtc, mid, codec) else {
            return;
        };
        let mut api = self.local.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        self.figures.packets += 1;
        self.figures.bytes += packet.payload.len() as u64;
        stream.write_rtp(
            RtpWrite::new(
                pt,
                seq,
                packet.header.timestamp,
                now,
                packet.payload.to_vec(),
            )
            .marker(packet.header.marker)
            .nackable(codec == Codec::Vp8),
        );
    }

    fn ask_keyframe(&mut self, now: Instant) {
        if !self.keyframe_wanted
            || self
                .last_keyframe_request
                .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_GAP)
        {
            return;
        }
        let Some(mid) = self.parent_video else {
            return;
        };
        let mut api = self.parent.rtc.direct_api();
        if let Some(stream) = api.stream_rx_by_mid(mid, None) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            self.keyframe_wanted = false;
            self.last_keyframe_request = Some(now);
        }
    }

    /// Closes both endpoints.
    pub fn close(&mut self) {
        self.parent.rtc.disconnect();
        self.local.rtc.disconnect();
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
