//! The parent's end of node links: `GET /node`, a WebSocket upgrade carrying the child's
//! credential (`Authorization: Bearer ...`) and its node protocol version. A missing, unknown or
//! revoked credential, or another protocol version, is refused before the upgrade with a JSON
//! body that says why; each refusal is logged and counted. An accepted link is welcomed, answers
//! pings, is dropped when silent, when the same node links again (the newer link wins) and when
//! its credential is revoked (checked every few seconds while it lives).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{NODE_PROTOCOL, NodeMessage, PING_INTERVAL, PROTOCOL_HEADER};
use crate::state::AppState;
use crate::store::{NodeRecord, Store, StoreError, now_millis};

/// The node links this hub holds, by node name, and the refusals it made.
#[derive(Debug)]
pub struct NodeLinks {
    links: Mutex<HashMap<String, LinkEntry>>,
    refused: AtomicU64,
    /// The hub is stopping: every link closes (going away), and none is accepted.
    stopping: AtomicBool,
    /// Bumped when a meeting is created, started or ended: every link sends its node's
    /// meetings again.
    meetings: tokio::sync::watch::Sender<u64>,
}

impl Default for NodeLinks {
    fn default() -> Self {
        NodeLinks {
            links: Mutex::default(),
            refused: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            meetings: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Clone)]
struct LinkEntry {
    /// Which link of this node is the current one: a newer link takes over.
    generation: u64,
    connected: bool,
    since: i64,
    rtt_ms: Option<u64>,
    address: String,
}

/// A node as `/api/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub provinces: Vec<String>,
    /// `connected`, `disconnected` (linked before, not now), `never_connected`, `revoked`.
    pub state: &'static str,
    /// Since when it is in that state (for links seen since the hub started).
    pub since: Option<i64>,
    pub rtt_ms: Option<u64>,
    pub address: Option<String>,
    /// What its relays receive from this hub (the national meetings' media), from the latest
    /// quality sample; absent while it relays nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<NodeMedia>,
}

/// The media down one node link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeMedia {
    /// Sent to the node's relays, in kbit/s.
    pub bitrate_kbps: u32,
    /// Loss the node's relays report, in ‰.
    pub loss_permille: u32,
    pub rtt_ms: u32,
}

impl NodeMedia {
    pub fn of(quality: diemcau_sfu::Quality) -> NodeMedia {
        NodeMedia {
            bitrate_kbps: quality.bitrate_out_kbps,
            loss_permille: quality.loss_permille,
            rtt_ms: quality.rtt_ms,
        }
    }
}

impl NodeLinks {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, LinkEntry>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hub stops: every link is closed within a moment, as going away (the children come
    /// back by themselves when it is up again).
    pub fn close_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A meeting was created, started or ended: the linked nodes get their meetings again.
    pub fn meetings_changed(&self) {
        self.meetings.send_modify(|version| *version += 1);
    }

    /// Links refused since the hub started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Links up now.
    pub fn connected(&self) -> usize {
        self.lock().values().filter(|l| l.connected).count()
    }

    /// Every node of `nodes` with the state of its link.
    pub fn status(&self, nodes: &[NodeRecord]) -> Vec<NodeStatus> {
        let links = self.lock();
        nodes
            .iter()
            .map(|node| {
                let link = links.get(&node.name);
                let state = match (node.revoked_at, link) {
                    (Some(_), _) => "revoked",
                    (None, Some(l)) if l.connected => "connected",
                    (None, Some(_)) => "disconnected",
                    (None, None) => "never_connected",
                };
                NodeStatus {
                    name: node.name.clone(),
                    provinces: node.provinces.clone(),
                    state,
                    since: link.map(|l| l.since),
                    rtt_ms: link.and_then(|l| l.rtt_ms),
                    address: link.map(|l| l.address.clone()),
                    media: None,
                }
            })
            .collect()
    }

    /// The round-trip times of the links up now, by node.
    pub fn round_trips(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .lock()
            .iter()
            .filter(|(_, l)| l.connected)
            .filter_map(|(name, l)| Some((name.clone(), l.rtt_ms?)))
            .collect();
        out.sort();
        out
    }

    fn open(&self, name: &str, address: String) -> u64 {
        let mut links = self.lock();
        let generation = links.get(name).map_or(1, |l| l.generation + 1);
        links.insert(
            name.to_owned(),
            LinkEntry {
                generation,
                connected: true,
                since: now_millis(),
                rtt_ms: None,
                address,
            },
        );
        generation
    }

    fn is_current(&self, name: &str, generation: u64) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|l| l.generation == generation)
    }

    fn measured(&self, name: &str, generation: u64, rtt_ms: u64) {
        if let Some(link) = self.lock().get_mut(name)
            && link.generation == generation
        {
            link.rtt_ms = Some(rtt_ms);
        }
    }

    fn closed(&self, name: &str, generation: u64) {
        if let Some(link) = self.lock().get_mut(name)
            && link.generation == generation
        {
            link.connected = false;
            link.since = now_millis();
            link.rtt_ms = None;
        }
    }
}

/// `GET /node`: a child hub's link.
pub async fn node_link(
    ws: WebSocketUpgrade,
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let address = crate::state::client_address(&app, peer, &headers);
    if app.node_links.is_stopping() {
        let body = serde_json::json!({"error": {
            "code": "hub_shutting_down",
            "message": "the hub is stopping; link again when it is back",
        }});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let node = match admit(&app, &headers).await {
        Ok(node) => node,
        Err((status, code, message)) => {
            app.node_links.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%address, code, "node link refused: {message}");
            let body = serde_json::json!({"error": {"code": code, "message": message}});
            return (status, axum::Json(body)).into_response();
        }
    };
    ws.on_upgrade(move |socket| serve(socket, app, node, address.to_string()))
}

type Refusal = (StatusCode, &'static str, String);

async fn admit(app: &AppState, headers: &HeaderMap) -> Result<NodeRecord, Refusal> {
    let protocol = headers
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    if protocol != Some(NODE_PROTOCOL) {
        return Err((
            StatusCode::BAD_REQUEST,
            "node_protocol_mismatch",
            format!(
                "this hub speaks node protocol {NODE_PROTOCOL}; the link said {protocol:?} \
                 (run the same version of diemcau on both hubs)"
            ),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or((
            StatusCode::UNAUTHORIZED,
            "node_credential_missing",
            "a node link needs its credential (Authorization: Bearer ...)".to_owned(),
        ))?
        .to_owned();
    let found = app
        .hub
        .store()
        .blocking(move |store: &Store| store.node_by_token(&crate::auth::token_hash(&token)))
        .await
        .map_err(|e: StoreError| {
            tracing::error!("node credential not checked: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "internal",
                "the hub could not check the credential; the link will be tried again".to_owned(),
            )
        })?;
    match found {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "node_credential_unknown",
            "this node credential is not known to this hub (ask its operator for one: \
             diemcau node add)"
                .to_owned(),
        )),
        Some(node) if node.revoked_at.is_some() => Err((
            StatusCode::FORBIDDEN,
            "node_credential_revoked",
            format!("the credential of node {} was revoked", node.name),
        )),
        Some(node) => Ok(node),
    }
}

/// Why a link ended.
enum End {
    Closed,
    Silent,
    Replaced,
    Revoked,
    HubStopping,
}

async fn serve(mut socket: WebSocket, app: Arc<AppState>, node: NodeRecord, address: String) {
    let name = node.name.clone();
    let generation = app.node_links.open(&name, address.clone());
    tracing::info!(node = %name, %address, "node linked");
    let welcome = NodeMessage::Welcome {
        protocol: NODE_PROTOCOL,
        node: name.clone(),
        provinces: node.provinces.clone(),
    };
    if socket
        .send(Message::Text(welcome.to_json().into()))
        .await
        .is_err()
    {
        app.node_links.closed(&name, generation);
        return;
    }
    let (mut seats, mut relay_outputs) =
        super::seats::NodeSeats::new(app.hub.clone(), node.clone(), address.parse().ok());
    let mut meetings = app.node_links.meetings.subscribe();
    meetings.mark_changed();
    let silence = PING_INTERVAL * 4;
    let mut last_heard = tokio::time::Instant::now();
    let recheck = app.node_recheck_interval;
    let mut next_check = tokio::time::Instant::now() + recheck;
    let mut next_ping = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let end = loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break End::Closed };
                last_heard = tokio::time::Instant::now();
                match frame {
                    Message::Text(text) => match serde_json::from_str::<NodeMessage>(text.as_str()) {
                        Ok(NodeMessage::Ping { at }) => {
                            let pong = NodeMessage::Pong { at };
                            if socket.send(Message::Text(pong.to_json().into())).await.is_err() {
                                break End::Closed;
                            }
                        }
                        Ok(NodeMessage::Pong { at }) => {
                            let rtt = u64::try_from(now_millis() - at).unwrap_or(0);
                            app.node_links.measured(&name, generation, rtt);
                        }
                        Ok(NodeMessage::Events { meeting, through, events }) => {
                            let stored = super::mirror::accept(
                                app.hub.store(),
                                app.hub.recorder(),
                                &node,
                                meeting,
                                through,
                                events,
                            )
                            .await;
                            match stored {
                                Ok(through) => {
                                    let reply = NodeMessage::Stored { meeting, through };
                                    if socket.send(Message::Text(reply.to_json().into())).await.is_err() {
                                        break End::Closed;
                                    }
                                }
                                // Not acknowledged: the node sends it again later.
                                Err(e) => tracing::warn!(node = %name, meeting, "attendance from the node not stored: {e}"),
                            }
                        }
                        Ok(relay @ (NodeMessage::RelayJoin { .. }
                            | NodeMessage::RelayUp { .. }
                            | NodeMessage::RelayLeave { .. }
                            | NodeMessage::RelayConsole { .. }
                            | NodeMessage::RelayStreams { .. }
                            | NodeMessage::RelayRollCallAnswer { .. })) => {
                            if let Some(reply) = seats.handle(relay).await
                                && socket.send(Message::Text(reply.to_json().into())).await.is_err()
                            {
                                break End::Closed;
                            }
                        }
                        Ok(other) => tracing::debug!(node = %name, ?other, "unexpected node message"),
                        Err(e) => tracing::warn!(node = %name, "malformed node message: {e}"),
                    },
                    Message::Close(_) => break End::Closed,
                    _ => {}
                }
            }
            Some((meeting, message, last)) = relay_outputs.recv() => {
                let message = super::seats::down(meeting, message);
                if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                    break End::Closed;
                }
                if last {
                    seats.ended(meeting).await;
                }
            }
            Ok(()) = meetings.changed() => {
                let provinces = node.provinces.clone();
                let found = app
                    .hub
                    .store()
                    .blocking(move |store: &Store| super::mirror::for_node(store, &provinces))
                    .await;
                match found {
                    Ok(meetings) => {
                        let message = NodeMessage::Meetings { meetings };
                        if socket.send(Message::Text(message.to_json().into())).await.is_err() {
                            break End::Closed;
                        }
                    }
                    Err(e) => tracing::error!(node = %name, "the node's meetings not read: {e}"),
                }
            }
            _ = tick.tick() => {
                if !app.node_links.is_current(&name, generation) {
                    break End::Replaced;
                }
                if app.node_links.is_stopping() {
                    break End::HubStopping;
                }
                if last_heard.elapsed() > silence {
                    break End::Silent;
                }
                if tokio::time::Instant::now() >= next_check {
                    next_check += recheck;
                    if revoked(&app, &name).await {
                        break End::Revoked;
                    }
                }
                // The parent measures the link too: its own ping, answered by the child.
                if tokio::time::Instant::now() >= next_ping {
                    next_ping += PING_INTERVAL;
                    let ping = NodeMessage::Ping { at: now_millis() };
                    if socket.send(Message::Text(ping.to_json().into())).await.is_err() {
                        break End::Closed;
                    }
                }
            }
        }
    };
    seats.close_all().await;
    match end {
        End::Closed => tracing::warn!(node = %name, %address, "node link closed"),
        End::Silent => {
            tracing::warn!(node = %name, %address, "node link silent for {silence:?}: dropped")
        }
        End::Replaced => {
            tracing::info!(node = %name, %address, "node linked again: the older link is dropped")
        }
        End::HubStopping => {
            tracing::info!(node = %name, %address, "node link closed: the hub stops")
        }
        End::Revoked => {
            tracing::warn!(node = %name, %address, "node credential revoked: link dropped");
            let refused = NodeMessage::Refused {
                code: "node_credential_revoked".to_owned(),
                message: format!("the credential of node {name} was revoked"),
            };
            let _ = socket.send(Message::Text(refused.to_json().into())).await;
        }
    }
    let close = match end {
        End::HubStopping => axum::extract::ws::close_code::AWAY,
        End::Revoked => axum::extract::ws::close_code::POLICY,
        _ => axum::extract::ws::close_code::NORMAL,
    };
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: close,
            reason: "".into(),
        })))
        .await;
    if !matches!(end, End::Replaced) {
        app.node_links.closed(&name, generation);
    }
}

async fn revoked(app: &AppState, name: &str) -> bool {
    let name = name.to_owned();
    let nodes = app
        .hub
        .store()
        .blocking(|store: &Store| store.nodes())
        .await;
    match nodes {
        Ok(nodes) => nodes
            .iter()
            .any(|n| n.name == name && n.revoked_at.is_some()),
        Err(e) => {
            tracing::warn!("node credentials not rechecked: {e}");
            false
        }
    }
}
