//! diemcau: a video conference hub for province-to-commune online meetings.
//!
//! Layout:
//! - [`config`]: flags and defaults;
//! - [`directory`]: the sites directory and its CSV form;
//! - [`store`]: SQLite: directory, meeting plans and join codes, the append-only attendance log;
//! - [`attendance`]: the log's events and the reports computed from them;
//! - [`auth`]: accounts (organizer, staff), argon2id passwords, login sessions, CSRF checks;
//! - [`meeting`]: the meeting core, one sans-IO state machine per meeting: who joins, who
//!   holds the floor, who receives whom at which layer, what is logged and told;
//! - [`hub`]: its driver: signalling sessions and media events in, the core's outputs carried
//!   to sessions, media workers and the attendance log;
//! - [`media`]: the media driver, worker threads with UDP sockets around the sans-IO
//!   `diemcau_sfu::Worker`;
//! - [`web`], [`api`]: HTTP: embedded pages, `/ws` signalling, the JSON/CSV API.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let hub = diemcau::start(diemcau::Config::for_tests()).await?;
//! println!("open http://{}/", hub.http_addr());
//! hub.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod attendance;
pub mod auth;
pub mod config;
pub mod directory;
pub mod hub;
pub mod media;
pub mod meeting;
pub mod store;
pub mod tls;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
use hub::Hub;
use media::MediaPlane;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::attendance::ReportRules;
use crate::store::Store;
use crate::web::AppState;

/// The example directory loaded on first start: Tuyên Quang province and its 124 communes.
const SEED_SITES: &[u8] = include_bytes!("../fixtures/sites-tuyen-quang.csv");

/// A hub serving HTTP and media. States: running → shut down.
#[derive(Debug)]
pub struct RunningHub {
    scheme: &'static str,
    http_addr: SocketAddr,
    media_addresses: Vec<SocketAddr>,
    hub: Arc<Hub>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// Opens the data directory, closes sessions a crash left open, binds the web server and the
/// media sockets and starts serving.
pub async fn start(config: Config) -> std::io::Result<RunningHub> {
    let store = Store::open(&config.data_dir).map_err(std::io::Error::other)?;
    let recorder = store.recorder().map_err(std::io::Error::other)?;
    let started_at = store::now_millis();
    recover_from_crash(&store, &recorder, started_at).map_err(std::io::Error::other)?;
    auth::ensure_accounts(&store, &config.data_dir, &config.bootstrap_accounts)
        .map_err(std::io::Error::other)?;
    if config.seed_sites && store.site_count().map_err(std::io::Error::other)? == 0 {
        let sites = directory::parse_csv(SEED_SITES).map_err(std::io::Error::other)?;
        store.import_sites(&sites).map_err(std::io::Error::other)?;
        tracing::info!(sites = sites.len(), "loaded the example sites directory");
    }

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let http_addr = listener.local_addr()?;
    let (media, events) = MediaPlane::start(&config.media())?;
    let media_addresses = media.addresses();
    let grace = i64::from(config.grace_seconds) * 1000;
    let hub = Arc::new(Hub::new(
        media,
        store,
        recorder,
        meeting::MeetingConfig {
            max_participants: config.max_participants,
            grace,
            console_interval: i64::try_from(config.console_interval().as_millis())
                .unwrap_or(i64::MAX),
        },
        started_at,
    ));
    let events_task = tokio::spawn(hub.clone().run_media_events(events));
    let liveness_task = tokio::spawn(hub.clone().run_liveness(config.liveness_interval()));
    let console_task = tokio::spawn(hub.clone().run_console(config.console_interval()));
    let login_task = tokio::spawn(hub.clone().run_login_checks(config.login_check_interval()));
    let state = Arc::new(AppState {
        hub: hub.clone(),
        offset: config.utc_offset,
        rules: ReportRules {
            grace,
            ..ReportRules::default()
        },
        limits: config.session_limits(),
        connections: Arc::new(web::ConnectionCounter::new(
            config.max_connections_per_address,
        )),
        auth: auth::Auth::new(!config.plain_http || !config.trusted_proxy.is_empty()),
        trusted_proxies: config.trusted_proxy.clone(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = web::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server_hub = hub.clone();
    let tls = if config.plain_http {
        None
    } else {
        let files = tls::load_or_create(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            &config.data_dir,
            &config.announce_addresses(),
        )?;
        if let tls::TlsOrigin::Generated(path) = &files.origin {
            tracing::warn!(
                "no TLS certificate configured: made a self-signed one at {}; browsers will ask \
                 to accept it once (set --tls-cert and --tls-key for a real one)",
                path.display()
            );
        }
        Some(files)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(async move {
        let served = match tls {
            None => axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| e.to_string()),
            Some(files) => serve_tls(listener, app, files, stopped).await,
        };
        if let Err(e) = served {
            tracing::error!("web server failed: {e}");
        }
        events_task.abort();
        liveness_task.abort();
        login_task.abort();
        console_task.abort();
        server_hub.media().stop();
    });
    Ok(RunningHub {
        scheme,
        http_addr,
        media_addresses,
        hub,
        stop,
        server,
    })
}

/// After a stop without warning: every session the hub cut off is closed at its last sign of
/// life, and each meeting in progress records how long the hub was down.
fn recover_from_crash(
    store: &Store,
    recorder: &store::Recorder,
    started_at: attendance::Millis,
) -> Result<(), store::StoreError> {
    let crashed = store.begin_run(started_at)?;
    let closed = store.close_interrupted_sessions(recorder)?;
    if closed > 0 {
        tracing::warn!(
            sessions = closed,
            "closed sessions left open by an unclean stop, at their last sign of life"
        );
    }
    let Some(last_seen) = crashed else {
        return Ok(());
    };
    for meeting in store.meetings_in_progress()? {
        let last_event = store.events(meeting)?.last().map_or(0, |e| e.at);
        let down_since = last_seen.max(last_event).min(started_at);
        recorder.append_blocking(
            meeting,
            started_at,
            attendance::EventKind::HubRestarted { down_since },
        )?;
        tracing::warn!(
            meeting = %meeting,
            down_seconds = (started_at - down_since) / 1000,
            "the hub had stopped without warning during this meeting"
        );
    }
    Ok(())
}

impl RunningHub {
    /// Where the web server listens (pages, `/ws`, `/api`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `https://ADDR` (or `http://` with `--plain-http`).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.http_addr)
    }

    /// The UDP addresses announced in ICE candidates.
    pub fn media_addresses(&self) -> &[SocketAddr] {
        &self.media_addresses
    }

    /// Ends every session (recorded as left by shutdown), stops serving, stops the workers.
    pub async fn shutdown(self) {
        self.hub.shutdown_sessions().await;
        let _ = self.stop.send(());
        let _ = self.server.await;
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM), then shuts down.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Serves HTTPS on an already bound listener until `stopped`, then lets requests finish.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    files: tls::TlsFiles,
    stopped: oneshot::Receiver<()>,
) -> Result<(), String> {
    // Several crates in the build could each bring a rustls crypto provider: name ours.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(files.cert_pem, files.key_pem)
        .await
        .map_err(|e| format!("TLS certificate or key unusable: {e}"))?;
    let listener = listener.into_std().map_err(|e| e.to_string())?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = stopped.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(listener, config)
        .map_err(|e| e.to_string())?
        .handle(handle)
        .serve(app)
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
