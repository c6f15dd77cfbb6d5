//! diemcau: a video conference hub for province-to-commune online meetings.
//!
//! Layout:
//! - [`config`]: flags and defaults;
//! - [`meeting`]: the meeting rules (who joins, who receives whom), no IO;
//! - [`hub`]: signalling sessions turned into meeting and media-plane calls;
//! - [`media`]: the media driver, worker threads with UDP sockets around the sans-IO
//!   `diemcau_sfu::Worker`;
//! - [`web`]: HTTP routes: embedded pages, `/ws` signalling, `/api/health`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let hub = diemcau::start(diemcau::Config::for_tests()).await?;
//! println!("open http://{}/", hub.http_addr());
//! hub.shutdown().await;
//! # Ok(()) }
//! ```

pub mod attendance;
pub mod config;
pub mod directory;
pub mod hub;
pub mod media;
pub mod meeting;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
use hub::Hub;
use media::MediaPlane;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A hub serving HTTP and media. States: running → shut down.
#[derive(Debug)]
pub struct RunningHub {
    http_addr: SocketAddr,
    media_addresses: Vec<SocketAddr>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// Binds the web server and the media sockets and starts serving.
pub async fn start(config: Config) -> std::io::Result<RunningHub> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let http_addr = listener.local_addr()?;
    let (media, events) = MediaPlane::start(&config.media())?;
    let media_addresses = media.addresses();
    let hub = Arc::new(Hub::new(media, config.max_participants));
    let events_task = tokio::spawn(hub.clone().run_media_events(events));
    let (stop, stopped) = oneshot::channel::<()>();
    let app = web::app(hub.clone());
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("web server failed: {e}");
        }
        events_task.abort();
        // Sessions hold the hub until their sockets close; stop the workers through any
        // handle that is left.
        match Arc::try_unwrap(hub) {
            Ok(hub) => hub.into_media().stop(),
            Err(hub) => hub.media().broadcast(|| media::Command::Stop),
        }
    });
    Ok(RunningHub {
        http_addr,
        media_addresses,
        stop,
        server,
    })
}

impl RunningHub {
    /// Where the web server listens (pages, `/ws`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The UDP addresses announced in ICE candidates.
    pub fn media_addresses(&self) -> &[SocketAddr] {
        &self.media_addresses
    }

    /// Stops accepting, lets sessions close, stops the media workers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM).
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
