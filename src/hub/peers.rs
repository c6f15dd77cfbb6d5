//! What a hub asks its partners (the other hubs sharing its database, `--peer-hubs`) when it
//! cannot renew its leases: whether they reach the database. If one does, this hub is the one
//! cut off, and it hands its meetings over before the leases can run out; if every partner
//! answers that the database is unreachable for it too, nobody can take the meetings and this
//! hub keeps them, buffering their events (`crate::store`), until the database is back.

use std::time::Duration;

use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

/// What the partners said of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeersSay {
    /// This partner reaches it: the database is up, this hub is cut off from it.
    Reached(String),
    /// Every partner answered, and none reaches it: it is down for all.
    Down,
    /// Some partner did not answer: nothing is known.
    Unknown,
}

/// Asks each partner's `/api/health`, each within `timeout`.
pub async fn ask(peers: &[String], timeout: Duration) -> PeersSay {
    let answers = futures_util::future::join_all(peers.iter().map(|peer| async move {
        let said = tokio::time::timeout(timeout, database_of(peer)).await;
        (peer, said)
    }))
    .await;
    let mut all_answered = !answers.is_empty();
    for (peer, said) in answers {
        match said {
            Ok(Ok(database)) if database == "ok" => return PeersSay::Reached(peer.clone()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%peer, "the partner hub's health not read: {e}");
                all_answered = false;
            }
            Err(_) => {
                tracing::warn!(%peer, "the partner hub did not answer in time");
                all_answered = false;
            }
        }
    }
    if all_answered {
        PeersSay::Down
    } else {
        PeersSay::Unknown
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The `database` field of `peer`'s health.
async fn database_of(peer: &str) -> Result<String, String> {
    let base: Uri = peer.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match base.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("not an http:// or https:// URL".to_owned()),
    };
    let host = base.host().ok_or("no host")?.to_owned();
    let port = base.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let stream: Box<dyn Io> = if https {
        let tls = crate::cascade::pinning::client_config(None)?;
        let name =
            rustls::pki_types::ServerName::try_from(bare).map_err(|e| format!("host name: {e}"))?;
        Box::new(
            tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let authority = base
        .authority()
        .map_or(host.clone(), |a| a.as_str().to_owned());
    let request = Request::get("/api/health")
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let health: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
    health
        .get("database")
        .and_then(|d| d.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "no database field (an older release)".to_owned())
}
