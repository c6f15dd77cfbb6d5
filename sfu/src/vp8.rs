//! Just enough of the VP8 RTP payload descriptor (RFC 7741) to switch simulcast layers: where
//! a keyframe starts, and the picture ids to keep continuous across a switch.

/// What the forwarder needs from a VP8 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    /// First packet of a keyframe: a receiver can start decoding here.
    pub keyframe_start: bool,
    /// PictureID and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    pub tl0_pic_idx: Option<u8>,
}

/// Parses the descriptor at the start of a VP8 RTP payload. `None` for a malformed one.
pub fn parse(payload: &[u8]) -> Option<Vp8Info> {
    parse_with_len(payload).map(|(info, _)| info)
}

/// The VP8 frame data a packet carries, after its descriptor (what a depacketizer joins into
/// the frame). `None` for a malformed descriptor.
pub fn frame_data(payload: &[u8]) -> Option<&[u8]> {
    let (_, len) = parse_with_len(payload)?;
    payload.get(len..)
}

/// The descriptor's fields and its length in bytes.
fn parse_with_len(payload: &[u8]) -> Option<(Vp8Info, usize)> {
    let first = *payload.first()?;
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    let mut at = 1;
    let mut info = Vp8Info::default();
    if extended {
        let x = *payload.get(at)?;
        at += 1;
        let (has_pid, has_tl0, has_tid, has_key) =
            (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
        if has_pid {
            let b = *payload.get(at)?;
            at += 1;
            if b & 0x80 != 0 {
                let low = *payload.get(at)?;
                at += 1;
                info.picture_id = Some(((u16::from(b & 0x7f) << 8) | u16::from(low), true));
            } else {
                info.picture_id = Some((u16::from(b & 0x7f), false));
            }
        }
        if has_tl0 {
            info.tl0_pic_idx = Some(*payload.get(at)?);
            at += 1;
        }
        if has_tid || has_key {
            payload.get(at)?;
            at += 1;
        }
    }
    let header = payload.get(at)?;
    info.keyframe_start = start && partition == 0 && header & 0x01 == 0;
    Some((info, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_data_follows_the_descriptor() {
        assert_eq!(frame_data(&[0x10, 0x9c, 0x01]), Some(&[0x9c, 0x01][..]));
        // X, I with a 15-bit picture id, L, T/K: six bytes of descriptor.
        let extended = [0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x9d, 0x01];
        assert_eq!(frame_data(&extended), Some(&[0x9d, 0x01][..]));
        assert_eq!(frame_data(&[0x90, 0x80]), None, "cut in the descriptor");
    }

    #[test]
    fn plain_descriptor_keyframe_and_interframe() {
        assert!(parse(&[0x10, 0x9c, 0x01, 0x2a]).expect("ok").keyframe_start);
        assert!(
            !parse(&[0x10, 0x9d]).expect("ok").keyframe_start,
            "P=1: interframe"
        );
        assert!(
            !parse(&[0x00, 0x9c]).expect("ok").keyframe_start,
            "not a partition start"
        );
    }

    #[test]
    fn extended_descriptor_as_chrome_sends_it() {
        // X=1, S=1 | I=1 L=1 T=1 | M=1 PictureID=0x1234 | TL0PICIDX=7 | TID | payload header
        let p = [0x90, 0xe0, 0x80 | 0x12, 0x34, 0x07, 0x20, 0x9c];
        let info = parse(&p).expect("ok");
        assert_eq!(info.picture_id, Some((0x1234, true)));
        assert_eq!(info.tl0_pic_idx, Some(7));
        assert!(info.keyframe_start);
        assert_eq!(parse(&p[..4]), None, "truncated");
        assert_eq!(parse(&[]), None);
    }
}
