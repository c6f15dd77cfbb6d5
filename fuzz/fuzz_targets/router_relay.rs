//! Relayed packets, as another worker hands them over, into a worker whose consumers are
//! connected.
//!
//! Each input is a sequence of operations ([`RelayOp`], whose module gives the byte format) on
//! a fresh [`Meeting`] with relaying on (worker 0 of 2): a studio publishing audio and video
//! (three simulcast layers) on this worker, two sites consuming it and also two producers of
//! the other worker (ids 2 and 4), the studio consuming both sites.
//! - `Relay::Media` with any router and producer (local, remote or unknown), kind, codec,
//!   simulcast layer, sequence number (next, a step, a rollback, or any 64-bit value), RTP time, marker, header
//!   extensions, payload of 0 to 1500 bytes, and a reception instant up to 32 s off the
//!   worker's clock either way (relays carry other threads' clocks);
//! - `Relay::KeyframeRequest` for any router, producer and layer;
//! - the studio's own RTP (any layer, VP8 descriptor, sequence number), and the packets this
//!   worker relayed from it handed back with another producer, layer or sequence number (the
//!   only way to relay a parsed VP8 descriptor from outside the crate);
//! - the hub's meeting logic: `set_max_layer`, `set_producer_paused`, `add_consumer`,
//!   `remove_consumer`, `remove_producer` with any ids;
//! - keyframe requests (PLI or FIR) from a client on any track it receives;
//! - the clock moving on, with `handle_timeout` and every output delivered to the clients.
//!
//! This drives the forwarding path with hostile values: sequence rewriting, payload type
//! mapping, str0m's `write_rtp`, the send buffer and the NACK/RTX answers to the gaps it makes,
//! and the clients receiving all of it. Never panic.

#![no_main]

use std::time::Duration;

use diemcau_fuzz::relay::RelayState;
use diemcau_fuzz::{Meeting, MeetingConfig, RelayOp};
use libfuzzer_sys::fuzz_target;

/// At most this many operations per input, so one input stays in the milliseconds.
const MAX_OPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let ops = RelayOp::read_all(data, MAX_OPS);
    if ops.is_empty() {
        return;
    }
    let mut meeting = Meeting::new(MeetingConfig {
        sites: 2,
        remote_producers: true,
        simulcast: true,
    });
    let mut state = RelayState::default();
    for op in &ops {
        op.apply(&mut meeting, &mut state);
    }
    meeting.net.run(Duration::from_millis(100), |_| {});
});
