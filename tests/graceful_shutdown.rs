//! On SIGTERM the hub tells every site, records every session as ended by shutdown, and exits.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/signaling.rs"]
mod signaling;

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_every_site_and_records_the_shutdown() {
    let data = std::env::temp_dir().join(format!("diemcau-term-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut hub, addr) = hub_binary::spawn(&data);
    let m = http::meeting(
        addr,
        "Họp",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut sockets = Vec::new();
    for site in ["2269", "2266"] {
        sockets.push(signaling::join(addr, &m.code(site), None).await);
    }

    let status = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for ws in &mut sockets {
        let mut told = false;
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await
        {
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if v["type"] == "error"
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("shutting down"))
                {
                    told = true;
                }
            }
        }
        assert!(told, "every site is told the hub is stopping");
    }
    let exit = tokio::task::spawn_blocking(move || hub.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "clean exit: {exit}");

    let (mut hub, addr) = hub_binary::spawn(&data);
    assert_eq!(
        http::session_reasons(addr, m.id).await,
        ["hub_shutdown", "hub_shutdown"]
    );
    hub.kill().expect("stop");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&data);
}
