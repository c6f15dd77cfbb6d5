//! diemcau: a video conference hub for province-to-commune online meetings.
//!
//! Layout:
//! - [`config`]: flags and defaults; [`logging`]: the log, for a terminal or systemd's journal;
//! - [`directory`]: the sites directory and its CSV form;
//! - [`store`]: SQLite: directory, meeting plans and join codes, the append-only attendance log;
//! - [`attendance`]: the log's events and the reports computed from them;
//! - [`auth`]: accounts (organizer, staff), argon2id passwords, login sessions, CSRF checks;
//! - [`cascade`]: the links between hubs in a national tree (a child hub and its parent);
//! - [`meeting`]: the meeting core, one sans-IO state machine per meeting: who joins, who
//!   holds the floor, who receives whom at which layer, what is logged and told;
//! - [`hub`]: its driver: signalling sessions and media events in, the core's outputs carried
//!   to sessions, media workers and the attendance log;
//! - [`media`]: the media driver, worker threads with UDP sockets around the sans-IO
//!   `diemcau_sfu::Worker`;
//! - [`essential`]: the threads the hub cannot run without; a fault in one stops it;
//! - [`connections`]: per-address and total connection caps, refusal and timeout counts;
//! - [`server`]: the web server's accept loop: TLS, timeouts at every stage, the caps;
//! - [`state`], [`error`]: what HTTP handlers share, and the error they answer with;
//! - [`web`], [`api`], [`metrics`]: HTTP routes: embedded pages and `/ws` signalling, the
//!   JSON/CSV API, `/metrics`.
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
pub mod cascade;
pub mod config;
pub mod connections;
pub mod directory;
pub mod error;
pub mod essential;
pub mod hub;
pub mod logging;
pub mod media;
pub mod meeting;
pub mod memory;
pub mod metrics;
pub mod recording;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod web;
pub mod whip;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
use hub::Hub;
use media::MediaPlane;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::attendance::ReportRules;
use crate::connections::{ConnectionCounter, ConnectionStats};
use crate::server::Server;
use crate::state::AppState;
use crate::store::Store;

/// The example directory loaded on first start: Tuyên Quang province and its 124 communes.
const SEED_SITES: &[u8] = include_bytes!("../fixtures/sites-tuyen-quang.csv");

/// A hub serving HTTP and media. States: running → shut down.
#[derive(Debug)]
pub struct RunningHub {
    scheme: &'static str,
    http_addr: SocketAddr,
    media_addresses: Vec<SocketAddr>,
    media_tcp_addresses: Vec<SocketAddr>,
    hub: Arc<Hub>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    /// The links of child hubs, closed when the hub stops.
    node_links: Arc<cascade::parent::NodeLinks>,
    /// Held until the hub has stopped: no second hub, and no restore, on its data directory.
    _data_dir_lock: store::backup::DataDirLock,
}

/// Opens the data directory, closes sessions a crash left open, binds the web server and the
/// media sockets and starts serving.
pub async fn start(config: Config) -> std::io::Result<RunningHub> {
    let data_dir_lock =
        store::backup::DataDirLock::acquire(&config.data_dir).map_err(std::io::Error::other)?;
    let parent = config
        .parent
        .as_deref()
        .map(|url| {
            cascade::link::ParentConfig::new(
                url,
                config.node_token_file.as_deref(),
                config.parent_cert_sha256.as_deref(),
            )
        })
        .transpose()
        .map_err(std::io::Error::other)?;
    let database = config
        .database
        .database(&config.data_dir)
        .map_err(std::io::Error::other)?;
    let store = Store::connect(&database).map_err(|e| {
        std::io::Error::other(format!(
            "cannot open the data in {}: {e}",
            config::describe(&database)
        ))
    })?;
    let recorder = store
        .buffered_recorder(&config.data_dir.join("log-buffer"), store::LOG_BUFFER_LIMIT)
        .map_err(std::io::Error::other)?;
    let started_at = store::now_millis();
    let hub_name = config.hub_name.clone().unwrap_or_else(host_name);
    recover_from_crash(
        &store,
        &recorder,
        &hub_name,
        started_at,
        &config.data_dir.join("recordings"),
    )
    .map_err(std::io::Error::other)?;
    auth::ensure_accounts(&store, &config.data_dir, &config.bootstrap_accounts)
        .map_err(std::io::Error::other)?;
    if config.seed_sites && store.site_count().map_err(std::io::Error::other)? == 0 {
        let sites = directory::parse_csv(SEED_SITES).map_err(std::io::Error::other)?;
        store.import_sites(&sites).map_err(std::io::Error::other)?;
        tracing::info!(sites = sites.len(), "loaded the example sites directory");
    }

    let open_file_limit = server::raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let http_addr = listener.local_addr()?;
    let mut certificate_expires_at = None;
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
        certificate_expires_at = tls::expires_at(&files.cert_pem);
        if certificate_expires_at.is_none() {
            tracing::warn!("the TLS certificate's end of validity cannot be read");
        }
        Some(
            server::tls_config(&files.cert_pem, &files.key_pem)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        )
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (media, events) = MediaPlane::start(&config.media())?;
    let taps = media.taps();
    let media_addresses = media.addresses();
    let media_tcp_addresses = media.tcp_addresses().to_vec();
    let grace = i64::from(config.grace_seconds) * 1000;
    let shared = store.is_shared();
    let mut hub = Hub::new(
        media,
        store,
        recorder,
        meeting::MeetingConfig {
            max_participants: config.max_participants,
            max_viewers: config.max_viewers,
            grace,
            console_interval: i64::try_from(config.console_interval().as_millis())
                .unwrap_or(i64::MAX),
            recording: config.recording,
        },
        started_at,
    );
    let (recording_reports, recording_reports_rx) = tokio::sync::mpsc::unbounded_channel();
    if config.recording != meeting::RecordingMode::Off {
        hub = hub.recording(recording::Recordings::start(
            config.data_dir.join("recordings"),
            config.recording_min_free_mb.saturating_mul(1_000_000),
            taps,
            recording_reports,
        )?);
    }
    if shared {
        let address = config.public_url.clone().unwrap_or_else(|| {
            let ip = config
                .announce_addresses()
                .first()
                .copied()
                .unwrap_or(http_addr.ip());
            format!("{scheme}://{}", SocketAddr::new(ip, http_addr.port()))
        });
        tracing::info!(hub = %hub_name, %address, peers = ?config.peer_hubs, "sharing the database with other hubs: meetings run under leases");
        hub = hub.sharing(hub::Sharing {
            me: store::LeaseHolder {
                hub: hub_name.clone(),
                address,
                run: started_at,
            },
            peers: config.peer_hubs.clone(),
        });
    }
    let hub = Arc::new(hub);
    let leases_task = tokio::spawn(hub.clone().run_leases());
    let signals_task = match (hub.hub_name(), hub.store().is_shared()) {
        (Some(me), true) => hub
            .store()
            .listen(me)
            .map(|signals| tokio::spawn(hub.clone().run_signals(signals))),
        _ => None,
    };
    let events_task = tokio::spawn(hub.clone().run_media_events(events));
    let recording_task = tokio::spawn(hub.clone().run_recording_reports(recording_reports_rx));
    let liveness_task = tokio::spawn(hub.clone().run_liveness(config.liveness_interval()));
    let console_task = tokio::spawn(hub.clone().run_console(config.console_interval()));
    let login_task = tokio::spawn(hub.clone().run_login_checks(config.login_check_interval()));
    let trim_task = tokio::spawn(memory::run_trim(memory::TRIM_EVERY));
    let expiry_task = certificate_expires_at.map(|at| tokio::spawn(tls::watch_expiry(at)));
    let parent_link = cascade::link::ParentLink::default();
    let node_links = Arc::new(cascade::parent::NodeLinks::default());
    let parent_task = parent
        .map(|parent| tokio::spawn(cascade::link::run(parent, parent_link.clone(), hub.clone())));
    let max_connections = server::connection_cap(config.max_connections, open_file_limit);
    tracing::info!(
        max_connections,
        per_address = config.tcp_connections_per_address(),
        "web server connection caps"
    );
    let tcp_connections = Arc::new(ConnectionCounter::with_total(
        config.tcp_connections_per_address(),
        max_connections,
    ));
    let connection_stats = Arc::new(ConnectionStats::default());
    let state = Arc::new(AppState {
        hub: hub.clone(),
        offset: config.utc_offset,
        rules: ReportRules {
            grace,
            ..ReportRules::default()
        },
        limits: config.session_limits(),
        connections: Arc::new(ConnectionCounter::new(config.max_connections_per_address)),
        tcp_connections: tcp_connections.clone(),
        connection_stats: connection_stats.clone(),
        auth: auth::Auth::new(!config.plain_http || !config.trusted_proxy.is_empty())
            .shared_by(config.cookie_domain.clone()),
        trusted_proxies: config.trusted_proxy.clone(),
        https: !config.plain_http,
        content_security_policy: web::content_security_policy(&config.peer_hubs),
        certificate_expires_at,
        node_links: node_links.clone(),
        node_recheck_interval: config.login_check_interval(),
        parent_link,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let server_hub = hub.clone();
    let web_server = Server {
        app: web::app(state),
        tls,
        limits: config.server_limits(),
        connections: tcp_connections,
        stats: connection_stats,
    };
    let server = tokio::spawn(async move {
        web_server
            .run(listener, async {
                let _ = stopped.await;
            })
            .await;
        events_task.abort();
        recording_task.abort();
        leases_task.abort();
        if let Some(task) = &signals_task {
            task.abort();
        }
        liveness_task.abort();
        login_task.abort();
        trim_task.abort();
        console_task.abort();
        for task in [expiry_task, parent_task].into_iter().flatten() {
            task.abort();
        }
        server_hub.media().stop();
    });
    let expires = certificate_expires_at
        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
        .map_or_else(
            || "none (plain HTTP)".to_owned(),
            |at| at.date().to_string(),
        );
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        web = %format!("{scheme}://{http_addr}"),
        media_udp = %media_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        media_tcp = %media_tcp_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        certificate_expires = %expires,
        "diemcau started"
    );
    Ok(RunningHub {
        scheme,
        http_addr,
        media_addresses,
        media_tcp_addresses,
        hub,
        stop,
        server,
        node_links,
        _data_dir_lock: data_dir_lock,
    })
}

/// After a stop without warning: every session the hub cut off is closed at its last sign of
/// life, and each meeting in progress records how long the hub was down.
fn recover_from_crash(
    store: &Store,
    recorder: &store::Recorder,
    hub_name: &str,
    started_at: attendance::Millis,
    recordings_dir: &std::path::Path,
) -> Result<(), store::StoreError> {
    let crashed = store.begin_run(hub_name, started_at)?;
    if store.is_shared() {
        // Other hubs may be running meetings on this database now: only the meetings this hub
        // ran (its lease, of an earlier run) or that nobody runs are this hub's to close. The
        // others are closed by whichever hub takes them over (`hub::lease`).
        for (meeting, last_event) in store.meetings_in_progress()? {
            if store
                .lease(meeting)?
                .is_some_and(|(holder, _)| holder.hub != hub_name)
            {
                continue;
            }
            close_cut_recordings(
                store,
                recorder,
                Some(recordings_dir),
                crashed,
                Some(meeting),
            )?;
            let closed = store.close_sessions_of(recorder, meeting)?;
            if let Some(last_seen) = crashed {
                record_restart(recorder, meeting, last_seen, last_event, started_at)?;
            }
            if !closed.is_empty() {
                tracing::warn!(meeting = %meeting, sessions = closed.len(), "closed sessions left open by an unclean stop, at their last sign of life");
            }
        }
        return Ok(());
    }
    close_cut_recordings(store, recorder, Some(recordings_dir), crashed, None)?;
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
    for (meeting, last_event) in store.meetings_in_progress()? {
        record_restart(recorder, meeting, last_seen, last_event, started_at)?;
    }
    Ok(())
}

/// Ends each part of a recording a crash cut off (`meeting`'s, or all), at the hub's last
/// sign of life, with the size its file has in `recordings_dir` (0 when it is not there: the
/// part was written by another hub): it plays up to there.
pub(crate) fn close_cut_recordings(
    store: &Store,
    recorder: &store::Recorder,
    recordings_dir: Option<&std::path::Path>,
    last_seen: Option<attendance::Millis>,
    meeting: Option<diemcau_signaling::MeetingId>,
) -> Result<(), store::StoreError> {
    for (meeting, part, last_event) in store.open_recordings(meeting)? {
        let bytes = recordings_dir
            .and_then(|dir| recording::existing_in(dir, meeting, part))
            .map_or(0, |path| recording::file_size(&path));
        let at = last_seen.unwrap_or(last_event).max(last_event);
        recorder.append_blocking(
            meeting,
            at,
            attendance::EventKind::RecordingStopped {
                part,
                reason: attendance::RecordingStop::HubStopped,
                bytes,
            },
        )?;
        tracing::warn!(meeting = %meeting, part, bytes, "closed a recording cut off by an unclean stop");
    }
    Ok(())
}

/// Records in `meeting` that the hub, last known alive at `last_seen` (the meeting's last event
/// at `last_event`), stopped without warning and started again at `started_at`.
fn record_restart(
    recorder: &store::Recorder,
    meeting: diemcau_signaling::MeetingId,
    last_seen: attendance::Millis,
    last_event: attendance::Millis,
    started_at: attendance::Millis,
) -> Result<(), store::StoreError> {
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

    /// The TCP addresses announced in ICE candidates (passive, RFC 6544); empty with
    /// `--media-tcp-port off`.
    pub fn media_tcp_addresses(&self) -> &[SocketAddr] {
        &self.media_tcp_addresses
    }

    /// TCP media connections open now.
    pub fn media_tcp_connections(&self) -> usize {
        self.hub.media().tcp_connections()
    }

    /// Ends every session (recorded as left by shutdown), stops serving, stops the workers.
    pub async fn shutdown(self) {
        self.node_links.close_all();
        self.hub.shutdown_sessions().await;
        let _ = self.stop.send(());
        let _ = self.server.await;
    }

    /// Makes the first media worker panic in its own code when the process receives SIGUSR1:
    /// for the tests of what the hub does when an essential thread fails
    /// ([`essential`]). Built with the `testkit` feature only.
    #[cfg(all(unix, feature = "testkit"))]
    pub fn fail_media_on_sigusr1(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut user = signal(SignalKind::user_defined1())?;
        let hub = self.hub.clone();
        tokio::spawn(async move {
            if user.recv().await.is_some() {
                hub.media()
                    .send(media::WorkerIndex(0), media::Command::Fail);
            }
        });
        Ok(())
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM), then shuts down.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
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

/// The machine's host name: the default name of a hub among hubs sharing a database.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "diemcau".to_owned())
}
