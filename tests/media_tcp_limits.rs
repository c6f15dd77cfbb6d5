//! The hub's TCP media port under abuse: broken RFC 4571 framing, a first packet that is not
//! a STUN request for a peer, a connection that never speaks and a thousand idle connections
//! are each closed within the configured limits, while a site on UDP keeps receiving the
//! studio.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use webrtc_client::{ClientOptions, WebrtcClient};

const PER_ADDRESS: usize = 300;
const IN_ALL: usize = 400;
const FLOOD: usize = 1000;
/// How long the hub waits for a connection's first valid STUN request.
const ICE_TIMEOUT: Duration = Duration::from_secs(3);
/// Well under [`ICE_TIMEOUT`]: broken framing closes a connection at once, not at the timeout.
const AT_ONCE: Duration = Duration::from_millis(1500);

/// Whether the hub closes `stream` within `limit` (end of stream or a reset).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Sends `bytes` on a new connection and tells whether the hub then closes it.
fn closes_after(tcp: SocketAddr, bytes: &[u8], limit: Duration) -> bool {
    let mut stream = TcpStream::connect(tcp).expect("connect to the media TCP port");
    stream.write_all(bytes).expect("write");
    closed_within(&mut stream, limit)
}

/// A connection from `source` (a loopback address of its own) to `tcp`.
fn connect_from(source: std::net::IpAddr, tcp: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&tcp.into())?;
    Ok(socket.into())
}

/// A STUN binding request whose USERNAME is `username`, framed (RFC 4571); no integrity, so
/// no peer's ICE ever takes it.
fn framed_binding_request(username: &str) -> Vec<u8> {
    let mut attribute = vec![0x00, 0x06];
    attribute.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attribute.extend_from_slice(username.as_bytes());
    while attribute.len() % 4 != 0 {
        attribute.push(0);
    }
    let mut message = vec![0x00, 0x01];
    message.extend_from_slice(&(attribute.len() as u16).to_be_bytes());
    message.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    message.extend_from_slice(&[7; 12]);
    message.extend_from_slice(&attribute);
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    framed
}

fn packets(client: &WebrtcClient, stream: &str, kind: &str) -> u64 {
    client.remote_track(stream, kind).map_or(0, |t| t.packets())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_idle_tcp_connections_are_closed_while_udp_media_flows() {
    let mut config = diemcau::Config::for_tests();
    config.media_tcp_max_per_address = PER_ADDRESS;
    config.media_tcp_max_connections = IN_ALL;
    config.media_tcp_ice_timeout_seconds = ICE_TIMEOUT.as_secs();
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp", &[("2269", "Xã Thượng Lâm")], true).await;
    let tcp = hub.media_tcp_addresses()[0];

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
    .unwrap_or_else(|e| panic!("the site joins: {e}"));
    for c in [&studio, &site] {
        c.wait_connected(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", c.label()));
    }
    studio.start_media().await.expect("studio media starts");
    let studio_id = studio.participant_id.clone();
    wait::until(
        "the site receives the studio",
        Duration::from_secs(15),
        || packets(&site, &studio_id, "video") > 30,
    )
    .await;

    // The hub's ufrag for the site, from its offers: a connection naming it goes to the site's
    // worker, which then judges its frames.
    let offer = site.last_hub_offer();
    let ufrag = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap_or_else(|| panic!("no ufrag in the hub's offer:\n{offer}"))
        .to_owned();

    // Each abuse on its own connection, checked off the async runtime (blocking sockets).
    let abuse = tokio::task::spawn_blocking(move || {
        let named = framed_binding_request(&format!("{ufrag}:intruder"));
        let mut named_then_empty = named.clone();
        named_then_empty.extend_from_slice(&[0, 0]);
        let limit = ICE_TIMEOUT + Duration::from_secs(3);
        let mut oversized = ((diemcau::media::MAX_FRAME + 1) as u16)
            .to_be_bytes()
            .to_vec();
        oversized.extend_from_slice(&[0; 64]);
        let mut garbage = 20u16.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xAB; 20]);
        // A well-formed STUN binding request naming a ufrag no peer has.
        let mut stranger = vec![0x00, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42];
        stranger.extend_from_slice(&[9; 12]);
        stranger.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
        stranger.extend_from_slice(b"nobody:x");
        let mut framed_stranger = (stranger.len() as u16).to_be_bytes().to_vec();
        framed_stranger.extend_from_slice(&stranger);
        let verdicts = [
            ("an empty frame", closes_after(tcp, &[0, 0, 1, 2], AT_ONCE)),
            ("an oversized frame", closes_after(tcp, &oversized, AT_ONCE)),
            (
                "a first packet that is not STUN",
                closes_after(tcp, &garbage, AT_ONCE),
            ),
            (
                "a STUN request for no peer",
                closes_after(tcp, &framed_stranger, AT_ONCE),
            ),
            (
                "a connection that never speaks",
                closes_after(tcp, &[], limit),
            ),
            // Handed to the site's worker, which closes it on its own.
            (
                "an empty frame after a request naming a peer",
                closes_after(tcp, &named_then_empty, AT_ONCE),
            ),
            (
                "a request naming a peer that its ICE never takes",
                closes_after(tcp, &named, limit),
            ),
            (
                "half a frame, then silence",
                closes_after(tcp, &[0, 100, 1], limit),
            ),
        ];
        for (what, closed) in verdicts {
            assert!(closed, "the hub closes {what}");
        }

        // A thousand idle connections from one address, then more from a second one.
        let mut held: Vec<TcpStream> = (0..FLOOD)
            .filter_map(|_| TcpStream::connect(tcp).ok())
            .collect();
        // The hub holds at most its per-address cap from one address: it has closed the rest
        // (the last ones a moment after their connect returned, once its listener took them;
        // well before the ICE timeout would close the others).
        let mut closed = vec![false; held.len()];
        for _ in 0..20 {
            for (stream, closed) in held.iter().zip(closed.iter_mut()).filter(|(_, c)| !**c) {
                stream.set_nonblocking(true).expect("nonblocking");
                let mut byte = [0u8; 1];
                let mut stream: &TcpStream = stream;
                *closed = match stream.read(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != ErrorKind::WouldBlock,
                };
            }
            if closed.iter().filter(|c| **c).count() >= FLOOD - PER_ADDRESS {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let closed_by_hub = closed.iter().filter(|c| **c).count();
        let second: std::net::IpAddr = "127.0.0.2".parse().expect("address");
        held.extend((0..PER_ADDRESS).filter_map(|_| connect_from(second, tcp).ok()));
        (held, closed_by_hub)
    });

    // While the flood lasts, the hub never holds more than its caps.
    let mut most = 0;
    while !abuse.is_finished() {
        most = most.max(hub.media_tcp_connections());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (held, closed_by_hub) = abuse.await.expect("abuse checks");
    assert!(
        most <= IN_ALL,
        "at most {IN_ALL} TCP media connections at once, saw {most}"
    );
    assert!(
        closed_by_hub >= FLOOD - PER_ADDRESS,
        "of {FLOOD} idle connections from one address the hub closed only {closed_by_hub}"
    );
    let open_now = hub.media_tcp_connections();
    assert!(
        open_now <= IN_ALL,
        "after the flood: {open_now} open, over the cap of {IN_ALL}"
    );
    // The operator sees the refusals on /metrics.
    let metrics = http::get(addr, "/metrics").await.text();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("diemcau_media_tcp_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no diemcau_media_tcp_refused_total in /metrics:\n{metrics}"));
    assert!(
        refused > 0,
        "/metrics counts no refused TCP media connection after {FLOOD} from one address"
    );
    assert!(
        metrics.contains("diemcau_media_tcp_connections "),
        "/metrics shows the TCP media connections open"
    );

    // Idle connections go at the ICE timeout; the UDP site never stopped receiving.
    let video_before = packets(&site, &studio_id, "video");
    wait::until(
        "every idle TCP connection to be closed",
        Duration::from_secs(15),
        || hub.media_tcp_connections() == 0,
    )
    .await;
    wait::until(
        "the UDP site to go on receiving the studio",
        Duration::from_secs(10),
        || packets(&site, &studio_id, "video") > video_before + 30,
    )
    .await;
    drop(held);

    site.close().await;
    studio.close().await;
    hub.shutdown().await;
}
