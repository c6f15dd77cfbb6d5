//! The client's side of the signalling protocol: what it does with each message of the hub,
//! and how its steps wait for the hub's replies.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use super::state::{Shared, Watches, lock};

/// How long one signalling step (connect, joined, answer, ICE gathering) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Handles one text message of the hub: records what it says, applies an `answer`, answers
/// an `offer`; anything unexpected is a failure of the client.
pub async fn handle_hub_message(
    shared: &Shared,
    watches: &Watches,
    pc: &Arc<dyn PeerConnection>,
    outbox: &mpsc::UnboundedSender<Message>,
    text: &str,
) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            shared.fail(format!("hub sent invalid JSON ({e}): {text}"));
            return;
        }
    };
    shared.note(format!("<- {}", summarize(&msg)));
    let typ = msg.get("type").and_then(Value::as_str).unwrap_or("");
    let sdp = msg.get("sdp").and_then(Value::as_str).map(str::to_string);
    match typ {
        "joined" => {
            if let Some(list) = msg.get("participants").and_then(Value::as_array) {
                let mut known = lock(&shared.participants);
                for p in list {
                    record_participant(&mut known, p);
                }
            }
            watches.joined.send_replace(Some(msg.clone()));
        }
        "participant_joined" => {
            if let Some(p) = msg.get("participant") {
                record_participant(&mut lock(&shared.participants), p);
            }
        }
        "participant_left" => {
            if let Some(id) = msg.get("participant").and_then(Value::as_str) {
                lock(&shared.departed).push(id.to_string());
            }
        }
        "media_state" => {
            let state = msg.get("state").and_then(Value::as_str).map(str::to_string);
            watches.media_state.send_replace(state);
        }
        "answer" => {
            let Some(sdp) = sdp else {
                shared.fail("hub `answer` without sdp");
                return;
            };
            shared.note(format!("hub answer SDP:\n{sdp}"));
            let result = async {
                let desc = RTCSessionDescription::answer(sdp).map_err(|e| format!("parse: {e}"))?;
                pc.set_remote_description(desc)
                    .await
                    .map_err(|e| format!("set_remote_description: {e}"))
            }
            .await;
            match result {
                Ok(()) => {
                    watches.answers.send_modify(|n| *n += 1);
                }
                Err(e) => shared.fail(format!("applying the hub's answer: {e}")),
            }
        }
        "offer" => {
            let Some(sdp) = sdp else {
                shared.fail("hub `offer` without sdp");
                return;
            };
            shared.hub_offers_received.fetch_add(1, Ordering::Relaxed);
            shared.note(format!("hub offer SDP:\n{sdp}"));
            sdp.clone_into(&mut lock(&shared.last_hub_offer));
            let result = async {
                let desc = RTCSessionDescription::offer(sdp).map_err(|e| format!("parse: {e}"))?;
                pc.set_remote_description(desc)
                    .await
                    .map_err(|e| format!("set_remote_description: {e}"))?;
                let answer = pc
                    .create_answer(None)
                    .await
                    .map_err(|e| format!("create_answer: {e}"))?;
                pc.set_local_description(answer.clone())
                    .await
                    .map_err(|e| format!("set_local_description: {e}"))?;
                Ok::<String, String>(pc.local_description().await.unwrap_or(answer).sdp)
            }
            .await;
            match result {
                Ok(sdp) => {
                    shared.note(format!("our answer SDP:\n{sdp}"));
                    let v = json!({"type": "answer", "sdp": sdp});
                    shared.note(format!("-> {}", summarize(&v)));
                    if outbox.send(Message::text(v.to_string())).is_err() {
                        shared.fail("WebSocket writer is gone; could not answer the hub's offer");
                    } else {
                        shared.hub_offers_answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => shared.fail(format!("answering the hub's offer: {e}")),
            }
        }
        "error" => {
            lock(&shared.hub_errors).push(msg.clone());
        }
        "left" => {
            watches.lefts.send_modify(|n| *n += 1);
        }
        // Meeting state this client does not act on.
        "console" => {
            *lock(&shared.last_console) = Some(msg.clone());
        }
        "pong" | "floor" | "muted" | "roll_call" | "roll_call_answer" | "done" | "programme" => {}
        other => shared.fail(format!("unexpected message type {other:?}: {text}")),
    }
}

/// Runs one step of the client, failing it after [`STEP_TIMEOUT`].
pub async fn step<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {STEP_TIMEOUT:?}")),
    }
}

/// Waits (up to [`STEP_TIMEOUT`]) until `pick` returns `Some` for the watched value; fails
/// early if the hub sent an `error` in the meantime.
pub async fn wait_watch<T, R>(
    w: &watch::Sender<T>,
    shared: &Shared,
    what: &str,
    pick: impl Fn(&T) -> Option<R>,
) -> Result<R, String> {
    let mut rx = w.subscribe();
    let errors_before = lock(&shared.hub_errors).len();
    let res = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            if let Some(r) = pick(&rx.borrow_and_update()) {
                return Ok(r);
            }
            if let Some(e) = lock(&shared.hub_errors).get(errors_before) {
                return Err(format!(
                    "hub replied with an error while waiting for {what}: {e}"
                ));
            }
            // Wake on the watched value, and poll now and then for hub errors.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    })
    .await;
    match res {
        Ok(r) => r,
        Err(_) => Err(format!("no {what} within {STEP_TIMEOUT:?}")),
    }
}

/// A one-line summary of a signalling message (SDP shortened to its length and m-lines).
pub fn summarize(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(sdp) = v.get("sdp").and_then(Value::as_str) {
        let mlines: Vec<&str> = sdp
            .lines()
            .filter(|l| {
                l.starts_with("m=")
                    || l.starts_with("a=msid:")
                    || l.starts_with("a=send")
                    || l.starts_with("a=recv")
                    || l.starts_with("a=inactive")
            })
            .collect();
        let short = format!("<{} bytes; {}>", sdp.len(), mlines.join(" | "));
        if let Some(obj) = v.as_object_mut() {
            obj.insert("sdp".into(), Value::String(short));
        }
    }
    v.to_string()
}

fn record_participant(known: &mut BTreeMap<String, (String, String)>, p: &Value) {
    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let id = field("id");
    if !id.is_empty() {
        known.insert(id, (field("name"), field("role")));
    }
}
