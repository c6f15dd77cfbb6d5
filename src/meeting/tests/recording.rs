//! The recording as the core decides it: which part, which producers (the programme, the floor
//! holder's picture and sound), what is logged and told to the chair.

use super::*;
use crate::attendance::RecordingStop;

fn recordings(outputs: &[Output]) -> Vec<RecordingOutput> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Recording(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn studio_sources() -> RecordingSources {
    RecordingSources {
        video: Some((video(STUDIO).id, 3)),
        programme_audio: Some(audio(STUDIO).id),
        floor_audio: None,
    }
}

#[test]
fn the_chair_records_the_programme_and_the_floor_holder_in_parts() {
    let mut m = meeting_in_session();
    m.set_recording(A, true)
        .expect_err("only the chair records");
    m.set_recording(STUDIO, true)
        .expect("the chair presses record");
    let out = drain(&mut m);
    assert_eq!(
        recordings(&out),
        vec![RecordingOutput::Start {
            part: 1,
            sources: studio_sources()
        }]
    );
    m.recording_started(T0 + 1, 1, "meeting-7-1.mkv".into(), None);
    let out = drain(&mut m);
    assert_eq!(
        logs(&out),
        vec![EventKind::RecordingStarted {
            part: 1,
            file: "meeting-7-1.mkv".into(),
            hub: None,
        }]
    );
    assert!(out.contains(&send(
        STUDIO,
        ServerMessage::Recording {
            recording: true,
            part: Some(1),
            since: Some(T0 + 1),
            trouble: None
        }
    )));

    // The floor: the site's picture and sound, the studio's sound kept.
    m.give_floor(T0 + 2, STUDIO, &code("001"))
        .expect("floor given");
    let floor = RecordingSources {
        video: Some((video(A).id, 3)),
        programme_audio: Some(audio(STUDIO).id),
        floor_audio: Some(audio(A).id),
    };
    assert_eq!(
        recordings(&drain(&mut m)),
        vec![RecordingOutput::Sources(floor)]
    );
    m.take_floor(T0 + 3, STUDIO).expect("floor taken back");
    assert_eq!(
        recordings(&drain(&mut m)),
        vec![RecordingOutput::Sources(studio_sources())]
    );

    m.set_recording(STUDIO, false).expect("the chair stops");
    assert_eq!(
        recordings(&drain(&mut m)),
        vec![RecordingOutput::Stop {
            reason: RecordingStop::Chair
        }]
    );
    m.recording_stopped(T0 + 4, 1, RecordingStop::Chair, 1234);
    assert_eq!(
        logs(&drain(&mut m)),
        vec![EventKind::RecordingStopped {
            part: 1,
            reason: RecordingStop::Chair,
            bytes: 1234
        }]
    );
    m.set_recording(STUDIO, true).expect("again");
    let out = drain(&mut m);
    assert!(matches!(
        recordings(&out).as_slice(),
        [RecordingOutput::Start { part: 2, .. }]
    ));
}

#[test]
fn a_full_disk_waits_for_the_chair_and_the_end_of_the_meeting_stops_the_part() {
    let mut m = meeting_in_session();
    m.set_recording(STUDIO, true).expect("record");
    drain(&mut m);
    m.recording_refused(T0 + 1, 1, 10, 2_000_000_000);
    let out = drain(&mut m);
    assert_eq!(
        logs(&out),
        vec![EventKind::RecordingRefused {
            free_bytes: 10,
            min_free_bytes: 2_000_000_000
        }]
    );
    assert!(recordings(&out).is_empty(), "no retry by itself");

    m.set_recording(STUDIO, true)
        .expect("the chair tries again");
    let out = drain(&mut m);
    assert!(matches!(
        recordings(&out).as_slice(),
        [RecordingOutput::Start { part: 1, .. }]
    ));
    m.recording_started(T0 + 2, 1, "meeting-7-1.mkv".into(), None);
    drain(&mut m);
    m.end(T0 + 3);
    let out = drain(&mut m);
    assert_eq!(
        recordings(&out),
        vec![RecordingOutput::Stop {
            reason: RecordingStop::MeetingEnded
        }]
    );
}

#[test]
fn after_a_crash_the_recording_goes_on_in_a_new_part_unless_the_chair_had_stopped_it() {
    let at = |at, kind| Event {
        seq: 0,
        at,
        recorded_at: at,
        kind,
    };
    let started = at(
        T0,
        EventKind::RecordingStarted {
            part: 1,
            file: "f".into(),
            hub: None,
        },
    );
    let crashed = at(
        T0 + 5,
        EventKind::RecordingStopped {
            part: 1,
            reason: RecordingStop::HubStopped,
            bytes: 5,
        },
    );
    let mut m = reopened(vec![
        at(T0, EventKind::MeetingStarted),
        started.clone(),
        crashed,
    ]);
    assert!(matches!(
        recordings(&drain(&mut m)).as_slice(),
        [RecordingOutput::Start { part: 2, .. }]
    ));
    let by_chair = at(
        T0 + 5,
        EventKind::RecordingStopped {
            part: 1,
            reason: RecordingStop::Chair,
            bytes: 5,
        },
    );
    let mut m = reopened(vec![at(T0, EventKind::MeetingStarted), started, by_chair]);
    assert!(recordings(&drain(&mut m)).is_empty());
}
