//! Hubs that share one PostgreSQL database (a standby pair): each live meeting runs on one hub,
//! the holder of its lease (`crate::store` arbitrates). A hub takes a meeting's lease when it
//! opens the meeting for a join, renews every lease it holds every second, gives it up when the
//! meeting ends or the hub stops, and hands the meeting over (its sessions closed with
//! `other_hub`) as soon as it cannot be sure it still holds it: another hub took it, or the
//! database has not answered for most of a lease's time while a partner hub may reach it
//! (`peers`).
//!
//! A hub that takes the lease of a meeting in progress from another hub (or from its own run
//! before a crash) closes the sessions the log shows open, at their last sign of life, records
//! the takeover, and rebuilds the meeting from its log (`crate::meeting`): the sites reconnect
//! and find the floor, the muted sites and the roll call as they were.

use std::time::{Duration, Instant};

use diemcau_signaling::{MeetingId, ProtocolError};

use super::Hub;
use super::peers::{self, PeersSay};
use crate::attendance::{EventKind, Millis};
use crate::store::{LeaseHolder, LeaseOutcome, MeetingState, StoreError, now_millis};

/// How long a lease lasts unrenewed, in milliseconds. A hub that dies is replaced after this
/// time at most, plus a page's retry.
pub const LEASE_MILLIS: Millis = 5_000;

/// How often the leases are renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// How long a partner hub has to answer whether it reaches the database.
const PEER_TIMEOUT: Duration = Duration::from_millis(800);

/// A hub's place among the hubs sharing its database.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// This hub as leases name it.
    pub me: LeaseHolder,
    /// The other hubs' public URLs.
    pub peers: Vec<String>,
}

impl Hub {
    /// Before a meeting is opened here for a join: takes its lease, when the database is
    /// shared. Refused with `other_hub` (naming the holder) while another hub holds it.
    pub(super) async fn claim(&self, meeting: MeetingId) -> Result<(), ProtocolError> {
        let Some(sharing) = &self.sharing else {
            return Ok(());
        };
        let me = sharing.me.clone();
        let outcome = self
            .store
            .blocking(move |store| store.take_lease(meeting, &me, LEASE_MILLIS, true))
            .await
            .map_err(|e| {
                tracing::error!(meeting = %meeting, "the meeting's lease could not be taken: {e}");
                super::internal("the hub could not take this meeting; try again")
            })?;
        let previous = match outcome {
            LeaseOutcome::Held { holder, remaining } => {
                tracing::info!(meeting = %meeting, holder = %holder.hub, remaining, "the meeting runs on another hub");
                return Err(ProtocolError::other_hub(Some(holder.address)));
            }
            LeaseOutcome::Taken { previous, .. } => previous,
        };
        *self
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.take_over(meeting, previous).await.map_err(|e| {
            tracing::error!(meeting = %meeting, "taking the meeting over failed: {e}");
            super::internal("the hub could not take this meeting over; try again")
        })
    }

    /// This hub now runs a meeting it did not have open: the sessions the log shows open
    /// were cut off (whoever ran it has stopped, or this hub handed it over), and are closed
    /// at their last sign of life. Taken from another hub, the takeover is recorded; from this
    /// hub's run before a crash, the restart (unless its start-up recorded it already).
    async fn take_over(
        &self,
        meeting: MeetingId,
        previous: Option<LeaseHolder>,
    ) -> Result<(), StoreError> {
        let recorder = self.recorder.clone();
        let me = self.sharing.as_ref().map(|s| s.me.hub.clone());
        let recordings = self.recordings.as_ref().map(|r| r.dir().to_owned());
        self.store
            .blocking(move |store| {
                if store.meeting_roster(meeting)?.state != MeetingState::InProgress {
                    return Ok(());
                }
                let closed = store.close_sessions_of(&recorder, meeting)?;
                let down_since = closed.iter().copied().max().unwrap_or_else(now_millis);
                // A part of its recording the stop cut off ends there too (its file lies on
                // the hub that wrote it: its size is known here only if that was this hub).
                crate::close_cut_recordings(
                    store,
                    &recorder,
                    recordings.as_deref(),
                    Some(down_since),
                    Some(meeting),
                )?;
                let kind = match previous {
                    Some(previous) if Some(&previous.hub) != me.as_ref() => {
                        tracing::warn!(meeting = %meeting, from = %previous.hub, sessions = closed.len(), "took over a meeting in progress");
                        EventKind::HubTakeover {
                            from: previous.hub,
                            to: me.unwrap_or_default(),
                            down_since,
                        }
                    }
                    Some(_) if !closed.is_empty() => EventKind::HubRestarted { down_since },
                    _ => return Ok(()),
                };
                recorder.append_blocking(meeting, now_millis(), kind)?;
                Ok(())
            })
            .await
    }

    /// Renews the leases of the meetings open here every second, and hands over those this
    /// hub may no longer hold. Runs until the hub stops.
    pub async fn run_leases(self: std::sync::Arc<Self>) {
        let Some(sharing) = self.sharing.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(RENEW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A failure is said when it begins, not at every renewal while the database is away.
        let mut failing = false;
        loop {
            tick.tick().await;
            let open: Vec<MeetingId> = self
                .lock()
                .meetings
                .iter()
                .filter(|(_, live)| !live.has_ended())
                .map(|(id, _)| *id)
                .collect();
            if open.is_empty() {
                continue;
            }
            let me = sharing.me.clone();
            let asked = open.clone();
            let began = Instant::now();
            let renewed = self
                .store
                .blocking(move |store| store.renew_leases(&asked, &me, LEASE_MILLIS))
                .await;
            match renewed {
                Ok((held, _)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("the meetings' leases are renewed again");
                    }
                    *self
                        .leases
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = began;
                    for lost in open.iter().filter(|id| !held.contains(id)) {
                        self.hand_over(*lost).await;
                    }
                }
                Err(e) => {
                    let last = *self
                        .leases
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    // With partners, stop before the lease can have run out by the database's
                    // clock (one of them may take it then), unless every partner says the
                    // database is down for it too: nobody can take the meetings then. A hub
                    // without partners keeps its meetings: nobody else is there to run them.
                    // Either way it renews its leases when the database is back (nobody took
                    // them), and the log waits on local disk meanwhile.
                    let safe = Duration::from_millis((LEASE_MILLIS - 1_500).unsigned_abs());
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!("the meetings' leases could not be renewed: {e}");
                    }
                    if last.elapsed() < safe || sharing.peers.is_empty() {
                        continue;
                    }
                    match peers::ask(&sharing.peers, PEER_TIMEOUT).await {
                        PeersSay::Down => {
                            tracing::warn!(
                                "no hub reaches the database: this hub keeps its meetings"
                            );
                        }
                        said => {
                            tracing::warn!(
                                ?said,
                                "the database may be up for another hub: the meetings are handed over"
                            );
                            for id in open {
                                self.hand_over(id).await;
                            }
                        }
                    }
                }
            }
        }
    }

    /// This hub may no longer run `meeting`: its sessions and pages are closed with
    /// `other_hub`, naming the hub that holds it if the database says, and it is forgotten
    /// here (a later join opens it again, from its log).
    async fn hand_over(&self, meeting: MeetingId) {
        let holder = self
            .store
            .blocking(move |store| store.lease(meeting))
            .await
            .ok()
            .flatten()
            .map(|(holder, _)| holder)
            .filter(|holder| {
                self.sharing
                    .as_ref()
                    .is_none_or(|sharing| holder.hub != sharing.me.hub)
            });
        tracing::warn!(meeting = %meeting, holder = ?holder.as_ref().map(|h| &h.hub), "handing the meeting over: this hub no longer holds its lease");
        let mut state = self.lock();
        if let Some(live) = state.meetings.get_mut(&meeting) {
            live.hand_over(now_millis(), holder.map(|h| h.address));
        }
        // Nothing is logged by a hand-over: the hub taking over records it.
        drop(self.carry(&mut state, meeting));
        state.meetings.remove(&meeting);
        self.drop_recording(&mut state.taps, meeting);
    }

    /// The other hub that runs `meeting` now (holds its lease, unexpired), if any.
    pub(super) async fn runs_elsewhere(
        &self,
        meeting: MeetingId,
    ) -> Result<Option<LeaseHolder>, StoreError> {
        let Some(sharing) = &self.sharing else {
            return Ok(None);
        };
        if self.lock().meetings.contains_key(&meeting) {
            return Ok(None);
        }
        let me = sharing.me.hub.clone();
        let lease = self
            .store
            .blocking(move |store| store.lease(meeting))
            .await?;
        Ok(lease
            .filter(|(holder, remaining)| holder.hub != me && *remaining >= 0)
            .map(|(holder, _)| holder))
    }

    /// Gives up this hub's lease of `meeting` (it ended here).
    pub(super) async fn release(&self, meeting: MeetingId) {
        let Some(sharing) = &self.sharing else {
            return;
        };
        let me = sharing.me.clone();
        if let Err(e) = self
            .store
            .blocking(move |store| store.release_lease(meeting, &me))
            .await
        {
            tracing::warn!(meeting = %meeting, "the meeting's lease could not be given up (it runs out by itself): {e}");
        }
    }

    /// Gives up every lease this hub holds, as it stops: the other hubs may take the meetings
    /// at once.
    pub(super) async fn release_all(&self) {
        let open: Vec<MeetingId> = self.lock().meetings.keys().copied().collect();
        for meeting in open {
            self.release(meeting).await;
        }
    }

    /// The other hubs sharing this hub's database, by their public URLs.
    pub fn peer_hubs(&self) -> &[String] {
        self.sharing.as_ref().map_or(&[], |s| s.peers.as_slice())
    }

    /// The meetings this hub runs now (holds the lease of), by id.
    pub fn held_meetings(&self) -> Vec<i64> {
        let mut held: Vec<i64> = self
            .lock()
            .meetings
            .iter()
            .filter(|(_, live)| !live.has_ended())
            .map(|(id, _)| id.0)
            .collect();
        held.sort_unstable();
        held
    }

    /// This hub's public address among hubs sharing its database, if it shares one.
    pub fn public_address(&self) -> Option<&str> {
        self.sharing.as_ref().map(|s| s.me.address.as_str())
    }

    /// This hub's name among hubs sharing its database, if it shares one.
    pub fn hub_name(&self) -> Option<&str> {
        self.sharing.as_ref().map(|s| s.me.hub.as_str())
    }
}
