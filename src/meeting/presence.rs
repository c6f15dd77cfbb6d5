//! Who is in the meeting: joins (a site's attendance row continued within the grace time, a
//! session replaced by a new one of the same site), leaves, standby pages, a reissued code, the
//! end of the meeting and the hub's shutdown.

use diemcau_sfu::PeerId;
use diemcau_signaling::protocol::{PROTOCOL_VERSION, ParticipantInfo, ProgrammeSource};
use diemcau_signaling::{ErrorCode, Role, ServerMessage, SiteCode};

use super::console::{LastLeave, SiteStatus};
use super::join_limit::Refusal;
use super::{JoinError, LiveMeeting, Output, PageKey, Participant, Recipient, Seat, error_message};
use crate::attendance::{EventKind, LeaveReason, Millis};

impl LiveMeeting {
    /// A participant joins. A site already joined from another page is replaced: that session
    /// ends (`replaced`), and the new one continues its attendance row. Returns the `joined`
    /// reply; what others must learn is queued.
    pub fn join(
        &mut self,
        now: Millis,
        id: PeerId,
        seat: Seat,
        client: &str,
        address: &str,
    ) -> Result<ServerMessage, JoinError> {
        if self.ended {
            return Err(JoinError::Ended);
        }
        let replaced = match &seat {
            Seat::Site { code, .. } => self.sites.get(code).and_then(|s| s.participant),
            Seat::Encoder { .. } => self.encoder,
            Seat::Viewer { .. }
            | Seat::Studio { .. }
            | Seat::Node { .. }
            | Seat::Above { .. }
            | Seat::Observer { .. } => None,
        };
        if let Seat::Site { code, .. } = &seat {
            let status = self.sites.entry(code.clone()).or_default();
            status
                .joins
                .attempt(now, replaced.is_some())
                .map_err(|refusal| match refusal {
                    Refusal::Flooded => JoinError::CodeFlooded,
                    Refusal::TooSoon => JoinError::TooSoon,
                })?;
        }
        if matches!(seat, Seat::Studio { .. }) && self.studio.is_some() {
            return Err(JoinError::StudioTaken);
        }
        if matches!(seat, Seat::Viewer { .. }) {
            let viewers = self
                .participants
                .values()
                .filter(|p| p.info.role == Role::Viewer)
                .count();
            if viewers >= self.config.max_viewers {
                return Err(JoinError::ViewersFull);
            }
        } else if self.participants.len() - usize::from(replaced.is_some())
            >= self.config.max_participants
        {
            return Err(JoinError::Full);
        }
        let previous = match (&seat, replaced) {
            (_, Some(old)) => {
                let session = self.session_of(old);
                self.leave(
                    now,
                    old,
                    LeaveReason::Replaced,
                    Some(error_message(
                        ErrorCode::Replaced,
                        if matches!(seat, Seat::Encoder { .. }) {
                            "another encoder started publishing this meeting, and took over"
                        } else {
                            "this site joined again from another page, which took over"
                        },
                    )),
                );
                session
            }
            (Seat::Site { code, .. }, None) => self
                .sites
                .get(code)
                .and_then(|s| s.last_leave.as_ref())
                .filter(|leave| now - leave.at <= self.config.grace)
                .map(|leave| leave.session.clone()),
            (
                Seat::Studio { .. }
                | Seat::Node { .. }
                | Seat::Above { .. }
                | Seat::Observer { .. }
                | Seat::Encoder { .. }
                | Seat::Viewer { .. },
                None,
            ) => None,
        };

        let info = match &seat {
            Seat::Studio { name, .. } => ParticipantInfo {
                id: id.to_string(),
                name: name.clone(),
                role: Role::Studio,
                site: None,
            },
            Seat::Site { code, name, .. } => ParticipantInfo {
                id: id.to_string(),
                name: name.clone(),
                role: Role::Site,
                site: Some(code.to_string()),
            },
            Seat::Node { node, .. } => ParticipantInfo {
                id: id.to_string(),
                name: node.clone(),
                role: Role::Node,
                site: None,
            },
            Seat::Above { .. } => ParticipantInfo {
                id: id.to_string(),
                name: String::new(),
                role: Role::Node,
                site: None,
            },
            Seat::Observer { .. } => ParticipantInfo {
                id: id.to_string(),
                name: String::new(),
                role: Role::Observer,
                site: None,
            },
            Seat::Encoder { .. } => ParticipantInfo {
                id: id.to_string(),
                name: String::new(),
                role: Role::Encoder,
                site: None,
            },
            Seat::Viewer { .. } => ParticipantInfo {
                id: id.to_string(),
                name: String::new(),
                role: Role::Viewer,
                site: None,
            },
        };
        let is_node = matches!(info.role, Role::Node | Role::Encoder | Role::Viewer);
        let (site, session) = match seat {
            Seat::Studio {
                session, relayed, ..
            } => {
                self.studio = Some(id);
                self.studio_relayed = relayed;
                self.log(
                    now,
                    EventKind::StudioJoined {
                        session: session.0.clone(),
                        client: client.to_owned(),
                        address: address.to_owned(),
                    },
                );
                (None, session)
            }
            Seat::Site { code, session, .. } => {
                let status = self.sites.entry(code.clone()).or_default();
                status.joins.joined(now);
                status.participant = Some(id);
                status.connected = false;
                status.audio_only = false;
                status.quality = Default::default();
                let kind = match previous {
                    Some(previous_session) => EventKind::SiteReconnected {
                        site: code.to_string(),
                        session: session.0.clone(),
                        previous_session: previous_session.0,
                        client: client.to_owned(),
                        address: address.to_owned(),
                    },
                    None => EventKind::SiteJoined {
                        site: code.to_string(),
                        session: session.0.clone(),
                        client: client.to_owned(),
                        address: address.to_owned(),
                    },
                };
                self.log(now, kind);
                (Some(code), session)
            }
            Seat::Node { session, .. } => (None, session),
            Seat::Above { session } => {
                // A seat before it (its relay's earlier one) is an ordinary `node` from now on:
                // what it receives and sends follows.
                if let Some(previous) = self.floor_seat.replace(id) {
                    self.reconcile_subscriber(previous);
                    self.reconcile_publisher(previous);
                }
                (None, session)
            }
            Seat::Observer { session } => (None, session),
            Seat::Encoder { session } => {
                self.encoder = Some(id);
                self.log(
                    now,
                    EventKind::EncoderJoined {
                        session: session.0.clone(),
                        client: client.to_owned(),
                        address: address.to_owned(),
                    },
                );
                (None, session)
            }
            Seat::Viewer { session } => {
                self.log(
                    now,
                    EventKind::ViewerJoined {
                        session: session.0.clone(),
                        client: client.to_owned(),
                        address: address.to_owned(),
                    },
                );
                (None, session)
            }
        };
        let others: Vec<ParticipantInfo> = self
            .participants
            .values()
            .filter(|p| told_of(info.role, p.info.role))
            .map(|p| p.info.clone())
            .collect();
        let announced: Vec<PeerId> = self
            .participants
            .iter()
            .filter(|(_, p)| told_of(p.info.role, info.role))
            .map(|(id, _)| *id)
            .collect();
        for other in announced {
            self.send(
                other,
                ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            );
        }
        let newcomer_site = site.clone();
        self.participants.insert(
            id,
            Participant {
                info: info.clone(),
                site,
                session,
                attached: false,
                producers: Vec::new(),
            },
        );
        if let Some(site) = &newcomer_site {
            self.restore_absent(id, site);
        }
        // What a newcomer must know at once: the floor, the centre out of reach, a roll call
        // waiting for it (a site), the programme, the last roll call's result and the console
        // (the chair).
        self.send(id, self.floor_message());
        if self.centre_unreachable {
            self.send(id, ServerMessage::Centre { reachable: false });
        }
        if self.studio == Some(id) {
            // Only where a studio encoder takes part: a chair without one never hears of it.
            if self.encoder_publishes() || self.programme != ProgrammeSource::default() {
                self.send(id, self.programme_message());
            }
            if self.log_buffered.is_some() {
                self.send(id, self.log_state_message());
            }
            if self.hub_load > 0 {
                self.send(
                    id,
                    ServerMessage::HubLoad {
                        level: self.hub_load,
                    },
                );
            }
            if self.recording_worth_telling() {
                self.send(id, self.recording_message());
            }
        }
        let running = self.roll_call.as_ref().map(|r| r.number);
        match (newcomer_site, running) {
            (Some(site), Some(roll_call)) => {
                self.roll_call_sees(&site);
                self.send(
                    id,
                    ServerMessage::RollCall {
                        roll_call,
                        active: true,
                        result: None,
                    },
                );
            }
            (Some(_), None) => {}
            (None, _) if is_node => {
                // A relay sends up the small pictures the chair shows now.
                if self.is_relay(id) && !self.tiles.is_empty() {
                    self.tell_relay_tiles(id);
                }
            }
            (None, _) => {
                if let Some(last) = self.last_roll_call_message() {
                    self.send(id, last);
                }
                self.send_console(now);
            }
        }
        Ok(ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            meeting: self.id,
            title: self.title.clone(),
            participant: info,
            participants: others,
        })
    }

    /// A site back after the meeting was opened again from its log gets what it had: muted,
    /// or the floor (everyone is told).
    fn restore_absent(&mut self, id: PeerId, site: &SiteCode) {
        if self.muted_absent.remove(site) {
            self.muted.insert(id);
            self.send(id, ServerMessage::Muted { muted: true });
        }
        if self.floor.is_none() && self.floor_absent.as_ref() == Some(site) {
            self.floor_absent = None;
            self.floor = Some(id);
            self.reconcile_viewers();
            self.reconcile_publisher(id);
            let others: Vec<PeerId> = self
                .participants
                .keys()
                .copied()
                .filter(|other| *other != id)
                .collect();
            let message = self.floor_message();
            for other in others {
                self.send(other, message.clone());
            }
        }
    }

    /// A site's page is open on standby (before joining), so the chair sees it and can call it.
    pub fn open_page(&mut self, page: PageKey, site: SiteCode) -> Result<(), JoinError> {
        if self.ended {
            return Err(JoinError::Ended);
        }
        self.pages.insert(page, site);
        Ok(())
    }

    /// A standby page closed or joined.
    pub fn close_page(&mut self, page: PageKey) {
        if self.pages.remove(&page).is_some() {
            self.rest_if_empty();
        }
    }

    /// A site's join code was reissued: the session joined with the old code, and any page
    /// waiting with it, end at once (`code_revoked`); the site comes back with its new link.
    pub fn code_reissued(&mut self, now: Millis, site: &SiteCode) {
        let notice = error_message(
            ErrorCode::CodeRevoked,
            "this site's join code was reissued; open the new link to join",
        );
        let waiting: Vec<PageKey> = self
            .pages
            .iter()
            .filter(|(_, s)| *s == site)
            .map(|(page, _)| *page)
            .collect();
        for page in waiting {
            self.pages.remove(&page);
            self.outputs.push_back(Output::Close {
                to: Recipient::Page(page),
                message: notice.clone(),
            });
        }
        if let Some(joined) = self.sites.get(site).and_then(|s| s.participant) {
            self.leave(now, joined, LeaveReason::Removed, Some(notice));
        }
        if let Some(status) = self.sites.get_mut(site) {
            status.joins.reset();
        }
        self.rest_if_empty();
    }

    /// The organizer ended the meeting: the end is logged, every session ends with
    /// `meeting_ended`, and later joins are refused.
    pub fn end(&mut self, now: Millis) {
        self.finish_roll_call(now);
        self.log(now, EventKind::MeetingEnded);
        self.stop_recording(crate::attendance::RecordingStop::MeetingEnded);
        let notice = error_message(
            ErrorCode::MeetingEnded,
            "the organizer has ended the meeting",
        );
        self.close_everyone(now, LeaveReason::MeetingEnded, &notice);
        self.ended = true;
    }

    /// The hub is stopping: every session ends, recorded as left by shutdown.
    pub fn shut_down(&mut self, now: Millis) {
        let notice = error_message(
            ErrorCode::HubShuttingDown,
            "the hub is shutting down; the page will reconnect when it is back",
        );
        self.close_everyone(now, LeaveReason::HubShutdown, &notice);
    }

    /// Another hub took this meeting over (this one lost its lease): every session and page is
    /// closed with `other_hub`, naming it if known, and nothing is logged: the hub taking over
    /// records each session's end, at its last sign of life, and the roll call and the floor
    /// go on there.
    pub fn hand_over(&mut self, now: Millis, hub: Option<String>) {
        let notice = diemcau_signaling::ProtocolError::other_hub(hub).to_message();
        let before = self.outputs.len();
        self.close_everyone(now, LeaveReason::HubShutdown, &notice);
        let after: Vec<Output> = self.outputs.drain(before..).collect();
        self.outputs.extend(
            after
                .into_iter()
                .filter(|output| !matches!(output, Output::Log { .. })),
        );
        self.ended = true;
    }

    pub(super) fn close_everyone(
        &mut self,
        now: Millis,
        reason: LeaveReason,
        notice: &ServerMessage,
    ) {
        for page in std::mem::take(&mut self.pages).into_keys() {
            self.outputs.push_back(Output::Close {
                to: Recipient::Page(page),
                message: notice.clone(),
            });
        }
        let everyone: Vec<PeerId> = self.participants.keys().copied().collect();
        for id in everyone {
            self.leave(now, id, reason, Some(notice.clone()));
        }
    }

    /// A participant leaves (its `leave`, a lost connection, an ended login, a replaced
    /// session...). With a `notice`, its session is sent that message and closed. Returns whether
    /// it was here.
    pub fn leave(
        &mut self,
        now: Millis,
        id: PeerId,
        reason: LeaveReason,
        notice: Option<ServerMessage>,
    ) -> bool {
        let Some(p) = self.participants.remove(&id) else {
            return false;
        };
        if self.studio == Some(id) {
            self.studio = None;
            self.studio_relayed = false;
            self.next_console = None;
            // Nobody shows the tiles any more: the relays stop sending them up.
            let before = std::mem::take(&mut self.tiles);
            if !before.is_empty() {
                self.tiles_changed(&before);
            }
        }
        self.queue.retain(|(q, _)| *q != id);
        self.muted.remove(&id);
        if self.floor_seat == Some(id) {
            self.floor_seat = None;
        }
        let encoder_left = self.encoder == Some(id);
        if encoder_left {
            self.encoder = None;
        }
        let floor_returned = self.floor == Some(id);
        let remote_floor = if floor_returned {
            self.floor = None;
            self.floor_remote.take()
        } else {
            None
        };
        self.drop_producers(&p.producers);
        // The worker drops the consumers of a peer with the peer.
        self.consumers
            .retain(|(subscriber, _, _), _| *subscriber != id);
        if encoder_left {
            self.encoder_changed();
        } else if floor_returned {
            self.reconcile_viewers();
        }
        if let Some(site) = &p.site {
            if let Some(status) = self.sites.get_mut(site)
                && status.participant == Some(id)
            {
                status.participant = None;
                status.connected = false;
                status.last_leave = Some(LastLeave {
                    reason,
                    at: now,
                    session: p.session.clone(),
                });
            }
            // The floor-returned fact goes before the site-left fact.
            if floor_returned {
                self.log(
                    now,
                    EventKind::FloorReturned {
                        site: site.to_string(),
                    },
                );
            }
        }
        // A child hub's commune held the floor through the relay that left.
        if let Some((site, _)) = remote_floor.filter(|(site, _)| self.invited(site)) {
            self.log(
                now,
                EventKind::FloorReturned {
                    site: site.to_string(),
                },
            );
        }
        let mut queue_changed = false;
        if p.info.role == Role::Node {
            // Its sites' rows go with its relay: this hub no longer knows them, nor their
            // requests for the floor.
            let node = p.info.name.clone();
            self.remote_sites.retain(|_, (n, _)| *n != node);
            self.upward.remove(&id);
            let before = self.remote_queue.len();
            let known = &self.remote_sites;
            self.remote_queue
                .retain(|(site, _)| known.contains_key(site));
            queue_changed = self.remote_queue.len() != before;
        }
        let floor = (floor_returned || queue_changed).then(|| self.floor_message());
        let listeners: Vec<(PeerId, Role)> = self
            .participants
            .iter()
            .map(|(id, other)| (*id, other.info.role))
            .collect();
        for (other, role) in listeners {
            if told_of(role, p.info.role) {
                self.send(
                    other,
                    ServerMessage::ParticipantLeft {
                        participant: id.to_string(),
                    },
                );
            }
            if let Some(floor) = &floor {
                self.send(other, floor.clone());
            }
        }
        let kind = match (p.site, p.info.role) {
            (Some(site), _) => Some(EventKind::SiteLeft {
                site: site.to_string(),
                session: p.session.0,
                reason,
            }),
            (None, Role::Node | Role::Observer) => None,
            (None, Role::Encoder) => Some(EventKind::EncoderLeft {
                session: p.session.0,
                reason,
            }),
            (None, Role::Viewer) => Some(EventKind::ViewerLeft {
                session: p.session.0,
                reason,
            }),
            (None, _) => Some(EventKind::StudioLeft {
                session: p.session.0,
                reason,
            }),
        };
        if let Some(kind) = kind {
            self.log(now, kind);
        }
        if let Some(message) = notice {
            self.outputs.push_back(Output::Close {
                to: Recipient::Participant(id),
                message,
            });
        }
        self.outputs.push_back(Output::Removed(id));
        if self.participants.is_empty() {
            // Nobody is left to answer or to see it: the roll call ends here.
            self.finish_roll_call(now);
        }
        self.rest_if_empty();
        true
    }

    /// With nobody left, the meeting rests as the hub would open it again from its log: no live
    /// figures (the roll call ended with the last participant).
    pub(super) fn rest_if_empty(&mut self) {
        if !self.is_idle() {
            return;
        }
        for status in self.sites.values_mut() {
            *status = SiteStatus {
                last_leave: status.last_leave.take(),
                head_count: status.head_count,
                ..SiteStatus::default()
            };
        }
    }
}

/// Participants never announced to the others: a child hub's relay, the floor held elsewhere,
/// a province's organizer watching, a WHEP viewer.
fn unseen(role: Role) -> bool {
    matches!(role, Role::Node | Role::Observer | Role::Viewer)
}

/// Whether a participant in `listener`'s role is told (in `joined`, `participant_joined` and
/// `participant_left`) of one in `role`. A site is not told of the other sites: the one it
/// shows, the site holding the floor, the `floor` message names, and telling every site of
/// every other made each join cost the hub a message to every site (half a million for a
/// meeting of a thousand sites). The chair's side (the studio, an observer, a child hub's
/// relay) is told of everyone it may see.
fn told_of(listener: Role, role: Role) -> bool {
    let site_to_site = role == Role::Site && matches!(listener, Role::Site | Role::Viewer);
    !unseen(role) && !site_to_site
}
