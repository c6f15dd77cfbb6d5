//! The hub's HTTP routes: the pages embedded in the binary, the signalling WebSocket (`/ws`),
//! `/api/health`, and the routes of [`crate::api`], [`crate::auth::http`] and
//! [`crate::metrics`] merged into one router. [`crate::server`] serves it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::hub::ClientInfo;
use crate::state::{AppState, client_address};

#[derive(Embed)]
#[folder = "web-client/"]
struct Pages;

/// The hub's HTTP routes. Handlers read the peer as `ConnectInfo<SocketAddr>`: serve with
/// [`crate::server::run`] (or `into_make_service_with_connect_info::<SocketAddr>()`).
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(signaling))
        .route("/api/health", get(health))
        .route("/node", get(crate::cascade::parent::node_link))
        .route("/metrics", get(crate::metrics::metrics))
        .merge(crate::api::routes())
        .merge(crate::auth::http::routes())
        .merge(crate::whip::routes())
        .fallback(get(page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::http::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// What a page may load and run: only the hub's own scripts, styles and connections (the pages
/// have no inline script or style, and must keep it so), pictures and media also from the
/// page's own `blob:` and `data:` URLs, no plugins, no framing, forms only to the hub. A hub of
/// a standby pair lets its pages also reach its partners (`peer_hubs`, their origins), to see
/// that one answers before going there.
pub fn content_security_policy(peer_hubs: &[String]) -> HeaderValue {
    let mut connect = String::from("'self'");
    for peer in peer_hubs {
        if let Ok(uri) = peer.parse::<Uri>()
            && let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority())
            && matches!(scheme, "http" | "https")
        {
            connect.push_str(&format!(" {scheme}://{authority}"));
        }
    }
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; connect-src {connect}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    // Peer origins parsed from URIs hold only characters a header may; without them if not.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| content_security_policy(&[]))
}

/// Headers every reply carries: the content security policy, no framing by other pages, no
/// type sniffing, no `Referer` (page addresses hold join codes), API replies (join codes,
/// reports) kept out of caches, and on an HTTPS hub, HTTPS only for a year (HSTS).
async fn security_headers(
    State(app): State<Arc<AppState>>,
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
        header::CONTENT_SECURITY_POLICY,
        app.content_security_policy.clone(),
    );
    if app.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
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
    if !crate::auth::http::same_origin(&headers, &uri, app.origin_schemes()) {
        tracing::warn!(%address, origin = ?headers.get(header::ORIGIN), "signalling connection refused: cross-site origin");
        return (StatusCode::FORBIDDEN, "cross-site WebSocket refused").into_response();
    }
    let Ok(slot) = app.connections.admit(address.ip()) else {
        tracing::warn!(%address, "signalling connection refused: too many from this address");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let user_agent = crate::state::user_agent(&headers);
    let client = ClientInfo {
        address: Some(address),
        user_agent,
        slot: Some(slot),
        login: crate::auth::http::login_from_headers(&app, &headers).await,
    };
    // Signalling messages are small and rare: a 4 KiB read buffer, allocated whole for each
    // connection, instead of axum's 128 KiB (a quarter of a site's memory at the defaults),
    // and writes flushed past 4 KiB; larger messages still grow them.
    let ws = ws.read_buffer_size(4 * 1024).write_buffer_size(4 * 1024);
    diemcau_signaling::session::upgrade(ws, app.hub.clone(), client, app.limits)
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("status".into(), "ok".into());
    body.insert("participants".into(), app.hub.participant_count().into());
    body.insert(
        "media_workers".into(),
        app.hub.media().worker_count().into(),
    );
    if let Some(parent) = app.parent_link.status() {
        body.insert("parent".into(), serde_json::json!(parent));
    }
    // Hubs sharing a database: this one's name, the meetings it runs, and where the others
    // are (a page whose hub stops answering goes to one of them).
    if let Some(name) = app.hub.hub_name() {
        body.insert("hub".into(), name.into());
        body.insert("meetings_held".into(), app.hub.held_meetings().into());
        body.insert("peer_hubs".into(), app.hub.peer_hubs().into());
    }
    // Events waiting on this hub's disk for an unreachable database.
    if let Some((buffered, since)) = app.hub.recorder().buffered() {
        body.insert(
            "log_buffered".into(),
            serde_json::json!({"events": buffered, "since": since}),
        );
    }
    // Child hubs, when this hub has any: each with its link's state. Reading them tells
    // whether the database answers.
    let nodes = app.hub.store().blocking(|store| store.nodes()).await;
    let database = match &nodes {
        Ok(_) => "ok",
        Err(crate::store::StoreError::Unreachable(_)) => "unreachable",
        Err(_) => "failing",
    };
    body.insert("database".into(), database.into());
    match nodes {
        Ok(nodes) if !nodes.is_empty() => {
            body.insert(
                "nodes".into(),
                serde_json::json!(
                    app.node_links
                        .status(&nodes)
                        .into_iter()
                        .map(|mut node| {
                            node.media = app
                                .hub
                                .node_media(&node.name)
                                .map(crate::cascade::parent::NodeMedia::of);
                            node
                        })
                        .collect::<Vec<_>>()
                ),
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("health: the nodes not read: {e}"),
    }
    axum::Json(serde_json::Value::Object(body)).into_response()
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

/// The byte range `[start, end)` a `Range: bytes=...` header asks of a `size`-byte file: the
/// first range when several are asked; `None` when it cannot be satisfied.
pub fn byte_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let first = spec.split(',').next()?.trim();
    let (from, to) = first.split_once('-')?;
    let (start, end) = match (from.trim(), to.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (from, "") => (from.parse().ok()?, size),
        (from, to) => {
            let to: u64 = to.parse().ok()?;
            (from.parse().ok()?, to.saturating_add(1).min(size))
        }
    };
    (start < end && start < size).then_some((start, end))
}

/// The bytes `[start, end)` of `file`, streamed in 64 KiB chunks.
pub async fn file_body(
    mut file: tokio::fs::File,
    start: u64,
    end: u64,
) -> std::io::Result<axum::body::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let chunks = futures_util::stream::unfold(
        (file, end.saturating_sub(start)),
        |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut chunk = vec![0u8; usize::try_from(left.min(64 * 1024)).unwrap_or(64 * 1024)];
            match file.read(&mut chunk).await {
                Ok(0) => None,
                Ok(n) => {
                    chunk.truncate(n);
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)),
                        (file, left - n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        },
    );
    Ok(axum::body::Body::from_stream(chunks))
}

#[cfg(test)]
mod range_tests {
    use super::byte_range;

    #[test]
    fn ranges_as_browsers_ask_them() {
        assert_eq!(byte_range("bytes=0-", 1000), Some((0, 1000)));
        assert_eq!(byte_range("bytes=100-199", 1000), Some((100, 200)));
        assert_eq!(byte_range("bytes=900-5000", 1000), Some((900, 1000)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(byte_range("bytes=0-0,5-9", 1000), Some((0, 1)));
        assert_eq!(byte_range("bytes=1000-", 1000), None, "past the end");
        assert_eq!(byte_range("bytes=5-2", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
    }
}
