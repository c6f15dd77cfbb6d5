//! A join the hub cannot check against its database is answered `internal`, the hub's fault:
//! never `code_unknown` or `login_required`, which would send the user after a new link or a
//! new login that cannot help.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/faults.rs"]
mod faults;
#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use serde_json::json;
use signaling::next_reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_the_database_cannot_check_is_internal() {
    let dir = std::env::temp_dir().join(format!("diemcau-join-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Lâm Bình")], true).await;

    // The chair's login is read at the upgrade, then checked again at the join.
    let mut studio = signaling::connect(http::organizer_ws_request(addr).await).await;
    faults::break_table(&dir, "login_sessions");
    signaling::send(
        &mut studio,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    let reply = next_reply(&mut studio).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "internal", "not the chair's fault: {reply}");

    faults::break_table(&dir, "join_codes");
    let mut site = signaling::connect(format!("ws://{addr}/ws")).await;
    signaling::send(
        &mut site,
        &json!({"type": "join", "code": m.code("2269"), "meeting": m.id}),
    )
    .await;
    let reply = next_reply(&mut site).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(
        reply["code"], "internal",
        "the code is not unknown: {reply}"
    );
    let message = reply["message"].as_str().unwrap_or("");
    assert!(
        !message.contains("join_codes"),
        "no database detail: {message}"
    );

    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
