//! The HTTP API of the directory, meetings and reports: CSV in UTF-8 with BOM that round-trips
//! Vietnamese names, and bad input refused with a clear error and nothing half-written.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/faults.rs"]
mod faults;
#[path = "common/http.rs"]
mod http;

use serde_json::json;

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_csv_round_trips_with_bom() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let csv = "\u{feff}admin_code,name,level,parent_code,parent_name,delegates\n\
        8,Tuyên Quang,tỉnh,,,0\n\
        2269,Xã Thượng Lâm,xã,8,Tuyên Quang,60\n\
        2317,Phường Minh Xuân,phường,8,Tuyên Quang,45\n\
        2302,\"Xã Minh Quang, vùng cao\",xã,8,Tuyên Quang,30\n";
    let imported = http::post(addr, "/api/sites/import", csv.as_bytes()).await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(imported.json()["imported"], 4);

    let exported = http::get(addr, "/api/sites.csv").await;
    assert_eq!(exported.status, 200);
    assert!(exported.body.starts_with(BOM), "UTF-8 BOM for Excel");
    let text = std::str::from_utf8(&exported.body[3..]).expect("UTF-8");
    assert!(text.contains("Xã Thượng Lâm"));
    assert!(text.contains("\"Xã Minh Quang, vùng cao\""));

    // Re-importing the export changes nothing.
    let again = http::post(addr, "/api/sites/import", &exported.body).await;
    assert_eq!(again.status, 200, "{}", again.text());
    let exported_again = http::get(addr, "/api/sites.csv").await;
    assert_eq!(exported_again.body, exported.body);

    let sites = http::get(addr, "/api/sites").await.json();
    let tl = sites
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["code"] == "2269")
        .expect("site");
    assert_eq!(
        (tl["name"].as_str(), tl["level"].as_str()),
        (Some("Xã Thượng Lâm"), Some("commune"))
    );
    assert_eq!(tl["delegates"], 60);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_half_written() {
    let (hub, good) = http::hub_with_meeting("Họp", &[("2269", "Xã Thượng Lâm")], false).await;
    let addr = hub.http_addr();

    // A file with one bad row among good ones imports nothing.
    let bad_csv = "admin_code,name,level,parent_code,parent_name,delegates\n\
        5001,Xã Mới Một,xã,8,Tuyên Quang,10\n\
        5002,Xã Mới Hai,xã,8,Tuyên Quang,-7\n\
        5001,Xã Trùng,xã,8,Tuyên Quang,10\n";
    let refused = http::post(addr, "/api/sites/import", bad_csv.as_bytes()).await;
    assert_eq!(refused.status, 400);
    let error = refused.json();
    assert_eq!(error["error"]["code"], "invalid_csv");
    let lines: Vec<i64> = error["error"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["line"].as_i64().expect("line"))
        .collect();
    assert_eq!(lines, vec![3, 4]);
    let sites = http::get(addr, "/api/sites").await.json();
    assert!(
        !sites
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["code"] == "5001"),
        "nothing of a refused file is imported"
    );
    for garbage in [&b"\xff\xfe\x00garbage"[..], b"", b"code;name\n1;x\n"] {
        let r = http::post(addr, "/api/sites/import", garbage).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_csv");
    }

    // Meetings with unknown or repeated sites, bad times or no sites are refused whole.
    let meetings_before = http::get(addr, "/api/meetings")
        .await
        .json()
        .as_array()
        .map(Vec::len);
    let now = 1_796_086_800_000_i64;
    for (body, expected) in [
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": now, "scheduled_end": now + 1,
                "sites": [{"code": "2269"}, {"code": "9999"}]}),
            "unknown site code 9999",
        ),
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": now, "scheduled_end": now + 1,
                "sites": [{"code": "2269"}, {"code": "2269"}]}),
            "invited twice",
        ),
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": now, "scheduled_end": now,
                "sites": [{"code": "2269"}]}),
            "after the start",
        ),
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": now, "scheduled_end": now + 1,
                "sites": []}),
            "at least one site",
        ),
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": now, "scheduled_end": now + 1,
                "sites": [{"code": "2269", "expected_delegates": 50_000}]}),
            "more than",
        ),
        (
            json!({"title": "T", "studio_name": "S", "scheduled_start": "yesterday",
                "scheduled_end": now, "sites": [{"code": "2269"}]}),
            "scheduled_start",
        ),
    ] {
        let r = http::post(addr, "/api/meetings", body.to_string().as_bytes()).await;
        assert_eq!(r.status, 400, "{}", r.text());
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            message.contains(expected),
            "{message:?} should mention {expected:?}"
        );
    }
    let r = http::post(addr, "/api/meetings", b"{not json").await;
    assert_eq!(r.status, 400);
    let meetings_after = http::get(addr, "/api/meetings")
        .await
        .json()
        .as_array()
        .map(Vec::len);
    assert_eq!(meetings_before, meetings_after, "no meeting half-created");

    // RFC 3339 times are accepted too.
    let r = http::post(
        addr,
        "/api/meetings",
        json!({"title": "Họp sáng", "studio_name": "Studio", "sites": [{"code": "2269"}],
               "scheduled_start": "2026-12-01T08:00:00+07:00",
               "scheduled_end": "2026-12-01T10:00:00+07:00"})
        .to_string()
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["scheduled_start"], 1_796_086_800_000_i64);

    // Reports and actions on meetings that do not exist.
    for path in [
        "/api/meetings/424242",
        "/api/meetings/424242/report",
        "/api/meetings/424242/report.csv",
    ] {
        let r = http::get(addr, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "not_found");
    }
    let r = http::post(addr, "/api/meetings/424242/start", b"").await;
    assert_eq!(r.status, 404);
    let r = http::get(
        addr,
        &format!("/api/meetings/{}/report.csv?table=nope", good.id),
    )
    .await;
    assert_eq!(r.status, 400);

    // Starting twice, or ending what has not started, is a conflict.
    let r = http::post(addr, &format!("/api/meetings/{}/end", good.id), b"").await;
    assert_eq!(r.status, 409);
    let r = http::post(addr, &format!("/api/meetings/{}/start", good.id), b"").await;
    assert_eq!(r.status, 200);
    let r = http::post(addr, &format!("/api/meetings/{}/start", good.id), b"").await;
    assert_eq!(r.status, 409);
    let r = http::post(
        addr,
        &format!("/api/meetings/{}/sites/9999/reissue", good.id),
        b"",
    )
    .await;
    assert_eq!(r.status, 404);

    // The report CSVs are UTF-8 with BOM and carry the Vietnamese names.
    for table in ["sites", "sessions", "events"] {
        let r = http::get(
            addr,
            &format!("/api/meetings/{}/report.csv?table={table}", good.id),
        )
        .await;
        assert_eq!(r.status, 200, "{table}");
        assert!(r.body.starts_with(BOM), "{table} has a BOM");
        std::str::from_utf8(&r.body).expect("UTF-8");
    }
    let sites_csv = http::get(addr, &format!("/api/meetings/{}/report.csv", good.id)).await;
    let text = String::from_utf8(sites_csv.body[3..].to_vec()).expect("UTF-8");
    assert!(text.starts_with("Mã đơn vị,Điểm cầu,Trạng thái"), "{text}");
    assert!(text.contains("2269,Xã Thượng Lâm,Vắng mặt"), "{text}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_is_internal_and_tells_the_client_nothing_of_it() {
    let dir = std::env::temp_dir().join(format!("diemcau-api-db-failure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let login = http::organizer(addr).await;
    assert_eq!(http::get(addr, "/api/sites").await.status, 200);

    faults::break_table(&dir, "sites");
    let r = http::get(addr, "/api/sites").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "internal");
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        !message.contains("sites") && !message.contains("no such table"),
        "the client hears nothing of the database: {message:?}"
    );

    // A login that cannot be checked is the hub's failure, not the caller's: not 401.
    faults::break_table(&dir, "login_sessions");
    let r = http::send(addr, "GET", "/api/session", b"", Some(&login), &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "internal");
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
