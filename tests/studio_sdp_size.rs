//! A long meeting over real signalling: two hundred sites come and go, one at a time, while
//! the studio (a webrtc-rs peer answering the hub's offers) stays. The studio's SDP must not
//! grow with every site that ever joined: each arrival's tracks reuse the m-lines of those
//! gone, announced under the new participant id. Most sites are light str0m peers publishing
//! a microphone; a few are webrtc-rs peers whose media must really reach the studio on the
//! reused m-lines.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::time::{Duration, Instant};

use diemcau_sfu::str0m::change::SdpAnswer;
use diemcau_sfu::str0m::media::{Direction, MediaKind};
use diemcau_sfu::str0m::net::{Protocol, Receive};
use diemcau_sfu::str0m::{Candidate, Event, Input, Output, Rtc};
use serde_json::json;
use tokio::net::UdpSocket;
use webrtc_client::{ClientOptions, WebrtcClient};

const CYCLES: usize = 200;
/// Cycles whose site is a webrtc-rs peer publishing audio and video.
const MEDIA_CYCLES: [usize; 3] = [0, 100, CYCLES - 1];
/// The studio's own audio and video, and one site's: one site is present at a time.
const PEAK_M_LINES: usize = 2 + 2;
/// Room for m-lines added while an offer was pending.
const SLACK: usize = 2;

/// The m-sections of an SDP.
fn sections(sdp: &str) -> Vec<&str> {
    sdp.split("\r\nm=").skip(1).collect()
}

/// The participant ids the hub sends tracks of in `sdp` (stream ids of its `sendonly` lines).
fn sending_streams(sdp: &str) -> Vec<String> {
    sections(sdp)
        .into_iter()
        .filter(|s| s.contains("\r\na=sendonly"))
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("a=msid:")))
        .filter_map(|msid| msid.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Waits until the studio has answered every hub offer and the latest sends `tracks` of
/// sites, all of participant `site` when given.
async fn wait_offered(studio: &WebrtcClient, site: Option<&str>, tracks: usize) {
    let what = match site {
        Some(site) => format!("the studio to be offered {site}'s {tracks} tracks"),
        None => "the studio's offer without the site".to_owned(),
    };
    let holds = || {
        let settled = studio.hub_offers_received() == studio.hub_offers_answered();
        let streams = sending_streams(&studio.last_hub_offer());
        let of_sites: Vec<&String> = streams
            .iter()
            .filter(|s| **s != studio.participant_id)
            .collect();
        settled && of_sites.len() == tracks && of_sites.iter().all(|s| Some(s.as_str()) == site)
    };
    let explain = || {
        format!(
            "offers received {}, answered {}; the latest:\n{}",
            studio.hub_offers_received(),
            studio.hub_offers_answered(),
            studio.last_hub_offer()
        )
    };
    wait::until_explained(&what, Duration::from_secs(10), holds, explain).await;
}

/// A site that joins, publishes a microphone from a str0m peer until its media connection is
/// up (the hub announces a track once it can flow), and leaves: a light site, so that two
/// hundred of them come and go quickly.
async fn audio_site(addr: std::net::SocketAddr, code: &str, meeting: i64, studio: &WebrtcClient) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket");
    let local = socket.local_addr().expect("its address");
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("a host candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");

    let mut ws = signaling::connect(format!("ws://{addr}/ws")).await;
    let join = json!({"type": "join", "code": code, "meeting": meeting});
    signaling::send(&mut ws, &join).await;
    let joined = signaling::next_of_type(&mut ws, "joined").await;
    let id = joined["participant"]["id"]
        .as_str()
        .expect("participant id")
        .to_owned();
    let offer = json!({"type": "offer", "sdp": offer.to_sdp_string()});
    signaling::send(&mut ws, &offer).await;
    let answer = signaling::next_of_type(&mut ws, "answer").await;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().expect("sdp"))
        .expect("the hub's answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("the hub's answer is accepted");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0; 2000];
    'connecting: loop {
        assert!(
            Instant::now() < deadline,
            "{id}'s media connection is not up"
        );
        match rtc.poll_output().expect("the site's peer runs") {
            Output::Transmit(t) => {
                socket
                    .send_to(&t.contents, t.destination)
                    .await
                    .expect("a datagram sent");
            }
            Output::Event(Event::Connected) => break 'connecting,
            Output::Event(_) => {}
            Output::Timeout(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                let input = match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
                    Ok(Ok((n, source))) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: local,
                            contents: buf[..n].try_into().expect("a datagram"),
                        },
                    ),
                    _ => Input::Timeout(Instant::now()),
                };
                rtc.handle_input(input)
                    .expect("the site's peer takes its input");
            }
        }
    }
    wait_offered(studio, Some(&id), 1).await;
    signaling::send(&mut ws, &json!({"type": "leave"})).await;
    signaling::next_of_type(&mut ws, "left").await;
}

/// A site that joins as a webrtc-rs peer, publishes audio and video until the studio has
/// received both, and leaves.
async fn media_site(addr: std::net::SocketAddr, code: String, meeting: i64, studio: &WebrtcClient) {
    let mut site = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "site",
            name: code.clone(),
            meeting,
            code,
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("a site joins: {e}"));
    let id = site.participant_id.clone();
    wait_offered(studio, Some(&id), 2).await;
    site.wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{id} connects: {e}"));
    site.start_media().await.expect("media starts");
    wait::until(
        &format!("the studio to receive {id}'s video and audio"),
        Duration::from_secs(15),
        || {
            let packets = |kind| studio.remote_track(&id, kind).map_or(0, |t| t.packets());
            packets("video") > 30 && packets("audio") > 30
        },
    )
    .await;
    site.leave().await.expect("the site leaves");
    site.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sites_coming_and_going_keep_the_studio_sdp_small() {
    let roster: Vec<(String, String)> = (0..CYCLES)
        .map(|i| (format!("{}", 3000 + i), format!("Xã số {i}")))
        .collect();
    let roster: Vec<(&str, &str)> = roster
        .iter()
        .map(|(c, n)| (c.as_str(), n.as_str()))
        .collect();
    let (hub, m) = http::hub_with_meeting("Họp dài", &roster, true).await;
    let addr = hub.http_addr();
    let studio = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "studio",
            name: "Studio UBND tỉnh".into(),
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

    let mut most_lines = 0;
    for (cycle, (code, _)) in roster.iter().enumerate() {
        let code = m.code(code);
        if MEDIA_CYCLES.contains(&cycle) {
            media_site(addr, code, m.id, &studio).await;
        } else {
            audio_site(addr, &code, m.id, &studio).await;
        }
        let offer = studio.last_hub_offer();
        wait_offered(&studio, None, 0).await;
        let lines = sections(&offer).len();
        most_lines = most_lines.max(lines);
        assert!(
            lines <= PEAK_M_LINES + SLACK,
            "cycle {cycle}: the studio's offer has {lines} m-lines:\n{offer}"
        );
    }
    let offer = studio.last_hub_offer();
    assert!(
        sections(&offer).len() <= PEAK_M_LINES + SLACK,
        "the studio's last offer:\n{offer}"
    );
    assert!(most_lines >= PEAK_M_LINES, "the sites' tracks were offered");
    assert!(
        studio.hub_errors().is_empty() && studio.failures().is_empty(),
        "{}",
        studio.report()
    );
    studio.close().await;
    hub.shutdown().await;
}
