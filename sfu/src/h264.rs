//! Just enough of the H.264 RTP payload format (RFC 6184) to start a receiver on a picture it
//! can decode (whether a packet begins an IDR picture or the parameter sets before one), and to
//! join a picture's packets back into its NAL units (for a recording).

/// NAL unit types (ITU-T H.264 table 7-1, RFC 6184 section 5.2) that matter here.
pub const IDR: u8 = 5;
pub const SPS: u8 = 7;
pub const PPS: u8 = 8;
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

/// The NAL units of one picture, joined from its RTP payloads in order (single NAL unit
/// packets, STAP-A aggregates, FU-A fragments), each preceded by its length in 4 bytes: an
/// H.264 sample as Matroska and MP4 store it (ISO/IEC 14496-15). `None` when a payload is
/// malformed, a fragmented unit is incomplete, or a payload type is one browsers and encoders
/// in packetization mode 1 do not send (STAP-B, MTAP, FU-B).
pub fn access_unit<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut sample = Vec::new();
    // Where the length of the fragmented unit being joined goes.
    let mut open: Option<usize> = None;
    for payload in payloads {
        let first = *payload.first()?;
        match first & 0x1f {
            0 | 25..=27 | 29..=31 => return None,
            STAP_A => {
                if open.is_some() {
                    return None;
                }
                let mut at = 1;
                while at < payload.len() {
                    let size = usize::from(u16::from_be_bytes([
                        *payload.get(at)?,
                        *payload.get(at + 1)?,
                    ]));
                    let unit = payload.get(at + 2..at + 2 + size)?;
                    if unit.is_empty() {
                        return None;
                    }
                    push_unit(&mut sample, unit);
                    at += 2 + size;
                }
            }
            FU_A => {
                let fu = *payload.get(1)?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                match (start, open) {
                    (true, None) => {
                        open = Some(sample.len());
                        sample.extend_from_slice(&[0; 4]);
                        sample.push((first & 0xe0) | (fu & 0x1f));
                    }
                    (false, Some(_)) => {}
                    _ => return None,
                }
                sample.extend_from_slice(payload.get(2..)?);
                if end {
                    let at = open.take()?;
                    let size = u32::try_from(sample.len() - at - 4).ok()?;
                    sample
                        .get_mut(at..at + 4)?
                        .copy_from_slice(&size.to_be_bytes());
                }
            }
            _ => {
                if open.is_some() {
                    return None;
                }
                push_unit(&mut sample, payload);
            }
        }
    }
    if open.is_some() || sample.is_empty() {
        return None;
    }
    Some(sample)
}

fn push_unit(sample: &mut Vec<u8>, unit: &[u8]) {
    let size = u32::try_from(unit.len()).unwrap_or(u32::MAX);
    sample.extend_from_slice(&size.to_be_bytes());
    sample.extend_from_slice(unit);
}

/// The NAL units of a sample [`access_unit`] made (each without its length).
pub fn units(sample: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = sample;
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let unit = rest.get(4..4 + usize::try_from(size).ok()?)?;
        rest = rest.get(4 + unit.len()..)?;
        Some(unit)
    })
}

/// A NAL unit's type.
pub fn unit_type(unit: &[u8]) -> Option<u8> {
    unit.first().map(|b| b & 0x1f)
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

    #[test]
    fn a_picture_is_joined_from_aggregates_fragments_and_single_units() {
        // SPS and PPS in a STAP-A, an IDR slice in three FU-A fragments, an SEI alone.
        let stap: &[u8] = &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68];
        let fu_start: &[u8] = &[0x7c, 0x85, 0x01, 0x02];
        let fu_middle: &[u8] = &[0x7c, 0x05, 0x03];
        let fu_end: &[u8] = &[0x7c, 0x45, 0x04];
        let sei: &[u8] = &[0x06, 0x05];
        let sample = access_unit([stap, fu_start, fu_middle, fu_end, sei]).expect("a sample");
        let units: Vec<&[u8]> = units(&sample).collect();
        assert_eq!(
            units,
            vec![
                &[0x67, 0x42][..],
                &[0x68][..],
                &[0x65, 0x01, 0x02, 0x03, 0x04][..],
                &[0x06, 0x05][..]
            ]
        );
        assert_eq!(&sample[..6], &[0, 0, 0, 2, 0x67, 0x42]);
        // A fragment whose start was lost, one never ended, a truncated aggregate.
        assert_eq!(access_unit([fu_middle, fu_end]), None);
        assert_eq!(access_unit([fu_start, fu_middle]), None);
        assert_eq!(access_unit([&[0x78, 0x00, 0x05, 0x67][..]]), None);
        assert_eq!(access_unit([&[][..]]), None);
    }
}
