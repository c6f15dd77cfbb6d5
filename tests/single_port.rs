//! One UDP port for all media workers (`--single-port`): a hub with two workers whose sockets
//! share one port. Five webrtc-rs sites and a webrtc-rs studio join (peers go to the workers in
//! turn, so each worker owns three); every site receives the studio and the studio every site,
//! every UDP candidate the hub announces names the one port, and datagrams that the kernel
//! gave to the worker not owning their peer are handed over (counted on `/metrics`).
//!
//! Run with logs: `RUST_LOG=diemcau=debug cargo test --test single_port -- --nocapture`.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use webrtc_client::{ClientOptions, WebrtcClient};

/// RTP packets a received track must deliver before it counts as flowing (~1-2 s of media).
const MIN_PACKETS: u64 = 50;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Extra sources sending a STUN binding request for one peer: the kernel spreads them over
/// both sockets, so some reach the worker not owning the peer (all on one: odds 2^-24).
const PROBES: usize = 24;

const SITES: [(&str, &str); 5] = [
    ("2269", "Xã Thượng Lâm"),
    ("2266", "Xã Lâm Bình"),
    ("2317", "Phường Minh Xuân"),
    ("2245", "Xã Hồng Thái"),
    ("2278", "Xã Bình An"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_on_two_workers_share_one_udp_port() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls::config=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    if tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .is_err()
    {
        panic!("the single-port test did not finish within {TEST_TIMEOUT:?}");
    }
}

async fn scenario() {
    let config = diemcau::Config {
        single_port: true,
        workers: Some(2),
        ..diemcau::Config::for_tests()
    };
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Một cổng UDP", &SITES, true).await;

    // The hub announces one UDP address for both workers.
    let connectivity = http::get(addr, "/api/connectivity").await.json();
    let udp: Vec<SocketAddr> = connectivity["udp"]
        .as_array()
        .expect("udp addresses")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("address")
                .parse()
                .expect("socket address")
        })
        .collect();
    let [media] = udp[..] else {
        panic!("one UDP address for two workers: {udp:?}");
    };

    let mut studio = join(addr, &m, None, "Studio UBND tỉnh").await;
    let mut sites = Vec::new();
    for (code, name) in SITES {
        sites.push(join(addr, &m, Some(code), name).await);
    }
    let mut all: Vec<&mut WebrtcClient> = sites.iter_mut().collect();
    all.push(&mut studio);
    let results =
        futures_util::future::join_all(all.iter().map(|c| c.wait_connected(CONNECT_TIMEOUT))).await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for c in all.iter_mut() {
        if let Err(e) = c.start_media().await {
            panic!("{e}\n{}", c.report());
        }
    }

    let studio_id = studio.participant_id.clone();
    let mut pairs: Vec<(&WebrtcClient, String)> =
        sites.iter().map(|s| (s, studio_id.clone())).collect();
    pairs.extend(sites.iter().map(|s| (&studio, s.participant_id.clone())));
    let everyone: Vec<&WebrtcClient> = sites.iter().chain([&studio]).collect();
    if let Err(missing) =
        wait::poll(MEDIA_TIMEOUT, || std::future::ready(missing_media(&pairs))).await
    {
        panic!(
            "media did not flow within {MEDIA_TIMEOUT:?}:\n  {}\n\n{}",
            missing.join("\n  "),
            reports(&everyone)
        );
    }

    // Every UDP candidate of every SDP the hub sent names the one port.
    let mut ufrag = None;
    for client in &everyone {
        let sdp = client.last_hub_offer();
        let candidates: Vec<&str> = sdp
            .lines()
            .filter(|l| l.starts_with("a=candidate:") && l.contains(" udp "))
            .collect();
        assert!(
            !candidates.is_empty(),
            "{}: no UDP candidate in the hub's offer\n{sdp}",
            client.label()
        );
        for candidate in candidates {
            let fields: Vec<&str> = candidate.split_whitespace().collect();
            assert_eq!(
                fields.get(5).and_then(|p| p.parse::<u16>().ok()),
                Some(media.port()),
                "{}: a candidate not on the one port {media}: {candidate}",
                client.label()
            );
        }
        ufrag = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned);
    }
    let ufrag = ufrag.expect("the hub's offer names its ice-ufrag");

    // STUN binding requests for one peer from many sources: those the kernel gives to the
    // other worker's socket are handed over, so the counter moves whatever the real sites'
    // hashes were.
    let probes: Vec<UdpSocket> = (0..PROBES)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("probe socket"))
        .collect();
    for probe in &probes {
        probe
            .send_to(&binding_request(&format!("{ufrag}:probe")), media)
            .expect("probe sent");
    }
    let handed = wait::poll(Duration::from_secs(10), || async {
        let metrics = http::get(addr, "/metrics").await.text();
        match metric(&metrics, "diemcau_datagrams_handed_over_total") {
            Some(n) if n > 0 => Ok(n),
            other => Err(format!("handed over: {other:?}\n{metrics}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no datagram was handed over: {e}"));
    let metrics = http::get(addr, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, "diemcau_datagrams_handoff_dropped_total"),
        Some(0),
        "{metrics}"
    );

    // Media keeps flowing to everyone after the probes.
    let before: Vec<u64> = pairs
        .iter()
        .map(|(c, p)| c.remote_track(p, "video").map_or(0, |t| t.packets()))
        .collect();
    wait::until_explained(
        "video to keep flowing after the probes",
        Duration::from_secs(10),
        || {
            pairs
                .iter()
                .zip(&before)
                .all(|((c, p), b)| c.remote_track(p, "video").map_or(0, |t| t.packets()) > b + 20)
        },
        || reports(&everyone),
    )
    .await;
    for client in &everyone {
        assert!(
            client.hub_errors().is_empty() && client.failures().is_empty(),
            "{} saw errors\n{}",
            client.label(),
            client.report()
        );
    }
    eprintln!("{handed} datagrams handed over between the two workers");

    // Both workers' sends are counted: datagrams, and the messages they left in (a run to
    // one site in one message), never more messages than datagrams. Every forwarded packet
    // is a datagram, and so are the RTCP reports and feedback, far more than the few packets
    // a pacer may hold at any moment.
    let metrics = http::get(addr, "/metrics").await.text();
    let sent = metric(&metrics, "diemcau_datagrams_sent_total");
    let messages = metric(&metrics, "diemcau_datagram_messages_sent_total");
    let forwarded = metric(&metrics, "diemcau_packets_forwarded_total");
    assert!(
        matches!((sent, messages, forwarded), (Some(s), Some(m), Some(f)) if f > 0 && m > 0 && m <= s && s >= f),
        "datagrams sent {sent:?} in {messages:?} messages, {forwarded:?} packets forwarded\n{metrics}"
    );

    for c in sites {
        c.close().await;
    }
    studio.close().await;
    tokio::time::timeout(Duration::from_secs(10), hub.shutdown())
        .await
        .expect("hub shuts down within 10 s");
}

/// Joins and publishes; panics with the transcript when that fails.
async fn join(
    addr: SocketAddr,
    meeting: &http::TestMeeting,
    site: Option<&str>,
    name: &str,
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
    WebrtcClient::connect(addr, opts)
        .await
        .unwrap_or_else(|e| panic!("{role} {name:?} could not join and publish: {e}"))
}

/// What of `pairs`' media has not come yet: a line per track missing.
fn missing_media(pairs: &[(&WebrtcClient, String)]) -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    for (client, publisher) in pairs {
        for kind in ["video", "audio"] {
            let who = client.label();
            match client.remote_track(publisher, kind) {
                None => missing.push(format!("{who}: no {kind} track of {publisher:?}")),
                Some(t) if t.packets() < MIN_PACKETS => missing.push(format!(
                    "{who}: {kind} of {publisher:?}: {} of {MIN_PACKETS} packets",
                    t.packets()
                )),
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

/// A STUN binding request with only a USERNAME (no integrity: the peer refuses it, but the
/// hub must first take it to the peer's worker).
fn binding_request(username: &str) -> Vec<u8> {
    let mut attribute = Vec::new();
    attribute.extend_from_slice(&0x0006u16.to_be_bytes());
    attribute.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attribute.extend_from_slice(username.as_bytes());
    while attribute.len() % 4 != 0 {
        attribute.push(0);
    }
    let mut message = vec![0x00, 0x01];
    message.extend_from_slice(&(attribute.len() as u16).to_be_bytes());
    message.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    message.extend_from_slice(&rand_id());
    message.extend_from_slice(&attribute);
    message
}

fn rand_id() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&nanos.to_be_bytes());
    id
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

fn reports(clients: &[&WebrtcClient]) -> String {
    clients
        .iter()
        .map(|c| c.report())
        .collect::<Vec<_>>()
        .join("\n")
}
