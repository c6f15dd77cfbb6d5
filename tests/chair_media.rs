//! The chair's floor and mute act on the media, checked with webrtc-rs peers: the site given
//! the floor is heard and seen by every other site; a muted site's audio stops reaching the
//! others while its video goes on; taking the floor back stops it.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::time::Duration;

use serde_json::{Value, json};
use signaling::Socket;
use webrtc_client::{ClientOptions, WebrtcClient};

/// The chair, on signalling only: it runs the meeting without media of its own.
struct Chair(Socket);

impl Chair {
    async fn act(&mut self, action: Value) {
        signaling::send(&mut self.0, &action).await;
        loop {
            let reply = signaling::next_message(&mut self.0).await;
            assert_ne!(reply["type"], "error", "{action} refused: {reply}");
            if reply["type"] == "done" {
                return;
            }
        }
    }
}

/// A second of the fake camera's video (30 frames a second).
const VIDEO_SECOND: u64 = 30;

/// Two seconds of the fake microphone's audio (a frame each 20 ms).
const AUDIO_TWO_SECONDS: u64 = 100;

/// How long a track must have been silent to count as stopped: ten audio frames' time.
const STOPPED: Duration = Duration::from_millis(200);

fn packets(client: &WebrtcClient, stream: &str, kind: &str) -> u64 {
    client.remote_track(stream, kind).map_or(0, |t| t.packets())
}

/// Waits until `client` has received nothing of `stream`'s `kind` for [`STOPPED`]: packets
/// already on their way when the chair acted still arrive.
async fn wait_stopped(what: &str, client: &WebrtcClient, stream: &str, kind: &str) {
    wait::until(what, Duration::from_secs(5), || {
        client
            .remote_track(stream, kind)
            .is_none_or(|t| t.quiet_for() >= STOPPED)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_and_mute_act_on_the_media() {
    let (hub, m) = http::hub_with_meeting(
        "Họp phát biểu",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let addr = hub.http_addr();
    let mut chair = Chair(signaling::connect(http::organizer_ws_request(addr).await).await);
    signaling::send(
        &mut chair.0,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;

    let mut sites = Vec::new();
    for (code, name) in [("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")] {
        let client = WebrtcClient::connect(
            addr,
            ClientOptions {
                role: "site",
                name: name.into(),
                meeting: m.id,
                code: m.code(code),
                publish: true,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e}"));
        client
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{name} connects: {e}"));
        sites.push(client);
    }
    for s in &mut sites {
        s.start_media().await.expect("media starts");
    }
    let (speaker, listener) = (&sites[0], &sites[1]);
    let a = speaker.participant_id.clone();

    wait::until(
        "the speaker to send a second of video",
        Duration::from_secs(10),
        || speaker.video_frames_sent() >= VIDEO_SECOND,
    )
    .await;
    assert_eq!(
        packets(listener, &a, "video"),
        0,
        "sites do not see each other without the floor"
    );

    chair
        .act(json!({"type": "give_floor", "site": "2269"}))
        .await;
    wait::until(
        "the listener receives the speaker's video and audio",
        Duration::from_secs(15),
        || packets(listener, &a, "video") > 50 && packets(listener, &a, "audio") > 50,
    )
    .await;

    chair
        .act(json!({"type": "mute", "site": "2269", "muted": true}))
        .await;
    wait_stopped("the muted audio to stop", listener, &a, "audio").await;
    let (audio_before, video_before) = (
        packets(listener, &a, "audio"),
        packets(listener, &a, "video"),
    );
    let sent = speaker.audio_frames_sent();
    wait::until(
        "the speaker to send two more seconds of audio",
        Duration::from_secs(10),
        || speaker.audio_frames_sent() >= sent + AUDIO_TWO_SECONDS,
    )
    .await;
    let (audio_after, video_after) = (
        packets(listener, &a, "audio"),
        packets(listener, &a, "video"),
    );
    assert!(
        audio_after <= audio_before + 2,
        "muted audio still flows: {audio_before} → {audio_after}"
    );
    assert!(
        video_after > video_before + 20,
        "video goes on while muted: {video_before} → {video_after}"
    );

    chair
        .act(json!({"type": "mute", "site": "2269", "muted": false}))
        .await;
    wait::until("unmuted audio flows again", Duration::from_secs(5), || {
        packets(listener, &a, "audio") > audio_after + 25
    })
    .await;

    chair.act(json!({"type": "take_floor"})).await;
    wait_stopped("the speaker's video to stop", listener, &a, "video").await;
    let video = packets(listener, &a, "video");
    let sent = speaker.video_frames_sent();
    wait::until(
        "the speaker to send another second of video",
        Duration::from_secs(10),
        || speaker.video_frames_sent() >= sent + VIDEO_SECOND,
    )
    .await;
    assert!(
        packets(listener, &a, "video") <= video + 2,
        "the floor taken back stops the speaker's video"
    );

    for s in sites {
        s.close().await;
    }
    hub.shutdown().await;
}
