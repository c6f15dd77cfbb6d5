//! Accounts, login sessions and CSRF on the real router (port 0): who may log in, what each
//! role may do over HTTP, the CSRF token and `Origin` checks, the studio's code needing an
//! organizer's login on the signalling WebSocket, sessions surviving a restart, and the
//! `diemcau account` command of the built binary.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/signaling.rs"]
mod signaling;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use diemcau::config::{TEST_ORGANIZER, TEST_STAFF};
use futures_util::StreamExt;
use http::Login;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn data_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("diemcau-accounts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Opens `/ws` with `login`'s cookie and sends a join with `code`; returns the first reply.
async fn studio_join(addr: SocketAddr, login: Option<&Login>, meeting: i64, code: &str) -> Value {
    let mut socket = signaling::connect(http::ws_request(addr, login)).await;
    signaling::send(
        &mut socket,
        &json!({"type": "join", "code": code, "meeting": meeting}),
    )
    .await;
    signaling::next_reply(&mut socket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_sessions_and_csrf_guard_every_endpoint() {
    let (hub, m) =
        http::hub_with_meeting("Họp giao ban", &[("2269", "Xã Thượng Lâm")], false).await;
    let addr = hub.http_addr();

    // Logging in: the cookie is HttpOnly, SameSite=Strict, for the whole site; the reply
    // carries the CSRF token.
    let (username, password) = TEST_ORGANIZER;
    let ok = http::try_login(addr, username, password).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let body = ok.json();
    assert_eq!(body["username"], "organizer");
    assert_eq!(body["role"], "organizer");
    assert_eq!(body["csrf_token"].as_str().map(str::len), Some(64));
    let cookie = ok.header("set-cookie").expect("a session cookie");
    assert!(cookie.starts_with("diemcau_session="), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: no Secure flag: {cookie}"
    );
    let organizer = http::login_from(&ok);

    // A wrong password and an unknown user get the same answer.
    let wrong = http::try_login(addr, username, "not-the-password").await;
    let unknown = http::try_login(addr, "nobody", password).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.error_code(), "bad_credentials");
    assert_eq!(wrong.json(), unknown.json());
    assert!(wrong.header("set-cookie").is_none());

    // The session: who is logged in, with the CSRF token.
    let session = http::send(addr, "GET", "/api/session", b"", Some(&organizer), &[]).await;
    assert_eq!(session.status, 200);
    assert_eq!(session.json()["csrf_token"], organizer.csrf_token.as_str());
    let none = http::send(addr, "GET", "/api/session", b"", None, &[]).await;
    assert_eq!(
        (none.status, none.error_code()),
        (401, "not_logged_in".into())
    );

    // Without a session nothing of the API answers, reading or writing.
    for (method, path) in [
        ("GET", "/api/meetings".to_owned()),
        ("GET", format!("/api/meetings/{}", m.id)),
        ("GET", format!("/api/meetings/{}/report", m.id)),
        ("GET", format!("/api/meetings/{}/report.csv", m.id)),
        ("GET", "/api/sites".to_owned()),
        ("GET", "/api/sites.csv".to_owned()),
        ("POST", "/api/meetings".to_owned()),
        ("POST", format!("/api/meetings/{}/start", m.id)),
        ("POST", "/api/sites/import".to_owned()),
    ] {
        let r = http::send(addr, method, &path, b"", None, &[]).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert_eq!(r.error_code(), "not_logged_in", "{method} {path}");
    }
    // Health and metrics stay public and hold no secret.
    assert_eq!(
        http::send(addr, "GET", "/api/health", b"", None, &[])
            .await
            .status,
        200
    );
    let metrics = http::send(addr, "GET", "/metrics", b"", None, &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(!metrics.text().contains(&m.studio_code));

    // CSRF: a state change needs the session's token in X-CSRF-Token.
    let start = format!("/api/meetings/{}/start", m.id);
    let forged = "0".repeat(64);
    let staff = http::staff(addr).await;
    for (case, header) in [
        ("no token", ("X-CSRF-Token", "")),
        ("a forged token", ("X-CSRF-Token", forged.as_str())),
        // Another session's token is no better.
        (
            "another session's token",
            ("X-CSRF-Token", staff.csrf_token.as_str()),
        ),
        // A page of another site is refused even with the right token.
        ("another site's page", ("Origin", "http://evil.example")),
    ] {
        let refused = http::send(addr, "POST", &start, b"", Some(&organizer), &[header]).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (403, "csrf_failed".into()),
            "{case}"
        );
    }
    let cross_login = http::send(
        addr,
        "POST",
        "/api/login",
        json!({"username": username, "password": password})
            .to_string()
            .as_bytes(),
        None,
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(cross_login.status, 403, "login from another site");
    // None of those refusals started the meeting.
    let view = http::send(
        addr,
        "GET",
        &format!("/api/meetings/{}", m.id),
        b"",
        Some(&organizer),
        &[],
    )
    .await;
    assert_eq!(view.json()["state"], "scheduled");
    let own_origin = format!("http://{addr}");
    let started = http::send(
        addr,
        "POST",
        &start,
        b"",
        Some(&organizer),
        &[("Origin", &own_origin)],
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.text());

    // Staff read meetings without join codes, reports and the directory...
    assert_eq!(staff.role, "staff");
    let listed = http::send(addr, "GET", "/api/meetings", b"", Some(&staff), &[]).await;
    assert_eq!(listed.status, 200);
    let shown = http::send(
        addr,
        "GET",
        &format!("/api/meetings/{}", m.id),
        b"",
        Some(&staff),
        &[],
    )
    .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["title"], "Họp giao ban");
    for reply in [&listed, &shown] {
        let text = reply.text();
        assert!(
            !text.contains(&m.studio_code),
            "staff see no studio code: {text}"
        );
        assert!(
            !text.contains(&m.code("2269")),
            "staff see no site code: {text}"
        );
    }
    assert!(shown.json()["studio_code"].is_null());
    for path in [
        format!("/api/meetings/{}/report", m.id),
        format!("/api/meetings/{}/report.csv?table=sessions", m.id),
        "/api/sites".to_owned(),
        "/api/sites.csv".to_owned(),
    ] {
        let r = http::send(addr, "GET", &path, b"", Some(&staff), &[]).await;
        assert_eq!(r.status, 200, "staff GET {path}: {}", r.text());
    }
    // ...and change nothing.
    let csv = "admin_code,name,level,parent_code,parent_name,delegates\n2270,Xã Mới,xã,8,Tuyên Quang,40\n";
    let plan = json!({"title": "x", "studio_name": "y", "scheduled_start": 1, "scheduled_end": 2,
                      "sites": [{"code": "2269"}]})
    .to_string();
    for (path, body) in [
        ("/api/meetings".to_owned(), plan.as_bytes()),
        (format!("/api/meetings/{}/start", m.id), &b""[..]),
        (format!("/api/meetings/{}/end", m.id), &b""[..]),
        (
            format!("/api/meetings/{}/sites/2269/reissue", m.id),
            &b""[..],
        ),
        ("/api/sites/import".to_owned(), csv.as_bytes()),
    ] {
        let r = http::send(addr, "POST", &path, body, Some(&staff), &[]).await;
        assert_eq!(r.status, 403, "staff POST {path}: {}", r.text());
        assert_eq!(r.error_code(), "forbidden");
    }
    let after = http::send(
        addr,
        "GET",
        &format!("/api/meetings/{}", m.id),
        b"",
        Some(&organizer),
        &[],
    )
    .await;
    assert_eq!(after.json()["state"], "in_progress", "staff did not end it");
    assert_eq!(
        after.json()["site_codes"]["2269"],
        m.code("2269").as_str(),
        "nor reissue a code"
    );

    // The studio's code on the signalling WebSocket: an organizer's login is needed.
    let refused = studio_join(addr, None, m.id, &m.studio_code).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("login_required")),
        "{refused}"
    );
    let fake = Login {
        cookie: format!("diemcau_session={}", "ab".repeat(32)),
        csrf_token: String::new(),
        role: String::new(),
    };
    let refused = studio_join(addr, Some(&fake), m.id, &m.studio_code).await;
    assert_eq!(refused["code"], "login_required", "{refused}");
    let refused = studio_join(addr, Some(&staff), m.id, &m.studio_code).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let joined = studio_join(addr, Some(&organizer), m.id, &m.studio_code).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["participant"]["role"], "studio");
    // A site's code needs no login.
    let site = studio_join(addr, None, m.id, &m.code("2269")).await;
    assert_eq!(site["type"], "joined", "{site}");
    assert_eq!(site["participant"]["role"], "site");

    // A WebSocket opened from another site's page is refused at the upgrade.
    let mut request = http::ws_request(addr, Some(&organizer));
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!(
            "cross-site WebSocket accepted: {:?}",
            other.map(|(_, r)| r.status())
        ),
    }

    // Logging out ends the session and clears the cookie.
    let out = http::send(addr, "POST", "/api/logout", b"", Some(&staff), &[]).await;
    assert_eq!(out.status, 204);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let gone = http::send(addr, "GET", "/api/meetings", b"", Some(&staff), &[]).await;
    assert_eq!(
        (gone.status, gone.error_code()),
        (401, "not_logged_in".into())
    );
    let refused = studio_join(addr, Some(&staff), m.id, &m.studio_code).await;
    assert_eq!(refused["code"], "login_required");
    // The organizer's own session is untouched.
    let still = http::send(addr, "GET", "/api/session", b"", Some(&organizer), &[]).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.header("cache-control"), Some("no-store"));
    assert_eq!(still.header("x-frame-options"), Some("DENY"));
    assert_eq!(still.header("referrer-policy"), Some("no-referrer"));
    assert!(
        still
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("script-src 'self'")),
        "a strict content security policy"
    );
    assert_eq!(
        still.header("strict-transport-security"),
        None,
        "no HSTS on a plain-HTTP hub"
    );

    // A WebSocket opened while logged in does not keep the login: after a logout, its join
    // with the studio's code is refused.
    let second = http::login(addr, TEST_ORGANIZER.0, TEST_ORGANIZER.1).await;
    let mut socket = signaling::connect(http::ws_request(addr, Some(&second))).await;
    let out = http::send(addr, "POST", "/api/logout", b"", Some(&second), &[]).await;
    assert_eq!(out.status, 204);
    signaling::send(
        &mut socket,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    let reply = signaling::next_message(&mut socket).await;
    assert_eq!(reply["code"], "login_required", "{reply}");

    // A chair already in the meeting loses the chair when its login ends.
    let third = http::login(addr, TEST_ORGANIZER.0, TEST_ORGANIZER.1).await;
    let mut chair = signaling::connect(http::ws_request(addr, Some(&third))).await;
    signaling::send(
        &mut chair,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    let mut joined = false;
    let mut ended = None;
    let mut logged_out = false;
    while ended.is_none() {
        let frame = tokio::time::timeout(Duration::from_secs(10), chair.next())
            .await
            .expect("a message within 10 s");
        let Some(Ok(Message::Text(text))) = frame else {
            break;
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if value["type"] == "joined" {
            joined = true;
        }
        if joined && !logged_out {
            logged_out = true;
            let out = http::send(addr, "POST", "/api/logout", b"", Some(&third), &[]).await;
            assert_eq!(out.status, 204);
        }
        if value["type"] == "error" {
            ended = Some(value);
        }
    }
    assert!(joined, "the chair joined before its logout: {ended:?}");
    let ended = ended.expect("the hub ends the chair's session after the logout");
    assert_eq!(ended["code"], "login_required", "{ended}");

    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_address() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let (username, password) = TEST_STAFF;
    for attempt in 1..=10 {
        let r = http::try_login(addr, username, &format!("guess-number-{attempt}")).await;
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    // The eleventh is refused before the password is looked at, even the right one.
    let limited = http::try_login(addr, username, password).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.error_code(), "rate_limited");
    // A client cannot escape the limit by naming another address: the hub trusts no proxy.
    let forged = login_via_proxy(addr, "198.51.100.7", username, password).await;
    assert_eq!(forged.status, 429, "{}", forged.text());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_account_does_not_lock_out_the_others_behind_the_same_address() {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let (guessed, _) = TEST_STAFF;
    for attempt in 1..=10 {
        let r = http::try_login(addr, guessed, &format!("guess-number-{attempt}")).await;
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    assert_eq!(http::try_login(addr, guessed, "guess-11").await.status, 429);
    // A colleague behind the same office NAT logs in to their own account.
    let (username, password) = TEST_ORGANIZER;
    let colleague = http::try_login(addr, username, password).await;
    assert_eq!(colleague.status, 200, "{}", colleague.text());

    // Guessing many accounts from one address reaches the address's own ceiling.
    let mut limited = None;
    for attempt in 1..=diemcau::auth::MAX_FAILED_LOGINS_PER_ADDRESS {
        let r = http::try_login(addr, &format!("nobody{attempt}"), "guess-number-1").await;
        if r.status == 429 {
            limited = Some(attempt);
            break;
        }
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    assert!(limited.is_some(), "the address is refused at its ceiling");
    let refused = http::try_login(addr, username, password).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.error_code(), "rate_limited");
    hub.shutdown().await;
}

/// `POST /api/login` carrying `X-Forwarded-For: <client>`, as a reverse proxy would send it.
async fn login_via_proxy(
    addr: SocketAddr,
    client: &str,
    username: &str,
    password: &str,
) -> http::Reply {
    let body = json!({"username": username, "password": password}).to_string();
    http::send(
        addr,
        "POST",
        "/api/login",
        body.as_bytes(),
        None,
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_limit_is_per_forwarded_client() {
    let mut config = diemcau::Config::for_tests();
    config.trusted_proxy = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let (username, password) = TEST_STAFF;
    for attempt in 1..=10 {
        let r = login_via_proxy(addr, "203.0.113.5", username, &format!("guess-{attempt}")).await;
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    let limited = login_via_proxy(addr, "203.0.113.5", username, password).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    // Another client behind the same proxy is not locked out by the first one's guesses; what
    // a client writes left of the proxy's own entry does not count.
    let other = login_via_proxy(addr, "203.0.113.5, 203.0.113.9", username, password).await;
    assert_eq!(other.status, 200, "{}", other.text());
    // Logins made through the proxy carry Secure cookies, named with the `__Host-` prefix:
    // its public side is HTTPS. The hub then reads that cookie alone.
    let set_cookie = other.header("set-cookie").unwrap_or_default().to_owned();
    assert!(
        set_cookie.starts_with("__Host-diemcau_session=") && set_cookie.contains("; Secure"),
        "{set_cookie}"
    );
    let login = http::login_from(&other);
    let session = http::send(addr, "GET", "/api/session", b"", Some(&login), &[]).await;
    assert_eq!(session.status, 200, "{}", session.text());
    let plain = Login {
        cookie: login.cookie.replacen("__Host-", "", 1),
        ..login
    };
    let refused = http::send(addr, "GET", "/api/session", b"", Some(&plain), &[]).await;
    assert_eq!(
        refused.status, 401,
        "the plain name is not read on a secure hub"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_only_hashes_are_stored() {
    let dir = data_dir("restart");
    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts");
    let (username, password) = TEST_ORGANIZER;
    let login = http::login(hub.http_addr(), username, password).await;
    hub.shutdown().await;

    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts again");
    let session = http::send(
        hub.http_addr(),
        "GET",
        "/api/session",
        b"",
        Some(&login),
        &[],
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json()["username"], "organizer");
    hub.shutdown().await;

    let store = diemcau::store::Store::open(&dir).expect("store");
    let account = store.account("organizer").expect("read").expect("account");
    assert!(
        account.password_hash.starts_with("$argon2id$v=19$"),
        "{}",
        account.password_hash
    );
    assert!(diemcau::auth::verify_password(
        password,
        &account.password_hash
    ));
    drop(store);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(diemcau::store::DATABASE_FILE))
            .expect("database file")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the database is for the hub's user only: {mode:o}"
        );
    }
    // Neither the password nor the session token is anywhere in the database files.
    let token = login.cookie.trim_start_matches("diemcau_session=");
    for entry in std::fs::read_dir(&dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().contains("sqlite3") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read database file");
        for secret in [password, token] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret in clear",
                path.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chair_disabled_from_the_command_line_loses_the_chair() {
    // `diemcau account` runs in another process: the hub learns of the change from the
    // account store within seconds, and ends the studio session of that login.
    let dir = data_dir("cli-chair");
    let added = hub_binary::account(
        &dir,
        &["add", "chair", "--role", "organizer", "--password-stdin"],
        "chair-password-2026\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp giao ban", &[("2269", "Xã Thượng Lâm")], false).await;
    let login = http::login(addr, "chair", "chair-password-2026").await;
    let mut chair = signaling::connect(http::ws_request(addr, Some(&login))).await;
    signaling::send(
        &mut chair,
        &json!({"type": "join", "code": m.studio_code, "meeting": m.id}),
    )
    .await;
    // Messages keep coming (the console every 2 s): the whole wait has one deadline.
    let mut disabled = false;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let Some(Ok(Message::Text(text))) = chair.next().await else {
                return None;
            };
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value["type"] == "error" {
                return Some(value);
            }
            if value["type"] == "joined" && !disabled {
                disabled = true;
                let out = hub_binary::account(&dir, &["disable", "chair"], "");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    })
    .await
    .expect("the chair's session ends within 20 s of the account being disabled")
    .expect("an error message before the socket closes");
    assert!(disabled, "the chair joined before it was disabled: {ended}");
    assert_eq!(ended["code"], "login_required", "{ended}");
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_command_adds_an_account_that_logs_in() {
    let dir = data_dir("cli");
    let account = |args: &[&str], stdin: &str| hub_binary::account(&dir, args, stdin);
    let added = account(
        &["add", "Clerk", "--role", "staff", "--password-stdin"],
        "clerk-password-2026\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let short = account(
        &["add", "shorty", "--role", "staff", "--password-stdin"],
        "short\n",
    );
    assert!(!short.status.success(), "a 5-character password is refused");
    let twice = account(
        &["add", "clerk", "--role", "organizer", "--password-stdin"],
        "another-password-1\n",
    );
    assert!(!twice.status.success(), "a taken username is refused");
    let listed = account(&["list"], "");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("clerk") && listed.contains("staff"),
        "{listed}"
    );
    assert!(!listed.contains("shorty"), "{listed}");

    let hub = diemcau::start(diemcau::Config::for_tests_in(dir.clone()))
        .await
        .expect("hub starts");
    let login = http::login(hub.http_addr(), "clerk", "clerk-password-2026").await;
    assert_eq!(login.role, "staff");

    let disabled = account(&["disable", "clerk"], "");
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    let session = http::send(
        hub.http_addr(),
        "GET",
        "/api/session",
        b"",
        Some(&login),
        &[],
    )
    .await;
    assert_eq!(
        session.status, 401,
        "a disabled account's session has ended"
    );
    let again = http::try_login(hub.http_addr(), "clerk", "clerk-password-2026").await;
    assert_eq!(again.status, 401, "a disabled account cannot log in");
    let enabled = account(&["enable", "clerk"], "");
    assert!(
        enabled.status.success(),
        "{}",
        String::from_utf8_lossy(&enabled.stderr)
    );
    let back = http::try_login(hub.http_addr(), "clerk", "clerk-password-2026").await;
    assert_eq!(
        back.status, 200,
        "an enabled account logs in with its password"
    );
    let unknown = account(&["enable", "nobody"], "");
    assert!(
        !unknown.status.success(),
        "enabling an unknown account fails"
    );
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn first_start_makes_an_admin_with_its_password_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = data_dir("first-start");
    let mut hub = hub_binary::command(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("diemcau runs");
    // Both outputs are drained for the hub's whole life: a closed pipe would fail its prints.
    let (found, wait) = std::sync::mpsc::channel::<String>();
    let stderr = hub.stderr.take().expect("stderr");
    let (logged, log) = std::sync::mpsc::channel::<String>();
    let logged_err = logged.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = logged_err.send(line);
        }
    });
    let stdout = hub.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("diemcau: listening on ") {
                let _ = found.send(url.to_owned());
            }
            let _ = logged.send(line);
        }
    });
    let url = wait.recv_timeout(Duration::from_secs(60));
    let file = dir.join(diemcau::auth::FIRST_PASSWORD_FILE);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let outcome = runtime.block_on(async {
        let url = url.map_err(|_| "no listening line".to_owned())?;
        let password =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let password = password.trim_end();
        if password.len() != 20 {
            return Err(format!("a 20-character password, not {password:?}"));
        }
        let mode = std::fs::metadata(&file)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o777 != 0o600 {
            return Err(format!("the file is private to its owner, not {mode:o}"));
        }
        let port = url.rsplit(':').next().unwrap_or_default();
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|_| "bad url".to_owned())?;
        let login = http::try_login(addr, "admin", password).await;
        if login.status != 200 || login.json()["role"] != "organizer" {
            return Err("the file's password does not log in as organizer admin".to_owned());
        }
        // Standard error is a pipe here, as under a service manager: the output names the
        // file and never holds the password.
        // The log is on standard error, read by its own thread: wait for the line.
        let mut lines = Vec::new();
        while !lines
            .iter()
            .any(|l: &String| l.contains(diemcau::auth::FIRST_PASSWORD_FILE))
        {
            match log.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => lines.push(line),
                Err(_) => return Err(format!("the log names the file: {lines:?}")),
            }
        }
        if lines.iter().any(|l| l.contains(password)) {
            return Err("the password is in the log".to_owned());
        }
        Ok(())
    });
    let _ = hub.kill();
    let _ = hub.wait();
    let store = diemcau::store::Store::open(&dir).expect("store");
    assert_eq!(store.account_count().expect("count"), 1, "admin only");
    drop(store);
    outcome.expect("first start");

    // Changing the password removes the file.
    let changed = hub_binary::account(
        &dir,
        &["passwd", "admin", "--password-stdin"],
        "a-new-admin-password\n",
    );
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert!(!file.exists(), "the first-start password file is gone");
    let _ = std::fs::remove_dir_all(&dir);
}
