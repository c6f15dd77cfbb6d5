//! What a meeting's log says of its live state when a hub opens it again while it runs: after
//! this hub crashed, or when it takes over from another hub sharing its database. The floor,
//! the muted sites, a roll call in progress with its answers and the chair's choice of
//! programme are as they were; the sites
//! themselves come back as they reconnect.
//!
//! The log holds every change of them, and the sessions cut off by a crash or a takeover end
//! with `hub_crash` (closed at their last sign of life by the hub that opens the meeting
//! again), which is not a leave of the site's own: a site that held the floor or was muted
//! gets it back when it joins again. Any other leave ended them, as the core does.

use std::collections::{BTreeMap, BTreeSet};

use diemcau_signaling::SiteCode;
use diemcau_signaling::protocol::ProgrammeSource;

use super::chair::RunningRollCall;
use crate::attendance::{Event, EventKind, LeaveReason};

/// The live state the log leaves behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Rebuilt {
    /// The site holding the floor.
    pub floor: Option<SiteCode>,
    pub muted: BTreeSet<SiteCode>,
    /// The roll call started and not ended.
    pub roll_call: Option<RunningRollCall>,
    /// The chair's last choice of programme.
    pub programme: ProgrammeSource,
}

pub(super) fn rebuild(history: &[Event]) -> Rebuilt {
    let mut floor: Option<SiteCode> = None;
    let mut muted: BTreeMap<SiteCode, bool> = BTreeMap::new();
    let mut roll_call: Option<RunningRollCall> = None;
    let mut programme = ProgrammeSource::default();
    let code = |site: &str| SiteCode::try_from(site).ok();
    for event in history {
        match &event.kind {
            EventKind::FloorGiven { site } => floor = code(site),
            EventKind::FloorReturned { site }
                if floor.as_ref().is_some_and(|f| f.as_str() == site) =>
            {
                floor = None;
            }
            EventKind::SiteMuted { site, muted: m } => {
                if let Some(site) = code(site) {
                    muted.insert(site, *m);
                }
            }
            EventKind::SiteLeft { site, reason, .. } if *reason != LeaveReason::HubCrash => {
                if let Some(site) = code(site) {
                    muted.remove(&site);
                }
            }
            EventKind::SiteJoined { site, .. } => {
                if let (Some(running), Some(site)) = (&mut roll_call, code(site)) {
                    running.present.insert(site);
                }
            }
            EventKind::RollCallStarted { roll_call: number } => {
                roll_call = Some(RunningRollCall::new(*number, event.at));
            }
            EventKind::RollCallAnswered {
                roll_call: number,
                site,
                count,
                ..
            } => {
                if let (Some(running), Some(site)) = (&mut roll_call, code(site))
                    && running.number == *number
                {
                    running.present.insert(site.clone());
                    running.answers.retain(|(s, _)| *s != site);
                    running.answers.push((site, *count));
                }
            }
            EventKind::RollCallEnded {
                roll_call: number, ..
            } if roll_call.as_ref().is_some_and(|r| r.number == *number) => {
                roll_call = None;
            }
            EventKind::ProgrammeSwitched { source } => programme = *source,
            EventKind::MeetingEnded => {
                floor = None;
                muted.clear();
                roll_call = None;
            }
            _ => {}
        }
    }
    Rebuilt {
        floor,
        muted: muted
            .into_iter()
            .filter_map(|(site, m)| m.then_some(site))
            .collect(),
        roll_call,
        programme,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at: i64, kind: EventKind) -> Event {
        Event {
            seq: 0,
            at,
            recorded_at: at,
            kind,
        }
    }

    fn joined(site: &str) -> EventKind {
        EventKind::SiteJoined {
            site: site.into(),
            session: format!("s-{site}"),
            client: String::new(),
            address: String::new(),
        }
    }

    fn left(site: &str, reason: LeaveReason) -> EventKind {
        EventKind::SiteLeft {
            site: site.into(),
            session: format!("s-{site}"),
            reason,
        }
    }

    fn code(site: &str) -> SiteCode {
        SiteCode::try_from(site).expect("a site code")
    }

    #[test]
    fn a_crash_leaves_the_floor_the_mutes_and_the_roll_call_as_they_were() {
        let history = vec![
            at(1, EventKind::MeetingStarted),
            at(2, joined("2269")),
            at(3, joined("2266")),
            at(4, joined("2302")),
            at(
                5,
                EventKind::FloorGiven {
                    site: "2269".into(),
                },
            ),
            at(
                6,
                EventKind::SiteMuted {
                    site: "2266".into(),
                    muted: true,
                },
            ),
            at(
                7,
                EventKind::SiteMuted {
                    site: "2302".into(),
                    muted: true,
                },
            ),
            at(8, EventKind::RollCallStarted { roll_call: 2 }),
            at(
                9,
                EventKind::RollCallAnswered {
                    roll_call: 2,
                    site: "2266".into(),
                    count: 31,
                    confirmed_by: "A".into(),
                    position: "B".into(),
                },
            ),
            // 2302 left of its own accord (its mute ended with it); the others were cut off.
            at(10, left("2302", LeaveReason::Closed)),
            at(11, left("2269", LeaveReason::HubCrash)),
            at(11, left("2266", LeaveReason::HubCrash)),
        ];
        let rebuilt = rebuild(&history);
        assert_eq!(rebuilt.floor, Some(code("2269")));
        assert_eq!(rebuilt.muted, BTreeSet::from([code("2266")]));
        let running = rebuilt.roll_call.expect("the roll call runs on");
        assert_eq!(running.number, 2);
        assert_eq!(running.answers, vec![(code("2266"), 31)]);
    }

    #[test]
    fn the_chair_s_last_choice_of_programme_stands() {
        let switched = |source| EventKind::ProgrammeSwitched { source };
        let history = vec![
            at(1, EventKind::MeetingStarted),
            at(2, switched(ProgrammeSource::Camera)),
            at(3, switched(ProgrammeSource::Encoder)),
            at(4, switched(ProgrammeSource::Camera)),
        ];
        assert_eq!(rebuild(&history).programme, ProgrammeSource::Camera);
        assert_eq!(rebuild(&history[..3]).programme, ProgrammeSource::Encoder);
    }

    #[test]
    fn what_ended_stays_ended() {
        let history = vec![
            at(1, EventKind::MeetingStarted),
            at(2, joined("2269")),
            at(
                3,
                EventKind::FloorGiven {
                    site: "2269".into(),
                },
            ),
            at(
                4,
                EventKind::FloorReturned {
                    site: "2269".into(),
                },
            ),
            at(5, EventKind::RollCallStarted { roll_call: 1 }),
            at(
                6,
                EventKind::RollCallEnded {
                    roll_call: 1,
                    not_answered: vec![],
                },
            ),
            at(
                7,
                EventKind::SiteMuted {
                    site: "2269".into(),
                    muted: true,
                },
            ),
            at(
                8,
                EventKind::SiteMuted {
                    site: "2269".into(),
                    muted: false,
                },
            ),
        ];
        assert_eq!(rebuild(&history), Rebuilt::default());
    }
}
