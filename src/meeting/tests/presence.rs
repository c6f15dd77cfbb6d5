//! Joins, leaves, replaced sessions, reissued codes, standby pages and the end of the meeting.

use super::*;

#[test]
fn a_site_joins_and_everyone_learns_it_in_order() {
    let mut m = meeting();
    m.join(T0, STUDIO, studio_seat("Studio"), "", "")
        .expect("studio joins");
    drain(&mut m);
    let reply = m
        .join(
            T0 + 5,
            A,
            site_seat("001", "Xã A", "s-a"),
            "Chrome",
            "10.0.0.1",
        )
        .expect("A joins");
    let ServerMessage::Joined {
        participant,
        participants,
        ..
    } = reply
    else {
        panic!("expected joined, got {reply:?}");
    };
    assert_eq!(participant.site.as_deref(), Some("001"));
    assert_eq!(participants.len(), 1, "A sees the studio");
    assert_eq!(
        drain(&mut m),
        vec![
            log(
                T0 + 5,
                EventKind::SiteJoined {
                    site: "001".into(),
                    session: "s-a".into(),
                    client: "Chrome".into(),
                    address: "10.0.0.1".into(),
                }
            ),
            send(
                STUDIO,
                ServerMessage::ParticipantJoined {
                    participant: participant.clone()
                }
            ),
            send(A, floor(None, vec![])),
        ]
    );
}

/// A site is told of the studio, not of the other sites; the studio is told of every site,
/// as it joins and as it leaves.
#[test]
fn sites_are_told_of_the_studio_and_the_studio_of_every_site() {
    let mut m = meeting();
    m.join(T0, STUDIO, studio_seat("Studio"), "", "")
        .expect("studio joins");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    drain(&mut m);
    let reply = m
        .join(T0 + 5, B, site_seat("002", "Xã B", "s-b"), "ua", "10.0.0.2")
        .expect("B joins");
    let ServerMessage::Joined { participants, .. } = reply else {
        panic!("expected joined, got {reply:?}");
    };
    let roles: Vec<Role> = participants.iter().map(|p| p.role).collect();
    assert_eq!(
        roles,
        vec![Role::Studio],
        "B is told of the studio, not of A"
    );
    let announced = |outputs: &[Output]| -> Vec<Recipient> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    message:
                        ServerMessage::ParticipantJoined { .. } | ServerMessage::ParticipantLeft { .. },
                } => Some(*to),
                _ => None,
            })
            .collect()
    };
    let only = |id| vec![Recipient::Participant(id)];
    assert_eq!(
        announced(&drain(&mut m)),
        only(STUDIO),
        "A is not told of B"
    );
    m.leave(T0 + 10, B, LeaveReason::Closed, None);
    assert_eq!(announced(&drain(&mut m)), only(STUDIO), "nor of B leaving");
    m.leave(T0 + 20, STUDIO, LeaveReason::Closed, None);
    assert_eq!(
        announced(&drain(&mut m)),
        only(A),
        "A is told of the studio leaving"
    );
}

#[test]
fn a_site_back_within_the_grace_time_continues_its_row_and_after_it_starts_a_new_one() {
    let mut m = meeting_in_session();
    m.leave(T0 + 1_000, A, LeaveReason::NetworkTimeout, None);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::SiteLeft {
            site: "001".into(),
            session: "s-a".into(),
            reason: LeaveReason::NetworkTimeout,
        }]
    );
    assert_eq!(outputs.last(), Some(&Output::Removed(A)));
    assert!(
        routes(&outputs).contains(&Route::RemoveProducer {
            router: RouterId(1),
            producer: video(A).id
        }),
        "its tracks go from every worker"
    );
    assert_eq!(
        console_of(&mut m, T0 + 60_000)[0].state,
        SiteState::Reconnecting
    );
    let back = PeerId(201);
    m.join(
        T0 + 60_000,
        back,
        site_seat("001", "Xã A", "s-a2"),
        "ua",
        "ip",
    )
    .expect("back");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::SiteReconnected {
            site: "001".into(),
            session: "s-a2".into(),
            previous_session: "s-a".into(),
            client: "ua".into(),
            address: "ip".into(),
        }]
    );
    m.leave(T0 + 70_000, back, LeaveReason::NetworkTimeout, None);
    drain(&mut m);
    let late = T0 + 70_000 + GRACE + 1;
    assert_eq!(console_of(&mut m, late)[0].state, SiteState::Left);
    m.join(
        late,
        PeerId(202),
        site_seat("001", "Xã A", "s-a3"),
        "ua",
        "ip",
    )
    .expect("back too late");
    assert!(matches!(
        logs(&drain(&mut m)).as_slice(),
        [EventKind::SiteJoined { session, .. }] if session == "s-a3"
    ));
}

#[test]
fn a_site_joining_again_from_another_page_replaces_its_session() {
    let mut m = meeting_in_session();
    let new = PeerId(300);
    assert_eq!(
        m.join(
            T0 + 4_000,
            new,
            site_seat("001", "Xã A", "s-a2"),
            "ua",
            "ip"
        ),
        Err(JoinError::TooSoon),
        "not moments after the site joined"
    );
    m.join(
        T0 + 5_000,
        new,
        site_seat("001", "Xã A", "s-a2"),
        "ua",
        "ip",
    )
    .expect("the new page joins");
    let outputs = drain(&mut m);
    let replaced = ProtocolError::new(
        ErrorCode::Replaced,
        "this site joined again from another page, which took over",
    )
    .to_message();
    let close_at = outputs
        .iter()
        .position(|o| {
            *o == Output::Close {
                to: Recipient::Participant(A),
                message: replaced.clone(),
            }
        })
        .expect("the old page is closed with `replaced`");
    assert_eq!(outputs.get(close_at + 1), Some(&Output::Removed(A)));
    assert_eq!(
        logs(&outputs),
        vec![
            EventKind::SiteLeft {
                site: "001".into(),
                session: "s-a".into(),
                reason: LeaveReason::Replaced,
            },
            EventKind::SiteReconnected {
                site: "001".into(),
                session: "s-a2".into(),
                previous_session: "s-a".into(),
                client: "ua".into(),
                address: "ip".into(),
            },
        ]
    );
    assert!(!m.contains(A));
    assert_eq!(m.participant_count(), 3);
}

#[test]
fn a_reissued_code_ends_the_session_and_the_page_that_used_the_old_one() {
    let mut m = meeting_in_session();
    m.open_page(PageKey(3), code("001"))
        .expect("a second page of A waits");
    m.code_reissued(T0 + 50, &code("001"));
    let outputs = drain(&mut m);
    let revoked = ProtocolError::new(
        ErrorCode::CodeRevoked,
        "this site's join code was reissued; open the new link to join",
    )
    .to_message();
    assert_eq!(
        outputs.first(),
        Some(&Output::Close {
            to: Recipient::Page(PageKey(3)),
            message: revoked.clone()
        })
    );
    assert!(outputs.contains(&Output::Close {
        to: Recipient::Participant(A),
        message: revoked
    }));
    assert_eq!(
        logs(&outputs),
        vec![EventKind::SiteLeft {
            site: "001".into(),
            session: "s-a".into(),
            reason: LeaveReason::Removed,
        }]
    );
    assert!(!m.contains(A) && m.contains(B));
    m.code_reissued(T0 + 60, &code("003"));
    assert_eq!(drain(&mut m), vec![], "nobody used C's code");
}

#[test]
fn the_end_of_the_meeting_sends_everyone_away_and_refuses_joins() {
    let mut m = meeting_in_session();
    m.open_page(PageKey(9), code("003")).expect("page");
    m.end(T0 + 500);
    let outputs = drain(&mut m);
    let ended = ProtocolError::new(
        ErrorCode::MeetingEnded,
        "the organizer has ended the meeting",
    )
    .to_message();
    assert_eq!(
        outputs.first(),
        Some(&log(T0 + 500, EventKind::MeetingEnded))
    );
    assert!(outputs.contains(&Output::Close {
        to: Recipient::Page(PageKey(9)),
        message: ended.clone()
    }));
    for id in [STUDIO, A, B] {
        assert!(outputs.contains(&Output::Close {
            to: Recipient::Participant(id),
            message: ended.clone()
        }));
        assert!(outputs.contains(&Output::Removed(id)));
    }
    let left: Vec<_> = logs(&outputs)
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                EventKind::SiteLeft {
                    reason: LeaveReason::MeetingEnded,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(left.len(), 2);
    assert!(m.is_idle() && m.has_ended());
    assert_eq!(
        m.join(T0 + 600, PeerId(400), site_seat("003", "Xã C", "s"), "", ""),
        Err(JoinError::Ended)
    );
    assert_eq!(m.open_page(PageKey(10), code("003")), Err(JoinError::Ended));
}

#[test]
fn one_studio_and_a_participant_limit() {
    let mut m = meeting_in_session();
    assert_eq!(
        m.join(T0, PeerId(9), studio_seat("Other"), "", ""),
        Err(JoinError::StudioTaken)
    );
    m.leave(T0, STUDIO, LeaveReason::Closed, None);
    m.join(T0, PeerId(9), studio_seat("Other"), "", "")
        .expect("the studio's seat is free again");

    let mut small = meeting();
    small.config.max_participants = 1;
    small
        .join(T0, A, site_seat("001", "Xã A", "s"), "", "")
        .expect("A");
    assert_eq!(
        small.join(T0, B, site_seat("002", "Xã B", "s2"), "", ""),
        Err(JoinError::Full)
    );
    small
        .join(
            T0 + 5_000,
            PeerId(5),
            site_seat("001", "Xã A", "s3"),
            "",
            "",
        )
        .expect("replacing a session needs no free seat");
}

#[test]
fn a_meeting_reopened_from_its_log_knows_head_counts_roll_calls_and_who_left() {
    let event = |seq, at, kind| Event {
        seq,
        at,
        recorded_at: at,
        kind,
    };
    let history = vec![
        event(1, T0, EventKind::MeetingStarted),
        event(
            2,
            T0 + 1,
            EventKind::HeadCount {
                site: "002".into(),
                count: 12,
                confirmed_by: "x".into(),
                position: "y".into(),
            },
        ),
        event(3, T0 + 2, EventKind::RollCallStarted { roll_call: 1 }),
        event(
            4,
            T0 + 3,
            EventKind::SiteLeft {
                site: "001".into(),
                session: "old".into(),
                reason: LeaveReason::HubCrash,
            },
        ),
    ];
    let setup = MeetingSetup {
        id: MeetingId(7),
        title: "t".into(),
        roster: roster(),
        history,
    };
    let mut m = LiveMeeting::new(
        setup,
        RouterId(1),
        MeetingConfig::default(),
        IdAllocator::default(),
    );
    m.join(T0 + 10, STUDIO, studio_seat("S"), "", "")
        .expect("studio");
    m.join(T0 + 10, A, site_seat("001", "Xã A", "new"), "", "")
        .expect("A back after the crash");
    let outputs = drain(&mut m);
    assert!(logs(&outputs).contains(&EventKind::SiteReconnected {
        site: "001".into(),
        session: "new".into(),
        previous_session: "old".into(),
        client: String::new(),
        address: String::new(),
    }));
    let rows = console_of(&mut m, T0 + 11);
    assert_eq!(rows[1].head_count, Some(12));
    // Roll call 1 was still running when the hub stopped: it runs on, A back in it; a new
    // one ends it first.
    m.start_roll_call(T0 + 20, STUDIO).expect("roll call");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![
            EventKind::RollCallEnded {
                roll_call: 1,
                not_answered: vec!["001".into()]
            },
            EventKind::RollCallStarted { roll_call: 2 }
        ]
    );
}

#[test]
fn the_chair_may_only_be_an_organizer_logged_in() {
    use crate::auth::Role as Account;
    assert_eq!(may_chair(None), Err(ChairError::LoginRequired));
    assert_eq!(
        may_chair(Some(Account::Staff)),
        Err(ChairError::NotOrganizer)
    );
    assert_eq!(may_chair(Some(Account::Organizer)), Ok(()));
}

#[test]
fn a_leaked_code_joining_in_a_loop_is_refused_and_the_real_site_stays() {
    let mut m = meeting_in_session();
    // A script shares A's code: it joins and leaves as fast as it can. A, joined at T0, stays.
    let mut refused = 0;
    let mut at = T0 + 10;
    for n in 0..200u64 {
        at += 50;
        let copy = PeerId(1_000 + n);
        match m.join(
            at,
            copy,
            site_seat("001", "Xã A", &format!("x{n}")),
            "curl",
            "ip",
        ) {
            Ok(_) => {
                m.leave(at, copy, LeaveReason::Closed, None);
            }
            Err(e) => {
                assert!(
                    matches!(e, JoinError::TooSoon | JoinError::CodeFlooded),
                    "{e:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused, 200,
        "every copy is refused: A was joined moments ago, then the code is flooded"
    );
    assert!(m.contains(A), "the real site is kept");
    let logged = logs(&drain(&mut m));
    assert!(
        logged.is_empty(),
        "nothing written for refused copies: {logged:?}"
    );
    let rows = console_of(&mut m, at);
    assert!(
        rows[0].code_leak_suspected,
        "the chair sees the suspected leak"
    );
    assert!(!rows[1].code_leak_suspected);

    m.code_reissued(at + 1, &code("001"));
    drain(&mut m);
    m.join(
        at + 2,
        PeerId(77),
        site_seat("001", "Xã A", "new"),
        "ua",
        "ip",
    )
    .expect("the new code joins at once");
    assert!(!console_of(&mut m, at + 3)[0].code_leak_suspected);
}

#[test]
fn the_studio_has_sessions_in_the_log_like_the_sites() {
    let mut m = meeting();
    m.join(T0, STUDIO, studio_seat("Studio"), "Chrome", "10.0.0.9")
        .expect("studio joins");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::StudioJoined {
            session: "s-studio".into(),
            client: "Chrome".into(),
            address: "10.0.0.9".into(),
        }]
    );
    m.leave(T0 + 9, STUDIO, LeaveReason::NetworkTimeout, None);
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::StudioLeft {
            session: "s-studio".into(),
            reason: LeaveReason::NetworkTimeout,
        }]
    );
    assert_eq!(m.sessions().count(), 0);
}

#[test]
fn a_site_back_after_a_takeover_has_the_floor_and_the_mute_it_had() {
    let event = |seq, at, kind| Event {
        seq,
        at,
        recorded_at: at,
        kind,
    };
    let history = vec![
        event(1, T0, EventKind::MeetingStarted),
        event(2, T0 + 1, EventKind::FloorGiven { site: "001".into() }),
        event(
            3,
            T0 + 2,
            EventKind::SiteMuted {
                site: "002".into(),
                muted: true,
            },
        ),
        event(
            4,
            T0 + 3,
            EventKind::SiteLeft {
                site: "001".into(),
                session: "a".into(),
                reason: LeaveReason::HubCrash,
            },
        ),
        event(
            5,
            T0 + 3,
            EventKind::SiteLeft {
                site: "002".into(),
                session: "b".into(),
                reason: LeaveReason::HubCrash,
            },
        ),
    ];
    let mut m = reopened(history);
    m.join(T0 + 10, STUDIO, studio_seat("S"), "", "")
        .expect("studio");
    let outputs = drain(&mut m);
    let holder = FloorSite {
        site: "001".into(),
        name: "Xã A".into(),
        participant: String::new(),
    };
    assert!(
        outputs.contains(&send(STUDIO, floor(Some(holder), vec![]))),
        "the chair sees who holds the floor, not back yet: {outputs:?}"
    );
    m.join(T0 + 11, A, site_seat("001", "Xã A", "a2"), "", "")
        .expect("A back");
    m.join(T0 + 11, B, site_seat("002", "Xã B", "b2"), "", "")
        .expect("B back");
    let outputs = drain(&mut m);
    assert!(
        outputs.contains(&send(
            STUDIO,
            floor(Some(floor_site("001", "Xã A", A)), vec![])
        )),
        "A holds the floor again: {outputs:?}"
    );
    assert!(outputs.contains(&send(B, ServerMessage::Muted { muted: true })));
    assert!(
        !logs(&outputs).iter().any(|k| matches!(
            k,
            EventKind::FloorGiven { .. } | EventKind::SiteMuted { .. }
        )),
        "nothing new to record: {outputs:?}"
    );
    // The floor moves on as if A had never left.
    m.take_floor(T0 + 20, STUDIO).expect("taken back");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::FloorReturned { site: "001".into() }]
    );
}

#[test]
fn the_chair_moving_the_floor_of_a_site_not_back_returns_it_in_the_record() {
    let history = vec![
        Event {
            seq: 1,
            at: T0,
            recorded_at: T0,
            kind: EventKind::FloorGiven { site: "001".into() },
        },
        Event {
            seq: 2,
            at: T0,
            recorded_at: T0,
            kind: EventKind::SiteLeft {
                site: "001".into(),
                session: "a".into(),
                reason: LeaveReason::HubCrash,
            },
        },
    ];
    let mut m = reopened(history);
    m.join(T0 + 10, STUDIO, studio_seat("S"), "", "")
        .expect("studio");
    m.join(T0 + 10, B, site_seat("002", "Xã B", "b"), "", "")
        .expect("B");
    drain(&mut m);
    m.give_floor(T0 + 20, STUDIO, &code("002")).expect("given");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![
            EventKind::FloorReturned { site: "001".into() },
            EventKind::FloorGiven { site: "002".into() }
        ]
    );
}
