//! What the HTTP handlers share ([`AppState`]) and the address a request really comes from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use time::UtcOffset;

use crate::attendance::ReportRules;
use crate::auth::Auth;
use crate::connections::{ConnectionCounter, ConnectionStats};
use crate::hub::Hub;

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Time zone of CSV reports.
    pub offset: UtcOffset,
    pub rules: ReportRules,
    pub limits: diemcau_signaling::Limits,
    /// Signalling WebSockets per client address.
    pub connections: Arc<ConnectionCounter>,
    /// Every TCP connection the web server holds (WebSockets included), per peer address.
    pub tcp_connections: Arc<ConnectionCounter>,
    /// Connections the web server refused or timed out, for `/metrics`.
    pub connection_stats: Arc<ConnectionStats>,
    pub auth: Auth,
    /// Reverse proxies whose `X-Forwarded-For` is believed (see [`client_address`]).
    pub trusted_proxies: Vec<IpAddr>,
    /// The hub serves HTTPS itself (not `--plain-http`).
    pub https: bool,
    /// The pages' content security policy (`crate::web::content_security_policy`).
    pub content_security_policy: axum::http::HeaderValue,
    /// When the hub's TLS certificate stops being valid (seconds since the Unix epoch).
    pub certificate_expires_at: Option<i64>,
    /// The links of child hubs to this one.
    pub node_links: Arc<crate::cascade::parent::NodeLinks>,
    /// How often a live node link's credential is checked again (a revoked one is dropped).
    pub node_recheck_interval: std::time::Duration,
    /// This hub's link to its parent, when it has one.
    pub parent_link: crate::cascade::link::ParentLink,
}

impl AppState {
    /// The schemes a same-site `Origin` may have: `https` on an HTTPS hub; `http` on a plain
    /// one, and `https` too behind a trusted reverse proxy that terminates TLS.
    pub fn origin_schemes(&self) -> &'static [&'static str] {
        match (self.https, self.trusted_proxies.is_empty()) {
            (true, _) => &["https"],
            (false, true) => &["http"],
            (false, false) => &["http", "https"],
        }
    }
}

/// The address a request really comes from: the connection's peer, unless that peer is a
/// trusted reverse proxy, in which case the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy (what a client writes further left can be forged, what the proxies
/// append cannot). A header that does not parse leaves the peer's address.
/// A request's `User-Agent`, at most 256 characters, for the attendance log.
pub fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect()
}

pub fn client_address(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    if !app.trusted_proxies.contains(&peer.ip()) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
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
