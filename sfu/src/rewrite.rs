//! Rewriters that make one consumer's outgoing stream look continuous to its receiver
//! whatever the publisher's numbering and across simulcast layer switches: sequence numbers,
//! RTP timestamps, and VP8 picture ids.

use std::time::Instant;

use str0m::rtp::SeqNo;

use crate::vp8::Vp8Info;

/// Gives one consumer a contiguous sequence-number space that starts near zero, whatever the
/// publisher's extended sequence number was when the consumer joined (a receiver cannot guess a
/// rollover counter it never saw), and that goes on without a jump when the consumer switches
/// to another simulcast layer. Gaps in the publisher's stream stay gaps, so the receiver still
/// asks for them by NACK.
#[derive(Debug, Default)]
pub(crate) struct SequenceRewriter {
    offset: Option<i64>,
    last_out: i64,
}

impl SequenceRewriter {
    /// Starts every outgoing stream at 1000, leaving room for reordered packets.
    const FIRST: i64 = 1000;

    /// The outgoing sequence number for `seq`, or `None` for a packet older than the first
    /// one forwarded since the last switch (a late retransmission the receiver never knew).
    pub fn rewrite(&mut self, seq: SeqNo) -> Option<SeqNo> {
        let seq = i64::try_from(*seq).ok()?;
        let next = if self.last_out == 0 {
            Self::FIRST
        } else {
            self.last_out + 1
        };
        let offset = *self.offset.get_or_insert(next.checked_sub(seq)?);
        let out = seq.checked_add(offset)?;
        if out <= 0 || (self.last_out > 0 && out <= self.last_out - 1000) {
            return None;
        }
        self.last_out = self.last_out.max(out);
        Some((out as u64).into())
    }

    /// The next packet continues right after the last one sent (a layer switch).
    pub fn rebase(&mut self) {
        self.offset = None;
    }
}

/// Keeps RTP timestamps continuous across a change of source (a simulcast layer switch, a
/// WHEP player's new source, a relay's new parent stream): the new source's clock is shifted
/// so that its first packet lands where the old one would have been by then.
#[derive(Debug, Default)]
pub struct TimestampRewriter {
    offset: u32,
    /// The newest timestamp given out, and when.
    last: Option<(u32, Instant)>,
    rebase: bool,
}

impl TimestampRewriter {
    /// `clock_per_ms`: 90 for video.
    pub fn rewrite(&mut self, timestamp: u32, at: Instant, clock_per_ms: u32) -> u32 {
        if self.rebase {
            self.rebase = false;
            if let Some((last, last_at)) = self.last {
                let elapsed = at.saturating_duration_since(last_at).as_millis() as u32;
                let expected = last.wrapping_add(elapsed.max(1).wrapping_mul(clock_per_ms));
                self.offset = expected.wrapping_sub(timestamp);
            }
        }
        let out = timestamp.wrapping_add(self.offset);
        // A late packet (a repair) does not move the clock back.
        if self
            .last
            .is_none_or(|(last, _)| out.wrapping_sub(last) as i32 > 0)
        {
            self.last = Some((out, at));
        }
        out
    }

    /// The next packet is of a new source: its clock goes on from this one's.
    pub fn rebase(&mut self) {
        self.rebase = true;
    }
}

/// Keeps VP8 PictureID and TL0PICIDX continuous across a layer switch.
#[derive(Debug, Default)]
pub(crate) struct PictureRewriter {
    picture_offset: u16,
    tl0_offset: u8,
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
    rebase: bool,
}

impl PictureRewriter {
    /// The rewritten (picture id, tl0picidx) for a packet, `None` where unchanged.
    pub fn rewrite(&mut self, info: &Vp8Info) -> (Option<u16>, Option<u8>) {
        if self.rebase {
            self.rebase = false;
            if let (Some((pid, _)), Some(last)) = (info.picture_id, self.last_picture) {
                self.picture_offset = last.wrapping_add(1).wrapping_sub(pid);
            }
            if let (Some(tl0), Some(last)) = (info.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
        }
        let picture = info.picture_id.map(|(pid, long)| {
            let mask = if long { 0x7fff } else { 0x7f };
            pid.wrapping_add(self.picture_offset) & mask
        });
        let tl0 = info.tl0_pic_idx.map(|t| t.wrapping_add(self.tl0_offset));
        if picture.is_some() {
            self.last_picture = picture;
        }
        if tl0.is_some() {
            self.last_tl0 = tl0;
        }
        let changed = self.picture_offset != 0 || self.tl0_offset != 0;
        if changed {
            (picture, tl0)
        } else {
            (None, None)
        }
    }

    pub fn rebase(&mut self) {
        self.rebase = true;
    }
}

/// A fixed m-line's numbering and clocks, handed from the consumer that leaves it to the next
/// one (a WHEP player's one picture moving from source to source): the receiver keeps one
/// SSRC, so the new source goes on where the old one stopped. Sequence numbers that went back
/// would be dropped as old, and a clock that jumped would hold the picture back.
#[derive(Debug, Default)]
pub(crate) struct LineClocks {
    pub sequence: SequenceRewriter,
    pub timestamps: TimestampRewriter,
    pub pictures: PictureRewriter,
}

impl LineClocks {
    /// The rewriters to start the line's next consumer with: they continue from these.
    pub fn continued(mut self) -> LineClocks {
        self.sequence.rebase();
        self.timestamps.rebase();
        self.pictures.rebase();
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rewriter_starts_low_keeps_gaps_and_continues_across_a_switch() {
        let mut r = SequenceRewriter::default();
        let big: u64 = 5 * 65_536 + 100;
        assert_eq!(r.rewrite(big.into()).map(|s| *s), Some(1000));
        assert_eq!(r.rewrite((big + 1).into()).map(|s| *s), Some(1001));
        assert_eq!(r.rewrite((big + 5).into()).map(|s| *s), Some(1005));
        assert_eq!(r.rewrite((big - 3).into()).map(|s| *s), Some(997));
        assert_eq!(r.rewrite((big - 2000).into()), None);
        // Another layer, with its own numbering, continues at 1006.
        r.rebase();
        assert_eq!(r.rewrite(17.into()).map(|s| *s), Some(1006));
        assert_eq!(r.rewrite(18.into()).map(|s| *s), Some(1007));
        // A number near the top of the range is dropped, not an overflow.
        assert_eq!(r.rewrite((i64::MAX as u64).into()), None);
        assert_eq!(r.rewrite(u64::MAX.into()), None);
    }

    #[test]
    fn a_line_s_next_consumer_continues_its_numbering_and_clock() {
        let t0 = Instant::now();
        let mut first = LineClocks::default();
        for i in 0..5u64 {
            first.sequence.rewrite((40_000 + i).into());
            first.timestamps.rewrite(
                7_000 + 960 * i as u32,
                t0 + Duration::from_millis(20 * i),
                48,
            );
        }
        let mut next = first.continued();
        let later = t0 + Duration::from_millis(80 + 20);
        assert_eq!(next.sequence.rewrite(3.into()).map(|s| *s), Some(1005));
        assert_eq!(next.timestamps.rewrite(123, later, 48), 7_000 + 960 * 5);
    }

    #[test]
    fn timestamps_and_pictures_continue_across_a_switch() {
        let t0 = Instant::now();
        let mut ts = TimestampRewriter::default();
        assert_eq!(ts.rewrite(1_000, t0, 90), 1_000);
        ts.rebase();
        let later = t0 + Duration::from_millis(33);
        assert_eq!(ts.rewrite(555_555, later, 90), 1_000 + 33 * 90);
        assert_eq!(
            ts.rewrite(555_555 + 2_970, later + Duration::from_millis(33), 90),
            1_000 + 66 * 90
        );

        let mut p = PictureRewriter::default();
        let info = |pid, tl0| Vp8Info {
            keyframe_start: true,
            picture_id: Some((pid, true)),
            tl0_pic_idx: Some(tl0),
        };
        assert_eq!(
            p.rewrite(&info(100, 5)),
            (None, None),
            "nothing to patch before a switch"
        );
        p.rebase();
        assert_eq!(p.rewrite(&info(9_000, 200)), (Some(101), Some(6)));
        assert_eq!(p.rewrite(&info(9_001, 201)), (Some(102), Some(7)));
    }
}
