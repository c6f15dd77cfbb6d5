//! What the meeting knows of each expected site right now, and the chair's console built from
//! it: every expected site with its state and live health.

use std::collections::{HashMap, HashSet};

use diemcau_sfu::{PeerId, Quality};
use diemcau_signaling::protocol::{ConsoleSite, FloorState, MediaTransport, SiteState};
use diemcau_signaling::{Role, ServerMessage, SessionId, SiteCode};

use super::LiveMeeting;
use super::join_limit::JoinLimit;
use crate::attendance::{Event, EventKind, ExpectedSite, LeaveReason, Millis};

/// One expected site of a live meeting. States: not joined → joined (connecting → live or
/// audio only) → left (within the grace time: expected back) → joined again...
#[derive(Debug, Default, Clone)]
pub(super) struct SiteStatus {
    /// Its participant while joined.
    pub participant: Option<PeerId>,
    /// Its media connection is up.
    pub connected: bool,
    pub audio_only: bool,
    pub quality: Quality,
    /// How, when and which session last left, for the console and to continue the attendance
    /// row of a site back within the grace time.
    pub last_leave: Option<LastLeave>,
    pub head_count: Option<u32>,
    pub answered_roll_call: bool,
    /// How often its join code is used.
    pub joins: JoinLimit,
}

#[derive(Debug, Clone)]
pub(super) struct LastLeave {
    pub reason: LeaveReason,
    pub at: Millis,
    pub session: SessionId,
}

/// The expected sites of a meeting as its log tells them: who left last how and when, and the
/// head counts declared, for a meeting the hub opens again (after a restart, or after everyone
/// had left).
pub(super) fn sites_from_history(
    roster: &[(SiteCode, ExpectedSite)],
    history: &[Event],
) -> HashMap<SiteCode, SiteStatus> {
    let mut sites: HashMap<SiteCode, SiteStatus> = roster
        .iter()
        .map(|(code, _)| (code.clone(), SiteStatus::default()))
        .collect();
    for event in history {
        let Some(site) = event.kind.site().and_then(|code| sites.get_mut(code)) else {
            continue;
        };
        match &event.kind {
            EventKind::SiteLeft {
                reason, session, ..
            } => {
                site.last_leave = Some(LastLeave {
                    reason: *reason,
                    at: event.at,
                    session: SessionId(session.clone()),
                });
            }
            EventKind::HeadCount { count, .. } | EventKind::RollCallAnswered { count, .. } => {
                site.head_count = Some(*count);
            }
            _ => {}
        }
    }
    sites
}

impl LiveMeeting {
    /// Sends the chair its console now and schedules the next.
    pub(super) fn send_console(&mut self, now: Millis) {
        // The chair, and a province's organizer watching its part of a national meeting.
        let readers: Vec<PeerId> = self
            .studio
            .into_iter()
            .chain(
                self.participants
                    .iter()
                    .filter(|(_, p)| p.info.role == Role::Observer)
                    .map(|(id, _)| *id),
            )
            .collect();
        if readers.is_empty() {
            self.next_console = None;
            return;
        }
        let message = self.console(now);
        for reader in readers {
            self.send(reader, message.clone());
        }
        self.next_console = Some(now + self.config.console_interval);
    }

    /// The console: every expected site in roster order.
    fn console(&self, now: Millis) -> ServerMessage {
        let empty = SiteStatus::default();
        let open: HashSet<&SiteCode> = self.pages.values().collect();
        let sites = self
            .roster
            .iter()
            .map(|(code, expected)| {
                let status = self.sites.get(code).unwrap_or(&empty);
                // A site joined to its provincial hub: that hub's row, with this meeting's
                // roll call.
                if status.participant.is_none()
                    && let Some((node, row)) = self.remote_sites.get(code)
                {
                    // Holding the floor, its media comes as its relay's tracks; its sound and
                    // small picture too, while its relay sends them up.
                    let holds = self.floor_remote.as_ref().is_some_and(|(s, _)| s == code);
                    let relay = self.remote_relay_of(code);
                    let sent_up = relay.is_some_and(|relay| {
                        self.upward
                            .get(&relay)
                            .is_some_and(|streams| streams.values().any(|s| s == code))
                    });
                    let asked = self
                        .remote_queue
                        .iter()
                        .find(|(site, _)| site == code)
                        .map(|(_, at)| *at);
                    return ConsoleSite {
                        participant: relay
                            .filter(|_| holds || sent_up)
                            .map(|relay| Self::remote_stream_id(relay, code)),
                        floor: if holds {
                            FloorState::Holder
                        } else if asked.is_some() {
                            FloorState::Requested
                        } else {
                            FloorState::None
                        },
                        floor_requested_at: asked.filter(|_| !holds),
                        answered_roll_call: status.answered_roll_call,
                        code_leak_suspected: false,
                        node: Some(node.clone()),
                        province: expected.province.clone(),
                        ..row.clone()
                    };
                }
                let asked = status.participant.and_then(|p| self.queued_at(p));
                let floor = match status.participant {
                    Some(p) if self.floor == Some(p) => FloorState::Holder,
                    Some(_) if asked.is_some() => FloorState::Requested,
                    _ => FloorState::None,
                };
                let context = RowContext {
                    page_open: open.contains(code),
                    floor,
                    floor_requested_at: asked,
                    muted: status.participant.is_some_and(|p| self.muted.contains(&p)),
                    now,
                    grace: self.config.grace,
                };
                console_row(expected, status, &context)
            })
            .collect();
        ServerMessage::Console {
            roll_call: self.roll_call.as_ref().map(|r| r.number),
            sites,
        }
    }
}

/// The inputs of one console row that are not in [`SiteStatus`].
pub(super) struct RowContext {
    pub page_open: bool,
    pub floor: FloorState,
    /// When it asked for the floor, while it waits.
    pub floor_requested_at: Option<Millis>,
    pub muted: bool,
    pub now: Millis,
    pub grace: Millis,
}

/// One row of the chair's console.
pub(super) fn console_row(expected: &ExpectedSite, s: &SiteStatus, cx: &RowContext) -> ConsoleSite {
    ConsoleSite {
        site: expected.code.clone(),
        name: expected.name.clone(),
        state: site_state(s, cx.page_open, cx.now, cx.grace),
        participant: s.participant.map(|p| p.to_string()),
        muted: cx.muted,
        floor: cx.floor,
        floor_requested_at: cx.floor_requested_at,
        bitrate_in_kbps: s.quality.bitrate_in_kbps,
        bitrate_out_kbps: s.quality.bitrate_out_kbps,
        loss_permille: s.quality.loss_permille,
        rtt_ms: s.quality.rtt_ms,
        transport: s.quality.transport.map(media_transport),
        expected_delegates: expected.expected_delegates,
        head_count: s.head_count,
        answered_roll_call: s.answered_roll_call,
        code_leak_suspected: s.joins.leak_suspected(),
        node: None,
        province: expected.province.clone(),
    }
}

fn site_state(s: &SiteStatus, page_open: bool, now: Millis, grace: Millis) -> SiteState {
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
    match &s.last_leave {
        None => SiteState::NotJoined,
        Some(LastLeave {
            reason: LeaveReason::NetworkTimeout | LeaveReason::HubCrash,
            at,
            ..
        }) if now - at <= grace => SiteState::Reconnecting,
        Some(_) => SiteState::Left,
    }
}

/// The wire's name for a transport.
pub(super) fn media_transport(transport: diemcau_sfu::Transport) -> MediaTransport {
    match transport {
        diemcau_sfu::Transport::Udp => MediaTransport::Udp,
        diemcau_sfu::Transport::Tcp => MediaTransport::Tcp,
    }
}
