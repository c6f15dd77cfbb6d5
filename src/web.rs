//! The HTTP side: static pages embedded in the binary, the signalling WebSocket, the API.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;
use time::UtcOffset;

use crate::attendance::ReportRules;
use crate::hub::{ClientInfo, Hub};

#[derive(Embed)]
#[folder = "web-client/"]
struct Pages;

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Time zone of CSV reports.
    pub offset: UtcOffset,
    pub rules: ReportRules,
    pub limits: diemcau_signaling::Limits,
    pub connections: Arc<ConnectionCounter>,
    pub auth: crate::auth::Auth,
    /// Reverse proxies whose `X-Forwarded-For` is believed (see [`client_address`]).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The address a request really comes from: the connection's peer, unless that peer is a
/// trusted reverse proxy, in which case the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy (what a client writes further left can be forged, what the proxies
/// append cannot). A header that does not parse leaves the peer's address.
pub fn client_address(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    if !app.trusted_proxies.contains(&peer.ip()) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|part| part.trim().parse())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !app.trusted_proxies.contains(ip))
        .map_or(peer, |ip| SocketAddr::new(ip, 0))
}

/// Open signalling connections per IP address, to refuse a flood from one address.
#[derive(Debug)]
pub struct ConnectionCounter {
    max_per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionCounter {
    pub fn new(max_per_address: usize) -> ConnectionCounter {
        ConnectionCounter {
            max_per_address,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, released when dropped.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The hub's HTTP routes. Serve with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(signaling))
        .route("/api/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::api::routes())
        .merge(crate::auth::http::routes())
        .fallback(get(page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::http::guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every reply carries: no framing by other pages, no type sniffing, no `Referer`
/// (page addresses hold join codes), and API replies (join codes, reports) kept out of caches.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn signaling(
    ws: WebSocketUpgrade,
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let address = client_address(&app, peer, &headers);
    // A page of another site must not open a session with this browser's login
    // (cross-site WebSocket hijacking): browsers always send `Origin` on a WebSocket.
    if !crate::auth::http::same_origin(&headers, &uri) {
        tracing::warn!(%address, origin = ?headers.get(header::ORIGIN), "signalling connection refused: cross-site origin");
        return (StatusCode::FORBIDDEN, "cross-site WebSocket refused").into_response();
    }
    let Some(slot) = app.connections.admit(address.ip()) else {
        tracing::warn!(%address, "signalling connection refused: too many from this address");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    let client = ClientInfo {
        address: Some(address),
        user_agent,
        slot: Some(slot),
        login: crate::auth::http::login_from_headers(&app, &headers),
    };
    // Signalling messages are small and rare: 16 KiB buffers instead of axum's 128 KiB each way
    // (a quarter of a site's memory at the defaults); larger messages still grow them.
    let ws = ws.read_buffer_size(16 * 1024).write_buffer_size(16 * 1024);
    diemcau_signaling::session::upgrade(ws, app.hub.clone(), client, app.limits)
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "participants": app.hub.participant_count(),
        "media_workers": app.hub.media().worker_count(),
    });
    axum::Json(body).into_response()
}

/// Prometheus text format.
async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let media = app.hub.media().stats();
    let (participants, sites) = app.hub.counts();
    let cpu = process_cpu_seconds().unwrap_or(0.0);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "diemcau_participants",
        "gauge",
        "Participants joined in all meetings.",
        participants.to_string(),
    );
    metric(
        "diemcau_sites_connected",
        "gauge",
        "Sites joined in all meetings.",
        sites.to_string(),
    );
    metric(
        "diemcau_media_workers",
        "gauge",
        "Media worker threads.",
        app.hub.media().worker_count().to_string(),
    );
    metric(
        "diemcau_packets_received_total",
        "counter",
        "RTP packets received from publishers.",
        media.packets_received.to_string(),
    );
    metric(
        "diemcau_packets_forwarded_total",
        "counter",
        "RTP packets written to receivers.",
        media.packets_forwarded.to_string(),
    );
    metric(
        "diemcau_bytes_forwarded_total",
        "counter",
        "RTP payload bytes written to receivers.",
        media.bytes_forwarded.to_string(),
    );
    metric(
        "diemcau_packets_muted_total",
        "counter",
        "RTP packets of muted sites dropped at the hub.",
        media.packets_dropped_paused.to_string(),
    );
    metric(
        "diemcau_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        media.datagrams_received.to_string(),
    );
    metric(
        "diemcau_datagrams_unrouted_total",
        "counter",
        "UDP datagrams no peer claimed.",
        media.datagrams_unrouted.to_string(),
    );
    metric(
        "diemcau_keyframe_requests_total",
        "counter",
        "Keyframe requests sent to publishers.",
        media.keyframe_requests_sent.to_string(),
    );
    metric(
        "diemcau_handshake_failures_total",
        "counter",
        "Peers whose ICE or DTLS setup failed before connecting.",
        media.handshake_failures.to_string(),
    );
    metric(
        "diemcau_loss_permille",
        "gauge",
        "Worst packet loss of a connected site over the last sample, in tenths of a percent.",
        app.hub.worst_loss_permille().to_string(),
    );
    metric(
        "process_cpu_seconds_total",
        "counter",
        "CPU time of the hub process.",
        format!("{cpu:.3}"),
    );
    let per_packet = if media.packets_forwarded > 0 {
        cpu * 1e6 / media.packets_forwarded as f64
    } else {
        0.0
    };
    metric(
        "diemcau_cpu_microseconds_per_forwarded_packet",
        "gauge",
        "Hub CPU time since start divided by packets forwarded.",
        format!("{per_packet:.2}"),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// utime + stime of this process, from /proc (Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

async fn page(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Pages::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
