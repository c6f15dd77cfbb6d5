//! diemcau-sfu: the media routing core of the diemcau hub, a selective forwarding unit over
//! [str0m](https://docs.rs/str0m).
//!
//! The crate has no sockets, threads or clock: a [`Worker`] is a state machine fed with
//! datagrams, relayed packets and the current time, and everything it wants done comes out of
//! [`Worker::poll_output`]: datagrams to send, packets to relay to the other workers, events for
//! the meeting logic, and when to wake it next. The hub's media driver owns the UDP sockets and
//! threads; tests drive the same code with a virtual clock.
//!
//! Vocabulary (as in mediasoup and LiveKit): a **router** per meeting holds **producers**
//! (incoming tracks) and **consumers** (a producer forwarded to one peer); routing is two maps,
//! producer → consumers and consumer → producer. Packets are forwarded as RTP without decoding;
//! each consumer gets its own contiguous sequence numbers, NACKs are answered from str0m's send
//! buffer (RTX when negotiated), and a new consumer triggers a keyframe request to its producer,
//! merged and throttled so that many joiners cost the publisher's encoder one keyframe.
//!
//! Layout, top-down: [`Worker`] (`worker.rs`) owns the peers and drives the parts below it:
//! `core.rs` (driving one peer's `Rtc`, timers, queued work), `forward.rs` (a packet to its
//! consumers), `peer.rs` (one connection and its negotiation), `router.rs` (the routing maps),
//! `allocate.rs` (which layer each consumer gets), `keyframes.rs` (merging and throttling
//! keyframe requests), `rewrite.rs` (sequence numbers, timestamps, VP8 picture ids). With the
//! feature `testkit`, `testkit` is the virtual network the scenario tests, the benchmark and
//! the fuzz targets drive workers with.
//!
//! ```no_run
//! use std::time::Instant;
//! use diemcau_sfu::{Output, PeerId, RouterId, Worker, WorkerConfig};
//!
//! # fn offer_from_client() -> String { String::new() }
//! let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
//! let local = socket.local_addr().unwrap();
//! let mut worker = Worker::new(WorkerConfig::new(vec![local]));
//! let _answer = worker.add_peer(Instant::now(), PeerId(1), RouterId(1), &offer_from_client());
//! let mut buf = vec![0; 2000];
//! loop {
//!     let deadline = loop {
//!         match worker.poll_output() {
//!             Output::Transmit(t) => { socket.send_to(&t.contents, t.destination).unwrap(); }
//!             Output::Event(event) => println!("{event:?}"),
//!             Output::Relay(_) => {} // hand to the other workers
//!             Output::Tapped(_) => {} // a tapped producer's packet, for a recording
//!             Output::Timeout(at) => break at,
//!         }
//!     };
//!     let wait = deadline.saturating_duration_since(Instant::now());
//!     socket.set_read_timeout(Some(wait.max(std::time::Duration::from_millis(1)))).unwrap();
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, source)) => worker.handle_datagram(Instant::now(), source, local, &buf[..n]),
//!         Err(_) => worker.handle_timeout(Instant::now()),
//!     }
//! }
//! ```

// Top-down: each module uses only modules listed below it.
mod worker;

mod core;
mod forward;

mod output;
mod peer;
mod quality;
pub mod red;

mod router;
mod sdp;
mod seal;

mod allocate;
mod config;
mod keyframes;
pub mod overload;
mod rewrite;

pub mod h264;
mod ids;
pub mod stun;
pub mod vp8;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{WorkerConfig, add_h264_profiles};
pub use ids::{ConsumerId, PeerId, ProducerId, RouterId};
pub use output::{Event, Output, ProducerInfo, Relay, WorkerStats};
pub use peer::panic_message;
pub use quality::{Quality, Transport};
pub use rewrite::TimestampRewriter;
pub use router::MediaPacket;
pub use seal::provider as crypto_provider;
pub use worker::Worker;

/// Re-exported so drivers and tests use the same str0m as the core.
pub use str0m;

/// Why the core refused a request. `InvalidSdp`, `NegotiationInProgress` and `NoPendingOffer`
/// are the client's fault; the others are the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("an offer from the hub awaits its answer")]
    NegotiationInProgress,
    #[error("no offer from the hub awaits an answer")]
    NoPendingOffer,
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("peer {0} exists already")]
    PeerExists(PeerId),
    #[error("consumer {0} exists already")]
    ConsumerExists(ConsumerId),
    #[error("configuration: {0}")]
    Config(String),
}
