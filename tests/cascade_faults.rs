//! A provincial hub killed with SIGKILL during a national meeting: its communes come back to
//! it when it is back, and the root's report shows the outage for each of them, with every
//! event of the province at the root exactly once (the province's own report and the root's
//! agree event for event). The provincial hub is a real process; the root runs in the test.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;

use std::net::SocketAddr;
use std::process::Child;

use std::time::Duration;

use cascade::{row, site_events};
use serde_json::Value;

/// A hub process killed when the test ends, whatever happens.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The province's hub as a process linked to the root with `token_file`.
fn start_province(
    data: &std::path::Path,
    root: SocketAddr,
    token_file: &std::path::Path,
) -> (Killed, SocketAddr) {
    let (child, addr) = hub_binary::spawn_with(
        data,
        &[
            "--parent".to_owned(),
            format!("http://{root}"),
            "--node-token-file".to_owned(),
            token_file.display().to_string(),
        ],
    );
    (Killed(child), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provincial_hub_killed_during_a_national_meeting_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("diemcau-cascade-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = diemcau::start(diemcau::Config::for_tests_in(dir.join("root")))
        .await
        .expect("the root starts");
    let root_addr = root.http_addr();
    let imported = http::post(
        root_addr,
        "/api/sites/import",
        cascade::DIRECTORY.as_bytes(),
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let token = cascade::add_node(&dir.join("root"));
    let token_file = dir.join("node-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("the credential file");
    let province_data = dir.join("province");
    let (mut province, addr) = start_province(&province_data, root_addr, &token_file);

    let now = diemcau::store::now_millis();
    let body = serde_json::json!({
        "title": "Hội nghị toàn quốc",
        "studio_name": "Trường quay Chính phủ",
        "scheduled_start": now,
        "scheduled_end": now + 3_600_000,
        "sites": [{"code": "02269"}, {"code": "02266"}],
    });
    let created = http::post(root_addr, "/api/meetings", body.to_string().as_bytes()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let national = created.json()["id"].as_i64().expect("an id");
    let started = http::post(root_addr, &format!("/api/meetings/{national}/start"), b"").await;
    assert_eq!(started.status, 200, "{}", started.text());
    let part = cascade::province_part(addr, national).await;
    let local = part["id"].as_i64().expect("the local id");
    let code = |site: &str| {
        part["site_codes"][site]
            .as_str()
            .expect("a code")
            .to_owned()
    };

    // Both communes join their provincial hub; the root hears of them.
    let mut communes = Vec::new();
    for site in ["02269", "02266"] {
        communes.push(signaling::join(addr, &code(site), Some(local)).await);
    }
    let root_report = format!("/api/meetings/{national}/report");
    wait::until_some(
        "both communes at the root",
        Duration::from_secs(15),
        || async {
            let report = http::get(root_addr, &root_report).await.json();
            (report["sessions"].as_array().map(Vec::len) == Some(2)).then_some(())
        },
    )
    .await;

    // SIGKILL of the provincial hub; the communes lose it.
    province.0.kill().expect("SIGKILL");
    province.0.wait().expect("the province's hub is gone");
    drop(communes);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // It comes back on its data directory; the communes join again, one declares its count.
    let (province, addr) = start_province(&province_data, root_addr, &token_file);
    let mut back = Vec::new();
    for site in ["02269", "02266"] {
        back.push(signaling::join(addr, &code(site), Some(local)).await);
    }
    signaling::send(
        &mut back[0],
        &serde_json::json!({"type": "head_count", "count": 41,
            "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}),
    )
    .await;
    signaling::next_of_type(&mut back[0], "head_count_recorded").await;

    // The root's report: each commune with one interruption (the outage), both back.
    let report = wait::until_some(
        "the outage and the return of both communes at the root",
        Duration::from_secs(20),
        || async {
            let report = http::get(root_addr, &root_report).await.json();
            let done = ["02269", "02266"]
                .iter()
                .all(|site| row(&report, site)["interruptions"] == 1)
                && row(&report, "02269")["head_count"]["count"] == 41;
            done.then_some(report)
        },
    )
    .await;
    let sessions = report["sessions"].as_array().expect("sessions").clone();
    for site in ["02269", "02266"] {
        let r = row(&report, site);
        assert_ne!(r["status"], "absent", "{r}");
        let mine: Vec<&Value> = sessions.iter().filter(|s| s["site"] == site).collect();
        assert_eq!(
            mine.len(),
            2,
            "{site}: a session before the crash, one after: {mine:?}"
        );
        assert_eq!(
            mine[0]["reason"], "hub_crash",
            "{site}: its first session ended with its hub: {mine:?}"
        );
        let gap =
            mine[1]["joined_at"].as_i64().unwrap_or(0) - mine[0]["left_at"].as_i64().unwrap_or(0);
        assert!(
            (1_000..60_000).contains(&gap),
            "{site}: the outage of its hub lasts from the crash to its return ({gap} ms): {mine:?}"
        );
    }
    assert_eq!(sessions.len(), 4, "two sessions per commune: {sessions:?}");
    assert!(
        sessions.iter().all(|s| s["session"]
            .as_str()
            .is_some_and(|id| id.starts_with("tuyen-quang/"))),
        "{sessions:?}"
    );

    // Event for event, the root has what the province logged.
    let province_report = http::get(addr, &format!("/api/meetings/{local}/report"))
        .await
        .json();
    let root_events = site_events(&report);
    assert_eq!(root_events, site_events(&province_report));
    let mut unique = root_events.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        root_events.len(),
        "no event twice: {root_events:?}"
    );

    drop(back);
    drop(province);
    root.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
