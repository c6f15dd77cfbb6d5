//! Wire types of the signalling protocol, version 1.
//!
//! Every frame is one JSON object with a `"type"` field. [`ClientMessage::parse`] turns a raw text
//! frame into a typed message once, at the edge, and says whose fault a bad frame is through a
//! [`ProtocolError`] whose [`ErrorCode`] goes on the wire unchanged. `docs/protocol.md` is the
//! reference for client authors; keep it in step with this file.

use serde::{Deserialize, Serialize};

pub use crate::ids::{JoinCode, MeetingId, SiteCode};

/// Protocol version spoken by this hub, announced in [`ServerMessage::Joined`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest text frame the hub reads as a message (1 MiB): room for the studio's SDP answer
/// when it receives the wall of several hundred sites (two m-lines each, about 1 KiB per line).
/// Larger frames are answered with [`ErrorCode::MessageTooLarge`] and the session stays up.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What a participant is in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The provincial studio (the chair): one per meeting, broadcasts to every site.
    Studio,
    /// A commune hall (a *điểm cầu*).
    Site,
    /// A provincial hub relaying the meeting to its own communes (docs/cascade.md). It
    /// receives what a site receives, joins over the node link (never with a code), and is
    /// never announced to other participants.
    Node,
    /// A province's organizer watching its part of a national meeting (docs/cascade.md),
    /// chaired at the centre: it receives the programme, its sites' small pictures and the
    /// console, may not act, and is never announced to other participants.
    Observer,
    /// The studio's encoder (OBS, a vision mixer) publishing the programme over WHIP
    /// (docs/api.md "Studio encoders"): sites receive it in place of the chair's camera. It
    /// receives nothing and never joins over WebSocket; it is announced like the studio, with
    /// an empty name, so that a page knows whose tracks are the programme.
    Encoder,
    /// A player watching the programme over WHEP (docs/api.md "Watch link"): receives what a
    /// site receives, one picture and one sound (the site holding the floor while one does);
    /// never joins over WebSocket and is never announced. Not a bridge point: the report
    /// counts viewers apart from sites.
    Viewer,
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Stable id within the meeting; also the `msid` stream id of every track it publishes.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The site's administrative code (sites only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub site: Option<String>,
}

/// A message from a client (browser or any other WebRTC endpoint) to the hub. The enum is the
/// one list of message types: its `"type"` values ([`CLIENT_MESSAGE_TYPES`],
/// [`ClientMessage::kind`]) are derived from it.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a meeting with a join code. Must be the first message of a session.
    Join {
        code: JoinCode,
        /// The meeting the page was opened for; a code of another meeting is refused.
        #[serde(default)]
        meeting: Option<MeetingId>,
    },
    /// An SDP offer from the client: its first offer publishes its tracks.
    Offer { sdp: String },
    /// The client's answer to the hub's last [`ServerMessage::Offer`].
    Answer { sdp: String },
    /// A site declares how many delegates are present.
    HeadCount {
        count: u32,
        confirmed_by: String,
        position: String,
    },
    /// A site page open but not joined yet (device check...): the chair sees it and can call it.
    Standby {
        code: JoinCode,
        #[serde(default)]
        meeting: Option<MeetingId>,
    },
    /// A site asks for the floor.
    RequestFloor,
    /// A site withdraws its request for the floor.
    CancelFloorRequest,
    /// The chair gives the floor to a site (by administrative code).
    GiveFloor { site: SiteCode },
    /// The chair takes the floor back.
    TakeFloor,
    /// The chair mutes or unmutes a site's microphone (enforced by the hub).
    Mute { site: SiteCode, muted: bool },
    /// The chair mutes or unmutes every site.
    MuteAll { muted: bool },
    /// The chair starts a roll call.
    StartRollCall,
    /// The chair ends the roll call.
    EndRollCall,
    /// A site answers a roll call: present, with its head count.
    AnswerRollCall {
        roll_call: u32,
        count: u32,
        confirmed_by: String,
        position: String,
    },
    /// The chair calls a site whose page is open but not joined.
    CallSite { site: SiteCode },
    /// The chair chooses what the sites receive from the studio while its encoder publishes:
    /// the encoder's programme, or the chair's own camera and microphone.
    SwitchProgramme { source: ProgrammeSource },
    /// The chair starts (`on: true`) or stops the meeting's recording; the hub answers
    /// [`ServerMessage::Recording`] (and `done`).
    Record { on: bool },
    /// The chair's console shows the pictures of these sites now (at most [`MAX_TILES`]):
    /// a site joined to another hub of a national meeting sends its small picture up only
    /// while its tile is on the chair's screen (docs/cascade.md). Sites joined here are sent
    /// to the chair whatever it shows.
    Tiles { sites: Vec<SiteCode> },
    /// Leave the meeting; the hub replies [`ServerMessage::Left`].
    Leave,
    /// Keep-alive; the hub replies [`ServerMessage::Pong`].
    Ping,
}

/// Every value of `"type"` a client may send, in the order of [`ClientMessage`].
pub const CLIENT_MESSAGE_TYPES: &[&str] = <ClientMessage as strum::VariantNames>::VARIANTS;

/// Where the studio's programme comes from while its encoder publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgrammeSource {
    /// The studio's encoder (WHIP), the default.
    #[default]
    Encoder,
    /// The chair's own camera and microphone, the encoder's picture kept in the chair's
    /// preview.
    Camera,
}

/// A message from the hub to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        protocol: u32,
        meeting: MeetingId,
        title: String,
        participant: ParticipantInfo,
        /// Everyone else already in the meeting.
        participants: Vec<ParticipantInfo>,
    },
    /// The hub's answer to the client's [`ClientMessage::Offer`].
    Answer {
        sdp: String,
    },
    /// The hub renegotiates (tracks to receive were added or removed); the client must answer.
    Offer {
        sdp: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant: String,
    },
    /// The hub's view of the media connection: `connected` once ICE and DTLS are up.
    MediaState {
        state: MediaState,
    },
    /// The head count is in the attendance log.
    HeadCountRecorded {
        count: u32,
        at: i64,
    },
    /// Reply to `standby`: the page is known to the chair, who may call it.
    StandbyAccepted {
        meeting: MeetingId,
        title: String,
        site: String,
        name: String,
    },
    /// The chair calls this (standby) site page to join.
    Called {
        by: String,
    },
    /// Who holds the floor and who asked for it; sent to everyone at each change.
    Floor {
        holder: Option<FloorSite>,
        queue: Vec<FloorSite>,
    },
    /// What this client's link carries: `audio_only` when the hub stopped its video because
    /// the link is too weak for even the lowest layer, or, with `hub_load`, because the hub
    /// is over its capacity and keeps the sound of every site first; video comes back by
    /// itself.
    Reception {
        audio_only: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        hub_load: bool,
    },
    /// This site's microphone was muted or unmuted by the chair.
    Muted {
        muted: bool,
    },
    /// To a provincial hub's relay only (docs/cascade.md): the chair here did this to sites of
    /// that hub (`mute`, `mute_all`, `call_site`); the relay does it on its own hub, as its
    /// chair.
    RelayChair {
        action: Box<ClientMessage>,
    },
    /// In a province's part of a national meeting (docs/cascade.md): whether this provincial
    /// hub reaches the national centre. Sent when it changes, and at join while it is out of
    /// reach; the meeting goes on meanwhile without the national studio.
    Centre {
        reachable: bool,
    },
    /// To the studio: whether the attendance log reaches the hub's database (PostgreSQL). While
    /// it cannot, the meeting goes on and its events wait on the hub's own disk: `buffered`
    /// of them, the first recorded at `since`; they are written, in order, when the database
    /// is back. Sent at each change (and at the studio's join while events wait); `buffered`
    /// 0 without `since` once all are written.
    LogState {
        buffered: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
    },
    /// To the chair: the hub's media workers are over their capacity (`level` 1 to 6) and
    /// shed video to keep every site's sound, or are within it again (`level` 0). Levels: 1
    /// the sites receive simulcast layers up to the middle one; 2 the lowest only; 3, 4, 5 a
    /// quarter, half, three quarters of the sites receive sound only; 6 every site receives
    /// sound only. Sent at each change, and at the chair's join while above 0.
    HubLoad {
        level: u8,
    },
    /// A roll call started (`active`) or ended. When it ends, the chair's copy carries its
    /// `result`, frozen: later leaves and joins do not change it.
    RollCall {
        roll_call: u32,
        active: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<RollCallResult>,
    },
    /// Reply to `answer_roll_call`: the answer is in the attendance log.
    RollCallAnswerRecorded {
        roll_call: u32,
        at: i64,
    },
    /// To the chair: a site answered the roll call.
    RollCallAnswer {
        roll_call: u32,
        site: String,
        name: String,
        count: u32,
        confirmed_by: String,
        position: String,
        at: i64,
    },
    /// To the chair, when it joins and at each change: where the studio's programme comes
    /// from. `source`: the chair's choice; `encoder`: whether an encoder publishes now (while
    /// none does, the sites receive the chair's camera whatever the choice).
    Programme {
        source: ProgrammeSource,
        encoder: bool,
    },
    /// To the chair, at each change of the meeting's recording, and when it joins while one
    /// runs or the last one ran into trouble: whether a part is being recorded (`part`, since
    /// `since`, hub time in ms), and `trouble` when recording stopped or could not start by
    /// itself (`low_disk`, `disk_full`, `write_error`).
    Recording {
        recording: bool,
        part: Option<u32>,
        since: Option<i64>,
        trouble: Option<String>,
    },
    /// To the chair, every few seconds: every expected site's state and health.
    Console {
        roll_call: Option<u32>,
        sites: Vec<ConsoleSite>,
    },
    /// A chair action succeeded (its effects arrive as `floor`, `console`...).
    Done {
        request: String,
    },
    Left,
    Pong,
    Error {
        code: ErrorCode,
        message: String,
        /// Whose fault it is: the client's message, a refusal by the rules, or the hub.
        fault: Fault,
        /// Whether the same request, sent again later, can succeed.
        retry: bool,
        /// The `"type"` of the message that caused the error, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request: Option<String>,
        /// With `other_hub`: the public URL of the hub that runs the meeting.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        hub: Option<String>,
    },
}

/// Who is at fault for an error, sent with every error so a client needs no table of codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The client sent something malformed, out of order, or that it may not send.
    Client,
    /// The hub refused it by the meeting's rules or the code's validity (the code is unknown,
    /// the meeting ended, the seat is taken, this role may not do this...).
    Refused,
    /// The hub failed, or is stopping.
    Hub,
}

/// What a roll call found, fixed when it ended: every site that was in the meeting while it
/// ran, answered or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollCallResult {
    pub started_at: i64,
    pub ended_at: i64,
    /// The sites that answered, in the order they answered, each with its head count.
    pub answered: Vec<RollCallAnswered>,
    /// The sites that were in the meeting at some time while it ran and did not answer, in
    /// the console's order.
    pub not_answered: Vec<SiteName>,
    /// The delegates the answers declared, in all.
    pub delegates: u32,
}

/// A site's answer in a roll call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollCallAnswered {
    pub site: String,
    pub name: String,
    pub count: u32,
}

/// A site by its code and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteName {
    pub site: String,
    pub name: String,
}

/// A site in floor messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorSite {
    pub site: String,
    pub name: String,
    /// Its participant id (the stream id of its tracks).
    pub participant: String,
}

/// One expected site on the chair's console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSite {
    pub site: String,
    pub name: String,
    pub state: SiteState,
    /// Its participant id while joined.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub participant: Option<String>,
    pub muted: bool,
    pub floor: FloorState,
    /// While it waits for the floor (`floor` `requested`): when it asked, by its own hub's
    /// clock (the chair's queue is in this order, across hubs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub floor_requested_at: Option<i64>,
    pub bitrate_in_kbps: u32,
    pub bitrate_out_kbps: u32,
    pub loss_permille: u32,
    pub rtt_ms: u32,
    /// What its media travels over: `udp`, or `tcp` when its network passes only TCP (less
    /// smooth under loss); `null` until the hub has seen it connected.
    #[serde(default)]
    pub transport: Option<MediaTransport>,
    pub expected_delegates: u32,
    /// The latest declared head count.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub head_count: Option<u32>,
    /// Answered the running roll call.
    pub answered_roll_call: bool,
    /// Its join code was tried too often (a leaked link?): reissue it.
    #[serde(default)]
    pub code_leak_suspected: bool,
    /// In a national meeting at the root: the provincial hub the site is joined to, whose
    /// figures these are (docs/cascade.md); absent for a site of this hub.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// The province the site belongs to, from the hub's directory (the console groups and
    /// filters by it); absent when the directory does not say.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub province: Option<String>,
}

/// The transport of a site's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaTransport {
    Udp,
    /// ICE over TCP (RFC 6544): the hall's network passes only TCP.
    Tcp,
}

impl MediaTransport {
    /// `udp` or `tcp`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaTransport::Udp => "udp",
            MediaTransport::Tcp => "tcp",
        }
    }
}

/// Where a site stands with the floor, on the chair's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorState {
    /// It holds the floor.
    Holder,
    /// It asked for the floor and waits.
    Requested,
    None,
}

/// A site's state as the chair sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Not joined, no page open.
    NotJoined,
    /// Its page is open (standby) but it has not joined.
    PageOpen,
    /// Joined; the media connection is being set up.
    Connecting,
    /// Joined, receiving and sending media.
    Live,
    /// Joined, receiving the studio's audio only (weak link).
    AudioOnly,
    /// Dropped less than the grace period ago: expected back.
    Reconnecting,
    /// Left.
    Left,
}

/// The hub's view of a participant's media connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    Connected,
    Disconnected,
}

/// Stable error codes. The first group is the client's fault (a malformed or out-of-order
/// message), the second a refusal by the meeting rules, the last the hub's own failure.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    BinaryNotSupported,
    RateLimited,
    Timeout,
    UnknownType,
    InvalidField,
    MessageTooLarge,
    NotJoined,
    AlreadyJoined,
    NoPendingOffer,
    NegotiationInProgress,
    InvalidSdp,

    CodeUnknown,
    CodeRevoked,
    CodeOtherMeeting,
    MeetingEnded,
    /// The studio's code was used without an organizer logged in on the page's browser.
    LoginRequired,
    Forbidden,
    Replaced,
    SiteUnavailable,
    NoRollCall,
    StudioTaken,
    MeetingFull,

    Internal,
    /// The hub is stopping; the client may reconnect when it is back.
    HubShuttingDown,
    /// Another hub sharing this hub's database runs the meeting now: the error's `hub` says
    /// where (absent when it is not known yet: try again here, or another hub, shortly).
    OtherHub,
}

impl ErrorCode {
    /// Who is at fault when this code is sent.
    pub fn fault(self) -> Fault {
        use ErrorCode::*;
        match self {
            MalformedJson
            | BinaryNotSupported
            | RateLimited
            | Timeout
            | UnknownType
            | InvalidField
            | MessageTooLarge
            | NotJoined
            | AlreadyJoined
            | NoPendingOffer
            | NegotiationInProgress
            | InvalidSdp => Fault::Client,
            CodeUnknown | CodeRevoked | CodeOtherMeeting | MeetingEnded | LoginRequired
            | Forbidden | Replaced | SiteUnavailable | NoRollCall | StudioTaken | MeetingFull => {
                Fault::Refused
            }
            Internal | HubShuttingDown | OtherHub => Fault::Hub,
        }
    }

    /// Whether the same request, sent again later, can succeed: after a pause (a flood, a
    /// negotiation still running, a hub failure or restart), once the seat is free or the site
    /// has connected. A join refused with `retry: false`, or such an error the hub sends on its
    /// own, ends the session for good.
    pub fn retry(self) -> bool {
        use ErrorCode::*;
        match self {
            RateLimited
            | Timeout
            | NegotiationInProgress
            | SiteUnavailable
            | StudioTaken
            | MeetingFull
            | Internal
            | HubShuttingDown
            | OtherHub => true,
            MalformedJson | BinaryNotSupported | UnknownType | InvalidField | MessageTooLarge
            | NotJoined | AlreadyJoined | NoPendingOffer | InvalidSdp | CodeUnknown
            | CodeRevoked | CodeOtherMeeting | MeetingEnded | LoginRequired | Forbidden
            | Replaced | NoRollCall => false,
        }
    }

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A message the hub refuses, with the code and text sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    pub request: Option<String>,
    /// With [`ErrorCode::OtherHub`]: where the meeting runs.
    pub hub: Option<String>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            request: None,
            hub: None,
        }
    }

    /// [`ErrorCode::OtherHub`]: the meeting runs on the hub at `hub`, if known.
    pub fn other_hub(hub: Option<String>) -> Self {
        ProtocolError {
            hub,
            ..ProtocolError::new(
                ErrorCode::OtherHub,
                "another hub runs this meeting now; connect to it",
            )
        }
    }

    /// Names the message type that caused the error.
    pub fn in_reply_to(mut self, request: &str) -> Self {
        self.request = Some(request.to_owned());
        self
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message.clone(),
            fault: self.code.fault(),
            retry: self.code.retry(),
            request: self.request.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl ClientMessage {
    /// Parses one text frame, telling apart bad JSON, an unknown `"type"` and bad fields.
    pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                    text.len()
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ProtocolError::new(ErrorCode::MalformedJson, e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                "a message must be a JSON object",
            ));
        };
        let kind = match object.get("type") {
            Some(serde_json::Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidField,
                    "field `type` must be a string",
                ));
            }
            None => {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidField,
                    "missing field `type`",
                ));
            }
        };
        if !CLIENT_MESSAGE_TYPES.contains(&kind.as_str()) {
            return Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown type `{kind}`"),
            )
            .in_reply_to(&kind));
        }
        let fields: Vec<String> = object.keys().cloned().collect();
        let message: ClientMessage = serde_json::from_value(value).map_err(|e| {
            ProtocolError::new(ErrorCode::InvalidField, e.to_string()).in_reply_to(&kind)
        })?;
        // serde refuses unknown fields of messages with fields, not of those without (`ping`,
        // `leave`...): every field sent must be one the message has.
        let known = serde_json::to_value(&message).unwrap_or_default();
        if let Some(unknown) = fields.iter().find(|f| known.get(f.as_str()).is_none()) {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                format!("unknown field `{unknown}` in `{kind}`"),
            )
            .in_reply_to(&kind));
        }
        message.checked().map_err(|e| e.in_reply_to(&kind))
    }

    /// The `"type"` of this message.
    pub fn kind(&self) -> &'static str {
        self.into()
    }

    /// The field rules a type cannot say: a head count's range, how many tiles, and declarations through the
    /// one text check (normalised to NFC on the way).
    fn checked(mut self) -> Result<Self, ProtocolError> {
        if let ClientMessage::HeadCount {
            count,
            confirmed_by,
            position,
        }
        | ClientMessage::AnswerRollCall {
            count,
            confirmed_by,
            position,
            ..
        } = &mut self
        {
            if *count > MAX_HEAD_COUNT {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidField,
                    format!("field `count` must be 0 to {MAX_HEAD_COUNT}"),
                ));
            }
            *confirmed_by = checked_text("confirmed_by", confirmed_by, 128)?;
            *position = checked_text("position", position, 128)?;
        }
        if let ClientMessage::Tiles { sites } = &self
            && sites.len() > MAX_TILES
        {
            return Err(ProtocolError::new(
                ErrorCode::InvalidField,
                format!("field `sites` holds at most {MAX_TILES} sites"),
            ));
        }
        Ok(self)
    }
}

/// Most delegates a hall may declare.
pub const MAX_HEAD_COUNT: u32 = 10_000;

/// Most sites a `tiles` message may name.
pub const MAX_TILES: usize = 200;

fn checked_text(field: &str, value: &str, max_chars: usize) -> Result<String, ProtocolError> {
    crate::text::human_text(value, max_chars)
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidField, format!("field `{field}` {e}")))
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain types cannot fail; fall back to a fixed error just in case.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialisation failed","fault":"hub","retry":true}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        match ClientMessage::parse(text) {
            Ok(m) => panic!("expected an error, parsed {m:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn declarations_are_checked_and_normalised() {
        let m = ClientMessage::parse(
            r#"{"type":"head_count","count":4,"confirmed_by":"Nguye\u0302\u0303n","position":"Chủ tịch"}"#,
        )
        .expect("valid");
        let ClientMessage::HeadCount { confirmed_by, .. } = m else {
            panic!("a head count");
        };
        assert_eq!(confirmed_by, "Nguyễn");
        let spoofed =
            r#"{"type":"head_count","count":4,"confirmed_by":"An\u202Enỗd","position":"B"}"#;
        let e = ClientMessage::parse(spoofed).expect_err("a right-to-left override");
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(e.message.contains("U+202E"), "{}", e.message);
        let blank =
            r#"{"type":"head_count","count":4,"confirmed_by":"\u200B\u200B","position":"B"}"#;
        assert_eq!(code(blank), ErrorCode::InvalidField);
    }

    #[test]
    fn parses_join_and_head_count() {
        let m = ClientMessage::parse(r#"{"type":"join","code":"abc23","meeting":12}"#)
            .expect("valid join");
        assert_eq!(
            m,
            ClientMessage::Join {
                code: JoinCode::try_from("abc23").expect("a join code"),
                meeting: Some(MeetingId(12))
            }
        );
        let m = ClientMessage::parse(
            r#"{"type":"head_count","count":45,"confirmed_by":"Nguyễn Văn An","position":"Chủ tịch"}"#,
        )
        .expect("valid head count");
        assert_eq!(m.kind(), "head_count");
    }

    #[test]
    fn tells_error_kinds_apart() {
        assert_eq!(code("not json"), ErrorCode::MalformedJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"sdp":"x"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"offer","sdp":42}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(code(r#"{"type":"offer"}"#), ErrorCode::InvalidField);
        assert_eq!(
            code(r#"{"type":"join","code":"a b"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"join","code":"ab","meeting":"x"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"join","code":"ab","role":"site"}"#),
            ErrorCode::InvalidField
        );
        for unknown in [
            r#"{"type":"ping","x":1}"#,
            r#"{"type":"leave","reason":"bye"}"#,
            r#"{"type":"take_floor","site":"2269"}"#,
        ] {
            assert_eq!(code(unknown), ErrorCode::InvalidField, "{unknown}");
        }
        assert!(
            ClientMessage::parse(r#"{"type":"join","code":"ab"}"#).is_ok(),
            "optional fields may be left out"
        );
        let head = |count: &str| {
            code(&format!(
                r#"{{"type":"head_count","count":{count},"confirmed_by":"A","position":"B"}}"#
            ))
        };
        assert_eq!(head("-5"), ErrorCode::InvalidField);
        assert_eq!(head("10001"), ErrorCode::InvalidField);
        assert_eq!(head("2.5"), ErrorCode::InvalidField);
        assert_eq!(
            code(r#"{"type":"head_count","count":5,"confirmed_by":"","position":"B"}"#),
            ErrorCode::InvalidField
        );
        let huge = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(code(&huge), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn error_codes_serialise_as_documented() {
        for code in <ErrorCode as strum::VariantArray>::VARIANTS {
            let json = serde_json::to_string(code).expect("serialise");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn every_error_says_whose_fault_it_is_and_whether_to_retry() {
        let message = ProtocolError::new(ErrorCode::MeetingFull, "full").to_message();
        let json = serde_json::to_value(&message).expect("serialise");
        assert_eq!(json["fault"], "refused");
        assert_eq!(json["retry"], true);
        let message = ProtocolError::new(ErrorCode::CodeRevoked, "revoked").to_message();
        let json = serde_json::to_value(&message).expect("serialise");
        assert_eq!(
            (json["fault"].as_str(), json["retry"].as_bool()),
            (Some("refused"), Some(false))
        );
        let message = ProtocolError::new(ErrorCode::InvalidSdp, "bad").to_message();
        let json = serde_json::to_value(&message).expect("serialise");
        assert_eq!(json["fault"], "client");
        assert_eq!(ErrorCode::Internal.fault(), Fault::Hub);
    }

    #[test]
    fn the_type_names_are_the_serialised_ones() {
        let samples = [
            r#"{"type":"join","code":"a"}"#,
            r#"{"type":"offer","sdp":"v=0"}"#,
            r#"{"type":"cancel_floor_request"}"#,
            r#"{"type":"answer_roll_call","roll_call":1,"count":2,"confirmed_by":"a","position":"b"}"#,
            r#"{"type":"switch_programme","source":"camera"}"#,
            r#"{"type":"record","on":true}"#,
            r#"{"type":"tiles","sites":["02269"]}"#,
            r#"{"type":"ping"}"#,
        ];
        for text in samples {
            let message = ClientMessage::parse(text).expect("valid");
            let json = serde_json::to_value(&message).expect("serialise");
            assert_eq!(json["type"], message.kind());
            assert!(CLIENT_MESSAGE_TYPES.contains(&message.kind()));
        }
        assert_eq!(CLIENT_MESSAGE_TYPES.len(), 20);
    }

    #[test]
    fn tiles_name_at_most_so_many_sites() {
        let sites = |n: usize| {
            let codes: Vec<String> = (0..n).map(|i| format!("\"{i:05}\"")).collect();
            format!(r#"{{"type":"tiles","sites":[{}]}}"#, codes.join(","))
        };
        assert!(ClientMessage::parse(&sites(MAX_TILES)).is_ok());
        assert!(ClientMessage::parse(r#"{"type":"tiles","sites":[]}"#).is_ok());
        assert_eq!(code(&sites(MAX_TILES + 1)), ErrorCode::InvalidField);
        assert_eq!(
            code(r#"{"type":"tiles","sites":["a b"]}"#),
            ErrorCode::InvalidField
        );
    }
}
