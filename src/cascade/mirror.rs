//! National meetings across the tree. The parent gives each child hub the part of each meeting
//! that concerns it ([`for_node`]): the invited sites of the child's provinces, as the parent's
//! directory knows them, so a child cannot take another province's communes. The child makes its
//! own meeting for that part ([`apply`]), with its own join links, so each commune connects to
//! its own provincial hub; it follows the parent's meeting as it starts and ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diemcau_signaling::MeetingId;

use super::{NodeMeeting, NodeSite};
use crate::directory::{Level, Site};
use crate::hub::Hub;
use crate::store::{InvitedSite, MeetingState, NewMeeting, Store, StoreError};

/// The parent's meetings as the node serving `provinces` gets them (meetings inviting none of
/// its sites left out).
pub fn for_node(store: &Store, provinces: &[String]) -> Result<Vec<NodeMeeting>, StoreError> {
    let directory: HashMap<String, Site> = store
        .sites()?
        .into_iter()
        .map(|site| (site.code.clone(), site))
        .collect();
    let serves = |site: &Site| {
        provinces.contains(&site.code)
            || site
                .parent_code
                .as_ref()
                .is_some_and(|parent| provinces.contains(parent))
    };
    let mut out = Vec::new();
    for meeting in store.meetings()? {
        let sites: Vec<NodeSite> = meeting
            .plan
            .roster
            .iter()
            .filter_map(|expected| {
                let site = directory.get(&expected.code).filter(|s| serves(s))?;
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
        if sites.is_empty() {
            continue;
        }
        out.push(NodeMeeting {
            id: meeting.plan.id,
            title: meeting.plan.title.clone(),
            studio_name: meeting.studio_name.clone(),
            scheduled_start: meeting.plan.scheduled_start,
            scheduled_end: meeting.plan.scheduled_end,
            state: state_name(meeting.state).to_owned(),
            sites,
        });
    }
    Ok(out)
}

fn state_name(state: MeetingState) -> &'static str {
    match state {
        MeetingState::Scheduled => "scheduled",
        MeetingState::InProgress => "in_progress",
        MeetingState::Ended => "ended",
    }
}

/// On the child: makes this hub's part of each of the parent's meetings it does not have yet
/// (adding the invited sites its directory lacks), and starts or ends it as the parent's did.
/// A meeting that ended before this hub heard of it is not made.
pub async fn apply(hub: &Arc<Hub>, meetings: Vec<NodeMeeting>) -> Result<(), String> {
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
    }
    Ok(())
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
