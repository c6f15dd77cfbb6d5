use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::{self};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::config_mod::RtcpReportIntervals;
use crate::format::CodecConfig;
use crate::format::PayloadParams;
use crate::media::{KeyframeRequest, MID_PROBE, Media, SenderFeedback};
use crate::pacer::QueueState;
use crate::packet::Vp8Patch;
use crate::rtp_::MidRid;
use crate::rtp_::Ssrc;
use crate::rtp_::{Bitrate, Pt};
use crate::rtp_::{DlrrItem, Rtcp, RtcpFb, RtpHeader};
use crate::rtp_::{MediaTime, SenderInfo};
use crate::rtp_::{Mid, Rid, SeqNo};
use crate::util::already_happened;

pub use self::receive::StreamRx;
pub use self::send::{RtpWrite, StreamTx, StreamTxQueueInfo};

mod receive;
pub(crate) mod register;
pub(crate) mod register_nack;
mod rtx_cache;
pub(crate) mod rtx_cache_buf;
mod send;
mod send_queue;
mod send_stats;

pub(crate) use send::{DEFAULT_RTX_CACHE_DURATION, DEFAULT_RTX_RATIO_CAP};

pub(crate) struct StreamTimeoutConfig<'a> {
    pub(crate) codecs: &'a CodecConfig,
    pub(crate) intervals: RtcpReportIntervals,
}

/// Packet of RTP data.
///
/// As emitted by [`Event::RtpPacket`][crate::Event::RtpPacket] when using rtp mode.
#[derive(PartialEq, Eq)]
pub struct RtpPacket {
    /// Extended sequence number to avoid having to deal with ROC.
    pub seq_no: SeqNo,

    /// Extended RTP time in the clock frequency of the codec. To avoid dealing with ROC.
    ///
    /// For a newly scheduled outgoing packet, the clock_rate is not correctly set until
    /// we do the poll_output().
    pub time: MediaTime,

    /// Parsed RTP header.
    pub header: RtpHeader,

    /// RTP payload. This contains no header.
    pub payload: Arc<[u8]>,

    vp8_patch: Option<Vp8Patch>,

    /// str0m server timestamp.
    ///
    /// This timestamp has nothing to do with RTP itself. For outgoing packets, this is when
    /// the packet was first handed over to str0m and enqueued in the outgoing send buffers.
    /// For incoming packets it's the time we received the network packet.
    pub timestamp: Instant,

    /// Sender information from the most recent Sender Report(SR).
    ///
    /// If no Sender Report(SR) has been received or this packet is being sent by str0m this is [`None`].
    pub last_sender_info: Option<SenderInfo>,

    /// Whether this packet can be nacked.
    ///
    /// This is often false for audio, but might also be false for discardable frames when
    /// using temporal encoding as in a VP8 simulcast situation.
    pub(crate) nackable: bool,
}

/// Event when an encoded stream is considered paused/unpaused.
///
/// This means the stream has not received any data for some time (default 1.5 seconds).
#[derive(Debug)]
pub struct StreamPaused {
    /// The main SSRC of the encoded stream that paused.
    pub ssrc: Ssrc,

    /// The mid the encoded stream belongs to.
    pub mid: Mid,

    /// The rid, if the encoded stream has a rid.
    pub rid: Option<Rid>,

    /// Whether the stream is paused or not.
    pub paused: bool,
}

/// 255 is out of range for a real PT, which is 7 bit.
const BLANK_PACKET_DEFAULT_PT: Pt = Pt::new_with_value(255);

impl RtpPacket {
    fn blank() -> RtpPacket {
        RtpPacket {
            seq_no: 0.into(),
            time: MediaTime::from_90khz(0),
            header: RtpHeader {
                payload_type: BLANK_PACKET_DEFAULT_PT,
                ..Default::default()
            },
            payload: Arc::default(), // This payload is never used. See RtpHeader::create_padding_packet
            vp8_patch: None,
            nackable: false,
            last_sender_info: None,
            timestamp: already_happened(),
        }
    }
}

/// Holder of incoming/outgoing encoded streams.
///
/// Each encoded stream is uniquely identified by an SSRC. The concept of mid/rid sits on the Media
/// level together with the ability to translate a mid/rid to an encoded stream.
#[derive(Debug)]
pub(crate) struct Streams {
    /// All incoming encoded streams.
    streams_rx: HashMap<Ssrc, StreamRx>,

    /// Each incoming SSRC is mapped to a Mid/Ssrc. The Ssrc in the value is for the case
    /// where the incoming SSRC is for an RTX and we want the "main".
    rx_lookup: HashMap<Ssrc, RxLookup>,

    /// Time we last cleaned up unused entries from source_keys_rx.
    last_rx_lookup_cleanup: Instant,

    /// All outgoing encoded streams.
    streams_tx: HashMap<Ssrc, Box<StreamTx>>,

    /// Where [`Streams::stream_tx_by_midrid`] found a stream by its exact mid and rid, once
    /// there are more than [`TX_INDEXED_ABOVE`] of them. An entry is checked against the
    /// stream before it is used, so one left by a removed or renumbered stream costs one walk.
    tx_by_midrid: HashMap<MidRid, Ssrc>,

    /// What [`Streams::send_queue_states`] keeps of the sending streams between its calls,
    /// once there are more than [`TX_INDEXED_ABOVE`] of them.
    tx_view: TxView,

    /// Whether a sending stream may hold a keyframe or bitrate request not yet polled: set
    /// as one comes in ([`Streams::handle_tx_rtcp`]), cleared by a walk that finds none. A
    /// session polls for them after each input, and walking every sending stream to find
    /// none was, for a session sending hundreds (a chair receiving every site), a cache
    /// line or two for each of them each time.
    pub(crate) tx_requests: bool,

    /// Non-media padding source. Its sequence counter survives media changes.
    probe_tx: StreamTx,
    probe_media: Option<(Mid, Pt)>,
    /// Kept between calls of [`Streams::send_queue_states`].
    queue_states: Vec<QueueState>,

    /// Local SSRC used before we got any StreamTx. This is used for RTCP if we don't
    /// have any reasonable value to use.
    default_ssrc_tx: Ssrc,

    /// We need to report all RR/SR for a Mid together in one RTCP. This is a dynamic
    /// list that we don't want to allocate on every handle_timeout.
    mids_to_report: Vec<Mid>,

    /// Whether periodic statistics reports are expected to be generated. This informs us on
    /// whether we should be holding onto data needed for those reports or not.
    enable_stats: bool,

    /// Threshold above which an outgoing RTP packet triggers an MTU warning. Used as a
    /// hard cap when selecting RTX cache entries for spurious padding.
    mtu_warn: usize,
    pause_threshold: Duration,
}

/// Above this many sending streams, [`Streams::stream_tx_by_midrid`] finds them through an
/// index, and [`Streams::send_queue_states`] keeps a view of them, instead of walking them: a
/// session sending hundreds (a chair watching every site) walked them several times for each
/// packet written to it.
const TX_INDEXED_ABOVE: usize = 32;

/// Delay between cleaning up the RxLookup.
const RX_LOOKUP_CLEANUP_INTERVAL: Duration = Duration::from_millis(10_000);

/// How old an RxLookup entry may be.
const RX_LOOKUP_EXPIRY: Duration = Duration::from_millis(30_000);

#[derive(Debug)]
struct RxLookup {
    mid: Mid,
    main: Ssrc,
    last_used: Instant,
}

impl Streams {
    pub(crate) fn new(enable_stats: bool, mtu_warn: usize, pause_threshold: Duration) -> Self {
        Self {
            streams_rx: Default::default(),
            rx_lookup: Default::default(),
            last_rx_lookup_cleanup: already_happened(),
            streams_tx: Default::default(),
            tx_by_midrid: Default::default(),
            tx_view: Default::default(),
            tx_requests: false,
            probe_tx: StreamTx::new_probe(mtu_warn),
            probe_media: None,
            queue_states: Vec::new(),
            default_ssrc_tx: 0.into(), // this will be changed
            mids_to_report: Vec::with_capacity(10),
            enable_stats,
            mtu_warn,
            pause_threshold,
        }
    }

    pub(crate) fn map_dynamic_by_rid(
        &mut self,
        ssrc: Ssrc,
        midrid: MidRid,
        media: &mut Media,
        payload: PayloadParams,
        is_main: bool,
    ) {
        // This is the point of the function.
        let rid = midrid
            .rid()
            .expect("map_dynamic_by_rid to be called with Rid");

        // Check if the mid/rid combo is not expected
        if !media.rids_rx().contains(rid) {
            trace!("Mid does not expect rid: {} {}", midrid.mid(), rid);
            return;
        }

        let maybe_stream = self.stream_rx_by_midrid(midrid);

        let (ssrc_main, rtx) = if is_main {
            let maybe_rtx = maybe_stream.and_then(|s| s.rtx());
            (ssrc, maybe_rtx)
        } else {
            // This can bail if the main SSRC has not been discovered yet.
            let Some(stream) = maybe_stream else {
                return;
            };
            (stream.ssrc(), Some(ssrc))
        };

        self.map_dynamic_finish(midrid, ssrc_main, rtx, media, payload);
    }

    pub(crate) fn map_dynamic_by_pt(
        &mut self,
        ssrc: Ssrc,
        midrid: MidRid,
        media: &mut Media,
        payload: PayloadParams,
        is_main: bool,
    ) {
        if media.rids_rx().is_specific() {
            trace!(
                "Media expects rid and RTP packet has only mid: {:?}",
                media.rids_rx()
            );
            return;
        }

        let maybe_stream = self.stream_rx_by_midrid(midrid);

        let (ssrc_main, rtx) = if is_main {
            let maybe_rtx = maybe_stream.and_then(|s| s.rtx());
            (ssrc, maybe_rtx)
        } else {
            // This can bail if the main SSRC has not been discovered yet.
            let Some(stream) = maybe_stream else {
                return;
            };
            // The main is the SSRC in the stream already. The incoming is RTX.
            let ssrc_main = stream.ssrc();
            (ssrc_main, Some(ssrc))
        };

        self.map_dynamic_finish(midrid, ssrc_main, rtx, media, payload);
    }

    #[allow(clippy::too_many_arguments)]
    fn map_dynamic_finish(
        &mut self,
        midrid: MidRid,
        ssrc_main: Ssrc,
        rtx: Option<Ssrc>,
        media: &mut Media,
        payload: PayloadParams,
    ) {
        let maybe_stream = self.stream_rx_by_midrid(midrid);

        if let Some(stream) = maybe_stream {
            let ssrc_from = stream.ssrc();
            let rtx_from = stream.rtx();

            // Handle changes in SSRC.
            if ssrc_from != ssrc_main {
                // We got a change in main SSRC for this stream.
                let did_change = self.change_stream_rx_ssrc(ssrc_from, ssrc_main);

                // When the SSRC changes, any payload type on this RID can start with
                // a new sequence number. Reset all depayloaders for the RID.
                if did_change {
                    media.reset_depayloaders_for_rid(midrid.rid());
                }
            }

            // Handle changes in RTX
            if let (Some(rtx_from), Some(rtx_to)) = (rtx_from, rtx) {
                if rtx_from != rtx_to {
                    self.change_stream_rx_rtx(rtx_from, rtx_to);
                }
            }
        }

        // If we don't have an RTX PT configured, we don't want NACK.
        let suppress_nack = payload.resend.is_none();

        // If stream already exists, this might only "fill in" the RTX.
        self.expect_stream_rx(ssrc_main, rtx, midrid, suppress_nack);
    }

    pub fn expect_stream_rx(
        &mut self,
        ssrc: Ssrc,
        rtx: Option<Ssrc>,
        midrid: MidRid,
        suppress_nack: bool,
    ) -> &mut StreamRx {
        let stream = self
            .streams_rx
            .entry(ssrc)
            .or_insert_with(|| StreamRx::new(ssrc, midrid, suppress_nack, self.pause_threshold));

        if let Some(rtx) = rtx {
            stream.maybe_reset_rtx(rtx);
        }

        stream
    }

    pub fn remove_stream_rx(&mut self, ssrc: Ssrc) -> bool {
        let stream = self.streams_rx.remove(&ssrc);
        let existed = stream.is_some();

        self.rx_lookup.retain(|k, l| *k != ssrc && l.main != ssrc);

        existed
    }

    pub fn declare_stream_tx(
        &mut self,
        ssrc: Ssrc,
        rtx: Option<Ssrc>,
        midrid: MidRid,
    ) -> &mut StreamTx {
        self.tx_view.invalidate();
        self.streams_tx
            .entry(ssrc)
            .or_insert_with(|| {
                Box::new(StreamTx::new(
                    ssrc,
                    rtx,
                    midrid,
                    self.enable_stats,
                    self.mtu_warn,
                ))
            })
    }

    pub fn remove_stream_tx(&mut self, ssrc: Ssrc) -> bool {
        self.tx_view.invalidate();
        self.streams_tx.remove(&ssrc).is_some()
    }

    pub(crate) fn local_sender_ssrcs(&self) -> Vec<Ssrc> {
        self.streams_tx
            .values()
            .flat_map(|s| std::iter::once(s.ssrc()).chain(s.rtx()))
            .collect()
    }

    pub(crate) fn reset_send_buffers(&mut self) {
        self.tx_view.invalidate();
        for stream in self.streams_tx.values_mut() {
            stream.reset_buffers();
        }
    }

    pub fn stream_rx(&mut self, ssrc: &Ssrc) -> Option<&mut StreamRx> {
        self.streams_rx.get_mut(ssrc)
    }

    pub fn stream_tx(&mut self, ssrc: &Ssrc) -> Option<&mut StreamTx> {
        self.tx_view.touch(*ssrc, self.streams_tx.len());
        self.streams_tx.get_mut(ssrc).map(|s| &mut **s)
    }

    /// Lookup the "main" SSRC and mid for a given SSRC(main or RTX).
    pub(crate) fn mid_ssrc_rx_by_ssrc_or_rtx(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
    ) -> Option<(Mid, Ssrc)> {
        // A direct hit on SSRC is to prefer. The idea is that mid/rid are only sent
        // for the initial x seconds and then we start using SSRC only instead.
        if let Some(r) = self.rx_lookup.get_mut(&ssrc) {
            r.last_used = now;
            return Some((r.mid, r.main));
        }

        let maybe_stream = self.stream_rx_by_ssrc_or_rtx(ssrc);
        if let Some(stream) = maybe_stream {
            let mid = stream.mid();
            let ssrc_main = stream.ssrc();

            self.rx_lookup.insert(
                ssrc,
                RxLookup {
                    mid,
                    main: ssrc_main,
                    last_used: now,
                },
            );

            return Some((mid, ssrc_main));
        }

        None
    }

    pub(crate) fn regular_feedback_at(&self, i: RtcpReportIntervals) -> Option<Instant> {
        let r = self
            .streams_rx
            .values()
            .filter(|s| !s.ssrc().is_probe())
            .map(|s| s.receiver_report_at(i));
        let s = self.streams_tx.values().map(|s| s.sender_report_at(i));
        r.chain(s).min()
    }

    pub(crate) fn paused_at(&self) -> Option<Instant> {
        self.streams_rx.values().find_map(|s| s.paused_at())
    }

    /// Whether a transmit stream holds media or resends not sent yet.
    pub(crate) fn has_unsent(&self) -> bool {
        self.streams_tx.values().any(|s| s.has_unsent())
    }

    pub(crate) fn send_stream(&self) -> Option<Instant> {
        if self.streams_tx.values().any(|s| s.need_timeout()) {
            Some(already_happened())
        } else {
            None
        }
    }

    pub(crate) fn pending_request(&self) -> Option<Instant> {
        if self.streams_rx.values().any(|s| s.has_pending_request()) {
            Some(already_happened())
        } else {
            None
        }
    }

    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        sender_ssrc: Ssrc,
        do_nack: bool,
        medias: &[Media],
        config: StreamTimeoutConfig<'_>,
        feedback: &mut VecDeque<Rtcp>,
    ) {
        let StreamTimeoutConfig { codecs, intervals } = config;

        self.mids_to_report.clear(); // Clear for checking StreamRx.
        for stream in self.streams_rx.values() {
            if stream.need_rr(now, intervals) {
                self.mids_to_report.push(stream.mid());
            }
        }

        for stream in self.streams_rx.values_mut() {
            stream.maybe_create_keyframe_request(sender_ssrc, feedback);
            stream.maybe_create_remb_request(sender_ssrc, feedback);

            // All StreamRx belonging to the same Mid are reported together.
            if self.mids_to_report.contains(&stream.mid()) {
                stream.create_rr_and_update(now, sender_ssrc, feedback);
            }

            if do_nack {
                stream.maybe_create_nack(now, sender_ssrc, feedback);
            }

            stream.handle_timeout(now);
        }

        self.mids_to_report.clear(); // start over for StreamTx.
        for stream in self.streams_tx.values() {
            if stream.need_sr(now, intervals) {
                self.mids_to_report.push(stream.mid());
            }
        }

        let streams = self.streams_tx.len();
        for (ssrc, stream) in self.streams_tx.iter_mut() {
            let mid = stream.mid();

            // All StreamTx belonging to the same Mid are reported together.
            if self.mids_to_report.contains(&mid) {
                stream.create_sr_and_update(now, feedback);
            }

            // Finding the first (main) PT that also has RTX for the Media is expensive,
            // this closure is run only when needed.
            // The unwrap is okay because we cannot have StreamTx with a Mid without the corresponding Media.
            let get_media = move || (medias.iter().find(|m| m.mid() == mid).unwrap(), codecs);

            if stream.handle_timeout(now, get_media) {
                self.tx_view.touch(*ssrc, streams);
            }
        }

        if now > self.rx_lookup_at() {
            self.rx_lookup
                .retain(|_, l| now - l.last_used <= RX_LOOKUP_EXPIRY);
            self.last_rx_lookup_cleanup = now;
        }
    }

    /// Hands a feedback to the sending stream it is for, noting a keyframe or bitrate request
    /// it leaves to poll (see [`Streams::tx_requests`]).
    pub(crate) fn handle_tx_rtcp(&mut self, now: Instant, fb: RtcpFb) {
        let Some(stream) = self.stream_tx(&fb.ssrc()) else {
            return;
        };
        if stream.handle_rtcp(now, fb) {
            self.tx_requests = true;
        }
    }

    pub(crate) fn poll_keyframe_request(&mut self) -> Option<KeyframeRequest> {
        if !self.tx_requests {
            return None;
        }
        self.streams_tx.values_mut().find_map(|s| {
            let kind = s.poll_keyframe_request()?;
            Some(KeyframeRequest {
                mid: s.mid(),
                rid: s.rid(),
                kind,
            })
        })
    }

    pub(crate) fn poll_sender_feedback(&mut self) -> Option<SenderFeedback> {
        self.streams_rx.values_mut().find_map(|s| {
            let (sender_info, at) = s.poll_sender_info()?;

            Some(SenderFeedback {
                mid: s.mid(),
                rid: s.rid(),
                received_at: at,
                sender_info,
            })
        })
    }

    pub(crate) fn poll_remb_request(&mut self) -> Option<(Mid, Bitrate)> {
        if !self.tx_requests {
            return None;
        }
        let mut keyframe_requests = false;
        for s in self.streams_tx.values_mut() {
            if let Some(bitrate) = s.poll_remb_request() {
                return Some((s.mid(), bitrate));
            }
            keyframe_requests |= s.has_keyframe_request();
        }
        self.tx_requests = keyframe_requests;
        None
    }

    pub(crate) fn poll_stream_paused(&mut self) -> Option<StreamPaused> {
        self.streams_rx.values_mut().find_map(|s| s.poll_paused())
    }

    pub(crate) fn has_stream_rx(&self, ssrc: Ssrc) -> bool {
        self.streams_rx.contains_key(&ssrc)
    }

    pub(crate) fn has_stream_tx(&self, ssrc: Ssrc) -> bool {
        self.streams_tx.contains_key(&ssrc)
    }

    pub(crate) fn handle_dlrr(&mut self, now: Instant, dlrr: DlrrItem) {
        let is_default_ssrc = !self.default_ssrc_tx.is_probe() && dlrr.ssrc == self.default_ssrc_tx;
        if !is_default_ssrc && !self.has_stream_tx(dlrr.ssrc) {
            trace!("Ignoring DLRR for unknown local SSRC: {}", dlrr.ssrc);
            return;
        }

        // DLRR identifies our RRTR sender, not a remote media SSRC. The measured
        // round trip is shared by receive streams on this peer's transport.
        for stream in self.streams_rx.values_mut() {
            stream.handle_rtcp(now, RtcpFb::DlrrItem(dlrr));
        }
    }

    pub(crate) fn streams_rx(&mut self) -> impl Iterator<Item = &mut StreamRx> {
        self.streams_rx.values_mut()
    }

    pub(crate) fn streams_tx(&mut self) -> impl Iterator<Item = &mut StreamTx> {
        self.tx_view.invalidate();
        self.streams_tx.values_mut().map(|s| &mut **s)
    }

    pub(crate) fn ssrcs_tx(&self, mid: Mid) -> Vec<(Ssrc, Option<Ssrc>)> {
        self.streams_tx
            .values()
            .filter(|s| s.mid() == mid)
            .map(|s| (s.ssrc(), s.rtx()))
            .collect()
    }

    pub(crate) fn new_ssrc(&self) -> Ssrc {
        loop {
            // This new guarantees we never get SSRC 0 (reserved for BWE probes)
            let ssrc = Ssrc::new();

            let has_ssrc = self.has_stream_rx(ssrc) || self.has_stream_tx(ssrc);

            if has_ssrc {
                continue;
            }

            // Need to check RTX as well.
            let has_rtx_rx = self.streams_rx.values().any(|s| s.rtx() == Some(ssrc));
            if has_rtx_rx {
                continue;
            }

            let has_rtx_tx = self.streams_tx.values().any(|s| s.rtx() == Some(ssrc));
            if has_rtx_tx {
                continue;
            }

            // Not used
            break ssrc;
        }
    }

    pub fn new_ssrc_pair(&self) -> (Ssrc, Ssrc) {
        let ssrc = self.new_ssrc();

        let rtx = loop {
            let proposed = self.new_ssrc();
            // Avoid clashing with just allocated main SSRC.
            if proposed != ssrc {
                break proposed;
            }
        };

        (ssrc, rtx)
    }

    pub(crate) fn first_ssrc_remote(&self) -> Ssrc {
        *self.streams_rx.keys().next().unwrap_or(&0.into())
    }

    pub(crate) fn first_ssrc_local(&mut self) -> Ssrc {
        if let Some(ssrc) = self.streams_tx.keys().next() {
            // If there is some local Tx SSRC, use that.
            *ssrc
        } else {
            // Fallback in case we don't have any Tx SSRC.
            if *self.default_ssrc_tx == 0 {
                // Do not use 0, allocate one that is not in session already.
                self.default_ssrc_tx = self.new_ssrc();
            }
            self.default_ssrc_tx
        }
    }

    /// Bind the probe source only while a cluster is authorized. Changing the
    /// binding drops queued padding but preserves the SSRC's SRTP sequence.
    pub(crate) fn set_probe_media(&mut self, media: Option<(Mid, Pt)>) {
        if media == self.probe_media {
            return;
        }
        self.probe_tx.reset_buffers();
        if let Some((mid, pt)) = media {
            self.probe_tx.set_probe_media(mid, pt);
        }
        self.probe_media = media;
    }

    /// The pacer's view of the send queues: the states of the streams with something queued,
    /// in stream order, then that of the one idle stream the pacer would pad on, then the
    /// probe source's. An idle queue tells the pacer only that it could carry padding and when
    /// it last sent, and the pacer pads on the padding-capable queue that sent last (only while
    /// every queue is empty): the states it sees lead to the same choices as those of every
    /// stream. It reads them several times per packet, and a peer receiving hundreds of
    /// streams (a chair watching every site) spent most of its time snapshotting, copying and
    /// scanning idle ones. An idle stream's [`StreamTx::queue_info`] is sampled again only
    /// once it has been busy. Above [`TX_INDEXED_ABOVE`] streams, the busy ones and the idle
    /// one to pad on come from a [`TxView`] kept between calls, not from a walk of them all:
    /// the walk itself, once per packet written, was most of what was left.
    pub(crate) fn send_queue_states(
        &mut self,
        now: Instant,
        mut can_probe: impl FnMut(Mid, Pt) -> bool,
    ) -> impl Iterator<Item = QueueState> {
        // Snapshot each busy stream once, preferring media/RTX padding over the
        // fallback. No extra stream or retransmission-queue scan is needed.
        let probing = self.probe_media.is_some();
        // Only negotiated feedback sources can provide probe padding.
        // Ordinary padding keeps its existing eligibility.
        let mut may_pad = |stream: &StreamTx| {
            !probing
                || stream
                    .padding_pt()
                    .is_some_and(|pt| can_probe(stream.mid(), pt))
        };
        let states = &mut self.queue_states;
        states.clear();
        let (pad_on, mut media_padding) = if self.streams_tx.len() > TX_INDEXED_ABOVE {
            self.tx_view
                .queue_states(now, &mut self.streams_tx, states, &mut may_pad)
        } else {
            self.tx_view.invalidate();
            walk_queue_states(now, &mut self.streams_tx, states, &mut may_pad)
        };
        if let Some(stream) = pad_on.and_then(|ssrc| self.streams_tx.get_mut(&ssrc)) {
            let mut queue = stream.queue_state(now);
            queue.use_for_padding = true;
            media_padding = true;
            states.push(queue);
        }
        if self.probe_media.is_some() {
            let mut queue = self.probe_tx.queue_state(now);
            queue.midrid = MidRid(MID_PROBE, None);
            queue.use_for_padding = !media_padding;
            states.push(queue);
        }
        states.drain(..)
    }

    pub(crate) fn stream_tx_by_midrid(&mut self, midrid: MidRid) -> Option<&mut StreamTx> {
        if midrid == MidRid(MID_PROBE, None) {
            self.probe_media?;
            return Some(&mut self.probe_tx);
        }
        if self.streams_tx.len() <= TX_INDEXED_ABOVE {
            return self
                .streams_tx
                .values_mut()
                .find(|s| s.is_midrid(midrid))
                .map(|s| &mut **s);
        }
        let indexed = self.tx_by_midrid.get(&midrid).copied().filter(|ssrc| {
            self.streams_tx
                .get(ssrc)
                .is_some_and(|s| s.midrid() == midrid)
        });
        let ssrc = match indexed {
            Some(ssrc) => ssrc,
            None => {
                let (ssrc, exact) = self
                    .streams_tx
                    .iter()
                    .find(|(_, s)| s.is_midrid(midrid))
                    .map(|(ssrc, s)| (*ssrc, s.midrid() == midrid))?;
                // A query without a rid that matched a simulcast layer is not indexed: which
                // layer it finds is the walk's.
                if exact {
                    self.tx_by_midrid.insert(midrid, ssrc);
                }
                ssrc
            }
        };
        self.tx_view.touch(ssrc, self.streams_tx.len());
        self.streams_tx.get_mut(&ssrc).map(|s| &mut **s)
    }

    pub(crate) fn stream_rx_by_midrid(&mut self, midrid: MidRid) -> Option<&mut StreamRx> {
        self.streams_rx.values_mut().find(|s| s.is_midrid(midrid))
    }

    pub(crate) fn remove_streams_by_mid(&mut self, mid: Mid) {
        self.tx_view.invalidate();
        self.streams_tx.retain(|_, s| s.mid() != mid);
        self.tx_by_midrid.retain(|midrid, _| midrid.mid() != mid);
        self.streams_rx.retain(|_, s| s.mid() != mid);
        self.rx_lookup.retain(|_, v| v.mid != mid);
    }

    /// An iterator over all the tx streams for a given mid.
    pub(crate) fn streams_tx_by_mid(&mut self, mid: Mid) -> impl Iterator<Item = &mut StreamTx> {
        self.tx_view.invalidate();
        self.streams_tx
            .values_mut()
            .filter(move |s| s.mid() == mid)
            .map(|s| &mut **s)
    }

    /// An iterator over all the rx streams for a given mid.
    pub(crate) fn streams_rx_by_mid(&mut self, mid: Mid) -> impl Iterator<Item = &mut StreamRx> {
        self.streams_rx.values_mut().filter(move |s| s.mid() == mid)
    }

    pub(crate) fn reset_buffers_tx(&mut self, mid: Mid) {
        for s in self.streams_tx_by_mid(mid) {
            s.reset_buffers();
        }
    }

    pub(crate) fn reset_buffers_rx(
        &mut self,
        mid: Mid,
        max_seq_lookup: impl Fn(Ssrc) -> Option<SeqNo>,
    ) {
        for s in self.streams_rx_by_mid(mid) {
            s.reset_buffers(&max_seq_lookup);
        }
    }

    pub(crate) fn change_stream_rx_ssrc(&mut self, ssrc_from: Ssrc, ssrc_to: Ssrc) -> bool {
        // This unwrap is OK, because we can't call change_stream_rx_ssrc without first
        // knowing there is such a StreamRx.
        let maybe_change = self.streams_rx.get_mut(&ssrc_from).unwrap();

        // The StreamRx is allowed to not change the SSRC in case it is switching back
        // to the previous SSRC. This is to avoid flapping in case RTP packets arrive
        // out of order.
        let did_change = maybe_change.change_ssrc(ssrc_to);

        if did_change {
            // Unwrap is OK, see above.
            let to_change = self.streams_rx.remove(&ssrc_from).unwrap();

            // Reinsert under new SSRC key.
            self.streams_rx.insert(ssrc_to, to_change);

            // Remove previous mappings for the SSRC
            self.rx_lookup
                .retain(|k, l| *k != ssrc_from && l.main != ssrc_from);
        }

        did_change
    }

    fn change_stream_rx_rtx(&mut self, rtx_from: Ssrc, rtx_to: Ssrc) {
        // Remove the SSRC mapping
        self.rx_lookup.remove(&rtx_from);

        let Some(to_change) = self
            .streams_rx
            .values_mut()
            .find(|s| s.rtx() == Some(rtx_from))
        else {
            // If there's no main stream associated with the RTX our job is done.
            return;
        };

        to_change.maybe_reset_rtx(rtx_to);
    }

    fn stream_rx_by_ssrc_or_rtx(&self, ssrc: Ssrc) -> Option<&StreamRx> {
        self.streams_rx
            .values()
            .find(|s| s.ssrc() == ssrc || s.rtx() == Some(ssrc))
    }

    /// Whether any receive stream currently needs NACK reports (see [`StreamRx::nack_enabled`]).
    ///
    /// Not cached: the answer changes with pause state and pending NACK retries.
    pub(crate) fn any_nack_enabled(&self) -> bool {
        self.streams_rx.values().any(|s| s.nack_enabled())
    }

    fn rx_lookup_at(&self) -> Instant {
        self.last_rx_lookup_cleanup + RX_LOOKUP_CLEANUP_INTERVAL
    }
}

/// The pacer's view of every sending stream, walked: the busy ones, and the idle stream padding
/// would go on (the last in stream order of those that can pad and sent last, as the pacer's
/// `max_by_key` picks among all). Each idle stream's queue information is sampled again only
/// once it has been busy.
pub(crate) fn walk_queue_states(
    now: Instant,
    streams_tx: &mut HashMap<Ssrc, Box<StreamTx>>,
    states: &mut Vec<QueueState>,
    may_pad: &mut impl FnMut(&StreamTx) -> bool,
) -> (Option<Ssrc>, bool) {
    let mut media_padding = false;
    let mut idle_padding: Option<(Option<Instant>, Ssrc)> = None;
    for (ssrc, stream) in streams_tx {
        if stream.is_idle() {
            stream.refresh_idle_queue_info(now);
            let last = stream.last_emitted();
            let later = idle_padding.is_none_or(|(best, _)| last >= best);
            if stream.padding_enabled() && later && may_pad(stream) {
                idle_padding = Some((last, *ssrc));
            }
            continue;
        }
        media_padding |= push_busy_state(now, stream, states, may_pad);
    }
    (idle_padding.map(|(_, ssrc)| ssrc), media_padding)
}

/// Pushes a busy stream's queue state for the pacer, padding on it only where `may_pad`
/// allows; returns whether it may carry padding.
fn push_busy_state(
    now: Instant,
    stream: &mut StreamTx,
    states: &mut Vec<QueueState>,
    may_pad: &mut impl FnMut(&StreamTx) -> bool,
) -> bool {
    let mut queue = stream.queue_state(now);
    queue.use_for_padding = queue.use_for_padding && may_pad(stream);
    states.push(queue);
    queue.use_for_padding
}

/// What [`Streams::send_queue_states`] keeps of a session's many sending streams between its
/// calls, so that it does not walk them all for each packet: the streams busy at the last
/// call, the streams handed out one by one since, and the idle streams that can pad, ordered
/// by when they last sent. Only the busy and the handed-out streams are looked at again: a
/// stream nobody held since cannot have changed. Handing out several at once, adding or
/// removing one, or a timeout of them all, makes the next call walk them all again.
///
/// The idle stream padding goes on is the one that sent last, as in the walk; among those
/// that sent at the same instant, the one with the highest SSRC (the walk takes the last in
/// the map's order).
#[derive(Debug, Default)]
struct TxView {
    /// False until the next call has walked every stream.
    valid: bool,
    busy: Vec<Ssrc>,
    touched: Vec<Ssrc>,
    /// Kept for the busy and touched streams while they are looked at again.
    examine: Vec<Ssrc>,
    idle_padding: BTreeSet<(Option<Instant>, Ssrc)>,
    /// Each stream's key in `idle_padding`.
    idle_padding_key: HashMap<Ssrc, Option<Instant>>,
}

impl TxView {
    fn invalidate(&mut self) {
        self.valid = false;
    }

    /// `ssrc` is handed out: look at it again at the next call.
    fn touch(&mut self, ssrc: Ssrc, streams: usize) {
        if !self.valid {
            return;
        }
        if self.touched.len() >= streams {
            // Cheaper to walk them all than to keep the list.
            self.invalidate();
            return;
        }
        self.touched.push(ssrc);
    }

    /// Pushes the busy streams' states onto `states`; returns the idle stream padding would
    /// go on, and whether a busy one can pad.
    fn queue_states(
        &mut self,
        now: Instant,
        streams_tx: &mut HashMap<Ssrc, Box<StreamTx>>,
        states: &mut Vec<QueueState>,
        may_pad: &mut impl FnMut(&StreamTx) -> bool,
    ) -> (Option<Ssrc>, bool) {
        let mut media_padding = false;
        if self.valid {
            // The streams busy at the last call (sorted, none of them among the idle ones),
            // then those handed out since that are not among them.
            self.examine.clear();
            self.examine.append(&mut self.busy);
            let was_busy = self.examine.len();
            self.touched.sort_unstable();
            self.touched.dedup();
            for ssrc in self.touched.drain(..) {
                if self.examine[..was_busy].binary_search(&ssrc).is_err() {
                    self.examine.push(ssrc);
                }
            }
            for i in 0..self.examine.len() {
                let ssrc = self.examine[i];
                if i >= was_busy
                    && let Some(last) = self.idle_padding_key.remove(&ssrc)
                {
                    self.idle_padding.remove(&(last, ssrc));
                }
                if let Some(stream) = streams_tx.get_mut(&ssrc) {
                    media_padding |= self.look_at(now, ssrc, stream, states, may_pad);
                }
            }
        } else {
            self.busy.clear();
            self.touched.clear();
            self.idle_padding.clear();
            self.idle_padding_key.clear();
            for (ssrc, stream) in streams_tx.iter_mut() {
                media_padding |= self.look_at(now, *ssrc, stream, states, may_pad);
            }
            self.valid = true;
        }
        // After a walk, in the map's order; otherwise two sorted runs at most (the busy
        // streams of the last call, then those handed out since), which the stable sort
        // merges in one pass.
        self.busy.sort();
        let pad_on = self
            .idle_padding
            .iter()
            .rev()
            .map(|(_, ssrc)| *ssrc)
            .find(|ssrc| streams_tx.get(ssrc).is_some_and(|s| may_pad(s)));
        (pad_on, media_padding)
    }

    /// Files `stream` as busy, pushing its queue state onto `states` (see
    /// [`push_busy_state`], whose answer it returns), or as idle (sampling its queue once)
    /// and, when it can pad, by when it last sent.
    fn look_at(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        stream: &mut StreamTx,
        states: &mut Vec<QueueState>,
        may_pad: &mut impl FnMut(&StreamTx) -> bool,
    ) -> bool {
        if !stream.is_idle() {
            self.busy.push(ssrc);
            return push_busy_state(now, stream, states, may_pad);
        }
        stream.refresh_idle_queue_info(now);
        if stream.padding_enabled() {
            let last = stream.last_emitted();
            self.idle_padding.insert((last, ssrc));
            self.idle_padding_key.insert(ssrc, last);
        }
        false
    }
}

impl fmt::Debug for RtpPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpPacket")
            .field("seq_no", &self.seq_no)
            .field("time", &self.time)
            .field("header", &self.header)
            .field("payload", &self.payload.len())
            .field("nackable", &self.nackable)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}
