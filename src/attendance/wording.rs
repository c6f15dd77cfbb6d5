//! The Vietnamese words of the attendance report, as the report page shows them: statuses,
//! leave reasons, event names and the sentences that describe an event. The CSV files and the
//! Excel workbook take their wording from here, so a file says what the screen says; the page's
//! own strings live in `web-client/js/i18n.js`, and a test keeps the two the same.

use super::event::{Event, EventKind, LeaveReason, Reception, RecordingStop};
use super::report::Status;
use diemcau_signaling::MediaTransport;
use diemcau_signaling::protocol::ProgrammeSource;

/// A site's status, as the page's badge shows it (`status.*`).
pub fn status(status: Status) -> &'static str {
    match status {
        Status::Present => "Có mặt",
        Status::Late => "Đến muộn",
        Status::Partial => "Tham dự một phần",
        Status::Absent => "Vắng mặt",
    }
}

/// Why a session ended (`reason.*`).
pub fn leave_reason(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Closed => "điểm cầu tự rời",
        LeaveReason::NetworkTimeout => "mất kết nối mạng",
        LeaveReason::Removed => "bị mời ra",
        LeaveReason::Replaced => "vào lại từ trang khác",
        LeaveReason::HubShutdown => "máy chủ tắt",
        LeaveReason::HubCrash => "máy chủ dừng đột ngột",
        LeaveReason::MeetingEnded => "cuộc họp kết thúc",
    }
}

/// Why a part of the recording ended (`recordingStop.*`).
pub fn recording_stop(reason: RecordingStop) -> &'static str {
    match reason {
        RecordingStop::Chair => "chủ trì dừng ghi",
        RecordingStop::MeetingEnded => "cuộc họp kết thúc",
        RecordingStop::DiskFull => "ổ đĩa đầy",
        RecordingStop::WriteError => "lỗi ghi tệp",
        RecordingStop::HubShutdown => "máy chủ tắt",
        RecordingStop::HubStopped => "máy chủ dừng đột ngột",
        RecordingStop::PictureChanged => "hình chương trình đổi chuẩn nén, ghi tiếp sang phần sau",
    }
}

/// A size in megabytes, as the page writes it (`recording.size`).
pub fn megabytes(bytes: u64) -> String {
    format!("{} MB", number(bytes as f64 / 1_000_000.0))
}

/// What a site receives of the studio (`reception.*`).
pub fn reception(reception: Reception) -> &'static str {
    match reception {
        Reception::Video => "nhận cả hình và tiếng",
        Reception::AudioOnly => "chỉ nhận được tiếng",
        Reception::Nothing => "không nhận được hình và tiếng",
    }
}

/// Where the programme comes from (`programme.*`).
pub fn programme_source(source: ProgrammeSource) -> &'static str {
    match source {
        ProgrammeSource::Encoder => "bộ mã hoá của trường quay",
        ProgrammeSource::Camera => "camera của chủ trì",
    }
}

/// The name of an event's kind (`event.<kind>`).
pub fn event_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::MeetingStarted => "Bắt đầu cuộc họp",
        EventKind::MeetingEnded => "Kết thúc cuộc họp",
        EventKind::SiteJoined { .. } => "Điểm cầu vào họp",
        EventKind::SiteReconnected { .. } => "Điểm cầu nối lại",
        EventKind::SiteLeft { .. } => "Điểm cầu rời họp",
        EventKind::MediaChanged { .. } => "Thay đổi hình/tiếng nhận được",
        EventKind::QualitySample { .. } => "Chất lượng đường truyền",
        EventKind::HeadCount { .. } => "Khai báo số đại biểu",
        EventKind::FloorRequested { .. } => "Xin phát biểu",
        EventKind::FloorGiven { .. } => "Được trao quyền phát biểu",
        EventKind::FloorReturned { .. } => "Thôi phát biểu",
        EventKind::SiteMuted { .. } => "Micro của điểm cầu",
        EventKind::RollCallStarted { .. } => "Bắt đầu điểm danh",
        EventKind::RollCallAnswered { .. } => "Trả lời điểm danh",
        EventKind::RollCallEnded { .. } => "Kết thúc điểm danh",
        EventKind::SiteCalled { .. } => "Gọi điểm cầu",
        EventKind::StudioJoined { .. } => "Điểm cầu trung tâm vào họp",
        EventKind::StudioLeft { .. } => "Điểm cầu trung tâm rời họp",
        EventKind::EncoderJoined { .. } => "Bộ mã hoá của trường quay bắt đầu phát",
        EventKind::EncoderLeft { .. } => "Bộ mã hoá của trường quay ngừng phát",
        EventKind::ProgrammeSwitched { .. } => "Chủ trì chuyển nguồn chương trình",
        EventKind::ViewerJoined { .. } => "Người xem qua đường xem bắt đầu xem",
        EventKind::ViewerLeft { .. } => "Người xem qua đường xem ngừng xem",
        EventKind::HubRestarted { .. } => "Máy chủ chạy lại sau khi dừng đột ngột",
        EventKind::HubTakeover { .. } => "Máy chủ dự phòng tiếp quản cuộc họp",
        EventKind::CentreUnreachable { .. } => "Mất kết nối với máy chủ cấp trên",
        EventKind::CentreReachable { .. } => "Nối lại với máy chủ cấp trên",
        EventKind::RecordingStarted { .. } => "Bắt đầu ghi hình",
        EventKind::RecordingStopped { .. } => "Dừng ghi hình",
        EventKind::RecordingRefused { .. } => "Không bắt đầu ghi hình được: ổ đĩa sắp đầy",
    }
}

/// What an event says beyond its kind and site, in the page's words (its "Chi tiết" column).
pub fn event_details(event: &Event) -> String {
    match &event.kind {
        EventKind::MeetingStarted
        | EventKind::MeetingEnded
        | EventKind::FloorRequested { .. }
        | EventKind::FloorGiven { .. }
        | EventKind::FloorReturned { .. }
        | EventKind::SiteCalled { .. } => String::new(),
        // The provincial hub, by its node name.
        EventKind::CentreUnreachable { node } | EventKind::CentreReachable { node } => node.clone(),
        EventKind::SiteJoined {
            client, address, ..
        }
        | EventKind::StudioJoined {
            client, address, ..
        }
        | EventKind::EncoderJoined {
            client, address, ..
        }
        | EventKind::ViewerJoined {
            client, address, ..
        } => [short_client(client), address.clone()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
        EventKind::SiteReconnected {
            client, address, ..
        } => format!(
            "nối lại trong thời gian cho phép · {} · {address}",
            short_client(client)
        ),
        EventKind::SiteLeft { reason, .. }
        | EventKind::StudioLeft { reason, .. }
        | EventKind::EncoderLeft { reason, .. }
        | EventKind::ViewerLeft { reason, .. } => leave_reason(*reason).to_owned(),
        EventKind::HubRestarted { down_since } => format!(
            "máy chủ ngừng khoảng {} phút",
            number(event.at.saturating_sub(*down_since).max(0) as f64 / 60_000.0)
        ),
        EventKind::HubTakeover {
            from,
            to,
            down_since,
        } => format!(
            "{to} tiếp quản từ {from}, sau khoảng {} phút",
            number(event.at.saturating_sub(*down_since).max(0) as f64 / 60_000.0)
        ),
        EventKind::MediaChanged { media, .. } => reception(*media).to_owned(),
        EventKind::RecordingStarted { part, file, .. } => format!("phần {part} · {file}"),
        EventKind::RecordingStopped {
            part,
            reason,
            bytes,
        } => format!(
            "phần {part} · {} · {}",
            recording_stop(*reason),
            megabytes(*bytes)
        ),
        EventKind::RecordingRefused {
            free_bytes,
            min_free_bytes,
        } => format!(
            "còn trống {}, cần ít nhất {}",
            megabytes(*free_bytes),
            megabytes(*min_free_bytes)
        ),
        EventKind::ProgrammeSwitched { source } => programme_source(*source).to_owned(),
        EventKind::QualitySample {
            bitrate_in_kbps,
            bitrate_out_kbps,
            loss_permille,
            rtt_ms,
            ..
        } => format!(
            "nhận {bitrate_out_kbps} kbit/s, gửi {bitrate_in_kbps} kbit/s, mất gói {} %, trễ khứ hồi {rtt_ms} ms",
            number(f64::from(*loss_permille) / 10.0)
        ),
        EventKind::HeadCount {
            count,
            confirmed_by,
            position,
            ..
        } => head_count(*count, confirmed_by, position),
        EventKind::RollCallAnswered {
            roll_call,
            count,
            confirmed_by,
            position,
            ..
        } => format!(
            "{} · {}",
            roll_call_number(*roll_call),
            head_count(*count, confirmed_by, position)
        ),
        EventKind::RollCallStarted { roll_call } | EventKind::RollCallEnded { roll_call, .. } => {
            roll_call_number(*roll_call)
        }
        EventKind::SiteMuted { muted, .. } => if *muted {
            "bị tắt"
        } else {
            "được bật lại"
        }
        .to_owned(),
    }
}

/// `report.stillConnected`: a session not ended yet.
pub const STILL_CONNECTED: &str = "đang kết nối";
/// `common.yes` and `common.no`.
pub const YES: &str = "có";
pub const NO: &str = "không";
/// `report.notYet`: the meeting has not started (or ended) yet.
pub const NOT_YET: &str = "chưa";
/// `report.stillRunning`: the meeting has started and not ended.
pub const STILL_RUNNING: &str = "đang diễn ra";

/// The state of the meeting as the report's heading says it (`report.inProgress`,
/// `report.ended`, `report.notStarted`).
pub fn meeting_state(in_progress: bool, ended: bool) -> &'static str {
    if in_progress {
        "cuộc họp đang diễn ra: số liệu tính đến lúc lập"
    } else if ended {
        "cuộc họp đã kết thúc"
    } else {
        "cuộc họp chưa bắt đầu"
    }
}

/// `report.kicker`: what the report is, with the meeting's number.
pub fn kicker(meeting_id: i64) -> String {
    format!("Báo cáo điểm danh · Cuộc họp số {meeting_id}")
}

/// Column headers the files share with the page (`col.*`, `report.*`), and the few the page
/// has no column for.
/// A session's media transport as the files write it: `UDP`, `TCP`, or nothing when unknown.
pub fn transport(transport: Option<MediaTransport>) -> &'static str {
    match transport {
        Some(MediaTransport::Udp) => "UDP",
        Some(MediaTransport::Tcp) => "TCP",
        None => "",
    }
}

pub mod header {
    pub const SITE_CODE: &str = "Mã đơn vị";
    /// `col.site`
    pub const SITE: &str = "Điểm cầu";
    /// `col.status`
    pub const STATUS: &str = "Trạng thái";
    /// `col.firstJoin`
    pub const FIRST_JOIN: &str = "Vào lần đầu";
    /// `col.lastLeave`
    pub const LAST_LEAVE: &str = "Rời lần cuối";
    /// `col.connectedMinutes`
    pub const CONNECTED_MINUTES: &str = "Số phút kết nối";
    /// `col.coverage`
    pub const COVERAGE: &str = "% thời gian họp";
    /// `col.interruptions`
    pub const INTERRUPTIONS: &str = "Số lần gián đoạn";
    /// `col.longestOutage`
    pub const LONGEST_OUTAGE: &str = "Gián đoạn dài nhất (phút)";
    /// `col.audioOnly`
    pub const AUDIO_ONLY: &str = "Chỉ có tiếng (phút)";
    /// `col.centreUnreachable`
    pub const CENTRE_UNREACHABLE: &str = "Mất kết nối trung ương (phút)";
    /// `col.expectedDelegates`
    pub const EXPECTED_DELEGATES: &str = "Đại biểu dự kiến";
    /// `col.delegatesDeclared`
    pub const DELEGATES_DECLARED: &str = "Đại biểu có mặt";
    /// `col.viewers`
    pub const VIEWERS: &str = "Người xem qua đường xem";
    /// `col.viewersPeak`
    pub const VIEWERS_PEAK: &str = "Người xem cùng lúc nhiều nhất";
    /// `col.confirmedBy`
    pub const CONFIRMED_BY: &str = "Người xác nhận";
    pub const POSITION: &str = "Chức vụ";
    pub const DECLARED_AT: &str = "Khai báo lúc";
    pub const SESSION: &str = "Phiên";
    /// `col.joinedAt`
    pub const JOINED_AT: &str = "Vào lúc";
    /// `col.leftAt`
    pub const LEFT_AT: &str = "Rời lúc";
    /// `col.reason`
    pub const REASON: &str = "Lý do rời";
    /// `col.reconnected`
    pub const RECONNECTED: &str = "Nối lại";
    /// `col.minutes`
    pub const MINUTES: &str = "Phút";
    /// `col.client`
    pub const CLIENT: &str = "Trình duyệt";
    /// `col.address`
    pub const ADDRESS: &str = "Địa chỉ mạng";
    /// `col.transport`
    pub const TRANSPORT: &str = "Giao thức";
    pub const SEQ: &str = "STT";
    /// `col.at`
    pub const AT: &str = "Thời điểm";
    pub const RECORDED_AT: &str = "Ghi vào nhật ký lúc";
    /// `col.event`
    pub const EVENT: &str = "Sự kiện";
    pub const EVENT_CODE: &str = "Mã sự kiện";
    /// `col.details`
    pub const DETAILS: &str = "Chi tiết";
    /// `report.scheduled`
    pub const SCHEDULED: &str = "Dự kiến";
    /// `report.actual`
    pub const ACTUAL: &str = "Thực tế";
    /// `report.start`
    pub const START: &str = "Bắt đầu";
    /// `col.recordingPart`
    pub const RECORDING_PART: &str = "Phần";
    /// How a part ended (the page's `col.recordingEnd` column, named so beside its end time).
    pub const RECORDING_END: &str = "Lý do kết thúc";
    /// `col.recordingFile`
    pub const RECORDING_FILE: &str = "Tệp";
    pub const GAP_BEFORE: &str = "Gián đoạn trước phần (phút)";
    pub const SIZE_MB: &str = "Dung lượng (MB)";
    /// `report.end`
    pub const END: &str = "Kết thúc";
    /// `col.sitesJoined`
    pub const SITES_JOINED: &str = "Điểm cầu tham dự";
    /// `col.meeting`
    pub const MEETING: &str = "Cuộc họp";
    pub const COMPUTED_AT: &str = "Lập lúc";
    /// `report.summary`
    pub const SUMMARY: &str = "Tóm tắt";
    /// `col.rollCall`
    pub const ROLL_CALL: &str = "Lần";
    /// `col.answers`
    pub const ANSWERED: &str = "Trả lời";
    pub const ANSWERED_AT: &str = "Trả lời lúc";
}

/// The names of the workbook's sheets (`csv.sites`, `csv.sessions`, `csv.events`).
pub mod sheet {
    pub const SUMMARY: &str = "Tổng hợp";
    pub const SITES: &str = "Điểm cầu";
    pub const SESSIONS: &str = "Phiên kết nối";
    pub const EVENTS: &str = "Sự kiện";
    /// `report.rollCallsHeading`
    pub const ROLL_CALLS: &str = "Điểm danh";
    /// `report.recordings`
    pub const RECORDINGS: &str = "Bản ghi hình";
}

/// A browser's name and major version out of a user agent (`Chrome 156 · Linux`), else the text
/// as it is, cut to 40 characters: what the page shows of a client.
pub fn short_client(client: &str) -> String {
    const BROWSERS: [&str; 6] = ["Edg", "OPR", "Firefox", "Chrome", "Chromium", "Version"];
    const SYSTEMS: [&str; 7] = [
        "Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux", "CrOS",
    ];
    if client.is_empty() {
        return String::new();
    }
    // The leftmost `NAME/DIGITS`, trying the names in order at each place, as a regular
    // expression with alternatives would.
    let browser = client.char_indices().find_map(|(at, _)| {
        let rest = client.get(at..)?;
        BROWSERS.iter().find_map(|name| {
            let version = rest.strip_prefix(name)?.strip_prefix('/')?;
            let digits: &str = version
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .filter(|d| !d.is_empty())?;
            Some((*name, digits))
        })
    });
    let Some((name, major)) = browser else {
        return if client.chars().count() > 40 {
            format!("{}…", client.chars().take(39).collect::<String>())
        } else {
            client.to_owned()
        };
    };
    let name = match name {
        "Edg" => "Edge",
        "OPR" => "Opera",
        "Version" => "Safari",
        other => other,
    };
    let system = client.char_indices().find_map(|(at, _)| {
        let rest = client.get(at..)?;
        SYSTEMS.iter().find(|system| rest.starts_with(**system))
    });
    match system {
        Some(&"Mac OS X") => format!("{name} {major} · macOS"),
        Some(system) => format!("{name} {major} · {system}"),
        None => format!("{name} {major}"),
    }
}

/// A number as the page writes it in Vietnamese: at most one decimal, a decimal comma and dots
/// between thousands (`1.234,5`).
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    let tenths = (value * 10.0).round();
    let negative = tenths < 0.0;
    let tenths = tenths.abs() as u64;
    let whole = (tenths / 10).to_string();
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(digit);
    }
    let sign = if negative { "-" } else { "" };
    match tenths % 10 {
        0 => format!("{sign}{grouped}"),
        fraction => format!("{sign}{grouped},{fraction}"),
    }
}

fn head_count(count: u32, confirmed_by: &str, position: &str) -> String {
    format!("{count} đại biểu · {confirmed_by} ({position}) xác nhận")
}

fn roll_call_number(roll_call: u32) -> String {
    format!("lần điểm danh {roll_call}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Vietnamese strings of the page, read from its source.
    fn page_strings() -> std::collections::HashMap<String, String> {
        let source = include_str!("../../web-client/js/i18n.js");
        let vi = source
            .split_once("  vi: {")
            .and_then(|(_, rest)| rest.split_once("\n  },"))
            .map(|(vi, _)| vi)
            .expect("i18n.js has a `vi` block");
        let mut strings = std::collections::HashMap::new();
        let mut pending: Option<String> = None;
        for line in vi.lines().map(str::trim) {
            let (key, value) = match pending.take() {
                Some(key) => (key, line),
                None => {
                    let Some((key, value)) = line
                        .strip_prefix('\'')
                        .and_then(|rest| rest.split_once("':"))
                    else {
                        continue;
                    };
                    let value = value.trim();
                    if value.is_empty() {
                        pending = Some(key.to_owned());
                        continue;
                    }
                    (key.to_owned(), value)
                }
            };
            let text = value
                .trim_end_matches(',')
                .trim_start_matches('\'')
                .trim_end_matches('\'');
            strings.insert(key, text.replace("\\'", "'"));
        }
        strings
    }

    fn page_text(key: &str) -> String {
        page_strings()
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("i18n.js has no Vietnamese `{key}`"))
    }

    fn filled(key: &str, params: &[(&str, &str)]) -> String {
        let mut text = page_text(key);
        for (name, value) in params {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    #[test]
    fn the_files_say_what_the_page_says() {
        let pairs: Vec<(&str, String)> = vec![
            ("status.present", status(Status::Present).into()),
            ("status.late", status(Status::Late).into()),
            ("status.partial", status(Status::Partial).into()),
            ("status.absent", status(Status::Absent).into()),
            ("reason.closed", leave_reason(LeaveReason::Closed).into()),
            (
                "reason.network_timeout",
                leave_reason(LeaveReason::NetworkTimeout).into(),
            ),
            ("reason.removed", leave_reason(LeaveReason::Removed).into()),
            (
                "reason.replaced",
                leave_reason(LeaveReason::Replaced).into(),
            ),
            (
                "reason.hub_shutdown",
                leave_reason(LeaveReason::HubShutdown).into(),
            ),
            (
                "reason.hub_crash",
                leave_reason(LeaveReason::HubCrash).into(),
            ),
            (
                "reason.meeting_ended",
                leave_reason(LeaveReason::MeetingEnded).into(),
            ),
            ("reception.video", reception(Reception::Video).into()),
            (
                "reception.audio_only",
                reception(Reception::AudioOnly).into(),
            ),
            ("reception.nothing", reception(Reception::Nothing).into()),
            ("report.stillConnected", STILL_CONNECTED.into()),
            ("common.yes", YES.into()),
            ("common.no", NO.into()),
            ("report.notYet", NOT_YET.into()),
            ("report.stillRunning", STILL_RUNNING.into()),
            ("report.inProgress", meeting_state(true, false).into()),
            ("report.ended", meeting_state(false, true).into()),
            ("report.notStarted", meeting_state(false, false).into()),
            ("col.site", header::SITE.into()),
            ("col.status", header::STATUS.into()),
            ("col.firstJoin", header::FIRST_JOIN.into()),
            ("col.lastLeave", header::LAST_LEAVE.into()),
            ("col.connectedMinutes", header::CONNECTED_MINUTES.into()),
            ("col.coverage", header::COVERAGE.into()),
            ("col.interruptions", header::INTERRUPTIONS.into()),
            ("col.longestOutage", header::LONGEST_OUTAGE.into()),
            ("col.audioOnly", header::AUDIO_ONLY.into()),
            ("col.centreUnreachable", header::CENTRE_UNREACHABLE.into()),
            ("col.expectedDelegates", header::EXPECTED_DELEGATES.into()),
            ("col.delegatesDeclared", header::DELEGATES_DECLARED.into()),
            ("col.viewers", header::VIEWERS.into()),
            ("col.viewersPeak", header::VIEWERS_PEAK.into()),
            ("col.confirmedBy", header::CONFIRMED_BY.into()),
            ("col.joinedAt", header::JOINED_AT.into()),
            ("col.leftAt", header::LEFT_AT.into()),
            ("col.reason", header::REASON.into()),
            ("col.reconnected", header::RECONNECTED.into()),
            ("col.minutes", header::MINUTES.into()),
            ("col.client", header::CLIENT.into()),
            ("col.address", header::ADDRESS.into()),
            ("col.transport", header::TRANSPORT.into()),
            ("col.at", header::AT.into()),
            ("col.rollCall", header::ROLL_CALL.into()),
            ("col.answers", header::ANSWERED.into()),
            ("report.rollCallsHeading", sheet::ROLL_CALLS.into()),
            ("report.recordings", sheet::RECORDINGS.into()),
            ("col.recordingPart", header::RECORDING_PART.into()),
            ("col.recordingFile", header::RECORDING_FILE.into()),
            ("col.event", header::EVENT.into()),
            ("col.details", header::DETAILS.into()),
            ("col.sitesJoined", header::SITES_JOINED.into()),
            ("col.meeting", header::MEETING.into()),
            ("report.scheduled", header::SCHEDULED.into()),
            ("report.actual", header::ACTUAL.into()),
            ("report.start", header::START.into()),
            ("report.end", header::END.into()),
            ("report.summary", header::SUMMARY.into()),
            ("csv.sites", sheet::SITES.into()),
            ("csv.sessions", sheet::SESSIONS.into()),
            ("csv.events", sheet::EVENTS.into()),
        ];
        for (key, text) in pairs {
            assert_eq!(page_text(key), text, "{key}");
        }
        // Every way a part of the recording ends, under its name in the report's JSON.
        for reason in [
            RecordingStop::Chair,
            RecordingStop::MeetingEnded,
            RecordingStop::DiskFull,
            RecordingStop::WriteError,
            RecordingStop::HubShutdown,
            RecordingStop::HubStopped,
            RecordingStop::PictureChanged,
        ] {
            let name = serde_json::to_value(reason).expect("a name");
            let key = format!("recordingStop.{}", name.as_str().expect("a string"));
            assert_eq!(page_text(&key), recording_stop(reason), "{key}");
        }
        assert_eq!(filled("report.kicker", &[("id", "7")]), kicker(7));
    }

    #[test]
    fn every_event_is_named_and_described_as_on_the_page() {
        let event = |at, kind| Event {
            seq: 1,
            at,
            recorded_at: at,
            kind,
        };
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/156.0.0.0 Safari/537.36";
        let site = || "2269".to_owned();
        let session = || "s1".to_owned();
        let cases: Vec<(EventKind, String)> = vec![
            (EventKind::MeetingStarted, String::new()),
            (EventKind::MeetingEnded, String::new()),
            (
                EventKind::SiteJoined {
                    site: site(),
                    session: session(),
                    client: chrome.into(),
                    address: "10.0.0.5".into(),
                },
                "Chrome 156 · Linux · 10.0.0.5".into(),
            ),
            (
                EventKind::SiteReconnected {
                    site: site(),
                    session: session(),
                    previous_session: "s0".into(),
                    client: chrome.into(),
                    address: "10.0.0.5".into(),
                },
                filled(
                    "event.reconnectedDetails",
                    &[("client", "Chrome 156 · Linux"), ("address", "10.0.0.5")],
                ),
            ),
            (
                EventKind::SiteLeft {
                    site: site(),
                    session: session(),
                    reason: LeaveReason::MeetingEnded,
                },
                page_text("reason.meeting_ended"),
            ),
            (
                EventKind::MediaChanged {
                    site: site(),
                    session: session(),
                    media: Reception::AudioOnly,
                },
                page_text("reception.audio_only"),
            ),
            (
                EventKind::QualitySample {
                    site: site(),
                    session: session(),
                    bitrate_in_kbps: 300,
                    bitrate_out_kbps: 1200,
                    loss_permille: 25,
                    rtt_ms: 80,
                    transport: None,
                },
                filled(
                    "event.qualityDetails",
                    &[
                        ("down", "1200"),
                        ("up", "300"),
                        ("loss", "2,5"),
                        ("rtt", "80"),
                    ],
                ),
            ),
            (
                EventKind::HeadCount {
                    site: site(),
                    count: 50,
                    confirmed_by: "Nguyễn Văn An".into(),
                    position: "Chủ tịch UBND xã".into(),
                },
                filled(
                    "event.headCountDetails",
                    &[
                        ("count", "50"),
                        ("name", "Nguyễn Văn An"),
                        ("position", "Chủ tịch UBND xã"),
                    ],
                ),
            ),
            (EventKind::FloorRequested { site: site() }, String::new()),
            (EventKind::FloorGiven { site: site() }, String::new()),
            (EventKind::FloorReturned { site: site() }, String::new()),
            (
                EventKind::SiteMuted {
                    site: site(),
                    muted: true,
                },
                page_text("event.muted"),
            ),
            (
                EventKind::RollCallStarted { roll_call: 2 },
                filled("event.rollCall", &[("number", "2")]),
            ),
            (
                EventKind::RollCallAnswered {
                    roll_call: 2,
                    site: site(),
                    count: 40,
                    confirmed_by: "Lê Thị Hoa".into(),
                    position: "Văn phòng".into(),
                },
                format!(
                    "{} · {}",
                    filled("event.rollCall", &[("number", "2")]),
                    filled(
                        "event.headCountDetails",
                        &[
                            ("count", "40"),
                            ("name", "Lê Thị Hoa"),
                            ("position", "Văn phòng")
                        ],
                    )
                ),
            ),
            (
                EventKind::RollCallEnded {
                    roll_call: 2,
                    not_answered: vec!["2266".into()],
                },
                filled("event.rollCall", &[("number", "2")]),
            ),
            (EventKind::SiteCalled { site: site() }, String::new()),
            (
                EventKind::StudioJoined {
                    session: session(),
                    client: String::new(),
                    address: "10.0.0.1".into(),
                },
                "10.0.0.1".into(),
            ),
            (
                EventKind::StudioLeft {
                    session: session(),
                    reason: LeaveReason::Closed,
                },
                page_text("reason.closed"),
            ),
            (
                EventKind::EncoderJoined {
                    session: session(),
                    client: String::new(),
                    address: "10.0.0.2".into(),
                },
                "10.0.0.2".into(),
            ),
            (
                EventKind::ViewerLeft {
                    session: session(),
                    reason: LeaveReason::NetworkTimeout,
                },
                page_text("reason.network_timeout"),
            ),
            (
                EventKind::CentreUnreachable {
                    node: "tuyen-quang".into(),
                },
                "tuyen-quang".into(),
            ),
            (
                EventKind::CentreReachable {
                    node: "tuyen-quang".into(),
                },
                "tuyen-quang".into(),
            ),
            (
                EventKind::HubRestarted {
                    down_since: 1_000_000 - 90_000,
                },
                filled("event.hubRestartedDetails", &[("minutes", "1,5")]),
            ),
        ];
        for (kind, details) in cases {
            let key = format!("event.{}", kind.name());
            assert_eq!(page_text(&key), event_name(&kind), "{key}");
            assert_eq!(event_details(&event(1_000_000, kind)), details, "{key}");
        }
    }

    #[test]
    fn numbers_are_written_the_vietnamese_way() {
        assert_eq!(number(7.5), "7,5");
        assert_eq!(number(82.0), "82");
        assert_eq!(number(0.04), "0");
        assert_eq!(number(1234.56), "1.234,6");
        assert_eq!(number(1_000_000.0), "1.000.000");
        assert_eq!(number(f64::NAN), "");
    }

    #[test]
    fn clients_are_shortened_as_on_the_page() {
        assert_eq!(
            short_client("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 Edg/120.0"),
            "Chrome 120 · Windows"
        );
        assert_eq!(
            short_client("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Version/17.1 Safari/605"),
            "Safari 17 · macOS"
        );
        assert_eq!(
            short_client("Mozilla/5.0 (X11; Linux) Chromium/150.1"),
            "Chromium 150 · Linux"
        );
        assert_eq!(short_client("webrtc-rs"), "webrtc-rs");
        assert_eq!(
            short_client(&"x".repeat(50)),
            format!("{}…", "x".repeat(39))
        );
        assert_eq!(short_client(""), "");
    }
}
