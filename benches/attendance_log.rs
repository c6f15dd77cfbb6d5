//! Attendance log benchmark: append 100,000 events and compute a 1,000-site report.
//!
//! `cargo bench --bench attendance_log` (add `-- --quick` for a smaller run) keeps the log in
//! SQLite; `-- --database postgres://USER@HOST:PORT/DATABASE` in an empty PostgreSQL database
//! instead. Prints a table; the figures go into BENCHMARKS.md.

use std::time::Instant;

use diemcau::attendance::export::{Table, csv};
use diemcau::attendance::report::{ExpectedSite, MeetingPlan, ReportRules, compute};
use diemcau::attendance::{EventKind, LeaveReason};
use diemcau::config::VIETNAM;
use diemcau::directory::{Level, Site};
use diemcau::store::{Database, InvitedSite, NewMeeting, PostgresTarget, Store};

const SITES: usize = 1_000;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total_events: usize = if quick { 10_000 } else { 100_000 };
    let dir = std::env::temp_dir().join(format!("diemcau-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args: Vec<String> = std::env::args().collect();
    let database = match args.iter().position(|a| a == "--database") {
        Some(i) => Database::Postgres(Box::new(
            PostgresTarget::new(args.get(i + 1).expect("a URL after --database"), None, None)
                .expect("a PostgreSQL URL"),
        )),
        None => Database::Sqlite(dir.clone()),
    };
    let store = Store::connect(&database).expect("store opens");
    let recorder = store.recorder().expect("recorder starts");

    let sites: Vec<Site> = (0..SITES)
        .map(|i| Site {
            code: format!("{}", 10_000 + i),
            name: format!("Xã Thử Nghiệm {i}"),
            level: Level::Commune,
            kind: "xã".into(),
            parent_code: None,
            parent_name: None,
            delegates: 50,
        })
        .collect();
    store.import_sites(&sites).expect("import");
    let start = 1_796_086_800_000_i64;
    let meeting = store
        .create_meeting(&NewMeeting {
            title: "Benchmark".into(),
            scheduled_start: start,
            scheduled_end: start + 3 * 3_600_000,
            studio_name: "Studio".into(),
            sites: sites
                .iter()
                .map(|s| InvitedSite {
                    code: s.code.clone(),
                    expected_delegates: None,
                })
                .collect(),
            recording: None,
        })
        .expect("meeting");
    let id = diemcau_signaling::MeetingId(meeting.plan.id);

    // 1. Latency of one acknowledged append when nothing else is written (one fsync each).
    let sequential = 500;
    let t = Instant::now();
    for i in 0..sequential {
        recorder
            .append_blocking(id, start + i, EventKind::MeetingStarted)
            .expect("append");
    }
    let sequential_us = t.elapsed().as_micros() as f64 / f64::from(sequential as u32);

    // 2. Throughput with many writers at once (every site's session writing its events), as in
    // a real meeting: the recorder commits them in groups.
    let writers = 200;
    let per_writer = (total_events - sequential as usize) / writers;
    let t = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let recorder = recorder.clone();
            scope.spawn(move || {
                for j in 0..per_writer {
                    let site_index = (w * 5 + j % 5) % SITES;
                    let site = format!("{}", 10_000 + site_index);
                    let session = format!("s{site_index}-{}", j / 40);
                    let at = start + (j as i64) * 1_000;
                    let kind = match j % 40 {
                        0 => EventKind::SiteJoined {
                            site,
                            session,
                            client: "Chrome".into(),
                            address: "10.0.0.1".into(),
                        },
                        39 => EventKind::SiteLeft {
                            site,
                            session,
                            reason: LeaveReason::NetworkTimeout,
                        },
                        _ => EventKind::QualitySample {
                            site,
                            session,
                            bitrate_in_kbps: 300,
                            bitrate_out_kbps: 2500,
                            loss_permille: 3,
                            rtt_ms: 40,
                            transport: None,
                        },
                    };
                    recorder.append_blocking(id, at, kind).expect("append");
                }
            });
        }
    });
    let concurrent = writers * per_writer;
    let concurrent_secs = t.elapsed().as_secs_f64();

    // 3. Reading the log back and computing the 1,000-site report.
    let t = Instant::now();
    let events = store.events(id).expect("read");
    let read_ms = t.elapsed().as_secs_f64() * 1000.0;
    let plan = MeetingPlan {
        roster: sites
            .iter()
            .map(|s| ExpectedSite {
                code: s.code.clone(),
                name: s.name.clone(),
                expected_delegates: s.delegates,
                province: None,
            })
            .collect(),
        ..meeting.plan.clone()
    };
    let t = Instant::now();
    let report = compute(
        &plan,
        &events,
        start + 3 * 3_600_000,
        &ReportRules::default(),
    );
    let compute_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let sites_csv = csv(&report, Table::Sites, VIETNAM);
    let events_csv = csv(&report, Table::Events, VIETNAM);
    let csv_ms = t.elapsed().as_secs_f64() * 1000.0;
    let db_bytes = match &database {
        Database::Sqlite(_) => {
            let file = store.path().expect("a SQLite file");
            std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)
                + std::fs::metadata(file.with_extension("sqlite3-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0)
        }
        Database::Postgres(target) => {
            let size: i64 = target
                .client()
                .expect("connected")
                .query_one("SELECT pg_database_size(current_database())", &[])
                .expect("the size")
                .get(0);
            size as u64
        }
    };

    println!(
        "attendance log benchmark ({} events, {SITES} sites, {})",
        events.len(),
        match &database {
            Database::Sqlite(_) => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| one acknowledged append, alone (fsync each) | {sequential_us:.0} µs |");
    println!(
        "| {concurrent} appends from {writers} concurrent writers | {concurrent_secs:.2} s = {:.0} events/s |",
        concurrent as f64 / concurrent_secs
    );
    println!(
        "| read the whole log ({} events) | {read_ms:.0} ms |",
        events.len()
    );
    println!("| compute the {SITES}-site report | {compute_ms:.0} ms |");
    println!(
        "| write the sites and events CSV ({} + {} KiB) | {csv_ms:.0} ms |",
        sites_csv.len() / 1024,
        events_csv.len() / 1024
    );
    println!(
        "| database size | {:.1} MiB |",
        db_bytes as f64 / 1_048_576.0
    );
    assert_eq!(report.sites.len(), SITES);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
