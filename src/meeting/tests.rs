//! Chair flows through the meeting core alone, on a virtual clock: each test feeds inputs and
//! asserts the exact outputs.

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::{ConsumerId, PeerId, ProducerId, ProducerInfo, RouterId};
use diemcau_signaling::protocol::{FloorSite, FloorState, SiteState};
use diemcau_signaling::{ErrorCode, ProtocolError, ServerMessage, SessionId, SiteCode};

use super::*;
use crate::attendance::{EventKind, ExpectedSite, LeaveReason};

const STUDIO: PeerId = PeerId(100);
const A: PeerId = PeerId(101);
const B: PeerId = PeerId(102);
const GRACE: Millis = 120_000;
const T0: Millis = 1_700_000_000_000;

fn code(s: &str) -> SiteCode {
    SiteCode::try_from(s).expect("a site code")
}

fn roster() -> Vec<ExpectedSite> {
    [("001", "Xã A"), ("002", "Xã B"), ("003", "Xã C")]
        .into_iter()
        .map(|(code, name)| ExpectedSite {
            code: code.into(),
            name: name.into(),
            expected_delegates: 40,
        })
        .collect()
}

fn meeting() -> LiveMeeting {
    let setup = MeetingSetup {
        id: MeetingId(7),
        title: "Hội nghị".into(),
        roster: roster(),
        history: Vec::new(),
    };
    let config = MeetingConfig {
        max_participants: 10,
        grace: GRACE,
        console_interval: 2_000,
    };
    // Consumer ids from 1000, so tests can name them.
    let ids = IdAllocator::default();
    while ids.next() < 999 {}
    LiveMeeting::new(setup, RouterId(1), config, ids)
}

fn site_seat(site: &str, name: &str, session: &str) -> Seat {
    Seat::Site {
        code: code(site),
        name: name.into(),
        session: SessionId(session.into()),
    }
}

fn drain(m: &mut LiveMeeting) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn producer(id: u64, peer: PeerId, kind: MediaKind) -> ProducerInfo {
    ProducerInfo {
        id: ProducerId(id),
        router: RouterId(1),
        peer,
        kind,
    }
}

fn audio(peer: PeerId) -> ProducerInfo {
    producer(peer.0 * 10, peer, MediaKind::Audio)
}

fn video(peer: PeerId) -> ProducerInfo {
    producer(peer.0 * 10 + 1, peer, MediaKind::Video)
}

fn send(to: PeerId, message: ServerMessage) -> Output {
    Output::Send {
        to: Recipient::Participant(to),
        message,
    }
}

fn log(at: Millis, kind: EventKind) -> Output {
    Output::Log { at, kind }
}

fn floor_site(site: &str, name: &str, id: PeerId) -> FloorSite {
    FloorSite {
        site: site.into(),
        name: name.into(),
        participant: id.to_string(),
    }
}

fn floor(holder: Option<FloorSite>, queue: Vec<FloorSite>) -> ServerMessage {
    ServerMessage::Floor { holder, queue }
}

fn logs(outputs: &[Output]) -> Vec<EventKind> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Log { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

fn routes(outputs: &[Output]) -> Vec<Route> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Route(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The studio and sites A (001) and B (002) joined, attached, each publishing audio and video;
/// the outputs so far are drained.
fn meeting_in_session() -> LiveMeeting {
    let mut m = meeting();
    m.join(
        T0,
        STUDIO,
        Seat::Studio {
            name: "Studio".into(),
        },
        "",
        "",
    )
    .expect("studio joins");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    m.join(T0, B, site_seat("002", "Xã B", "s-b"), "ua", "10.0.0.2")
        .expect("B joins");
    for id in [STUDIO, A, B] {
        m.attached(id);
        m.producer_added(audio(id));
        m.producer_added(video(id));
    }
    drain(&mut m);
    m
}

fn console_of(m: &mut LiveMeeting, now: Millis) -> Vec<diemcau_signaling::protocol::ConsoleSite> {
    m.send_console(now);
    match drain(m).pop() {
        Some(Output::Send {
            message: ServerMessage::Console { sites, .. },
            ..
        }) => sites,
        other => panic!("expected the console, got {other:?}"),
    }
}

#[test]
fn a_site_joins_and_everyone_learns_it_in_order() {
    let mut m = meeting();
    m.join(
        T0,
        STUDIO,
        Seat::Studio {
            name: "Studio".into(),
        },
        "",
        "",
    )
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

#[test]
fn sites_receive_the_studio_and_the_studio_sees_a_wall_of_small_pictures() {
    let m = meeting_in_session();
    assert_eq!(m.route(A, STUDIO), Some(ANY_LAYER));
    assert_eq!(m.route(STUDIO, A), Some(LOWEST_LAYER));
    assert_eq!(m.route(A, B), None, "sites do not receive each other");
    assert_eq!(m.route(STUDIO, STUDIO), None);
    assert_eq!(
        m.route(PeerId(9), STUDIO),
        None,
        "strangers receive nothing"
    );
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn a_subscriber_gets_its_consumers_when_attached_not_before() {
    let mut m = meeting();
    m.join(
        T0,
        STUDIO,
        Seat::Studio {
            name: "Studio".into(),
        },
        "",
        "",
    )
    .expect("studio joins");
    m.attached(STUDIO);
    m.producer_added(video(STUDIO));
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "", "")
        .expect("A joins");
    drain(&mut m);
    m.attached(A);
    assert_eq!(
        drain(&mut m),
        vec![Output::Route(Route::AddConsumer {
            subscriber: A,
            consumer: ConsumerId(1000),
            producer: video(STUDIO),
            max_layer: ANY_LAYER,
        })]
    );
}

#[test]
fn the_floor_is_asked_for_given_and_taken_back() {
    let mut m = meeting_in_session();
    let (a, b) = (floor_site("001", "Xã A", A), floor_site("002", "Xã B", B));
    m.request_floor(T0 + 10, A, true).expect("A asks");
    assert_eq!(
        drain(&mut m),
        vec![
            log(T0 + 10, EventKind::FloorRequested { site: "001".into() }),
            send(STUDIO, floor(None, vec![a.clone()])),
            send(A, floor(None, vec![a.clone()])),
            send(B, floor(None, vec![a.clone()])),
        ]
    );
    m.request_floor(T0 + 11, A, true).expect("asking twice");
    assert_eq!(drain(&mut m), vec![], "already queued: nothing new");

    m.give_floor(T0 + 20, STUDIO, &code("001"))
        .expect("chair gives");
    let outputs = drain(&mut m);
    let studio_sees = |p: &ProducerInfo| {
        m.consumers
            .get(&(STUDIO, p.id))
            .map(|c| (c.id, c.max_layer))
    };
    assert_eq!(studio_sees(&video(A)).map(|c| c.1), Some(ANY_LAYER));
    let added_at_b: Vec<ProducerId> = routes(&outputs)
        .into_iter()
        .filter_map(|r| match r {
            Route::AddConsumer {
                subscriber,
                producer,
                max_layer,
                ..
            } if subscriber == B && max_layer == ANY_LAYER => Some(producer.id),
            _ => None,
        })
        .collect();
    assert_eq!(
        added_at_b,
        vec![audio(A).id, video(A).id],
        "B hears and sees A"
    );
    assert_eq!(
        routes(&outputs)
            .iter()
            .filter(|r| matches!(r, Route::SetMaxLayer { subscriber, max_layer, .. } if *subscriber == STUDIO && *max_layer == ANY_LAYER))
            .count(),
        2,
        "the chair sees the speaker at full quality"
    );
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorGiven { site: "001".into() }]
    );
    assert_eq!(
        outputs.last(),
        Some(&send(B, floor(Some(a.clone()), vec![])))
    );
    m.check_invariants().expect("consumers match the rules");

    m.request_floor(T0 + 25, B, true).expect("B asks");
    drain(&mut m);
    m.give_floor(T0 + 30, STUDIO, &code("002"))
        .expect("chair passes the floor on");
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![
            EventKind::FloorReturned { site: "001".into() },
            EventKind::FloorGiven { site: "002".into() },
        ]
    );
    assert!(
        routes(&outputs).iter().any(|r| matches!(r, Route::RemoveConsumer { subscriber, producer, .. } if *subscriber == B && *producer == video(A).id)),
        "B no longer receives A"
    );
    assert_eq!(outputs.last(), Some(&send(B, floor(Some(b), vec![]))));
    m.check_invariants().expect("consumers match the rules");

    m.take_floor(T0 + 40, STUDIO).expect("chair takes it back");
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorReturned { site: "002".into() }]
    );
    assert_eq!(m.floor(), None);
    assert_eq!(m.route(STUDIO, B), Some(LOWEST_LAYER), "back on the wall");
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn only_the_chair_runs_the_meeting_and_a_refusal_changes_nothing() {
    let mut m = meeting_in_session();
    assert_eq!(
        m.give_floor(T0, A, &code("002")),
        Err(ActionError::ChairOnly)
    );
    assert_eq!(m.take_floor(T0, A), Err(ActionError::ChairOnly));
    assert_eq!(
        m.mute(T0, A, &code("002"), true),
        Err(ActionError::ChairOnly)
    );
    assert_eq!(m.mute_all(T0, B, true), Err(ActionError::ChairOnly));
    assert_eq!(m.start_roll_call(T0, A), Err(ActionError::ChairOnly));
    assert_eq!(m.end_roll_call(T0, A), Err(ActionError::ChairOnly));
    assert_eq!(
        m.call_site(T0, A, &code("003")),
        Err(ActionError::ChairOnly)
    );
    assert_eq!(
        m.request_floor(T0, STUDIO, true),
        Err(ActionError::SiteOnly)
    );
    assert_eq!(
        m.give_floor(T0, STUDIO, &code("003")),
        Err(ActionError::SiteNotConnected(code("003")))
    );
    assert_eq!(drain(&mut m), vec![]);
}

#[test]
fn a_muted_site_is_heard_by_nobody_even_with_a_new_microphone() {
    let mut m = meeting_in_session();
    m.mute(T0 + 1, STUDIO, &code("001"), true).expect("mute");
    assert_eq!(
        drain(&mut m),
        vec![
            Output::Route(Route::PauseProducer {
                router: RouterId(1),
                producer: audio(A).id,
                paused: true,
            }),
            send(A, ServerMessage::Muted { muted: true }),
            log(
                T0 + 1,
                EventKind::SiteMuted {
                    site: "001".into(),
                    muted: true
                }
            ),
        ]
    );
    m.mute(T0 + 2, STUDIO, &code("001"), true)
        .expect("mute again");
    assert_eq!(drain(&mut m), vec![], "no change, nothing said");
    // Its page reconnects its media with a new microphone track: paused at once.
    m.peer_closed(T0 + 3, A);
    m.attached(A);
    drain(&mut m);
    let new_microphone = producer(555, A, MediaKind::Audio);
    m.producer_added(new_microphone.clone());
    assert_eq!(
        routes(&drain(&mut m))[0],
        Route::PauseProducer {
            router: RouterId(1),
            producer: new_microphone.id,
            paused: true,
        }
    );

    m.mute_all(T0 + 4, STUDIO, true).expect("mute all");
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::SiteMuted {
            site: "002".into(),
            muted: true
        }],
        "only B changed"
    );
    m.mute_all(T0 + 5, STUDIO, false).expect("unmute all");
    assert_eq!(logs(&drain(&mut m)).len(), 2);
}

#[test]
fn a_roll_call_with_answers_late_answers_and_a_site_joining_during_it() {
    let mut m = meeting_in_session();
    m.start_roll_call(T0 + 100, STUDIO).expect("start");
    assert_eq!(
        drain(&mut m),
        vec![
            log(T0 + 100, EventKind::RollCallStarted { roll_call: 1 }),
            send(
                STUDIO,
                ServerMessage::RollCall {
                    roll_call: 1,
                    active: true
                }
            ),
            send(
                A,
                ServerMessage::RollCall {
                    roll_call: 1,
                    active: true
                }
            ),
            send(
                B,
                ServerMessage::RollCall {
                    roll_call: 1,
                    active: true
                }
            ),
        ]
    );
    let declaration = Declaration {
        count: 35,
        confirmed_by: "Nguyễn Văn An".into(),
        position: "Chủ tịch".into(),
    };
    let reply = m
        .answer_roll_call(T0 + 110, A, 1, declaration.clone())
        .expect("A answers");
    assert_eq!(
        reply,
        ServerMessage::RollCallAnswerRecorded {
            roll_call: 1,
            at: T0 + 110
        }
    );
    assert_eq!(
        drain(&mut m),
        vec![
            log(
                T0 + 110,
                EventKind::RollCallAnswered {
                    roll_call: 1,
                    site: "001".into(),
                    count: 35,
                    confirmed_by: "Nguyễn Văn An".into(),
                    position: "Chủ tịch".into(),
                }
            ),
            send(
                STUDIO,
                ServerMessage::RollCallAnswer {
                    roll_call: 1,
                    site: "001".into(),
                    name: "Xã A".into(),
                    count: 35,
                    confirmed_by: "Nguyễn Văn An".into(),
                    position: "Chủ tịch".into(),
                    at: T0 + 110,
                }
            ),
        ]
    );
    assert_eq!(
        m.answer_roll_call(T0, A, 9, declaration.clone()),
        Err(ActionError::WrongRollCall)
    );
    assert_eq!(
        m.answer_roll_call(T0, STUDIO, 1, declaration.clone()),
        Err(ActionError::SiteOnly)
    );
    // Site C joins during the roll call and is asked at once.
    let c = PeerId(103);
    m.join(T0 + 120, c, site_seat("003", "Xã C", "s-c"), "", "")
        .expect("C joins");
    assert_eq!(
        drain(&mut m).last(),
        Some(&send(
            c,
            ServerMessage::RollCall {
                roll_call: 1,
                active: true
            }
        ))
    );
    let console = console_of(&mut m, T0 + 121);
    let answered: Vec<bool> = console.iter().map(|s| s.answered_roll_call).collect();
    assert_eq!(answered, vec![true, false, false]);
    assert_eq!(console[0].head_count, Some(35));

    m.end_roll_call(T0 + 200, STUDIO).expect("end");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::RollCallEnded { roll_call: 1 }]
    );
    assert_eq!(
        m.answer_roll_call(T0 + 201, B, 1, declaration.clone()),
        Err(ActionError::NoRollCall),
        "a late answer is refused"
    );
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(m.end_roll_call(T0, STUDIO), Err(ActionError::NoRollCall));
    m.start_roll_call(T0 + 300, STUDIO).expect("a second one");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::RollCallStarted { roll_call: 2 }]
    );
}

#[test]
fn an_absent_site_with_its_page_open_is_called() {
    let mut m = meeting_in_session();
    assert_eq!(
        m.call_site(T0, STUDIO, &code("003")),
        Err(ActionError::NoPageOpen(code("003")))
    );
    m.open_page(PageKey(55), code("003")).expect("page opens");
    assert_eq!(console_of(&mut m, T0)[2].state, SiteState::PageOpen);
    m.call_site(T0 + 1, STUDIO, &code("003")).expect("call");
    assert_eq!(
        drain(&mut m),
        vec![
            Output::Send {
                to: Recipient::Page(PageKey(55)),
                message: ServerMessage::Called {
                    by: "Studio".into()
                },
            },
            log(T0 + 1, EventKind::SiteCalled { site: "003".into() }),
        ]
    );
    m.close_page(PageKey(55));
    assert_eq!(console_of(&mut m, T0)[2].state, SiteState::NotJoined);
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
    m.join(T0 + 5, new, site_seat("001", "Xã A", "s-a2"), "ua", "ip")
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
fn the_floor_holder_leaving_returns_the_floor_before_it_leaves() {
    let mut m = meeting_in_session();
    m.give_floor(T0, STUDIO, &code("001")).expect("give");
    drain(&mut m);
    m.leave(T0 + 9, A, LeaveReason::Closed, None);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![
            EventKind::FloorReturned { site: "001".into() },
            EventKind::SiteLeft {
                site: "001".into(),
                session: "s-a".into(),
                reason: LeaveReason::Closed,
            },
        ]
    );
    assert!(outputs.contains(&send(B, floor(None, vec![]))));
    assert_eq!(m.floor(), None);
    m.check_invariants().expect("consumers match the rules");
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
        m.join(
            T0,
            PeerId(9),
            Seat::Studio {
                name: "Other".into()
            },
            "",
            ""
        ),
        Err(JoinError::StudioTaken)
    );
    m.leave(T0, STUDIO, LeaveReason::Closed, None);
    m.join(
        T0,
        PeerId(9),
        Seat::Studio {
            name: "Other".into(),
        },
        "",
        "",
    )
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
        .join(T0, PeerId(5), site_seat("001", "Xã A", "s3"), "", "")
        .expect("replacing a session needs no free seat");
}

#[test]
fn the_console_is_sent_at_its_interval_while_a_chair_is_there() {
    let mut m = meeting();
    assert_eq!(m.poll_timeout(), None, "no chair, no console");
    m.join(
        T0,
        STUDIO,
        Seat::Studio {
            name: "Studio".into(),
        },
        "",
        "",
    )
    .expect("studio");
    assert!(matches!(
        drain(&mut m).last(),
        Some(Output::Send {
            message: ServerMessage::Console { .. },
            ..
        })
    ));
    assert_eq!(m.poll_timeout(), Some(T0 + 2_000));
    m.handle_timeout(T0 + 1_999);
    assert_eq!(drain(&mut m), vec![]);
    m.handle_timeout(T0 + 2_010);
    assert_eq!(drain(&mut m).len(), 1);
    assert_eq!(m.poll_timeout(), Some(T0 + 4_000), "keeps to its schedule");
    let rows = console_of(&mut m, T0 + 2_020);
    let codes: Vec<&str> = rows.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(codes, vec!["001", "002", "003"], "roster order");
    assert!(rows.iter().all(|r| r.floor == FloorState::None));
    m.leave(T0 + 3_000, STUDIO, LeaveReason::Closed, None);
    assert_eq!(m.poll_timeout(), None);
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
    m.join(T0 + 10, STUDIO, Seat::Studio { name: "S".into() }, "", "")
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
    m.start_roll_call(T0 + 20, STUDIO).expect("roll call");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::RollCallStarted { roll_call: 2 }]
    );
}

#[test]
fn media_events_of_a_site_are_told_logged_and_shown() {
    let mut m = meeting_in_session();
    m.peer_connected(T0 + 1, A);
    m.reception_changed(T0 + 2, A, true);
    m.quality_sampled(
        T0 + 3,
        A,
        diemcau_sfu::Quality {
            bitrate_in_kbps: 500,
            bitrate_out_kbps: 900,
            loss_permille: 12,
            rtt_ms: 80,
        },
    );
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![
            EventKind::MediaChanged {
                site: "001".into(),
                session: "s-a".into(),
                media: crate::attendance::Reception::Video
            },
            EventKind::MediaChanged {
                site: "001".into(),
                session: "s-a".into(),
                media: crate::attendance::Reception::AudioOnly
            },
            EventKind::QualitySample {
                site: "001".into(),
                session: "s-a".into(),
                bitrate_in_kbps: 500,
                bitrate_out_kbps: 900,
                loss_permille: 12,
                rtt_ms: 80,
            },
        ]
    );
    assert!(outputs.contains(&send(A, ServerMessage::Reception { audio_only: true })));
    let row = &console_of(&mut m, T0 + 4)[0];
    assert_eq!((row.state, row.loss_permille), (SiteState::AudioOnly, 12));
    assert_eq!(m.worst_loss_permille(), 12);

    m.peer_closed(T0 + 5, A);
    let outputs = drain(&mut m);
    assert!(routes(&outputs).contains(&Route::RemoveProducer {
        router: RouterId(1),
        producer: audio(A).id,
    }));
    assert_eq!(console_of(&mut m, T0 + 6)[0].state, SiteState::Connecting);
    m.check_invariants().expect("consumers match the rules");
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
fn random_input_sequences_keep_the_rules() {
    // A fixed xorshift stream: the same sequences on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let len = 30 + (next() % 600) as usize;
        let data: Vec<u8> = (0..len).map(|_| (next() >> 24) as u8).collect();
        super::testkit::run(&data);
    }
}
