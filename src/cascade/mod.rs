//! Hubs in a tree: a national hub at the root, provincial hubs below it (nodes), each with its
//! own communes. This module holds the link between a child hub and its parent:
//!
//! - the parent issues each child a **node credential** (`diemcau node add`), keeps only its
//!   SHA-256 ([`crate::store::NodeRecord`]), and accepts the child's link on `GET /node`
//!   ([`parent`]): a WebSocket whose upgrade carries the credential as a bearer token and the
//!   node protocol's version;
//! - the child (`--parent URL` with its credential) keeps that link up by itself ([`link`]):
//!   it reconnects with a growing backoff after a drop, and after a refusal of its credential it
//!   waits minutes, never retrying in a tight loop; over HTTPS it checks the parent's
//!   certificate against the system's roots, or against a pinned SHA-256 for a parent with a
//!   self-signed certificate ([`pinning`]);
//! - both ends measure the link's round-trip time and show its state on `/api/health` and
//!   `/metrics`.
//!
//! Over the link, national meetings come down ([`mirror`]: each province's part, with its own
//! join links), attendance goes up exactly once ([`mirror`]), and the national studio's media
//! comes down once per province: the child's [`relay`] joins the parent's meeting as a `node`
//! participant ([`seats`] on the parent) and publishes what it receives as the studio of its
//! own part ([`bridge`]). `docs/cascade.md` says what is built and what is not.

pub mod bridge;
pub mod cli;
pub mod link;
pub mod mirror;
pub mod parent;
pub mod pinning;
pub mod relay;
pub mod sdp_text;
pub mod seats;

use serde::{Deserialize, Serialize};

/// The version of the node protocol this hub speaks; a link of another version is refused.
/// Version 2: a relay sends its communes up on upward slots named by `relay_streams`.
pub const NODE_PROTOCOL: u32 = 2;

/// The upgrade header that carries the child's node protocol version.
pub const PROTOCOL_HEADER: &str = "x-diemcau-node-protocol";

/// How often the child pings its parent; the parent drops a link silent for four times that.
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// A message on the node link (JSON text frames, like the signalling protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeMessage {
    /// Parent → child, first: the link is accepted, for this node and these provinces.
    Welcome {
        protocol: u32,
        node: String,
        provinces: Vec<String>,
    },
    /// Child → parent, every [`PING_INTERVAL`]; `at` is the child's clock, echoed back.
    Ping { at: i64 },
    /// Parent → child: the answer to `ping`.
    Pong { at: i64 },
    /// Parent → child, last: the credential no longer holds (revoked); the link closes.
    Refused { code: String, message: String },
    /// Parent → child, after `welcome` and at every change: the parent's meetings that invite
    /// sites of the child's provinces, each with those sites only.
    Meetings { meetings: Vec<NodeMeeting> },
    /// Child → parent: events of the child's part of the parent's meeting `meeting`, numbered
    /// in the child's log, which this batch covers up to `through`.
    Events {
        meeting: i64,
        through: u64,
        events: Vec<crate::attendance::Event>,
    },
    /// Parent → child: the child's log of `meeting`'s part is stored up to `through`.
    Stored { meeting: i64, through: u64 },
    /// Child → parent: relay meeting `meeting` (in progress, concerning the child) to the
    /// child's communes: the parent seats the child as a `node` participant, which receives
    /// what a site receives. Answered with `relay_down` carrying `joined` or `error`.
    RelayJoin { meeting: i64 },
    /// Child → parent: a signalling message (docs/protocol.md: `offer`, `answer`, `leave`) of
    /// the child's relay of `meeting`, handled as the participant's own.
    RelayUp {
        meeting: i64,
        message: Box<diemcau_signaling::ClientMessage>,
    },
    /// Parent → child: a message of the hub to the child's relay of `meeting` (`joined`,
    /// `answer`, `offer`, `error`...), as a participant receives it.
    RelayDown {
        meeting: i64,
        message: Box<diemcau_signaling::ServerMessage>,
    },
    /// Child → parent: the relay of `meeting` ends (the link's end ends every relay too).
    RelayLeave { meeting: i64 },
    /// Child → parent: the child's console rows of its sites in `meeting` (as its own
    /// `console` message has them), every few seconds while the relay runs: the parent's chair
    /// sees them.
    RelayConsole {
        meeting: i64,
        sites: Vec<diemcau_signaling::protocol::ConsoleSite>,
    },
    /// Child → parent: which of the child's sites each track the relay of `meeting` sends up
    /// carries now (by the m-line's mid in the relay's media connection); the relay's other
    /// tracks carry none. Sent whole at each change.
    RelayStreams {
        meeting: i64,
        streams: Vec<RelayStream>,
    },
    /// Child → parent: a site of the child answered the parent's roll call `roll_call` on its
    /// own hub.
    RelayRollCallAnswer {
        meeting: i64,
        roll_call: u32,
        site: String,
        count: u32,
        confirmed_by: String,
        position: String,
    },
}

/// One track a relay sends up, and the site it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayStream {
    pub mid: String,
    pub site: String,
}

/// A meeting of the parent as a child hub gets it: the part that concerns the child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMeeting {
    /// The meeting's id on the parent.
    pub id: i64,
    pub title: String,
    pub studio_name: String,
    pub scheduled_start: i64,
    pub scheduled_end: i64,
    /// `scheduled`, `in_progress` or `ended`.
    pub state: String,
    /// The invited sites of the child's provinces.
    pub sites: Vec<NodeSite>,
}

/// An invited site as the parent's directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSite {
    pub code: String,
    pub name: String,
    pub kind: String,
    pub parent_code: Option<String>,
    pub parent_name: Option<String>,
    pub expected_delegates: u32,
}

impl NodeMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a node name or province code is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    #[error("a node name is 1 to 64 lower-case letters, digits and dashes: {0:?}")]
    Name(String),
    #[error("a province code is 1 to 5 digits, as in the official list (Tuyên Quang: 08): {0:?}")]
    Province(String),
}

/// Checks a node's name (it appears in logs, metrics labels and the console).
pub fn check_name(name: &str) -> Result<(), NodeNameError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(NodeNameError::Name(name.to_owned()))
    }
}

/// Checks a province code.
pub fn check_province(code: &str) -> Result<(), NodeNameError> {
    if (1..=5).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(NodeNameError::Province(code.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_provinces_are_checked() {
        assert!(check_name("tuyen-quang").is_ok());
        for bad in ["", "Tuyên Quang", "a b", "x".repeat(65).as_str(), "a_b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_province("08").is_ok());
        for bad in ["", "8a", "123456", "-1"] {
            assert!(check_province(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_refuse_unknown_fields() {
        assert_eq!(
            serde_json::from_str::<NodeMessage>(r#"{"type":"ping","at":5}"#).ok(),
            Some(NodeMessage::Ping { at: 5 })
        );
        assert!(serde_json::from_str::<NodeMessage>(r#"{"type":"ping","at":5,"x":1}"#).is_err());
    }
}
