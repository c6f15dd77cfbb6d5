//! Signals between hubs that share a PostgreSQL database, through its `NOTIFY`: what the pages
//! of one hub do to a meeting another hub runs (ending it, reissuing a site's code) reaches the
//! hub that runs it within a moment. A hub on SQLite is alone and sends none.
//!
//! A signal is sent once and heard by the hubs listening at that moment: one whose listening
//! connection is down misses it. What depends on it checks the outcome (ending a meeting
//! waits for its end in the log) or is safe without it (a reissued code is refused to new
//! joins by every hub at once, from the database).

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};

use super::db::args;
use super::{Database, Store, StoreError};

/// The channel the hubs listen on.
const CHANNEL: &str = "diemcau_hubs";

/// What one hub asks of the hub that runs a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum HubSignal {
    /// End the meeting (asked on the pages of a hub that does not run it).
    EndMeeting { meeting: i64 },
    /// The site's join code was reissued: a session joined with the old one ends.
    CodeReissued { meeting: i64, site: String },
}

/// A signal as it travels: with the name of the hub that sent it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    signal: HubSignal,
}

impl Store {
    /// Sends `signal` to the other hubs sharing the database, as hub `from`; nothing with
    /// SQLite.
    pub fn signal(&self, from: &str, signal: HubSignal) -> Result<(), StoreError> {
        if !self.is_shared() {
            return Ok(());
        }
        let payload = serde_json::to_string(&Envelope {
            from: from.to_owned(),
            signal,
        })
        .map_err(|e| StoreError::Internal(format!("a signal that cannot be written: {e}")))?;
        self.writer()
            .execute("SELECT pg_notify($1, $2)", args![CHANNEL, payload])?;
        Ok(())
    }

    /// Listens, on a connection and a thread of its own, for the signals other hubs send;
    /// those hub `me` sent itself are left out. The connection is opened again a second
    /// after it fails. `None` with SQLite. Listening stops when the receiver is dropped.
    pub fn listen(&self, me: &str) -> Option<tokio::sync::mpsc::UnboundedReceiver<HubSignal>> {
        let Database::Postgres(target) = &self.inner.database else {
            return None;
        };
        let target = (**target).clone();
        let me = me.to_owned();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let spawned = crate::essential::spawn("hub-signals", move || {
            // A failure is said when listening stops, not at every try to begin again.
            let mut listening = true;
            while !sender.is_closed() {
                let was_listening = listening;
                if let Err(e) = listen_on(&target, &me, &sender, &mut listening) {
                    if was_listening || listening {
                        tracing::warn!(
                            "listening for the other hubs' signals failed (tried again every second): {e}"
                        );
                    }
                    listening = false;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot listen for the other hubs' signals: {e}");
        }
        Some(receiver)
    }
}

/// One connection's listening, until it fails or nobody receives any more; `listening` is set
/// once it listens.
fn listen_on(
    target: &super::PostgresTarget,
    me: &str,
    sender: &tokio::sync::mpsc::UnboundedSender<HubSignal>,
    listening: &mut bool,
) -> Result<(), StoreError> {
    let mut client = target.client()?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    *listening = true;
    while !sender.is_closed() {
        if client.is_closed() {
            return Err(StoreError::Unreachable(
                "the listening connection closed".to_owned(),
            ));
        }
        let mut notifications = client.notifications();
        let mut heard = notifications.timeout_iter(Duration::from_secs(1));
        while let Some(notification) = heard.next()? {
            match serde_json::from_str::<Envelope>(notification.payload()) {
                Ok(envelope) if envelope.from == me => {}
                Ok(envelope) => {
                    tracing::info!(from = %envelope.from, signal = ?envelope.signal, "a signal from another hub");
                    if sender.send(envelope.signal).is_err() {
                        return Ok(());
                    }
                }
                Err(e) => tracing::warn!(
                    payload = notification.payload(),
                    "a signal this hub does not read (a newer release sent it?): {e}"
                ),
            }
        }
    }
    Ok(())
}
