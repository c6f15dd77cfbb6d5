//! The web server: our own accept loop around hyper, so that every connection it accepts is
//! counted and bounded at every stage.
//!
//! - After `accept`, a connection over the per-address cap or the cap in all is closed at once
//!   (it must not hold a descriptor); a trusted reverse proxy is held to the cap in all only.
//! - The TLS handshake must finish within [`ServerLimits::tls_handshake_timeout`].
//! - A request's head must arrive within [`ServerLimits::request_header_timeout`] of its first
//!   byte; the request (body included) must be answered within
//!   [`ServerLimits::request_timeout`]; a connection with no request for
//!   [`ServerLimits::idle_timeout`] is closed.
//! - A connection upgraded to a WebSocket leaves these timers: the signalling session has its
//!   own, and its slot in the caps is held until the socket closes.
//!
//! Every refusal and timeout is counted in [`ConnectionStats`] (and so in `/metrics`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::connections::{
    ConnectionCounter, ConnectionSlot, ConnectionStats, LOG_INTERVAL, TimeoutStage,
};
use crate::error::AppError;

/// How long in-flight requests may run on once shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Descriptors kept out of the connection cap for the database, the media sockets, the log
/// and the listening socket itself.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// How long the accept loop waits after a failed `accept` (out of descriptors: waiting lets
/// closing connections free some instead of spinning on the error).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The timeouts of the web server's connections.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub tls_handshake_timeout: Duration,
    pub request_header_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// Reverse proxies: not held to the per-address cap (they carry many clients).
    pub trusted_proxies: Vec<IpAddr>,
}

/// The web server: a router, HTTPS or not, its limits and its counters. States: built →
/// running ([`Server::run`]) → stopped (the shutdown future resolved and in-flight requests
/// finished or ran out of grace).
#[derive(Debug)]
pub struct Server {
    pub app: Router,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: ServerLimits,
    pub connections: Arc<ConnectionCounter>,
    pub stats: Arc<ConnectionStats>,
}

impl Server {
    /// Serves connections from `listener` until `shutdown` resolves; then stops accepting,
    /// closes idle connections, and lets requests in flight finish (for a few seconds at
    /// most). Handlers see the peer as `ConnectInfo<SocketAddr>`.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let server = Arc::new(self);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut held_back = tokio::time::interval(LOG_INTERVAL);
        loop {
            let (stream, peer) = tokio::select! {
                _ = held_back.tick() => {
                    server.stats.log_held_back();
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        server.stats.accept_failed(&e);
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let ip = peer.ip();
            let admitted = if server.limits.trusted_proxies.contains(&ip) {
                server.connections.admit_uncapped_address(ip)
            } else {
                server.connections.admit(ip)
            };
            match admitted {
                Ok(slot) => {
                    let watcher = graceful.watcher();
                    tokio::spawn(server.clone().connection(stream, peer, slot, watcher));
                }
                Err(reason) => {
                    drop(stream);
                    server.stats.refused(reason, ip);
                }
            }
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("web server stopped with requests still in flight");
        }
    }

    /// One accepted connection: the TLS handshake, then HTTP until it closes or times out.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        watcher: Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.tls.clone() else {
            self.serve(stream, peer, slot, watcher).await;
            return;
        };
        let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
        match tokio::time::timeout(self.limits.tls_handshake_timeout, handshake).await {
            Ok(Ok(stream)) => self.serve(stream, peer, slot, watcher).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => self.stats.timed_out(TimeoutStage::TlsHandshake, peer.ip()),
        }
    }

    async fn serve<S>(&self, stream: S, peer: SocketAddr, slot: ConnectionSlot, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let stream = Tracked {
            inner: stream,
            activity: activity.clone(),
            _slot: slot,
        };
        let app = self.app.clone();
        let stats = self.stats.clone();
        let request_timeout = self.limits.request_timeout;
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let stats = stats.clone();
            let activity = requests.clone();
            async move {
                let exchange = Exchange {
                    peer,
                    activity: &activity,
                    stats: &stats,
                    timeout: request_timeout,
                };
                Ok::<_, Infallible>(exchange.answer(app, request).await)
            }
        });
        // No WebSockets over HTTP/2 (RFC 8441): browsers then open them over HTTP/1.1, where the
        // upgraded stream leaves this connection's timers and its slot goes with the socket.
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::select! {
            served = watcher.watch(connection) => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            }
            stage = activity.expired(&self.limits) => self.stats.timed_out(stage, peer.ip()),
        }
    }
}

/// The HTTPS configuration of a PEM certificate chain and private key, offering HTTP/2 and
/// HTTP/1.1.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    // Several crates in the build could each bring a rustls crypto provider: name ours.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let unusable = |e: &dyn std::fmt::Display| format!("TLS certificate or key unusable: {e}");
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| unusable(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| unusable(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Raises this process's soft limit of open files to its hard limit (services often start
/// at 1,024) and logs both; returns the soft limit in force, or `None` where it cannot be
/// read.
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};

    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            return None;
        }
    };
    // An unlimited hard limit still stops at the kernel's `nr_open`.
    let target = if hard == nix::sys::resource::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(soft)
    } else {
        hard
    };
    if soft >= target {
        tracing::info!(soft, hard, "open-file limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!(soft = target, hard, was = soft, "open-file limit raised");
            Some(target)
        }
        Err(e) => {
            tracing::warn!(soft, hard, "cannot raise the open-file limit: {e}");
            Some(soft)
        }
    }
}

/// The cap on connections in all: `configured`, and below the open-file limit by
/// [`RESERVED_DESCRIPTORS`].
pub fn connection_cap(configured: usize, open_file_limit: Option<u64>) -> usize {
    let Some(limit) = open_file_limit else {
        return configured.max(1);
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// One request on a connection: it is answered by the router within the request timeout, and
/// the connection counts as busy until its answer's body is sent.
struct Exchange<'a> {
    peer: SocketAddr,
    activity: &'a Arc<Activity>,
    stats: &'a ConnectionStats,
    timeout: Duration,
}

impl Exchange<'_> {
    async fn answer(self, app: Router, mut request: Request<Incoming>) -> Response<Body> {
        let busy = self.activity.request_started();
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let answered =
            tokio::time::timeout(self.timeout, app.oneshot(request.map(Body::new))).await;
        let response = match answered {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                self.stats.timed_out(TimeoutStage::Request, self.peer.ip());
                AppError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request did not arrive, or was not answered, in time",
                )
                .into_response()
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.activity.upgraded();
        }
        response.map(|body| Body::new(BusyBody { body, _busy: busy }))
    }
}

/// What a connection is doing, for its timers: requests in flight, whether it was upgraded,
/// and when it last went idle, wrote, or was first read from since going idle (milliseconds
/// since it was accepted).
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    upgraded: AtomicBool,
    idle_since: AtomicU64,
    last_write: AtomicU64,
    read_since_idle: AtomicU64,
}

/// `read_since_idle` when nothing was read since the connection went idle.
const NOT_READ: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            read_since_idle: AtomicU64::new(NOT_READ),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.read_since_idle.compare_exchange(
                NOT_READ,
                self.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn wrote(&self) {
        self.last_write.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.read_since_idle.store(NOT_READ, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// When the connection is to be closed, and at which stage; `None` while it is busy.
    fn deadline(&self, limits: &ServerLimits) -> Option<(u64, TimeoutStage)> {
        if self.upgraded.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let first_read = self.read_since_idle.load(Ordering::Relaxed);
        if first_read != NOT_READ {
            return Some((
                first_read.saturating_add(millis(limits.request_header_timeout)),
                TimeoutStage::RequestHeader,
            ));
        }
        let quiet_since = self
            .idle_since
            .load(Ordering::Relaxed)
            .max(self.last_write.load(Ordering::Relaxed));
        Some((
            quiet_since.saturating_add(millis(limits.idle_timeout)),
            TimeoutStage::Idle,
        ))
    }

    /// Resolves when a timer of the connection runs out, with the stage it was at.
    async fn expired(&self, limits: &ServerLimits) -> TimeoutStage {
        loop {
            let now = self.now();
            let wait = match self.deadline(limits) {
                Some((at, stage)) if at <= now => return stage,
                Some((at, _)) => Duration::from_millis(at - now),
                None => limits.idle_timeout,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in flight; dropping it (its answer sent or abandoned) may leave the connection
/// idle.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
            self.0.read_since_idle.store(NOT_READ, Ordering::Relaxed);
        }
    }
}

/// An answer's body, holding its request's [`Busy`] until it is sent.
struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream that notes its reads and writes in its [`Activity`] and holds its
/// slot in the connection caps for as long as the stream lives (after a WebSocket upgrade,
/// as long as the WebSocket).
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    _slot: ConnectionSlot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            tls_handshake_timeout: Duration::from_secs(10),
            request_header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }

    #[test]
    fn an_idle_connection_runs_out_on_the_idle_timer_and_a_started_head_on_the_header_timer() {
        let activity = Arc::new(Activity::new());
        assert_eq!(
            activity.deadline(&limits()),
            Some((30_000, TimeoutStage::Idle))
        );
        activity.read_since_idle.store(1_000, Ordering::Relaxed);
        assert_eq!(
            activity.deadline(&limits()),
            Some((6_000, TimeoutStage::RequestHeader))
        );
        let busy = activity.request_started();
        assert_eq!(activity.deadline(&limits()), None, "a request in flight");
        drop(busy);
        assert_eq!(
            activity.deadline(&limits()).map(|(_, stage)| stage),
            Some(TimeoutStage::Idle),
            "the next head has not begun"
        );
        activity.upgraded();
        assert_eq!(
            activity.deadline(&limits()),
            None,
            "a WebSocket has its own"
        );
    }

    #[test]
    fn the_cap_in_all_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(10_000, Some(1_024)), 768);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(10_000, Some(100)), 1);
    }
}
