//! The same load on Janus (`--janus ws://HOST:PORT`): the studio publishes into a VideoRoom and
//! every site subscribes to it, over Janus's WebSocket API (`janus-protocol`), so that the run
//! measures Janus as it measures the hub: the same engine, stream and counting, Janus's own CPU
//! and memory from /proc (`--hub-pid`).
//!
//! Each participant has its own Janus session and VideoRoom handle. The studio joins room
//! [`ROOM`] as its publisher and sends its offer with `configure`; a site joins as a subscriber
//! of the studio's feed, answers Janus's offer, and sends `start`. The room is configured in
//! `benches/janus/janus.plugin.videoroom.jcfg` (VP8 and Opus, no bitrate cap); the benchmark
//! script starts Janus with that configuration on loopback.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::engine::{Engine, PeerSpec, STUDIO};
use crate::media::Clock;
use crate::signaling::{Records, SignallingFailure};

/// The VideoRoom room the configuration in `benches/janus` creates.
pub const ROOM: u64 = 1234;
/// Janus drops a session it has not heard from in 60 s.
const KEEPALIVE: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One participant's signalling with Janus: the studio publishes, a site subscribes.
#[derive(Debug)]
pub struct JanusSession {
    pub url: String,
    pub spec: PeerSpec,
    pub engine: Arc<Engine>,
    pub records: Arc<Records>,
    pub clock: Clock,
    pub setup_timeout: Duration,
    /// The studio's publisher id, once it has joined the room.
    pub feed: watch::Receiver<Option<u64>>,
    /// Where the studio says its publisher id.
    pub publish_feed: Option<watch::Sender<Option<u64>>>,
}

impl JanusSession {
    /// Joins, negotiates, then keeps the session alive until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let id = self.spec.id;
        let clock = self.clock;
        let now_ns = move || clock.ns(std::time::Instant::now());
        self.records.update(id, |r| r.started_ns = Some(now_ns()));
        let setup = tokio::time::timeout(self.setup_timeout, self.set_up());
        let (mut ws, session) = match setup.await {
            Ok(Ok(done)) => done,
            Ok(Err(failure)) => return self.fail(failure),
            Err(_) => {
                return self.fail(SignallingFailure::Timeout {
                    waiting_for: "janus_setup".to_owned(),
                });
            }
        };
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = keepalive.tick() => {
                    let message = json!({"janus": "keepalive", "session_id": session,
                        "transaction": "keepalive"});
                    if ws.send(Message::text(message.to_string())).await.is_err() {
                        self.records.update(id, |r| r.closed_by_hub = true);
                        break;
                    }
                }
                message = ws.next() => match message {
                    Some(Ok(_)) => {}
                    _ => {
                        self.records.update(id, |r| r.closed_by_hub = true);
                        break;
                    }
                },
            }
        }
        let destroy = json!({"janus": "destroy", "session_id": session, "transaction": "bye"});
        let _ = ws.send(Message::text(destroy.to_string())).await;
        let _ = ws.close(None).await;
        self.engine.close(id);
    }

    fn fail(&self, failure: SignallingFailure) {
        self.records.update(self.spec.id, |r| {
            if r.failure.is_none() {
                r.failure = Some(failure);
            }
        });
    }

    /// Connects, joins the room and completes the offer/answer: the socket and the session id.
    async fn set_up(&mut self) -> Result<(Socket, u64), SignallingFailure> {
        let websocket = |e: &dyn std::fmt::Display| SignallingFailure::WebSocket {
            message: e.to_string(),
        };
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                self.url.as_str(),
            )
            .map_err(|e| websocket(&e))?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("janus-protocol"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| websocket(&e))?;
        let mut next = 0u64;
        let created = call(&mut ws, &mut next, json!({"janus": "create"})).await?;
        let session = data_id(&created)?;
        let attached = call(
            &mut ws,
            &mut next,
            json!({"janus": "attach", "session_id": session,
                "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        let handle = data_id(&attached)?;
        let message = |body: Value, jsep: Option<Value>| match jsep {
            Some(jsep) => json!({"janus": "message", "session_id": session,
                "handle_id": handle, "body": body, "jsep": jsep}),
            None => json!({"janus": "message", "session_id": session, "handle_id": handle,
                "body": body}),
        };
        let id = self.spec.id;
        let clock = self.clock;
        let sdp_error = |e: crate::engine::EngineError| SignallingFailure::Sdp {
            message: e.to_string(),
        };
        if id == STUDIO {
            let joined = call(
                &mut ws,
                &mut next,
                message(
                    json!({"request": "join", "ptype": "publisher", "room": ROOM}),
                    None,
                ),
            )
            .await?;
            let feed = joined
                .pointer("/plugindata/data/id")
                .and_then(Value::as_u64)
                .ok_or_else(|| janus_error(&joined, "the publisher's id in the joined event"))?;
            self.records.update(id, |r| {
                r.joined_ns = Some(clock.ns(std::time::Instant::now()))
            });
            let offer = self
                .engine
                .create(self.spec.clone())
                .await
                .map_err(sdp_error)?;
            let configured = call(
                &mut ws,
                &mut next,
                message(
                    json!({"request": "configure", "audio": true, "video": true}),
                    Some(json!({"type": "offer", "sdp": offer})),
                ),
            )
            .await?;
            let answer = jsep_sdp(&configured, "answer")?;
            self.engine
                .accept_answer(id, answer)
                .await
                .map_err(sdp_error)?;
            if let Some(publish) = &self.publish_feed {
                let _ = publish.send(Some(feed));
            }
        } else {
            let feed = loop {
                if let Some(feed) = *self.feed.borrow() {
                    break feed;
                }
                self.feed
                    .changed()
                    .await
                    .map_err(|_| SignallingFailure::Timeout {
                        waiting_for: "studio_feed".to_owned(),
                    })?;
            };
            let attached = call(
                &mut ws,
                &mut next,
                message(
                    json!({"request": "join", "ptype": "subscriber", "room": ROOM,
                        "streams": [{"feed": feed}]}),
                    None,
                ),
            )
            .await?;
            self.records.update(id, |r| {
                r.joined_ns = Some(clock.ns(std::time::Instant::now()))
            });
            let offer = jsep_sdp(&attached, "offer")?;
            self.engine
                .create(self.spec.clone())
                .await
                .map_err(sdp_error)?;
            let answer = self
                .engine
                .accept_offer(id, offer)
                .await
                .map_err(sdp_error)?;
            call(
                &mut ws,
                &mut next,
                message(
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": answer})),
                ),
            )
            .await?;
        }
        self.records.update(id, |r| {
            r.answered_ns = Some(clock.ns(std::time::Instant::now()));
            r.offers_answered += 1;
        });
        // Our candidates are in the SDP: no more to trickle.
        let trickle = json!({"janus": "trickle", "session_id": session, "handle_id": handle,
            "transaction": "trickle", "candidate": {"completed": true}});
        ws.send(Message::text(trickle.to_string()))
            .await
            .map_err(|e| websocket(&e))?;
        Ok((ws, session))
    }
}

/// Sends `request` with a new transaction and returns Janus's reply to it: `success` for a
/// session or handle request, the plugin's `event` for a message (after its `ack`).
async fn call(
    ws: &mut Socket,
    next: &mut u64,
    mut request: Value,
) -> Result<Value, SignallingFailure> {
    *next += 1;
    let transaction = format!("t{next}");
    let what = request.get("janus").cloned().unwrap_or_default();
    if let Some(fields) = request.as_object_mut() {
        fields.insert("transaction".to_owned(), json!(transaction));
    }
    ws.send(Message::text(request.to_string()))
        .await
        .map_err(|e| SignallingFailure::WebSocket {
            message: e.to_string(),
        })?;
    let deadline = TokioInstant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| SignallingFailure::Timeout {
                waiting_for: format!("janus_{}", what.as_str().unwrap_or("reply")),
            })?;
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(SignallingFailure::WebSocket {
                    message: e.to_string(),
                });
            }
            None => {
                return Err(SignallingFailure::WebSocket {
                    message: "janus closed the connection".to_owned(),
                });
            }
        };
        let Ok(reply) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if reply.get("transaction").and_then(Value::as_str) != Some(transaction.as_str()) {
            continue;
        }
        match reply.get("janus").and_then(Value::as_str) {
            Some("ack") => continue,
            Some("error") => return Err(janus_error(&reply, "an answer")),
            _ => {}
        }
        if let Some(error) = reply
            .pointer("/plugindata/data/error")
            .and_then(Value::as_str)
        {
            return Err(SignallingFailure::HubError {
                code: "janus_videoroom".to_owned(),
                message: error.to_owned(),
            });
        }
        return Ok(reply);
    }
}

fn data_id(reply: &Value) -> Result<u64, SignallingFailure> {
    reply
        .pointer("/data/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| janus_error(reply, "an id"))
}

fn jsep_sdp(reply: &Value, kind: &str) -> Result<String, SignallingFailure> {
    let field = |name: &str| {
        reply
            .pointer(&format!("/jsep/{name}"))
            .and_then(Value::as_str)
    };
    match (field("type"), field("sdp")) {
        (Some(t), Some(sdp)) if t == kind => Ok(sdp.to_owned()),
        _ => Err(janus_error(reply, &format!("an SDP {kind}"))),
    }
}

fn janus_error(reply: &Value, wanted: &str) -> SignallingFailure {
    SignallingFailure::HubError {
        code: "janus".to_owned(),
        message: format!("wanted {wanted}, got {reply}"),
    }
}
