//! Starting and ending meetings, logins that end, and the hub's shutdown.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_signaling::{ErrorCode, MeetingId, ProtocolError, SiteCode};

use super::Hub;
use super::carry::{PendingEvent, recorded};
use crate::attendance::{EventKind, LeaveReason};
use crate::store::{HubSignal, LeaseHolder, MeetingRoster, MeetingState, StoreError, now_millis};

/// How long ending a meeting that another hub runs waits for that hub to end it.
const END_ELSEWHERE_WAIT: Duration = Duration::from_secs(5);

/// Why an organizer's request about a meeting is refused.
#[derive(Debug, thiserror::Error)]
pub enum MeetingError {
    #[error("meeting {0} does not exist")]
    NotFound(MeetingId),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hub {
    /// Opens a meeting: its time counts in reports from now.
    pub async fn start_meeting(&self, id: MeetingId) -> Result<(), MeetingError> {
        let view = self.meeting_view(id).await?;
        if view.state != MeetingState::Scheduled {
            return Err(MeetingError::Conflict(format!(
                "meeting {id} has already been started"
            )));
        }
        self.recorder
            .append(id, now_millis(), EventKind::MeetingStarted)
            .await?;
        tracing::info!(meeting = %id, "meeting started");
        Ok(())
    }

    /// This hub, a province's, lost or found again the national centre of `meeting` (its part
    /// of a national meeting): its participants are told, if it is open.
    pub fn centre_changed(&self, meeting: MeetingId, reachable: bool) {
        let mut state = self.lock();
        if let Some(live) = state.meetings.get_mut(&meeting) {
            live.centre_changed(reachable);
            self.carry_in_background(&mut state, meeting);
        }
    }

    /// Closes a meeting: every connected participant's session ends.
    pub async fn end_meeting(&self, id: MeetingId) -> Result<(), MeetingError> {
        let view = self.meeting_view(id).await?;
        if view.state != MeetingState::InProgress {
            return Err(MeetingError::Conflict(format!(
                "meeting {id} is not in progress"
            )));
        }
        if let Some(holder) = self.runs_elsewhere(id).await? {
            return self.end_elsewhere(id, &holder).await;
        }
        self.end_here(id).await
    }

    /// Ends meeting `id`, open here or not open anywhere.
    async fn end_here(&self, id: MeetingId) -> Result<(), MeetingError> {
        let now = now_millis();
        let pending: Vec<PendingEvent> = {
            let mut state = self.lock();
            match state.meetings.get_mut(&id) {
                Some(live) => {
                    live.end(now);
                    self.carry(&mut state, id)
                }
                None => vec![Box::pin(self.recorder.append(
                    id,
                    now,
                    EventKind::MeetingEnded,
                ))],
            }
        };
        recorded(pending).await?;
        self.release(id).await;
        tracing::info!(meeting = %id, "meeting ended");
        Ok(())
    }

    /// Ends the studio sessions chairing with a login that has just ended (its logout): a
    /// chair's rights last no longer than the login they came from.
    pub async fn end_login(&self, token_sha256: &str) {
        let now = now_millis();
        let notice = ProtocolError::new(
            ErrorCode::LoginRequired,
            "this login has ended; log in again to chair the meeting",
        )
        .to_message();
        let (ended, pending) = {
            let mut state = self.lock();
            let ended: Vec<(PeerId, MeetingId)> = state
                .participants
                .iter()
                .filter(|(_, c)| c.login.as_deref() == Some(token_sha256))
                .map(|(id, c)| (*id, c.meeting))
                .collect();
            let mut pending = Vec::new();
            for (id, meeting) in &ended {
                if let Some(live) = state.meetings.get_mut(meeting) {
                    live.leave(now, *id, LeaveReason::Closed, Some(notice.clone()));
                }
                pending.extend(self.carry(&mut state, *meeting));
            }
            (ended, pending)
        };
        if let Err(e) = recorded(pending).await {
            tracing::error!("recording the end of a chair's login failed: {e}");
        }
        for (peer, _) in ended {
            tracing::info!(participant = %peer, "studio session ended with its login");
        }
    }

    /// Asks the hub that runs meeting `id` to end it, and waits for its end in the log.
    async fn end_elsewhere(&self, id: MeetingId, holder: &LeaseHolder) -> Result<(), MeetingError> {
        let from = self.hub_name().unwrap_or_default().to_owned();
        self.store
            .blocking(move |store| store.signal(&from, HubSignal::EndMeeting { meeting: id.0 }))
            .await?;
        let deadline = tokio::time::Instant::now() + END_ELSEWHERE_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.meeting_view(id).await?.state == MeetingState::Ended {
                tracing::info!(meeting = %id, hub = %holder.hub, "meeting ended by the hub that runs it");
                return Ok(());
            }
        }
        Err(MeetingError::Conflict(format!(
            "meeting {id} runs on hub {}, which did not end it within {} s: try again, or \
             end it from that hub's pages ({})",
            holder.hub,
            END_ELSEWHERE_WAIT.as_secs(),
            holder.address
        )))
    }

    /// What another hub sharing the database asks of the meetings this one runs.
    pub async fn run_signals(
        self: std::sync::Arc<Self>,
        mut signals: tokio::sync::mpsc::UnboundedReceiver<HubSignal>,
    ) {
        while let Some(signal) = signals.recv().await {
            match signal {
                HubSignal::EndMeeting { meeting } => {
                    let id = MeetingId(meeting);
                    let open_here = self
                        .lock()
                        .meetings
                        .get(&id)
                        .is_some_and(|live| !live.has_ended());
                    if open_here && let Err(e) = self.end_here(id).await {
                        tracing::error!(meeting = %id, "ending a meeting another hub asked to end failed: {e}");
                    }
                }
                HubSignal::CodeReissued { meeting, site } => {
                    if let Ok(site) = SiteCode::try_from(site.as_str()) {
                        self.code_reissued(MeetingId(meeting), &site).await;
                    }
                }
            }
        }
    }

    /// A site's join code was reissued here: whoever joined or waits with the old one is sent
    /// away, on this hub now and, through the database, on the hub that runs the meeting.
    pub async fn code_reissued_here(&self, meeting: MeetingId, site: &SiteCode) {
        self.code_reissued(meeting, site).await;
        if let Some(from) = self.hub_name().map(str::to_owned) {
            let signal = HubSignal::CodeReissued {
                meeting: meeting.0,
                site: site.as_str().to_owned(),
            };
            if let Err(e) = self
                .store
                .blocking(move |store| store.signal(&from, signal))
                .await
            {
                tracing::warn!(meeting = %meeting, "the other hubs were not told of a reissued code (new joins with the old one are refused all the same): {e}");
            }
        }
    }

    /// A site's join code was reissued: whoever joined or waits with the old one is sent away
    /// now, recorded as removed.
    pub async fn code_reissued(&self, meeting: MeetingId, site: &SiteCode) {
        let pending = {
            let mut state = self.lock();
            let Some(live) = state.meetings.get_mut(&meeting) else {
                return;
            };
            live.code_reissued(now_millis(), site);
            self.carry(&mut state, meeting)
        };
        if let Err(e) = recorded(pending).await {
            tracing::error!("recording the end of a reissued code's session failed: {e}");
        }
    }

    /// Ends every session before the hub stops, recording each site as left by shutdown.
    pub async fn shutdown_sessions(&self) {
        let now = now_millis();
        let pending = {
            let mut state = self.lock();
            self.stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let meetings: Vec<MeetingId> = state.meetings.keys().copied().collect();
            let mut pending = Vec::new();
            for id in meetings {
                if let Some(live) = state.meetings.get_mut(&id) {
                    live.shut_down(now);
                }
                pending.extend(self.carry(&mut state, id));
            }
            pending
        };
        if let Err(e) = recorded(pending).await {
            tracing::error!("recording a shutdown leave failed: {e}");
        }
        self.stop_recordings().await;
        self.release_all().await;
        let started_at = self.started_at;
        let noted = self
            .store
            .blocking(move |store| store.end_run(started_at, now_millis()))
            .await;
        if let Err(e) = noted {
            tracing::error!("the clean stop was not noted; the next start will count a crash: {e}");
        }
    }

    async fn meeting_view(&self, id: MeetingId) -> Result<MeetingRoster, MeetingError> {
        self.store
            .blocking(move |store| store.meeting_roster(id))
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => MeetingError::NotFound(id),
                other => MeetingError::Store(other),
            })
    }
}
