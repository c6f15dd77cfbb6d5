//! Signalling frames as a client may send them, to `ClientMessage::parse`.
//!
//! Two properties on every input:
//! - the raw bytes (as text: valid UTF-8 as is, anything else through a lossy conversion, as a
//!   WebSocket text frame cannot carry invalid UTF-8) never make the parser panic, and a frame
//!   that parses re-serialises to JSON that parses back to the same message;
//! - a message built from the same bytes by `arbitrary`, with any field values (a join code or
//!   a site code that breaks its type's rules included), written as JSON, is either accepted as
//!   the same message (its typed text normalised to NFC, as the protocol says) or refused with
//!   `invalid_field` (the field rules), never as malformed JSON
//!   or an unknown type: what a client writes in the documented shape, the hub reads or refuses
//!   by its field rules.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use diemcau_signaling::protocol::MAX_MESSAGE_BYTES;
use diemcau_signaling::{ClientMessage, ErrorCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(message) = ClientMessage::parse(&text) {
        assert_round_trip(&message);
    }

    let Ok(built) = BuiltMessage::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let value = built.into_json();
    let json = value.to_string();
    match ClientMessage::parse(&json) {
        Ok(parsed) => assert_eq!(
            serde_json::to_value(&parsed).expect("a client message serialises"),
            as_accepted(value),
            "round trip of {json}"
        ),
        Err(e) if json.len() > MAX_MESSAGE_BYTES => assert_eq!(e.code, ErrorCode::MessageTooLarge),
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidField, "{json} refused: {e}"),
    }
});

/// `value` as the hub keeps it once accepted: a head count's typed text (who confirmed it,
/// their position) normalised to NFC, as `docs/protocol.md` says.
fn as_accepted(mut value: serde_json::Value) -> serde_json::Value {
    if value["type"] == "head_count" {
        for field in ["confirmed_by", "position"] {
            if let Some(text) = value[field].as_str() {
                let normalised = diemcau_signaling::text::human_text(text, usize::MAX)
                    .expect("accepted text passes the text rules");
                value[field] = normalised.into();
            }
        }
    }
    value
}

fn assert_round_trip(message: &ClientMessage) {
    let json = serde_json::to_string(message).expect("a parsed message serialises");
    let again = ClientMessage::parse(&json)
        .unwrap_or_else(|e| panic!("{message:?} re-serialised as {json} does not parse: {e}"));
    assert_eq!(&again, message, "round trip through {json}");
    assert_eq!(again.kind(), message.kind());
}

/// A client message in the documented shape, with any field values, valid or not.
#[derive(Debug, Arbitrary)]
enum BuiltMessage {
    Join {
        code: String,
        meeting: Option<i64>,
    },
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    HeadCount {
        count: u32,
        confirmed_by: String,
        position: String,
    },
    Leave,
    Ping,
}

impl BuiltMessage {
    fn into_json(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            BuiltMessage::Join { code, meeting } => {
                json!({"type": "join", "code": code, "meeting": meeting})
            }
            BuiltMessage::Offer { sdp } => json!({"type": "offer", "sdp": sdp}),
            BuiltMessage::Answer { sdp } => json!({"type": "answer", "sdp": sdp}),
            BuiltMessage::HeadCount {
                count,
                confirmed_by,
                position,
            } => json!({
                "type": "head_count",
                "count": count,
                "confirmed_by": confirmed_by,
                "position": position,
            }),
            BuiltMessage::Leave => json!({"type": "leave"}),
            BuiltMessage::Ping => json!({"type": "ping"}),
        }
    }
}
