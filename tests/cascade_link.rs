//! A provincial hub linked to its parent: the parent's operator issues a node credential with
//! `diemcau node add` (shown once), the child runs with `--parent` and the credential in a file,
//! and both hubs show the link on `/api/health` and `/metrics`. The link comes back by itself
//! after the parent restarts; a wrong credential is refused with its error at both ends and
//! not retried in a loop; a revoked credential drops the live link.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/cascade.rs"]
mod cascade;
#[path = "common/http.rs"]
mod http;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

async fn health(addr: SocketAddr) -> Value {
    http::get(addr, "/api/health").await.json()
}

async fn metric(addr: SocketAddr, name: &str) -> Option<String> {
    let text = http::get(addr, "/metrics").await.text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(str::to_owned)
}

/// Waits until the child's `/api/health` shows its parent link in `state`; returns it.
async fn parent_link_in(child: SocketAddr, state: &str, limit: Duration) -> Value {
    wait::until_some(
        &format!("the child's parent link to be {state}"),
        limit,
        || async {
            let parent = health(child).await["parent"].clone();
            (parent["state"] == state).then_some(parent)
        },
    )
    .await
}

fn child_config(dir: &Path, parent: SocketAddr, token: &str) -> diemcau::Config {
    let token_file = dir.join("node-token");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(&token_file, format!("{token}\n")).expect("the credential file");
    let mut config = diemcau::Config::for_tests_in(dir.join("data"));
    config.parent = Some(format!("http://{parent}"));
    config.node_token_file = Some(token_file);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_hub_links_to_its_parent_and_a_bad_credential_is_refused() {
    let root = std::env::temp_dir().join(format!("diemcau-cascade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let parent_dir = root.join("parent");
    let parent = diemcau::start(diemcau::Config::for_tests_in(parent_dir.clone()))
        .await
        .expect("the parent starts");
    let parent_addr = parent.http_addr();

    // The parent's operator adds the node; its credential is shown once.
    let token = cascade::add_node(&parent_dir);
    let listed = cascade::diemcau(&["node", "list"], &parent_dir);
    assert!(listed.contains("tuyen-quang") && listed.contains("08") && listed.contains("active"));
    assert!(
        !listed.contains(&token),
        "the credential is never shown again"
    );

    // The child links.
    let child = diemcau::start(child_config(&root.join("child"), parent_addr, &token))
        .await
        .expect("the child starts");
    let child_addr = child.http_addr();
    let link = parent_link_in(child_addr, "connected", Duration::from_secs(10)).await;
    assert_eq!(link["node"], "tuyen-quang", "{link}");
    assert_eq!(link["url"], format!("http://{parent_addr}"));
    let with_rtt = wait::until_some("a round trip measured", Duration::from_secs(10), || async {
        let parent = health(child_addr).await["parent"].clone();
        parent["rtt_ms"].as_u64().map(|_| parent)
    })
    .await;
    assert!(with_rtt["rtt_ms"].as_u64() < Some(1_000), "{with_rtt}");
    let nodes = wait::until_some(
        "the parent to measure the link",
        Duration::from_secs(10),
        || async {
            let nodes = health(parent_addr).await["nodes"].clone();
            nodes[0]["rtt_ms"].as_u64().map(|_| nodes)
        },
    )
    .await;
    assert_eq!(nodes[0]["name"], "tuyen-quang", "{nodes}");
    assert_eq!(nodes[0]["state"], "connected", "{nodes}");
    assert_eq!(nodes[0]["provinces"], serde_json::json!(["08"]));
    assert_eq!(
        metric(child_addr, "diemcau_parent_link_up")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(parent_addr, "diemcau_node_links_connected")
            .await
            .as_deref(),
        Some("1")
    );
    assert!(
        http::get(parent_addr, "/metrics")
            .await
            .text()
            .contains("diemcau_node_link_rtt_milliseconds{node=\"tuyen-quang\"}")
    );

    // The parent stops: the child says so, and links again by itself when it is back.
    parent.shutdown().await;
    let lost = parent_link_in(child_addr, "unreachable", Duration::from_secs(20)).await;
    assert!(lost["error"].is_string(), "{lost}");
    let mut again = diemcau::Config::for_tests_in(parent_dir.clone());
    again.listen = parent_addr;
    let parent = diemcau::start(again)
        .await
        .expect("the parent starts again");
    parent_link_in(child_addr, "connected", Duration::from_secs(20)).await;

    // A hub with a wrong credential is refused, says why, and does not retry in a loop.
    let stranger = diemcau::start(child_config(
        &root.join("stranger"),
        parent_addr,
        &"x".repeat(64),
    ))
    .await
    .expect("the stranger starts");
    let refused = parent_link_in(stranger.http_addr(), "refused", Duration::from_secs(10)).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("node_credential_unknown")),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = health(stranger.http_addr()).await["parent"]["attempts"].clone();
    assert_eq!(attempts, 1, "one attempt, then a long wait");
    assert_eq!(
        metric(parent_addr, "diemcau_node_links_refused_total")
            .await
            .as_deref(),
        Some("1")
    );

    // Revoking the credential drops the live link, for good.
    let revoked = cascade::diemcau(&["node", "revoke", "tuyen-quang"], &parent_dir);
    assert!(revoked.contains("revoked"), "{revoked}");
    let dropped = parent_link_in(child_addr, "refused", Duration::from_secs(10)).await;
    assert!(
        dropped["error"]
            .as_str()
            .is_some_and(|e| e.contains("node_credential_revoked")),
        "{dropped}"
    );
    let nodes = health(parent_addr).await["nodes"].clone();
    assert_eq!(nodes[0]["state"], "revoked", "{nodes}");

    for hub in [stranger, child, parent] {
        hub.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_child_accepts_only_the_pinned_certificate() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let root = std::env::temp_dir().join(format!("diemcau-cascade-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let parent_dir = root.join("parent");
    let mut config = diemcau::Config::for_tests_in(parent_dir.clone());
    config.plain_http = false;
    let parent = diemcau::start(config).await.expect("the parent starts");
    let token = cascade::add_node(&parent_dir);
    let pem = std::fs::read(parent_dir.join("tls/self-signed-cert.pem")).expect("certificate");
    let der = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
    let pin = diemcau::cascade::pinning::fingerprint(der.as_ref());

    let child_with = |name: &str, pin: String| {
        let mut config = child_config(&root.join(name), parent.http_addr(), &token);
        config.parent = Some(format!("https://localhost:{}", parent.http_addr().port()));
        config.parent_cert_sha256 = Some(pin);
        config
    };
    let pinned = diemcau::start(child_with("pinned", pin.clone()))
        .await
        .expect("the child starts");
    parent_link_in(pinned.http_addr(), "connected", Duration::from_secs(10)).await;

    // Another certificate than the pinned one is not the parent: no link.
    let mut wrong = pin.into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let impostor = diemcau::start(child_with(
        "wrong-pin",
        String::from_utf8(wrong).expect("text"),
    ))
    .await
    .expect("the child starts");
    let failed = parent_link_in(impostor.http_addr(), "unreachable", Duration::from_secs(10)).await;
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("not the one pinned")),
        "{failed}"
    );
    for hub in [impostor, pinned, parent] {
        hub.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_meeting_reaches_each_province_with_its_own_communes() {
    let root = std::env::temp_dir().join(format!("diemcau-cascade-meeting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let parent_dir = root.join("parent");
    let parent = diemcau::start(diemcau::Config::for_tests_in(parent_dir.clone()))
        .await
        .expect("the parent starts");
    let parent_addr = parent.http_addr();
    // The national directory: two provinces, with their communes.
    let csv = "admin_code,name,level,parent_code,parent_name,delegates\n\
               08,Tuyên Quang,tỉnh,,,0\n\
               02269,Xã Thượng Lâm,xã,08,Tuyên Quang,40\n\
               02266,Xã Lâm Bình,xã,08,Tuyên Quang,35\n\
               02,Hà Giang,tỉnh,,,0\n\
               00694,Xã Lũng Cú,xã,02,Hà Giang,30\n";
    let imported = http::post(parent_addr, "/api/sites/import", csv.as_bytes()).await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let token = cascade::add_node(&parent_dir);
    let child = diemcau::start(child_config(&root.join("child"), parent_addr, &token))
        .await
        .expect("the child starts");
    let child_addr = child.http_addr();
    parent_link_in(child_addr, "connected", Duration::from_secs(10)).await;

    // The root invites communes of both provinces.
    let now = diemcau::store::now_millis();
    let body = serde_json::json!({
        "title": "Hội nghị toàn quốc",
        "studio_name": "Trường quay Chính phủ",
        "scheduled_start": now,
        "scheduled_end": now + 3_600_000,
        "sites": [{"code": "02269"}, {"code": "02266", "expected_delegates": 50}, {"code": "00694"}],
    });
    let created = http::post(parent_addr, "/api/meetings", body.to_string().as_bytes()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let view = created.json();
    let national = view["id"].as_i64().expect("an id");
    // The root hands out no link for Tuyên Quang's communes: their province's hub does.
    assert_eq!(
        view["served_by"],
        serde_json::json!({"02269": "tuyen-quang", "02266": "tuyen-quang"}),
        "{view}"
    );
    assert!(view["site_codes"]["02269"].is_null() && view["links"]["sites"]["02266"].is_null());
    assert!(
        view["links"]["sites"]["00694"].is_string(),
        "Hà Giang has no hub of its own: its commune joins the root"
    );

    // Tuyên Quang's hub has its part: its two communes, with join links of its own.
    let part = wait::until_some(
        "the province's part of the meeting",
        Duration::from_secs(10),
        || async {
            let meetings = http::get(child_addr, "/api/meetings").await.json();
            meetings
                .as_array()?
                .iter()
                .find(|m| m["parent_meeting"] == national)
                .cloned()
        },
    )
    .await;
    assert_eq!(part["title"], "Hội nghị toàn quốc");
    assert_eq!(part["studio_name"], "Trường quay Chính phủ");
    let roster: Vec<(&str, u64)> = part["roster"]
        .as_array()
        .expect("roster")
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap_or(""),
                s["expected_delegates"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        roster,
        [("02269", 40), ("02266", 50)],
        "Hà Giang's commune stays at the root"
    );
    assert!(part["site_codes"]["02269"].is_string(), "{part}");
    assert!(part["links"]["sites"]["02266"].is_string(), "{part}");
    let local = part["id"].as_i64().expect("the local id");

    // It starts and ends with the national meeting.
    let state = |expected: &'static str| {
        let path = format!("/api/meetings/{local}");
        async move {
            wait::until_some(
                &format!("the province's part to be {expected}"),
                Duration::from_secs(10),
                || {
                    let path = path.clone();
                    async move {
                        let meeting = http::get(child_addr, &path).await.json();
                        (meeting["state"] == expected).then_some(())
                    }
                },
            )
            .await;
        }
    };
    let started = http::post(parent_addr, &format!("/api/meetings/{national}/start"), b"").await;
    assert_eq!(started.status, 200, "{}", started.text());
    state("in_progress").await;

    // A commune joins its provincial hub, declares its head count and leaves: the root's report
    // has it, with the session named after the province's hub.
    let code = |site: &str| {
        part["site_codes"][site]
            .as_str()
            .expect("a code")
            .to_owned()
    };
    let visit = |site: &'static str, count: u32| {
        let code = code(site);
        async move {
            let mut commune = signaling::join(child_addr, &code, Some(local)).await;
            signaling::send(
                &mut commune,
                &serde_json::json!({"type": "head_count", "count": count,
                    "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}),
            )
            .await;
            signaling::next_of_type(&mut commune, "head_count_recorded").await;
            signaling::send(&mut commune, &serde_json::json!({"type": "leave"})).await;
            signaling::next_of_type(&mut commune, "left").await;
        }
    };
    let root_report = format!("/api/meetings/{national}/report");
    let row_of = |report: &Value, site: &str| {
        report["sites"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["code"] == site))
            .cloned()
            .unwrap_or_default()
    };
    visit("02269", 38).await;
    let report = wait::until_some(
        "Thượng Lâm's visit at the root",
        Duration::from_secs(10),
        || async {
            let report = http::get(parent_addr, &root_report).await.json();
            let row = row_of(&report, "02269");
            (row["head_count"]["count"] == 38 && row["last_leave"].is_i64()).then_some(report)
        },
    )
    .await;
    let sessions = report["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0]["session"]
            .as_str()
            .is_some_and(|s| s.starts_with("tuyen-quang/")),
        "{sessions:?}"
    );
    assert_eq!(sessions[0]["reason"], "closed");
    assert_ne!(row_of(&report, "02269")["status"], "absent");

    // The root is away while Lâm Bình comes and goes, and Thượng Lâm stays connected to its
    // province: the backlog goes up once the root is back, and Thượng Lâm is reported
    // connected, with the centre out of reach for that time.
    let mut staying = signaling::join(child_addr, &code("02269"), Some(local)).await;
    parent.shutdown().await;
    parent_link_in(child_addr, "unreachable", Duration::from_secs(20)).await;
    visit("02266", 47).await;
    let mut again = diemcau::Config::for_tests_in(parent_dir.clone());
    again.listen = parent_addr;
    let parent = diemcau::start(again)
        .await
        .expect("the parent starts again");
    wait::until_some(
        "Lâm Bình's visit at the root",
        Duration::from_secs(20),
        || async {
            let report = http::get(parent_addr, &root_report).await.json();
            (row_of(&report, "02266")["head_count"]["count"] == 47).then_some(())
        },
    )
    .await;
    signaling::send(&mut staying, &serde_json::json!({"type": "leave"})).await;
    signaling::next_of_type(&mut staying, "left").await;
    let report = wait::until_some(
        "Thượng Lâm's leave at the root",
        Duration::from_secs(10),
        || async {
            let report = http::get(parent_addr, &root_report).await.json();
            let left = report["sessions"]
                .as_array()
                .is_some_and(|s| s.len() == 3 && s.iter().all(|s| s["left_at"].is_i64()));
            left.then_some(report)
        },
    )
    .await;
    let staying_row = row_of(&report, "02269");
    assert_eq!(staying_row["centre_outages"], 1, "{staying_row}");
    assert_eq!(
        staying_row["interruptions"], 1,
        "only its own leave and return: {staying_row}"
    );
    assert_eq!(
        row_of(&report, "02266")["centre_outages"],
        1,
        "it came while the centre was away"
    );
    // Every event that went up is there once: the child's site events, no more, no fewer.
    let child_report = http::get(child_addr, &format!("/api/meetings/{local}/report"))
        .await
        .json();
    assert_eq!(
        cascade::site_events(&report),
        cascade::site_events(&child_report)
    );
    assert_eq!(
        row_of(&child_report, "02269")["centre_outages"],
        1,
        "the province's own report says it too"
    );

    let ended = http::post(parent_addr, &format!("/api/meetings/{national}/end"), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    state("ended").await;

    // Linking again does not make it twice.
    child.shutdown().await;
    let child = diemcau::start(child_config(&root.join("child"), parent_addr, &token))
        .await
        .expect("the child starts again");
    parent_link_in(child.http_addr(), "connected", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let meetings = http::get(child.http_addr(), "/api/meetings").await.json();
    assert_eq!(meetings.as_array().map(Vec::len), Some(1), "{meetings}");

    for hub in [child, parent] {
        hub.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
}
