//! The chair's powers over signalling: only the studio may give the floor, mute, run a roll
//! call or call a site; sites asking for it are refused with `forbidden`. Floor requests queue,
//! roll-call answers reach the chair and the log, standby pages can be called, and the console
//! shows each site's state.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use std::net::SocketAddr;

use serde_json::{Value, json};
use signaling::{REPLY_TIMEOUT, Socket};

struct Client {
    socket: Socket,
    /// Messages read while waiting for another type.
    seen: Vec<Value>,
}

impl Client {
    async fn connect(addr: SocketAddr, login: Option<&http::Login>) -> Client {
        Client {
            socket: signaling::connect(http::ws_request(addr, login)).await,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, message: Value) {
        signaling::send(&mut self.socket, &message).await;
    }

    /// The next message of type `kind` (others are kept in `seen`).
    async fn expect(&mut self, kind: &str) -> Value {
        if let Some(i) = self.seen.iter().position(|m| m["type"] == kind) {
            return self.seen.remove(i);
        }
        loop {
            let value = signaling::next_message_within(&mut self.socket, REPLY_TIMEOUT)
                .await
                .unwrap_or_else(|| {
                    panic!("no `{kind}` within {REPLY_TIMEOUT:?}; saw {:?}", self.seen)
                });
            if value["type"] == kind {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// The next message of type `kind` for which `accept` holds (earlier ones are dropped);
    /// panics unless one comes within [`REPLY_TIMEOUT`] in all, as messages such as the
    /// console keep coming.
    async fn expect_where(&mut self, kind: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let accepted = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                let m = self.expect(kind).await;
                if accept(&m) {
                    return m;
                }
            }
        })
        .await;
        accepted.unwrap_or_else(|_| panic!("no `{kind}` as expected within {REPLY_TIMEOUT:?}"))
    }

    async fn request(&mut self, message: Value, reply: &str) -> Value {
        self.send(message).await;
        self.expect(reply).await
    }

    async fn refused(&mut self, message: Value, code: &str) {
        let error = self.request(message.clone(), "error").await;
        assert_eq!(error["code"], code, "{message} → {error}");
    }
}

/// Joins with `code`; the studio's code needs an organizer's login with it.
async fn join(addr: SocketAddr, meeting: i64, code: &str, login: Option<&http::Login>) -> Client {
    let mut c = Client::connect(addr, login).await;
    let joined = c
        .request(
            json!({"type": "join", "code": code, "meeting": meeting}),
            "joined",
        )
        .await;
    assert_eq!(joined["type"], "joined");
    c
}

fn site_entry<'a>(console: &'a Value, code: &str) -> &'a Value {
    console["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["site"] == code)
        .expect("every expected site is on the console")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chair_runs_the_meeting() {
    let (hub, m) = http::hub_with_meeting(
        "Họp điều hành",
        &[
            ("2269", "Xã Thượng Lâm"),
            ("2266", "Xã Lâm Bình"),
            ("2302", "Xã Minh Quang"),
        ],
        true,
    )
    .await;
    let addr = hub.http_addr();

    let organizer = http::organizer(addr).await;
    let mut chair = join(addr, m.id, &m.studio_code, Some(&organizer)).await;
    let console = chair.expect("console").await;
    for code in ["2269", "2266", "2302"] {
        assert_eq!(site_entry(&console, code)["state"], "not_joined");
    }

    // A site page opened in a browser where an organizer is logged in is still only a site.
    let mut a = join(addr, m.id, &m.code("2269"), Some(&organizer)).await;
    let mut b = join(addr, m.id, &m.code("2266"), None).await;
    // Minh Quang's page is open but has not joined.
    let mut c = Client::connect(addr, None).await;
    let standby = c
        .request(
            json!({"type": "standby", "code": m.code("2302"), "meeting": m.id}),
            "standby_accepted",
        )
        .await;
    assert_eq!(standby["name"], "Xã Minh Quang");

    // Every chair action from a site is refused, whatever its target.
    for action in [
        json!({"type": "give_floor", "site": "2269"}),
        json!({"type": "give_floor", "site": "9999"}),
        json!({"type": "take_floor"}),
        json!({"type": "mute", "site": "2266", "muted": true}),
        json!({"type": "mute", "site": "9999", "muted": true}),
        json!({"type": "mute_all", "muted": true}),
        json!({"type": "start_roll_call"}),
        json!({"type": "end_roll_call"}),
        json!({"type": "call_site", "site": "2302"}),
    ] {
        a.refused(action, "forbidden").await;
    }
    // And site requests from the chair.
    chair
        .refused(json!({"type": "request_floor"}), "forbidden")
        .await;
    chair
        .refused(
            json!({"type": "head_count", "count": 1, "confirmed_by": "A", "position": "B"}),
            "forbidden",
        )
        .await;
    // A page on standby has not joined: it may not act either.
    c.refused(json!({"type": "request_floor"}), "not_joined")
        .await;

    // Floor: requests queue at the chair; the chair gives the floor and takes it back.
    a.request(json!({"type": "request_floor"}), "done").await;
    b.request(json!({"type": "request_floor"}), "done").await;
    let floor = chair
        .expect_where("floor", |f| {
            f["queue"].as_array().is_some_and(|q| q.len() == 2)
        })
        .await;
    let queued: Vec<&str> = floor["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|s| s["site"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(queued, ["2269", "2266"]);
    chair
        .request(json!({"type": "give_floor", "site": "2266"}), "done")
        .await;
    let floor = b.expect_where("floor", |f| !f["holder"].is_null()).await;
    assert_eq!(floor["holder"]["site"], "2266", "{floor}");
    let queued: Vec<&str> = floor["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|s| s["site"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        queued,
        ["2269"],
        "the site given the floor leaves the queue"
    );
    chair
        .refused(
            json!({"type": "give_floor", "site": "2302"}),
            "site_unavailable",
        )
        .await;

    // Muting reaches the muted site.
    chair
        .request(
            json!({"type": "mute", "site": "2269", "muted": true}),
            "done",
        )
        .await;
    assert_eq!(a.expect("muted").await["muted"], true);
    chair
        .request(json!({"type": "mute_all", "muted": false}), "done")
        .await;
    assert_eq!(a.expect("muted").await["muted"], false);

    // Roll call: every site is asked; answers reach the chair.
    chair
        .request(json!({"type": "start_roll_call"}), "done")
        .await;
    let asked = a.expect("roll_call").await;
    assert_eq!(asked["active"], true);
    let number = asked["roll_call"].clone();
    assert_eq!(b.expect("roll_call").await["roll_call"], number);
    let recorded = a
        .request(
            json!({"type": "answer_roll_call", "roll_call": number, "count": 52,
            "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}),
            "roll_call_answer_recorded",
        )
        .await;
    assert_eq!(recorded["roll_call"], number);
    let answer = chair.expect("roll_call_answer").await;
    assert_eq!(
        (answer["site"].as_str(), answer["count"].as_u64()),
        (Some("2269"), Some(52))
    );
    assert_eq!(answer["confirmed_by"], "Nguyễn Văn An");
    b.refused(
        json!({"type": "answer_roll_call", "roll_call": 99, "count": 1,
        "confirmed_by": "A", "position": "B"}),
        "no_roll_call",
    )
    .await;

    // The chair calls the standby page.
    chair
        .request(json!({"type": "call_site", "site": "2302"}), "done")
        .await;
    assert_eq!(c.expect("called").await["by"], "Studio UBND tỉnh");
    chair
        .refused(
            json!({"type": "call_site", "site": "2269"}),
            "site_unavailable",
        )
        .await;

    // The console tells the states apart.
    drop(b);
    // Consoles sent before the drop are stale: wait for the first that shows it.
    chair.seen.retain(|m| m["type"] != "console");
    let console = chair
        .expect_where("console", |console| {
            site_entry(console, "2266")["state"] != "connecting"
        })
        .await;
    let tl = site_entry(&console, "2269");
    assert_eq!(tl["state"], "connecting", "joined without media yet: {tl}");
    assert_eq!(tl["head_count"], 52);
    assert_eq!(tl["answered_roll_call"], true);
    assert_eq!(
        site_entry(&console, "2266")["state"],
        "reconnecting",
        "dropped just now"
    );
    assert_eq!(site_entry(&console, "2302")["state"], "page_open");
    assert_eq!(console["roll_call"], number);

    chair
        .request(json!({"type": "end_roll_call"}), "done")
        .await;
    let ended = a.expect("roll_call").await;
    assert_eq!(ended["active"], false);
    assert!(
        ended.get("result").is_none(),
        "sites get no result: {ended}"
    );
    // The chair gets the result, fixed: Thượng Lâm answered; Lâm Bình was there (it dropped
    // since) and did not. The standby page never joined and is not counted.
    let result = chair
        .expect_where("roll_call", |m| m["active"] == false)
        .await["result"]
        .clone();
    assert_eq!(result["delegates"], 52, "{result}");
    assert_eq!(result["answered"][0]["site"], "2269", "{result}");
    assert_eq!(
        result["not_answered"],
        json!([{"site": "2266", "name": "Xã Lâm Bình"}]),
        "{result}"
    );

    // Every chair action is in the log.
    let report = http::get(addr, &format!("/api/meetings/{}/report", m.id))
        .await
        .json();
    let kinds: Vec<String> = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    for expected in [
        "floor_requested",
        "floor_given",
        "site_muted",
        "roll_call_started",
        "roll_call_answered",
        "site_called",
        "roll_call_ended",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} missing from {kinds:?}"
        );
    }
    let row = report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["code"] == "2269")
        .expect("row")
        .clone();
    assert_eq!(
        row["head_count"]["count"], 52,
        "a roll-call answer counts as the head count"
    );
    let roll_call = &report["roll_calls"][0];
    assert_eq!(roll_call["number"], number);
    assert_eq!(roll_call["delegates"], 52);
    assert_eq!(roll_call["answers"][0]["confirmed_by"], "Nguyễn Văn An");
    assert_eq!(
        roll_call["not_answered"],
        json!([{"code": "2266", "name": "Xã Lâm Bình"}]),
        "the report keeps who did not answer"
    );
    hub.shutdown().await;
}
