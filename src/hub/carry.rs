//! Carries a live meeting's outputs out, in order: messages to sessions, commands to the media
//! workers, events to the attendance log.

use std::future::Future;
use std::pin::Pin;

use std::collections::HashMap;

use diemcau_sfu::PeerId;
use diemcau_signaling::MeetingId;

use super::{Connection, Hub, HubState};
use crate::attendance::Event;
use crate::media::Command;
use crate::meeting::{Output, Recipient, Route};
use crate::store::StoreError;

/// An attendance event on its way to disk.
pub(super) type PendingEvent = Pin<Box<dyn Future<Output = Result<Event, StoreError>> + Send>>;

impl Hub {
    /// Carries out everything meeting `meeting` has queued. Events are handed to the log in
    /// order now; the returned writes complete when each is on disk.
    pub(super) fn carry(&self, state: &mut HubState, meeting: MeetingId) -> Vec<PendingEvent> {
        let HubState {
            meetings,
            participants,
            pages,
            taps,
            ..
        } = state;
        let Some(live) = meetings.get_mut(&meeting) else {
            return Vec::new();
        };
        let mut pending: Vec<PendingEvent> = Vec::new();
        while let Some(output) = live.poll_output() {
            match output {
                Output::Send { to, message } => {
                    let outbox = match to {
                        Recipient::Participant(id) => participants.get(&id).map(|c| &c.outbox),
                        Recipient::Page(key) => pages.get(&key).map(|p| &p.outbox),
                    };
                    if let Some(outbox) = outbox {
                        outbox.send(message);
                    }
                }
                Output::Close { to, message } => {
                    let outbox = match to {
                        Recipient::Participant(id) => {
                            participants.get(&id).map(|c| c.outbox.clone())
                        }
                        Recipient::Page(key) => pages.remove(&key).map(|p| p.outbox),
                    };
                    if let Some(outbox) = outbox {
                        outbox.close_with(message);
                    }
                }
                Output::Log { at, kind } => {
                    pending.push(Box::pin(self.recorder.append(meeting, at, kind)));
                }
                Output::Route(route) => self.route(participants, route),
                Output::Recording(recording) => self.carry_recording(taps, live, recording),
                Output::Removed(id) => {
                    if let Some(connection) = participants.remove(&id)
                        && let Some(worker) = connection.worker
                    {
                        self.media.send(worker, Command::RemovePeer { peer: id });
                    }
                    tracing::info!(meeting = %meeting, participant = %id, "left");
                }
            }
        }
        pending
    }

    /// Like [`Hub::carry`], for inputs nobody waits on: a failed write is logged.
    pub(super) fn carry_in_background(&self, state: &mut HubState, meeting: MeetingId) {
        for logged in self.carry(state, meeting) {
            tokio::spawn(async move {
                if let Err(e) = logged.await {
                    tracing::error!("attendance event not recorded: {e}");
                }
            });
        }
    }

    fn route(&self, participants: &HashMap<PeerId, Connection>, route: Route) {
        let worker_of = |peer: PeerId| participants.get(&peer).and_then(|c| c.worker);
        // A consumer change goes to its subscriber's worker; a producer change to every worker.
        let (subscriber, command) = match route {
            Route::AddConsumer {
                subscriber,
                consumer,
                producer,
                max_layer,
                pinned,
            } => (
                subscriber,
                Command::AddConsumer {
                    peer: subscriber,
                    consumer,
                    producer,
                    max_layer,
                    pinned,
                },
            ),
            Route::SetMaxLayer {
                subscriber,
                consumer,
                max_layer,
            } => (
                subscriber,
                Command::SetMaxLayer {
                    peer: subscriber,
                    consumer,
                    max_layer,
                },
            ),
            Route::RemoveConsumer {
                subscriber,
                consumer,
            } => (
                subscriber,
                Command::RemoveConsumer {
                    peer: subscriber,
                    consumer,
                },
            ),
            Route::PauseProducer {
                router,
                producer,
                paused,
            } => {
                return self.media.broadcast(|| Command::SetProducerPaused {
                    router,
                    producer,
                    paused,
                });
            }
            Route::RemoveProducer { router, producer } => {
                return self
                    .media
                    .broadcast(|| Command::RemoveProducer { router, producer });
            }
        };
        if let Some(worker) = worker_of(subscriber) {
            self.media.send(worker, command);
        }
    }
}

/// Waits for events to be on disk; the first failure is returned.
pub(super) async fn recorded(pending: Vec<PendingEvent>) -> Result<(), StoreError> {
    for logged in pending {
        logged.await?;
    }
    Ok(())
}
