//! A minimal HTTP/1.1 client for tests, logged in as the test organizer unless told otherwise,
//! and helpers that set up a meeting through the API.

#![allow(dead_code, clippy::indexing_slicing)] // test helpers: a short response is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, headers (names in lower case) and body bytes.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The API error code of a refusal (`{"error": {"code": ...}}`).
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_owned()
    }
}

/// A logged-in session: the cookie to send and its CSRF token.
#[derive(Debug, Clone)]
pub struct Login {
    /// `diemcau_session=...` (`__Host-diemcau_session=...` from a hub with Secure cookies), as
    /// a `Cookie` header's value.
    pub cookie: String,
    pub csrf_token: String,
    pub role: String,
}

/// Logs in; panics unless the hub accepts.
pub async fn login(addr: SocketAddr, username: &str, password: &str) -> Login {
    let reply = try_login(addr, username, password).await;
    assert_eq!(reply.status, 200, "login as {username}: {}", reply.text());
    login_from(&reply)
}

/// `POST /api/login`, whatever the answer.
pub async fn try_login(addr: SocketAddr, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password}).to_string();
    send(addr, "POST", "/api/login", body.as_bytes(), None, &[]).await
}

/// The session a successful login reply sets.
pub fn login_from(reply: &Reply) -> Login {
    let cookie = reply
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let session = reply.json();
    Login {
        cookie,
        csrf_token: session["csrf_token"]
            .as_str()
            .expect("csrf_token")
            .to_owned(),
        role: session["role"].as_str().expect("role").to_owned(),
    }
}

/// The test organizer (`Config::for_tests`) logged in on the hub at `addr`, once per hub.
pub async fn organizer(addr: SocketAddr) -> Login {
    static LOGINS: Mutex<Option<HashMap<SocketAddr, Login>>> = Mutex::new(None);
    if let Some(login) = LOGINS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&addr)
    {
        return login.clone();
    }
    let (username, password) = diemcau::config::TEST_ORGANIZER;
    let login = login(addr, username, password).await;
    LOGINS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(addr, login.clone());
    login
}

/// The test staff account logged in on the hub at `addr`.
pub async fn staff(addr: SocketAddr) -> Login {
    let (username, password) = diemcau::config::TEST_STAFF;
    login(addr, username, password).await
}

/// A request as the test organizer (session cookie, and the CSRF token on state changes).
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let login = organizer(addr).await;
    send(addr, method, path, body, Some(&login), &[]).await
}

/// One request with the given session (or none) and extra headers. The CSRF token of the
/// session goes with every method but `GET`, unless `headers` names `X-CSRF-Token` itself.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    login: Option<&Login>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the hub");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(login) = login {
        head.push_str(&format!("Cookie: {}\r\n", login.cookie));
        let own_token = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-csrf-token"));
        if method != "GET" && !own_token {
            head.push_str(&format!("X-CSRF-Token: {}\r\n", login.csrf_token));
        }
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A WebSocket request for `/ws`, with `login`'s session cookie when given (the studio's code
/// needs an organizer's).
pub fn ws_request(
    addr: SocketAddr,
    login: Option<&Login>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(login) = login {
        request.headers_mut().insert(
            "cookie",
            login.cookie.parse().expect("a cookie header value"),
        );
    }
    request
}

/// A WebSocket request for `/ws` as the test organizer.
pub async fn organizer_ws_request(
    addr: SocketAddr,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let login = organizer(addr).await;
    ws_request(addr, Some(&login))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, b"").await
}

pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    request(addr, "POST", path, body).await
}

/// Why each session of `meeting` ended, in the report's order (`open` for one still open).
pub async fn session_reasons(addr: SocketAddr, meeting: i64) -> Vec<String> {
    let report = get(addr, &format!("/api/meetings/{meeting}/report"))
        .await
        .json();
    report["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("sessions in {report}"))
        .iter()
        .map(|s| s["reason"].as_str().unwrap_or("open").to_owned())
        .collect()
}

/// A meeting set up for a test: its id and join codes.
#[derive(Debug, Clone)]
pub struct TestMeeting {
    pub id: i64,
    pub studio_code: String,
    /// Site code → join code.
    pub codes: HashMap<String, String>,
}

impl TestMeeting {
    pub fn code(&self, site: &str) -> String {
        self.codes.get(site).cloned().expect("site on the roster")
    }
}

/// Imports `sites` (code, name) into the directory and creates a meeting inviting them all,
/// scheduled from now for two hours. When `start` is set, the organizer starts it.
pub async fn meeting(
    addr: SocketAddr,
    title: &str,
    sites: &[(&str, &str)],
    start: bool,
) -> TestMeeting {
    meeting_with(addr, title, sites, start, json!({})).await
}

/// [`meeting`], its plan given the fields of `more` too (`{"recording": "manual"}`).
pub async fn meeting_with(
    addr: SocketAddr,
    title: &str,
    sites: &[(&str, &str)],
    start: bool,
    more: Value,
) -> TestMeeting {
    let mut csv = String::from("admin_code,name,level,parent_code,parent_name,delegates\n");
    for (code, name) in sites {
        csv.push_str(&format!("{code},{name},xã,8,Tuyên Quang,40\n"));
    }
    let imported = post(addr, "/api/sites/import", csv.as_bytes()).await;
    assert_eq!(imported.status, 200, "import: {}", imported.text());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut body = json!({
        "title": title,
        "studio_name": "Studio UBND tỉnh",
        "scheduled_start": now,
        "scheduled_end": now + 2 * 3_600_000,
        "sites": sites.iter().map(|(code, _)| json!({"code": code})).collect::<Vec<_>>(),
    });
    if let (Some(body), Some(more)) = (body.as_object_mut(), more.as_object()) {
        body.extend(more.clone());
    }
    let created = post(addr, "/api/meetings", body.to_string().as_bytes()).await;
    assert_eq!(created.status, 201, "create: {}", created.text());
    let view = created.json();
    let id = view["id"].as_i64().expect("meeting id");
    if start {
        let started = post(addr, &format!("/api/meetings/{id}/start"), b"").await;
        assert_eq!(started.status, 200, "start: {}", started.text());
    }
    let codes = view["site_codes"]
        .as_object()
        .expect("site codes")
        .iter()
        .map(|(site, code)| (site.clone(), code.as_str().expect("code").to_owned()))
        .collect();
    TestMeeting {
        id,
        studio_code: view["studio_code"]
            .as_str()
            .expect("studio code")
            .to_owned(),
        codes,
    }
}

/// A hub of `Config::for_tests` with a meeting made by [`meeting`] (and started when `start`
/// is set); the hub stops when the test calls its `shutdown` or ends.
pub async fn hub_with_meeting(
    title: &str,
    sites: &[(&str, &str)],
    start: bool,
) -> (diemcau::RunningHub, TestMeeting) {
    let hub = diemcau::start(diemcau::Config::for_tests())
        .await
        .expect("hub starts");
    let meeting = meeting(hub.http_addr(), title, sites, start).await;
    (hub, meeting)
}

/// Issues meeting `meeting`'s stream token of `kind` (`encoder`: WHIP, `watch`: WHEP) on the
/// hub at `addr`, as its organizer.
pub async fn issue_stream_token(addr: SocketAddr, meeting: i64, kind: &str) -> String {
    let path = format!("/api/meetings/{meeting}/{kind}/token");
    let issued = request(addr, "POST", &path, b"").await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    issued.json()["token"].as_str().expect("a token").to_owned()
}
