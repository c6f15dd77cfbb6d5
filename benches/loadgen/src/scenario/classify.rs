//! Why a participant did not get media, from its peer's status and its signalling record.

use crate::engine::PeerStatus;
use crate::signaling::SignallingRecord;

/// Why a participant did not get media: signalling first (it comes first), then ICE, DTLS,
/// and media.
pub fn classify(
    status: Option<&PeerStatus>,
    record: Option<&SignallingRecord>,
    expects_media: bool,
) -> (String, String) {
    if let Some(failure) = record.and_then(|r| r.failure.as_ref()) {
        return (
            failure.reason(),
            serde_json::to_string(failure).unwrap_or_default(),
        );
    }
    let Some(status) = status else {
        return (
            "signalling:no_answer".to_owned(),
            "no peer was created (no `joined` from the hub)".to_owned(),
        );
    };
    if status.ice_connected_ns.is_none() {
        // str0m may report a DTLS timeout too, but without ICE no DTLS packet got through.
        let detail = match &status.error {
            Some(error) => format!("ICE never connected; then str0m failed: {error}"),
            None => "no ICE connectivity before the deadline".to_owned(),
        };
        return ("ice_timeout".to_owned(), detail);
    }
    if let Some(error) = &status.error {
        return ("dtls_failure".to_owned(), error.clone());
    }
    if status.connected_ns.is_none() {
        return (
            "dtls_failure".to_owned(),
            "ICE up, DTLS handshake not finished before the deadline".to_owned(),
        );
    }
    if expects_media && status.first_media_ns.is_none() {
        return (
            "no_media".to_owned(),
            "connected, but no media before the deadline".to_owned(),
        );
    }
    ("ok".to_owned(), String::new())
}
