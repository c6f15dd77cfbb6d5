//! Meeting plans, their join codes and what a code grants: creating a meeting, reissuing a
//! site's code, checking a code at a join, and the views of a meeting (the full one for the
//! API, the light roster for a join).

use diemcau_signaling::text::{TextError, human_text};
use std::collections::{HashMap, HashSet};

use diemcau_signaling::{JoinCode, MeetingId, SiteCode};
use serde::{Deserialize, Serialize};

use super::db::{Conn, Row, args};
use super::{Store, StoreError, now_millis, random_text};
use crate::attendance::{ExpectedSite, MeetingPlan, Millis};
use crate::directory::MAX_DELEGATES;
use crate::meeting::RecordingMode;

/// A new meeting as the organizer describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewMeeting {
    pub title: String,
    pub scheduled_start: Millis,
    pub scheduled_end: Millis,
    pub studio_name: String,
    pub sites: Vec<InvitedSite>,
    /// When its recording starts; `None`: as the hub's `--recording` says.
    pub recording: Option<RecordingMode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InvitedSite {
    /// As the organizer typed it: checked against the directory by [`Store::create_meeting`].
    pub code: String,
    /// Defaults to the directory's usual number.
    pub expected_delegates: Option<u32>,
}

/// A meeting with its plan, codes and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingView {
    #[serde(flatten)]
    pub plan: MeetingPlan,
    pub studio_name: String,
    pub studio_code: Option<JoinCode>,
    /// Current join code per site (absent while revoked and not reissued).
    pub site_codes: HashMap<SiteCode, JoinCode>,
    pub state: MeetingState,
    /// On a provincial hub: the national meeting (its id on the parent hub) this meeting is
    /// this province's part of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_meeting: Option<i64>,
    /// When its recording starts (`null`: as the hub's `--recording` says).
    pub recording: Option<RecordingMode>,
}

/// Where a meeting is in its life: scheduled → in progress (started) → ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingState {
    Scheduled,
    InProgress,
    Ended,
}

/// What a join needs of a meeting, without its join codes or its log: read in one short
/// transaction instead of a whole [`MeetingView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRoster {
    pub id: MeetingId,
    pub title: String,
    pub state: MeetingState,
    pub studio_name: String,
    /// The expected sites, in roster order.
    pub sites: Vec<ExpectedSite>,
    /// When its recording starts (`None`: as the hub says).
    pub recording: Option<RecordingMode>,
}

/// What a valid join code grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub meeting_id: MeetingId,
    /// The site, or `None` for the studio's code.
    pub site: Option<ExpectedSite>,
    pub studio_name: String,
    /// The meeting is this hub's part of a national meeting (chaired at the centre).
    pub national_part: bool,
}

/// Why a join code is refused: the first four are the client's to hear; [`CodeError::Database`]
/// is the hub's failure (answer `internal`, log the source).
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("this join code does not exist")]
    Unknown,
    #[error("this join code has been revoked; ask the organizer for a new link")]
    Revoked,
    #[error("this meeting has ended")]
    MeetingEnded,
    #[error("this join code belongs to another meeting")]
    OtherMeeting,
    /// The code could not be checked; a retry may work. The message shown to a client names no
    /// detail of the database; the source does.
    #[error("the hub could not check this join code; try again")]
    Database(#[from] StoreError),
}

/// Why a meeting was not created: the organizer's request (every variant but
/// [`CreateMeetingError::Store`]), or the store's failure.
#[derive(Debug, thiserror::Error)]
pub enum CreateMeetingError {
    #[error("the title {0}")]
    BadTitle(TextError),
    #[error("the studio name {0}")]
    BadStudioName(TextError),
    #[error("the scheduled end must be after the start")]
    EndNotAfterStart,
    #[error("invite at least one site")]
    NoSites,
    #[error("site {0} is invited twice")]
    InvitedTwice(String),
    #[error("unknown site code {0}")]
    UnknownSite(String),
    #[error("{expected} expected delegates for {name} is more than {MAX_DELEGATES}")]
    TooManyDelegates { name: String, expected: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a site's join code was not reissued.
#[derive(Debug, thiserror::Error)]
pub enum ReissueError {
    /// No such meeting, or the site is not on its roster.
    #[error("site {site} is not invited to meeting {meeting}")]
    NotInvited { meeting: MeetingId, site: SiteCode },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Creates a meeting with a join code for the studio and for each invited site; nothing is
    /// written unless all of it is valid.
    pub fn create_meeting(&self, new: &NewMeeting) -> Result<MeetingView, CreateMeetingError> {
        let title = human_text(new.title.trim(), 200).map_err(CreateMeetingError::BadTitle)?;
        let studio =
            human_text(new.studio_name.trim(), 200).map_err(CreateMeetingError::BadStudioName)?;
        let (title, studio) = (title.as_str(), studio.as_str());
        if new.scheduled_end <= new.scheduled_start {
            return Err(CreateMeetingError::EndNotAfterStart);
        }
        if new.sites.is_empty() {
            return Err(CreateMeetingError::NoSites);
        }
        let now = now_millis();
        let mut conn = self.writer();
        let id = conn.write(|tx| create_in(tx, new, title, studio, now))?;
        Ok(meeting_view(&mut conn, id)?)
    }

    /// A meeting with its current join codes and state; [`StoreError::NotFound`] if there is
    /// none.
    pub fn meeting(&self, id: MeetingId) -> Result<MeetingView, StoreError> {
        self.reader().read(|tx| meeting_view(tx, id))
    }

    /// The meeting as a join needs it: title, state, studio and expected sites.
    pub fn meeting_roster(&self, id: MeetingId) -> Result<MeetingRoster, StoreError> {
        self.reader().read(|tx| {
            let Some(Planned {
                plan,
                studio_name,
                recording,
            }) = plan(tx, id)?
            else {
                return Err(StoreError::NotFound(format!("meeting {id}")));
            };
            Ok(MeetingRoster {
                id,
                title: plan.title,
                state: meeting_state(tx, id)?,
                studio_name,
                sites: plan.roster,
                recording,
            })
        })
    }

    /// A meeting's title alone (a download's name), without its roster.
    pub fn meeting_title(&self, id: MeetingId) -> Result<String, StoreError> {
        self.reader().read(|tx| {
            tx.query_opt("SELECT title FROM meetings WHERE id = $1", args![id.0])?
                .map(|r| r.get(0))
                .transpose()?
                .ok_or_else(|| StoreError::NotFound(format!("meeting {id}")))
        })
    }

    /// Every meeting, newest first.
    pub fn meetings(&self) -> Result<Vec<MeetingView>, StoreError> {
        self.reader().read(|tx| {
            let ids: Vec<i64> = tx
                .query(
                    "SELECT id FROM meetings ORDER BY scheduled_start DESC, id DESC",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            ids.into_iter()
                .map(|id| meeting_view(tx, MeetingId(id)))
                .collect()
        })
    }

    /// Revokes a site's join code and issues a new one; returns the new code.
    pub fn reissue_code(
        &self,
        meeting: MeetingId,
        site: &SiteCode,
    ) -> Result<JoinCode, ReissueError> {
        let now = now_millis();
        self.writer().write(|tx| {
            let on_roster: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM roster WHERE meeting_id = $1 AND site_code = $2)",
                    args![meeting.0, site.as_str()],
                )?
                .get(0)?;
            if !on_roster {
                return Err(ReissueError::NotInvited {
                    meeting,
                    site: site.clone(),
                });
            }
            tx.execute(
                "UPDATE join_codes SET revoked_at = $1
                 WHERE meeting_id = $2 AND site_code = $3 AND revoked_at IS NULL",
                args![now, meeting.0, site.as_str()],
            )?;
            Ok(insert_code(tx, meeting, Some(site.as_str()), now)?)
        })
    }

    /// Checks a join code, optionally against the meeting the page was opened for.
    pub fn resolve_code(
        &self,
        code: &JoinCode,
        expected_meeting: Option<MeetingId>,
    ) -> Result<Grant, CodeError> {
        self.reader()
            .read(|tx| resolve_in(tx, code, expected_meeting))
    }
}

/// Writes a valid meeting, its roster and its codes in `tx`; returns its id.
fn resolve_in(
    tx: &mut Conn,
    code: &JoinCode,
    expected_meeting: Option<MeetingId>,
) -> Result<Grant, CodeError> {
    let row: Option<(i64, Option<String>, Option<i64>)> = tx
        .query_opt(
            "SELECT meeting_id, site_code, revoked_at FROM join_codes WHERE code = $1",
            args![code.as_str()],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?)))
        .transpose()?;
    let Some((meeting, site_code, revoked_at)) = row else {
        return Err(CodeError::Unknown);
    };
    let meeting = MeetingId(meeting);
    if expected_meeting.is_some_and(|m| m != meeting) {
        return Err(CodeError::OtherMeeting);
    }
    if revoked_at.is_some() {
        return Err(CodeError::Revoked);
    }
    let studio_name: Option<String> = tx
        .query_opt(
            "SELECT studio_name FROM meetings WHERE id = $1",
            args![meeting.0],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    let Some(studio_name) = studio_name else {
        return Err(CodeError::Unknown);
    };
    if meeting_state(tx, meeting)? == MeetingState::Ended {
        return Err(CodeError::MeetingEnded);
    }
    let site = match site_code {
        Some(code) => Some(
            tx.query_opt(
                &format!("{EXPECTED_SITE} WHERE r.meeting_id = $1 AND r.site_code = $2"),
                args![meeting.0, code],
            )?
            .as_ref()
            .map(expected_site)
            .transpose()?
            .ok_or(CodeError::Unknown)?,
        ),
        None => None,
    };
    let national_part = tx
        .query_opt(
            "SELECT 1 FROM parent_meetings WHERE meeting_id = $1",
            args![meeting.0],
        )?
        .is_some();
    Ok(Grant {
        meeting_id: meeting,
        site,
        studio_name,
        national_part,
    })
}

fn create_in(
    tx: &mut Conn,
    new: &NewMeeting,
    title: &str,
    studio: &str,
    now: Millis,
) -> Result<MeetingId, CreateMeetingError> {
    let id = MeetingId(
        tx.query_one(
            "INSERT INTO meetings
                 (title, scheduled_start, scheduled_end, studio_name, created_at, recording)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            args![
                title,
                new.scheduled_start,
                new.scheduled_end,
                studio,
                now,
                new.recording.map(RecordingMode::as_str)
            ],
        )?
        .get(0)?,
    );
    let mut seen = HashSet::new();
    for (position, invited) in new.sites.iter().enumerate() {
        if !seen.insert(invited.code.as_str()) {
            return Err(CreateMeetingError::InvitedTwice(invited.code.clone()));
        }
        let site: Option<(String, u32)> = tx
            .query_opt(
                "SELECT name, delegates FROM sites WHERE code = $1",
                args![invited.code],
            )?
            .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
            .transpose()?;
        let Some((name, usual)) = site else {
            return Err(CreateMeetingError::UnknownSite(invited.code.clone()));
        };
        let expected = invited.expected_delegates.unwrap_or(usual);
        if expected > MAX_DELEGATES {
            return Err(CreateMeetingError::TooManyDelegates { name, expected });
        }
        tx.execute(
            "INSERT INTO roster (meeting_id, site_code, site_name, expected_delegates, position)
             VALUES ($1, $2, $3, $4, $5)",
            args![id.0, invited.code, name, expected, position],
        )?;
        insert_code(tx, id, Some(&invited.code), now)?;
    }
    insert_code(tx, id, None, now)?;
    Ok(id)
}

/// A meeting's plan with what else its row holds.
struct Planned {
    plan: MeetingPlan,
    studio_name: String,
    /// Its own recording setting (`None` for a meeting made before there was one).
    recording: Option<RecordingMode>,
}

/// The plan of a meeting, its studio's name and its recording setting, if the meeting exists.
fn plan(conn: &mut Conn, id: MeetingId) -> Result<Option<Planned>, StoreError> {
    type Row = (String, i64, i64, String, Option<String>);
    let meeting: Option<Row> = conn
        .query_opt(
            "SELECT title, scheduled_start, scheduled_end, studio_name, recording
             FROM meetings WHERE id = $1",
            args![id.0],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .transpose()?;
    let Some((title, scheduled_start, scheduled_end, studio_name, recording)) = meeting else {
        return Ok(None);
    };
    let roster: Vec<ExpectedSite> = conn
        .query(
            &format!("{EXPECTED_SITE} WHERE r.meeting_id = $1 ORDER BY r.position"),
            args![id.0],
        )?
        .iter()
        .map(expected_site)
        .collect::<Result<_, _>>()?;
    let plan = MeetingPlan {
        id: id.0,
        title,
        scheduled_start,
        scheduled_end,
        roster,
    };
    Ok(Some(Planned {
        plan,
        studio_name,
        recording: recording.as_deref().and_then(RecordingMode::parse),
    }))
}

fn meeting_view(conn: &mut Conn, id: MeetingId) -> Result<MeetingView, StoreError> {
    let Some(Planned {
        plan,
        studio_name,
        recording,
    }) = plan(conn, id)?
    else {
        return Err(StoreError::NotFound(format!("meeting {id}")));
    };
    let mut studio_code = None;
    let mut site_codes = HashMap::new();
    for row in conn.query(
        "SELECT code, site_code FROM join_codes WHERE meeting_id = $1 AND revoked_at IS NULL",
        args![id.0],
    )? {
        let (code, site) = (row.get::<String>(0)?, row.get::<Option<String>>(1)?);
        let code = stored_code(code)?;
        match site {
            Some(site) => {
                let site = SiteCode::try_from(site).map_err(|e| {
                    StoreError::Internal(format!("a roster site of meeting {id}: {e}"))
                })?;
                site_codes.insert(site, code);
            }
            None => studio_code = Some(code),
        }
    }
    Ok(MeetingView {
        plan,
        studio_name,
        studio_code,
        site_codes,
        state: meeting_state(conn, id)?,
        parent_meeting: conn
            .query_opt(
                "SELECT parent_meeting_id FROM parent_meetings WHERE meeting_id = $1",
                args![id.0],
            )?
            .map(|r| r.get(0))
            .transpose()?,
        recording,
    })
}

/// The state the log shows: a meeting has started once `meeting_started` is in it, ended
/// once `meeting_ended` is.
pub(super) fn meeting_state(conn: &mut Conn, id: MeetingId) -> Result<MeetingState, StoreError> {
    let row = conn.query_one(
        "SELECT
           EXISTS (SELECT 1 FROM events WHERE meeting_id = $1 AND kind = 'meeting_started'),
           EXISTS (SELECT 1 FROM events WHERE meeting_id = $1 AND kind = 'meeting_ended')",
        args![id.0],
    )?;
    let (started, ended): (bool, bool) = (row.get(0)?, row.get(1)?);
    Ok(match (started, ended) {
        (_, true) => MeetingState::Ended,
        (true, false) => MeetingState::InProgress,
        (false, false) => MeetingState::Scheduled,
    })
}

/// A roster's sites as [`expected_site`] reads them, with the province the directory places
/// each in; the caller adds the conditions on `r` (the roster).
const EXPECTED_SITE: &str = "SELECT r.site_code, r.site_name, r.expected_delegates,
       CASE WHEN s.level = 'province' THEN s.name ELSE s.parent_name END
     FROM roster r LEFT JOIN sites s ON s.code = r.site_code";

fn expected_site(r: &Row) -> Result<ExpectedSite, StoreError> {
    Ok(ExpectedSite {
        code: r.get(0)?,
        name: r.get(1)?,
        expected_delegates: r.get(2)?,
        province: r.get(3)?,
    })
}

/// A join code read back from the database, where only the hub writes them.
fn stored_code(code: String) -> Result<JoinCode, StoreError> {
    JoinCode::try_from(code).map_err(|e| StoreError::Internal(format!("a stored join code: {e}")))
}

/// Issues an unguessable join code: 100 random bits in 20 characters of [`random_text`].
/// Without an entropy source no code is made at all.
fn insert_code(
    tx: &mut Conn,
    meeting: MeetingId,
    site_code: Option<&str>,
    now: Millis,
) -> Result<JoinCode, StoreError> {
    let code = random_text(20)
        .map_err(|e| StoreError::Internal(format!("no random bytes for a join code: {e}")))?;
    tx.execute(
        "INSERT INTO join_codes (code, meeting_id, site_code, created_at) VALUES ($1, $2, $3, $4)",
        args![code, meeting.0, site_code, now],
    )?;
    stored_code(code)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{drop_table, site, temp_store};
    use super::*;
    use crate::attendance::EventKind;

    /// A store with three sites in its directory and a meeting inviting the first two.
    fn store_with_meeting() -> (Store, MeetingView) {
        let store = temp_store("meetings");
        store
            .import_sites(&[
                site("2269", "Xã Thượng Lâm", 40),
                site("2317", "Phường Minh Xuân", 60),
                site("2302", "Xã Minh Quang", 30),
            ])
            .expect("imported");
        let view = store
            .create_meeting(&new_meeting(&["2317", "2269"]))
            .expect("created");
        (store, view)
    }

    fn new_meeting(codes: &[&str]) -> NewMeeting {
        NewMeeting {
            title: "Họp sáng".to_owned(),
            scheduled_start: 1_796_086_800_000,
            scheduled_end: 1_796_094_000_000,
            studio_name: "Studio tỉnh".to_owned(),
            sites: codes
                .iter()
                .map(|code| InvitedSite {
                    code: (*code).to_owned(),
                    expected_delegates: None,
                })
                .collect(),
            recording: None,
        }
    }

    fn code_of(view: &MeetingView, site: &str) -> JoinCode {
        view.site_codes
            .get(site)
            .cloned()
            .expect("the site has a code")
    }

    #[test]
    fn a_refused_meeting_says_why_and_leaves_nothing() {
        let (store, _) = store_with_meeting();
        let refused = |new: NewMeeting| store.create_meeting(&new).expect_err("refused");
        assert!(matches!(
            refused(new_meeting(&["2269", "9999"])),
            CreateMeetingError::UnknownSite(code) if code == "9999"
        ));
        assert!(matches!(
            refused(new_meeting(&["2269", "2269"])),
            CreateMeetingError::InvitedTwice(code) if code == "2269"
        ));
        assert!(matches!(
            refused(new_meeting(&[])),
            CreateMeetingError::NoSites
        ));
        let mut backwards = new_meeting(&["2269"]);
        backwards.scheduled_end = backwards.scheduled_start;
        assert!(matches!(
            refused(backwards),
            CreateMeetingError::EndNotAfterStart
        ));
        let mut crowded = new_meeting(&["2269"]);
        if let Some(invited) = crowded.sites.first_mut() {
            invited.expected_delegates = Some(MAX_DELEGATES + 1);
        }
        assert!(matches!(
            refused(crowded),
            CreateMeetingError::TooManyDelegates { expected, .. } if expected == MAX_DELEGATES + 1
        ));
        assert_eq!(store.meetings().expect("listed").len(), 1, "only the first");
    }

    #[test]
    fn the_roster_is_what_a_join_needs_and_follows_the_log() {
        let (store, view) = store_with_meeting();
        let id = MeetingId(view.plan.id);
        let roster = store.meeting_roster(id).expect("roster");
        assert_eq!(roster.id, id);
        assert_eq!(roster.title, "Họp sáng");
        assert_eq!(roster.studio_name, "Studio tỉnh");
        assert_eq!(roster.state, MeetingState::Scheduled);
        let sites: Vec<(&str, &str, u32)> = roster
            .sites
            .iter()
            .map(|s| (s.code.as_str(), s.name.as_str(), s.expected_delegates))
            .collect();
        assert_eq!(
            sites,
            [
                ("2317", "Phường Minh Xuân", 60),
                ("2269", "Xã Thượng Lâm", 40)
            ],
            "in the order invited, with the directory's delegates"
        );
        assert_eq!(roster.sites, view.plan.roster);

        let recorder = store.recorder().expect("recorder");
        recorder
            .append_blocking(id, 1, EventKind::MeetingStarted)
            .expect("started");
        assert_eq!(
            store.meeting_roster(id).expect("roster").state,
            MeetingState::InProgress
        );
        recorder
            .append_blocking(id, 2, EventKind::MeetingEnded)
            .expect("ended");
        assert_eq!(
            store.meeting_roster(id).expect("roster").state,
            MeetingState::Ended
        );
        assert_eq!(store.meeting(id).expect("view").state, MeetingState::Ended);
        assert!(matches!(
            store.meeting_roster(MeetingId(id.0 + 100)),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn codes_grant_their_site_until_reissued() {
        let (store, view) = store_with_meeting();
        let id = MeetingId(view.plan.id);
        let old = code_of(&view, "2269");
        let grant = store.resolve_code(&old, Some(id)).expect("granted");
        assert_eq!(grant.meeting_id, id);
        assert_eq!(grant.studio_name, "Studio tỉnh");
        assert_eq!(grant.site.map(|s| s.name), Some("Xã Thượng Lâm".to_owned()));
        let studio = view.studio_code.clone().expect("studio code");
        assert_eq!(
            store.resolve_code(&studio, None).expect("studio").site,
            None
        );
        assert!(matches!(
            store.resolve_code(&old, Some(MeetingId(id.0 + 1))),
            Err(CodeError::OtherMeeting)
        ));
        let unknown = JoinCode::try_from("nosuchcode").expect("well-formed");
        assert!(matches!(
            store.resolve_code(&unknown, None),
            Err(CodeError::Unknown)
        ));

        let site = SiteCode::try_from("2269").expect("site code");
        let new = store.reissue_code(id, &site).expect("reissued");
        assert_ne!(new, old);
        assert!(matches!(
            store.resolve_code(&old, None),
            Err(CodeError::Revoked)
        ));
        assert!(store.resolve_code(&new, Some(id)).is_ok());
        assert_eq!(code_of(&store.meeting(id).expect("view"), "2269"), new);

        let not_invited = SiteCode::try_from("2302").expect("site code");
        assert!(matches!(
            store.reissue_code(id, &not_invited),
            Err(ReissueError::NotInvited { .. })
        ));
    }

    #[test]
    fn a_code_that_cannot_be_checked_is_a_database_failure_not_an_unknown_code() {
        let (store, view) = store_with_meeting();
        let code = code_of(&view, "2269");
        drop_table(&store, "join_codes");
        let failed = store.resolve_code(&code, None);
        assert!(
            matches!(failed, Err(CodeError::Database(StoreError::Database(_)))),
            "{failed:?}"
        );
        let message = failed.map(|_| ()).expect_err("failed").to_string();
        assert!(
            !message.contains("join_codes"),
            "no detail for the client: {message}"
        );
    }

    #[test]
    fn a_meeting_that_cannot_be_created_for_the_database_is_the_stores_failure() {
        let (store, _) = store_with_meeting();
        drop_table(&store, "roster");
        assert!(matches!(
            store.create_meeting(&new_meeting(&["2269"])),
            Err(CreateMeetingError::Store(StoreError::Database(_)))
        ));
    }

    #[test]
    fn a_token_opens_its_meeting_until_the_next_one_is_issued() {
        use crate::store::TokenKind;
        let (store, view) = store_with_meeting();
        let meeting = MeetingId(view.plan.id);
        assert_eq!(
            store
                .stream_token(meeting, TokenKind::Encoder)
                .expect("read"),
            None
        );
        let first = store
            .issue_stream_token(meeting, TokenKind::Encoder)
            .expect("issue");
        assert_eq!(first.len(), 32);
        assert_eq!(
            store
                .stream_token(meeting, TokenKind::Encoder)
                .expect("read"),
            Some(first.clone())
        );
        store
            .check_stream_token(meeting, TokenKind::Encoder, &first)
            .expect("valid");
        assert!(matches!(
            store.check_stream_token(MeetingId(meeting.0 + 1), TokenKind::Encoder, &first),
            Err(crate::store::StreamTokenError::Unknown)
        ));

        let second = store
            .issue_stream_token(meeting, TokenKind::Encoder)
            .expect("reissue");
        assert_ne!(first, second);
        assert!(matches!(
            store.check_stream_token(meeting, TokenKind::Encoder, &first),
            Err(crate::store::StreamTokenError::Revoked)
        ));
        store
            .check_stream_token(meeting, TokenKind::Encoder, &second)
            .expect("valid");
        assert!(matches!(
            store.issue_stream_token(MeetingId(meeting.0 + 1), TokenKind::Encoder),
            Err(StoreError::NotFound(_))
        ));
    }
}
