//! A hall whose network passes only TCP: a webrtc-rs site with no UDP socket at all reaches
//! the hub over ICE-TCP (the hub's passive candidate, RFC 4571 framing), receives the
//! studio's video and audio, and the chair's console, the attendance report and its CSV say
//! `tcp` for it, while a site on UDP next to it says `udp`.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::time::Duration;

use serde_json::Value;
use webrtc_client::{ClientOptions, Network, WebrtcClient};

fn packets(client: &WebrtcClient, stream: &str, kind: &str) -> u64 {
    client.remote_track(stream, kind).map_or(0, |t| t.packets())
}

fn console_transport(studio: &WebrtcClient, site: &str) -> Option<Value> {
    let console = studio.console()?;
    console["sites"]
        .as_array()?
        .iter()
        .find(|s| s["site"] == site)
        .map(|s| s["transport"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_without_udp_receives_the_studio_over_tcp() {
    let sites = [("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")];
    let (hub, m) = http::hub_with_meeting("Họp qua TCP", &sites, true).await;
    let addr = hub.http_addr();
    assert!(
        !hub.media_tcp_addresses().is_empty(),
        "the hub listens for media over TCP"
    );
    let connectivity = http::request(addr, "GET", "/api/connectivity", b"").await;
    assert_eq!(connectivity.status, 200, "{}", connectivity.text());
    let tcp_port = hub.media_tcp_addresses()[0].port();
    assert_eq!(
        connectivity.json()["tcp"][0],
        format!("127.0.0.1:{tcp_port}"),
        "the connectivity check names the TCP port"
    );

    let mut studio = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "studio",
            name: "Studio".into(),
            meeting: m.id,
            code: m.studio_code.clone(),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the studio joins: {e}"));
    studio
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the studio connects: {e}"));
    studio.start_media().await.expect("studio media starts");

    let tcp_site = WebrtcClient::connect_over(
        addr,
        ClientOptions {
            role: "site",
            name: sites[0].1.into(),
            meeting: m.id,
            code: m.code(sites[0].0),
            publish: true,
        },
        Network::TcpOnly,
    )
    .await
    .unwrap_or_else(|e| panic!("the TCP-only site joins: {e}"));
    let udp_site = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "site",
            name: sites[1].1.into(),
            meeting: m.id,
            code: m.code(sites[1].0),
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the UDP site joins: {e}"));
    for site in [&tcp_site, &udp_site] {
        site.wait_connected(Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", site.label()));
    }
    assert!(
        hub.media_tcp_connections() >= 1,
        "the TCP-only site holds a TCP connection to the hub"
    );

    let studio_id = studio.participant_id.clone();
    wait::until_explained(
        "both sites receive the studio's video and audio",
        Duration::from_secs(20),
        || {
            [&tcp_site, &udp_site].iter().all(|s| {
                packets(s, &studio_id, "video") > 60 && packets(s, &studio_id, "audio") > 50
            })
        },
        || {
            format!(
                "TCP site:\n{}\nUDP site:\n{}",
                tcp_site.report(),
                udp_site.report()
            )
        },
    )
    .await;

    wait::until_explained(
        "the console to show each site's transport",
        Duration::from_secs(10),
        || {
            console_transport(&studio, sites[0].0) == Some("tcp".into())
                && console_transport(&studio, sites[1].0) == Some("udp".into())
        },
        || format!("console: {:?}", studio.console()),
    )
    .await;

    // The log records the transport with each quality sample (every 10 s, the first after
    // two of str0m's statistics reports).
    let report_path = format!("/api/meetings/{}/report", m.id);
    let transport_of = |report: &Value, site: &str| {
        report["sessions"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["site"] == site))
            .map(|r| r["transport"].clone())
    };
    let report = wait::until_some(
        "the report to show each session's transport",
        Duration::from_secs(45),
        || async {
            let report = http::get(addr, &report_path).await.json();
            (transport_of(&report, sites[0].0) == Some("tcp".into())
                && transport_of(&report, sites[1].0) == Some("udp".into()))
            .then_some(report)
        },
    )
    .await;
    assert!(
        report["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "quality_sample" && e["transport"] == "tcp"),
        "a quality sample of the TCP site records `tcp`"
    );
    let csv = http::get(addr, &format!("{report_path}.csv?table=sessions"))
        .await
        .text();
    let tcp_row = csv
        .lines()
        .find(|l| l.starts_with(sites[0].0))
        .unwrap_or_else(|| panic!("no session row of {} in\n{csv}", sites[0].0));
    assert!(
        tcp_row.trim_end().ends_with(",TCP"),
        "the sessions table says TCP: {tcp_row}"
    );
    assert!(
        csv.lines().next().is_some_and(|h| h.contains("Giao thức")),
        "the sessions table has a transport column: {csv}"
    );

    for site in [tcp_site, udp_site] {
        site.close().await;
    }
    studio.close().await;
    hub.shutdown().await;
}
