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
        loop {
            tick.tick().await;
            let started_at = self.started_at;
            let touched = self
                .store
                .blocking(move |store| store.touch_run(started_at, now_millis()))
                .await;
            if let Err(e) = touched {
                tracing::warn!("the hub's liveness not recorded: {e}");
            }
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
            if sessions.is_empty() {
                continue;
            }
            let store = self.store.clone();
            let touched =
                tokio::task::spawn_blocking(move || store.touch_sessions(&sessions, now_millis()))
                    .await;
            if let Ok(Err(e)) = touched {
                tracing::warn!("liveness not recorded: {e}");
            }
        }
    }

    /// Every `every`, lets each meeting refresh its chair's console when it is due.
    pub async fn run_console(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = now_millis();
            let mut state = self.lock();
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
