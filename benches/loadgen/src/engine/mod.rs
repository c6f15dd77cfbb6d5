//! The peer engine: a few threads, each driving many str0m `Rtc`s (the simulated studio and
//! sites) in RTP mode.
//!
//! Each peer has its own UDP socket on loopback (the hub tells peers apart by source address,
//! so they cannot share one); a thread registers all its peers' sockets with one epoll (mio),
//! so a datagram reaches its peer by the socket's token, never by a scan. Each thread keeps its
//! peers' wake-ups (str0m timeouts, the next audio packet, the next video frame) in one binary
//! heap and drives only the due ones. A peer is polled right after every datagram it is fed:
//! in RTP mode str0m holds one received packet at a time.
//!
//! A site behind an emulated link ([`crate::link`]) has its datagrams from the hub held in
//! its downlink until they are due, and its own datagrams in its uplink; their due times are
//! wake-ups in the same heap.
//!
//! The signalling tasks (tokio) talk to the engine through [`Engine`]: create a peer and get its
//! offer, apply the hub's answer, answer the hub's offers. With several threads the studio
//! has the first to itself and the sites share the others.
//!
//! Layout: `reports` (what a peer is asked to be and what it measures), `thread` (one
//! thread's poll loop and commands), `peer` (one endpoint), `context` (a thread's state apart
//! from its peers: wake-ups, clock, links).

mod arrival;
mod context;
mod headers;
mod peer;
mod reports;
mod tcp;
mod thread;

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use context::Ctx;
pub use headers::{HeaderCounts, SAMPLE_EVERY, WindowCount};
pub use reports::{
    EngineError, PeerLink, PeerReport, PeerSpec, PeerStatus, Progress, ReceivedStream, STUDIO,
    SentStream, ThreadReport,
};
use thread::{Command, ThreadHandle};

use crate::measure::Window;
use crate::media::Clock;

/// The engine's threads. States: running → finished ([`Engine::finish`] collects the reports
/// and ends the threads).
#[derive(Debug)]
pub struct Engine {
    threads: Vec<ThreadHandle>,
    joins: std::sync::Mutex<Vec<JoinHandle<()>>>,
    pub progress: Arc<Progress>,
}

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub threads: usize,
    /// Address the peers' sockets bind to (and announce as their ICE host candidate).
    pub local_ip: IpAddr,
    pub clock: Clock,
    pub window: Arc<Window>,
}

impl Engine {
    pub fn start(config: EngineConfig) -> io::Result<Engine> {
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| io::Error::other("no DTLS certificate"))?;
        let progress = Arc::new(Progress::default());
        let mut threads = Vec::new();
        let mut joins = Vec::new();
        for index in 0..config.threads.max(1) {
            let ctx = Ctx::new(
                config.clock,
                config.window.clone(),
                progress.clone(),
                cert.clone(),
                config.local_ip,
            );
            let (thread, join) = thread::spawn(index, ctx)?;
            threads.push(thread);
            joins.push(join);
        }
        Ok(Engine {
            threads,
            joins: std::sync::Mutex::new(joins),
            progress,
        })
    }

    /// The thread of peer `id`. With two threads or more the studio has one to itself: it
    /// sends every packet the sites receive, and its timing is what delay is measured from.
    fn thread_of(&self, id: u32) -> usize {
        let threads = self.threads.len().max(1);
        match threads {
            1 => 0,
            _ if id == STUDIO => 0,
            _ => 1 + (id as usize - 1) % (threads - 1),
        }
    }

    fn send_to_thread(&self, index: usize, command: Command) -> Result<(), EngineError> {
        self.threads
            .get(index)
            .ok_or(EngineError::Gone)?
            .send(command)
    }

    /// Sends a command to the thread of peer `id` and waits for its reply.
    async fn ask<T>(
        &self,
        id: u32,
        command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send_to_thread(self.thread_of(id), command(reply))?;
        answer.await.map_err(|_| EngineError::Gone)?
    }

    /// Sends a command to every thread in turn; the replies of those that answer.
    async fn ask_every_thread<T>(&self, command: impl Fn(oneshot::Sender<T>) -> Command) -> Vec<T> {
        let mut replies = Vec::new();
        for index in 0..self.threads.len() {
            let (reply, answer) = oneshot::channel();
            if self.send_to_thread(index, command(reply)).is_ok()
                && let Ok(reply) = answer.await
            {
                replies.push(reply);
            }
        }
        replies
    }

    /// Creates a peer and returns its first offer (its published tracks).
    pub async fn create(&self, spec: PeerSpec) -> Result<String, EngineError> {
        let id = spec.id;
        self.ask(id, |reply| Command::Create {
            spec: Box::new(spec),
            reply,
        })
        .await
    }

    /// Applies the hub's answer to the peer's offer.
    pub async fn accept_answer(&self, id: u32, sdp: String) -> Result<(), EngineError> {
        self.ask(id, |reply| Command::Answer { id, sdp, reply })
            .await
    }

    /// Answers a hub offer.
    pub async fn accept_offer(&self, id: u32, sdp: String) -> Result<String, EngineError> {
        self.ask(id, |reply| Command::Offer { id, sdp, reply })
            .await
    }

    /// Closes a peer (its participant left).
    pub fn close(&self, id: u32) {
        let _ = self.send_to_thread(self.thread_of(id), Command::Close { id });
    }

    /// Every peer's status.
    pub async fn status(&self) -> Vec<PeerStatus> {
        self.ask_every_thread(|reply| Command::Status { reply })
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Ends every thread and returns what each measured.
    pub async fn finish(&self) -> Vec<ThreadReport> {
        let reports = self
            .ask_every_thread(|reply| Command::Finish { reply })
            .await;
        let joins = std::mem::take(&mut *self.joins.lock().unwrap_or_else(|e| e.into_inner()));
        for join in joins {
            let _ = join.join();
        }
        reports
    }
}
