//! The chair's console: every expected site with its state and live health, sent to the
//! studio every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diemcau_signaling::protocol::{ConsoleSite, SiteState};
use diemcau_signaling::{Role, ServerMessage};

use super::{Hub, Live, SiteLive, State};
use crate::attendance::{Event, EventKind, ExpectedSite, LeaveReason, Millis};
use crate::store::now_millis;

/// What the log says of each expected site, for a meeting the hub (re)opens.
pub(super) fn sites_from_history(
    roster: &[ExpectedSite],
    history: &[Event],
) -> HashMap<String, SiteLive> {
    let mut sites: HashMap<String, SiteLive> = roster
        .iter()
        .map(|s| (s.code.clone(), SiteLive::default()))
        .collect();
    for event in history {
        let Some(site) = event.kind.site().and_then(|code| sites.get_mut(code)) else {
            continue;
        };
        match &event.kind {
            EventKind::SiteLeft { reason, .. } => site.last_leave = Some((*reason, event.at)),
            EventKind::HeadCount { count, .. } | EventKind::RollCallAnswered { count, .. } => {
                site.head_count = Some(*count);
            }
            _ => {}
        }
    }
    sites
}

impl Hub {
    /// Sends every chair its console every `every`.
    pub async fn run_console(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.send_consoles();
        }
    }

    /// Sends each meeting's console to its chair, if one is joined.
    pub fn send_consoles(&self) {
        let state = self.lock();
        let now = now_millis();
        for live in state.meetings.values() {
            let chair = live
                .rules
                .members()
                .find(|(_, m)| m.role == Role::Studio)
                .and_then(|(id, _)| state.participants.get(&id));
            if let Some(chair) = chair {
                chair.outbox.send(console(&state, live, now, self.grace));
            }
        }
    }
}

/// The console of one meeting, sites in roster order.
fn console(state: &State, live: &Live, now: Millis, grace: Millis) -> ServerMessage {
    let queue = live.rules.floor_queue();
    let sites = live
        .roster
        .iter()
        .map(|expected| {
            let s = live.sites.get(&expected.code).cloned().unwrap_or_default();
            let page_open = state
                .standby
                .values()
                .any(|p| p.site == expected.code && live.rules.id == p.meeting.to_string());
            let floor = match s.participant {
                Some(p) if live.rules.floor() == Some(p) => "holder",
                Some(p) if queue.contains(&p) => "requested",
                _ => "none",
            };
            ConsoleSite {
                site: expected.code.clone(),
                name: expected.name.clone(),
                state: site_state(&s, page_open, now, grace),
                participant: s
                    .participant
                    .and_then(|p| state.participants.get(&p))
                    .map(|p| p.info.id.clone()),
                muted: s.participant.is_some_and(|p| live.rules.is_muted(p)),
                floor: floor.to_owned(),
                bitrate_in_kbps: s.quality.bitrate_in_kbps,
                bitrate_out_kbps: s.quality.bitrate_out_kbps,
                loss_permille: s.quality.loss_permille,
                rtt_ms: s.quality.rtt_ms,
                expected_delegates: expected.expected_delegates,
                head_count: s.head_count,
                answered_roll_call: s.answered_roll_call,
            }
        })
        .collect();
    ServerMessage::Console {
        roll_call: live.rules.roll_call(),
        sites,
    }
}

fn site_state(s: &SiteLive, page_open: bool, now: Millis, grace: Millis) -> SiteState {
    if s.participant.is_some() {
        return match (s.connected, s.audio_only) {
            (false, _) => SiteState::Connecting,
            (true, true) => SiteState::AudioOnly,
            (true, false) => SiteState::Live,
        };
    }
    if page_open {
        return SiteState::PageOpen;
    }
    match s.last_leave {
        None => SiteState::NotJoined,
        Some((LeaveReason::NetworkTimeout | LeaveReason::HubCrash, at)) if now - at <= grace => {
            SiteState::Reconnecting
        }
        Some(_) => SiteState::Left,
    }
}
