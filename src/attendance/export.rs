//! Reports as CSV files for Excel: UTF-8 with a BOM, local times, Vietnamese headers.

use time::{OffsetDateTime, UtcOffset};

use super::event::{LeaveReason, Millis};
use super::report::{Report, Status};

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

/// One table of the report as CSV bytes, UTF-8 with BOM.
pub fn csv(report: &Report, table: Table, offset: UtcOffset) -> Vec<u8> {
    let mut out = Vec::from(&b"\xEF\xBB\xBF"[..]);
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let time = |at: Option<Millis>| at.map(|t| local_time(t, offset)).unwrap_or_default();
        match table {
            Table::Sites => {
                let _ = w.write_record([
                    "Mã đơn vị",
                    "Điểm cầu",
                    "Trạng thái",
                    "Vào lần đầu",
                    "Rời lần cuối",
                    "Số phút kết nối",
                    "% thời lượng họp",
                    "Số lần gián đoạn",
                    "Gián đoạn dài nhất (phút)",
                    "Số phút chỉ có âm thanh",
                    "Đại biểu dự kiến",
                    "Đại biểu báo cáo",
                    "Người xác nhận",
                    "Chức vụ",
                    "Thời điểm báo cáo",
                ]);
                for s in &report.sites {
                    let head = s.head_count.as_ref();
                    let _ = w.write_record([
                        s.code.clone(),
                        cell(&s.name),
                        status_vi(s.status).to_owned(),
                        time(s.first_join),
                        time(s.last_leave),
                        s.connected_minutes.to_string(),
                        s.coverage_percent.to_string(),
                        s.interruptions.to_string(),
                        s.longest_outage_minutes.to_string(),
                        s.audio_only_minutes.to_string(),
                        s.expected_delegates.to_string(),
                        head.map(|h| h.count.to_string()).unwrap_or_default(),
                        head.map(|h| cell(&h.confirmed_by)).unwrap_or_default(),
                        head.map(|h| cell(&h.position)).unwrap_or_default(),
                        time(head.map(|h| h.at)),
                    ]);
                }
            }
            Table::Sessions => {
                let _ = w.write_record([
                    "Mã đơn vị",
                    "Điểm cầu",
                    "Phiên",
                    "Vào",
                    "Rời",
                    "Lý do rời",
                    "Nối lại trong thời gian chờ",
                    "Số phút",
                    "Trình duyệt",
                    "Địa chỉ",
                ]);
                for s in &report.sessions {
                    let _ = w.write_record([
                        s.site.clone(),
                        cell(&s.site_name),
                        s.session.clone(),
                        time(Some(s.joined_at)),
                        time(s.left_at),
                        s.reason.map(reason_vi).unwrap_or("đang kết nối").to_owned(),
                        if s.reconnected { "có" } else { "không" }.to_owned(),
                        s.minutes.to_string(),
                        cell(&s.client),
                        s.address.clone(),
                    ]);
                }
            }
            Table::Events => {
                let _ = w.write_record([
                    "STT",
                    "Thời điểm",
                    "Ghi lúc",
                    "Sự kiện",
                    "Mã đơn vị",
                    "Chi tiết",
                ]);
                for e in &report.events {
                    let detail = serde_json::to_string(&e.kind).unwrap_or_default();
                    let _ = w.write_record([
                        e.seq.to_string(),
                        time(Some(e.at)),
                        time(Some(e.recorded_at)),
                        e.kind.name().to_owned(),
                        e.kind.site().unwrap_or("").to_owned(),
                        detail,
                    ]);
                }
            }
        }
        let _ = w.flush();
    }
    out
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

fn status_vi(status: Status) -> &'static str {
    match status {
        Status::Present => "có mặt",
        Status::Late => "đến muộn",
        Status::Partial => "dự một phần",
        Status::Absent => "vắng mặt",
    }
}

fn reason_vi(reason: LeaveReason) -> &'static str {
    match reason {
        LeaveReason::Closed => "tự rời",
        LeaveReason::NetworkTimeout => "mất kết nối",
        LeaveReason::Removed => "bị mời ra",
        LeaveReason::Replaced => "vào lại từ trang khác",
        LeaveReason::HubShutdown => "máy chủ dừng",
        LeaveReason::HubCrash => "máy chủ gặp sự cố",
        LeaveReason::MeetingEnded => "kết thúc họp",
    }
}

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
