//! The HTTP side: static pages embedded in the binary, the signalling WebSocket, the API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
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
}

/// The hub's HTTP routes. Serve with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(signaling))
        .route("/api/health", get(health))
        .merge(crate::api::routes())
        .fallback(get(page))
        .with_state(state)
}

async fn signaling(
    ws: WebSocketUpgrade,
    State(app): State<Arc<AppState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
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
    };
    diemcau_signaling::session::upgrade(ws, app.hub.clone(), client)
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "participants": app.hub.participant_count(),
        "media_workers": app.hub.media().worker_count(),
    });
    axum::Json(body).into_response()
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
