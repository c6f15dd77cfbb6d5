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

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_worker_that_fails_stops_the_hub_for_its_supervisor_to_restart() {
    let data = std::env::temp_dir().join(format!("diemcau-essential-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut hub, addr) = hub_binary::spawn_logged(&data);
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
    assert_eq!(
        http::session_reasons(addr, m.id).await,
        ["hub_crash", "hub_crash"]
    );
    let again = signaling::join(addr, &m.code("2269"), Some(m.id)).await;
    drop(again);
    hub.kill().expect("stop");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&data);
}
