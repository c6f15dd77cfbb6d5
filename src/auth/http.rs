//! Logins over HTTP: `/api/login`, `/api/logout`, `/api/session`; the guard every request
//! passes (the `Origin` check and, for the API, the session cookie and the CSRF token); and the
//! extractors by which an API handler says who may call it.
//!
//! A state-changing request (anything but `GET`, `HEAD` and `OPTIONS`) is refused with 403
//! `csrf_failed` when its `Origin` header names another site than the one it was sent to, and,
//! under `/api/` except `/api/login`, when its `X-CSRF-Token` header is not its session's CSRF
//! token. The session cookie is `SameSite=Strict` as well: three locks on one door.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{
    Account, MAX_PASSWORD_BYTES, Role, SESSION_LIFETIME, SESSION_LIMITS, new_token, token_hash,
};
use crate::error::AppError;
use crate::state::{AppState, client_address};
use crate::store::{Store, StoreError, now_millis};

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "diemcau_session";

/// The session cookie's name when cookies are `Secure` (HTTPS, or a TLS-terminating proxy).
/// Browsers accept a `__Host-` cookie only from a secure origin, for the whole host, with no
/// `Domain`: a neighbouring subdomain cannot plant one for the hub.
pub const SECURE_SESSION_COOKIE: &str = "__Host-diemcau_session";

/// The session cookie's name when cookies are `Secure` and shared by the hosts of a domain
/// (`--cookie-domain`): `__Secure-` still keeps a plain-HTTP page from setting it.
pub const SHARED_SECURE_SESSION_COOKIE: &str = "__Secure-diemcau_session";

/// The session cookie's name for a hub whose cookies are `Secure` or not, and for the host
/// alone or shared by a domain's hosts.
pub fn session_cookie_name(secure: bool, shared: bool) -> &'static str {
    match (secure, shared) {
        (true, false) => SECURE_SESSION_COOKIE,
        (true, true) => SHARED_SECURE_SESSION_COOKIE,
        (false, _) => SESSION_COOKIE,
    }
}

/// The `Set-Cookie` value of the session cookie holding `value`, valid `max_age` seconds.
fn session_cookie(auth: &crate::auth::Auth, value: &str, max_age: u64) -> String {
    let mut cookie = format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}",
        session_cookie_name(auth.secure_cookies, auth.cookie_domain.is_some()),
    );
    if auth.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Some(domain) = &auth.cookie_domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    cookie
}

/// The header a state-changing API request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
}

/// The logged-in account behind an API request, put there by [`guard`]. As an extractor it
/// refuses requests without a session with 401 `not_logged_in`; any role may pass.
#[derive(Clone)]
pub struct Caller {
    pub account: Account,
    pub csrf_token: String,
    token_sha256: String,
}

/// The tokens stay out of logs.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// A [`Caller`] with the organizer role; staff are refused with 403 `forbidden`.
#[derive(Debug, Clone)]
pub struct Organizer(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, AppError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(not_logged_in)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Organizer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Organizer, AppError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.account.role != Role::Organizer {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an organizer account",
            ));
        }
        Ok(Organizer(caller))
    }
}

/// Runs before every request: refuses cross-site state changes, and for the API finds the
/// session, checks the CSRF token of state-changing requests and hands the [`Caller`] on.
/// WHIP and WHEP (`/whip/`, `/whep/`) take no cookie, only a bearer token a page must hold
/// itself: any site's page may call them (`crate::whip`, CORS).
pub async fn guard(State(app): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let bearer_only = ["/whip/", "/whep/"]
        .iter()
        .any(|prefix| request.uri().path().starts_with(prefix));
    if changes_state
        && !bearer_only
        && !same_origin(request.headers(), request.uri(), app.origin_schemes())
    {
        tracing::warn!(
            path = request.uri().path(),
            origin = ?request.headers().get(header::ORIGIN),
            "cross-site request refused"
        );
        return csrf_failed("the request comes from another site").into_response();
    }
    let path = request.uri().path();
    if !path.starts_with("/api/") {
        return next.run(request).await;
    }
    let caller = match caller_from_headers(&app, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return AppError::from(e).into_response(),
    };
    // Logging in, and a hall's connection check before the meeting, need no session.
    if changes_state && path != "/api/login" && path != "/api/connectivity/probe" {
        match &caller {
            Some(caller) => {
                let sent = request
                    .headers()
                    .get(CSRF_HEADER)
                    .map(HeaderValue::as_bytes)
                    .unwrap_or_default();
                let matches: bool = sent.ct_eq(caller.csrf_token.as_bytes()).into();
                if !matches {
                    tracing::warn!(
                        path,
                        username = ?caller.account.username,
                        "request refused: missing or wrong CSRF token"
                    );
                    return csrf_failed("missing or wrong X-CSRF-Token header").into_response();
                }
            }
            // Logging out without a session has nothing to protect.
            None if path == "/api/logout" => {}
            None => return not_logged_in().into_response(),
        }
    }
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// The login behind the request's session cookie, if any (for the signalling WebSocket, whose
/// upgrade is a `GET` the guard lets through): the account as it was at the upgrade, and the
/// session's token hash, by which the login is checked again when it is used. The database
/// is read off the async threads, once per upgrade; a failure is logged and reads as no login,
/// and a studio's join, which needs one, checks it again (and answers `internal` if the
/// database still fails).
pub async fn login_from_headers(app: &AppState, headers: &HeaderMap) -> Option<(Account, String)> {
    match caller_from_headers(app, headers).await {
        Ok(caller) => caller.map(|c| (c.account, c.token_sha256)),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            None
        }
    }
}

/// Whether a request's `Origin`, when it has one, names the host it was sent to, with one of
/// the hub's `schemes` (a page served over plain HTTP is not the HTTPS hub's own). Browsers send
/// `Origin` with every cross-site `POST` and WebSocket; a missing one is a same-site request or
/// a client that is not a browser.
pub fn same_origin(headers: &HeaderMap, uri: &Uri, schemes: &[&str]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => origin_matches_host(origin, host, schemes),
        _ => false,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let credentials: Credentials = serde_json::from_slice(&body).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send {\"username\": \"...\", \"password\": \"...\"}",
        )
    })?;
    let ip = client_address(&app, address, &headers).ip();
    let now = std::time::Instant::now();
    // Only a well-formed user name is logged, as people type passwords into the wrong box;
    // malformed ones are counted together.
    let username = super::normalize_username(&credentials.username).unwrap_or_default();
    let logged_name = if username.is_empty() {
        "<not a user name>"
    } else {
        username.as_str()
    };
    if let Err(limited) = app.auth.begin_attempt(&username, ip, now) {
        tracing::warn!(%ip, username = ?logged_name, "login refused: {limited}");
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            limited.to_string(),
        ));
    }
    let account = if credentials.password.len() > MAX_PASSWORD_BYTES {
        None
    } else {
        app.auth
            .check_login(
                app.hub.store(),
                &credentials.username,
                &credentials.password,
            )
            .await?
    };
    let Some(account) = account else {
        tracing::warn!(%ip, username = ?logged_name, "login failed");
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong username or password",
        ));
    };
    app.auth.succeeded(&username, ip, now);
    // A session the browser still held is replaced, not left behind.
    let old = session_token(&headers, &app.auth).map(token_hash);
    let token = new_token()?;
    let csrf_token = new_token()?;
    let new = (
        token_hash(&token),
        account.username.clone(),
        csrf_token.clone(),
    );
    app.hub
        .store()
        .blocking(move |store| {
            if let Some(old) = old {
                store.delete_login_session(&old)?;
            }
            let (token_sha256, username, csrf_token) = new;
            store.create_login_session(
                &token_sha256,
                &username,
                &csrf_token,
                now_millis(),
                SESSION_LIMITS,
            )
        })
        .await?;
    tracing::info!(%ip, username = ?account.username, role = account.role.as_str(), "logged in");
    let cookie = session_cookie(&app.auth, &token, SESSION_LIFETIME.as_secs());
    Ok(session_reply(&account, &csrf_token, Some(cookie)))
}

async fn logout(
    State(app): State<Arc<AppState>>,
    caller: Option<Caller>,
) -> Result<Response, AppError> {
    if let Some(caller) = caller {
        let token_sha256 = caller.token_sha256.clone();
        app.hub
            .store()
            .blocking(move |store| store.delete_login_session(&token_sha256))
            .await?;
        app.hub.end_login(&caller.token_sha256).await;
        tracing::info!(username = ?caller.account.username, "logged out");
    }
    let cookie = session_cookie(&app.auth, "", 0);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

async fn session(caller: Caller) -> Response {
    session_reply(&caller.account, &caller.csrf_token, None)
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Caller>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

/// `{"username","role","csrf_token"}`, never cached.
fn session_reply(account: &Account, csrf_token: &str, cookie: Option<String>) -> Response {
    let body = Json(json!({
        "username": account.username,
        "role": account.role,
        "csrf_token": csrf_token,
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The caller behind a request's session cookie, looked up off the async threads.
async fn caller_from_headers(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, StoreError> {
    let Some(token) = session_token(headers, &app.auth) else {
        return Ok(None);
    };
    let token_sha256 = token_hash(token);
    app.hub
        .store()
        .blocking(move |store| caller_of_session(store, token_sha256))
        .await
}

/// The caller whose session token hashes to `token_sha256`, if that login is still valid.
fn caller_of_session(store: &Store, token_sha256: String) -> Result<Option<Caller>, StoreError> {
    Ok(store
        .login_session(&token_sha256, now_millis(), SESSION_LIMITS)?
        .map(|session| Caller {
            account: session.account,
            csrf_token: session.csrf_token,
            token_sha256,
        }))
}

/// The session token from the `Cookie` headers, under the cookie name of a hub whose cookies
/// are `Secure` or not, when it has the form of one.
fn session_token<'h>(headers: &'h HeaderMap, auth: &crate::auth::Auth) -> Option<&'h str> {
    let name = session_cookie_name(auth.secure_cookies, auth.cookie_domain.is_some());
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, token)| token.trim())
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn not_logged_in() -> AppError {
    AppError::new(StatusCode::UNAUTHORIZED, "not_logged_in", "log in first")
}

fn csrf_failed(message: &str) -> AppError {
    AppError::new(StatusCode::FORBIDDEN, "csrf_failed", message)
}

/// `https://hub.example:8443` against `hub.example:8443`: same host (any case) and port, the
/// port defaulting to the origin scheme's.
fn origin_matches_host(origin: &str, host: &str, schemes: &[&str]) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !schemes.iter().any(|ours| scheme.eq_ignore_ascii_case(ours)) {
        return false;
    }
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    match (
        split_host_port(authority, default_port),
        split_host_port(host, default_port),
    ) {
        (Some((origin_host, origin_port)), Some((host, port))) => {
            origin_host.eq_ignore_ascii_case(host) && origin_port == port
        }
        _ => false,
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub that takes either scheme (plain HTTP behind a TLS proxy).
    fn either(origin: &str, host: &str) -> bool {
        origin_matches_host(origin, host, &["http", "https"])
    }

    #[test]
    fn origins_match_only_their_own_host() {
        assert!(either("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(either("https://Hub.Example", "hub.example"));
        assert!(either("https://hub.example", "hub.example:443"));
        assert!(either("http://[::1]:8080", "[::1]:8080"));
        assert!(!either("http://evil.example:8080", "127.0.0.1:8080"));
        assert!(!either("http://127.0.0.1:9090", "127.0.0.1:8080"));
        assert!(!either("https://hub.example", "hub.example:80"));
        assert!(!either("null", "hub.example"));
        assert!(!either("http://a@hub.example", "hub.example"));
        assert!(!either("ftp://hub.example", "hub.example"));
        assert!(!origin_matches_host(
            "http://hub.example",
            "hub.example",
            &["https"]
        ));
        assert!(origin_matches_host(
            "HTTPS://hub.example",
            "hub.example",
            &["https"]
        ));
    }

    /// The account of a login still valid now, as the hub checks a chair's login again.
    fn account_of_session(store: &Store, token: &str) -> Result<Option<Account>, StoreError> {
        Ok(store
            .login_session(token, now_millis(), SESSION_LIMITS)?
            .map(|session| session.account))
    }

    #[test]
    fn a_session_that_cannot_be_read_is_a_failure_not_a_logout() {
        let store = crate::store::testing::temp_store("account-of-session");
        store
            .add_account("organizer", Role::Organizer, "$hash", now_millis())
            .expect("added");
        store
            .create_login_session("token", "organizer", "csrf", now_millis(), SESSION_LIMITS)
            .expect("logged in");
        let account = account_of_session(&store, "token").expect("read");
        assert_eq!(account.map(|a| a.role), Some(Role::Organizer));
        assert!(matches!(account_of_session(&store, "other"), Ok(None)));
        crate::store::testing::drop_table(&store, "login_sessions");
        assert!(
            account_of_session(&store, "token").is_err(),
            "a database failure is not \"not logged in\""
        );
    }

    #[test]
    fn reads_the_session_cookie_among_others() {
        let token = "ab".repeat(32);
        let plain = crate::auth::Auth::new(false);
        let secure = crate::auth::Auth::new(true);
        let shared = crate::auth::Auth::new(true).shared_by(Some("tinh.gov.vn".to_owned()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("lang=vi; {SESSION_COOKIE}={token}; x=y"))
                .expect("header"),
        );
        assert_eq!(session_token(&headers, &plain), Some(token.as_str()));
        assert_eq!(
            session_token(&headers, &secure),
            None,
            "a secure hub reads only its __Host- cookie"
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SECURE_SESSION_COOKIE}={token}")).expect("header"),
        );
        assert_eq!(session_token(&headers, &secure), Some(token.as_str()));
        assert_eq!(session_token(&headers, &plain), None);
        assert_eq!(
            session_token(&headers, &shared),
            None,
            "hubs sharing their cookie read the __Secure- one"
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SHARED_SECURE_SESSION_COOKIE}={token}"))
                .expect("header"),
        );
        assert_eq!(session_token(&headers, &shared), Some(token.as_str()));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("diemcau_session=not-a-token"),
        );
        assert_eq!(session_token(&headers, &plain), None);
    }

    #[test]
    fn a_cookie_shared_by_a_domain_names_it() {
        let shared = crate::auth::Auth::new(true).shared_by(Some("tinh.gov.vn".to_owned()));
        assert_eq!(
            session_cookie(&shared, "t", 60),
            "__Secure-diemcau_session=t; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure; \
             Domain=tinh.gov.vn"
        );
        assert_eq!(
            session_cookie(&crate::auth::Auth::new(true), "t", 60),
            "__Host-diemcau_session=t; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure"
        );
    }
}
