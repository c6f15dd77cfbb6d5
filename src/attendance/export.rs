//! The report's tables as the files give them (the sites, the sessions, the event log and a
//! summary), in the report page's wording, and as CSV files for machines: UTF-8 with a BOM,
//! commas, a decimal point, local times. The Excel workbook (`xlsx`) writes the same tables.

use std::collections::HashMap;

use time::{OffsetDateTime, UtcOffset};

use super::event::Millis;
use super::report::{Report, Status};
use super::wording::{self, header};

/// The tables of a report that can be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Sites,
    Sessions,
    Events,
}

impl Table {
    pub fn parse(name: &str) -> Option<Table> {
        match name {
            "sites" => Some(Table::Sites),
            "sessions" => Some(Table::Sessions),
            "events" => Some(Table::Events),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Sites => "sites",
            Table::Sessions => "sessions",
            Table::Events => "events",
        }
    }
}

/// One cell of a report table, typed, so that each file format writes it its own way: the
/// CSV as text, the workbook as a number or a date.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Words or free text (a site's name, a code, a sentence).
    Text(String),
    /// A count or a number that names something (a sequence number, a meeting's number).
    Integer(i64),
    /// Minutes, with one decimal.
    Minutes(f64),
    /// Megabytes (10^6 bytes), with one decimal.
    Megabytes(f64),
    /// A percentage from 0 to 100, with one decimal.
    Percent(f64),
    /// An instant, shown in the hub's time zone.
    Time(Millis),
    Blank,
}

/// A report table: its headers and rows, each row as long as the headers. `intro` rows, if
/// any, come before the header row (the summary's title lines).
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    pub name: &'static str,
    pub intro: Vec<Vec<Value>>,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

/// One table of the report, with the page's wording.
pub fn sheet(report: &Report, table: Table) -> Sheet {
    match table {
        Table::Sites => sites(report),
        Table::Sessions => sessions(report),
        Table::Events => events(report),
    }
}

/// The summary: the meeting, its times as planned and as they were, how many sites and
/// delegates came, how many sites had each status.
pub fn summary(report: &Report) -> Sheet {
    let s = &report.summary;
    let text = |t: &str| Value::Text(t.to_owned());
    let count = |n: u32| Value::Integer(i64::from(n));
    let actual_end = match (s.actual_end, s.in_progress) {
        (Some(end), _) => Value::Time(end),
        (None, true) => text(wording::STILL_RUNNING),
        (None, false) => text(wording::NOT_YET),
    };
    let mut rows = vec![
        vec![
            text(header::START),
            Value::Time(s.scheduled_start),
            s.actual_start
                .map_or_else(|| text(wording::NOT_YET), Value::Time),
            Value::Blank,
        ],
        vec![
            text(header::END),
            Value::Time(s.scheduled_end),
            actual_end,
            Value::Blank,
        ],
        vec![
            text(header::SITES_JOINED),
            count(s.sites_expected),
            count(s.sites_joined),
            Value::Percent(s.sites_joined_percent),
        ],
        vec![
            text(header::DELEGATES_DECLARED),
            count(s.delegates_expected),
            count(s.delegates_declared),
            Value::Percent(s.delegates_declared_percent),
        ],
        vec![
            text(header::VIEWERS),
            Value::Blank,
            count(s.viewers),
            Value::Blank,
        ],
        vec![
            text(header::VIEWERS_PEAK),
            Value::Blank,
            count(s.viewers_peak),
            Value::Blank,
        ],
    ];
    for status in [
        Status::Present,
        Status::Late,
        Status::Partial,
        Status::Absent,
    ] {
        let sites = report
            .sites
            .iter()
            .filter(|site| site.status == status)
            .count();
        rows.push(vec![
            text(wording::status(status)),
            Value::Blank,
            Value::Integer(sites as i64),
            Value::Blank,
        ]);
    }
    Sheet {
        name: wording::sheet::SUMMARY,
        intro: vec![
            vec![text(&wording::kicker(s.meeting_id))],
            vec![text(header::MEETING), text(&s.title)],
            vec![
                text(header::COMPUTED_AT),
                Value::Time(s.computed_at),
                text(wording::meeting_state(
                    s.in_progress,
                    s.actual_end.is_some(),
                )),
            ],
            vec![],
        ],
        headers: vec!["", header::SCHEDULED, header::ACTUAL, "%"],
        rows,
    }
}

fn sites(report: &Report) -> Sheet {
    let rows = report
        .sites
        .iter()
        .map(|s| {
            let head = s.head_count.as_ref();
            vec![
                Value::Text(s.code.clone()),
                Value::Text(s.name.clone()),
                Value::Text(wording::status(s.status).to_owned()),
                time(s.first_join),
                time(s.last_leave),
                Value::Minutes(s.connected_minutes),
                Value::Percent(s.coverage_percent),
                Value::Integer(i64::from(s.interruptions)),
                Value::Minutes(s.longest_outage_minutes),
                Value::Minutes(s.audio_only_minutes),
                Value::Minutes(s.centre_unreachable_minutes),
                Value::Integer(i64::from(s.expected_delegates)),
                head.map_or(Value::Blank, |h| Value::Integer(i64::from(h.count))),
                head.map_or(Value::Blank, |h| Value::Text(h.confirmed_by.clone())),
                head.map_or(Value::Blank, |h| Value::Text(h.position.clone())),
                time(head.map(|h| h.at)),
            ]
        })
        .collect();
    Sheet {
        name: wording::sheet::SITES,
        intro: Vec::new(),
        headers: vec![
            header::SITE_CODE,
            header::SITE,
            header::STATUS,
            header::FIRST_JOIN,
            header::LAST_LEAVE,
            header::CONNECTED_MINUTES,
            header::COVERAGE,
            header::INTERRUPTIONS,
            header::LONGEST_OUTAGE,
            header::AUDIO_ONLY,
            header::CENTRE_UNREACHABLE,
            header::EXPECTED_DELEGATES,
            header::DELEGATES_DECLARED,
            header::CONFIRMED_BY,
            header::POSITION,
            header::DECLARED_AT,
        ],
        rows,
    }
}

/// The roll calls, one row per site each one counted: those that answered (with their count,
/// who confirmed it and when), then those that were there and did not.
pub fn roll_calls(report: &Report) -> Sheet {
    let text = |t: &str| Value::Text(t.to_owned());
    let mut rows = Vec::new();
    for roll_call in &report.roll_calls {
        let when = [
            Value::Integer(i64::from(roll_call.number)),
            Value::Time(roll_call.started_at),
            roll_call
                .ended_at
                .map_or_else(|| text(wording::STILL_RUNNING), Value::Time),
        ];
        for answer in &roll_call.answers {
            let mut row = when.to_vec();
            row.extend([
                text(&answer.site),
                text(&answer.name),
                text(wording::YES),
                Value::Integer(i64::from(answer.count)),
                text(&answer.confirmed_by),
                text(&answer.position),
                Value::Time(answer.at),
            ]);
            rows.push(row);
        }
        for site in &roll_call.not_answered {
            let mut row = when.to_vec();
            row.extend([
                text(&site.code),
                text(&site.name),
                text(wording::NO),
                Value::Blank,
                Value::Blank,
                Value::Blank,
                Value::Blank,
            ]);
            rows.push(row);
        }
    }
    Sheet {
        name: wording::sheet::ROLL_CALLS,
        intro: Vec::new(),
        headers: vec![
            header::ROLL_CALL,
            header::START,
            header::END,
            header::SITE_CODE,
            header::SITE,
            header::ANSWERED,
            header::DELEGATES_DECLARED,
            header::CONFIRMED_BY,
            header::POSITION,
            header::ANSWERED_AT,
        ],
        rows,
    }
}

/// The parts of the meeting's recording: when each ran, how it ended, its file.
pub fn recordings(report: &Report) -> Sheet {
    let rows = report
        .recordings
        .iter()
        .map(|part| {
            vec![
                Value::Integer(i64::from(part.part)),
                Value::Time(part.started_at),
                part.stopped_at.map_or_else(
                    || Value::Text(wording::STILL_RUNNING.to_owned()),
                    Value::Time,
                ),
                part.gap_before_ms
                    .map_or(Value::Blank, |ms| Value::Minutes(ms as f64 / 60_000.0)),
                part.reason.map_or(Value::Blank, |reason| {
                    Value::Text(wording::recording_stop(reason).to_owned())
                }),
                if part.stopped_at.is_some() {
                    Value::Megabytes(part.bytes as f64 / 1_000_000.0)
                } else {
                    Value::Blank
                },
                Value::Text(part.file.clone()),
            ]
        })
        .collect();
    Sheet {
        name: wording::sheet::RECORDINGS,
        intro: Vec::new(),
        headers: vec![
            header::RECORDING_PART,
            header::START,
            header::END,
            header::GAP_BEFORE,
            header::RECORDING_END,
            header::SIZE_MB,
            header::RECORDING_FILE,
        ],
        rows,
    }
}

fn sessions(report: &Report) -> Sheet {
    let rows = report
        .sessions
        .iter()
        .map(|s| {
            vec![
                Value::Text(s.site.clone()),
                Value::Text(s.site_name.clone()),
                Value::Text(s.session.clone()),
                Value::Time(s.joined_at),
                time(s.left_at),
                Value::Text(
                    s.reason
                        .map_or(wording::STILL_CONNECTED, wording::leave_reason)
                        .to_owned(),
                ),
                Value::Text(
                    if s.reconnected {
                        wording::YES
                    } else {
                        wording::NO
                    }
                    .to_owned(),
                ),
                Value::Minutes(s.minutes),
                Value::Text(s.client.clone()),
                Value::Text(s.address.clone()),
                Value::Text(wording::transport(s.transport).to_owned()),
            ]
        })
        .collect();
    Sheet {
        name: wording::sheet::SESSIONS,
        intro: Vec::new(),
        headers: vec![
            header::SITE_CODE,
            header::SITE,
            header::SESSION,
            header::JOINED_AT,
            header::LEFT_AT,
            header::REASON,
            header::RECONNECTED,
            header::MINUTES,
            header::CLIENT,
            header::ADDRESS,
            header::TRANSPORT,
        ],
        rows,
    }
}

fn events(report: &Report) -> Sheet {
    let names: HashMap<&str, &str> = report
        .sites
        .iter()
        .map(|s| (s.code.as_str(), s.name.as_str()))
        .collect();
    let rows = report
        .events
        .iter()
        .map(|e| {
            let site = e.kind.site().unwrap_or("");
            vec![
                Value::Integer(i64::try_from(e.seq).unwrap_or(i64::MAX)),
                Value::Time(e.at),
                Value::Time(e.recorded_at),
                Value::Text(wording::event_name(&e.kind).to_owned()),
                Value::Text(e.kind.name().to_owned()),
                Value::Text(site.to_owned()),
                Value::Text(names.get(site).copied().unwrap_or(site).to_owned()),
                Value::Text(wording::event_details(e)),
            ]
        })
        .collect();
    Sheet {
        name: wording::sheet::EVENTS,
        intro: Vec::new(),
        headers: vec![
            header::SEQ,
            header::AT,
            header::RECORDED_AT,
            header::EVENT,
            header::EVENT_CODE,
            header::SITE_CODE,
            header::SITE,
            header::DETAILS,
        ],
        rows,
    }
}

fn time(at: Option<Millis>) -> Value {
    at.map_or(Value::Blank, Value::Time)
}

/// One table of the report as CSV bytes: UTF-8 with a BOM, comma-separated, a decimal point,
/// local times as `2026-12-01 08:02:00`, text that looks like a formula escaped ([`cell`]).
pub fn csv(report: &Report, table: Table, offset: UtcOffset) -> Vec<u8> {
    let sheet = sheet(report, table);
    let mut out = Vec::from(&b"\xEF\xBB\xBF"[..]);
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let _ = w.write_record(&sheet.headers);
        for row in &sheet.rows {
            let _ = w.write_record(row.iter().map(|value| csv_field(value, offset)));
        }
        let _ = w.flush();
    }
    out
}

fn csv_field(value: &Value, offset: UtcOffset) -> String {
    match value {
        Value::Text(text) => cell(text),
        Value::Integer(n) => n.to_string(),
        Value::Minutes(x) | Value::Percent(x) | Value::Megabytes(x) => x.to_string(),
        Value::Time(at) => local_time(*at, offset),
        Value::Blank => String::new(),
    }
}

/// `2026-12-01 08:02:00` in the given offset.
pub fn local_time(at: Millis, offset: UtcOffset) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// Free text as a cell Excel will not run: text a site typed (who confirmed a head count, a
/// browser's name) that starts like a formula gets a leading apostrophe, which Excel shows as
/// text and hides. Every CSV the hub writes uses it; [`cell_text`] undoes it.
pub fn cell(text: &str) -> String {
    // A text that already looks escaped is escaped once more, so it reads back as it was.
    if text.starts_with(FORMULA_STARTS) || cell_text(text).len() != text.len() {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The text a [`cell`] was made from: a CSV the hub wrote reads back as it was.
pub fn cell_text(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(text) if text.starts_with(FORMULA_STARTS) || text.starts_with('\'') => text,
        _ => cell,
    }
}

/// What a spreadsheet takes for the start of a formula (or, for tab and CR, hides before one).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_reads_back_as_it_was_written() {
        for text in [
            "=cmd|' /C calc'!A0",
            "'=x",
            "''",
            "'",
            "'abc",
            "-5",
            "Xã A",
            "",
            "''=y",
        ] {
            assert_eq!(cell_text(&cell(text)), text, "{text:?} as {:?}", cell(text));
        }
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("'abc"), "'abc", "nothing to escape");
    }
    use crate::config::VIETNAM;

    #[test]
    fn text_that_looks_like_a_formula_stays_text() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("+84 912"), "'+84 912");
        assert_eq!(cell("Nguyễn Văn A"), "Nguyễn Văn A");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn local_time_is_vietnam_time() {
        // 2026-12-01 01:00:00 UTC
        assert_eq!(
            local_time(1_796_086_800_000, VIETNAM),
            "2026-12-01 08:00:00"
        );
    }
}
