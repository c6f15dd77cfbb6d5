//! No client locks everyone out: a hub started with 1,024 open files (a common service
//! default) holds 1,200 idle connections and a few slow header drips from one address while
//! another address still gets `/api/health` within a second and joins a meeting over the
//! WebSocket; the idle and slow connections are closed by the (shortened) timeouts, and the
//! refusals and timeouts show in `/metrics`. Over HTTPS (the default) and plain HTTP; and with
//! the per-address cap lifted, the cap in all keeps the hub within its descriptors.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/limited_hub.rs"]
mod limited_hub;
#[path = "common/signaling.rs"]
mod signaling;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use limited_hub::LimitedHub;

/// The client that floods.
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Another client, behind another address.
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const OPEN_FILES: u64 = 1024;
const IDLE_CONNECTIONS: usize = 1200;
const SLOW_HEADERS: usize = 10;

/// The timeouts shortened for the test, in seconds.
const TIMEOUT_ARGS: [&str; 8] = [
    "--tls-handshake-timeout-seconds",
    "2",
    "--request-header-timeout-seconds",
    "2",
    "--request-timeout-seconds",
    "2",
    "--http-idle-timeout-seconds",
    "3",
];

/// How long the test waits for the hub to close what its timeouts cut.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hub_outlasts_idle_and_slow_connections_from_one_address() {
    outlasts_idle_and_slow_connections(false, "tls_handshake").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_hub_outlasts_idle_and_slow_connections_from_one_address() {
    outlasts_idle_and_slow_connections(true, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_in_all_keeps_the_hub_within_its_open_files() {
    raise_own_open_file_limit();
    let data = data_dir("all");
    let mut args = TIMEOUT_ARGS.to_vec();
    args.extend(["--max-http-connections-per-address", "5000"]);
    let hub = limited_hub::spawn(&data, OPEN_FILES, true, &args);

    let idle = open_idle(&hub, IDLE_CONNECTIONS).await;
    let closed = count_closed(idle, Instant::now() + CLOSE_BOUND).await;
    assert_eq!(closed, IDLE_CONNECTIONS, "every idle connection is closed");

    let health = hub
        .get_from(FLOODER, "/api/health")
        .await
        .expect("the hub answers after the flood");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = metrics(&hub).await;
    assert!(
        counter(
            &metrics,
            "diemcau_connections_refused_total{reason=\"total\"}"
        ) > 0,
        "connections over the cap in all are refused: {metrics}"
    );
    assert!(
        counter(
            &metrics,
            "diemcau_connections_timed_out_total{stage=\"idle\"}"
        ) > 0,
        "{metrics}"
    );
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}

async fn outlasts_idle_and_slow_connections(plain_http: bool, idle_stage: &str) {
    raise_own_open_file_limit();
    let data = data_dir(if plain_http { "plain" } else { "https" });
    let join_code = prepare_meeting(&data);
    let hub = limited_hub::spawn(&data, OPEN_FILES, plain_http, &TIMEOUT_ARGS);

    let mut drips = Vec::new();
    for _ in 0..SLOW_HEADERS {
        let io = hub.connect_from(FLOODER).await.expect("connect");
        drips.push(tokio::spawn(drip_a_request_head(io)));
    }
    let io = hub.connect_from(FLOODER).await.expect("connect");
    let slow_body = tokio::spawn(drip_a_request_body(io));
    let idle = open_idle(&hub, IDLE_CONNECTIONS).await;

    // The flood is open: the neighbour is still served, promptly.
    for _ in 0..5 {
        let health = tokio::time::timeout(
            Duration::from_secs(1),
            hub.get_from(NEIGHBOUR, "/api/health"),
        )
        .await
        .expect("/api/health answers within a second")
        .expect("connect");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    }
    let io = hub.connect_from(NEIGHBOUR).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", io)
        .await
        .expect("the WebSocket opens");
    ws.send(Message::Text(
        json!({"type": "join", "code": join_code})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "joined", "{reply}");

    for drip in drips {
        let sent = drip.await.expect("the drip ends");
        assert!(
            sent.cut && !sent.answered,
            "a slow request head is cut before it is complete: {sent:?}"
        );
    }
    let answer = slow_body.await.expect("the body drip ends");
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
        "a slow request body is answered 408: {answer}"
    );
    let closed = count_closed(idle, Instant::now() + CLOSE_BOUND).await;
    assert_eq!(closed, IDLE_CONNECTIONS, "every idle connection is closed");

    let metrics = metrics(&hub).await;
    assert!(
        counter(
            &metrics,
            "diemcau_connections_timed_out_total{stage=\"request\"}"
        ) >= 1,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            "diemcau_connections_refused_total{reason=\"per_address\"}"
        ) > 0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            &format!("diemcau_connections_timed_out_total{{stage=\"{idle_stage}\"}}")
        ) > 0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            "diemcau_connections_timed_out_total{stage=\"request_header\"}"
        ) >= SLOW_HEADERS as u64,
        "{metrics}"
    );
    // The site's WebSocket outlives the HTTP timeouts, and the flooder may come back.
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    let health = hub.get_from(FLOODER, "/api/health").await.expect("connect");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}

/// What became of a request head sent one byte at a time.
#[derive(Debug)]
struct Drip {
    /// The hub closed the connection.
    cut: bool,
    /// The hub answered (the whole head got through).
    answered: bool,
}

/// Sends `GET /api/health` one byte every 250 ms (12 s for the whole head) and reads what
/// comes back meanwhile.
async fn drip_a_request_head(io: Box<dyn limited_hub::Io>) -> Drip {
    let head = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sent = 0;
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => {
                return match read {
                    Ok(0) | Err(_) => Drip { cut: true, answered: false },
                    Ok(_) => Drip { cut: false, answered: true },
                };
            }
            _ = tick.tick(), if sent < head.len() => {
                if writer.write_all(&head[sent..=sent]).await.is_err() {
                    return Drip { cut: true, answered: false };
                }
                sent += 1;
            }
            () = tokio::time::sleep_until(deadline) => {
                return Drip { cut: false, answered: false };
            }
        }
    }
}

/// Sends a login whose 60-byte body comes one byte every 250 ms (15 s in all); returns what
/// the hub answers meanwhile.
async fn drip_a_request_body(io: Box<dyn limited_hub::Io>) -> String {
    let body = [b'x'; 60];
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut reader, mut writer) = tokio::io::split(io);
    writer
        .write_all(head.as_bytes())
        .await
        .expect("write the head");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if sent < body.len() => {
                if writer.write_all(&body[sent..=sent]).await.is_err() {
                    break;
                }
                sent += 1;
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// `count` TCP connections from the flooder that send nothing.
async fn open_idle(hub: &LimitedHub, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(hub.tcp_from(FLOODER).await.expect("TCP connect"));
    }
    idle
}

/// How many of `connections` the hub closed before `deadline`.
async fn count_closed(connections: Vec<TcpStream>, deadline: Instant) -> usize {
    let mut closed = 0;
    for mut connection in connections {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout_at(deadline, connection.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    closed
}

/// The hub's next reply: meeting state pushed to everyone (`floor`, `console`) is skipped.
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = signaling::next_text(ws, signaling::REPLY_TIMEOUT)
            .await
            .expect("a message within 10 s");
        if message["type"] != "floor" && message["type"] != "console" {
            return message;
        }
    }
}

async fn metrics(hub: &LimitedHub) -> String {
    hub.get_from(NEIGHBOUR, "/metrics").await.expect("connect")
}

/// The value of the sample `name` (with its labels) in a `/metrics` reply; 0 when absent.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// A meeting inviting site 2269, made in the data directory before the hub starts; returns
/// the site's join code.
fn prepare_meeting(data: &Path) -> String {
    let store = diemcau::store::Store::open(data).expect("the data directory opens");
    let sites = diemcau::directory::parse_csv(
        "admin_code,name,level,parent_code,parent_name,delegates\n\
         2269,Xã Thượng Lâm,xã,8,Tuyên Quang,40\n"
            .as_bytes(),
    )
    .expect("a directory");
    store.import_sites(&sites).expect("import");
    let now = diemcau::store::now_millis();
    let view = store
        .create_meeting(&diemcau::store::NewMeeting {
            title: "Họp".to_owned(),
            scheduled_start: now,
            scheduled_end: now + 2 * 3_600_000,
            studio_name: "Studio UBND tỉnh".to_owned(),
            sites: vec![diemcau::store::InvitedSite {
                code: "2269".to_owned(),
                expected_delegates: None,
            }],
            recording: None,
        })
        .expect("a meeting");
    view.site_codes["2269"].to_string()
}

fn data_dir(name: &str) -> PathBuf {
    let data = std::env::temp_dir().join(format!(
        "diemcau-connection-limits-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("a data directory");
    data
}

/// This test process opens more than a thousand connections itself.
fn raise_own_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("the open-file limit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the open-file limit");
    assert!(
        hard > 3 * (IDLE_CONNECTIONS as u64 + 100),
        "the test needs a hard open-file limit above {}",
        3 * (IDLE_CONNECTIONS + 100)
    );
}
