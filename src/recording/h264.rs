//! What a Matroska H.264 track needs to know of its stream before its first sample: the
//! `avcC` record (ISO/IEC 14496-15 5.3.3.1) made of the sequence and picture parameter sets,
//! and the picture's size, read from the sequence parameter set (ITU-T H.264 7.3.2.1.1).

use diemcau_sfu::h264::{IDR, PPS, SPS, unit_type, units};

/// The parameter sets a keyframe's sample carries, as a track starts with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameters {
    /// The `avcC` record: Matroska's `CodecPrivate` of the track.
    pub avcc: Vec<u8>,
    /// The picture's width and height, when the sequence parameter set could be read.
    pub size: Option<(u32, u32)>,
}

/// Whether `sample` (NAL units with 4-byte lengths) holds an IDR slice.
pub fn is_keyframe(sample: &[u8]) -> bool {
    units(sample).any(|unit| unit_type(unit) == Some(IDR))
}

/// The parameter sets of a sample that has a sequence and a picture parameter set.
pub fn parameters(sample: &[u8]) -> Option<Parameters> {
    let sps = units(sample).find(|unit| unit_type(unit) == Some(SPS))?;
    let pps = units(sample).find(|unit| unit_type(unit) == Some(PPS))?;
    let (profile, compatibility, level) = (*sps.get(1)?, *sps.get(2)?, *sps.get(3)?);
    let mut avcc = vec![1, profile, compatibility, level, 0xff, 0xe1];
    for (i, set) in [sps, pps].into_iter().enumerate() {
        if i == 1 {
            avcc.push(1); // one picture parameter set
        }
        avcc.extend_from_slice(&u16::try_from(set.len()).ok()?.to_be_bytes());
        avcc.extend_from_slice(set);
    }
    Some(Parameters {
        avcc,
        size: picture_size(sps),
    })
}

/// The bits of a NAL unit's payload, emulation prevention bytes (`00 00 03`) taken out.
struct Bits {
    bytes: Vec<u8>,
    at: usize,
}

impl Bits {
    fn new(unit: &[u8]) -> Bits {
        let mut bytes = Vec::with_capacity(unit.len());
        let mut zeros = 0;
        for &b in unit {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            bytes.push(b);
        }
        Bits { bytes, at: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.bytes.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |value, _| Some((value << 1) | self.bit()?))
    }

    /// An unsigned Exp-Golomb number (`ue(v)`).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// A signed Exp-Golomb number (`se(v)`).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// The cropped picture size a sequence parameter set declares.
fn picture_size(sps: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits::new(sps.get(1..)?);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    // Cropping is counted in chroma samples (H.264 7.4.2.1.1, table 6-1).
    let (sub_width, sub_height) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = if chroma_format == 0 { 1 } else { sub_width };
    let crop_y = (if chroma_format == 0 { 1 } else { sub_height }) * (2 - frame_mbs_only);
    // Sizes from a malformed set can be anything: every step is checked.
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(left.checked_add(right)?.checked_mul(crop_x)?)?;
    let height = (2 - frame_mbs_only)
        .checked_mul(height_units)?
        .checked_mul(16)?
        .checked_sub(top.checked_add(bottom)?.checked_mul(crop_y)?)?;
    (width > 0 && height > 0).then_some((width, height))
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(units: &[&[u8]]) -> Vec<u8> {
        let mut sample = Vec::new();
        for unit in units {
            sample.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            sample.extend_from_slice(unit);
        }
        sample
    }

    #[test]
    fn the_parameter_sets_give_the_avcc_record_and_the_picture_size() {
        // x264's SPS for 1280x720 (baseline) and 1920x1080 (high: 1088 cropped to 1080),
        // emulation prevention bytes inside, and a PPS.
        let sps_720: &[u8] = &[
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
        ];
        let sps_1080: &[u8] = &[
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
        ];
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let idr: &[u8] = &[0x65, 0x88, 0x84];
        let keyframe = sample(&[sps_720, pps, idr]);
        assert!(is_keyframe(&keyframe));
        let found = parameters(&keyframe).expect("parameters");
        assert_eq!(found.size, Some((1280, 720)));
        assert_eq!(&found.avcc[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
        assert_eq!(&found.avcc[6..8], &[0, sps_720.len() as u8]);
        assert_eq!(found.avcc.len(), 6 + 2 + sps_720.len() + 1 + 2 + pps.len());
        let high = parameters(&sample(&[sps_1080, pps, idr])).expect("parameters");
        assert_eq!(high.size, Some((1920, 1080)));
        assert!(!is_keyframe(&sample(&[&[0x41, 0x9a]])));
        assert_eq!(parameters(&sample(&[idr])), None, "no parameter sets");
    }

    #[test]
    fn any_bytes_from_an_encoder_are_read_without_a_panic() {
        // A fixed xorshift sequence: short payloads, NAL types and sizes of every kind.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                // Mostly SPS, PPS, IDR, STAP-A and FU-A headers.
                *first = [0x67, 0x68, 0x65, 0x78, 0x7c, 0x41][(next() % 6) as usize];
            }
            let payloads: Vec<&[u8]> = bytes.split(|&b| b == 0xff).collect();
            if let Some(sample) = diemcau_sfu::h264::access_unit(payloads.iter().copied()) {
                let _ = is_keyframe(&sample);
                let _ = parameters(&sample);
            }
            let _ = picture_size(&bytes);
        }
    }
}
