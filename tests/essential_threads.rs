//! A media worker of the real hub binary fails in its own code in the middle of a meeting
//! (a panic injected on SIGUSR1, built with the `testkit` feature): the hub stops at once
//! with exit status 70 and says why in its log, rather than run on with a worker that no
//! longer carries anyone's media; started again on the same data directory, as systemd
//! does, it closes the sessions the fault cut off as after a crash, and the sites join
//! again.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/signaling.rs"]
mod signaling;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

/// The hub binary with its log on a pipe (stderr), once it listens.
fn spawn_logged(data_dir: &std::path::Path) -> (Child, SocketAddr) {
    hub_binary::add_test_organizer(data_dir);
    let mut child = hub_binary::command(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hub binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the hub prints its address")
            .expect("readable stdout");
        if let Some(url) = line.strip_prefix("diemcau: listening on http://") {
            break url.trim().parse().expect("an address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_worker_that_fails_stops_the_hub_for_its_supervisor_to_restart() {
    let data = std::env::temp_dir().join(format!("diemcau-essential-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut hub, addr) = spawn_logged(&data);
    let m = http::meeting(
        addr,
        "Họp",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut sockets = Vec::new();
    for site in ["2269", "2266"] {
        sockets.push(signaling::join(addr, &m.code(site), Some(m.id)).await);
    }

    let status = Command::new("kill")
        .args(["-USR1", &hub.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut stderr = hub.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let mut exit = None;
    for _ in 0..200 {
        exit = hub.try_wait().expect("wait");
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(exit) = exit else {
        hub.kill().expect("stop");
        let _ = hub.wait();
        panic!("the hub ran on for 10 s with a failed media worker");
    };
    let log = log.join().expect("the log read");
    assert_eq!(
        exit.code(),
        Some(diemcau::essential::FAULT_EXIT_STATUS),
        "{exit}; log: {log}"
    );
    assert!(
        log.contains("an essential thread failed (a fault injected into media worker 0)")
            && log.contains("media-0"),
        "the log says which thread failed and why: {log}"
    );
    for ws in &mut sockets {
        // The process is gone: each page's connection ends, and the page joins again.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        }
    }

    let (mut hub, addr) = hub_binary::spawn(&data);
    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let reasons: Vec<&str> = report["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["reason"].as_str().unwrap_or("open"))
        .collect();
    assert_eq!(reasons, ["hub_crash", "hub_crash"], "{report}");
    let again = signaling::join(addr, &m.code("2269"), Some(m.id)).await;
    drop(again);
    hub.kill().expect("stop");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&data);
}
