//! Datagrams on the worker's socket, from anyone, while a meeting is up.
//!
//! Each input is a sequence of operations ([`DatagramOp`], whose module gives the byte format)
//! on a fresh [`Meeting`]: a studio (video in three simulcast layers) and a site, connected,
//! each consuming the other's audio and video, under a virtual clock.
//! - raw bytes from a chosen source: a connected client's address (routed by address straight
//!   into its DTLS/SRTP/STUN demultiplexing), a stranger's, or the hub's own;
//! - a STUN message with chosen type, USERNAME, PRIORITY, USE-CANDIDATE, role and any further
//!   attributes, authenticated with the hub's real ICE password or not (routing by ufrag, new
//!   candidate addresses, role conflicts);
//! - a replay of one of a client's recent real datagrams (STUN, DTLS, SRTP, SRTCP), from any
//!   source, with bytes flipped or cut;
//! - RTP written by a client through its own str0m (valid SRTP with hostile sequence numbers,
//!   the other m-line's payload types, any simulcast layer, any VP8 descriptor and payload),
//!   and keyframe requests (RTCP);
//! - RTCP a client writes itself, any bytes, protected under its session's SRTCP keys (what
//!   str0m parses and acts on once SRTCP lets it through: reports, NACKs, transport-wide
//!   feedback, well formed or not);
//! - the clock moving on, with `handle_timeout` and every output drained.
//!
//! Never panic. And as long as nothing carries a client's credentials (its ICE password, or
//! keys it really used), no peer may be closed: a datagram that anyone could forge must not end
//! a participant's connection.

#![no_main]

use std::time::Duration;

use diemcau_fuzz::{DatagramOp, Meeting, MeetingConfig};
use libfuzzer_sys::fuzz_target;

/// At most this many operations per input, so one input stays in the milliseconds.
const MAX_OPS: usize = 48;

fuzz_target!(|data: &[u8]| {
    let ops = DatagramOp::read_all(data, MAX_OPS);
    if ops.is_empty() {
        return;
    }
    let mut meeting = Meeting::new(MeetingConfig {
        sites: 1,
        remote_producers: false,
        simulcast: true,
    });
    for op in &ops {
        op.apply(&mut meeting);
    }
    meeting.net.run(Duration::from_millis(100), |_| {});
    if ops.iter().all(DatagramOp::forgeable) {
        assert!(
            meeting.net.closed.is_empty(),
            "forgeable datagrams closed {:?}",
            meeting.net.closed
        );
    }
});
