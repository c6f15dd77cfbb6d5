//! A minimal HTTP/1.1 client for tests, and helpers that set up a meeting through the API.

#![allow(dead_code, clippy::indexing_slicing)] // test helpers: a short response is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status and body bytes.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
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
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the hub");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
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
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, body }
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
    let body = json!({
        "title": title,
        "studio_name": "Studio UBND tỉnh",
        "scheduled_start": now,
        "scheduled_end": now + 2 * 3_600_000,
        "sites": sites.iter().map(|(code, _)| json!({"code": code})).collect::<Vec<_>>(),
    });
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
