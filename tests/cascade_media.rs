//! The national studio's media down the tree: a root hub and a provincial hub linked to it, a
//! national meeting inviting a commune of the province. The studio publishes at the root;
//! the commune, connected to its own provincial hub only, receives the studio's audio and
//! video (keyframes included) through the province's relay, which the root sees as one `node`
//! participant however many communes are below. When the relay's link drops, the commune
//! loses the studio; when it is back, the studio's picture comes back by itself.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use webrtc_client::{ClientOptions, WebrtcClient};

fn add_node(parent_dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .args([
            "node",
            "add",
            "tuyen-quang",
            "--province",
            "08",
            "--data-dir",
        ])
        .arg(parent_dir)
        .output()
        .expect("the diemcau binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("    "))
        .expect("the credential on its own line")
        .trim()
        .to_owned()
}

/// Video packets and keyframes `client` received from anyone.
fn video(client: &WebrtcClient) -> (u64, u64) {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == "video")
        .fold((0, 0), |(p, k), t| (p + t.packets(), k + t.keyframes()))
}

fn audio(client: &WebrtcClient) -> u64 {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == "audio")
        .map(|t| t.packets())
        .sum()
}

async fn participants(addr: SocketAddr) -> u64 {
    http::get(addr, "/api/health").await.json()["participants"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commune_on_its_provincial_hub_receives_the_national_studio() {
    let root = std::env::temp_dir().join(format!("diemcau-cascade-media-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let parent_dir = root.join("parent");
    let parent = diemcau::start(diemcau::Config::for_tests_in(parent_dir.clone()))
        .await
        .expect("the root starts");
    let parent_addr = parent.http_addr();
    let csv = "admin_code,name,level,parent_code,parent_name,delegates\n\
               08,Tuyên Quang,tỉnh,,,0\n\
               02269,Xã Thượng Lâm,xã,08,Tuyên Quang,40\n";
    let imported = http::post(parent_addr, "/api/sites/import", csv.as_bytes()).await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let token = add_node(&parent_dir);
    let child_dir = root.join("child");
    std::fs::create_dir_all(&child_dir).expect("dir");
    let token_file = child_dir.join("node-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("the credential file");
    let mut config = diemcau::Config::for_tests_in(child_dir.join("data"));
    config.parent = Some(format!("http://{parent_addr}"));
    config.node_token_file = Some(token_file);
    let child = diemcau::start(config).await.expect("the province starts");
    let child_addr = child.http_addr();

    // The national meeting, started at the root.
    let now = diemcau::store::now_millis();
    let body = serde_json::json!({
        "title": "Hội nghị toàn quốc",
        "studio_name": "Trường quay Chính phủ",
        "scheduled_start": now,
        "scheduled_end": now + 3_600_000,
        "sites": [{"code": "02269"}],
    });
    let created = http::post(parent_addr, "/api/meetings", body.to_string().as_bytes()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let national = created.json();
    let national_id = national["id"].as_i64().expect("an id");
    let started = http::post(
        parent_addr,
        &format!("/api/meetings/{national_id}/start"),
        b"",
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.text());

    let mut studio = WebrtcClient::connect(
        parent_addr,
        ClientOptions {
            role: "studio",
            name: "Trường quay Chính phủ".into(),
            meeting: national_id,
            code: national["studio_code"]
                .as_str()
                .expect("studio code")
                .to_owned(),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the studio joins the root: {e}"));
    studio
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the studio connects: {e}"));
    studio
        .start_media()
        .await
        .expect("the studio's media starts");

    // The province's part, in progress, with the commune's own join code.
    let part = wait::until_some(
        "the province's part of the meeting in progress",
        Duration::from_secs(15),
        || async {
            let meetings = http::get(child_addr, "/api/meetings").await.json();
            meetings
                .as_array()?
                .iter()
                .find(|m| m["parent_meeting"] == national_id && m["state"] == "in_progress")
                .cloned()
        },
    )
    .await;
    let local_id = part["id"].as_i64().expect("the local id");
    let commune = WebrtcClient::connect(
        child_addr,
        ClientOptions {
            role: "site",
            name: "Xã Thượng Lâm".into(),
            meeting: local_id,
            code: part["site_codes"]["02269"]
                .as_str()
                .expect("the commune's code on its province's hub")
                .to_owned(),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the commune joins its provincial hub: {e}"));
    commune
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the commune connects: {e}"));

    // The studio's picture and sound reach the commune through the province.
    wait::until(
        "the commune to receive the national studio's video with a keyframe, and its audio",
        Duration::from_secs(20),
        || {
            let (packets, keyframes) = video(&commune);
            packets > 60 && keyframes >= 1 && audio(&commune) > 50
        },
    )
    .await;
    let known = commune.known_participants();
    assert!(
        known
            .values()
            .any(|(name, role)| name == "Trường quay Chính phủ" && role == "studio"),
        "the commune sees the national studio as its studio: {known:?}"
    );
    // The root serves the studio and one relay, not the commune.
    assert_eq!(
        participants(parent_addr).await,
        2,
        "studio and the province's relay"
    );
    let root_console: Value = studio.console().unwrap_or_default();
    assert!(
        root_console["sites"].as_array().is_none_or(|sites| sites
            .iter()
            .all(|s| s["state"] != "live" || s["site"] != "node")),
        "the relay is not a site on the chair's console: {root_console}"
    );
    assert!(
        studio
            .known_participants()
            .values()
            .all(|(_, role)| role != "node"),
        "the relay is never announced to the studio"
    );

    // The root goes away and comes back on the same port: the studio joins again and its
    // picture is back at the commune without anything done on the province.
    drop(studio);
    parent.shutdown().await;
    wait::until(
        "the commune to stop receiving video",
        Duration::from_secs(15),
        || {
            commune
                .remote_tracks()
                .iter()
                .filter(|t| t.kind == "video")
                .all(|t| t.quiet_for() > Duration::from_secs(1))
        },
    )
    .await;
    let mut config = diemcau::Config::for_tests_in(parent_dir.clone());
    config.listen = parent_addr;
    let parent = diemcau::start(config).await.expect("the root starts again");
    let mut studio = WebrtcClient::connect(
        parent_addr,
        ClientOptions {
            role: "studio",
            name: "Trường quay Chính phủ".into(),
            meeting: national_id,
            code: national["studio_code"]
                .as_str()
                .expect("studio code")
                .to_owned(),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the studio joins the root again: {e}"));
    studio
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the studio connects again: {e}"));
    studio
        .start_media()
        .await
        .expect("the studio's media starts again");
    let (before, keyframes_before) = video(&commune);
    wait::until(
        "the studio's video back at the commune after the root returned",
        Duration::from_secs(30),
        || {
            let (packets, keyframes) = video(&commune);
            packets > before + 60 && keyframes > keyframes_before
        },
    )
    .await;

    commune.close().await;
    studio.close().await;
    child.shutdown().await;
    parent.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}
