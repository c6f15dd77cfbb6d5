//! Sites joining at the same moment: each learns of every other exactly once, either in its
//! `joined.participants` (those in before it) or as a later `participant_joined`, never both.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;

use std::collections::HashMap;

use serde_json::{Value, json};

const SITES: [(&str, &str); 8] = [
    ("2269", "Xã Thượng Lâm"),
    ("2266", "Xã Lâm Bình"),
    ("2302", "Xã Minh Quang"),
    ("2287", "Xã Hồng Quang"),
    ("2281", "Xã Bình An"),
    ("2275", "Xã Phúc Yên"),
    ("2290", "Xã Xuân Lập"),
    ("2293", "Xã Khuôn Hà"),
];

/// How many times a participant id reached this site: in `joined`, then as `participant_joined`.
fn count(seen: &mut HashMap<String, usize>, id: &Value) {
    *seen
        .entry(id.as_str().expect("an id").to_owned())
        .or_default() += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_joining_at_once_learn_of_each_other_exactly_once() {
    let (hub, m) = http::hub_with_meeting("Họp", &SITES, true).await;
    let addr = hub.http_addr();
    let mut sockets = Vec::new();
    for _ in SITES {
        sockets.push(signaling::connect(format!("ws://{addr}/ws")).await);
    }
    // Every join is on the wire before any reply is read.
    for (socket, (site, _)) in sockets.iter_mut().zip(SITES) {
        let join = json!({"type": "join", "code": m.code(site), "meeting": m.id});
        signaling::send(socket, &join).await;
    }
    for socket in &mut sockets {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut me = String::new();
        // Until it knows the seven others, then two round trips to take in anything late.
        let (mut pinged, mut pongs) = (false, 0);
        while pongs < 2 {
            let message = signaling::next_message(socket).await;
            match message["type"].as_str() {
                Some("joined") => {
                    me = message["participant"]["id"]
                        .as_str()
                        .expect("id")
                        .to_owned();
                    for other in message["participants"].as_array().expect("participants") {
                        count(&mut seen, &other["id"]);
                    }
                }
                Some("participant_joined") => count(&mut seen, &message["participant"]["id"]),
                Some("pong") => pongs += 1,
                _ => {}
            }
            if !pinged && seen.len() == SITES.len() - 1 {
                signaling::send(socket, &json!({"type": "ping"})).await;
                signaling::send(socket, &json!({"type": "ping"})).await;
                pinged = true;
            }
        }
        assert!(!seen.contains_key(&me), "{me} is told of itself");
        assert_eq!(
            seen.len(),
            SITES.len() - 1,
            "{me} knows every other site: {seen:?}"
        );
        assert!(
            seen.values().all(|n| *n == 1),
            "{me} learns of each other site once: {seen:?}"
        );
    }
    hub.shutdown().await;
}
