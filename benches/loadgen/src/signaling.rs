//! One participant's signalling session over the hub's WebSocket (docs/protocol.md): join,
//! send the first offer, apply the hub's answer, answer every hub offer, leave at the end.
//! Everything that goes wrong is recorded with the stage it happened at, never dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::tungstenite::Message;

use crate::engine::{Engine, PeerSpec};
use crate::http::HubUrl;
use crate::media::Clock;
use crate::setup::JoinRequest;

/// Where and why a participant's signalling failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum SignallingFailure {
    /// The WebSocket could not be opened, or closed before the session was set up.
    WebSocket { message: String },
    /// The hub refused the `join` with this error code.
    JoinRefused { code: String, message: String },
    /// The hub refused our offer or answer.
    HubError { code: String, message: String },
    /// Our str0m refused the hub's SDP (or the engine failed).
    Sdp { message: String },
    /// No `joined` or no `answer` in time.
    Timeout { waiting_for: String },
}

impl SignallingFailure {
    /// A short reason for tables: `signalling:code_unknown`, `websocket`...
    pub fn reason(&self) -> String {
        match self {
            SignallingFailure::WebSocket { .. } => "signalling:websocket".to_owned(),
            SignallingFailure::JoinRefused { code, .. } => format!("signalling:{code}"),
            SignallingFailure::HubError { code, .. } => format!("signalling:{code}"),
            SignallingFailure::Sdp { .. } => "signalling:sdp".to_owned(),
            SignallingFailure::Timeout { waiting_for } => {
                format!("signalling:timeout_{waiting_for}")
            }
        }
    }
}

/// One participant's signalling, as it went. Times are nanoseconds of the run's clock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignallingRecord {
    pub id: u32,
    pub started_ns: Option<u64>,
    pub joined_ns: Option<u64>,
    /// The hub answered our offer and str0m took the answer.
    pub answered_ns: Option<u64>,
    /// The hub said `media_state: connected`.
    pub hub_connected_ns: Option<u64>,
    pub participant: Option<String>,
    pub offers_answered: u32,
    pub failure: Option<SignallingFailure>,
    /// Error codes the hub sent after the session was set up (for example an answer refused
    /// as `message_too_large`).
    pub later_errors: Vec<String>,
    /// The hub closed the WebSocket while the run went on.
    pub closed_by_hub: bool,
    /// The hub's last `reception` message: `Some(true)` when it put this site on audio only.
    pub audio_only: Option<bool>,
    /// `reception` messages received.
    pub reception_changes: u32,
    /// The last `console` message (the chair's view of every site), for the studio.
    #[serde(skip)]
    pub last_console: Option<Value>,
}

/// Every participant's record, shared between the sessions and the scenario.
#[derive(Debug, Default)]
pub struct Records {
    inner: Mutex<HashMap<u32, SignallingRecord>>,
}

impl Records {
    pub fn update(&self, id: u32, f: impl FnOnce(&mut SignallingRecord)) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let record = map.entry(id).or_insert_with(|| SignallingRecord {
            id,
            ..SignallingRecord::default()
        });
        f(record);
    }

    pub fn snapshot(&self) -> Vec<SignallingRecord> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<SignallingRecord> = map.values().cloned().collect();
        all.sort_by_key(|r| r.id);
        all
    }

    pub fn get(&self, id: u32) -> Option<SignallingRecord> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id).cloned()
    }
}

/// Everything a session needs.
#[derive(Debug, Clone)]
pub struct Session {
    pub hub: HubUrl,
    pub join: JoinRequest,
    pub spec: PeerSpec,
    pub engine: Arc<Engine>,
    pub records: Arc<Records>,
    pub clock: Clock,
    /// Most time from connecting to the hub's answer.
    pub setup_timeout: Duration,
    /// Messages sent once joined, after the offer (the studio's `tiles` of a wall through a
    /// tree).
    pub after_join: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Joining,
    Offering,
    Ready,
}

impl Session {
    /// Runs the session until `stop` turns true (then leaves) or it fails.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let id = self.spec.id;
        let clock = self.clock;
        let records = self.records.clone();
        let now_ns = move || clock.ns(std::time::Instant::now());
        records.update(id, |r| r.started_ns = Some(now_ns()));
        let fail = |failure: SignallingFailure| {
            records.update(id, |r| {
                if r.failure.is_none() {
                    r.failure = Some(failure);
                }
            });
        };
        let url = self.hub.websocket();
        let mut request =
            match tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            ) {
                Ok(request) => request,
                Err(e) => {
                    return fail(SignallingFailure::WebSocket {
                        message: e.to_string(),
                    });
                }
            };
        // The studio's code needs an organizer's session on the upgrade.
        if let Some(cookie) = self.join.cookie().and_then(|c| c.parse().ok()) {
            request.headers_mut().insert("cookie", cookie);
        }
        let connect = tokio::time::timeout(
            self.setup_timeout,
            tokio_tungstenite::connect_async(request),
        );
        let ws = match connect.await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                return fail(SignallingFailure::WebSocket {
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return fail(SignallingFailure::Timeout {
                    waiting_for: "websocket".to_owned(),
                });
            }
        };
        let (mut write, mut read) = ws.split();
        let join = self.join.message().to_string();
        if let Err(e) = write.send(Message::text(join)).await {
            return fail(SignallingFailure::WebSocket {
                message: e.to_string(),
            });
        }
        let mut stage = Stage::Joining;
        let deadline = TokioInstant::now() + self.setup_timeout;
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        ping.tick().await;
        loop {
            let setup_pending = stage != Stage::Ready;
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        let _ = write.send(Message::text(json!({"type": "leave"}).to_string())).await;
                        let _ = tokio::time::timeout(Duration::from_secs(2), write.close()).await;
                        self.engine.close(id);
                        return;
                    }
                }
                _ = ping.tick() => {
                    let _ = write.send(Message::text(json!({"type": "ping"}).to_string())).await;
                }
                _ = tokio::time::sleep_until(deadline), if setup_pending => {
                    let waiting_for = if stage == Stage::Joining { "joined" } else { "answer" };
                    fail(SignallingFailure::Timeout { waiting_for: waiting_for.to_owned() });
                    let _ = write.close().await;
                    self.engine.close(id);
                    return;
                }
                message = read.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            if stage == Stage::Ready {
                                records.update(id, |r| r.closed_by_hub = true);
                            } else {
                                fail(SignallingFailure::WebSocket {
                                    message: "closed by the hub during setup".to_owned(),
                                });
                            }
                            self.engine.close(id);
                            return;
                        }
                        Some(Ok(_)) => continue,
                    };
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                        records.update(id, |r| r.later_errors.push("unreadable_message".to_owned()));
                        continue;
                    };
                    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
                    let sdp = value.get("sdp").and_then(Value::as_str).map(str::to_owned);
                    match (kind, stage) {
                        ("joined", Stage::Joining) => {
                            let participant = value
                                .pointer("/participant/id")
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            records.update(id, |r| {
                                r.joined_ns = Some(now_ns());
                                r.participant = participant;
                            });
                            let offer = match self.engine.create(self.spec.clone()).await {
                                Ok(offer) => offer,
                                Err(e) => {
                                    fail(SignallingFailure::Sdp { message: e.to_string() });
                                    let _ = write.close().await;
                                    return;
                                }
                            };
                            let message = json!({"type": "offer", "sdp": offer}).to_string();
                            if let Err(e) = write.send(Message::text(message)).await {
                                fail(SignallingFailure::WebSocket { message: e.to_string() });
                                self.engine.close(id);
                                return;
                            }
                            for message in &self.after_join {
                                let _ = write.send(Message::text(message.to_string())).await;
                            }
                            stage = Stage::Offering;
                        }
                        ("answer", Stage::Offering) => {
                            let result = self
                                .engine
                                .accept_answer(id, sdp.unwrap_or_default())
                                .await;
                            if let Err(e) = result {
                                fail(SignallingFailure::Sdp { message: e.to_string() });
                                let _ = write.close().await;
                                self.engine.close(id);
                                return;
                            }
                            records.update(id, |r| r.answered_ns = Some(now_ns()));
                            stage = Stage::Ready;
                        }
                        ("offer", Stage::Ready) => {
                            match self.engine.accept_offer(id, sdp.unwrap_or_default()).await {
                                Ok(answer) => {
                                    let message = json!({"type": "answer", "sdp": answer}).to_string();
                                    let _ = write.send(Message::text(message)).await;
                                    records.update(id, |r| r.offers_answered += 1);
                                }
                                Err(e) => {
                                    records.update(id, |r| {
                                        r.later_errors.push(format!("our_sdp: {e}"));
                                    });
                                }
                            }
                        }
                        ("media_state", _)
                            if value.get("state").and_then(Value::as_str) == Some("connected") =>
                        {
                            records.update(id, |r| {
                                r.hub_connected_ns.get_or_insert_with(now_ns);
                            });
                        }
                        ("reception", _) => {
                            let audio_only = value.get("audio_only").and_then(Value::as_bool);
                            records.update(id, |r| {
                                r.audio_only = audio_only;
                                r.reception_changes += 1;
                            });
                        }
                        ("console", _) => {
                            records.update(id, |r| r.last_console = Some(value));
                        }
                        ("error", _) => {
                            let code = value
                                .get("code")
                                .and_then(Value::as_str)
                                .unwrap_or("unknown")
                                .to_owned();
                            let message = value
                                .get("message")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned();
                            match stage {
                                Stage::Joining => {
                                    fail(SignallingFailure::JoinRefused { code, message });
                                    let _ = write.close().await;
                                    return;
                                }
                                Stage::Offering => {
                                    fail(SignallingFailure::HubError { code, message });
                                    let _ = write.close().await;
                                    self.engine.close(id);
                                    return;
                                }
                                Stage::Ready => {
                                    let replaced = code == "replaced";
                                    records.update(id, |r| r.later_errors.push(code));
                                    if replaced {
                                        self.engine.close(id);
                                        return;
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}
