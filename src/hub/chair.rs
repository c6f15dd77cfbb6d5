//! What the chair does (floor, mute, roll call, calling a site) and what a site asks of it.
//! The meeting rules authorise every action; the hub applies it to the media plane, tells the
//! participants, and records it in the attendance log.

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_signaling::protocol::FloorSite;
use diemcau_signaling::{ClientMessage, ErrorCode, ProtocolError, Role, ServerMessage};

use super::{Hub, Live, State, internal};
use crate::attendance::EventKind;
use crate::media::Command;
use crate::meeting::{FloorChange, RuleError};
use crate::store::now_millis;

impl Hub {
    /// Chair actions and site requests, after `join`.
    pub(super) async fn chair_or_site_action(
        &self,
        id: PeerId,
        message: ClientMessage,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        let kind = message.kind();
        let done = || {
            Ok(Some(ServerMessage::Done {
                request: kind.to_owned(),
            }))
        };
        match message {
            ClientMessage::HeadCount {
                count,
                confirmed_by,
                position,
            } => {
                let (meeting, site) = self.own_site(id)?;
                let event = self
                    .recorder
                    .append(
                        meeting,
                        now_millis(),
                        EventKind::HeadCount {
                            site: site.clone(),
                            count,
                            confirmed_by,
                            position,
                        },
                    )
                    .await
                    .map_err(|e| internal(&format!("the head count could not be recorded: {e}")))?;
                if let Some(s) = super::site_live(&mut self.lock(), meeting, Some(&site)) {
                    s.head_count = Some(count);
                }
                Ok(Some(ServerMessage::HeadCountRecorded {
                    count,
                    at: event.at,
                }))
            }
            ClientMessage::RequestFloor | ClientMessage::CancelFloorRequest => {
                let asking = matches!(message, ClientMessage::RequestFloor);
                let mut state = self.lock();
                let (meeting, site) = site_of(&state, id)?;
                let live = live_meeting_mut(&mut state, meeting)?;
                let changed = if asking {
                    live.rules.request_floor(id)
                } else {
                    live.rules.cancel_floor_request(id)
                }
                .map_err(rule_error)?;
                if changed && asking {
                    self.log(meeting, EventKind::FloorRequested { site });
                }
                if changed {
                    broadcast_floor(&state, meeting);
                }
                drop(state);
                done()
            }
            ClientMessage::GiveFloor { site } => {
                let mut state = self.lock();
                let meeting = meeting_of(&state, id)?;
                require_chair(&state, meeting, id)?;
                let target = participant_of_site(&state, meeting, site.as_str())?;
                let live = live_meeting_mut(&mut state, meeting)?;
                let change = live.rules.give_floor(id, target).map_err(rule_error)?;
                self.apply_floor_change(&state, meeting, change);
                drop(state);
                done()
            }
            ClientMessage::TakeFloor => {
                let mut state = self.lock();
                let meeting = meeting_of(&state, id)?;
                let live = live_meeting_mut(&mut state, meeting)?;
                let change = live.rules.take_floor(id).map_err(rule_error)?;
                self.apply_floor_change(&state, meeting, change);
                drop(state);
                done()
            }
            ClientMessage::Mute { site, muted } => {
                let mut state = self.lock();
                let meeting = meeting_of(&state, id)?;
                require_chair(&state, meeting, id)?;
                let target = participant_of_site(&state, meeting, site.as_str())?;
                let live = live_meeting_mut(&mut state, meeting)?;
                if live
                    .rules
                    .set_muted(id, target, muted)
                    .map_err(rule_error)?
                {
                    self.apply_mute(&state, meeting, target, muted);
                }
                drop(state);
                done()
            }
            ClientMessage::MuteAll { muted } => {
                let mut state = self.lock();
                let meeting = meeting_of(&state, id)?;
                let live = live_meeting_mut(&mut state, meeting)?;
                let changed = live.rules.set_all_muted(id, muted).map_err(rule_error)?;
                for target in changed {
                    self.apply_mute(&state, meeting, target, muted);
                }
                drop(state);
                done()
            }
            ClientMessage::StartRollCall => {
                let (meeting, number) = {
                    let mut state = self.lock();
                    let meeting = meeting_of(&state, id)?;
                    let live = live_meeting_mut(&mut state, meeting)?;
                    let number = live.roll_calls + 1;
                    live.rules.start_roll_call(id, number).map_err(rule_error)?;
                    live.roll_calls = number;
                    for s in live.sites.values_mut() {
                        s.answered_roll_call = false;
                    }
                    (meeting, number)
                };
                self.announce_roll_call(meeting, number, true).await?;
                done()
            }
            ClientMessage::EndRollCall => {
                let (meeting, number) = {
                    let mut state = self.lock();
                    let meeting = meeting_of(&state, id)?;
                    let live = live_meeting_mut(&mut state, meeting)?;
                    (meeting, live.rules.end_roll_call(id).map_err(rule_error)?)
                };
                self.announce_roll_call(meeting, number, false).await?;
                done()
            }
            ClientMessage::AnswerRollCall {
                roll_call,
                count,
                confirmed_by,
                position,
            } => {
                let (meeting, site, name) = {
                    let state = self.lock();
                    let (meeting, site) = site_of(&state, id)?;
                    let live = live_meeting(&state, meeting)?;
                    live.rules
                        .check_roll_call_answer(id, roll_call)
                        .map_err(rule_error)?;
                    let name = state
                        .participants
                        .get(&id)
                        .map(|p| p.info.name.clone())
                        .unwrap_or_default();
                    (meeting, site, name)
                };
                let event = self
                    .recorder
                    .append(
                        meeting,
                        now_millis(),
                        EventKind::RollCallAnswered {
                            roll_call,
                            site: site.clone(),
                            count,
                            confirmed_by: confirmed_by.clone(),
                            position: position.clone(),
                        },
                    )
                    .await
                    .map_err(|e| internal(&format!("the answer could not be recorded: {e}")))?;
                let mut state = self.lock();
                if let Some(s) = super::site_live(&mut state, meeting, Some(&site)) {
                    s.head_count = Some(count);
                    s.answered_roll_call = true;
                }
                if let Some(chair) = chair_of(&state, meeting) {
                    chair.send(ServerMessage::RollCallAnswer {
                        roll_call,
                        site,
                        name,
                        count,
                        confirmed_by,
                        position,
                        at: event.at,
                    });
                }
                Ok(Some(ServerMessage::RollCallAnswerRecorded {
                    roll_call,
                    at: event.at,
                }))
            }
            ClientMessage::CallSite { site } => {
                let state = self.lock();
                let meeting = meeting_of(&state, id)?;
                let live = live_meeting(&state, meeting)?;
                live.rules.require_chair(id).map_err(rule_error)?;
                let by = state
                    .participants
                    .get(&id)
                    .map(|p| p.info.name.clone())
                    .unwrap_or_default();
                let pages: Vec<_> = state
                    .standby
                    .values()
                    .filter(|s| s.meeting == meeting && s.site == site.as_str())
                    .map(|s| s.outbox.clone())
                    .collect();
                if pages.is_empty() {
                    return Err(ProtocolError::new(
                        ErrorCode::SiteUnavailable,
                        format!("site {site} has no page open waiting to join"),
                    ));
                }
                for page in pages {
                    page.send(ServerMessage::Called { by: by.clone() });
                }
                self.log(meeting, EventKind::SiteCalled { site: site.into() });
                drop(state);
                done()
            }
            _ => Err(ProtocolError::new(
                ErrorCode::Internal,
                format!("`{kind}` is not a chair or site action"),
            )),
        }
    }

    /// Records that roll call `number` started (`active`) or ended, then tells everyone.
    async fn announce_roll_call(
        &self,
        meeting: i64,
        number: u32,
        active: bool,
    ) -> Result<(), ProtocolError> {
        let kind = if active {
            EventKind::RollCallStarted { roll_call: number }
        } else {
            EventKind::RollCallEnded { roll_call: number }
        };
        self.recorder
            .append(meeting, now_millis(), kind)
            .await
            .map_err(|e| internal(&e.to_string()))?;
        self.broadcast(
            meeting,
            ServerMessage::RollCall {
                roll_call: number,
                active,
            },
        );
        Ok(())
    }

    /// Moves media after the floor changed, records it and tells everyone.
    fn apply_floor_change(&self, state: &State, meeting: i64, change: FloorChange) {
        let Some(live) = state.meetings.get(&meeting) else {
            return;
        };
        if change.from == change.to {
            return;
        }
        let sites: Vec<PeerId> = live
            .rules
            .members()
            .filter(|(_, m)| m.role == Role::Site)
            .map(|(id, _)| id)
            .collect();
        // The chair sees the speaker at full quality, the others as small pictures.
        let chair = live
            .rules
            .members()
            .find(|(_, m)| m.role == Role::Studio)
            .and_then(|(id, _)| state.participants.get(&id).map(|p| (id, p.worker)));
        for (site, max_layer) in [(change.from, 0), (change.to, u8::MAX)] {
            if let (Some(site), Some((chair, Some(w)))) = (site, chair)
                && let Some(p) = state.participants.get(&site)
            {
                for producer in &p.producers {
                    let Some(consumer) = self.consumers().get(&(chair, producer.id)).copied()
                    else {
                        continue;
                    };
                    self.media.send(
                        w,
                        Command::SetMaxLayer {
                            peer: chair,
                            consumer,
                            max_layer,
                        },
                    );
                }
            }
        }
        if let Some(old) = change.from
            && let Some(p) = state.participants.get(&old)
        {
            for subscriber in sites.iter().filter(|s| **s != old) {
                if let Some(w) = state.participants.get(subscriber).and_then(|s| s.worker) {
                    for producer in &p.producers {
                        let Some(consumer) = self.consumers().remove(&(*subscriber, producer.id))
                        else {
                            continue;
                        };
                        self.media.send(
                            w,
                            Command::RemoveConsumer {
                                peer: *subscriber,
                                consumer,
                            },
                        );
                    }
                }
            }
            if let Some(a) = &p.attendance {
                self.log(
                    meeting,
                    EventKind::FloorReturned {
                        site: a.site.clone(),
                    },
                );
            }
        }
        if let Some(new) = change.to
            && let Some(p) = state.participants.get(&new)
        {
            for subscriber in sites.iter().filter(|s| **s != new) {
                for producer in &p.producers {
                    self.consume(state, *subscriber, producer);
                }
            }
            if let Some(a) = &p.attendance {
                self.log(
                    meeting,
                    EventKind::FloorGiven {
                        site: a.site.clone(),
                    },
                );
            }
        }
        broadcast_floor(state, meeting);
    }

    /// Pauses or resumes a site's audio in the media plane, tells it, and records it.
    fn apply_mute(&self, state: &State, meeting: i64, site: PeerId, muted: bool) {
        let Some(p) = state.participants.get(&site) else {
            return;
        };
        for producer in p.producers.iter().filter(|p| p.kind == MediaKind::Audio) {
            self.media.broadcast(|| Command::SetProducerPaused {
                router: producer.router,
                producer: producer.id,
                paused: muted,
            });
        }
        p.outbox.send(ServerMessage::Muted { muted });
        if let Some(a) = &p.attendance {
            self.log(
                meeting,
                EventKind::SiteMuted {
                    site: a.site.clone(),
                    muted,
                },
            );
        }
    }

    /// Sends a message to everyone joined in a meeting.
    fn broadcast(&self, meeting: i64, message: ServerMessage) {
        send_to_members(&self.lock(), meeting, &message);
    }

    fn own_site(&self, id: PeerId) -> Result<(i64, String), ProtocolError> {
        site_of(&self.lock(), id)
    }
}

/// The floor as participants see it.
pub(super) fn floor_message(state: &State, live: &Live) -> ServerMessage {
    let describe = |id: PeerId| {
        let p = state.participants.get(&id)?;
        Some(FloorSite {
            site: p
                .attendance
                .as_ref()
                .map(|a| a.site.clone())
                .unwrap_or_default(),
            name: p.info.name.clone(),
            participant: p.info.id.clone(),
        })
    };
    ServerMessage::Floor {
        holder: live.rules.floor().and_then(describe),
        queue: live
            .rules
            .floor_queue()
            .iter()
            .filter_map(|id| describe(*id))
            .collect(),
    }
}

fn broadcast_floor(state: &State, meeting: i64) {
    if let Some(live) = state.meetings.get(&meeting) {
        send_to_members(state, meeting, &floor_message(state, live));
    }
}

fn send_to_members(state: &State, meeting: i64, message: &ServerMessage) {
    if let Some(live) = state.meetings.get(&meeting) {
        for (id, _) in live.rules.members() {
            if let Some(p) = state.participants.get(&id) {
                p.outbox.send(message.clone());
            }
        }
    }
}

fn live_meeting_mut(state: &mut State, meeting: i64) -> Result<&mut Live, ProtocolError> {
    state
        .meetings
        .get_mut(&meeting)
        .ok_or_else(|| internal("meeting vanished"))
}

fn live_meeting(state: &State, meeting: i64) -> Result<&Live, ProtocolError> {
    state
        .meetings
        .get(&meeting)
        .ok_or_else(|| internal("meeting vanished"))
}

fn meeting_of(state: &State, id: PeerId) -> Result<i64, ProtocolError> {
    state
        .participants
        .get(&id)
        .map(|p| p.meeting)
        .ok_or_else(|| internal("participant vanished"))
}

/// The meeting and site code of a site participant; the studio is refused.
fn site_of(state: &State, id: PeerId) -> Result<(i64, String), ProtocolError> {
    let p = state
        .participants
        .get(&id)
        .ok_or_else(|| internal("participant vanished"))?;
    match &p.attendance {
        Some(a) => Ok((p.meeting, a.site.clone())),
        None => Err(rule_error(RuleError::SiteOnly)),
    }
}

/// The participant currently joined for a site of the meeting.
fn participant_of_site(state: &State, meeting: i64, site: &str) -> Result<PeerId, ProtocolError> {
    state
        .meetings
        .get(&meeting)
        .and_then(|live| live.sites.get(site))
        .and_then(|s| s.participant)
        .ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::SiteUnavailable,
                format!("site {site} is not connected to this meeting"),
            )
        })
}

/// Authorisation first: a site asking for a chair action learns it is forbidden, whatever
/// the rest of its request.
fn require_chair(state: &State, meeting: i64, id: PeerId) -> Result<(), ProtocolError> {
    live_meeting(state, meeting)?
        .rules
        .require_chair(id)
        .map_err(rule_error)
}

fn chair_of(state: &State, meeting: i64) -> Option<&diemcau_signaling::Outbox> {
    state
        .participants
        .values()
        .find(|p| p.meeting == meeting && p.info.role == Role::Studio)
        .map(|p| &p.outbox)
}

fn rule_error(e: RuleError) -> ProtocolError {
    let code = match e {
        RuleError::ChairOnly | RuleError::SiteOnly => ErrorCode::Forbidden,
        RuleError::NoSuchSite => ErrorCode::SiteUnavailable,
        RuleError::NoRollCall | RuleError::WrongRollCall => ErrorCode::NoRollCall,
    };
    ProtocolError::new(code, e.to_string())
}
