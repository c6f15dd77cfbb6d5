//! A studio encoder publishes over WHIP (RFC 9725) as OBS does: the organizer issues the
//! meeting's encoder token, the encoder posts its offer (H.264 constrained baseline and Opus)
//! and a site receives the H.264 programme in place of the chair's camera; `DELETE` ends it and
//! the camera comes back. Wrong tokens, other codecs, malformed offers and trickle ICE are
//! refused with their reasons. Players watch over WHEP, and the chair switches the programme
//! between the encoder and its own camera.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "e2e/node_script.rs"]
mod node_script;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::SocketAddr;
use std::time::Duration;

use webrtc_client::{ClientOptions, WebrtcClient};

/// `POST /whip/<meeting>` with `token` (none when empty) and `body` as `content_type`.
async fn post_offer(
    addr: SocketAddr,
    meeting: i64,
    token: &str,
    content_type: &str,
    body: &str,
) -> http::Reply {
    let authorization = format!("Bearer {token}");
    let mut headers = vec![("Content-Type", content_type)];
    if !token.is_empty() {
        headers.push(("Authorization", authorization.as_str()));
    }
    http::send(
        addr,
        "POST",
        &format!("/whip/{meeting}"),
        body.as_bytes(),
        None,
        &headers,
    )
    .await
}

/// Site 2269 of `m`, joined, publishing its fake camera, its media connected.
async fn joined_site(addr: SocketAddr, m: &http::TestMeeting) -> WebrtcClient {
    let site = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "site",
            name: "Xã Thượng Lâm".into(),
            meeting: m.id,
            code: m.code("2269"),
            publish: true,
        },
    )
    .await
    .expect("the site joins");
    site.wait_connected(Duration::from_secs(10))
        .await
        .expect("the site connects");
    site
}

/// `DELETE` of a session's resource with `token` as the bearer.
async fn delete(addr: SocketAddr, location: &str, token: &str) -> http::Reply {
    let authorization = format!("Bearer {token}");
    http::send(
        addr,
        "DELETE",
        location,
        b"",
        None,
        &[("Authorization", authorization.as_str())],
    )
    .await
}

/// An offer as an encoder sending `video` (codec name, fmtp) would write it.
fn offer_with_video(name: &str, fmtp: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sendonly\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sendonly\r\na=rtcp-mux\r\n\
         a=rtpmap:96 {name}/90000\r\na=fmtp:96 {fmtp}\r\n"
    )
}

fn packets(client: &WebrtcClient, kind: &str) -> u64 {
    client
        .remote_tracks()
        .iter()
        .filter(|t| t.kind == kind)
        .map(|t| t.packets())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_publishes_h264_over_whip_and_sites_receive_it() {
    let (hub, m) = http::hub_with_meeting(
        "Họp có bộ mã hoá",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let addr = hub.http_addr();

    // The organizer's view before and after issuing the token.
    let view = http::send(
        addr,
        "GET",
        &format!("/api/meetings/{}/encoder", m.id),
        b"",
        None,
        &[],
    )
    .await;
    assert_eq!(
        view.status,
        401,
        "the token is no one's business: {}",
        view.text()
    );
    let view = http::request(addr, "GET", &format!("/api/meetings/{}/encoder", m.id), b"").await;
    assert_eq!(view.status, 200, "{}", view.text());
    assert_eq!(view.json()["token"], serde_json::Value::Null);
    assert_eq!(view.json()["whip"], format!("/whip/{}", m.id));
    let issued = http::request(
        addr,
        "POST",
        &format!("/api/meetings/{}/encoder/token", m.id),
        b"",
    )
    .await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    let token = issued.json()["token"].as_str().expect("a token").to_owned();

    // Refusals, each with its reason.
    let h264 = offer_with_video(
        "H264",
        "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
    );
    let none = post_offer(addr, m.id, "", "application/sdp", &h264).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert!(
        none.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let wrong = post_offer(addr, m.id, "not-the-token", "application/sdp", &h264).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let other_meeting = post_offer(addr, m.id + 1, &token, "application/sdp", &h264).await;
    assert_eq!(other_meeting.status, 401, "{}", other_meeting.text());
    let json = post_offer(addr, m.id, &token, "application/json", &h264).await;
    assert_eq!(json.status, 415, "{}", json.text());
    let av1 = post_offer(
        addr,
        m.id,
        &token,
        "application/sdp",
        &offer_with_video("AV1", "profile=0"),
    )
    .await;
    assert_eq!(av1.status, 422, "{}", av1.text());
    assert!(
        av1.text().contains("AV1") && av1.text().contains("OBS"),
        "{}",
        av1.text()
    );
    let high = post_offer(
        addr,
        m.id,
        &token,
        "application/sdp",
        &offer_with_video("H264", "profile-level-id=640032;packetization-mode=1"),
    )
    .await;
    assert_eq!(high.status, 422, "{}", high.text());
    assert!(high.text().contains("high"), "{}", high.text());
    let malformed = post_offer(addr, m.id, &token, "application/sdp", "v=0\r\nnot sdp").await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());

    // A site that receives.
    let site = joined_site(addr, &m).await;

    // The encoder publishes.
    let (mut encoder, location) = WebrtcClient::publish_whip(addr, m.id, &token)
        .await
        .expect("the encoder's offer is answered");
    assert!(
        location.starts_with(&format!("/whip/{}/", m.id)),
        "{location}"
    );
    encoder
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the encoder connects");
    encoder.start_media().await.expect("the encoder sends");
    // The programme's audio reaches the webrtc-rs site (its video codecs were settled by its
    // first offer, VP8 only, as webrtc-rs keeps them); a Chromium site decodes the H.264.
    wait::until(
        "the site receives the encoder's audio",
        Duration::from_secs(15),
        || packets(&site, "audio") > 50,
    )
    .await;
    // Chromium: a site decodes the H.264, and so does the watch page the meeting's page links.
    let watch_token = http::issue_stream_token(addr, m.id, "watch").await;
    node_script::require_playwright();
    node_script::run_against(
        &format!("http://{addr}"),
        "whip_site.mjs",
        Duration::from_secs(150),
        &[
            (
                "SITE_PATH",
                format!("/site.html?meeting={}&code={}", m.id, m.code("2266")),
            ),
            ("MEETING", m.id.to_string()),
            ("ENCODER_TOKEN", token.clone()),
            ("WATCH_TOKEN", watch_token),
            (
                "STUDIO_PATH",
                format!("/studio.html?meeting={}&code={}", m.id, m.studio_code),
            ),
        ],
    )
    .await;
    let view = http::request(addr, "GET", &format!("/api/meetings/{}/encoder", m.id), b"").await;
    assert_eq!(view.json()["publishing"], true);

    // Trickle ICE is not supported; a DELETE needs the token.
    let patch = http::send(addr, "PATCH", &location, b"a=candidate:1", None, &[]).await;
    assert_eq!(patch.status, 405, "{}", patch.text());
    let refused = delete(addr, &location, &format!("x{token}")).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let stopped = delete(addr, &location, &token).await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let audio = site
        .remote_tracks()
        .into_iter()
        .find(|t| t.kind == "audio" && t.packets() > 50)
        .expect("the programme's audio track");
    wait::until(
        "the encoder's audio stops reaching the site",
        Duration::from_secs(5),
        || audio.quiet_for() >= Duration::from_millis(500),
    )
    .await;
    let again = delete(addr, &location, &token).await;
    assert_eq!(again.status, 404, "{}", again.text());
    let view = http::request(addr, "GET", &format!("/api/meetings/{}/encoder", m.id), b"").await;
    assert_eq!(view.json()["publishing"], false);

    // A new token revokes the old one.
    let reissued = http::request(
        addr,
        "POST",
        &format!("/api/meetings/{}/encoder/token", m.id),
        b"",
    )
    .await;
    assert_ne!(reissued.json()["token"].as_str(), Some(token.as_str()));
    let revoked = post_offer(addr, m.id, &token, "application/sdp", &h264).await;
    assert_eq!(revoked.status, 401, "{}", revoked.text());
    assert!(revoked.text().contains("replaced"), "{}", revoked.text());

    encoder.close().await;
    site.close().await;
    hub.shutdown().await;
}

const PT_H264: u8 = WebrtcClient::PT_H264;
const PT_VP8: u8 = WebrtcClient::PT_VP8;

/// Video packets `client` received on tracks whose packets are H.264.
fn h264_packets(client: &WebrtcClient) -> u64 {
    client
        .remote_tracks()
        .iter()
        .filter(|t| {
            t.kind == "video"
                && t.first_payload_type
                    .lock()
                    .is_ok_and(|pt| *pt == Some(PT_H264))
        })
        .map(|t| t.packets())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_watch_the_programme_over_whep_up_to_the_limit() {
    let hub = diemcau::start(diemcau::Config {
        max_viewers: 1,
        ..diemcau::Config::for_tests()
    })
    .await
    .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp có đường xem", &[("2269", "Xã Thượng Lâm")], true).await;
    let encoder_token = http::issue_stream_token(addr, m.id, "encoder").await;
    let watch_token = http::issue_stream_token(addr, m.id, "watch").await;

    // The watch link takes its own token only, and offers that only receive.
    let refused = WebrtcClient::watch_whep(addr, m.id, &encoder_token)
        .await
        .expect_err("the encoder's token opens no watch link");
    assert!(refused.starts_with("401"), "{refused}");
    let sending = post_offer(
        addr,
        m.id,
        &watch_token,
        "application/sdp",
        &offer_with_video("VP8", ""),
    )
    .await;
    assert_eq!(
        sending.status,
        401,
        "a WHIP endpoint refuses the watch token: {}",
        sending.text()
    );
    let publishing = http::send(
        addr,
        "POST",
        &format!("/whep/{}", m.id),
        offer_with_video("VP8", "").as_bytes(),
        None,
        &[
            ("Authorization", &format!("Bearer {watch_token}")),
            ("Content-Type", "application/sdp"),
        ],
    )
    .await;
    assert_eq!(publishing.status, 422, "{}", publishing.text());
    assert!(
        publishing.text().contains("recvonly"),
        "{}",
        publishing.text()
    );

    let encoder = WebrtcClient::encoder_on_air(addr, m.id, &encoder_token).await;
    let (viewer, location) = WebrtcClient::player_connected(addr, m.id, &watch_token).await;
    assert!(
        location.starts_with(&format!("/whep/{}/", m.id)),
        "{location}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(h264_packets(&viewer) > 60 && packets(&viewer, "audio") > 50) {
        assert!(
            std::time::Instant::now() < deadline,
            "the player receives the programme's H.264 and audio\n{}",
            viewer.report()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = http::request(addr, "GET", &format!("/api/meetings/{}/watch", m.id), b"").await;
    assert_eq!(view.status, 200, "{}", view.text());
    assert_eq!(view.json()["viewers"], 1);
    assert_eq!(view.json()["limit"], 1);
    assert_eq!(view.json()["whep"], format!("/whep/{}", m.id));

    // The limit holds; a player leaving makes room.
    let over = WebrtcClient::watch_whep(addr, m.id, &watch_token)
        .await
        .expect_err("one viewer at most");
    assert!(
        over.starts_with("503") && over.contains("viewers"),
        "{over}"
    );
    let stopped = delete(addr, &location, &watch_token).await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let mut second = None;
    for _ in 0..20 {
        match WebrtcClient::watch_whep(addr, m.id, &watch_token).await {
            Ok(client) => {
                second = Some(client);
                break;
            }
            Err(e) if e.starts_with("503") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the second player: {e}"),
        }
    }
    let (second, _) = second.expect("room for the next player");
    second
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the next player connects");
    wait::until(
        "the next player receives the programme",
        Duration::from_secs(15),
        || h264_packets(&second) > 30,
    )
    .await;

    // The player's one picture follows the floor: the site's VP8 while it speaks, then the
    // encoder's H.264 again.
    let mut site = joined_site(addr, &m).await;
    site.start_media().await.expect("the site sends");
    let mut chair = signaling::connect(http::organizer_ws_request(addr).await).await;
    signaling::send(
        &mut chair,
        &serde_json::json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    for (action, pt, what) in [
        (
            serde_json::json!({"type": "give_floor", "site": "2269"}),
            PT_VP8,
            "the speaking site's VP8",
        ),
        (
            serde_json::json!({"type": "take_floor"}),
            PT_H264,
            "the encoder's H.264 again",
        ),
    ] {
        signaling::send(&mut chair, &action).await;
        wait::until(what, Duration::from_secs(10), || {
            second.last_video_payload_type() == Some(pt)
        })
        .await;
    }

    // The report counts the players apart from the sites, and logs the encoder.
    let report = http::request(addr, "GET", &format!("/api/meetings/{}/report", m.id), b"").await;
    assert_eq!(report.status, 200, "{}", report.text());
    let report = report.json();
    assert_eq!(report["summary"]["viewers"], 2, "{}", report["summary"]);
    assert_eq!(
        report["summary"]["viewers_peak"], 1,
        "{}",
        report["summary"]
    );
    assert_eq!(
        report["summary"]["sites_joined"], 1,
        "the site only: players are no sites"
    );
    let kinds: Vec<&str> = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["encoder_joined", "viewer_joined", "viewer_left"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    site.close().await;
    viewer.close().await;
    second.close().await;
    encoder.close().await;
    hub.shutdown().await;
}

/// The chair puts its own camera on air while the encoder publishes, then the encoder again: a
/// player of the watch link, which decodes either, follows (the camera's VP8, the encoder's
/// H.264); the chair is told each time, and each switch is in the attendance log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chair_switches_the_programme_between_the_encoder_and_its_camera() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp có bộ mã hoá", &[("2269", "Xã Thượng Lâm")], true).await;
    let encoder_token = http::issue_stream_token(addr, m.id, "encoder").await;
    let watch_token = http::issue_stream_token(addr, m.id, "watch").await;

    let mut chair = WebrtcClient::connect(
        addr,
        ClientOptions {
            role: "studio",
            name: "Trường quay tỉnh".into(),
            meeting: m.id,
            code: m.studio_code.clone(),
            publish: true,
        },
    )
    .await
    .expect("the chair joins");
    chair
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the chair connects");
    chair.start_media().await.expect("the chair's camera sends");
    let encoder = WebrtcClient::encoder_on_air(addr, m.id, &encoder_token).await;
    let (viewer, _) = WebrtcClient::player_connected(addr, m.id, &watch_token).await;

    let told = |chair: &WebrtcClient| {
        chair
            .received("programme")
            .last()
            .map(|p| (p["source"].clone(), p["encoder"].clone()))
    };
    wait::until(
        "the player receives the encoder's H.264",
        Duration::from_secs(15),
        || h264_packets(&viewer) > 30 && viewer.last_video_payload_type() == Some(PT_H264),
    )
    .await;
    wait::until(
        "the chair is told the encoder is on air",
        Duration::from_secs(5),
        || told(&chair) == Some(("encoder".into(), true.into())),
    )
    .await;

    for (source, pt, what) in [
        ("camera", PT_VP8, "the chair's camera on air"),
        ("encoder", PT_H264, "the encoder on air again"),
    ] {
        let done = chair.received("done").len();
        chair
            .send(&serde_json::json!({"type": "switch_programme", "source": source}))
            .expect("sent");
        wait::until(what, Duration::from_secs(10), || {
            assert!(
                chair.received("error").is_empty(),
                "{:?}",
                chair.received("error")
            );
            chair.received("done").len() > done && viewer.last_video_payload_type() == Some(pt)
        })
        .await;
        assert_eq!(told(&chair), Some((source.into(), true.into())));
    }

    let report = http::request(addr, "GET", &format!("/api/meetings/{}/report", m.id), b"").await;
    assert_eq!(report.status, 200, "{}", report.text());
    let switched: Vec<String> = report.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "programme_switched")
        .map(|e| e["source"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(switched, ["camera", "encoder"]);

    viewer.close().await;
    encoder.close().await;
    chair.close().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_may_publish_and_watch_with_its_token() {
    let (hub, m) = http::hub_with_meeting(
        "Họp xem từ cổng thông tin",
        &[("2269", "Xã Thượng Lâm")],
        true,
    )
    .await;
    let addr = hub.http_addr();
    let token = http::issue_stream_token(addr, m.id, "encoder").await;
    const PORTAL: &str = "https://tuyenquang.gov.vn";

    // The browser's preflight, then the offer itself from the portal's page.
    let path = format!("/whip/{}", m.id);
    let preflight = http::send(
        addr,
        "OPTIONS",
        &path,
        b"",
        None,
        &[
            ("Origin", PORTAL),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST") && m.contains("DELETE")),
        "{:?}",
        preflight.headers
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("Authorization") && h.contains("Content-Type")),
        "{:?}",
        preflight.headers
    );
    let authorization = format!("Bearer {token}");
    let offer = offer_with_video(
        "H264",
        "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1",
    );
    // The portal's page posts the offer with a token, as a WHIP client in a browser does.
    let post_from_portal = |bearer: String| {
        let (path, offer) = (path.clone(), offer.clone());
        async move {
            let authorization = format!("Bearer {bearer}");
            http::send(
                addr,
                "POST",
                &path,
                offer.as_bytes(),
                None,
                &[
                    ("Origin", PORTAL),
                    ("Authorization", &authorization),
                    ("Content-Type", "application/sdp"),
                ],
            )
            .await
        }
    };
    let published = post_from_portal(token.clone()).await;
    assert_eq!(published.status, 201, "{}", published.text());
    assert_eq!(published.header("access-control-allow-origin"), Some("*"));
    assert!(
        published
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("Location")),
        "the page reads where its session is: {:?}",
        published.headers
    );
    let location = published.header("location").expect("a location").to_owned();
    let stopped = http::send(
        addr,
        "DELETE",
        &location,
        b"",
        None,
        &[("Origin", PORTAL), ("Authorization", &authorization)],
    )
    .await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.header("access-control-allow-origin"), Some("*"));
    // A refusal reads the same from there; the API itself stays same-site only.
    let wrong = post_from_portal("nope".to_owned()).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("access-control-allow-origin"), Some("*"));
    let organizer = http::organizer(addr).await;
    let api = http::send(
        addr,
        "POST",
        &format!("/api/meetings/{}/end", m.id),
        b"",
        Some(&organizer),
        &[("Origin", PORTAL)],
    )
    .await;
    assert_eq!(api.status, 403, "{}", api.text());
    hub.shutdown().await;
}
