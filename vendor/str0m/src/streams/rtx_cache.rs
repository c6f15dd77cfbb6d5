use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::io::DATAGRAM_MAX_PACKET_SIZE;
use crate::packet::Vp8Patch;
use crate::rtp_::{ExtensionMap, RtpHeader, SeqNo};
use crate::util::already_happened;

use super::RtpPacket;
use super::rtx_cache_buf::EvictingBuffer;

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;
const RTX_CACHE_QUANTIZE_SLOTS: usize = DATAGRAM_MAX_PACKET_SIZE / RTX_CACHE_SIZE_QUANTIZER;

/// Header bytes kept next to a cached packet without a heap allocation. A sent header is the
/// fixed 12 bytes plus its extensions; 48 bytes hold the usual ones (MID, RID, absolute send
/// time, transport-wide sequence number, audio level, video orientation).
const HEADER_INLINE: usize = 48;

/// A sent packet as the RTX cache keeps it: the RTP header as it was written, the shared
/// payload and what a resend needs besides.
///
/// An [`RtpPacket`] is about 400 bytes, most of it the parsed header's room for every
/// extension; a cache holding seconds of video per stream kept that for every packet. A
/// resend, rare next to sends, parses the written header back (see [`CachedPacket::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedPacket {
    seq_no: SeqNo,
    payload: Arc<[u8]>,
    vp8_patch: Option<Vp8Patch>,
    header_len: u8,
    header_inline: [u8; HEADER_INLINE],
    /// The header when it is longer than [`HEADER_INLINE`].
    header_spill: Option<Box<[u8]>>,
}

impl CachedPacket {
    /// Keeps `packet`, sent with the header `header` (as written on the wire, unprotected).
    pub(crate) fn new(packet: RtpPacket, header: &[u8]) -> Self {
        let mut header_inline = [0; HEADER_INLINE];
        let (header_len, header_spill) = if header.len() <= HEADER_INLINE {
            header_inline[..header.len()].copy_from_slice(header);
            (header.len() as u8, None)
        } else {
            (0, Some(header.into()))
        };
        CachedPacket {
            seq_no: packet.seq_no,
            payload: packet.payload,
            vp8_patch: packet.vp8_patch,
            header_len,
            header_inline,
            header_spill,
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.payload.len()
    }

    fn header(&self) -> &[u8] {
        match &self.header_spill {
            Some(spill) => spill,
            None => &self.header_inline[..self.header_len as usize],
        }
    }

    /// Fills `into` with this packet as it was sent, its header parsed with `exts`, the
    /// extension map it was written with. `None` (and `into` unchanged) when the header does
    /// not parse, as when the map has changed since.
    pub(crate) fn load(&self, exts: &ExtensionMap, into: &mut RtpPacket) -> Option<()> {
        let header = RtpHeader::parse(self.header(), exts)?;
        into.header = header;
        into.seq_no = self.seq_no;
        into.payload = self.payload.clone();
        into.vp8_patch = self.vp8_patch;
        into.nackable = true;
        into.last_sender_info = None;
        into.timestamp = already_happened();
        Some(())
    }
}

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<CachedPacket>,

    // Technically we want [Option<SeqNo>; X] to indicate the absence of
    // a SeqNo. However We can half the storage space by using the sentinel
    // values SeqNo::MAX to indicate None
    seq_no_by_quantized_size: [SeqNo; RTX_CACHE_QUANTIZE_SLOTS],
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            seq_no_by_quantized_size: [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS],
        }
    }

    /// Caches `packet`, sent at `now` with the (unprotected) header bytes `header`.
    pub fn cache_sent_packet(&mut self, packet: RtpPacket, header: &[u8], now: Instant) {
        assert!(packet.nackable);
        let seq_no = packet.seq_no;
        let quantized_size = packet.payload.len() / RTX_CACHE_SIZE_QUANTIZER;
        self.packet_by_seq_no
            .push(*seq_no, now, CachedPacket::new(packet, header));
        self.seq_no_by_quantized_size[quantized_size] = seq_no;
        self.remove_old_packets(now);
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    pub fn get_cached_packet_by_seq_no(&self, seq_no: SeqNo) -> Option<&CachedPacket> {
        self.packet_by_seq_no.get(*seq_no)
    }

    pub fn get_cached_packet_smaller_than(&self, max_size: usize) -> Option<&CachedPacket> {
        let quantized_size = max_size / RTX_CACHE_SIZE_QUANTIZER;

        let seq_no = self.seq_no_by_quantized_size[..quantized_size]
            .iter()
            .rev()
            .filter(|seq_no| !seq_no.is_max())
            .find(|seq_no| self.packet_by_seq_no.contains(***seq_no))?;

        self.get_cached_packet_by_seq_no(*seq_no)
    }

    fn remove_old_packets(&mut self, now: Instant) {
        self.packet_by_seq_no.maybe_evict(now);
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        let packet = self.packet_by_seq_no.last()?;
        Some(packet.payload.as_ref())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
        self.seq_no_by_quantized_size = [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS];
    }
}

#[cfg(test)]
mod test {
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;

    use super::*;

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    /// A written header: V=2, PT 96, sequence number 1, timestamp 2, SSRC 3.
    const HEADER: [u8; 12] = [0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];

    fn cached(now: Instant, seq_no: u64, millis: u64) -> CachedPacket {
        CachedPacket::new(packet(now, seq_no, millis), &HEADER)
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader::default(),
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), &HEADER, after(now, 10));
        assert_eq!(
            Some(cached(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into()).cloned()
        );
        assert_eq!(
            Some(cached(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000).cloned()
        );
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), &HEADER, after(now, 10));
        assert!(rtx_cache.get_cached_packet_by_seq_no(1.into()).is_none());
        assert!(rtx_cache.get_cached_packet_smaller_than(1000).is_none());
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), &HEADER, after(now, 10));
        assert_eq!(
            Some(cached(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into()).cloned()
        );
        assert_eq!(
            Some(cached(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000).cloned()
        );
        assert_eq!(
            Some(cached(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(25).cloned()
        );
        assert!(rtx_cache.get_cached_packet_smaller_than(24).is_none());
        rtx_cache.cache_sent_packet(packet(now, 2, 20), &HEADER, after(now, 20));
        assert_eq!(
            Some(cached(now, 2, 20)),
            rtx_cache.get_cached_packet_by_seq_no(2.into()).cloned()
        );
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, &HEADER, now);
        }

        assert_eq!(
            Some(cached(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into()).cloned()
        );
        assert!(rtx_cache.get_cached_packet_by_seq_no(100.into()).is_none());
        assert!(rtx_cache.get_cached_packet_by_seq_no(101.into()).is_none());
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, &HEADER, now);
        }

        assert!(rtx_cache.get_cached_packet_by_seq_no(99.into()).is_none());

        assert_eq!(
            Some(cached(now, 100, 1000)),
            rtx_cache.get_cached_packet_by_seq_no(100.into()).cloned()
        );
        assert_eq!(
            Some(cached(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into()).cloned()
        );
    }

    fn written(header: &RtpHeader, exts: &ExtensionMap) -> Vec<u8> {
        let mut buf = vec![0; 1500];
        let len = header.write_to(&mut buf, exts);
        buf.truncate(len);
        buf
    }

    #[test]
    fn a_cached_packet_loads_back_as_it_was_sent() {
        let now = Instant::now();
        let exts = ExtensionMap::standard();
        let mut header = RtpHeader {
            marker: true,
            payload_type: 96.into(),
            sequence_number: 7,
            timestamp: 90_000,
            ssrc: 1234.into(),
            ..Default::default()
        };
        header.ext_vals.mid = Some("1".into());
        header.ext_vals.audio_level = Some(-30);
        header.ext_vals.voice_activity = Some(true);
        header.ext_vals.transport_cc = Some(4321);
        let short = written(&header, &exts);
        assert!(short.len() <= HEADER_INLINE);

        // Ten CSRCs make a header longer than what is kept inline.
        let mut long_header = header.clone();
        long_header.csrc_count = 10;
        long_header.csrc[..10].copy_from_slice(&[9; 10]);
        let long = written(&long_header, &exts);
        assert!(long.len() > HEADER_INLINE);

        for (sent, bytes) in [(&header, short), (&long_header, long)] {
            let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
            rtx_cache.cache_sent_packet(packet(now, 7, 10), &bytes, now);
            let mut loaded = RtpPacket::blank();
            rtx_cache
                .get_cached_packet_by_seq_no(7.into())
                .expect("cached")
                .load(&exts, &mut loaded)
                .expect("parses");
            assert_eq!(loaded.seq_no, 7.into());
            assert_eq!(&*loaded.payload, &10_u64.to_be_bytes());
            assert!(loaded.nackable);
            let h = &loaded.header;
            assert_eq!(
                (
                    h.marker,
                    h.payload_type,
                    h.sequence_number,
                    h.timestamp,
                    h.ssrc
                ),
                (true, 96.into(), 7, 90_000, 1234.into())
            );
            assert_eq!(&h.csrc[..h.csrc_count], &sent.csrc[..sent.csrc_count]);
            assert_eq!(h.ext_vals.mid, sent.ext_vals.mid);
            assert_eq!(h.ext_vals.audio_level, Some(-30));
            assert_eq!(h.ext_vals.voice_activity, Some(true));
            assert_eq!(h.ext_vals.transport_cc, Some(4321));
        }
    }

    #[test]
    fn a_cached_packet_is_a_fraction_of_an_rtp_packet() {
        assert!(std::mem::size_of::<CachedPacket>() <= 112);
        assert!(std::mem::size_of::<RtpPacket>() > 3 * std::mem::size_of::<CachedPacket>());
    }
}
