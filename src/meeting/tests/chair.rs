//! The chair's actions: the floor, mute, roll call, calling an absent site, the console.

use super::*;
use diemcau_signaling::protocol::{RollCallAnswered, RollCallResult, SiteName};

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
            .get(&(STUDIO, p.id, None))
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
    let b_sees_a = m
        .consumers
        .get(&(B, video(A).id, None))
        .map(|c| c.id)
        .expect("B receives A");
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
        routes(&outputs).contains(&Route::RemoveConsumer {
            subscriber: B,
            consumer: b_sees_a
        }),
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
                    active: true,
                    result: None,
                }
            ),
            send(
                A,
                ServerMessage::RollCall {
                    roll_call: 1,
                    active: true,
                    result: None,
                }
            ),
            send(
                B,
                ServerMessage::RollCall {
                    roll_call: 1,
                    active: true,
                    result: None,
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
                active: true,
                result: None,
            }
        ))
    );
    let console = console_of(&mut m, T0 + 121);
    let answered: Vec<bool> = console.iter().map(|s| s.answered_roll_call).collect();
    assert_eq!(answered, vec![true, false, false]);
    assert_eq!(console[0].head_count, Some(35));

    m.end_roll_call(T0 + 200, STUDIO).expect("end");
    // The result is fixed now: A answered; B, there from the start, and C, who came during it,
    // did not.
    let result = RollCallResult {
        started_at: T0 + 100,
        ended_at: T0 + 200,
        answered: vec![RollCallAnswered {
            site: "001".into(),
            name: "Xã A".into(),
            count: 35,
        }],
        not_answered: vec![
            SiteName {
                site: "002".into(),
                name: "Xã B".into(),
            },
            SiteName {
                site: "003".into(),
                name: "Xã C".into(),
            },
        ],
        delegates: 35,
    };
    let ended = |result| ServerMessage::RollCall {
        roll_call: 1,
        active: false,
        result,
    };
    assert_eq!(
        drain(&mut m),
        vec![
            log(
                T0 + 200,
                EventKind::RollCallEnded {
                    roll_call: 1,
                    not_answered: vec!["002".into(), "003".into()],
                }
            ),
            send(STUDIO, ended(Some(result.clone()))),
            send(A, ended(None)),
            send(B, ended(None)),
            send(c, ended(None)),
        ],
        "the chair gets the result, the sites the end"
    );
    // Sites leaving afterwards change nothing: a chair that comes back sees the same result.
    m.leave(T0 + 210, c, LeaveReason::Closed, None);
    m.leave(T0 + 211, STUDIO, LeaveReason::Closed, None);
    drain(&mut m);
    m.join(T0 + 220, STUDIO, studio_seat("Studio"), "", "")
        .expect("the chair is back");
    assert!(
        drain(&mut m).contains(&send(STUDIO, ended(Some(result)))),
        "the last result, unchanged"
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
fn a_roll_call_ends_with_the_meeting_and_with_its_last_participant() {
    let mut m = meeting_in_session();
    m.start_roll_call(T0 + 100, STUDIO).expect("start");
    drain(&mut m);
    m.end(T0 + 150);
    let events = logs(&drain(&mut m));
    assert_eq!(
        events[..2],
        [
            EventKind::RollCallEnded {
                roll_call: 1,
                not_answered: vec!["001".into(), "002".into()],
            },
            EventKind::MeetingEnded,
        ],
        "ended and recorded before the meeting's end"
    );

    let mut m = meeting_in_session();
    m.start_roll_call(T0 + 100, STUDIO).expect("start");
    for id in [A, B, STUDIO] {
        m.leave(T0 + 150, id, LeaveReason::Closed, None);
    }
    assert!(
        logs(&drain(&mut m)).contains(&EventKind::RollCallEnded {
            roll_call: 1,
            not_answered: vec!["001".into(), "002".into()],
        }),
        "the last one out ends it"
    );
    m.check_invariants().expect("invariants");
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
fn the_console_is_sent_at_its_interval_while_a_chair_is_there() {
    let mut m = meeting();
    assert_eq!(m.poll_timeout(), None, "no chair, no console");
    m.join(T0, STUDIO, studio_seat("Studio"), "", "")
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
fn a_provincial_hubs_sites_are_on_the_console_and_answer_its_roll_call() {
    let mut m = meeting_in_session();
    let relay = PeerId(40);
    m.join(
        T0,
        relay,
        Seat::Node {
            node: "tuyen-quang".into(),
            session: SessionId("s-node".into()),
        },
        "",
        "",
    )
    .expect("the relay joins");
    // Site 003 is on the roster and joined to the province; 999 is not invited here.
    let row = |site: &str, state: diemcau_signaling::protocol::SiteState| {
        diemcau_signaling::protocol::ConsoleSite {
            site: site.into(),
            name: format!("Xã {site}"),
            state,
            participant: Some("p3".into()),
            muted: false,
            floor: FloorState::None,
            floor_requested_at: None,
            bitrate_in_kbps: 0,
            bitrate_out_kbps: 2400,
            loss_permille: 3,
            rtt_ms: 20,
            transport: None,
            expected_delegates: 30,
            head_count: None,
            answered_roll_call: false,
            code_leak_suspected: false,
            node: None,
            province: None,
        }
    };
    m.start_roll_call(T0 + 1, STUDIO).expect("a roll call");
    m.remote_console(
        T0 + 1,
        relay,
        vec![row("003", SiteState::Live), row("999", SiteState::Live)],
    );
    drain(&mut m);
    let declaration = Declaration {
        count: 31,
        confirmed_by: "Nguyễn Văn An".into(),
        position: "Chủ tịch".into(),
    };
    assert_eq!(
        m.remote_roll_call_answer(T0 + 2, relay, 1, &code("999"), declaration.clone()),
        Err(ActionError::SiteNotConnected(code("999"))),
        "only sites of the roster the relay showed"
    );
    assert_eq!(
        m.remote_roll_call_answer(T0 + 2, STUDIO, 1, &code("003"), declaration.clone()),
        Err(ActionError::NotJoined),
        "only a relay answers for its sites"
    );
    m.remote_roll_call_answer(T0 + 2, relay, 1, &code("003"), declaration)
        .expect("the province's site answers");
    let outputs = drain(&mut m);
    assert!(
        logs(&outputs).iter().any(|k| matches!(k,
            EventKind::RollCallAnswered { site, count: 31, .. } if site == "003")),
        "{outputs:?}"
    );
    m.end_roll_call(T0 + 3, STUDIO).expect("ends");
    let ended = drain(&mut m);
    let result = ended.iter().find_map(|o| match o {
        Output::Send {
            message: ServerMessage::RollCall {
                result: Some(r), ..
            },
            ..
        } => Some(r.clone()),
        _ => None,
    });
    let result = result.expect("the chair's result");
    assert_eq!(result.delegates, 31);
    assert!(
        result.not_answered.iter().any(|s| s.site == "001"),
        "local sites that did not answer are counted as such: {result:?}"
    );
    assert!(!result.not_answered.iter().any(|s| s.site == "003"));
    // The chair mutes the province's site: the relay is asked to, and the log has it.
    m.mute(T0 + 4, STUDIO, &code("003"), true).expect("mutes");
    let outputs = drain(&mut m);
    assert!(
        outputs.contains(&send(
            relay,
            ServerMessage::RelayChair {
                action: Box::new(diemcau_signaling::ClientMessage::Mute {
                    site: code("003"),
                    muted: true
                })
            }
        )),
        "{outputs:?}"
    );
    assert_eq!(
        m.mute(T0 + 4, STUDIO, &code("999"), true),
        Err(ActionError::SiteNotConnected(code("999")))
    );
    // The relay leaves: its rows go with it.
    m.leave(T0 + 5, relay, LeaveReason::Closed, None);
    assert_eq!(
        m.mute(T0 + 6, STUDIO, &code("003"), false),
        Err(ActionError::SiteNotConnected(code("003"))),
        "nobody to ask any more"
    );
    m.check_invariants().expect("rules hold");
}

/// Two child hubs' relays joined, each publishing a pair of upward tracks; the first shows
/// site 003 joined to its hub, and its tracks carry 003.
fn meeting_with_relays() -> (LiveMeeting, PeerId, PeerId) {
    let mut m = meeting_in_session();
    let (tuyen_quang, ha_giang) = (PeerId(40), PeerId(41));
    for (relay, node) in [(tuyen_quang, "tuyen-quang"), (ha_giang, "ha-giang")] {
        m.join(
            T0,
            relay,
            Seat::Node {
                node: node.into(),
                session: SessionId(format!("s-{node}")),
            },
            "",
            "",
        )
        .expect("the relay joins");
        m.attached(relay);
        m.producer_added(audio(relay));
        m.producer_added(video(relay));
    }
    let mut row = console_of(&mut m, T0)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003 on the console");
    row.state = SiteState::Live;
    row.participant = Some("p5".into());
    m.remote_console(T0, tuyen_quang, vec![row]);
    // Tuyên Quang's relay sends 003 up (its sound: 003 is unmuted there).
    m.relay_streams(
        tuyen_quang,
        vec![
            (audio(tuyen_quang).mid, code("003")),
            (video(tuyen_quang).mid, code("003")),
        ],
    )
    .expect("the relay says what it sends up");
    drain(&mut m);
    (m, tuyen_quang, ha_giang)
}

/// A site of another hub in the `floor` message: its relay's tracks of that site.
fn remote_site(site: &str, name: &str, relay: PeerId) -> FloorSite {
    FloorSite {
        participant: format!("{relay}-{site}"),
        ..floor_site(site, name, relay)
    }
}

#[test]
fn the_floor_given_to_a_commune_of_a_child_hub_comes_up_through_its_relay() {
    let (mut m, tuyen_quang, ha_giang) = meeting_with_relays();
    let (sound, picture) = (audio(tuyen_quang), video(tuyen_quang));
    assert_eq!(
        m.route_track(STUDIO, &picture),
        None,
        "a commune's picture comes up while its tile shows or it holds the floor"
    );
    assert_eq!(
        m.route_track(STUDIO, &sound),
        Some(ANY_LAYER),
        "the chair hears an unmuted commune"
    );
    for subscriber in [A, ha_giang] {
        assert_eq!(
            m.route_track(subscriber, &sound),
            None,
            "the sites hear the floor only"
        );
    }
    // 003 asks for the floor on its hub: the chair here sees it queued, under its relay.
    let mut row = console_of(&mut m, T0)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    row.floor = FloorState::Requested;
    row.node = None;
    m.remote_console(T0 + 1, tuyen_quang, vec![row.clone()]);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorRequested { site: "003".into() }]
    );
    let asking = floor(None, vec![remote_site("003", "Xã C", tuyen_quang)]);
    assert!(outputs.contains(&send(STUDIO, asking)), "{outputs:?}");
    m.remote_console(T0 + 1, tuyen_quang, vec![row]);
    assert!(drain(&mut m).is_empty(), "asking again is the same request");
    let shown = console_of(&mut m, T0 + 1)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    assert_eq!(shown.floor, FloorState::Requested);
    m.give_floor(T0 + 1, STUDIO, &code("003"))
        .expect("the floor to the province's commune");
    let outputs = drain(&mut m);
    let told = floor(Some(remote_site("003", "Xã C", tuyen_quang)), vec![]);
    for to in [STUDIO, A, B, tuyen_quang, ha_giang] {
        assert!(
            outputs.contains(&send(to, told.clone())),
            "{to:?} is told, the relay's id as the holder's: {outputs:?}"
        );
    }
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorGiven { site: "003".into() }]
    );
    // Its media: the studio at full quality, every site, the other province; not back down.
    for subscriber in [STUDIO, A, B, ha_giang] {
        for track in [&sound, &picture] {
            assert_eq!(m.route_track(subscriber, track), Some(ANY_LAYER));
        }
    }
    assert_eq!(m.route_track(tuyen_quang, &picture), None);
    let row = console_of(&mut m, T0 + 2)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    assert_eq!(row.floor, FloorState::Holder);
    assert_eq!(row.participant, Some(format!("{tuyen_quang}-003")));
    m.check_invariants().expect("consumers match the rules");

    // The commune leaves its hub: its hub's next rows say so, and the floor returns here.
    let mut gone = console_of(&mut m, T0 + 2)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    gone.state = SiteState::Left;
    gone.node = None;
    m.remote_console(T0 + 2, tuyen_quang, vec![gone]);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorReturned { site: "003".into() }]
    );
    assert!(
        outputs.contains(&send(STUDIO, floor(None, vec![]))),
        "{outputs:?}"
    );
    assert_eq!(m.route_track(STUDIO, &picture), None);
    assert_eq!(m.route_track(A, &sound), None);
    // Back and given the floor again.
    let mut back = console_of(&mut m, T0 + 2)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    back.state = SiteState::Live;
    back.node = None;
    m.remote_console(T0 + 2, tuyen_quang, vec![back]);
    m.give_floor(T0 + 2, STUDIO, &code("003"))
        .expect("the floor again");
    drain(&mut m);

    // The relay goes (its link dropped): the floor is returned, and recorded so.
    m.leave(T0 + 3, tuyen_quang, LeaveReason::Closed, None);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorReturned { site: "003".into() }]
    );
    assert!(outputs.contains(&send(STUDIO, floor(None, vec![]))));
    assert_eq!(
        m.give_floor(T0 + 4, STUDIO, &code("003")),
        Err(ActionError::SiteNotConnected(code("003")))
    );
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn the_chair_sees_the_small_pictures_it_shows_of_a_child_hubs_communes() {
    let (mut m, tuyen_quang, ha_giang) = meeting_with_relays();
    let picture = video(tuyen_quang);
    assert_eq!(
        m.set_tiles(A, vec![code("003")]),
        Err(ActionError::ChairOnly)
    );
    m.set_tiles(STUDIO, vec![code("001"), code("003")])
        .expect("the chair shows 003");
    let outputs = drain(&mut m);
    let told = ServerMessage::RelayChair {
        action: Box::new(diemcau_signaling::ClientMessage::Tiles {
            sites: vec![code("001"), code("003")],
        }),
    };
    for relay in [tuyen_quang, ha_giang] {
        assert!(outputs.contains(&send(relay, told.clone())), "{outputs:?}");
    }
    // The small picture comes to the chair under the commune's name (its relay's id and
    // its code), in the tile the console names the same way.
    assert_eq!(m.route_track(STUDIO, &picture), Some(LOWEST_LAYER));
    let added = routes(&outputs).into_iter().find_map(|r| match r {
        Route::AddConsumer {
            subscriber,
            producer,
            ..
        } if subscriber == STUDIO && producer.id == picture.id => Some(producer),
        _ => None,
    });
    assert_eq!(
        added.and_then(|p| p.stream),
        Some(format!("{tuyen_quang}-003"))
    );
    for subscriber in [A, B, ha_giang] {
        assert_eq!(m.route_track(subscriber, &picture), None);
    }
    let row = console_of(&mut m, T0 + 1)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    assert_eq!(row.participant, Some(format!("{tuyen_quang}-003")));
    m.check_invariants().expect("consumers match the rules");

    // The relay no longer sends 003 up (it left its hub): its tracks carry nothing, and the
    // chair's consumer of them goes.
    m.relay_streams(tuyen_quang, Vec::new()).expect("streams");
    let outputs = drain(&mut m);
    assert!(
        routes(&outputs).iter().any(
            |r| matches!(r, Route::RemoveConsumer { subscriber, .. } if *subscriber == STUDIO)
        ),
        "{outputs:?}"
    );
    assert_eq!(m.route_track(STUDIO, &picture), None);
    assert_eq!(m.route_track(STUDIO, &audio(tuyen_quang)), None);
    // A site not invited here is never taken as a relay's.
    m.relay_streams(tuyen_quang, vec![(picture.mid, code("999"))])
        .expect("streams");
    assert_eq!(m.route_track(STUDIO, &picture), None);
    m.check_invariants().expect("consumers match the rules");

    // The chair leaves: the relays stop sending pictures up.
    m.leave(T0 + 2, STUDIO, LeaveReason::Closed, None);
    let outputs = drain(&mut m);
    let none = ServerMessage::RelayChair {
        action: Box::new(diemcau_signaling::ClientMessage::Tiles { sites: Vec::new() }),
    };
    assert!(outputs.contains(&send(ha_giang, none)), "{outputs:?}");
}

#[test]
fn a_provincial_relay_takes_up_the_unmuted_sounds_and_the_pictures_the_centre_shows() {
    let mut m = meeting();
    let relay = STUDIO;
    m.join(T0, relay, relayed_studio_seat(), "", "")
        .expect("the relay takes the studio's seat");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    for id in [relay, A] {
        m.attached(id);
        m.producer_added(audio(id));
        m.producer_added(video(id));
    }
    drain(&mut m);
    assert_eq!(m.route_track(relay, &audio(A)), Some(ANY_LAYER));
    assert_eq!(m.route_track(relay, &video(A)), None);
    m.set_tiles(relay, vec![code("001")])
        .expect("the national chair shows 001");
    assert_eq!(m.route_track(relay, &video(A)), Some(LOWEST_LAYER));
    m.mute(T0 + 2, relay, &code("001"), true).expect("mute");
    assert_eq!(
        m.route_track(relay, &audio(A)),
        None,
        "a muted sound stays here"
    );
    m.check_invariants().expect("consumers match the rules");
    m.floor_from_above(T0 + 3, relay, Some(FloorAbove::Here(code("001"))))
        .expect("the floor");
    assert_eq!(m.route_track(relay, &video(A)), Some(ANY_LAYER));
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn a_provincial_part_follows_the_national_floor() {
    let mut m = meeting();
    let (relay, above) = (STUDIO, PeerId(50));
    m.join(T0, relay, relayed_studio_seat(), "", "")
        .expect("the relay takes the studio's seat");
    m.join(
        T0,
        above,
        Seat::Above {
            session: SessionId("s-above".into()),
        },
        "",
        "",
    )
    .expect("the relay takes the floor seat");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    for id in [relay, above, A] {
        m.attached(id);
        m.producer_added(audio(id));
        m.producer_added(video(id));
    }
    drain(&mut m);
    assert_eq!(
        m.route_track(relay, &video(A)),
        None,
        "no picture goes up without the floor or the national chair showing it"
    );
    assert_eq!(m.route(A, above), None);
    assert_eq!(
        m.route(above, relay),
        None,
        "the floor seat receives nothing"
    );

    // A site of another province holds the floor: this hub's sites receive it from the
    // floor seat, under that site's name; nothing of it is in this hub's record.
    let elsewhere = FloorAbove::Elsewhere {
        site: code("777"),
        name: "Xã Lũng Cú".into(),
    };
    assert_eq!(
        m.floor_from_above(T0 + 1, A, Some(elsewhere.clone())),
        Err(ActionError::ChairOnly),
        "only the relay"
    );
    m.floor_from_above(T0 + 1, relay, Some(elsewhere))
        .expect("follows");
    let outputs = drain(&mut m);
    assert!(outputs.contains(&send(
        A,
        floor(Some(floor_site("777", "Xã Lũng Cú", above)), vec![])
    )));
    assert!(logs(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(m.route(A, above), Some(ANY_LAYER));
    assert_eq!(m.route(relay, above), None, "it does not go back up");

    // This hub's own site gets it: its media goes up through the relay.
    m.floor_from_above(T0 + 2, relay, Some(FloorAbove::Here(code("001"))))
        .expect("follows");
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorGiven { site: "001".into() }]
    );
    assert_eq!(m.route(relay, A), Some(ANY_LAYER));
    assert_eq!(m.route(A, above), None);
    m.floor_from_above(T0 + 3, relay, None).expect("follows");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::FloorReturned { site: "001".into() }]
    );
    assert_eq!(m.route(relay, A), None);
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn a_provinces_organizer_watches_its_part_without_acting() {
    let mut m = meeting_in_session();
    let watcher = PeerId(60);
    let joined = m
        .join(
            T0 + 1,
            watcher,
            Seat::Observer {
                session: SessionId("s-watch".into()),
            },
            "",
            "",
        )
        .expect("the organizer watches");
    let ServerMessage::Joined {
        participant,
        participants,
        ..
    } = joined
    else {
        panic!("joined: {joined:?}");
    };
    assert_eq!(participant.role, Role::Observer);
    assert_eq!(participants.len(), 3, "it sees the studio and the sites");
    let outputs = drain(&mut m);
    assert!(logs(&outputs).is_empty(), "no attendance: {outputs:?}");
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                message: ServerMessage::ParticipantJoined { .. },
                ..
            }
        )),
        "nobody is told: {outputs:?}"
    );
    assert!(
        outputs.iter().any(|o| matches!(
            o,
            Output::Send { to: Recipient::Participant(to), message: ServerMessage::Console { .. } } if *to == watcher
        )),
        "it gets the console at once: {outputs:?}"
    );
    assert_eq!(m.route(watcher, STUDIO), Some(ANY_LAYER), "the programme");
    assert_eq!(m.route(watcher, A), Some(LOWEST_LAYER), "the sites, small");
    assert_eq!(m.route(A, watcher), None);
    assert_eq!(
        m.give_floor(T0 + 2, watcher, &code("001")),
        Err(ActionError::ChairOnly)
    );
    assert_eq!(
        m.start_roll_call(T0 + 2, watcher),
        Err(ActionError::ChairOnly)
    );
    // Every console goes to the chair and to it.
    m.send_console(T0 + 3);
    let consoles: Vec<PeerId> = drain(&mut m)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send {
                to: Recipient::Participant(to),
                message: ServerMessage::Console { .. },
            } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(consoles, vec![STUDIO, watcher]);
    assert!(m.leave(T0 + 4, watcher, LeaveReason::Closed, None));
    assert!(
        logs(&drain(&mut m)).is_empty(),
        "its leave is no studio's leave"
    );
    m.check_invariants().expect("rules hold");
}

/// The chair's queue holds the sites of this hub and of child hubs in the order they asked,
/// each child hub's site at the time its hub says (within reason), not when its row arrived;
/// the request is logged at that time.
#[test]
fn the_queue_across_hubs_is_in_the_order_the_sites_asked() {
    let (mut m, tuyen_quang, _) = meeting_with_relays();
    m.request_floor(T0 + 5_000, A, true).expect("A asks");
    // 003 asked on its hub at T0 + 3 s; its row arrives after A's request here.
    let mut row = console_of(&mut m, T0 + 5_000)
        .into_iter()
        .find(|r| r.site == "003")
        .expect("003");
    row.floor = FloorState::Requested;
    row.floor_requested_at = Some(T0 + 3_000);
    row.node = None;
    drain(&mut m);
    m.remote_console(T0 + 6_000, tuyen_quang, vec![row.clone()]);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::FloorRequested { site: "003".into() }]
    );
    assert!(
        outputs.contains(&log(
            T0 + 3_000,
            EventKind::FloorRequested { site: "003".into() }
        )),
        "logged when it asked: {outputs:?}"
    );
    let queued = floor(
        None,
        vec![
            remote_site("003", "Xã C", tuyen_quang),
            floor_site("001", "Xã A", A),
        ],
    );
    assert!(outputs.contains(&send(STUDIO, queued)), "{outputs:?}");
    let rows = console_of(&mut m, T0 + 6_000);
    let asked: Vec<(String, Option<Millis>)> = rows
        .iter()
        .filter(|r| r.floor == FloorState::Requested)
        .map(|r| (r.site.clone(), r.floor_requested_at))
        .collect();
    assert_eq!(
        asked,
        [
            ("001".to_owned(), Some(T0 + 5_000)),
            ("003".to_owned(), Some(T0 + 3_000))
        ]
    );
    // A hub whose clock is far off: its site counts from the row's arrival.
    m.remote_console(T0 + 7_000, tuyen_quang, vec![]);
    drain(&mut m);
    row.floor_requested_at = Some(T0 + 600_000);
    m.remote_console(T0 + 8_000, tuyen_quang, vec![row]);
    assert!(
        drain(&mut m).contains(&log(
            T0 + 8_000,
            EventKind::FloorRequested { site: "003".into() }
        )),
        "a time in the future is not taken"
    );
    m.check_invariants().expect("the queue keeps the rules");
}

/// In a province's part of a national meeting, a site asking for the floor makes the console
/// go to the relay (this part's studio) at once: the request goes up without waiting for the
/// next console.
#[test]
fn a_request_in_a_relayed_part_sends_the_console_at_once() {
    let mut m = meeting();
    let relay = STUDIO;
    m.join(T0, relay, relayed_studio_seat(), "", "")
        .expect("the relay joins as the studio");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    drain(&mut m);
    m.request_floor(T0 + 500, A, true).expect("A asks");
    let outputs = drain(&mut m);
    let console = outputs
        .iter()
        .find_map(|o| match o {
            Output::Send {
                to: Recipient::Participant(to),
                message: ServerMessage::Console { sites, .. },
            } if *to == relay => Some(sites.clone()),
            _ => None,
        })
        .expect("the console to the relay, at once");
    let a = console.iter().find(|r| r.site == "001").expect("A's row");
    assert_eq!(a.floor, FloorState::Requested);
    assert_eq!(a.floor_requested_at, Some(T0 + 500));
}
