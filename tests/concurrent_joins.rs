//! Sites and the studio joining at the same moment: the studio learns of every site, and each
//! site of the studio, exactly once, either in its `joined.participants` (those in before it)
//! or as a later `participant_joined`, never both; a site learns of no other site.

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

/// How many times a participant id reached a client (in `joined`, then as
/// `participant_joined`), with its role.
fn count(seen: &mut HashMap<String, (usize, String)>, participant: &Value) {
    let id = participant["id"].as_str().expect("an id").to_owned();
    let role = participant["role"].as_str().expect("a role").to_owned();
    seen.entry(id).or_insert((0, role)).0 += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_and_sites_joining_at_once_learn_of_each_other_exactly_once() {
    let (hub, m) = http::hub_with_meeting("Họp", &SITES, true).await;
    let addr = hub.http_addr();
    // The studio's join goes out among the sites' (fifth of nine).
    let mut codes: Vec<String> = SITES.iter().map(|(site, _)| m.code(site)).collect();
    codes.insert(4, m.studio_code.clone());
    let mut sockets = Vec::new();
    for code in &codes {
        // The studio's code needs an organizer logged in.
        sockets.push(if *code == m.studio_code {
            signaling::connect(http::organizer_ws_request(addr).await).await
        } else {
            signaling::connect(format!("ws://{addr}/ws")).await
        });
    }
    // Every join is on the wire before any reply is read.
    for (socket, code) in sockets.iter_mut().zip(&codes) {
        let join = json!({"type": "join", "code": code, "meeting": m.id});
        signaling::send(socket, &join).await;
    }
    for (socket, code) in sockets.iter_mut().zip(&codes) {
        let studio = *code == m.studio_code;
        // The studio is told of every site, a site of the studio alone.
        let expected = if studio { SITES.len() } else { 1 };
        let mut seen: HashMap<String, (usize, String)> = HashMap::new();
        let mut me = String::new();
        // Until it knows them, then two round trips to take in anything late.
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
                        count(&mut seen, other);
                    }
                }
                Some("participant_joined") => count(&mut seen, &message["participant"]),
                Some("pong") => pongs += 1,
                _ => {}
            }
            if !pinged && seen.len() == expected {
                signaling::send(socket, &json!({"type": "ping"})).await;
                signaling::send(socket, &json!({"type": "ping"})).await;
                pinged = true;
            }
        }
        assert!(!seen.contains_key(&me), "{me} is told of itself");
        assert_eq!(seen.len(), expected, "{me} knows {seen:?}");
        let wanted = if studio { "site" } else { "studio" };
        assert!(
            seen.values().all(|(n, role)| *n == 1 && role == wanted),
            "{me} learns of each {wanted} once, and of nothing else: {seen:?}"
        );
    }
    hub.shutdown().await;
}
