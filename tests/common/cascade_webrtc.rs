//! WebRTC participants of a national meeting for the cascade tests: the national studio
//! publishing at the root, a commune on its provincial hub, and what the commune received.
//!
//! Include it after `webrtc_client` with `#[path = "common/cascade_webrtc.rs"] mod cascade_webrtc;`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::webrtc_client::{ClientOptions, WebrtcClient};

/// The national studio of meeting `national` (the root's API view), joined to the root at
/// `root`, connected and publishing.
pub async fn studio(root: SocketAddr, national: &Value) -> WebrtcClient {
    let mut studio = WebrtcClient::connect(
        root,
        ClientOptions {
            role: "studio",
            name: "Trường quay Chính phủ".into(),
            meeting: national["id"].as_i64().expect("an id"),
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
    studio
}

/// Thượng Lâm (02269) joined to its provincial hub at `province`, in `part` (the province's
/// API view of its part of the meeting), its media connected.
pub async fn commune(province: SocketAddr, part: &Value) -> WebrtcClient {
    commune_named(province, part, "02269", "Xã Thượng Lâm").await
}

/// Commune `code` (`name`) joined to its provincial hub at `province`, in `part`, its media
/// connected.
pub async fn commune_named(
    province: SocketAddr,
    part: &Value,
    code: &str,
    name: &str,
) -> WebrtcClient {
    let commune = WebrtcClient::connect(
        province,
        ClientOptions {
            role: "site",
            name: name.into(),
            meeting: part["id"].as_i64().expect("the local id"),
            code: part["site_codes"][code]
                .as_str()
                .expect("the commune's code on its province's hub")
                .to_owned(),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{name} joins its provincial hub: {e}"));
    commune
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{name} connects: {e}"));
    commune
}

/// Waits until the hub's latest `centre` message to `commune` says `reachable`.
pub async fn told_centre(commune: &WebrtcClient, reachable: bool, limit: Duration) {
    let what = if reachable {
        "the commune to be told the centre is back"
    } else {
        "the commune to be told its province lost the centre"
    };
    super::wait::until(what, limit, || {
        commune
            .received("centre")
            .last()
            .is_some_and(|m| m["reachable"] == reachable)
    })
    .await;
}

/// Video packets and keyframes `client` received from anyone.
pub fn video(client: &WebrtcClient) -> (u64, u64) {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == "video")
        .fold((0, 0), |(p, k), t| (p + t.packets(), k + t.keyframes()))
}

/// Audio packets `client` received from anyone.
pub fn audio(client: &WebrtcClient) -> u64 {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == "audio")
        .map(|t| t.packets())
        .sum()
}
