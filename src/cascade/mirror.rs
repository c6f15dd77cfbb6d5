//! National meetings across the tree. The parent gives each child hub the part of each meeting
//! that concerns it ([`for_node`]): the invited sites of the child's provinces, as the parent's
//! directory knows them, so a child cannot take another province's communes. The child makes its
//! own meeting for that part ([`apply`]), with its own join links, so each commune connects to
//! its own provincial hub; it follows the parent's meeting as it starts and ends.
//!
//! Attendance goes the other way: the child writes its sites' events to its own log first, as
//! any hub, then sends them up in order ([`next_batch`]), numbered in its log; the parent
//! stores each once whatever is sent again, and says how far it has stored ([`accept`]); the
//! child keeps that mark, so after an outage the backlog flows up by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diemcau_signaling::MeetingId;

use super::{NodeMeeting, NodeMessage, NodeSite};
use crate::attendance::{Event, EventKind};
use crate::directory::{Level, Site};
use crate::hub::Hub;
use crate::store::{
    InvitedSite, MeetingState, MeetingView, NewMeeting, NodeBatch, NodeRecord, Recorder, Store,
    StoreError,
};

/// Events sent up in one batch at most.
const BATCH: usize = 500;

/// What a child sends up of its sites' attendance: their sessions, reception and head counts.
/// The rest (its own studio, its own chair's actions, link samples) stays in its own log.
fn goes_up(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::SiteJoined { .. }
            | EventKind::SiteReconnected { .. }
            | EventKind::SiteLeft { .. }
            | EventKind::MediaChanged { .. }
            | EventKind::HeadCount { .. }
            | EventKind::CentreUnreachable { .. }
            | EventKind::CentreReachable { .. }
    )
}

/// On the child: this hub's parts of national meetings that are in progress.
pub fn in_progress(store: &Store) -> Result<Vec<MeetingId>, StoreError> {
    let mut found = Vec::new();
    for (_, local, _) in store.mirrors()? {
        if store.meeting(local)?.state == MeetingState::InProgress {
            found.push(local);
        }
    }
    Ok(found)
}

/// On the child: notes in each national meeting in progress here that the centre is out of
/// reach (or back), once per change: its communes stay connected, and the reports say the
/// centre was away for that time.
pub async fn note_centre(hub: &Arc<Hub>, reachable: bool) {
    let store = hub.store().clone();
    let due = store
        .blocking(move |s: &Store| {
            let mut due = Vec::new();
            for local in in_progress(s)? {
                let last = s.last_event_kind(local, &["centre_unreachable", "centre_reachable"])?;
                let was_reachable = last.as_deref() != Some("centre_unreachable");
                due.push((local, was_reachable != reachable));
            }
            Ok::<_, StoreError>(due)
        })
        .await;
    let due = match due {
        Ok(due) => due,
        Err(e) => {
            tracing::error!("the national meetings in progress not read: {e}");
            return;
        }
    };
    for (local, changed) in due {
        // The communes are told even when the log had it already (a live meeting opened from
        // an older log would otherwise lag).
        hub.centre_changed(local, reachable);
        if !changed {
            continue;
        }
        let kind = if reachable {
            EventKind::CentreReachable {
                node: String::new(),
            }
        } else {
            EventKind::CentreUnreachable {
                node: String::new(),
            }
        };
        let now = crate::store::now_millis();
        if let Err(e) = hub.recorder().append(local, now, kind).await {
            tracing::error!(meeting = %local, "the centre's state not logged: {e}");
        }
    }
}

/// On the child: the next batch to send up, if any, as `(parent meeting, message)`. Meetings
/// whose new events all stay here have their mark moved on the spot.
pub fn next_batch(store: &Store) -> Result<Option<(i64, NodeMessage)>, StoreError> {
    for (parent_meeting, local, mut acked) in store.mirrors()? {
        loop {
            let events = store.events_after(local, acked, BATCH)?;
            let Some(through) = events.last().map(|e| e.seq) else {
                break;
            };
            let events: Vec<Event> = events.into_iter().filter(|e| goes_up(&e.kind)).collect();
            if events.is_empty() {
                store.set_acked(parent_meeting, through)?;
                acked = through;
                continue;
            }
            let message = NodeMessage::Events {
                meeting: parent_meeting,
                through,
                events,
            };
            return Ok(Some((parent_meeting, message)));
        }
    }
    Ok(None)
}

/// On the parent: stores what `node` sent of its part of `meeting`, each event once. Only the
/// sites of the meeting the node serves are taken; their sessions are named after the node, so
/// they never mix with sessions of this hub. Returns the node's mark.
pub async fn accept(
    store: &Store,
    recorder: &Recorder,
    node: &NodeRecord,
    meeting: i64,
    through: u64,
    events: Vec<Event>,
) -> Result<u64, String> {
    let provinces = node.provinces.clone();
    let served: HashSet<String> = store
        .blocking(move |s: &Store| {
            // This meeting only: every batch of every node passes here.
            let view = s.meeting(MeetingId(meeting))?;
            Ok::<_, StoreError>(
                part_of(&view, &directory(s)?, &provinces)
                    .map(|part| part.sites.into_iter().map(|site| site.code).collect())
                    .unwrap_or_default(),
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    if served.is_empty() {
        return Err(format!(
            "meeting {meeting} invites none of the sites of node {}",
            node.name
        ));
    }
    let mut taken = Vec::with_capacity(events.len());
    for event in events {
        let centre = matches!(
            event.kind,
            EventKind::CentreUnreachable { .. } | EventKind::CentreReachable { .. }
        );
        let site_ok = centre || event.kind.site().is_some_and(|site| served.contains(site));
        if !goes_up(&event.kind) || !site_ok {
            tracing::warn!(node = %node.name, meeting, seq = event.seq, kind = event.kind.name(), "an event of another site or kind from a node: not stored");
            continue;
        }
        taken.push((event.seq, event.at, named_after(&node.name, event.kind)));
    }
    recorder
        .append_from_node(NodeBatch {
            node: node.name.clone(),
            meeting: MeetingId(meeting),
            events: taken,
            through,
        })
        .await
        .map_err(|e| e.to_string())
}

/// The event with its session (and the one it continues) named `node/session`, and the
/// centre's outages named after the node.
fn named_after(node: &str, mut kind: EventKind) -> EventKind {
    let rename = |session: &mut String| *session = format!("{node}/{session}");
    match &mut kind {
        EventKind::CentreUnreachable { node: name } | EventKind::CentreReachable { node: name } => {
            *name = node.to_owned();
        }
        EventKind::SiteJoined { session, .. }
        | EventKind::SiteLeft { session, .. }
        | EventKind::MediaChanged { session, .. } => rename(session),
        EventKind::SiteReconnected {
            session,
            previous_session,
            ..
        } => {
            rename(session);
            rename(previous_session);
        }
        _ => {}
    }
    kind
}

/// The parent's meetings as the node serving `provinces` gets them (meetings inviting none of
/// its sites left out).
pub fn for_node(store: &Store, provinces: &[String]) -> Result<Vec<NodeMeeting>, StoreError> {
    let directory = directory(store)?;
    Ok(store
        .meetings()?
        .iter()
        .filter_map(|meeting| part_of(meeting, &directory, provinces))
        .collect())
}

/// On the parent: which child hub serves each site of the directory, by site code (a province
/// a node serves, or one of its communes). Revoked nodes serve nothing. Those sites join
/// through their provincial hub, with its links; this hub does not hand out its own.
pub fn served_by(store: &Store) -> Result<HashMap<String, String>, StoreError> {
    let nodes: Vec<_> = store
        .nodes()?
        .into_iter()
        .filter(|n| n.revoked_at.is_none())
        .collect();
    if nodes.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(store
        .sites()?
        .into_iter()
        .filter_map(|site| {
            let node = nodes.iter().find(|n| serves(&n.provinces, &site))?;
            Some((site.code, node.name.clone()))
        })
        .collect())
}

/// Whether the node serving `provinces` serves `site`: one of those provinces itself, or one of
/// their communes (by the directory's parent code).
fn serves(provinces: &[String], site: &Site) -> bool {
    provinces.contains(&site.code)
        || site
            .parent_code
            .as_ref()
            .is_some_and(|parent| provinces.contains(parent))
}

/// The parent's directory by site code.
fn directory(store: &Store) -> Result<HashMap<String, Site>, StoreError> {
    Ok(store
        .sites()?
        .into_iter()
        .map(|site| (site.code.clone(), site))
        .collect())
}

/// The part of `meeting` the node serving `provinces` gets: the invited sites that `directory`
/// places in those provinces (a province itself, or one of its communes); `None` when there
/// are none.
fn part_of(
    meeting: &MeetingView,
    directory: &HashMap<String, Site>,
    provinces: &[String],
) -> Option<NodeMeeting> {
    let sites: Vec<NodeSite> = meeting
        .plan
        .roster
        .iter()
        .filter_map(|expected| {
            let site = directory
                .get(&expected.code)
                .filter(|s| serves(provinces, s))?;
            Some(NodeSite {
                code: site.code.clone(),
                name: expected.name.clone(),
                kind: site.kind.clone(),
                parent_code: site.parent_code.clone(),
                parent_name: site.parent_name.clone(),
                expected_delegates: expected.expected_delegates,
            })
        })
        .collect();
    (!sites.is_empty()).then(|| NodeMeeting {
        id: meeting.plan.id,
        title: meeting.plan.title.clone(),
        studio_name: meeting.studio_name.clone(),
        scheduled_start: meeting.plan.scheduled_start,
        scheduled_end: meeting.plan.scheduled_end,
        state: state_name(meeting.state).to_owned(),
        sites,
    })
}

fn state_name(state: MeetingState) -> &'static str {
    match state {
        MeetingState::Scheduled => "scheduled",
        MeetingState::InProgress => "in_progress",
        MeetingState::Ended => "ended",
    }
}

/// A national meeting in progress and this hub's part of it: what a relay carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub parent: i64,
    pub local: MeetingId,
    pub studio_name: String,
}

/// On the child: makes this hub's part of each of the parent's meetings it does not have yet
/// (adding the invited sites its directory lacks), and starts or ends it as the parent's did.
/// A meeting that ended before this hub heard of it is not made. Returns the meetings in
/// progress.
pub async fn apply(hub: &Arc<Hub>, meetings: Vec<NodeMeeting>) -> Result<Vec<InProgress>, String> {
    let mut in_progress = Vec::new();
    for meeting in meetings {
        let parent_id = meeting.id;
        let store = hub.store().clone();
        let known = store
            .blocking(move |s: &Store| s.mirrored_meeting(parent_id))
            .await
            .map_err(|e| e.to_string())?;
        let local = match known {
            Some(local) => local,
            None if meeting.state == "ended" => continue,
            None => create(hub, &meeting).await?,
        };
        follow(hub, local, &meeting.state).await?;
        if meeting.state == "in_progress" {
            in_progress.push(InProgress {
                parent: parent_id,
                local,
                studio_name: meeting.studio_name.clone(),
            });
        }
    }
    Ok(in_progress)
}

async fn create(hub: &Arc<Hub>, meeting: &NodeMeeting) -> Result<MeetingId, String> {
    let parent_id = meeting.id;
    let meeting = meeting.clone();
    let store = hub.store().clone();
    store
        .blocking(move |s: &Store| {
            let known: HashSet<String> = s.sites()?.into_iter().map(|site| site.code).collect();
            let missing: Vec<Site> = meeting
                .sites
                .iter()
                .filter(|site| !known.contains(&site.code))
                .map(|site| Site {
                    code: site.code.clone(),
                    name: site.name.clone(),
                    level: if site.parent_code.is_some() {
                        Level::Commune
                    } else {
                        Level::Province
                    },
                    kind: site.kind.clone(),
                    parent_code: site.parent_code.clone(),
                    parent_name: site.parent_name.clone(),
                    delegates: site.expected_delegates,
                })
                .collect();
            if !missing.is_empty() {
                s.import_sites(&missing)?;
            }
            let new = NewMeeting {
                title: meeting.title.clone(),
                scheduled_start: meeting.scheduled_start,
                scheduled_end: meeting.scheduled_end,
                studio_name: meeting.studio_name.clone(),
                sites: meeting
                    .sites
                    .iter()
                    .map(|site| InvitedSite {
                        code: site.code.clone(),
                        expected_delegates: Some(site.expected_delegates),
                    })
                    .collect(),
                // This hub's part is recorded as its own `--recording` says.
                recording: None,
            };
            let view = s
                .create_meeting(&new)
                .map_err(|e| StoreError::Internal(format!("the national meeting {parent_id}: {e}")))?;
            let local = MeetingId(view.plan.id);
            s.record_mirror(parent_id, local)?;
            tracing::info!(parent_meeting = parent_id, meeting = %local, sites = new.sites.len(), "made this province's part of a national meeting");
            Ok::<_, StoreError>(local)
        })
        .await
        .map_err(|e| e.to_string())
}

/// Brings the local meeting to the parent's state (it only moves forward).
async fn follow(hub: &Arc<Hub>, local: MeetingId, parent_state: &str) -> Result<(), String> {
    let store = hub.store().clone();
    let state = store
        .blocking(move |s: &Store| s.meeting(local))
        .await
        .map_err(|e| e.to_string())?
        .state;
    let start = matches!(parent_state, "in_progress" | "ended") && state == MeetingState::Scheduled;
    let end = parent_state == "ended" && state != MeetingState::Ended;
    if start {
        hub.start_meeting(local).await.map_err(|e| e.to_string())?;
        tracing::info!(meeting = %local, "started with the national meeting");
    }
    if end {
        hub.end_meeting(local).await.map_err(|e| e.to_string())?;
        tracing::info!(meeting = %local, "ended with the national meeting");
    }
    Ok(())
}
