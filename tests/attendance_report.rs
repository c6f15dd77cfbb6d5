//! Reports computed from hand-built event logs: a late join, two drops, reconnects inside and
//! outside the grace period, a hub crash, a partial attendance and a site that never joined.
//! Every field of every row is checked.

use diemcau::attendance::report::{HeadCount, compute};
use diemcau::attendance::{
    Event, EventKind, ExpectedSite, LeaveReason, MeetingPlan, Millis, Reception, ReportRules,
    Status,
};

/// 2026-12-01 08:00 in Hà Nội (01:00 UTC).
const T0: Millis = 1_796_086_800_000;

fn at(minute: i64) -> Millis {
    T0 + minute * 60_000
}

struct Log(Vec<Event>);

impl Log {
    fn push(&mut self, minute: i64, kind: EventKind) {
        self.push_recorded(minute, minute, kind);
    }

    fn push_recorded(&mut self, minute: i64, recorded: i64, kind: EventKind) {
        let seq = self.0.len() as u64 + 1;
        self.0.push(Event {
            seq,
            at: at(minute),
            recorded_at: at(recorded),
            kind,
        });
    }

    fn join(&mut self, minute: i64, site: &str, session: &str) {
        self.push(
            minute,
            EventKind::SiteJoined {
                site: site.into(),
                session: session.into(),
                client: "Chrome 156".into(),
                address: "127.0.0.1".into(),
            },
        );
    }

    fn reconnect(&mut self, minute: i64, site: &str, session: &str, previous: &str) {
        self.push(
            minute,
            EventKind::SiteReconnected {
                site: site.into(),
                session: session.into(),
                previous_session: previous.into(),
                client: "Chrome 156".into(),
                address: "127.0.0.1".into(),
            },
        );
    }

    fn leave(&mut self, minute: i64, site: &str, session: &str, reason: LeaveReason) {
        self.push(
            minute,
            EventKind::SiteLeft {
                site: site.into(),
                session: session.into(),
                reason,
            },
        );
    }
}

fn site(code: &str, name: &str, delegates: u32) -> ExpectedSite {
    ExpectedSite {
        code: code.into(),
        name: name.into(),
        expected_delegates: delegates,
        province: None,
    }
}

fn plan() -> MeetingPlan {
    MeetingPlan {
        id: 7,
        title: "Hội nghị trực tuyến tháng 12".into(),
        scheduled_start: at(0),
        scheduled_end: at(120),
        roster: vec![
            site("2269", "Xã Thượng Lâm", 50),
            site("2266", "Xã Lâm Bình", 40),
            site("2302", "Xã Minh Quang", 30),
            site("2290", "Xã Bình An", 20),
            site("2287", "Xã Hồng Quang", 25),
            site("2317", "Xã Thổ Bình", 35),
        ],
    }
}

/// The meeting runs 08:02–10:00: 118 minutes.
fn log() -> Vec<Event> {
    let mut log = Log(Vec::new());
    // Thượng Lâm joins before the start and stays to the end.
    log.join(-5, "2269", "s1");
    log.push(2, EventKind::MeetingStarted);
    // Minh Quang: joins on time, drops twice: back within the grace, then after 10 minutes.
    log.join(1, "2302", "s2");
    log.push(
        5,
        EventKind::HeadCount {
            site: "2269".into(),
            count: 50,
            confirmed_by: "Nguyễn Văn An".into(),
            position: "Chủ tịch UBND xã".into(),
        },
    );
    // Hồng Quang joins at 08:05.
    log.join(5, "2287", "s3");
    // Thổ Bình attends 08:10–08:40 only.
    log.join(10, "2317", "s4");
    // Lâm Bình is late.
    log.join(20, "2266", "s5");
    log.leave(30, "2302", "s2", LeaveReason::NetworkTimeout);
    log.reconnect(31, "2302", "s6", "s2");
    log.push(
        35,
        EventKind::HeadCount {
            site: "2302".into(),
            count: 30,
            confirmed_by: "Trần Thị Bình".into(),
            position: "Văn phòng UBND xã".into(),
        },
    );
    log.push(
        40,
        EventKind::MediaChanged {
            site: "2302".into(),
            session: "s6".into(),
            media: Reception::AudioOnly,
        },
    );
    log.leave(40, "2317", "s4", LeaveReason::Closed);
    log.push(
        45,
        EventKind::MediaChanged {
            site: "2302".into(),
            session: "s6".into(),
            media: Reception::Video,
        },
    );
    log.push(
        50,
        EventKind::HeadCount {
            site: "2269".into(),
            count: 52,
            confirmed_by: "Nguyễn Văn An".into(),
            position: "Chủ tịch UBND xã".into(),
        },
    );
    // The hub crashed at 09:00; on restart it closed the open sessions at the last moment it
    // knew them alive. Hồng Quang is back three minutes later: outside the grace.
    log.leave(60, "2302", "s6", LeaveReason::NetworkTimeout);
    log.push_recorded(
        60,
        62,
        EventKind::SiteLeft {
            site: "2287".into(),
            session: "s3".into(),
            reason: LeaveReason::HubCrash,
        },
    );
    log.join(63, "2287", "s7");
    log.join(70, "2302", "s8");
    log.push(120, EventKind::MeetingEnded);
    for (site, session) in [
        ("2269", "s1"),
        ("2266", "s5"),
        ("2302", "s8"),
        ("2287", "s7"),
    ] {
        log.leave(120, site, session, LeaveReason::MeetingEnded);
    }
    log.0
}

#[test]
fn report_from_a_full_meeting() {
    let events = log();
    let report = compute(&plan(), &events, at(200), &ReportRules::default());

    let s = &report.summary;
    assert_eq!(s.meeting_id, 7);
    assert_eq!(s.title, "Hội nghị trực tuyến tháng 12");
    assert_eq!((s.scheduled_start, s.scheduled_end), (at(0), at(120)));
    assert_eq!((s.actual_start, s.actual_end), (Some(at(2)), Some(at(120))));
    assert!(!s.in_progress);
    assert_eq!(s.computed_at, at(200));
    assert_eq!((s.sites_expected, s.sites_joined), (6, 5));
    assert_eq!(s.sites_joined_percent, 83.3);
    assert_eq!((s.delegates_expected, s.delegates_declared), (200, 82));
    assert_eq!(s.delegates_declared_percent, 41.0);

    let row = |code: &str| {
        report
            .sites
            .iter()
            .find(|r| r.code == code)
            .expect("a row per expected site")
    };

    let tl = row("2269");
    assert_eq!(tl.name, "Xã Thượng Lâm");
    assert_eq!(tl.status, Status::Present);
    assert_eq!(
        (tl.first_join, tl.last_leave),
        (Some(at(-5)), Some(at(120)))
    );
    assert_eq!((tl.connected_minutes, tl.coverage_percent), (118.0, 100.0));
    assert_eq!((tl.interruptions, tl.longest_outage_minutes), (0, 0.0));
    assert_eq!((tl.audio_only_minutes, tl.attendance_rows), (0.0, 1));
    assert_eq!(tl.expected_delegates, 50);
    assert_eq!(
        tl.head_count,
        Some(HeadCount {
            count: 52,
            confirmed_by: "Nguyễn Văn An".into(),
            position: "Chủ tịch UBND xã".into(),
            at: at(50),
        }),
        "the latest declaration counts"
    );

    let lb = row("2266");
    assert_eq!(lb.status, Status::Late);
    assert_eq!(
        (lb.first_join, lb.last_leave),
        (Some(at(20)), Some(at(120)))
    );
    assert_eq!((lb.connected_minutes, lb.coverage_percent), (100.0, 84.7));
    assert_eq!((lb.interruptions, lb.longest_outage_minutes), (0, 0.0));
    assert_eq!((lb.audio_only_minutes, lb.attendance_rows), (0.0, 1));
    assert_eq!(lb.head_count, None);

    let mq = row("2302");
    assert_eq!(mq.status, Status::Present);
    assert_eq!((mq.first_join, mq.last_leave), (Some(at(1)), Some(at(120))));
    // 08:02–08:30, 08:31–09:00, 09:10–10:00.
    assert_eq!(mq.connected_minutes, 107.0);
    assert_eq!(mq.coverage_percent, 90.7);
    assert_eq!((mq.interruptions, mq.longest_outage_minutes), (2, 10.0));
    assert_eq!(mq.audio_only_minutes, 5.0);
    assert_eq!(
        mq.attendance_rows, 2,
        "the 1-minute drop is inside the grace"
    );
    assert_eq!(mq.head_count.as_ref().map(|h| h.count), Some(30));

    let ba = row("2290");
    assert_eq!(ba.status, Status::Absent);
    assert_eq!((ba.first_join, ba.last_leave), (None, None));
    assert_eq!((ba.connected_minutes, ba.coverage_percent), (0.0, 0.0));
    assert_eq!((ba.interruptions, ba.longest_outage_minutes), (0, 0.0));
    assert_eq!((ba.audio_only_minutes, ba.attendance_rows), (0.0, 0));
    assert_eq!((ba.expected_delegates, ba.head_count.is_none()), (20, true));

    let hq = row("2287");
    assert_eq!(hq.status, Status::Present);
    assert_eq!((hq.first_join, hq.last_leave), (Some(at(5)), Some(at(120))));
    // 08:05–09:00 and 09:03–10:00: the crash shows as a 3-minute outage.
    assert_eq!((hq.connected_minutes, hq.coverage_percent), (112.0, 94.9));
    assert_eq!((hq.interruptions, hq.longest_outage_minutes), (1, 3.0));
    assert_eq!((hq.audio_only_minutes, hq.attendance_rows), (0.0, 2));

    let tb = row("2317");
    assert_eq!(tb.status, Status::Partial);
    assert_eq!((tb.first_join, tb.last_leave), (Some(at(10)), Some(at(40))));
    assert_eq!((tb.connected_minutes, tb.coverage_percent), (30.0, 25.4));
    assert_eq!((tb.interruptions, tb.attendance_rows), (0, 1));

    // Sessions: every join and leave, with reasons.
    assert_eq!(report.sessions.len(), 8);
    let session = |id: &str| {
        report
            .sessions
            .iter()
            .find(|s| s.session == id)
            .expect("session listed")
    };
    let s6 = session("s6");
    assert_eq!(
        (s6.site.as_str(), s6.site_name.as_str()),
        ("2302", "Xã Minh Quang")
    );
    assert_eq!((s6.joined_at, s6.left_at), (at(31), Some(at(60))));
    assert_eq!(s6.reason, Some(LeaveReason::NetworkTimeout));
    assert!(s6.reconnected);
    assert_eq!(s6.minutes, 29.0);
    assert_eq!(
        (s6.client.as_str(), s6.address.as_str()),
        ("Chrome 156", "127.0.0.1")
    );
    let s3 = session("s3");
    assert_eq!(s3.reason, Some(LeaveReason::HubCrash));
    assert_eq!(s3.left_at, Some(at(60)));
    assert!(
        !session("s8").reconnected,
        "back after 10 minutes: a new row"
    );
    assert_eq!(report.events, events);
}

#[test]
fn meeting_in_progress_counts_open_sessions_until_now() {
    let mut log = Log(Vec::new());
    log.push(0, EventKind::MeetingStarted);
    log.join(0, "2269", "s1");
    log.join(30, "2266", "s2");
    let report = compute(&plan(), &log.0, at(60), &ReportRules::default());
    assert!(report.summary.in_progress);
    assert_eq!(report.summary.actual_end, None);
    let tl = &report.sites[0];
    assert_eq!(
        (tl.status, tl.connected_minutes, tl.coverage_percent),
        (Status::Present, 60.0, 100.0)
    );
    assert_eq!(tl.last_leave, None, "still connected");
    let lb = &report.sites[1];
    assert_eq!((lb.status, lb.coverage_percent), (Status::Partial, 50.0));
    assert_eq!(report.sessions[1].left_at, None);
    assert_eq!(report.sessions[1].minutes, 30.0);
}

#[test]
fn a_session_shorter_than_a_millisecond_still_splits_the_outage_around_it() {
    let mut log = Log(Vec::new());
    log.push(0, EventKind::MeetingStarted);
    // Thượng Lâm joins and drops within the same millisecond, then returns ten minutes later
    // and leaves as quickly: two visits, one interruption between them.
    log.join(10, "2269", "s1");
    log.leave(10, "2269", "s1", LeaveReason::NetworkTimeout);
    log.reconnect(20, "2269", "s2", "s1");
    log.leave(20, "2269", "s2", LeaveReason::Closed);
    // Lâm Bình's only session ended before the meeting started: it does not count.
    log.join(-5, "2266", "s3");
    log.leave(-1, "2266", "s3", LeaveReason::Closed);
    let report = compute(&plan(), &log.0, at(60), &ReportRules::default());
    let tl = &report.sites[0];
    assert_eq!(
        (
            tl.interruptions,
            tl.longest_outage_minutes,
            tl.connected_minutes
        ),
        (1, 10.0, 0.0)
    );
    assert_eq!(tl.first_join, Some(at(10)));
    assert_eq!(tl.last_leave, Some(at(20)));
    assert_ne!(tl.status, Status::Absent);
    assert_eq!(report.sites[1].status, Status::Absent);
}

#[test]
fn roll_calls_are_reported_with_their_answers_and_the_sites_that_did_not_answer() {
    let mut log = Log(Vec::new());
    log.push(0, EventKind::MeetingStarted);
    log.push(10, EventKind::RollCallStarted { roll_call: 1 });
    let answer = |count: u32| EventKind::RollCallAnswered {
        roll_call: 1,
        site: "2269".into(),
        count,
        confirmed_by: "Nguyễn Văn An".into(),
        position: "Chủ tịch".into(),
    };
    log.push(11, answer(48));
    // The site corrects its count: the last answer counts, once.
    log.push(12, answer(50));
    log.push(
        15,
        EventKind::RollCallEnded {
            roll_call: 1,
            not_answered: vec!["2266".into(), "2302".into()],
        },
    );
    log.push(30, EventKind::RollCallStarted { roll_call: 2 });
    let report = compute(&plan(), &log.0, at(60), &ReportRules::default());
    let [first, second] = &report.roll_calls[..] else {
        panic!("two roll calls: {:?}", report.roll_calls);
    };
    assert_eq!(
        (
            first.number,
            first.started_at,
            first.ended_at,
            first.delegates
        ),
        (1, at(10), Some(at(15)), 50)
    );
    assert_eq!(first.answers.len(), 1);
    assert_eq!(
        (
            first.answers[0].name.as_str(),
            first.answers[0].count,
            first.answers[0].at
        ),
        ("Xã Thượng Lâm", 50, at(12))
    );
    let missing: Vec<(&str, &str)> = first
        .not_answered
        .iter()
        .map(|s| (s.code.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        missing,
        [("2266", "Xã Lâm Bình"), ("2302", "Xã Minh Quang")]
    );
    assert_eq!((second.number, second.ended_at), (2, None), "still running");
}

#[test]
fn meeting_never_started_reports_everyone_absent() {
    let report = compute(&plan(), &[], at(-60), &ReportRules::default());
    assert_eq!(report.summary.sites_joined, 0);
    assert_eq!(report.summary.sites_joined_percent, 0.0);
    assert!(report.sites.iter().all(|r| r.status == Status::Absent));
    assert!(!report.summary.in_progress);
}
