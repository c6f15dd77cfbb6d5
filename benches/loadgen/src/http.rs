//! A minimal HTTP/1.1 client (one request per connection, no TLS): enough for the hub's JSON
//! API on loopback without pulling an HTTP stack into the generator.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The hub's web address, split once from a URL like `http://127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// `host:port`.
    pub authority: String,
    /// The organizer account to log in with (a hub the generator started has one made for
    /// it; otherwise `DIEMCAU_LOADGEN_USER` and `DIEMCAU_LOADGEN_PASSWORD`).
    pub credentials: Option<Credentials>,
}

/// An account's username and password; the password stays out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `DIEMCAU_LOADGEN_USER` and `DIEMCAU_LOADGEN_PASSWORD`, when both are set.
    pub fn from_env() -> Option<Credentials> {
        Some(Credentials {
            username: std::env::var("DIEMCAU_LOADGEN_USER").ok()?,
            password: std::env::var("DIEMCAU_LOADGEN_PASSWORD").ok()?,
        })
    }
}

/// A login session on the hub: the cookie and the CSRF token its API calls carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// `diemcau_session=...`.
    pub cookie: String,
    pub csrf_token: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login { .. }")
    }
}

/// Logs in (`POST /api/login`).
pub async fn login(hub: &HubUrl, credentials: &Credentials) -> Result<Login, String> {
    let body = serde_json::json!({
        "username": credentials.username,
        "password": credentials.password,
    })
    .to_string();
    let response = request(
        hub,
        "POST",
        "/api/login",
        Some("application/json"),
        body.as_bytes(),
    )
    .await
    .map_err(|e| format!("logging in: {e}"))?;
    if response.status != 200 {
        return Err(format!(
            "logging in as {}: status {}: {}",
            credentials.username,
            response.status,
            response.text()
        ));
    }
    let cookie = response
        .set_cookie
        .clone()
        .ok_or("the login reply sets no session cookie")?;
    let csrf_token = response
        .json()?
        .get("csrf_token")
        .and_then(serde_json::Value::as_str)
        .ok_or("the login reply has no csrf_token")?
        .to_owned();
    Ok(Login { cookie, csrf_token })
}

impl HubUrl {
    pub fn parse(url: &str) -> Result<HubUrl, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "`{url}`: the generator speaks plain HTTP and WebSocket only; start the hub with \
                 --plain-http (and --max-connections-per-address above the number of sites)"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HubUrl {
            authority,
            credentials: None,
        })
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// The signalling WebSocket.
    pub fn websocket(&self) -> String {
        format!("ws://{}/ws", self.authority)
    }
}

/// A response: status, body, and the cookie it sets (`name=value`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub set_cookie: Option<String>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("status {}: not JSON ({e}): {}", self.status, self.text()))
    }
}

/// Sends one request and reads the whole response.
pub async fn request(
    hub: &HubUrl,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<Response> {
    request_as(hub, None, method, path, content_type, body).await
}

/// [`request`] with a login session: its cookie, and its CSRF token on anything but `GET`.
pub async fn request_as(
    hub: &HubUrl,
    login: Option<&Login>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(&hub.authority).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            hub.authority,
            body.len()
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(login) = login {
            head.push_str(&format!("Cookie: {}\r\n", login.cookie));
            if method != "GET" {
                head.push_str(&format!("X-CSRF-Token: {}\r\n", login.csrf_token));
            }
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {path} timed out"),
            )
        })?
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let (head, rest) = raw.split_at(split);
    let body = rest.get(4..).unwrap_or_default();
    let head = std::str::from_utf8(head).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut chunked = false;
    let mut set_cookie = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        if lower.starts_with("set-cookie:") {
            set_cookie = line
                .split_once(':')
                .and_then(|(_, value)| value.split(';').next())
                .map(|cookie| cookie.trim().to_owned());
        }
    }
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body,
        set_cookie,
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = body.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain =
            b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nSet-Cookie: s=1; HttpOnly\r\n\r\n{}";
        assert_eq!(
            parse_response(plain).expect("plain"),
            Response {
                status: 201,
                body: b"{}".to_vec(),
                set_cookie: Some("s=1".to_owned()),
            }
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).expect("chunked").body, b"{\"a\":1}");
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn parses_urls() {
        let url = HubUrl::parse("http://127.0.0.1:8080/").expect("url");
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.websocket(), "ws://127.0.0.1:8080/ws");
        assert!(HubUrl::parse("https://x").is_err());
        assert_eq!(
            HubUrl::parse("http://hub").expect("url").authority,
            "hub:80"
        );
    }
}
