//! One chair for a national meeting across hubs: the chair at the root sees the commune joined
//! to its provincial hub on its console (with the hub's name), and a roll call started at the
//! root is answered by that commune on its own hub and by a commune joined to the root itself,
//! both counted at the root, in its live result and in its report. The chair's mute of that
//! commune is done by its own hub. The province's organizer, opening its part's studio link,
//! watches it (role `observer`): its communes on the console, no action of its own.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;

use std::time::Duration;

use serde_json::{Value, json};

/// The next message of `kind` on `socket`, skipping others (the console comes often).
async fn next(socket: &mut signaling::Socket, kind: &str) -> Value {
    signaling::next_of_type(socket, kind).await
}

/// The first console row of `site`, joined, that its provincial hub provides.
async fn console_row_from_province(chair: &mut signaling::Socket, site: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no console row of {site} from its provincial hub within 15 s"
        );
        let console = next(chair, "console").await;
        let row = console["sites"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["site"] == site && r["node"].is_string() && r["state"] != "not_joined")
        });
        if let Some(row) = row {
            return row.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_chair_sees_and_roll_calls_communes_of_a_provincial_hub() {
    let tree = cascade::Tree::start("cascade-chair").await;
    let root = tree.root.http_addr();
    let province = tree.province.http_addr();
    // Thượng Lâm (Tuyên Quang, which has its hub) and Lũng Cú (Hà Giang, which has none).
    let national = tree.national_meeting(&["02269", "00694"]).await;
    let id = national["id"].as_i64().expect("an id");
    let part = tree.part(id).await;
    let local = part["id"].as_i64().expect("the local id");

    let mut chair = signaling::connect(http::organizer_ws_request(root).await).await;
    signaling::send(
        &mut chair,
        &json!({"type": "join", "code": national["studio_code"], "meeting": id}),
    )
    .await;
    next(&mut chair, "joined").await;
    let thuong_lam_code = part["site_codes"]["02269"].as_str().expect("a code");
    let mut thuong_lam = signaling::join(province, thuong_lam_code, Some(local)).await;
    let lung_cu_code = national["site_codes"]["00694"].as_str().expect("a code");
    let mut lung_cu = signaling::join(root, lung_cu_code, Some(id)).await;

    // The root's console shows Thượng Lâm as its province's hub sees it.
    let row = console_row_from_province(&mut chair, "02269").await;
    assert_eq!(row["node"], "tuyen-quang", "{row}");
    assert_eq!(row["state"], "connecting", "joined, no media yet: {row}");

    // A roll call from the root: each commune is asked on its own hub and answers there.
    signaling::send(&mut chair, &json!({"type": "start_roll_call"})).await;
    let asked = next(&mut thuong_lam, "roll_call").await;
    assert_eq!(asked["active"], true, "{asked}");
    signaling::send(
        &mut thuong_lam,
        &json!({"type": "answer_roll_call", "roll_call": asked["roll_call"], "count": 38,
            "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}),
    )
    .await;
    next(&mut thuong_lam, "roll_call_answer_recorded").await;
    let asked = next(&mut lung_cu, "roll_call").await;
    signaling::send(
        &mut lung_cu,
        &json!({"type": "answer_roll_call", "roll_call": asked["roll_call"], "count": 27,
            "confirmed_by": "Giàng A Pao", "position": "Chủ tịch UBND xã"}),
    )
    .await;
    next(&mut lung_cu, "roll_call_answer_recorded").await;

    // The chair hears both answers, and the result counts both.
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let answer = next(&mut chair, "roll_call_answer").await;
        answered.push((
            answer["site"].as_str().unwrap_or("").to_owned(),
            answer["count"].as_u64().unwrap_or(0),
        ));
    }
    answered.sort();
    assert_eq!(
        answered,
        [("00694".to_owned(), 27), ("02269".to_owned(), 38)]
    );
    signaling::send(&mut chair, &json!({"type": "end_roll_call"})).await;
    let ended = loop {
        let message = next(&mut chair, "roll_call").await;
        if message["active"] == false {
            break message;
        }
    };
    let result = &ended["result"];
    assert_eq!(result["delegates"], 65, "{ended}");
    assert_eq!(result["not_answered"], json!([]), "{ended}");
    // The province's own roll call ended with the root's.
    let over = next(&mut thuong_lam, "roll_call").await;
    assert_eq!(over["active"], false, "{over}");

    // The chair mutes the province's commune: its own hub mutes it.
    signaling::send(
        &mut chair,
        &json!({"type": "mute", "site": "02269", "muted": true}),
    )
    .await;
    let muted = next(&mut thuong_lam, "muted").await;
    assert_eq!(muted["muted"], true, "{muted}");
    let row = loop {
        let row = console_row_from_province(&mut chair, "02269").await;
        if row["muted"] == true {
            break row;
        }
    };
    assert_eq!(row["node"], "tuyen-quang", "{row}");

    let report = http::get(root, &format!("/api/meetings/{id}/report"))
        .await
        .json();
    let answers = &report["roll_calls"][0]["answers"];
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{report}");

    // The province's organizer opens its part's studio link: the centre chairs it, so it
    // watches: its communes on the console, and no action of its own.
    let mut watcher = signaling::connect(http::organizer_ws_request(province).await).await;
    signaling::send(
        &mut watcher,
        &json!({"type": "join", "code": part["studio_code"], "meeting": local}),
    )
    .await;
    let joined = next(&mut watcher, "joined").await;
    assert_eq!(joined["participant"]["role"], "observer", "{joined}");
    assert!(
        joined["participants"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["role"] == "studio")),
        "it knows the national studio (its programme): {joined}"
    );
    let console = next(&mut watcher, "console").await;
    let row = console["sites"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["site"] == "02269"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["muted"], true, "its commune as its hub sees it: {row}");
    signaling::send(
        &mut watcher,
        &json!({"type": "mute", "site": "02269", "muted": false}),
    )
    .await;
    let refused = next(&mut watcher, "error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    drop((chair, thuong_lam, lung_cu, watcher));
    tree.shutdown().await;
}
