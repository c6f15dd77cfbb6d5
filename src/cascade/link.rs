//! The child's end of the node link: connect to the parent's `GET /node` with the node
//! credential, keep the link up with pings (which measure its round trip), and come back by
//! itself after a drop, with a growing backoff (1 s doubling to 30 s; 1 s while a
//! national meeting is in progress here, with jitter, so that 34
//! provinces do not all knock at once when the root returns). A refused credential (unknown,
//! revoked) or another protocol version is logged as an error and tried again only after
//! [`AFTER_REFUSAL`]: an operator has to act, and a tight loop would only fill both logs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{NODE_PROTOCOL, NodeMessage, PING_INTERVAL, PROTOCOL_HEADER};
use crate::store::now_millis;

/// The first wait after a drop; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait while a national meeting is in progress here: its communes wait for the
/// national studio, which comes back within seconds of the link.
const MAX_BACKOFF_IN_MEETING: Duration = Duration::from_secs(1);
/// The wait after the parent refused the credential or the protocol.
pub const AFTER_REFUSAL: Duration = Duration::from_secs(300);
/// How often the child looks for attendance to send up while nothing is in flight.
const UPLOAD_INTERVAL: Duration = Duration::from_secs(1);
/// A batch not acknowledged within this time is sent again.
const UPLOAD_PATIENCE: Duration = Duration::from_secs(15);
/// A connection attempt (TCP, TLS and upgrade) that takes longer is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the parent is and how to prove who this hub is.
#[derive(Clone)]
pub struct ParentConfig {
    /// The parent's base URL as given (`https://tinh.example.vn:8443`).
    pub url: String,
    scheme: Scheme,
    host: String,
    port: u16,
    token: String,
    pin: Option<[u8; 32]>,
}

impl std::fmt::Debug for ParentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential.
        f.debug_struct("ParentConfig")
            .field("url", &self.url)
            .field("pinned", &self.pin.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl ParentConfig {
    /// Reads `--parent` and the credential (`--node-token-file`, else `DIEMCAU_NODE_TOKEN`).
    pub fn new(
        url: &str,
        token_file: Option<&std::path::Path>,
        pin: Option<&str>,
    ) -> Result<ParentConfig, String> {
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|e| format!("--parent {url:?} is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => {
                return Err(format!(
                    "--parent {url:?} must start with https:// (or http:// for a parent run with --plain-http)"
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--parent {url:?} names no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(match scheme {
            Scheme::Https => 443,
            Scheme::Http => 80,
        });
        let token = match token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the node credential {}: {e}", path.display()))?,
            None => std::env::var("DIEMCAU_NODE_TOKEN").map_err(|_| {
                "--parent needs this hub's node credential: --node-token-file FILE or the \
                 environment variable DIEMCAU_NODE_TOKEN (the parent's operator makes it with \
                 diemcau node add)"
                    .to_owned()
            })?,
        };
        let token = token.trim().to_owned();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(
                "the node credential is empty or not the one diemcau node add printed".to_owned(),
            );
        }
        let pin = pin.map(super::pinning::parse_fingerprint).transpose()?;
        if pin.is_some() && scheme == Scheme::Http {
            return Err("--parent-cert-sha256 needs an https:// parent".to_owned());
        }
        Ok(ParentConfig {
            url: url.trim_end_matches('/').to_owned(),
            scheme,
            host,
            port,
            token,
            pin,
        })
    }
}

/// The link's state as `/api/health` and `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    /// The parent refused the credential or the protocol; tried again after [`AFTER_REFUSAL`].
    Refused,
    /// The parent could not be reached, or the link dropped; tried again with backoff.
    Unreachable,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParentStatus {
    pub url: String,
    pub state: LinkState,
    /// This hub's node name, as the parent welcomed it.
    pub node: Option<String>,
    /// Since when the link is in this state (ms since the epoch).
    pub since: i64,
    pub rtt_ms: Option<u64>,
    /// Why it is not connected.
    pub error: Option<String>,
    /// Connection attempts since the hub started.
    pub attempts: u64,
    /// The national meetings this hub relays now, with what comes down the link for each.
    pub relays: Vec<RelayStatus>,
}

/// One relay as `/api/health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// The meeting's id on the parent.
    pub meeting: i64,
    /// Packets of the national studio received and published here since the relay started.
    pub packets: u64,
    /// Their rate over the last few seconds, in kbit/s (payload).
    pub bitrate_kbps: u64,
    /// Loss of the studio's video on the link, in percent, as this hub last reported it.
    pub loss_percent: Option<f32>,
    /// Packets of this hub's communes sent up to the parent: the one holding the floor, the
    /// small pictures the national chair shows, the sound of unmuted communes.
    pub floor_up_packets: u64,
    /// Communes sent up now.
    pub up_sites: usize,
    /// Packets of communes not sent up for want of a free upward slot (32 at once).
    pub up_dropped_packets: u64,
    /// Packets of a site holding the floor elsewhere in the tree, published here.
    pub floor_down_packets: u64,
}

/// The link's state, shared with the web handlers.
#[derive(Debug, Clone, Default)]
pub struct ParentLink(Arc<Mutex<Option<ParentStatus>>>);

impl ParentLink {
    fn lock(&self) -> MutexGuard<'_, Option<ParentStatus>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, when this hub has a parent.
    pub fn status(&self) -> Option<ParentStatus> {
        self.lock().clone()
    }

    fn set(&self, state: LinkState, error: Option<String>) {
        if let Some(status) = self.lock().as_mut() {
            if status.state != state {
                status.since = now_millis();
            }
            status.state = state;
            status.error = error;
            if state != LinkState::Connected {
                status.rtt_ms = None;
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut ParentStatus)) {
        if let Some(status) = self.lock().as_mut() {
            change(status);
        }
    }
}

/// Why an attempt failed.
enum Failure {
    Refused(String),
    Unreachable(String),
}

/// Keeps the link to the parent up for as long as the hub runs.
pub async fn run(config: ParentConfig, link: ParentLink, hub: Arc<crate::hub::Hub>) {
    *link.lock() = Some(ParentStatus {
        url: config.url.clone(),
        state: LinkState::Connecting,
        node: None,
        since: now_millis(),
        rtt_ms: None,
        error: None,
        attempts: 0,
        relays: Vec::new(),
    });
    let mut backoff = MIN_BACKOFF;
    loop {
        link.update(|s| s.attempts += 1);
        let failure = match tokio::time::timeout(CONNECT_TIMEOUT, open(&config)).await {
            Err(_) => Failure::Unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")),
            Ok(Err(failure)) => failure,
            Ok(Ok(socket)) => {
                backoff = MIN_BACKOFF;
                serve(socket, &config, &link, &hub).await
            }
        };
        super::mirror::note_centre(&hub, false).await;
        link.update(|s| s.relays.clear());
        let wait = match failure {
            Failure::Refused(why) => {
                tracing::error!(parent = %config.url, "the parent refused this hub's node link: {why}; trying again in {AFTER_REFUSAL:?}");
                link.set(LinkState::Refused, Some(why));
                AFTER_REFUSAL
            }
            Failure::Unreachable(why) => {
                tracing::warn!(parent = %config.url, "the parent is not reachable: {why}; trying again in about {backoff:?}");
                link.set(LinkState::Unreachable, Some(why));
                let cap = if in_meeting(&hub).await {
                    MAX_BACKOFF_IN_MEETING
                } else {
                    MAX_BACKOFF
                };
                backoff = backoff.min(cap);
                let wait = jittered(backoff);
                backoff = (backoff * 2).min(cap);
                wait
            }
        };
        tokio::time::sleep(wait).await;
        link.set(LinkState::Connecting, None);
    }
}

/// Whether a national meeting is in progress on this hub (its part of one).
async fn in_meeting(hub: &Arc<crate::hub::Hub>) -> bool {
    let store = hub.store().clone();
    store
        .blocking(|s: &crate::store::Store| super::mirror::in_progress(s))
        .await
        .is_ok_and(|meetings| !meetings.is_empty())
}

/// `wait` give or take a fifth, at random.
fn jittered(wait: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let fifth = wait / 5;
    wait - fifth + fifth * 2 * u32::from(byte[0]) / 255
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn open(config: &ParentConfig) -> Result<Socket, Failure> {
    let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let (stream, ws_scheme): (Box<dyn Io>, &str) = match config.scheme {
        Scheme::Http => (Box::new(tcp), "ws"),
        Scheme::Https => {
            let tls = super::pinning::client_config(config.pin).map_err(Failure::Refused)?;
            let name = rustls::pki_types::ServerName::try_from(config.host.clone())
                .map_err(|e| Failure::Refused(format!("the parent's host name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&format!("TLS: {e}")))?;
            (Box::new(stream), "wss")
        }
    };
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let mut request = format!("{ws_scheme}://{host}:{}/node", config.port)
        .into_client_request()
        .map_err(|e| Failure::Refused(format!("--parent: {e}")))?;
    let headers = request.headers_mut();
    let bearer = format!("Bearer {}", config.token)
        .parse()
        .map_err(|_| Failure::Refused("the node credential is not valid text".to_owned()))?;
    headers.insert(axum::http::header::AUTHORIZATION, bearer);
    headers.insert(
        PROTOCOL_HEADER,
        axum::http::HeaderValue::from(NODE_PROTOCOL),
    );
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
            let said = body
                .as_ref()
                .and_then(|b| {
                    let error = b.get("error")?;
                    let (message, code) = (error.get("message")?, error.get("code")?);
                    Some(format!("{} ({})", message.as_str()?, code.as_str()?))
                })
                .unwrap_or_else(|| status.to_string());
            if matches!(status.as_u16(), 400 | 401 | 403) {
                Err(Failure::Refused(said))
            } else {
                Err(Failure::Unreachable(format!("HTTP {status}: {said}")))
            }
        }
        Err(e) => Err(unreachable(&e)),
    }
}

/// Runs an open link until it drops; says why.
async fn serve(
    mut socket: Socket,
    config: &ParentConfig,
    link: &ParentLink,
    hub: &Arc<crate::hub::Hub>,
) -> Failure {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = tokio::time::Instant::now();
    // Attendance goes up one batch at a time; the next leaves when the parent stored this one.
    let mut upload = tokio::time::interval(UPLOAD_INTERVAL);
    // The batch sent and not yet stored: its meeting, how far it covers, when it left. Without
    // an answer within UPLOAD_PATIENCE it is sent again (the parent stores each event once).
    let mut in_flight: Option<(i64, u64, tokio::time::Instant)> = None;
    // The national meetings in progress, and the relay of each that runs.
    let mut relays = Relays::new(config).await;
    loop {
        tokio::select! {
            Some(message) = relays.up.recv() => {
                if let NodeMessage::RelayLeave { meeting } = &message {
                    relays.ended(*meeting);
                }
                if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                    return Failure::Unreachable("the link dropped".to_owned());
                }
            }
            _ = upload.tick(), if in_flight.is_none_or(|(_, _, sent)| sent.elapsed() > UPLOAD_PATIENCE) => {
                let store = hub.store().clone();
                match store.blocking(|s: &crate::store::Store| super::mirror::next_batch(s)).await {
                    Ok(Some((meeting, message))) => {
                        if let NodeMessage::Events { through, .. } = &message {
                            in_flight = Some((meeting, *through, tokio::time::Instant::now()));
                        }
                        if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                            return Failure::Unreachable("the link dropped".to_owned());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!("attendance to send up not read: {e}"),
                }
            }
            frame = socket.next() => {
                let Some(Ok(frame)) = frame else {
                    return Failure::Unreachable("the link dropped".to_owned());
                };
                last_heard = tokio::time::Instant::now();
                let Message::Text(text) = frame else {
                    if let Message::Close(_) = frame {
                        return Failure::Unreachable("the parent closed the link".to_owned());
                    }
                    continue;
                };
                match serde_json::from_str::<NodeMessage>(text.as_str()) {
                    Ok(NodeMessage::Welcome { protocol, node, provinces }) => {
                        tracing::info!(parent = %config.url, %node, ?provinces, protocol, "linked to the parent");
                        link.update(|s| s.node = Some(node));
                        link.set(LinkState::Connected, None);
                        super::mirror::note_centre(hub, true).await;
                    }
                    Ok(NodeMessage::Pong { at }) => {
                        let rtt = u64::try_from(now_millis() - at).unwrap_or(0);
                        link.update(|s| s.rtt_ms = Some(rtt));
                    }
                    Ok(NodeMessage::Ping { at }) => {
                        let pong = NodeMessage::Pong { at };
                        if socket.send(Message::Text(pong.to_json().into())).await.is_err() {
                            return Failure::Unreachable("the link dropped".to_owned());
                        }
                    }
                    Ok(NodeMessage::Meetings { meetings }) => {
                        match super::mirror::apply(hub, meetings).await {
                            Ok(in_progress) => relays.follow(hub, in_progress),
                            Err(e) => tracing::error!(parent = %config.url, "the national meetings not followed: {e}"),
                        }
                    }
                    Ok(NodeMessage::RelayDown { meeting, message }) => relays.deliver(meeting, *message),
                    Ok(NodeMessage::Stored { meeting, through }) => {
                        if in_flight.is_some_and(|(m, covers, _)| m == meeting && through >= covers) {
                            in_flight = None;
                            upload.reset_immediately();
                        }
                        let store = hub.store().clone();
                        let noted = store
                            .blocking(move |s: &crate::store::Store| s.set_acked(meeting, through))
                            .await;
                        if let Err(e) = noted {
                            tracing::error!("the parent's mark not noted: {e}");
                        }
                    }
                    Ok(NodeMessage::Refused { code, message }) => {
                        return Failure::Refused(format!("{message} ({code})"));
                    }
                    Ok(other) => tracing::debug!(parent = %config.url, ?other, "unexpected message from the parent"),
                    Err(e) => tracing::warn!(parent = %config.url, "malformed message from the parent: {e}"),
                }
            }
            _ = ping.tick() => {
                // A relay that stopped (its media failed) is started again.
                relays.restart(hub);
                let statuses = relays.statuses();
                link.update(|s| s.relays = statuses);
                if last_heard.elapsed() > PING_INTERVAL * 3 {
                    return Failure::Unreachable(format!(
                        "no word from the parent for {:?}",
                        PING_INTERVAL * 3
                    ));
                }
                let message = NodeMessage::Ping { at: now_millis() };
                if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                    return Failure::Unreachable("the link dropped".to_owned());
                }
            }
        }
    }
}

/// The relays of the national meetings in progress, while the link is up (dropped with it).
struct Relays {
    parent_ip: Option<std::net::IpAddr>,
    wanted: Vec<super::mirror::InProgress>,
    running: std::collections::HashMap<i64, super::relay::RelayHandle>,
    /// Each relay's bytes at the last look, and when: for its bitrate.
    last_seen: std::collections::HashMap<i64, (u64, tokio::time::Instant)>,
    up_tx: tokio::sync::mpsc::UnboundedSender<NodeMessage>,
    /// What the relays say to the parent.
    up: tokio::sync::mpsc::UnboundedReceiver<NodeMessage>,
}

impl Relays {
    async fn new(config: &ParentConfig) -> Relays {
        let parent_ip = match tokio::net::lookup_host((config.host.as_str(), config.port)).await {
            Ok(mut addresses) => addresses.next().map(|a| a.ip()),
            Err(e) => {
                tracing::warn!(parent = %config.url, "the parent's address not resolved: {e}; no media relay");
                None
            }
        };
        let (up_tx, up) = tokio::sync::mpsc::unbounded_channel();
        Relays {
            parent_ip,
            wanted: Vec::new(),
            running: std::collections::HashMap::new(),
            last_seen: std::collections::HashMap::new(),
            up_tx,
            up,
        }
    }

    /// The meetings in progress are these: relays start for new ones and stop for the others.
    fn follow(&mut self, hub: &Arc<crate::hub::Hub>, in_progress: Vec<super::mirror::InProgress>) {
        self.running
            .retain(|meeting, _| in_progress.iter().any(|m| m.parent == *meeting));
        self.wanted = in_progress;
        self.restart(hub);
    }

    /// Starts the relay of every meeting in progress that has none.
    fn restart(&mut self, hub: &Arc<crate::hub::Hub>) {
        let Some(parent_ip) = self.parent_ip else {
            return;
        };
        for meeting in &self.wanted {
            if self.running.contains_key(&meeting.parent) {
                continue;
            }
            let spec = super::relay::RelaySpec {
                parent_meeting: meeting.parent,
                local_meeting: meeting.local,
                studio_name: meeting.studio_name.clone(),
                parent_ip,
            };
            tracing::info!(parent_meeting = meeting.parent, meeting = %meeting.local, "relaying the national meeting to this province's communes");
            let handle = super::relay::start(hub.clone(), spec, self.up_tx.clone());
            self.running.insert(meeting.parent, handle);
        }
    }

    fn deliver(&self, meeting: i64, message: diemcau_signaling::ServerMessage) {
        if let Some(relay) = self.running.get(&meeting) {
            relay.deliver(message);
        }
    }

    /// Each running relay's figures, with its bitrate since the last call.
    fn statuses(&mut self) -> Vec<RelayStatus> {
        let now = tokio::time::Instant::now();
        let mut out: Vec<RelayStatus> = self
            .running
            .iter()
            .map(|(meeting, relay)| {
                let figures = relay.figures();
                let bitrate_kbps = match self.last_seen.get(meeting) {
                    Some((bytes, at)) if now > *at => {
                        let seconds = now.duration_since(*at).as_secs_f64();
                        (figures.bytes.saturating_sub(*bytes) as f64 * 8.0 / 1000.0 / seconds)
                            as u64
                    }
                    _ => 0,
                };
                self.last_seen.insert(*meeting, (figures.bytes, now));
                RelayStatus {
                    meeting: *meeting,
                    packets: figures.packets,
                    bitrate_kbps,
                    loss_percent: figures.loss.map(|l| (l * 1000.0).round() / 10.0),
                    floor_up_packets: figures.floor_up_packets,
                    floor_down_packets: figures.floor_down_packets,
                    up_sites: figures.up_sites,
                    up_dropped_packets: figures.up_dropped_packets,
                }
            })
            .collect();
        self.last_seen
            .retain(|meeting, _| self.running.contains_key(meeting));
        out.sort_by_key(|r| r.meeting);
        out
    }

    /// A relay stopped by itself.
    fn ended(&mut self, meeting: i64) {
        self.running.remove(&meeting);
    }
}
