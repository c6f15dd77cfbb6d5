//! Just enough of the H.264 RTP payload format (RFC 6184) to start a receiver on a picture it
//! can decode: whether a packet begins an IDR picture or the parameter sets before one.

/// NAL unit types (ITU-T H.264 table 7-1, RFC 6184 section 5.2) that matter here.
const IDR: u8 = 5;
const SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Whether an H.264 RTP payload starts a picture a decoder can begin with: an IDR slice (alone
/// or as the first fragment of a FU-A) or a sequence parameter set, alone or aggregated in a
/// STAP-A. Encoders send SPS and PPS just before each IDR picture (OBS, browsers, hardware
/// encoders with repeated headers), so the switch lands on the parameter sets.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let starts = |nal_type: u8| nal_type == IDR || nal_type == SPS;
    match first & 0x1f {
        STAP_A => {
            let mut at = 1;
            while let (Some(&high), Some(&low)) = (payload.get(at), payload.get(at + 1)) {
                let size = usize::from(u16::from_be_bytes([high, low]));
                let Some(&header) = payload.get(at + 2) else {
                    return false;
                };
                if size == 0 {
                    return false;
                }
                if starts(header & 0x1f) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && starts(fu & 0x1f)),
        nal_type => starts(nal_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_and_idr_slices_start_a_picture_other_slices_do_not() {
        // A single SPS, a single IDR slice, a non-IDR slice.
        assert!(starts_keyframe(&[0x67, 0x42, 0xe0, 0x1e]));
        assert!(starts_keyframe(&[0x65, 0x88, 0x84]));
        assert!(!starts_keyframe(&[0x41, 0x9a, 0x00]));
        // STAP-A with SPS then PPS; with a lone PPS.
        assert!(starts_keyframe(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ]));
        assert!(!starts_keyframe(&[0x78, 0x00, 0x02, 0x68, 0xce]));
        // FU-A: first fragment of an IDR slice, a middle fragment, a non-IDR first fragment.
        assert!(starts_keyframe(&[0x7c, 0x85, 0x88]));
        assert!(!starts_keyframe(&[0x7c, 0x05, 0x88]));
        assert!(!starts_keyframe(&[0x7c, 0x81, 0x9a]));
        // Truncated or empty payloads never start one.
        assert!(!starts_keyframe(&[]));
        assert!(!starts_keyframe(&[0x7c]));
        assert!(!starts_keyframe(&[0x78, 0x00]));
        assert!(!starts_keyframe(&[0x78, 0x00, 0x00, 0x67]));
    }
}
