//! `diemcau backup` taken from the real hub binary while sites join and leave: the copy passes
//! SQLite's integrity check, its log is exactly the live log up to the backup's moment (so its
//! report is the live report of that moment), and `diemcau restore` puts it in place, refusing
//! while a hub runs on the directory.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/signaling.rs"]
mod signaling;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use diemcau::attendance::Event;
use diemcau_signaling::MeetingId;
use serde_json::json;

const SITES: &[(&str, &str)] = &[
    ("2269", "Xã Thượng Lâm"),
    ("2266", "Xã Lâm Bình"),
    ("2302", "Xã Minh Quang"),
    ("2290", "Xã Bình An"),
];

fn diemcau(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("the diemcau binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn events_in(data_dir: &Path, meeting: i64) -> Vec<Event> {
    let store = diemcau::store::Store::open(data_dir).expect("the database opens");
    store.events(MeetingId(meeting)).expect("the log reads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_a_meeting_is_consistent_and_restores() {
    let root = std::env::temp_dir().join(format!("diemcau-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (live, restored) = (root.join("live"), root.join("restored"));
    let (mut hub, addr) = hub_binary::spawn(&live);
    let m = http::meeting(addr, "Hội nghị sao lưu", SITES, true).await;

    // Sites keep joining, declaring and leaving while the backup runs.
    let busy = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicUsize::new(0));
    let churn = {
        let (busy, rounds, m) = (busy.clone(), rounds.clone(), m.clone());
        tokio::spawn(async move {
            while busy.load(Ordering::SeqCst) {
                for (code, _) in SITES {
                    let mut site = signaling::join(addr, &m.code(code), Some(m.id)).await;
                    signaling::send(
                        &mut site,
                        &json!({"type": "head_count", "count": 30,
                            "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch"}),
                    )
                    .await;
                    signaling::next_of_type(&mut site, "head_count_recorded").await;
                    signaling::send(&mut site, &json!({"type": "leave"})).await;
                    signaling::next_of_type(&mut site, "left").await;
                }
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while rounds.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let copy = root.join("sao-luu.sqlite3");
    let copy_arg = copy.to_str().expect("a UTF-8 path").to_owned();
    let live_dir = live.clone();
    let output = tokio::task::spawn_blocking(move || diemcau(&["backup", &copy_arg], &live_dir))
        .await
        .expect("backup ran");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("integrity check ok"),
        "{}",
        text(&output)
    );
    // The joins went on after the copy.
    let after = rounds.load(Ordering::SeqCst) + 1;
    while rounds.load(Ordering::SeqCst) < after {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    busy.store(false, Ordering::SeqCst);
    churn.await.expect("the sites' task");

    // The copy stands alone and is whole.
    let db =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the copy opens");
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    drop(db);

    // A restore is refused while a hub runs on the directory, and the database is untouched.
    let copy_arg = copy.to_str().expect("a UTF-8 path");
    let refused = diemcau(&["restore", copy_arg], &live);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another diemcau hub is running"),
        "{}",
        text(&refused)
    );

    // The copy's log is the live log up to the backup's moment: same events, same order.
    let restored_output = diemcau(&["restore", copy_arg], &restored);
    assert!(
        restored_output.status.success(),
        "{}",
        text(&restored_output)
    );
    let live_events = events_in(&live, m.id);
    let copied = events_in(&restored, m.id);
    assert!(
        copied.len() > 2 && copied.len() < live_events.len(),
        "the copy holds some of the meeting, not all: {} of {}",
        copied.len(),
        live_events.len()
    );
    assert_eq!(
        copied[..],
        live_events[..copied.len()],
        "a prefix of the live log"
    );

    // The same report as the live one computed at that point of the log.
    let view = diemcau::store::Store::open(&restored)
        .expect("store")
        .meeting(MeetingId(m.id))
        .expect("the meeting is in the copy");
    let now = diemcau::store::now_millis();
    let rules = diemcau::attendance::ReportRules::default();
    let from_copy = diemcau::attendance::report::compute(&view.plan, &copied, now, &rules);
    let from_live =
        diemcau::attendance::report::compute(&view.plan, &live_events[..copied.len()], now, &rules);
    assert_eq!(from_copy, from_live);

    hub.kill().expect("the hub stops");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&root);
}
