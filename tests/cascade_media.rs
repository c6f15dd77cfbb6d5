//! The national studio's media down the tree: a root hub and a provincial hub linked to it, a
//! national meeting inviting a commune of the province. The studio publishes at the root;
//! the commune, connected to its own provincial hub only, receives the studio's audio and
//! video (keyframes included) through the province's relay, which the root sees as one `node`
//! participant however many communes are below. When the root goes away, the commune is told
//! its province lost the centre (`centre`), stays connected and loses the studio; when the
//! root is back, it is told so and the studio's picture comes back by itself.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/cascade_webrtc.rs"]
mod cascade_webrtc;
#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::SocketAddr;
use std::time::Duration;

use cascade_webrtc::{audio, video};
use serde_json::Value;

async fn participants(addr: SocketAddr) -> u64 {
    http::get(addr, "/api/health").await.json()["participants"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commune_on_its_provincial_hub_receives_the_national_studio() {
    let tree = cascade::Tree::start("cascade-media").await;
    let parent_addr = tree.root.http_addr();
    let child_addr = tree.province.http_addr();
    let national = tree.national_meeting(&["02269"]).await;
    let national_id = national["id"].as_i64().expect("an id");

    let studio = cascade_webrtc::studio(parent_addr, &national).await;

    // The province's part, in progress, with the commune's own join code.
    let part = tree.part(national_id).await;
    let commune = cascade_webrtc::commune(child_addr, &part).await;

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

    // Both hubs show what crosses the link: the province its relay's packets and bitrate,
    // the root what it sends down to the node.
    let relay = wait::until_some(
        "the province's health to show its relay",
        Duration::from_secs(20),
        || async {
            let health = http::get(child_addr, "/api/health").await.json();
            let relay = health["parent"]["relays"][0].clone();
            (relay["meeting"] == national_id && relay["bitrate_kbps"].as_u64() > Some(100))
                .then_some(relay)
        },
    )
    .await;
    assert!(relay["packets"].as_u64() > Some(100), "{relay}");
    let down = wait::until_some(
        "the root's health to show the media down the node's link",
        Duration::from_secs(30),
        || async {
            let health = http::get(parent_addr, "/api/health").await.json();
            let media = health["nodes"][0]["media"].clone();
            (media["bitrate_kbps"].as_u64() > Some(100)).then_some(media)
        },
    )
    .await;
    assert!(down["loss_permille"].as_u64().is_some(), "{down}");
    let metrics = http::get(parent_addr, "/metrics").await.text();
    assert!(
        metrics.contains("diemcau_node_link_bitrate_kbps{node=\"tuyen-quang\"}"),
        "{metrics}"
    );

    // The root goes away and comes back on the same port: the studio joins again and its
    // picture is back at the commune without anything done on the province.
    drop(studio);
    let cascade::Tree {
        dir,
        root,
        province: child,
    } = tree;
    root.shutdown().await;
    cascade_webrtc::told_centre(&commune, false, Duration::from_secs(30)).await;
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
    let mut config = diemcau::Config::for_tests_in(dir.join("root"));
    config.listen = parent_addr;
    let parent = diemcau::start(config).await.expect("the root starts again");
    let studio = cascade_webrtc::studio(parent_addr, &national).await;
    cascade_webrtc::told_centre(&commune, true, Duration::from_secs(30)).await;
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
    let _ = std::fs::remove_dir_all(&dir);
}
