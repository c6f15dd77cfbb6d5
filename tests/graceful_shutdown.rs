//! On SIGTERM the hub tells every site, records every session as ended by shutdown, and exits.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn spawn_hub(data: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    http::add_test_organizer(data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--media-bind",
            "127.0.0.1",
            "--media-port",
            "0",
        ])
        .args([
            "--announce-ip",
            "127.0.0.1",
            "--workers",
            "1",
            "--plain-http",
        ])
        .args(["--seed-sites", "false", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("hub binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines.next().expect("address line").expect("stdout");
        if let Some(url) = line.strip_prefix("diemcau: listening on http://") {
            break url.trim().parse().expect("address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_every_site_and_records_the_shutdown() {
    let data = std::env::temp_dir().join(format!("diemcau-term-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (mut hub, addr) = spawn_hub(&data);
    let m = http::meeting(
        addr,
        "Họp",
        &[("2269", "Xã Thượng Lâm"), ("2266", "Xã Lâm Bình")],
        true,
    )
    .await;
    let mut sockets = Vec::new();
    for site in ["2269", "2266"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect");
        ws.send(Message::Text(
            json!({"type": "join", "code": m.code(site)})
                .to_string()
                .into(),
        ))
        .await
        .expect("join");
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

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

    let (mut hub, addr) = spawn_hub(&data);
    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let reasons: Vec<&str> = report["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["reason"].as_str().unwrap_or("open"))
        .collect();
    assert_eq!(reasons, ["hub_shutdown", "hub_shutdown"], "{report}");
    hub.kill().expect("stop");
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&data);
}
