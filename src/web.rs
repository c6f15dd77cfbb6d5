//! The HTTP side: static pages embedded in the binary, the signalling WebSocket, health.

use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::hub::Hub;

#[derive(Embed)]
#[folder = "web-client/"]
struct Pages;

/// The hub's HTTP routes.
pub fn app(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/ws", get(signaling))
        .route("/api/health", get(health))
        .fallback(get(page))
        .with_state(hub)
}

async fn signaling(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    diemcau_signaling::session::upgrade(ws, hub)
}

async fn health(State(hub): State<Arc<Hub>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "participants": hub.participant_count(),
        "media_workers": hub.media().worker_count(),
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
