//! The facts of the attendance log. Each event is appended once and never changed.

use diemcau_signaling::MediaTransport;
use diemcau_signaling::protocol::ProgrammeSource;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// One fact, as stored: its place in the meeting's stream, when it happened, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the meeting's stream, from 1, without gaps.
    pub seq: u64,
    /// When it happened.
    pub at: Millis,
    /// When the hub wrote it (later than `at` only for facts recovered after a crash).
    pub recorded_at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    MeetingStarted,
    MeetingEnded,
    /// A site's session began (a new attendance row when not within the grace period).
    SiteJoined {
        site: String,
        session: String,
        client: String,
        address: String,
    },
    /// A site came back within the grace period: the same attendance row goes on.
    SiteReconnected {
        site: String,
        session: String,
        previous_session: String,
        client: String,
        address: String,
    },
    SiteLeft {
        site: String,
        session: String,
        reason: LeaveReason,
    },
    /// What the site receives changed.
    MediaChanged {
        site: String,
        session: String,
        media: Reception,
    },
    /// Periodic link quality, seen from the hub.
    QualitySample {
        site: String,
        session: String,
        bitrate_in_kbps: u32,
        bitrate_out_kbps: u32,
        /// Packet loss in tenths of a percent (0–1000).
        loss_permille: u32,
        rtt_ms: u32,
        /// What the site's media travelled over; absent in logs from before it was recorded
        /// and while ICE had chosen no path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transport: Option<MediaTransport>,
    },
    /// The hall declared how many delegates are present.
    HeadCount {
        site: String,
        count: u32,
        confirmed_by: String,
        position: String,
    },
    FloorRequested {
        site: String,
    },
    /// The chair gave the floor to a site.
    FloorGiven {
        site: String,
    },
    /// The site no longer holds the floor (taken back, passed on, or the site left).
    FloorReturned {
        site: String,
    },
    /// The chair muted or unmuted a site.
    SiteMuted {
        site: String,
        muted: bool,
    },
    RollCallStarted {
        roll_call: u32,
    },
    /// A site answered the roll call: present, with its head count.
    RollCallAnswered {
        roll_call: u32,
        site: String,
        count: u32,
        confirmed_by: String,
        position: String,
    },
    /// The roll call ended; with the sites that were in the meeting while it ran and did not
    /// answer (empty in logs written before the hub recorded them).
    RollCallEnded {
        roll_call: u32,
        #[serde(default)]
        not_answered: Vec<String>,
    },
    /// The chair called a site whose page was open.
    SiteCalled {
        site: String,
    },
    /// The studio's session began: the chair's page joined.
    StudioJoined {
        session: String,
        client: String,
        address: String,
    },
    /// The studio's session ended.
    StudioLeft {
        session: String,
        reason: LeaveReason,
    },
    /// The studio's encoder started publishing the programme (WHIP): the sites receive it
    /// instead of the chair's camera.
    EncoderJoined {
        session: String,
        client: String,
        address: String,
    },
    /// The studio's encoder stopped publishing.
    EncoderLeft {
        session: String,
        reason: LeaveReason,
    },
    /// The chair switched the programme the sites receive while the encoder publishes: to
    /// the encoder, or to the chair's own camera.
    ProgrammeSwitched {
        source: ProgrammeSource,
    },
    /// A part of the meeting's recording started: `file` in the recordings directory of the
    /// hub writing it (`hub`, its public address, on a hub of a standby pair).
    RecordingStarted {
        part: u32,
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub: Option<String>,
    },
    /// A part of the recording ended; its file holds `bytes`.
    RecordingStopped {
        part: u32,
        reason: RecordingStop,
        bytes: u64,
    },
    /// The recording could not start: the disk had `free_bytes` free, less than the hub's
    /// floor of `min_free_bytes`.
    RecordingRefused {
        free_bytes: u64,
        min_free_bytes: u64,
    },
    /// A player started watching the programme over the watch link (WHEP): not a site.
    ViewerJoined {
        session: String,
        client: String,
        address: String,
    },
    /// A player stopped watching.
    ViewerLeft {
        session: String,
        reason: LeaveReason,
    },
    /// A provincial hub lost its link to the centre (its parent hub) during this national
    /// meeting: its communes stayed connected to it, the centre out of reach. `node`: the
    /// provincial hub, as the centre names it (empty in the provincial hub's own log).
    CentreUnreachable {
        #[serde(default)]
        node: String,
    },
    /// The provincial hub's link to the centre is back.
    CentreReachable {
        #[serde(default)]
        node: String,
    },
    /// The hub started again after it had stopped without warning; it was down from
    /// `down_since` (the last moment it was known alive) until this event's time.
    HubRestarted {
        down_since: Millis,
    },
    /// Another hub sharing this hub's database took the running meeting over: `from`
    /// stopped answering (its last sign of life at `down_since`), `to` runs it from this
    /// event's time. Each session cut off ends with `hub_crash` before it.
    HubTakeover {
        from: String,
        to: String,
        down_since: Millis,
    },
}

/// Why a part of a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStop {
    /// The chair stopped it.
    Chair,
    MeetingEnded,
    /// The disk filled up (or a quota or file size limit was reached).
    DiskFull,
    /// Writing the file failed otherwise.
    WriteError,
    /// The hub was shut down; the meeting goes on when it is back.
    HubShutdown,
    /// The hub stopped without warning: the file holds what was written until then
    /// (written when the hub started again).
    HubStopped,
    /// The programme's picture came in a codec the part's file has no track for (a studio
    /// that went over from its browser's VP8 to an encoder's H.264): the next part follows
    /// at once, in a file made for it.
    PictureChanged,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The site left or closed its page.
    Closed,
    /// The site's connection was lost.
    NetworkTimeout,
    /// The chair removed it, or its join code was reissued.
    Removed,
    /// The site joined again from another page, which took over; the new session continues
    /// the attendance row.
    Replaced,
    /// The hub was shut down.
    HubShutdown,
    /// The hub stopped without warning; the session ended at the last moment the hub knew it
    /// alive (written when the hub started again).
    HubCrash,
    /// The meeting ended while the site was connected.
    MeetingEnded,
}

/// What a site receives of the studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reception {
    Video,
    AudioOnly,
    Nothing,
}

impl EventKind {
    /// The kind as stored in the `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MeetingStarted => "meeting_started",
            EventKind::MeetingEnded => "meeting_ended",
            EventKind::SiteJoined { .. } => "site_joined",
            EventKind::SiteReconnected { .. } => "site_reconnected",
            EventKind::SiteLeft { .. } => "site_left",
            EventKind::MediaChanged { .. } => "media_changed",
            EventKind::QualitySample { .. } => "quality_sample",
            EventKind::HeadCount { .. } => "head_count",
            EventKind::FloorRequested { .. } => "floor_requested",
            EventKind::FloorGiven { .. } => "floor_given",
            EventKind::FloorReturned { .. } => "floor_returned",
            EventKind::SiteMuted { .. } => "site_muted",
            EventKind::RollCallStarted { .. } => "roll_call_started",
            EventKind::RollCallAnswered { .. } => "roll_call_answered",
            EventKind::RollCallEnded { .. } => "roll_call_ended",
            EventKind::SiteCalled { .. } => "site_called",
            EventKind::StudioJoined { .. } => "studio_joined",
            EventKind::StudioLeft { .. } => "studio_left",
            EventKind::EncoderJoined { .. } => "encoder_joined",
            EventKind::EncoderLeft { .. } => "encoder_left",
            EventKind::ProgrammeSwitched { .. } => "programme_switched",
            EventKind::ViewerJoined { .. } => "viewer_joined",
            EventKind::ViewerLeft { .. } => "viewer_left",
            EventKind::HubRestarted { .. } => "hub_restarted",
            EventKind::HubTakeover { .. } => "hub_takeover",
            EventKind::CentreUnreachable { .. } => "centre_unreachable",
            EventKind::CentreReachable { .. } => "centre_reachable",
            EventKind::RecordingStarted { .. } => "recording_started",
            EventKind::RecordingStopped { .. } => "recording_stopped",
            EventKind::RecordingRefused { .. } => "recording_refused",
        }
    }

    /// The site the event is about, if any.
    pub fn site(&self) -> Option<&str> {
        match self {
            EventKind::MeetingStarted
            | EventKind::MeetingEnded
            | EventKind::RollCallStarted { .. }
            | EventKind::RollCallEnded { .. }
            | EventKind::StudioJoined { .. }
            | EventKind::StudioLeft { .. }
            | EventKind::EncoderJoined { .. }
            | EventKind::EncoderLeft { .. }
            | EventKind::ProgrammeSwitched { .. }
            | EventKind::ViewerJoined { .. }
            | EventKind::ViewerLeft { .. }
            | EventKind::HubRestarted { .. }
            | EventKind::HubTakeover { .. }
            | EventKind::CentreUnreachable { .. }
            | EventKind::CentreReachable { .. }
            | EventKind::RecordingStarted { .. }
            | EventKind::RecordingStopped { .. }
            | EventKind::RecordingRefused { .. } => None,
            EventKind::SiteJoined { site, .. }
            | EventKind::SiteReconnected { site, .. }
            | EventKind::SiteLeft { site, .. }
            | EventKind::MediaChanged { site, .. }
            | EventKind::QualitySample { site, .. }
            | EventKind::HeadCount { site, .. }
            | EventKind::FloorRequested { site }
            | EventKind::FloorGiven { site }
            | EventKind::FloorReturned { site }
            | EventKind::SiteMuted { site, .. }
            | EventKind::RollCallAnswered { site, .. }
            | EventKind::SiteCalled { site } => Some(site),
        }
    }

    /// The session the event is about, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            EventKind::SiteJoined { session, .. }
            | EventKind::SiteReconnected { session, .. }
            | EventKind::SiteLeft { session, .. }
            | EventKind::MediaChanged { session, .. }
            | EventKind::QualitySample { session, .. }
            | EventKind::StudioJoined { session, .. }
            | EventKind::StudioLeft { session, .. }
            | EventKind::EncoderJoined { session, .. }
            | EventKind::EncoderLeft { session, .. }
            | EventKind::ViewerJoined { session, .. }
            | EventKind::ViewerLeft { session, .. } => Some(session),
            _ => None,
        }
    }
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Closed => "closed",
            LeaveReason::NetworkTimeout => "network_timeout",
            LeaveReason::Removed => "removed",
            LeaveReason::Replaced => "replaced",
            LeaveReason::HubShutdown => "hub_shutdown",
            LeaveReason::HubCrash => "hub_crash",
            LeaveReason::MeetingEnded => "meeting_ended",
        }
    }
}
