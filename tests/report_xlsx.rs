//! A small real meeting (two sites join, a roll call, one leaves, the organizer ends it, a
//! third never comes), then its report as an Excel workbook, read back as Excel would: five
//! sheets with the page's Vietnamese wording, times as date cells on the Vietnam clock, figures
//! as numbers, and a site name that looks like a formula kept as plain text. The CSVs of the same meeting say
//! the same words, with no raw JSON.

#![allow(clippy::indexing_slicing)] // JSON lookups and cell positions in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;

use std::io::Cursor;
use std::time::Duration;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use serde_json::{Value, json};

const TITLE: &str = "Hội nghị tháng 12 & tổng kết";
/// A site name a spreadsheet would run as a formula if it were written as one.
const FORMULA_NAME: &str = "=cmd|' /C calc'!A0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_workbook_has_typed_cells_in_the_pages_words() {
    let (hub, m) = http::hub_with_meeting(
        TITLE,
        &[
            ("2269", "Xã Thượng Lâm"),
            ("2270", FORMULA_NAME),
            ("2271", "Xã Lâm Bình"),
        ],
        true,
    )
    .await;
    let addr = hub.http_addr();
    let report_path = format!("/api/meetings/{}/report", m.id);

    let mut thuong_lam = signaling::join(addr, &m.code("2269"), Some(m.id)).await;
    let _formula_site = signaling::join(addr, &m.code("2270"), Some(m.id)).await;
    // A roll call: Thượng Lâm answers, the other site there does not.
    let mut studio = signaling::connect(http::organizer_ws_request(addr).await).await;
    signaling::send(
        &mut studio,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    signaling::next_of_type(&mut studio, "joined").await;
    // The chair records the meeting (its part ends with the meeting).
    signaling::send(&mut studio, &json!({"type": "record", "on": true})).await;
    signaling::next_of_type(&mut studio, "recording").await;
    signaling::send(&mut studio, &json!({"type": "start_roll_call"})).await;
    let asked = signaling::next_of_type(&mut thuong_lam, "roll_call").await;
    signaling::send(
        &mut thuong_lam,
        &json!({"type": "answer_roll_call", "roll_call": asked["roll_call"], "count": 44,
            "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}),
    )
    .await;
    signaling::next_of_type(&mut thuong_lam, "roll_call_answer_recorded").await;
    signaling::send(&mut studio, &json!({"type": "end_roll_call"})).await;
    signaling::next_of_type(&mut thuong_lam, "roll_call").await;
    signaling::send(&mut thuong_lam, &json!({"type": "leave"})).await;
    wait::until_some(
        "Thượng Lâm's leave in the log",
        Duration::from_secs(10),
        || async {
            let report = http::get(addr, &report_path).await.json();
            has_event(&report, "site_left", "2269").then_some(())
        },
    )
    .await;
    let ended = http::post(addr, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    let report = wait::until_some(
        "the formula site's session ended with the meeting",
        Duration::from_secs(10),
        || async {
            let report = http::get(addr, &report_path).await.json();
            has_event(&report, "site_left", "2270").then_some(report)
        },
    )
    .await;

    // ---- the download ----
    let path = format!("/api/meetings/{}/report.xlsx", m.id);
    let reply = http::get(addr, &path).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    let disposition = reply.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with(&format!(
            "attachment; filename=\"bao-cao-hop-{}-hoi-nghi-thang-12-tong-ket.xlsx\"; filename*=UTF-8''",
            m.id
        )),
        "{disposition}"
    );
    let utf8_name = percent_decode(disposition.split("UTF-8''").nth(1).unwrap_or_default());
    assert_eq!(utf8_name, format!("Báo cáo họp {} - {TITLE}.xlsx", m.id));

    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(reply.body)).expect("a workbook");
    assert_eq!(
        book.sheet_names(),
        [
            "Tổng hợp",
            "Điểm cầu",
            "Phiên kết nối",
            "Điểm danh",
            "Bản ghi hình",
            "Sự kiện"
        ]
    );
    // The recording: its part, when it ran, how it ended, its size and file.
    let recordings = book
        .worksheet_range("Bản ghi hình")
        .expect("recordings sheet");
    let rows: Vec<Vec<Data>> = recordings.rows().map(<[Data]>::to_vec).collect();
    assert_eq!(rows.len(), 2, "a header and one part: {rows:?}");
    assert_eq!(
        rows[0],
        [
            "Phần",
            "Bắt đầu",
            "Kết thúc",
            "Gián đoạn trước phần (phút)",
            "Lý do kết thúc",
            "Dung lượng (MB)",
            "Tệp"
        ]
        .map(|h| Data::String(h.into()))
    );
    assert_eq!(rows[1][0], Data::Float(1.0));
    assert!(matches!(rows[1][1], Data::DateTime(_)), "{:?}", rows[1][1]);
    assert!(matches!(rows[1][2], Data::DateTime(_)), "{:?}", rows[1][2]);
    assert_eq!(rows[1][3], Data::Empty, "no gap before the first part");
    assert_eq!(rows[1][4], Data::String("cuộc họp kết thúc".into()));
    assert!(matches!(rows[1][5], Data::Float(_)), "{:?}", rows[1][5]);
    assert_eq!(rows[1][6], Data::String(format!("meeting-{}-1.mkv", m.id)));
    // The roll call: one row per site it counted, the answer first, then who did not answer.
    let roll_calls = book.worksheet_range("Điểm danh").expect("roll-call sheet");
    let rows: Vec<Vec<Data>> = roll_calls.rows().map(<[Data]>::to_vec).collect();
    assert_eq!(rows.len(), 3, "a header and two sites: {rows:?}");
    assert_eq!(rows[0][5], Data::String("Trả lời".into()));
    assert_eq!(
        rows[1][3..8],
        [
            Data::String("2269".into()),
            Data::String("Xã Thượng Lâm".into()),
            Data::String("có".into()),
            Data::Float(44.0),
            Data::String("Nguyễn Văn An".into()),
        ]
    );
    assert!(matches!(rows[1][1], Data::DateTime(_)), "{:?}", rows[1][1]);
    assert_eq!(
        rows[2][3..6],
        [
            Data::String("2270".into()),
            Data::String(FORMULA_NAME.into()),
            Data::String("không".into()),
        ]
    );
    for sheet in book.sheet_names() {
        let formulas = book.worksheet_formula(&sheet).expect("formulas");
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "{sheet} holds no formula"
        );
    }

    // ---- the sites ----
    let sites = book.worksheet_range("Điểm cầu").expect("sites sheet");
    let headers: Vec<String> = sites
        .rows()
        .next()
        .expect("a header row")
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        headers[..7],
        [
            "Mã đơn vị",
            "Điểm cầu",
            "Trạng thái",
            "Vào lần đầu",
            "Rời lần cuối",
            "Số phút kết nối",
            "% thời gian họp",
        ]
    );
    let row = |code: &str| {
        sites
            .rows()
            .find(|r| r.first() == Some(&Data::String(code.to_owned())))
            .unwrap_or_else(|| panic!("a row for {code}"))
            .to_vec()
    };
    let expected = |code: &str| {
        report["sites"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["code"] == code))
            .cloned()
            .unwrap_or_else(|| panic!("{code} in the JSON report"))
    };

    let thuong_lam_row = row("2269");
    let json_row = expected("2269");
    assert_eq!(thuong_lam_row[1], Data::String("Xã Thượng Lâm".into()));
    let status_words = ["Có mặt", "Đến muộn", "Tham dự một phần", "Vắng mặt"];
    assert!(
        status_words.contains(&text(&thuong_lam_row[2]).as_str()),
        "{:?}",
        thuong_lam_row[2]
    );
    // The first join is a date cell, on the Vietnam clock, to the second.
    match &thuong_lam_row[3] {
        Data::DateTime(at) => {
            assert!(at.is_datetime(), "a date and time, not a duration");
            let millis = json_row["first_join"].as_i64().expect("joined");
            assert!(
                (at.as_f64() - vietnam_serial(millis)).abs() < 1e-7,
                "first join {} is not {millis} in Vietnam time",
                at.as_f64()
            );
        }
        other => panic!("the first join is not a date cell: {other:?}"),
    }
    assert!(
        matches!(thuong_lam_row[4], Data::DateTime(_)),
        "{:?}",
        thuong_lam_row[4]
    );
    assert_eq!(
        number(&thuong_lam_row[5]),
        json_row["connected_minutes"].as_f64().expect("minutes")
    );
    let coverage = number(&thuong_lam_row[6]);
    assert!(
        (coverage - json_row["coverage_percent"].as_f64().expect("percent") / 100.0).abs() < 1e-9,
        "coverage {coverage} is the JSON's percentage as a fraction"
    );

    let formula_row = row("2270");
    assert_eq!(formula_row[1], Data::String(FORMULA_NAME.into()));
    let absent_row = row("2271");
    assert_eq!(absent_row[2], Data::String("Vắng mặt".into()));
    assert_eq!(absent_row[3], Data::Empty, "never joined: no first join");

    // ---- the summary ----
    let summary = book.worksheet_range("Tổng hợp").expect("summary sheet");
    let cells: Vec<Vec<Data>> = summary.rows().map(<[Data]>::to_vec).collect();
    assert!(
        cells
            .iter()
            .any(|r| r.contains(&Data::String(TITLE.into())))
    );
    let sites_joined = cells
        .iter()
        .find(|r| r.first() == Some(&Data::String("Điểm cầu tham dự".into())))
        .expect("a row of sites joined");
    assert_eq!(number(&sites_joined[1]), 3.0, "expected");
    assert_eq!(number(&sites_joined[2]), 2.0, "joined");
    assert!((number(&sites_joined[3]) - 2.0 / 3.0).abs() < 0.001);
    let start = cells
        .iter()
        .find(|r| r.first() == Some(&Data::String("Bắt đầu".into())))
        .expect("a row of the start");
    assert!(matches!(start[2], Data::DateTime(_)), "{:?}", start[2]);

    // ---- the sessions and the events ----
    let sessions = book
        .worksheet_range("Phiên kết nối")
        .expect("sessions sheet");
    let reasons: Vec<String> = sessions.rows().skip(1).map(|r| text(&r[5])).collect();
    assert!(
        reasons.contains(&"điểm cầu tự rời".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"cuộc họp kết thúc".to_owned()),
        "{reasons:?}"
    );

    let events = book.worksheet_range("Sự kiện").expect("events sheet");
    let left = events
        .rows()
        .find(|r| text(&r[4]) == "site_left" && text(&r[5]) == "2269")
        .expect("Thượng Lâm's leave in the sheet");
    assert_eq!(text(&left[3]), "Điểm cầu rời họp");
    assert_eq!(text(&left[6]), "Xã Thượng Lâm");
    assert_eq!(text(&left[7]), "điểm cầu tự rời");
    assert!(
        matches!(left[0], Data::Float(_) | Data::Int(_)),
        "{:?}",
        left[0]
    );
    assert!(matches!(left[1], Data::DateTime(_)), "{:?}", left[1]);

    // ---- the CSVs say the same ----
    let events_csv = report_csv(addr, m.id, "events").await;
    assert!(
        events_csv.starts_with(
            "STT,Thời điểm,Ghi vào nhật ký lúc,Sự kiện,Mã sự kiện,Mã đơn vị,Điểm cầu,Chi tiết\r\n"
        ) || events_csv.starts_with(
            "STT,Thời điểm,Ghi vào nhật ký lúc,Sự kiện,Mã sự kiện,Mã đơn vị,Điểm cầu,Chi tiết\n"
        ),
        "{events_csv}"
    );
    assert!(
        events_csv.contains(",Điểm cầu rời họp,site_left,2269,Xã Thượng Lâm,điểm cầu tự rời"),
        "{events_csv}"
    );
    assert!(!events_csv.contains('{'), "no raw JSON: {events_csv}");
    let sites_csv = report_csv(addr, m.id, "sites").await;
    assert!(
        sites_csv.contains("2271,Xã Lâm Bình,Vắng mặt,"),
        "{sites_csv}"
    );
    assert!(
        sites_csv.contains(&format!("2270,'{FORMULA_NAME},")),
        "the CSV escapes the formula: {sites_csv}"
    );
    let sessions_csv = report_csv(addr, m.id, "sessions").await;
    assert!(sessions_csv.contains("cuộc họp kết thúc"), "{sessions_csv}");

    // ---- who may download it ----
    let staff = http::staff(addr).await;
    let as_staff = http::send(addr, "GET", &path, b"", Some(&staff), &[]).await;
    assert_eq!(as_staff.status, 200, "staff read reports");
    let anonymous = http::send(addr, "GET", &path, b"", None, &[]).await;
    assert_eq!(anonymous.status, 401);
    let missing = http::get(addr, "/api/meetings/424242/report.xlsx").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "not_found");
    hub.shutdown().await;
}

/// One report CSV as text, its BOM checked and taken off.
async fn report_csv(addr: std::net::SocketAddr, meeting: i64, table: &str) -> String {
    let path = format!("/api/meetings/{meeting}/report.csv?table={table}");
    let reply = http::get(addr, &path).await;
    assert_eq!(reply.status, 200, "{table}");
    let text = String::from_utf8(reply.body).expect("UTF-8");
    text.strip_prefix('\u{feff}').expect("a BOM").to_owned()
}

fn has_event(report: &Value, kind: &str, site: &str) -> bool {
    report["events"].as_array().is_some_and(|events| {
        events
            .iter()
            .any(|e| e["kind"] == kind && e["site"] == site)
    })
}

fn text(cell: &Data) -> String {
    match cell {
        Data::String(s) => s.clone(),
        other => panic!("not a text cell: {other:?}"),
    }
}

fn number(cell: &Data) -> f64 {
    match cell {
        Data::Float(x) => *x,
        Data::Int(n) => *n as f64,
        other => panic!("not a number cell: {other:?}"),
    }
}

/// The Excel serial of `millis` on the Vietnam clock (UTC+7), to the whole second.
fn vietnam_serial(millis: i64) -> f64 {
    let seconds = millis.div_euclid(1000) + 7 * 3600;
    seconds.div_euclid(86_400) as f64 + 25_569.0 + seconds.rem_euclid(86_400) as f64 / 86_400.0
}

fn percent_decode(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' && tail.len() >= 2 {
            let hex = std::str::from_utf8(&tail[..2]).expect("hex");
            bytes.push(u8::from_str_radix(hex, 16).expect("hex"));
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).expect("UTF-8")
}
