//! What the router fuzz targets share: a [`Meeting`] (one sans-IO `Worker` and str0m clients
//! connected to it in memory under a virtual clock, on `diemcau_sfu::testkit`) and a
//! builder of STUN messages with a correct or broken MESSAGE-INTEGRITY and FINGERPRINT.
//!
//! Each fuzz input gets a fresh meeting, so that an input's outcome does not depend on the
//! inputs before it and every crash reproduces from its file alone. DTLS certificates are made
//! once per process, which keeps set-up to the ICE and DTLS handshakes.

pub mod datagram;
pub mod encode;
pub mod meeting;
pub mod relay;
pub mod stun;

pub use datagram::DatagramOp;
pub use meeting::{Client, Meeting, MeetingConfig, RIDS, STEP, STUDIO};
pub use relay::RelayOp;

/// Reads up to `max` operations with `read`, stopping at the first that does not read whole.
fn read_ops<T>(
    data: &[u8],
    max: usize,
    read: impl Fn(&mut arbitrary::Unstructured<'_>) -> arbitrary::Result<T>,
) -> Vec<T> {
    let mut u = arbitrary::Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < max && !u.is_empty() {
        match read(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// An extended sequence number after `last`, as a `sequence` field says it: 0 the next one,
/// 1 `value` further, 2 `value` back, else `value` itself.
fn next_sequence(last: u64, sequence: u8, value: u64) -> u64 {
    match sequence {
        0 => last.wrapping_add(1),
        1 => last.wrapping_add(value),
        2 => last.wrapping_sub(value),
        _ => value,
    }
}

/// A payload of `length % 1501` bytes that starts with `head` (zeros after).
fn payload(length: u16, head: &[u8]) -> Vec<u8> {
    let mut payload = vec![0u8; usize::from(length) % 1501];
    for (p, h) in payload.iter_mut().zip(head) {
        *p = *h;
    }
    payload
}
