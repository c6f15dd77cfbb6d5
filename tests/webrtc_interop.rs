//! Interop with a WebRTC stack we did not write: **webrtc-rs** peers (crate `webrtc` 0.21.1) join
//! a meeting on an in-process hub over the signalling protocol of `docs/protocol.md`, publish VP8
//! and Opus, and must receive exactly the media the protocol promises them, with the publisher's
//! participant id as the stream id of every received track.
//!
//! Run with logs: `RUST_LOG=diemcau=debug,webrtc=info cargo test --test webrtc_interop --
//! --nocapture`; `WEBRTC_CLIENT_TRACE=1` also prints each client's signalling transcript live.

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::time::{Duration, Instant};

use webrtc_client::{ClientOptions, WebrtcClient};

/// RTP packets a received track must deliver before it counts as flowing (~1-2 s of media).
const MIN_PACKETS: u64 = 50;
/// How long ICE + DTLS may take once a client has the hub's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the media may take to flow everywhere once every client is connected.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// A whole test, as a last resort against a hang.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls::config=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The studio joins first, then a site; each must receive the other's audio and video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_studio_and_site_exchange_audio_and_video() {
    init_logging();
    if tokio::time::timeout(TEST_TIMEOUT, studio_then_site())
        .await
        .is_err()
    {
        panic!("the interop test did not finish within {TEST_TIMEOUT:?}");
    }
}

/// A site joins before the studio (so the hub must renegotiate with a connected site when the
/// studio's tracks appear), then a second site: both sites receive the studio, the studio
/// receives both sites, and no site receives the other site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_site_first_then_studio_then_second_site() {
    init_logging();
    if tokio::time::timeout(TEST_TIMEOUT, site_studio_site())
        .await
        .is_err()
    {
        panic!("the interop test did not finish within {TEST_TIMEOUT:?}");
    }
}

async fn studio_then_site() {
    let (hub, m) =
        http::hub_with_meeting("Interop webrtc-rs", &[("2269", "Xã Thượng Lâm")], true).await;
    let addr = hub.http_addr();

    let mut studio = join(addr, &m, None, "Studio UBND tỉnh", &[]).await;
    let mut site = join(addr, &m, Some("2269"), "Xã Thượng Lâm", &[&studio]).await;
    let (studio_id, site_id) = (studio.participant_id.clone(), site.participant_id.clone());
    assert_ne!(studio_id, site_id, "two participants share one id");

    // The site learnt the studio's id from `joined.participants`.
    assert_knows(&site, &studio_id, "studio", "its `joined.participants`");

    connect_and_send(&mut [&mut studio, &mut site]).await;
    let took = wait_media(
        &[(&site, &studio_id), (&studio, &site_id)],
        &[&studio, &site],
    )
    .await;

    // The studio learnt the site's id from `participant_joined`.
    assert_knows(&studio, &site_id, "site", "`participant_joined`");
    check_clean(&[&studio, &site]);

    eprintln!(
        "media flowed both ways {:.2}s after both clients connected\n{}\n{}",
        took.as_secs_f64(),
        summary(&studio),
        summary(&site)
    );

    // The studio leaves: the site hears `participant_left`, answers the hub's offers that take
    // the studio's tracks away, and the studio's media stops reaching it.
    studio.leave().await.unwrap_or_else(|e| panic!("{e}"));
    wait_until(
        "the site to hear `participant_left` for the studio",
        &[&site],
        || site.departed().contains(&studio_id),
    )
    .await;
    wait_until(
        "the studio's media to stop reaching the site",
        &[&site, &studio],
        || {
            // Quiet means: no hub offer left unanswered, and no packet in the last half second.
            site.hub_offers_answered() == site.hub_offers_received()
                && ["video", "audio"].iter().all(|kind| {
                    site.remote_track(&studio_id, kind)
                        .is_some_and(|t| t.quiet_for() >= Duration::from_millis(500))
                })
        },
    )
    .await;
    assert!(
        site.hub_errors().is_empty() && site.failures().is_empty(),
        "the site saw errors after the studio left\n{}",
        site.report()
    );
    close_all(vec![studio, site]).await;
    tokio::time::timeout(Duration::from_secs(10), hub.shutdown())
        .await
        .expect("hub shuts down within 10 s");
}

async fn site_studio_site() {
    let (hub, m) = http::hub_with_meeting(
        "Interop webrtc-rs, order",
        &[("2317", "Phường Minh Xuân"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let addr = hub.http_addr();

    let mut site_a = join(addr, &m, Some("2317"), "Phường Minh Xuân", &[]).await;
    connect_and_send(&mut [&mut site_a]).await;

    let mut studio = join(addr, &m, None, "Studio UBND tỉnh", &[&site_a]).await;
    connect_and_send(&mut [&mut studio]).await;

    let mut site_b = join(addr, &m, Some("2266"), "Xã Lâm Bình", &[&site_a, &studio]).await;
    connect_and_send(&mut [&mut site_b]).await;

    let (a, s, b) = (
        site_a.participant_id.clone(),
        studio.participant_id.clone(),
        site_b.participant_id.clone(),
    );
    assert!(
        a != s && s != b && a != b,
        "participant ids must differ: {a:?} {s:?} {b:?}"
    );
    assert_knows(&studio, &a, "site", "its `joined.participants`");
    assert_knows(&site_b, &s, "studio", "its `joined.participants`");
    assert_unaware(&site_b, &a, "its `joined.participants`");

    let took = wait_media(
        &[(&site_a, &s), (&site_b, &s), (&studio, &a), (&studio, &b)],
        &[&site_a, &studio, &site_b],
    )
    .await;
    assert_knows(&site_a, &s, "studio", "`participant_joined`");
    assert_unaware(&site_a, &b, "`participant_joined`");
    assert_knows(&studio, &b, "site", "`participant_joined`");

    // Sites do not receive each other (no site holds the floor).
    for (site, other) in [(&site_a, &b), (&site_b, &a)] {
        let foreign: Vec<_> = site
            .remote_tracks()
            .into_iter()
            .filter(|t| t.stream_id != s)
            .map(|t| format!("{} of {:?}", t.kind, t.stream_id))
            .collect();
        assert!(
            foreign.is_empty(),
            "{} must receive only the studio's tracks, not the site {other:?}'s; it got {foreign:?}\n{}",
            site.label(),
            site.report()
        );
    }
    check_clean(&[&site_a, &studio, &site_b]);

    eprintln!(
        "media flowed to all three {:.2}s after the last client connected\n{}\n{}\n{}",
        took.as_secs_f64(),
        summary(&site_a),
        summary(&studio),
        summary(&site_b)
    );
    close_all(vec![site_a, studio, site_b]).await;
    tokio::time::timeout(Duration::from_secs(10), hub.shutdown())
        .await
        .expect("hub shuts down within 10 s");
}

/// Joins and publishes (one offer, the hub's answer applied); panics with every given client's
/// report when that fails.
/// `site`: the site's administrative code, or `None` for the studio.
async fn join(
    addr: std::net::SocketAddr,
    meeting: &http::TestMeeting,
    site: Option<&str>,
    name: &str,
    others: &[&WebrtcClient],
) -> WebrtcClient {
    let (role, code) = match site {
        Some(site) => ("site", meeting.code(site)),
        None => ("studio", meeting.studio_code.clone()),
    };
    let opts = ClientOptions {
        role,
        name: name.to_string(),
        meeting: meeting.id,
        code,
        publish: true,
    };
    match WebrtcClient::connect(addr, opts).await {
        Ok(client) => client,
        Err(e) => panic!(
            "{role} {name:?} could not join and publish: {e}\n{}",
            reports(others)
        ),
    }
}

/// Waits for each client's peer connection to come up, then starts its media.
async fn connect_and_send(clients: &mut [&mut WebrtcClient]) {
    let results =
        futures_util::future::join_all(clients.iter().map(|c| c.wait_connected(CONNECT_TIMEOUT)))
            .await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for c in clients.iter_mut() {
        if let Err(e) = c.start_media().await {
            panic!("{e}\n{}", c.report());
        }
    }
}

/// Waits until every `(receiver, publisher id)` pair has the publisher's video (with a keyframe)
/// and audio flowing, with stream id = publisher id. Returns how long that took.
async fn wait_media(pairs: &[(&WebrtcClient, &String)], all: &[&WebrtcClient]) -> Duration {
    let started = Instant::now();
    let flowing = wait::poll(MEDIA_TIMEOUT, || std::future::ready(missing_media(pairs))).await;
    if let Err(missing) = flowing {
        panic!(
            "media did not flow within {MEDIA_TIMEOUT:?}:\n  {}\n\n{}",
            missing.join("\n  "),
            reports(all)
        );
    }
    started.elapsed()
}

/// What of `pairs`' media has not come yet: `Err` with a line per track missing.
fn missing_media(pairs: &[(&WebrtcClient, &String)]) -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    for (client, publisher) in pairs {
        for kind in ["video", "audio"] {
            let who = client.label();
            match client.remote_track(publisher, kind) {
                None => missing.push(format!(
                    "{who}: no {kind} track with stream id {publisher:?}"
                )),
                Some(t) if t.packets() < MIN_PACKETS => missing.push(format!(
                    "{who}: {kind} of {publisher:?}: {} of {MIN_PACKETS} packets",
                    t.packets()
                )),
                Some(t) if kind == "video" && t.keyframes() == 0 => {
                    missing.push(format!("{who}: video of {publisher:?}: no keyframe yet"))
                }
                Some(_) => {}
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Waits up to 10 s for `done`; panics with the clients' reports if it stays false.
async fn wait_until(what: &str, clients: &[&WebrtcClient], done: impl Fn() -> bool) {
    wait::until_explained(what, Duration::from_secs(10), done, || reports(clients)).await;
}

fn assert_knows(client: &WebrtcClient, id: &str, role: &str, source: &str) {
    let known = client.known_participants();
    assert_eq!(
        known.get(id).map(|(_, r)| r.as_str()),
        Some(role),
        "{} must have learnt of the {role} {id:?} from {source}; it knows {known:?}\n{}",
        client.label(),
        client.report()
    );
}

/// A site is not told of the other sites (docs/protocol.md, `joined`).
fn assert_unaware(client: &WebrtcClient, id: &str, source: &str) {
    let known = client.known_participants();
    assert!(
        !known.contains_key(id),
        "{} must not learn of the site {id:?} from {source}; it knows {known:?}\n{}",
        client.label(),
        client.report()
    );
}

/// Every received track belongs to a participant the client was told about and is not its own;
/// no hub errors, no local failures, and the hub reported the media connected.
fn check_clean(clients: &[&WebrtcClient]) {
    for client in clients {
        let known = client.known_participants();
        for t in client.remote_tracks() {
            assert_ne!(
                t.stream_id,
                client.participant_id,
                "{} received its own {} back\n{}",
                client.label(),
                t.kind,
                client.report()
            );
            assert!(
                known.contains_key(&t.stream_id),
                "{} received a {} track with stream id {:?}, no participant it was told about ({known:?})\n{}",
                client.label(),
                t.kind,
                t.stream_id,
                client.report()
            );
        }
        assert!(
            client.hub_errors().is_empty() && client.failures().is_empty(),
            "{} saw errors\n{}",
            client.label(),
            client.report()
        );
        assert_eq!(
            client.media_state().as_deref(),
            Some("connected"),
            "{} never got media_state connected\n{}",
            client.label(),
            client.report()
        );
    }
}

async fn close_all(clients: Vec<WebrtcClient>) {
    for c in clients {
        c.close().await;
    }
}

fn reports(clients: &[&WebrtcClient]) -> String {
    clients
        .iter()
        .map(|c| c.report())
        .collect::<Vec<_>>()
        .join("\n")
}

fn summary(client: &WebrtcClient) -> String {
    let mut out = format!("{}:", client.label());
    for t in client.remote_tracks() {
        out.push_str(&format!(
            " [{} from {:?}: {} packets, {} keyframes]",
            t.kind,
            t.stream_id,
            t.packets(),
            t.keyframes()
        ));
    }
    out
}
