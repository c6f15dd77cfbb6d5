//! The floor across hubs: a root and two provincial hubs (Tuyên Quang and Hà Giang), a
//! national meeting inviting a commune of each, each commune joined to its own province's hub.
//! The national chair gives the floor to Thượng Lâm (Tuyên Quang): its picture and sound go up
//! through its province's relay once, and the national studio and Lũng Cú (Hà Giang, through
//! its own province) receive them, under the name the `floor` message gives. Then the floor
//! goes to Lũng Cú, which asked for it on its own hub (the national chair sees it waiting),
//! and Thượng Lâm receives it the same way; taken back, it stops everywhere. The root's report
//! records the request and both floors.

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

use serde_json::{Value, json};
use webrtc_client::WebrtcClient;

/// The holder in `client`'s latest `floor` message (null when nobody holds it).
fn holder(client: &WebrtcClient) -> Value {
    client
        .received("floor")
        .last()
        .map(|m| m["holder"].clone())
        .unwrap_or(Value::Null)
}

/// Video packets, keyframes and audio packets `client` received on the tracks of the
/// participant its latest `floor` message names as holder, once that holder is `site`.
fn floor_media(client: &WebrtcClient, site: &str) -> (u64, u64, u64) {
    let holder = holder(client);
    if holder["site"] != site {
        return (0, 0, 0);
    }
    let stream = holder["participant"].as_str().unwrap_or_default();
    let video = client.remote_track(stream, "video");
    let audio = client.remote_track(stream, "audio");
    (
        video.as_ref().map_or(0, |t| t.packets()),
        video.as_ref().map_or(0, |t| t.keyframes()),
        audio.map_or(0, |t| t.packets()),
    )
}

/// Waits until `client` sees and hears `site` holding the floor: a second and more of its
/// video from a keyframe, and of its audio, on the holder's tracks.
async fn receives_floor(what: &str, client: &WebrtcClient, site: &str) {
    let start = floor_media(client, site);
    wait::until(what, Duration::from_secs(20), || {
        let (video, keyframes, audio) = floor_media(client, site);
        video > start.0 + 40 && keyframes >= 1 && audio > start.2 + 50
    })
    .await;
}

/// The national chair acts and the root accepts.
async fn act(studio: &WebrtcClient, action: Value) {
    let done = studio.received("done").len();
    studio.send(&action).expect("the chair's action is sent");
    wait::until(
        "the root to accept the chair's action",
        Duration::from_secs(10),
        || {
            assert!(
                studio.received("error").is_empty(),
                "{action} refused: {:?}",
                studio.received("error")
            );
            studio.received("done").len() > done
        },
    )
    .await;
}

/// Waits until the root's console shows `site` joined through its provincial hub.
async fn on_root_console(studio: &WebrtcClient, site: &str) {
    wait::until(
        "the root's console to show the commune joined through its hub",
        Duration::from_secs(20),
        || {
            studio.console().is_some_and(|console| {
                console["sites"].as_array().is_some_and(|rows| {
                    rows.iter()
                        .any(|r| r["site"] == site && r["node"].is_string() && r["state"] == "live")
                })
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_given_to_a_commune_of_one_province_reaches_the_studio_and_another_province() {
    let tree = cascade::Tree::start("cascade-floor").await;
    let ha_giang = tree.add_ha_giang().await;
    let root = tree.root.http_addr();
    let national = tree.national_meeting(&["02269", "00694"]).await;
    let id = national["id"].as_i64().expect("an id");

    let studio = cascade_webrtc::studio(root, &national).await;
    let tq_part = tree.part(id).await;
    let hg_part = cascade::province_part(ha_giang.http_addr(), id).await;
    let mut thuong_lam = cascade_webrtc::commune_named(
        tree.province.http_addr(),
        &tq_part,
        "02269",
        "Xã Thượng Lâm",
    )
    .await;
    thuong_lam
        .start_media()
        .await
        .expect("Thượng Lâm's camera and microphone start");
    let mut lung_cu =
        cascade_webrtc::commune_named(ha_giang.http_addr(), &hg_part, "00694", "Xã Lũng Cú").await;
    lung_cu
        .start_media()
        .await
        .expect("Lũng Cú's camera and microphone start");
    wait::until(
        "both communes to receive the national studio",
        Duration::from_secs(20),
        || cascade_webrtc::video(&thuong_lam).0 > 30 && cascade_webrtc::video(&lung_cu).0 > 30,
    )
    .await;
    on_root_console(&studio, "02269").await;
    on_root_console(&studio, "00694").await;

    // The floor to Thượng Lâm, on its own hub: up once, then to the studio and Hà Giang.
    act(&studio, json!({"type": "give_floor", "site": "02269"})).await;
    receives_floor(
        "the national studio to see and hear Thượng Lâm",
        &studio,
        "02269",
    )
    .await;
    receives_floor(
        "Lũng Cú (Hà Giang) to see and hear Thượng Lâm (Tuyên Quang)",
        &lung_cu,
        "02269",
    )
    .await;
    assert_eq!(
        holder(&lung_cu)["name"],
        "Xã Thượng Lâm",
        "{}",
        holder(&lung_cu)
    );
    // Both provinces' health shows the floor crossing their link: up from Tuyên Quang, down
    // into Hà Giang.
    for (hub, figure) in [
        (tree.province.http_addr(), "floor_up_packets"),
        (ha_giang.http_addr(), "floor_down_packets"),
    ] {
        wait::until_some(
            "the province's health to count the floor's packets",
            Duration::from_secs(10),
            || async {
                let health = http::get(hub, "/api/health").await.json();
                (health["parent"]["relays"][0][figure].as_u64() > Some(50)).then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        holder(&thuong_lam)["site"],
        "02269",
        "Thượng Lâm is told it holds the floor on its own hub"
    );
    let row = studio.console().unwrap_or_default()["sites"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["site"] == "02269").cloned())
        .unwrap_or_default();
    assert_eq!(row["floor"], "holder", "{row}");

    // Lũng Cú asks for the floor on its own hub: the national chair sees it waiting, and
    // gives it the floor; Thượng Lâm now receives it through its province.
    lung_cu
        .send(&json!({"type": "request_floor"}))
        .expect("the request is sent");
    wait::until(
        "the national chair to see Lũng Cú asking for the floor",
        Duration::from_secs(15),
        || {
            studio.received("floor").last().is_some_and(|m| {
                m["queue"]
                    .as_array()
                    .is_some_and(|q| q.iter().any(|s| s["site"] == "00694"))
            })
        },
    )
    .await;
    act(&studio, json!({"type": "give_floor", "site": "00694"})).await;
    receives_floor(
        "Thượng Lâm (Tuyên Quang) to see and hear Lũng Cú (Hà Giang)",
        &thuong_lam,
        "00694",
    )
    .await;
    receives_floor(
        "the national studio to see and hear Lũng Cú",
        &studio,
        "00694",
    )
    .await;

    // Taken back: nobody holds it anywhere, and Lũng Cú's media stops reaching Thượng Lâm.
    let stream = holder(&thuong_lam)["participant"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    act(&studio, json!({"type": "take_floor"})).await;
    wait::until(
        "every participant to be told nobody holds the floor",
        Duration::from_secs(10),
        || {
            [&studio, &thuong_lam, &lung_cu]
                .iter()
                .all(|c| holder(c).is_null())
        },
    )
    .await;
    wait::until(
        "Lũng Cú's media to stop reaching Thượng Lâm",
        Duration::from_secs(10),
        || {
            ["video", "audio"].iter().all(|kind| {
                thuong_lam
                    .remote_track(&stream, kind)
                    .is_none_or(|t| t.quiet_for() >= Duration::from_millis(500))
            })
        },
    )
    .await;

    // The root's record has both floors, given and returned, for the communes of both hubs.
    let report = http::get(root, &format!("/api/meetings/{id}/report"))
        .await
        .json();
    let floors: Vec<(String, String)> = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            ["floor_requested", "floor_given", "floor_returned"]
                .contains(&e["kind"].as_str().unwrap_or(""))
        })
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["site"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("floor_given", "02269"),
        ("floor_requested", "00694"),
        ("floor_returned", "02269"),
        ("floor_given", "00694"),
        ("floor_returned", "00694"),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(floors, expected, "the root's record of the floor");

    lung_cu.close().await;
    thuong_lam.close().await;
    studio.close().await;
    ha_giang.shutdown().await;
    tree.shutdown().await;
}

/// The national chair hears each unmuted commune of a province and sees the small picture of
/// those its console shows, without giving them the floor: each goes up its province's link
/// only while it is used, under the stream id its console row names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_national_chair_hears_unmuted_communes_and_sees_the_tiles_it_shows() {
    let tree = cascade::Tree::start("cascade-tiles").await;
    let root = tree.root.http_addr();
    let province = tree.province.http_addr();
    let national = tree.national_meeting(&["02269"]).await;
    let id = national["id"].as_i64().expect("an id");
    let studio = cascade_webrtc::studio(root, &national).await;
    let tq_part = tree.part(id).await;
    let mut thuong_lam =
        cascade_webrtc::commune_named(province, &tq_part, "02269", "Xã Thượng Lâm").await;
    thuong_lam
        .start_media()
        .await
        .expect("Thượng Lâm's camera and microphone start");
    on_root_console(&studio, "02269").await;

    // Unmuted, it is heard at the root; its console row names its tracks.
    let stream = wait::until_some(
        "the root's console to name the tracks of Thượng Lâm",
        Duration::from_secs(20),
        || async {
            let console = studio.console()?;
            let row = console["sites"]
                .as_array()?
                .iter()
                .find(|r| r["site"] == "02269")?
                .clone();
            row["participant"].as_str().map(str::to_owned)
        },
    )
    .await;
    assert!(stream.ends_with("-02269"), "{stream}");
    let packets = |kind: &str| {
        studio
            .remote_track(&stream, kind)
            .map_or(0, |t| t.packets())
    };
    wait::until(
        "the national chair to hear Thượng Lâm without the floor",
        Duration::from_secs(20),
        || packets("audio") > 50,
    )
    .await;
    assert_eq!(
        packets("video"),
        0,
        "no picture goes up while its tile is not on the chair's screen"
    );

    // Its tile on the chair's screen: its small picture comes up.
    act(&studio, json!({"type": "tiles", "sites": ["02269"]})).await;
    wait::until(
        "the national chair to see Thượng Lâm's small picture",
        Duration::from_secs(20),
        || {
            studio
                .remote_track(&stream, "video")
                .is_some_and(|t| t.packets() > 40 && t.keyframes() >= 1)
        },
    )
    .await;
    let up_sites = |count: u64| async move {
        let health = http::get(province, "/api/health").await.json();
        (health["parent"]["relays"][0]["up_sites"] == count).then_some(())
    };
    wait::until_some(
        "the province's health to show one commune sent up",
        Duration::from_secs(10),
        || up_sites(1),
    )
    .await;

    // Muted, its sound stays on its hub; its tile off screen, its picture too.
    act(
        &studio,
        json!({"type": "mute", "site": "02269", "muted": true}),
    )
    .await;
    let quiet = |kind: &str| {
        studio
            .remote_track(&stream, kind)
            .is_none_or(|t| t.quiet_for() >= Duration::from_secs(1))
    };
    wait::until(
        "Thượng Lâm's sound to stop going up once muted",
        Duration::from_secs(10),
        || quiet("audio"),
    )
    .await;
    assert!(!quiet("video"), "its picture still comes up");
    act(&studio, json!({"type": "tiles", "sites": []})).await;
    wait::until(
        "Thượng Lâm's picture to stop going up once its tile is off screen",
        Duration::from_secs(10),
        || quiet("video"),
    )
    .await;
    wait::until_some(
        "the province to send no commune up",
        Duration::from_secs(10),
        || up_sites(0),
    )
    .await;
}
