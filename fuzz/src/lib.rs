//! What the router fuzz targets share: a [`Meeting`] (one sans-IO `Worker` and str0m clients
//! connected to it in memory under a virtual clock, as in `sfu/tests/common/mod.rs`) and a
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
