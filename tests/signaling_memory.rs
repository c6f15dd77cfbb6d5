//! Oversized signalling messages do not pin the hub's memory: 40 connections each sending one
//! 8 MiB frame (refused `message_too_large`) leave the hub's resident memory within a bound,
//! because only a fixed budget of such buffers is kept and the connections over it are closed
//! (close code 1009).

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/proc_status.rs"]
mod proc_status;
#[path = "common/signaling.rs"]
mod signaling;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CONNECTIONS: usize = 40;
const FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Growth of the hub's resident memory allowed after the 40 frames: the 64 MiB budget of
/// kept buffers, twice over for the allocator's slack. Without the budget each connection
/// keeps its 8 MiB (or more) buffer: 320 MiB and up.
const GROWTH_BOUND_KIB: u64 = 160 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_oversized_frames_leave_the_hub_memory_bounded() {
    let data = std::env::temp_dir().join(format!("diemcau-ws-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (hub, addr) = hub_binary::spawn(&data);
    let hub = Stopped(hub);
    let before = resident_kib(hub.0.id());

    let huge = json!({"type": "offer", "sdp": "a".repeat(FRAME_BYTES)}).to_string();
    let mut open = Vec::new();
    let mut closed_with_1009 = 0;
    for _ in 0..CONNECTIONS {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect");
        ws.send(Message::Text(huge.clone().into()))
            .await
            .expect("send");
        let reply = signaling::next_text(&mut ws, signaling::REPLY_TIMEOUT)
            .await
            .expect("a message within 10 s");
        assert_eq!(reply["code"], "message_too_large", "{reply}");
        if reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("closed"))
        {
            let close = close_code(&mut ws).await;
            assert_eq!(close, Some(CloseCode::Size));
            closed_with_1009 += 1;
        } else {
            open.push(ws);
        }
    }
    let after = resident_kib(hub.0.id());
    eprintln!("hub resident memory: {before} KiB before, {after} KiB after");
    assert!(
        closed_with_1009 > 0,
        "connections over the budget are closed (memory from {before} KiB to {after} KiB)"
    );
    assert!(
        !open.is_empty(),
        "a connection within the budget stays open"
    );
    assert!(
        after.saturating_sub(before) < GROWTH_BOUND_KIB,
        "resident memory grew from {before} KiB to {after} KiB ({} still open)",
        open.len()
    );
    drop(hub);
    let _ = std::fs::remove_dir_all(&data);
}

/// The hub child process, killed when the test ends (or fails).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<CloseCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the hub closes within 10 s");
        match frame {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// `VmRSS` of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    proc_status::kib(&pid.to_string(), "VmRSS")
}
