//! The national studio's encoder down the tree: OBS (a webrtc-rs WHIP client here) publishes
//! H.264 and Opus to the national meeting at the root; a player of the watch link of the
//! province's part, on the provincial hub, receives the encoder's H.264 through the province's
//! relay, and the chair's camera when the national chair switches the programme to it.

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

use std::time::Duration;

use webrtc_client::WebrtcClient;

const PT_H264: u8 = WebrtcClient::PT_H264;
const PT_VP8: u8 = WebrtcClient::PT_VP8;

/// The payload type of the latest video packet `client` received, and its video packets.
fn video(client: &WebrtcClient) -> (Option<u8>, u64) {
    (
        client.last_video_payload_type(),
        cascade_webrtc::video(client).0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_national_encoder_reaches_a_province_s_players() {
    let tree = cascade::Tree::start("cascade-encoder").await;
    let (root, province) = (tree.root.http_addr(), tree.province.http_addr());
    let national = tree.national_meeting(&["02269"]).await;
    let national_id = national["id"].as_i64().expect("an id");
    let studio = cascade_webrtc::studio(root, &national).await;
    let encoder_token = http::issue_stream_token(root, national_id, "encoder").await;
    let encoder = WebrtcClient::encoder_on_air(root, national_id, &encoder_token).await;

    let part = tree.part(national_id).await;
    let part_id = part["id"].as_i64().expect("the part's id");
    let watch_token = http::issue_stream_token(province, part_id, "watch").await;
    let (viewer, _) = WebrtcClient::player_connected(province, part_id, &watch_token).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (pt, packets) = video(&viewer);
        if pt == Some(PT_H264) && packets > 60 && cascade_webrtc::audio(&viewer) > 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the province's player receives the national encoder's H.264 and audio: video \
             {:?}, audio {}\n{}",
            video(&viewer),
            cascade_webrtc::audio(&viewer),
            viewer.report()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (source, pt, what) in [
        (
            "camera",
            PT_VP8,
            "the national chair's camera down the tree",
        ),
        ("encoder", PT_H264, "the encoder down the tree again"),
    ] {
        studio
            .send(&serde_json::json!({"type": "switch_programme", "source": source}))
            .expect("sent");
        let before = video(&viewer).1;
        wait::until(what, Duration::from_secs(15), || {
            let (last, packets) = video(&viewer);
            last == Some(pt) && packets > before + 30
        })
        .await;
    }

    viewer.close().await;
    encoder.close().await;
    studio.close().await;
    tree.shutdown().await;
}
