//! The link between a provincial hub and the root cut for 20 s during a national meeting, then
//! healed (a TCP relay between them that the test cuts): the commune stays connected to its
//! province, is told the centre is out of reach, and gets the national studio back by itself
//! once the link heals; the reports at the root and at the province agree event for event,
//! with the time the centre was away reported as such, not as an absence.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/cascade_webrtc.rs"]
mod cascade_webrtc;
#[path = "common/cut_proxy.rs"]
mod cut_proxy;
#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cascade::{row, site_events};
use cascade_webrtc::video;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_for_20_seconds_heals_by_itself_and_the_reports_agree() {
    let proxy: Arc<OnceLock<cut_proxy::CutProxy>> = Arc::default();
    let tree = {
        let proxy = proxy.clone();
        cascade::Tree::start_through("cascade-heal", |root| async move {
            let relay = cut_proxy::CutProxy::start(root).await;
            let addr = relay.addr;
            let _ = proxy.set(relay);
            addr
        })
        .await
    };
    let proxy = proxy.get().expect("the relay between the hubs");
    let root_addr = tree.root.http_addr();
    let province_addr = tree.province.http_addr();
    let national = tree.national_meeting(&["02269"]).await;
    let national_id = national["id"].as_i64().expect("an id");
    let part = tree.part(national_id).await;
    let local = part["id"].as_i64().expect("the local id");

    let studio = cascade_webrtc::studio(root_addr, &national).await;
    let commune = cascade_webrtc::commune(province_addr, &part).await;
    wait::until(
        "the studio's video at the commune",
        Duration::from_secs(20),
        || video(&commune).0 > 60,
    )
    .await;

    // The link is cut for 20 s: the commune stays with its province and is told.
    proxy.cut();
    cascade_webrtc::told_centre(&commune, false, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        commune.media_state().as_deref(),
        Some("connected"),
        "still with its province"
    );
    let (before, keyframes_before) = video(&commune);

    // Healed: the studio's picture is back by itself.
    proxy.heal();
    let healed = Instant::now();
    wait::until(
        "the studio's video back at the commune after the heal",
        Duration::from_secs(15),
        || {
            let (packets, keyframes) = video(&commune);
            packets > before + 30 && keyframes > keyframes_before
        },
    )
    .await;
    println!(
        "the national studio's video was back at the commune {:.1} s after the link healed",
        healed.elapsed().as_secs_f64()
    );
    assert!(
        commune
            .received("centre")
            .last()
            .is_some_and(|m| m["reachable"] == true),
        "the commune is told the centre is back"
    );

    // Both reports: the commune connected all along, the centre away once; the root has every
    // event of the province, once.
    commune.close().await;
    let root_report = format!("/api/meetings/{national_id}/report");
    let report = wait::until_some(
        "the commune's leave and the centre's outage at the root",
        Duration::from_secs(20),
        || async {
            let report = http::get(root_addr, &root_report).await.json();
            let r = row(&report, "02269");
            (r["centre_outages"] == 1 && r["last_leave"].is_i64()).then_some(report)
        },
    )
    .await;
    let at_root = row(&report, "02269");
    assert_eq!(
        at_root["interruptions"], 0,
        "not an interruption: {at_root}"
    );
    let minutes = at_root["centre_unreachable_minutes"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (0.3..1.0).contains(&minutes),
        "about 20 s of centre out of reach: {at_root}"
    );
    let province_report = http::get(province_addr, &format!("/api/meetings/{local}/report"))
        .await
        .json();
    assert_eq!(row(&province_report, "02269")["centre_outages"], 1);
    assert_eq!(site_events(&report), site_events(&province_report));

    studio.close().await;
    tree.shutdown().await;
}
