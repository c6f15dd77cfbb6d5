//! Any bytes as the RTP payloads of one H.264 picture an encoder sends (split into packets at
//! each `0xff`), joined as the recording joins them, then read for the keyframe test and the
//! parameter sets a Matroska track starts with (the `avcC` record, the picture's size from
//! the sequence parameter set).
//!
//! Nothing panics; a joined sample is a run of NAL units each behind its 4-byte length, and an
//! `avcC` record found is the one the sample's own parameter sets make.

#![no_main]

use diemcau::recording::h264::{is_keyframe, parameters};
use diemcau_sfu::h264::{access_unit, units};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payloads: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let Some(sample) = access_unit(payloads.iter().copied()) else {
        return;
    };
    // The sample is exactly its units, each behind its length.
    let joined: usize = units(&sample).map(|unit| 4 + unit.len()).sum();
    assert_eq!(joined, sample.len(), "a sample is a run of NAL units");
    let _ = is_keyframe(&sample);
    if let Some(found) = parameters(&sample) {
        assert_eq!(found.avcc.first(), Some(&1), "avcC version 1");
        if let Some((width, height)) = found.size {
            assert!(width > 0 && height > 0);
        }
    }
});
