//! Routes and media events: who receives whom, attachments, reception and quality, random input sequences.

use super::*;

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
fn a_provincial_relay_receives_the_programme_unseen_and_unlogged() {
    let mut m = meeting_in_session();
    let relay = PeerId(40);
    let seat = Seat::Node {
        node: "tuyen-quang".into(),
        session: SessionId("s-node".into()),
    };
    let joined = m
        .join(T0 + 1, relay, seat, "", "")
        .expect("the relay joins");
    let ServerMessage::Joined { participants, .. } = joined else {
        panic!("joined: {joined:?}");
    };
    assert_eq!(
        participants.len(),
        3,
        "the relay sees the studio and the sites"
    );
    let outputs = drain(&mut m);
    assert!(
        logs(&outputs).is_empty(),
        "a relay is no attendance: {outputs:?}"
    );
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                message: ServerMessage::ParticipantJoined { .. },
                ..
            }
        )),
        "nobody is told of the relay: {outputs:?}"
    );
    assert_eq!(
        m.route(relay, STUDIO),
        Some(ANY_LAYER),
        "the programme, any layer"
    );
    assert_eq!(m.route(relay, A), None);
    assert_eq!(
        m.route(STUDIO, relay),
        None,
        "a relay's tracks reach nobody while none of its sites holds the floor"
    );
    assert_eq!(m.route(A, relay), None);
    m.attached(relay);
    let pinned = |layer: u8| Route::AddConsumer {
        subscriber: relay,
        consumer: ConsumerId(1009 + u64::from(layer)),
        producer: video(STUDIO),
        max_layer: layer,
        pinned: true,
    };
    assert_eq!(
        routes(&drain(&mut m)),
        vec![
            Route::AddConsumer {
                subscriber: relay,
                consumer: ConsumerId(1008),
                producer: audio(STUDIO),
                max_layer: ANY_LAYER,
                pinned: false,
            },
            pinned(0),
            pinned(1),
            pinned(2),
        ],
        "the studio's audio, and each layer of its video on a track of its own"
    );
    assert_eq!(
        m.request_floor(T0 + 2, relay, true),
        Err(ActionError::SiteOnly),
        "a relay is no site"
    );
    m.check_invariants().expect("consumers match the rules");
    assert!(m.leave(T0 + 3, relay, LeaveReason::Closed, None));
    let outputs = drain(&mut m);
    assert!(
        logs(&outputs).is_empty(),
        "its leave is not logged: {outputs:?}"
    );
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                message: ServerMessage::ParticipantLeft { .. },
                ..
            }
        )),
        "nor told: {outputs:?}"
    );
}

#[test]
fn a_relayed_national_studio_is_received_and_takes_no_wall() {
    let mut m = meeting();
    m.join(T0, STUDIO, relayed_studio_seat(), "", "")
        .expect("the relay takes the studio seat");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "", "")
        .expect("A joins");
    assert_eq!(
        m.route(A, STUDIO),
        Some(ANY_LAYER),
        "the commune receives the programme"
    );
    assert_eq!(
        m.route_track(STUDIO, &video(A)),
        None,
        "no wall for a relayed studio: only the pictures the national chair shows go up"
    );
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn everyone_is_told_when_the_province_loses_the_centre_and_so_is_a_late_joiner() {
    let mut m = meeting_in_session();
    drain(&mut m);
    m.centre_changed(true);
    assert!(drain(&mut m).is_empty(), "no change, no message");
    m.centre_changed(false);
    let lost = ServerMessage::Centre { reachable: false };
    assert_eq!(
        drain(&mut m),
        vec![
            send(STUDIO, lost.clone()),
            send(A, lost.clone()),
            send(B, lost.clone())
        ]
    );
    m.centre_changed(false);
    assert!(drain(&mut m).is_empty(), "told once");
    let c = PeerId(30);
    m.join(T0 + 5, c, site_seat("003", "Xã C", "s-c"), "", "")
        .expect("C joins");
    assert!(
        drain(&mut m).contains(&send(c, lost)),
        "a site joining meanwhile is told at once"
    );
    m.centre_changed(true);
    let back = ServerMessage::Centre { reachable: true };
    assert_eq!(
        drain(&mut m),
        vec![
            send(c, back.clone()),
            send(STUDIO, back.clone()),
            send(A, back.clone()),
            send(B, back)
        ],
        "in the order of participant ids"
    );
}

#[test]
fn the_chair_is_told_when_the_hub_sheds_video_and_so_is_a_chair_joining_meanwhile() {
    let mut m = meeting_in_session();
    m.hub_load(0);
    assert!(drain(&mut m).is_empty(), "no change, no message");
    m.hub_load(3);
    let shedding = ServerMessage::HubLoad { level: 3 };
    assert_eq!(drain(&mut m), vec![send(STUDIO, shedding.clone())]);
    m.hub_load(3);
    assert!(drain(&mut m).is_empty(), "told once");
    // A site whose video the load took is told it is the hub's load, not its link.
    m.reception_changed(T0 + 2, A, true, true);
    let outputs = drain(&mut m);
    assert!(outputs.contains(&send(
        A,
        ServerMessage::Reception {
            audio_only: true,
            hub_load: true
        }
    )));
    assert_eq!(logs(&outputs).len(), 1, "audio only, logged");
    // The link weakens meanwhile: the cause changes, what the site receives does not.
    m.reception_changed(T0 + 2, A, true, false);
    let outputs = drain(&mut m);
    assert!(outputs.contains(&send(
        A,
        ServerMessage::Reception {
            audio_only: true,
            hub_load: false
        }
    )));
    assert!(logs(&outputs).is_empty(), "not logged twice");
    m.leave(T0 + 3, STUDIO, LeaveReason::Closed, None);
    let chair = PeerId(40);
    m.join(T0 + 4, chair, studio_seat("Studio"), "", "")
        .expect("the chair comes back");
    assert!(
        drain(&mut m).contains(&send(chair, shedding)),
        "a chair joining meanwhile is told at once"
    );
    m.hub_load(0);
    assert_eq!(
        drain(&mut m),
        vec![send(chair, ServerMessage::HubLoad { level: 0 })]
    );
}

#[test]
fn a_subscriber_gets_its_consumers_when_attached_not_before() {
    let mut m = meeting();
    m.join(T0, STUDIO, studio_seat("Studio"), "", "")
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
            pinned: false,
        })]
    );
}

#[test]
fn media_events_of_a_site_are_told_logged_and_shown() {
    let mut m = meeting_in_session();
    m.peer_connected(T0 + 1, A);
    m.reception_changed(T0 + 2, A, true, false);
    m.quality_sampled(
        T0 + 3,
        A,
        diemcau_sfu::Quality {
            bitrate_in_kbps: 500,
            bitrate_out_kbps: 900,
            loss_permille: 12,
            rtt_ms: 80,
            transport: Some(diemcau_sfu::Transport::Tcp),
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
                transport: Some(diemcau_signaling::MediaTransport::Tcp),
            },
        ]
    );
    assert!(outputs.contains(&send(
        A,
        ServerMessage::Reception {
            audio_only: true,
            hub_load: false
        }
    )));
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
fn a_second_floor_seat_leaves_the_first_an_ordinary_node() {
    // Found by the fuzzer: a studio and a floor seat publishing, then another floor seat: the
    // first one, no longer the floor seat, receives the programme like any node.
    let input = [
        0, 0, 0, 1, 1, 3, 3, 0, 1, 3, 1, 1, 4, 0, 4, 4, 1, 16, 1, 0, 3, 255,
    ];
    super::testkit::run(&input);
}

#[test]
fn only_a_relay_shows_rows_of_another_hubs_sites() {
    // Found by the fuzzer: the floor seat (not a relay) sent console rows of a site asking
    // for the floor, then the floor from above went to that site while it stayed queued.
    let input = [0, 254, 4, 1, 0, 3, 0, 1, 1, 247, 48, 255, 110, 110, 110];
    super::testkit::run(&input);
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

/// Studio encoder `id` joins `m` at `at` with session `session`, from OBS at 10.0.0.9.
fn join_encoder(
    m: &mut LiveMeeting,
    at: Millis,
    id: PeerId,
    session: &str,
) -> Result<ServerMessage, JoinError> {
    m.join(
        at,
        id,
        Seat::Encoder {
            session: SessionId(session.into()),
        },
        "OBS",
        "10.0.0.9",
    )
}

/// Encoder `id`, attached, publishes its audio and its one video layer.
fn encoder_publishes(m: &mut LiveMeeting, id: PeerId) {
    m.attached(id);
    m.producer_added(producer(500, id, MediaKind::Audio));
    m.producer_added(ProducerInfo {
        layers: 1,
        mid: diemcau_sfu::str0m::media::Mid::from("0"),
        stream: None,
        ..producer(501, id, MediaKind::Video)
    });
}

#[test]
fn the_encoder_s_programme_replaces_the_chair_s_camera_while_it_publishes() {
    let mut m = meeting_in_session();
    let encoder = PeerId(50);
    let joined = join_encoder(&mut m, T0 + 1, encoder, "s-encoder")
        .expect("the encoder joins beside the chair");
    assert!(matches!(joined, ServerMessage::Joined { .. }));
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::EncoderJoined {
            session: "s-encoder".into(),
            client: "OBS".into(),
            address: "10.0.0.9".into(),
        }],
        "its session is in the log, not as a site's: {outputs:?}"
    );
    assert!(
        outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                to: Recipient::Participant(p),
                message: ServerMessage::ParticipantJoined { participant },
            } if *p == A && participant.role == Role::Encoder
        )),
        "the sites are told whose tracks are the programme: {outputs:?}"
    );
    assert_eq!(
        m.route(A, STUDIO),
        Some(ANY_LAYER),
        "the camera stays until the encoder publishes"
    );

    encoder_publishes(&mut m, encoder);
    for subscriber in [A, B, STUDIO] {
        assert_eq!(m.route(subscriber, encoder), Some(ANY_LAYER));
    }
    assert_eq!(m.route(A, STUDIO), None, "the chair's camera stays home");
    assert_eq!(m.route(encoder, A), None, "the encoder receives nothing");
    assert_eq!(m.route(encoder, STUDIO), None);
    let changed = routes(&drain(&mut m));
    assert!(
        changed.iter().any(|r| matches!(
            r,
            Route::RemoveConsumer { subscriber, .. } if *subscriber == A
        )),
        "the sites' consumers of the camera go: {changed:?}"
    );
    m.check_invariants().expect("consumers match the rules");

    // A second encoder takes over; the first is told and closed.
    let second = PeerId(51);
    join_encoder(&mut m, T0 + 2, second, "s-encoder-2").expect("a new encoder replaces the old");
    let outputs = drain(&mut m);
    assert!(outputs.iter().any(|o| matches!(
        o,
        Output::Close { to: Recipient::Participant(p), .. } if *p == encoder
    )));
    assert!(outputs.contains(&Output::Removed(encoder)));
    assert_eq!(
        m.route(A, STUDIO),
        Some(ANY_LAYER),
        "the camera is back until the new encoder publishes"
    );
    m.check_invariants().expect("consumers match the rules");

    // The encoder leaves: logged as such, the camera is back.
    assert!(m.leave(T0 + 3, second, LeaveReason::Closed, None));
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::EncoderLeft {
            session: "s-encoder-2".into(),
            reason: LeaveReason::Closed,
        }]
    );
    assert_eq!(m.route(A, STUDIO), Some(ANY_LAYER));
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn the_chair_switches_the_programme_between_the_encoder_and_its_camera() {
    let mut m = meeting_in_session();
    let encoder = PeerId(50);
    join_encoder(&mut m, T0 + 1, encoder, "s-encoder").expect("the encoder joins");
    encoder_publishes(&mut m, encoder);
    let told = |outputs: &[Output]| {
        outputs.iter().rev().find_map(|o| match o {
            Output::Send {
                to: Recipient::Participant(p),
                message: ServerMessage::Programme { source, encoder },
            } if *p == STUDIO => Some((*source, *encoder)),
            _ => None,
        })
    };
    assert_eq!(
        told(&drain(&mut m)),
        Some((ProgrammeSource::Encoder, true)),
        "the chair is told the encoder is on air"
    );

    assert_eq!(
        m.switch_programme(T0 + 2, A, ProgrammeSource::Camera),
        Err(ActionError::ChairOnly)
    );
    m.switch_programme(T0 + 3, STUDIO, ProgrammeSource::Camera)
        .expect("the chair puts its camera on air");
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::ProgrammeSwitched {
            source: ProgrammeSource::Camera
        }]
    );
    assert_eq!(told(&outputs), Some((ProgrammeSource::Camera, true)));
    for site in [A, B] {
        assert_eq!(m.route(site, STUDIO), Some(ANY_LAYER), "the camera on air");
        assert_eq!(m.route(site, encoder), None, "the encoder off air");
    }
    assert_eq!(
        m.route(STUDIO, encoder),
        Some(ANY_LAYER),
        "the chair still sees the encoder"
    );
    m.check_invariants().expect("consumers match the rules");

    // The same choice again changes nothing and logs nothing.
    m.switch_programme(T0 + 4, STUDIO, ProgrammeSource::Camera)
        .expect("again");
    assert!(logs(&drain(&mut m)).is_empty());

    // Back to the encoder: the sites receive it again.
    m.switch_programme(T0 + 5, STUDIO, ProgrammeSource::Encoder)
        .expect("the encoder back on air");
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::ProgrammeSwitched {
            source: ProgrammeSource::Encoder
        }]
    );
    assert_eq!(m.route(A, encoder), Some(ANY_LAYER));
    assert_eq!(m.route(A, STUDIO), None);
    m.check_invariants().expect("consumers match the rules");

    // With no encoder, the camera is on air whatever the choice, which waits for the next one.
    m.switch_programme(T0 + 6, STUDIO, ProgrammeSource::Camera)
        .expect("camera");
    assert!(m.leave(T0 + 7, encoder, LeaveReason::Closed, None));
    assert_eq!(told(&drain(&mut m)), Some((ProgrammeSource::Camera, false)));
    assert_eq!(m.route(A, STUDIO), Some(ANY_LAYER));
    m.check_invariants().expect("consumers match the rules");
}

#[test]
fn a_viewer_gets_one_picture_the_floor_holder_s_while_one_holds_it_up_to_the_limit() {
    let mut m = meeting_in_session();
    let viewer = PeerId(60);
    let seat = |s: &str| Seat::Viewer {
        session: SessionId(s.into()),
    };
    m.join(T0 + 1, viewer, seat("s-v1"), "player", "10.0.0.7")
        .expect("a viewer joins");
    m.attached(viewer);
    let outputs = drain(&mut m);
    assert_eq!(
        logs(&outputs),
        vec![EventKind::ViewerJoined {
            session: "s-v1".into(),
            client: "player".into(),
            address: "10.0.0.7".into(),
        }],
        "a viewer's session is logged apart from the sites': {outputs:?}"
    );
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                message: ServerMessage::ParticipantJoined { .. },
                ..
            }
        )),
        "nobody is told of a viewer: {outputs:?}"
    );
    assert_eq!(m.route(viewer, STUDIO), Some(ANY_LAYER), "the programme");
    assert_eq!(m.route(viewer, A), None);
    assert_eq!(m.route(A, viewer), None, "a viewer is seen by nobody");

    m.give_floor(T0 + 2, STUDIO, &code("001"))
        .expect("the floor to A");
    assert_eq!(m.route(viewer, A), Some(ANY_LAYER), "the speaking site");
    assert_eq!(m.route(viewer, STUDIO), None, "one picture: the speaker's");
    let changed = routes(&drain(&mut m));
    let removed = changed.iter().position(
        |r| matches!(r, Route::RemoveConsumer { subscriber, .. } if *subscriber == viewer),
    );
    let added = changed.iter().position(|r| {
        matches!(r, Route::AddConsumer { subscriber, producer, .. }
            if *subscriber == viewer && producer.peer == A)
    });
    assert!(
        matches!((removed, added), (Some(r), Some(a)) if r < a),
        "the studio's consumers go before the speaker's come: {changed:?}"
    );
    m.check_invariants().expect("consumers match the rules");

    m.take_floor(T0 + 3, STUDIO).expect("the floor back");
    assert_eq!(m.route(viewer, STUDIO), Some(ANY_LAYER));
    assert_eq!(m.route(viewer, A), None);

    m.join(T0 + 4, PeerId(61), seat("s-v2"), "player", "10.0.0.8")
        .expect("a second viewer");
    assert_eq!(
        m.join(T0 + 5, PeerId(62), seat("s-v3"), "player", "10.0.0.9"),
        Err(JoinError::ViewersFull),
        "two viewers at most in these tests"
    );
    drain(&mut m);
    assert!(m.leave(T0 + 6, viewer, LeaveReason::Closed, None));
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::ViewerLeft {
            session: "s-v1".into(),
            reason: LeaveReason::Closed,
        }]
    );
    m.join(T0 + 7, PeerId(62), seat("s-v3"), "player", "10.0.0.9")
        .expect("room again");
    m.check_invariants().expect("consumers match the rules");
}
