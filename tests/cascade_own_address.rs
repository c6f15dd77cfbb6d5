//! A provincial hub announcing to its communes an address it cannot reach itself (a public
//! address on a NAT without hairpin; here a documentation address nothing answers at): its
//! relay of a national meeting still publishes the national studio to its own hub's workers,
//! reaching them where they listen on this machine rather than at the announced address.

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

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// `diemcau_packets_received_total` of the hub at `addr`: RTP its workers received.
async fn packets_received(addr: std::net::SocketAddr) -> u64 {
    let metrics = http::get(addr, "/metrics").await.text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("diemcau_packets_received_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reaches_its_own_hub_whatever_the_hub_announces() {
    let tree = cascade::Tree::start_with(
        "cascade-own-address",
        |root| async move { root },
        |_| {},
        |config| {
            config.announce_ip = vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77))];
        },
    )
    .await;
    let province = tree.province.http_addr();
    let national = tree.national_meeting(&["02269"]).await;
    let studio = cascade_webrtc::studio(tree.root.http_addr(), &national).await;
    tree.part(national["id"].as_i64().expect("an id")).await;
    wait::until_some(
        "the province's workers to receive the national studio from its relay",
        Duration::from_secs(20),
        || async { (packets_received(province).await > 100).then_some(()) },
    )
    .await;
    studio.close().await;
    tree.shutdown().await;
}
