//! What the hub does every few seconds: liveness marks for crash recovery, the chair's
//! console, and checks of the logins that chair meetings.

use std::sync::Arc;
use std::time::Duration;

use diemcau_signaling::{MeetingId, SessionId};

use super::Hub;
use crate::store::now_millis;

impl Hub {
    /// Every `every`, notes that this run of the hub is alive and which sessions are (see
    /// [`crate::store::Store::touch_sessions`]): after a crash, the hub's downtime and the
    /// sessions it cut off are dated from these marks.
    pub async fn run_liveness(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        // A failure is said when it begins, not at every tick while the database is away.
        let mut failing = false;
        loop {
            tick.tick().await;
            let started_at = self.started_at;
            let sessions: Vec<(MeetingId, SessionId)> = {
                let state = self.lock();
                state
                    .meetings
                    .values()
                    .flat_map(|live| {
                        live.sessions()
                            .map(move |session| (live.id(), session.clone()))
                    })
                    .collect()
            };
            let touched = self
                .store
                .blocking(move |store| {
                    let now = now_millis();
                    store.touch_run(started_at, now)?;
                    if !sessions.is_empty() {
                        store.touch_sessions(&sessions, now)?;
                    }
                    Ok::<_, crate::store::StoreError>(())
                })
                .await;
            match &touched {
                Err(e) if !failing => tracing::warn!("liveness not recorded: {e}"),
                Err(_) => {}
                Ok(()) if failing => tracing::info!("liveness recorded again"),
                Ok(()) => {}
            }
            failing = touched.is_err();
        }
    }

    /// Every `every`, tells each meeting whether its attendance log waits on local disk for the
    /// database, and lets it refresh its chair's console when it is due.
    pub async fn run_console(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = now_millis();
            let buffered = self.recorder.buffered();
            let shed_level = self.media().stats().shed_level;
            let mut state = self.lock();
            let open: Vec<MeetingId> = state.meetings.keys().copied().collect();
            for id in open {
                // Each meeting tells its chair of a change only.
                if let Some(live) = state.meetings.get_mut(&id) {
                    live.log_buffering(buffered);
                    live.hub_load(shed_level);
                }
                self.carry_in_background(&mut state, id);
            }
            let due: Vec<MeetingId> = state
                .meetings
                .values()
                .filter(|live| live.poll_timeout().is_some_and(|at| at <= now))
                .map(|live| live.id())
                .collect();
            for id in due {
                if let Some(live) = state.meetings.get_mut(&id) {
                    live.handle_timeout(now);
                }
                self.carry_in_background(&mut state, id);
            }
        }
    }

    /// Checks, every `every`, that the login of each session chairing a meeting is still
    /// valid, and ends the sessions whose login has ended outside this process: a password
    /// changed or an account disabled with `diemcau account`, or a session expired. A logout
    /// through this hub ends them at once ([`Hub::end_login`]).
    pub async fn run_login_checks(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut logins: Vec<String> = self
                .lock()
                .participants
                .values()
                .filter_map(|c| c.login.clone())
                .collect();
            logins.sort_unstable();
            logins.dedup();
            if logins.is_empty() {
                continue;
            }
            let store = self.store.clone();
            let ended = tokio::task::spawn_blocking(move || {
                let now = now_millis();
                logins
                    .into_iter()
                    .filter(|login| {
                        matches!(
                            store.login_session(login, now, crate::auth::SESSION_LIMITS),
                            Ok(None)
                        )
                    })
                    .collect::<Vec<String>>()
            })
            .await
            .unwrap_or_default();
            for login in ended {
                self.end_login(&login).await;
            }
        }
    }
}
