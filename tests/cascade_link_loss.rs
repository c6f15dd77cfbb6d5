//! Loss on the link between the root and a provincial hub is repaired on that link: the
//! studio's media reaches the root, and the root's reaches the province's relay, through a
//! relay that drops a tenth of the datagrams each way (standing in for a lossy wide-area
//! network). The commune, on its provincial hub, receives nearly every video packet the studio
//! sent (each hop asks for what it lost, NACK, and gets it again), while the audio, which is
//! never retransmitted, shows the loss. "Nearly every" counts the packets that arrived against
//! the sequence numbers the commune's stream spanned: a packet lost for good is a gap there,
//! whatever the machine's load did to the studio's frame rate.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/cascade_webrtc.rs"]
mod cascade_webrtc;
#[path = "common/http.rs"]
mod http;
#[path = "common/impair.rs"]
mod impair;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The loss on the link, each way, in datagrams per thousand.
const LOSS_PERMILLE: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_on_the_node_link_is_repaired_on_that_link() {
    // The root listens on 127.0.0.1 and announces 127.0.0.2, where the lossy relay is: the
    // studio's media and the province's relay both cross it.
    let tree = cascade::Tree::start_with(
        "cascade-link-loss",
        |root| async move { root },
        |root| {
            root.announce_ip = vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
            root.media_tcp_port = diemcau::config::MediaTcpPort(None);
            root.workers = Some(1);
        },
        |_| {},
    )
    .await;
    let announced = tree.root.media_addresses()[0];
    let listening = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), announced.port());
    let link = impair::Relay::start_at(listening, &[("link", announced)]).expect("the relay");
    for direction in ["down", "up"] {
        let answer = link
            .command(&format!("set link {direction} loss={LOSS_PERMILLE}"))
            .expect("the relay answers");
        assert_eq!(answer.trim(), "ok", "{answer}");
    }

    let national = tree.national_meeting(&["02269"]).await;
    let studio = cascade_webrtc::studio(tree.root.http_addr(), &national).await;
    let part = tree.part(national["id"].as_i64().expect("an id")).await;
    let commune = cascade_webrtc::commune(tree.province.http_addr(), &part).await;
    wait::until(
        "the commune to receive the national studio across the lossy link",
        Duration::from_secs(30),
        || cascade_webrtc::video(&commune).0 > 100 && cascade_webrtc::audio(&commune) > 100,
    )
    .await;

    // Over a window: the sequence numbers the commune's video spanned (every packet the
    // studio sent that the hubs forwarded, lost or not) against the packets that arrived, and
    // what the studio sent against what the commune received.
    let sent = || (studio.video_frames_sent(), studio.audio_frames_sent());
    let received = || {
        (
            cascade_webrtc::video(&commune).0,
            cascade_webrtc::audio(&commune),
        )
    };
    let spanned = || video_span(&commune);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent_before, received_before, spanned_before) = (sent(), received(), spanned());
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Repairs of the window's last packets arrive within a few round trips.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent_after, received_after, spanned_after) = (sent(), received(), spanned());
    let ratio = |r: u64, s: u64| r as f64 / s.max(1) as f64;
    let repaired = ratio(
        received_after.0 - received_before.0,
        spanned_after - spanned_before,
    );
    let video = ratio(
        received_after.0 - received_before.0,
        sent_after.0 - sent_before.0,
    );
    let audio = ratio(
        received_after.1 - received_before.1,
        sent_after.1 - sent_before.1,
    );
    let stats = link.command("stats").unwrap_or_default();
    let hubs = format!(
        "\nroot: {}\nprovince: {}",
        media_metrics(tree.root.http_addr()).await,
        media_metrics(tree.province.http_addr()).await
    );
    println!(
        "video received/spanned {repaired:.3}, received packets/sent frames {video:.3}, \
         audio {audio:.3}; link: {stats}{hubs}"
    );
    assert!(
        audio < 0.95,
        "the link loses packets (audio is not repaired): audio {audio:.3}; {stats}{hubs}"
    );
    assert!(
        repaired > 0.97,
        "video lost on the link is repaired on it: {repaired:.3} of the packets spanned \
         arrived (audio {audio:.3}); {stats}{hubs}"
    );
    assert!(
        video > 0.5,
        "the studio's video flows to the commune: {video:.3} packets per frame sent; \
         {stats}{hubs}"
    );

    commune.close().await;
    studio.close().await;
    drop(link);
    tree.shutdown().await;
}

/// Sequence numbers spanned by the video `client` received.
fn video_span(client: &webrtc_client::WebrtcClient) -> u64 {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == "video")
        .map(|t| t.sequence_span())
        .sum()
}

/// The media counters of the hub at `addr`, one line, for a failure's message.
async fn media_metrics(addr: SocketAddr) -> String {
    const NAMES: [&str; 7] = [
        "diemcau_packets_received_total",
        "diemcau_packets_forwarded_total",
        "diemcau_packets_muted_total",
        "diemcau_keyframe_requests_total",
        "diemcau_node_link_",
        "diemcau_parent_relay_",
        "diemcau_datagrams_",
    ];
    http::get(addr, "/metrics")
        .await
        .text()
        .lines()
        .filter(|l| NAMES.iter().any(|n| l.starts_with(n)))
        .collect::<Vec<_>>()
        .join(" ")
}
