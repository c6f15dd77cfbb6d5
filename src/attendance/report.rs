//! Attendance reports, computed from a meeting's plan and its event log alone, so any report
//! can be recomputed and audited from the log.

use std::collections::HashMap;

use serde::Serialize;

use super::event::{Event, EventKind, LeaveReason, Millis, Reception};
use diemcau_signaling::MediaTransport;

/// What the organizer planned: the yardstick the log is measured against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingPlan {
    pub id: i64,
    pub title: String,
    pub scheduled_start: Millis,
    pub scheduled_end: Millis,
    pub roster: Vec<ExpectedSite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedSite {
    pub code: String,
    pub name: String,
    pub expected_delegates: u32,
    /// The province it belongs to, from this hub's directory (itself for a province's own
    /// site); none for a site the directory no longer has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
}

/// Thresholds of the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportRules {
    /// A site back within this time after a drop continues its attendance row.
    pub grace: Millis,
    /// A first join later than this after the start makes a site late.
    pub late_after: Millis,
    /// Below this share of the meeting connected (in percent), a site attended in part.
    pub partial_below_percent: f64,
}

impl Default for ReportRules {
    fn default() -> Self {
        ReportRules {
            grace: 2 * 60_000,
            late_after: 10 * 60_000,
            partial_below_percent: 80.0,
        }
    }
}

/// A site's attendance, in order of precedence: absent, partial, late, present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Never connected while the meeting ran.
    Absent,
    /// Connected for less than `partial_below_percent` of the meeting.
    Partial,
    /// First joined more than `late_after` after the start, then stayed.
    Late,
    Present,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub sites: Vec<SiteRow>,
    pub sessions: Vec<SessionRow>,
    /// Every roll call, in order, as it ended.
    pub roll_calls: Vec<RollCallRow>,
    /// The parts of the meeting's recording, in order.
    pub recordings: Vec<RecordingRow>,
    pub events: Vec<Event>,
}

/// One part of the meeting's recording: one file. Between two parts the recording has a gap
/// (`gap_before_ms`: from the previous part's end to this one's start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingRow {
    pub part: u32,
    pub file: String,
    /// The public address of the hub that wrote the file, on a standby pair (where it is
    /// downloaded from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    pub started_at: Millis,
    /// `None` while it runs.
    pub stopped_at: Option<Millis>,
    pub reason: Option<super::RecordingStop>,
    /// The file's size when it ended (0 while it runs).
    pub bytes: u64,
    pub gap_before_ms: Option<Millis>,
}

/// One roll call: who answered with how many delegates, and who was there and did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollCallRow {
    pub number: u32,
    pub started_at: Millis,
    /// `None` while it runs (or when the hub stopped without warning during it).
    pub ended_at: Option<Millis>,
    /// One answer per site, the last it gave, in the order the sites first answered.
    pub answers: Vec<RollCallAnswerRow>,
    /// The sites that were in the meeting while it ran and did not answer (known once it
    /// ended).
    pub not_answered: Vec<SiteRef>,
    /// The delegates the answers declared, in all.
    pub delegates: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollCallAnswerRow {
    pub site: String,
    pub name: String,
    pub count: u32,
    pub confirmed_by: String,
    pub position: String,
    pub at: Millis,
}

/// A site by its code and its name in the meeting's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteRef {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub meeting_id: i64,
    pub title: String,
    pub scheduled_start: Millis,
    pub scheduled_end: Millis,
    pub actual_start: Option<Millis>,
    pub actual_end: Option<Millis>,
    /// Started and not ended when the report was made.
    pub in_progress: bool,
    /// The instant the report was computed at.
    pub computed_at: Millis,
    pub sites_expected: u32,
    pub sites_joined: u32,
    pub sites_joined_percent: f64,
    pub delegates_expected: u32,
    pub delegates_declared: u32,
    pub delegates_declared_percent: f64,
    /// Players that watched over the watch link (WHEP): sessions in all, and the most at
    /// once. They are not bridge points: no site counts them.
    pub viewers: u32,
    pub viewers_peak: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteRow {
    pub code: String,
    pub name: String,
    pub status: Status,
    pub first_join: Option<Millis>,
    /// `None` while the site is still connected, or if it never joined.
    pub last_leave: Option<Millis>,
    pub connected_minutes: f64,
    pub coverage_percent: f64,
    /// Times the site was cut off and came back while the meeting ran.
    pub interruptions: u32,
    pub longest_outage_minutes: f64,
    pub audio_only_minutes: f64,
    /// Attendance rows: sessions joined up when the gap between them is within the grace.
    pub attendance_rows: u32,
    /// Time, inside the meeting, the site was connected to its provincial hub while that hub
    /// had lost the centre (a national meeting across hubs): connected, but the centre out of
    /// reach. Not counted in `interruptions`.
    pub centre_unreachable_minutes: f64,
    /// How many times the centre was out of reach while the site was connected.
    pub centre_outages: u32,
    pub expected_delegates: u32,
    pub head_count: Option<HeadCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadCount {
    pub count: u32,
    pub confirmed_by: String,
    pub position: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub site: String,
    pub site_name: String,
    pub session: String,
    pub joined_at: Millis,
    /// `None` while still connected.
    pub left_at: Option<Millis>,
    pub reason: Option<LeaveReason>,
    /// Whether it continued the previous session's attendance row (back within the grace).
    pub reconnected: bool,
    pub minutes: f64,
    pub client: String,
    pub address: String,
    /// What its media travelled over, from its latest quality sample that says so: `udp`, or
    /// `tcp` when the hall's network passed only TCP; `None` when no sample said.
    pub transport: Option<MediaTransport>,
}

/// The watch link's viewer sessions in `events`, and the most open at once. A session the log
/// shows open is counted open until its leave (the hub closes a crashed run's at start-up).
fn count_viewers(events: &[Event]) -> (u32, u32) {
    let (mut sessions, mut open, mut peak) = (0u32, 0u32, 0u32);
    for event in events {
        match event.kind {
            EventKind::ViewerJoined { .. } => {
                sessions += 1;
                open += 1;
                peak = peak.max(open);
            }
            EventKind::ViewerLeft { .. } => open = open.saturating_sub(1),
            _ => {}
        }
    }
    (sessions, peak)
}

/// Computes the report of `plan` from `events` (in log order) as of `now`.
pub fn compute(plan: &MeetingPlan, events: &[Event], now: Millis, rules: &ReportRules) -> Report {
    let actual_start = events
        .iter()
        .find(|e| e.kind == EventKind::MeetingStarted)
        .map(|e| e.at);
    let actual_end = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::MeetingEnded)
        .map(|e| e.at)
        .filter(|end| actual_start.is_some_and(|start| *end >= start));
    let window_start = actual_start.unwrap_or(plan.scheduled_start);
    let window_end = actual_end.unwrap_or(now).max(window_start);
    let open_end = actual_end.unwrap_or(now);

    let sessions = collect_sessions(events, open_end);
    let names: HashMap<&str, &str> = plan
        .roster
        .iter()
        .map(|s| (s.code.as_str(), s.name.as_str()))
        .collect();
    let head_counts = latest_head_counts(events);

    let centre = centre_outages(events, open_end);
    let mut sites = Vec::with_capacity(plan.roster.len());
    for expected in &plan.roster {
        let own: Vec<&Session> = sessions
            .iter()
            .filter(|s| s.site == expected.code)
            .collect();
        let mut row = site_row(
            expected,
            &own,
            (window_start, window_end),
            head_counts.get(expected.code.as_str()).cloned(),
            rules,
        );
        (row.centre_unreachable_minutes, row.centre_outages) =
            centre_unreachable(&own, &centre, (window_start, window_end));
        sites.push(row);
    }

    let viewers = count_viewers(events);
    let sites_expected = plan.roster.len() as u32;
    let sites_joined = sites.iter().filter(|s| s.status != Status::Absent).count() as u32;
    let delegates_expected: u32 = plan.roster.iter().map(|s| s.expected_delegates).sum();
    let delegates_declared: u32 = sites
        .iter()
        .filter_map(|s| s.head_count.as_ref().map(|h| h.count))
        .sum();
    let summary = Summary {
        meeting_id: plan.id,
        title: plan.title.clone(),
        scheduled_start: plan.scheduled_start,
        scheduled_end: plan.scheduled_end,
        actual_start,
        actual_end,
        in_progress: actual_start.is_some() && actual_end.is_none(),
        computed_at: now,
        sites_expected,
        sites_joined,
        sites_joined_percent: percent(u64::from(sites_joined), u64::from(sites_expected)),
        delegates_expected,
        delegates_declared,
        delegates_declared_percent: percent(
            u64::from(delegates_declared),
            u64::from(delegates_expected),
        ),
        viewers: viewers.0,
        viewers_peak: viewers.1,
    };

    let session_rows = sessions
        .iter()
        .map(|s| SessionRow {
            site: s.site.clone(),
            site_name: names.get(s.site.as_str()).copied().unwrap_or("").to_owned(),
            session: s.session.clone(),
            joined_at: s.start,
            left_at: s.left.map(|(at, _)| at),
            reason: s.left.map(|(_, reason)| reason),
            reconnected: s.reconnected,
            minutes: minutes(s.end - s.start),
            client: s.client.clone(),
            address: s.address.clone(),
            transport: s.transport,
        })
        .collect();

    Report {
        summary,
        sites,
        sessions: session_rows,
        roll_calls: roll_calls(events, &names),
        recordings: recordings(events),
        events: events.to_vec(),
    }
}

/// The parts of the recording the log shows, with the gaps between them.
fn recordings(events: &[Event]) -> Vec<RecordingRow> {
    let mut rows: Vec<RecordingRow> = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::RecordingStarted { part, file, hub } => {
                let gap_before_ms = rows
                    .last()
                    .and_then(|r| r.stopped_at)
                    .map(|end| event.at.saturating_sub(end).max(0));
                rows.push(RecordingRow {
                    part: *part,
                    file: file.clone(),
                    hub: hub.clone(),
                    started_at: event.at,
                    stopped_at: None,
                    reason: None,
                    bytes: 0,
                    gap_before_ms,
                });
            }
            EventKind::RecordingStopped {
                part,
                reason,
                bytes,
            } => {
                if let Some(row) = rows.iter_mut().find(|r| r.part == *part) {
                    row.stopped_at = Some(event.at);
                    row.reason = Some(*reason);
                    row.bytes = *bytes;
                }
            }
            _ => {}
        }
    }
    rows
}

/// The roll calls of the log, each with its answers and the sites that did not answer.
fn roll_calls(events: &[Event], names: &HashMap<&str, &str>) -> Vec<RollCallRow> {
    let name_of = |code: &str| names.get(code).copied().unwrap_or("").to_owned();
    let mut rows: Vec<RollCallRow> = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::RollCallStarted { roll_call } => rows.push(RollCallRow {
                number: *roll_call,
                started_at: event.at,
                ended_at: None,
                answers: Vec::new(),
                not_answered: Vec::new(),
                delegates: 0,
            }),
            EventKind::RollCallAnswered {
                roll_call,
                site,
                count,
                confirmed_by,
                position,
            } => {
                let Some(row) = rows.iter_mut().rev().find(|r| r.number == *roll_call) else {
                    continue;
                };
                let answer = RollCallAnswerRow {
                    site: site.clone(),
                    name: name_of(site),
                    count: *count,
                    confirmed_by: confirmed_by.clone(),
                    position: position.clone(),
                    at: event.at,
                };
                match row.answers.iter_mut().find(|a| a.site == *site) {
                    Some(earlier) => *earlier = answer,
                    None => row.answers.push(answer),
                }
                row.delegates = row.answers.iter().map(|a| a.count).sum();
            }
            EventKind::RollCallEnded {
                roll_call,
                not_answered,
            } => {
                if let Some(row) = rows.iter_mut().rev().find(|r| r.number == *roll_call) {
                    row.ended_at = Some(event.at);
                    row.not_answered = not_answered
                        .iter()
                        .map(|code| SiteRef {
                            code: code.clone(),
                            name: name_of(code),
                        })
                        .collect();
                }
            }
            _ => {}
        }
    }
    rows
}

/// One session of one site, as the log tells it.
#[derive(Debug)]
struct Session {
    site: String,
    session: String,
    start: Millis,
    /// When it ended, or the end of the meeting (or now) while it is open.
    end: Millis,
    left: Option<(Millis, LeaveReason)>,
    reconnected: bool,
    client: String,
    address: String,
    /// `(from, reception)` changes, in order.
    reception: Vec<(Millis, Reception)>,
    transport: Option<MediaTransport>,
}

fn collect_sessions(events: &[Event], open_end: Millis) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for event in events {
        match &event.kind {
            EventKind::SiteJoined {
                site,
                session,
                client,
                address,
            }
            | EventKind::SiteReconnected {
                site,
                session,
                client,
                address,
                ..
            } => {
                index.insert(session.clone(), sessions.len());
                sessions.push(Session {
                    site: site.clone(),
                    session: session.clone(),
                    start: event.at,
                    end: open_end.max(event.at),
                    left: None,
                    reconnected: matches!(event.kind, EventKind::SiteReconnected { .. }),
                    client: client.clone(),
                    address: address.clone(),
                    reception: Vec::new(),
                    transport: None,
                });
            }
            EventKind::SiteLeft {
                session, reason, ..
            } => {
                if let Some(s) = index.get(session).and_then(|i| sessions.get_mut(*i))
                    && s.left.is_none()
                {
                    s.left = Some((event.at, *reason));
                    s.end = event.at.max(s.start);
                }
            }
            EventKind::MediaChanged { session, media, .. } => {
                if let Some(s) = index.get(session).and_then(|i| sessions.get_mut(*i)) {
                    s.reception.push((event.at, *media));
                }
            }
            EventKind::QualitySample {
                session,
                transport: Some(transport),
                ..
            } => {
                if let Some(s) = index.get(session).and_then(|i| sessions.get_mut(*i)) {
                    s.transport = Some(*transport);
                }
            }
            _ => {}
        }
    }
    sessions
}

/// The latest declaration per site: a head count or a roll-call answer, whichever came last.
fn latest_head_counts(events: &[Event]) -> HashMap<&str, HeadCount> {
    let mut latest = HashMap::new();
    for event in events {
        if let EventKind::HeadCount {
            site,
            count,
            confirmed_by,
            position,
        }
        | EventKind::RollCallAnswered {
            site,
            count,
            confirmed_by,
            position,
            ..
        } = &event.kind
        {
            latest.insert(
                site.as_str(),
                HeadCount {
                    count: *count,
                    confirmed_by: confirmed_by.clone(),
                    position: position.clone(),
                    at: event.at,
                },
            );
        }
    }
    latest
}

fn site_row(
    expected: &ExpectedSite,
    sessions: &[&Session],
    (window_start, window_end): (Millis, Millis),
    head_count: Option<HeadCount>,
    rules: &ReportRules,
) -> SiteRow {
    // Connected time inside the meeting, as a union of intervals (a reconnect may overlap the
    // session it replaces until that one times out). A session that began and ended within the
    // same millisecond inside the meeting still counts: it adds no time, but the site was there
    // and the gaps on either side of it are interruptions.
    let clipped: Vec<(Millis, Millis)> = sessions
        .iter()
        .map(|s| (s.start.max(window_start), s.end.min(window_end)))
        .filter(|(a, b)| b > a || (a == b && window_start <= *a && *b <= window_end))
        .collect();
    let connected = union(clipped);
    let connected_ms: Millis = connected.iter().map(|(a, b)| b - a).sum();
    let gaps: Vec<Millis> = connected
        .windows(2)
        .filter_map(|w| match w {
            [before, after] => Some(after.0 - before.1),
            _ => None,
        })
        .collect();
    let longest_outage = gaps.iter().copied().max().unwrap_or(0);
    let attendance_rows = if connected.is_empty() {
        0
    } else {
        1 + gaps.iter().filter(|g| **g > rules.grace).count() as u32
    };

    let audio_only_ms: Millis = sessions
        .iter()
        .map(|s| audio_only(s, window_start, window_end))
        .sum();

    let window = window_end - window_start;
    let coverage = if window > 0 {
        round1(connected_ms as f64 * 100.0 / window as f64)
    } else {
        0.0
    };
    let first_join = sessions.iter().map(|s| s.start).min();
    let still_connected = sessions.iter().any(|s| s.left.is_none());
    let last_leave = if still_connected {
        None
    } else {
        sessions
            .iter()
            .filter_map(|s| s.left.map(|(at, _)| at))
            .max()
    };
    let first_in_meeting = connected.first().map(|(a, _)| *a);
    let status = match first_in_meeting {
        None => Status::Absent,
        Some(_) if coverage < rules.partial_below_percent => Status::Partial,
        Some(first) if first > window_start + rules.late_after => Status::Late,
        Some(_) => Status::Present,
    };
    SiteRow {
        code: expected.code.clone(),
        name: expected.name.clone(),
        status,
        first_join,
        last_leave,
        connected_minutes: minutes(connected_ms),
        coverage_percent: coverage,
        interruptions: gaps.len() as u32,
        longest_outage_minutes: minutes(longest_outage),
        audio_only_minutes: minutes(audio_only_ms),
        attendance_rows,
        centre_unreachable_minutes: 0.0,
        centre_outages: 0,
        expected_delegates: expected.expected_delegates,
        head_count,
    }
}

/// The times each provincial hub had lost the centre, by its node name ("" in the provincial
/// hub's own log), from the log's `centre_unreachable` and `centre_reachable`; one still open
/// runs to `open_end`.
fn centre_outages(events: &[Event], open_end: Millis) -> HashMap<&str, Vec<(Millis, Millis)>> {
    let mut out: HashMap<&str, Vec<(Millis, Millis)>> = HashMap::new();
    let mut open: HashMap<&str, Millis> = HashMap::new();
    for event in events {
        match &event.kind {
            EventKind::CentreUnreachable { node } => {
                open.entry(node.as_str()).or_insert(event.at);
            }
            EventKind::CentreReachable { node } => {
                if let Some(since) = open.remove(node.as_str()) {
                    out.entry(node.as_str())
                        .or_default()
                        .push((since, event.at.max(since)));
                }
            }
            _ => {}
        }
    }
    for (node, since) in open {
        out.entry(node)
            .or_default()
            .push((since, open_end.max(since)));
    }
    out
}

/// The time (minutes) and number of times the centre was out of reach while the site was
/// connected to its hub inside the window. A session's hub is named before the `/` of its
/// session name at the centre (`tuyen-quang/...`); a session named without one is of this
/// hub, whose own outages are logged under the empty name.
fn centre_unreachable(
    sessions: &[&Session],
    centre: &HashMap<&str, Vec<(Millis, Millis)>>,
    (window_start, window_end): (Millis, Millis),
) -> (f64, u32) {
    if centre.is_empty() {
        return (0.0, 0);
    }
    let mut pieces = Vec::new();
    let mut outages = std::collections::HashSet::new();
    for session in sessions {
        let node = session.session.split_once('/').map_or("", |(node, _)| node);
        let Some(outs) = centre.get(node) else {
            continue;
        };
        let (a, b) = (session.start.max(window_start), session.end.min(window_end));
        for (i, (from, until)) in outs.iter().enumerate() {
            let (x, y) = ((*from).max(a), (*until).min(b));
            if y > x {
                pieces.push((x, y));
                outages.insert((node, i));
            }
        }
    }
    let total: Millis = union(pieces).iter().map(|(a, b)| b - a).sum();
    (minutes(total), outages.len() as u32)
}

/// Time a session spent receiving audio only, inside the window.
fn audio_only(session: &Session, window_start: Millis, window_end: Millis) -> Millis {
    let mut total = 0;
    for (i, (from, reception)) in session.reception.iter().enumerate() {
        if *reception != Reception::AudioOnly {
            continue;
        }
        let until = session
            .reception
            .get(i + 1)
            .map_or(session.end, |(next, _)| *next)
            .min(session.end);
        let a = (*from).max(window_start).max(session.start);
        let b = until.min(window_end);
        if b > a {
            total += b - a;
        }
    }
    total
}

/// Merges overlapping or touching intervals; the result is sorted.
fn union(mut intervals: Vec<(Millis, Millis)>) -> Vec<(Millis, Millis)> {
    intervals.sort_unstable();
    let mut merged: Vec<(Millis, Millis)> = Vec::with_capacity(intervals.len());
    for (a, b) in intervals {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

fn minutes(ms: Millis) -> f64 {
    round1(ms as f64 / 60_000.0)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round1(part as f64 * 100.0 / whole as f64)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
