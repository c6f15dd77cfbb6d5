//! Join codes, opening a meeting, joining, standby pages and leaving.

use diemcau_sfu::{PeerId, RouterId};
use diemcau_signaling::{ErrorCode, JoinCode, MeetingId, ProtocolError, ServerMessage};
use diemcau_signaling::{SessionId, SiteCode};

use super::carry::recorded;
use super::{Connection, Hub, Page, Session, internal};
use crate::attendance::LeaveReason;
use crate::meeting::{
    ChairError, JoinError, LiveMeeting, MeetingConfig, MeetingSetup, PageKey, RecordingMode, Seat,
};
use crate::store::{CodeError, Grant, StoreError, now_millis};

impl Hub {
    pub(super) async fn join(
        &self,
        session: &mut Session,
        code: &JoinCode,
        meeting: Option<MeetingId>,
    ) -> Result<ServerMessage, ProtocolError> {
        let grant = self.admit(session, code, meeting).await?;
        let meeting = grant.meeting_id;
        if grant.site.is_none() {
            self.check_chair(session, meeting).await?;
        }
        self.open_meeting(meeting).await?;

        let id = PeerId(self.ids.next());
        let seat = match &grant.site {
            Some(site) => Seat::Site {
                code: site_code(&site.code)?,
                name: site.name.clone(),
                session: self.session_id(id),
            },
            // The national chair runs a province's part: its organizer watches it.
            None if grant.national_part => Seat::Observer {
                session: self.session_id(id),
            },
            None => Seat::Studio {
                name: grant.studio_name.clone(),
                session: self.session_id(id),
                relayed: false,
            },
        };
        self.take_seat(session, meeting, id, seat).await
    }

    /// A child hub's relay joins `meeting` over its node link (the caller checked that the
    /// meeting concerns the node): it receives the programme for the node's communes.
    pub async fn join_node(
        &self,
        session: &mut Session,
        meeting: MeetingId,
        node: &str,
    ) -> Result<ServerMessage, ProtocolError> {
        self.open_meeting(meeting).await?;
        let id = PeerId(self.ids.next());
        let seat = Seat::Node {
            node: node.to_owned(),
            session: self.session_id(id),
        };
        self.take_seat(session, meeting, id, seat).await
    }

    /// This hub's relay of a national meeting takes the studio's seat of its local copy
    /// (`meeting`): it publishes the programme it receives from the parent. No code: the
    /// relay runs inside the hub.
    pub async fn join_relayed_studio(
        &self,
        session: &mut Session,
        meeting: MeetingId,
        name: &str,
    ) -> Result<ServerMessage, ProtocolError> {
        self.open_meeting(meeting).await?;
        let id = PeerId(self.ids.next());
        let seat = Seat::Studio {
            name: name.to_owned(),
            session: self.session_id(id),
            relayed: true,
        };
        self.take_seat(session, meeting, id, seat).await
    }

    /// This hub's relay of a national meeting takes, in its local copy (`meeting`), the seat
    /// of the floor held elsewhere in the tree: it publishes there the site speaking at the
    /// centre or in another province.
    pub async fn join_floor_seat(
        &self,
        session: &mut Session,
        meeting: MeetingId,
    ) -> Result<ServerMessage, ProtocolError> {
        self.open_meeting(meeting).await?;
        let id = PeerId(self.ids.next());
        let seat = Seat::Above {
            session: self.session_id(id),
        };
        self.take_seat(session, meeting, id, seat).await
    }

    /// A studio encoder (WHIP) or a player (WHEP) takes its seat in `meeting` (the caller
    /// checked its token).
    pub(super) async fn join_over_http(
        &self,
        session: &mut Session,
        meeting: MeetingId,
        kind: super::HttpSessionKind,
    ) -> Result<ServerMessage, ProtocolError> {
        self.open_meeting(meeting).await?;
        let id = PeerId(self.ids.next());
        let session_id = self.session_id(id);
        let seat = match kind {
            super::HttpSessionKind::Encoder => Seat::Encoder {
                session: session_id,
            },
            super::HttpSessionKind::Viewer => Seat::Viewer {
                session: session_id,
            },
        };
        self.take_seat(session, meeting, id, seat).await
    }

    async fn take_seat(
        &self,
        session: &mut Session,
        meeting: MeetingId,
        id: PeerId,
        seat: Seat,
    ) -> Result<ServerMessage, ProtocolError> {
        let is_studio = matches!(seat, Seat::Studio { .. });
        let fixed = matches!(seat, Seat::Viewer { .. });
        let client = &session.client;
        let address = client
            .address
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let now = now_millis();
        let (reply, pending) = {
            let mut state = self.lock();
            self.refuse_if_stopping()?;
            if let Some(page) = state.pages.remove(&session.key)
                && let Some(live) = state.meetings.get_mut(&page.meeting)
            {
                live.close_page(session.key);
            }
            let live = state
                .meetings
                .get_mut(&meeting)
                .ok_or_else(|| internal("the meeting is not open"))?;
            let reply = live
                .join(now, id, seat, &client.user_agent, &address)
                .map_err(|e| {
                    if e == JoinError::CodeFlooded {
                        tracing::warn!(meeting = %meeting, %address, "join refused: {e} (a leaked link?)");
                    }
                    join_error(e)
                })?;
            state.participants.insert(
                id,
                Connection {
                    meeting,
                    outbox: session.outbox.clone(),
                    worker: None,
                    fixed,
                    login: is_studio
                        .then(|| client.login.as_ref().map(|(_, t)| t.clone()))
                        .flatten(),
                },
            );
            (reply, self.carry(&mut state, meeting))
        };
        // The join is acknowledged only once it is in the log.
        if let Err(e) = recorded(pending).await {
            self.leave(id, LeaveReason::Closed).await;
            return Err(internal(&format!("the join could not be recorded: {e}")));
        }
        session.participant = Some(id);
        let username = client.login.as_ref().map(|(a, _)| a.username.as_str());
        tracing::info!(meeting = %meeting, participant = %id, studio = is_studio, ?username, "joined");
        Ok(reply)
    }

    pub(super) async fn standby(
        &self,
        session: &mut Session,
        code: &JoinCode,
        meeting: Option<MeetingId>,
    ) -> Result<ServerMessage, ProtocolError> {
        let grant = self.admit(session, code, meeting).await?;
        let Some(site) = grant.site else {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "only a site page waits on standby",
            ));
        };
        let meeting = grant.meeting_id;
        let code = site_code(&site.code)?;
        let title = self.open_meeting(meeting).await?;
        self.close_page(session.key);
        let mut state = self.lock();
        self.refuse_if_stopping()?;
        let live = state
            .meetings
            .get_mut(&meeting)
            .ok_or_else(|| internal("the meeting is not open"))?;
        live.open_page(session.key, code).map_err(join_error)?;
        state.pages.insert(
            session.key,
            Page {
                meeting,
                outbox: session.outbox.clone(),
            },
        );
        Ok(ServerMessage::StandbyAccepted {
            meeting,
            title,
            site: site.code,
            name: site.name,
        })
    }

    /// Once the hub stops, nobody joins: checked under the lock, as the shutdown sets it.
    fn refuse_if_stopping(&self) -> Result<(), ProtocolError> {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ProtocolError::new(
                ErrorCode::HubShuttingDown,
                "the hub is shutting down; the page will reconnect when it is back",
            ));
        }
        Ok(())
    }

    /// An attendance session id unique across runs of the hub.
    fn session_id(&self, id: PeerId) -> SessionId {
        SessionId(format!("{:x}-{id}", self.started_at))
    }

    /// A standby page closed (or joined, or went on standby for another meeting).
    pub(super) fn close_page(&self, key: PageKey) {
        let mut state = self.lock();
        if let Some(page) = state.pages.remove(&key)
            && let Some(live) = state.meetings.get_mut(&page.meeting)
        {
            live.close_page(key);
        }
    }

    /// Takes a participant out of its meeting; waits until its leave is on disk.
    pub(super) async fn leave(&self, id: PeerId, reason: LeaveReason) {
        let pending = {
            let mut state = self.lock();
            let Some(meeting) = state.participants.get(&id).map(|c| c.meeting) else {
                return;
            };
            if let Some(live) = state.meetings.get_mut(&meeting) {
                live.leave(now_millis(), id, reason, None);
            }
            self.carry(&mut state, meeting)
        };
        if let Err(e) = recorded(pending).await {
            tracing::error!(participant = %id, "recording a leave failed: {e}");
        }
    }

    /// A session that has not joined yet, with a valid code: what the code grants.
    async fn admit(
        &self,
        session: &Session,
        code: &JoinCode,
        meeting: Option<MeetingId>,
    ) -> Result<Grant, ProtocolError> {
        not_joined_yet(session)?;
        self.grant(code, meeting).await
    }

    /// Checks a join code against the store.
    async fn grant(
        &self,
        code: &JoinCode,
        meeting: Option<MeetingId>,
    ) -> Result<Grant, ProtocolError> {
        let code = code.clone();
        let resolved = self
            .store
            .blocking(move |store| Ok::<_, StoreError>(store.resolve_code(&code, meeting)))
            .await
            .map_err(|e| internal(&format!("the join code could not be checked: {e}")))?;
        resolved.map_err(|e| {
            let code = match &e {
                CodeError::Unknown => ErrorCode::CodeUnknown,
                CodeError::Revoked => ErrorCode::CodeRevoked,
                CodeError::OtherMeeting => ErrorCode::CodeOtherMeeting,
                CodeError::MeetingEnded => ErrorCode::MeetingEnded,
                CodeError::Database(source) => {
                    tracing::error!("a join code could not be checked: {source}");
                    ErrorCode::Internal
                }
            };
            ProtocolError::new(code, e.to_string())
        })
    }

    /// The studio's code makes a chair only with an organizer logged in: checked now, not at the
    /// upgrade, since the login may have ended since.
    async fn check_chair(
        &self,
        session: &Session,
        meeting: MeetingId,
    ) -> Result<(), ProtocolError> {
        let account = match &session.client.login {
            None => None,
            Some((_, token_sha256)) => {
                let token_sha256 = token_sha256.clone();
                self.store
                    .blocking(move |store| {
                        store.login_session(
                            &token_sha256,
                            now_millis(),
                            crate::auth::SESSION_LIMITS,
                        )
                    })
                    .await
                    .map_err(|e| {
                        tracing::error!(meeting = %meeting, "a login could not be checked: {e}");
                        internal("the login could not be checked; try again")
                    })?
                    .map(|login| login.account)
            }
        };
        crate::meeting::may_chair(account.as_ref().map(|a| a.role)).map_err(|e| {
            let code = match e {
                ChairError::LoginRequired => ErrorCode::LoginRequired,
                ChairError::NotOrganizer => ErrorCode::Forbidden,
            };
            tracing::warn!(
                meeting = %meeting,
                username = ?account.as_ref().map(|a| &a.username),
                "studio join refused: {e}"
            );
            ProtocolError::new(code, e.to_string())
        })
    }

    /// Makes sure a meeting is open in memory, reading its roster and log outside the lock the
    /// first time. Returns its title. An open meeting stays open until the hub stops, so a
    /// join never finds it gone.
    async fn open_meeting(&self, id: MeetingId) -> Result<String, ProtocolError> {
        if let Some(live) = self.lock().meetings.get(&id) {
            return Ok(live.title().to_owned());
        }
        let _opening = self.opening.lock().await;
        if let Some(live) = self.lock().meetings.get(&id) {
            return Ok(live.title().to_owned());
        }
        self.claim(id).await?;
        let (roster, history) = self
            .store
            .blocking(move |store| {
                Ok::<_, StoreError>((store.meeting_roster(id)?, store.events(id)?))
            })
            .await
            .map_err(|e| {
                tracing::error!(meeting = %id, "the meeting could not be read: {e}");
                internal("the meeting could not be read; try again")
            })?;
        let config = MeetingConfig {
            recording: RecordingMode::for_meeting(self.config.recording, roster.recording),
            ..self.config
        };
        let setup = MeetingSetup {
            id,
            title: roster.title,
            roster: roster.sites,
            history,
        };
        let mut state = self.lock();
        let live = state.meetings.entry(id).or_insert_with(|| {
            LiveMeeting::new(setup, RouterId(self.ids.next()), config, self.ids.clone())
        });
        Ok(live.title().to_owned())
    }
}

/// A session joins, or waits on standby, once: `leave` first to join again.
fn not_joined_yet(session: &Session) -> Result<(), ProtocolError> {
    match session.participant {
        Some(_) => Err(ProtocolError::new(
            ErrorCode::AlreadyJoined,
            "this session has joined already; send leave first",
        )),
        None => Ok(()),
    }
}

fn site_code(code: &str) -> Result<SiteCode, ProtocolError> {
    SiteCode::try_from(code).map_err(|_| {
        internal(&format!(
            "site code {code} in the store is not an administrative code"
        ))
    })
}

fn join_error(e: JoinError) -> ProtocolError {
    let code = match e {
        JoinError::StudioTaken => ErrorCode::StudioTaken,
        JoinError::Full | JoinError::ViewersFull => ErrorCode::MeetingFull,
        JoinError::Ended => ErrorCode::MeetingEnded,
        JoinError::CodeFlooded | JoinError::TooSoon => ErrorCode::RateLimited,
    };
    ProtocolError::new(code, e.to_string())
}
