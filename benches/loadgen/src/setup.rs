//! Setting up a run on the hub through its HTTP API (docs/api.md): log in as an organizer,
//! import N synthetic sites, create a meeting with them, start it, and hand out the join codes
//! (the studio's with the login's cookie, which its WebSocket needs). A hub without the API (an
//! older build) is driven with the first protocol's join by meeting name instead.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{self, Credentials, HubUrl, Login};

/// First administrative code of the synthetic sites: site `i` is `900000 + i`.
pub const FIRST_SITE_CODE: u32 = 900_000;

/// How participants authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Join codes from `POST /api/meetings` (protocol.md's `join` with `code`).
    Codes,
    /// `{"meeting", "role", "name"}` for hubs that predate join codes.
    Legacy,
}

/// What one participant sends as its `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRequest {
    Code(String),
    /// The studio's code, sent on a WebSocket that carries an organizer's session cookie.
    CodeWithLogin {
        code: String,
        cookie: String,
    },
    Legacy {
        meeting: String,
        role: &'static str,
        name: String,
    },
}

impl JoinRequest {
    pub fn message(&self) -> Value {
        match self {
            JoinRequest::Code(code) | JoinRequest::CodeWithLogin { code, .. } => {
                json!({"type": "join", "code": code})
            }
            JoinRequest::Legacy {
                meeting,
                role,
                name,
            } => json!({"type": "join", "meeting": meeting, "role": role, "name": name}),
        }
    }
}

impl JoinRequest {
    /// The session cookie the WebSocket upgrade must carry, if any.
    pub fn cookie(&self) -> Option<&str> {
        match self {
            JoinRequest::CodeWithLogin { cookie, .. } => Some(cookie),
            _ => None,
        }
    }
}

/// A meeting ready to be joined.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub mode: JoinMode,
    /// The meeting's id in the hub's API (codes mode).
    pub id: Option<u64>,
    pub studio: JoinRequest,
    /// Site `i` (from 1) is `sites[i - 1]`.
    pub sites: Vec<JoinRequest>,
    /// The organizer's login the meeting was set up with (codes mode), to end it.
    pub login: Option<Login>,
}

impl Meeting {
    /// No meeting on the server (Janus's room is in its configuration): `sites` empty joins.
    pub fn placeholder(sites: usize) -> Meeting {
        Meeting {
            mode: JoinMode::Codes,
            id: None,
            studio: JoinRequest::Code(String::new()),
            sites: vec![JoinRequest::Code(String::new()); sites],
            login: None,
        }
    }
}

/// The synthetic site list as the directory's CSV (`admin_code,name,level,...`).
pub fn sites_csv(count: usize) -> String {
    let mut csv = String::from("admin_code,name,level,parent_code,parent_name,delegates\n");
    for i in 1..=count {
        csv.push_str(&format!(
            "{},Xã Thử Nghiệm {i},xã,,,{}\n",
            FIRST_SITE_CODE + i as u32,
            40 + i % 60
        ));
    }
    csv
}

/// Prepares a meeting of `sites` sites. The last `bad_joins` sites get a join that the hub
/// must refuse (an unknown code), to check that refusals are counted.
pub async fn prepare(
    hub: &HubUrl,
    sites: usize,
    bad_joins: usize,
    tag: &str,
    mode: Option<JoinMode>,
    provinces: usize,
) -> Result<Meeting, String> {
    let mode = match mode {
        Some(mode) => mode,
        None => detect_mode(hub).await?,
    };
    let meeting = match mode {
        JoinMode::Codes => prepare_with_codes(hub, sites, tag, provinces).await?,
        JoinMode::Legacy => prepare_legacy(sites, tag),
    };
    Ok(spoil_last(meeting, bad_joins))
}

/// Ends the meeting (codes mode), so the hub's attendance log closes it cleanly.
pub async fn end(hub: &HubUrl, meeting: &Meeting) -> Result<(), String> {
    let Some(id) = meeting.id else {
        return Ok(());
    };
    let path = format!("/api/meetings/{id}/end");
    let response = http::request_as(hub, meeting.login.as_ref(), "POST", &path, None, b"")
        .await
        .map_err(|e| format!("ending meeting {id}: {e}"))?;
    match response.status {
        200..=299 | 409 => Ok(()),
        status => Err(format!(
            "ending meeting {id}: status {status}: {}",
            response.text()
        )),
    }
}

async fn detect_mode(hub: &HubUrl) -> Result<JoinMode, String> {
    let response = http::request(hub, "GET", "/api/meetings", None, b"")
        .await
        .map_err(|e| format!("hub at {} unreachable: {e}", hub.http()))?;
    // A hub with accounts answers 401 to a request without a login.
    let is_api = response.status == 401
        || (response.status == 200 && response.json().is_ok_and(|v| v.is_array()));
    Ok(if is_api {
        JoinMode::Codes
    } else {
        JoinMode::Legacy
    })
}

async fn prepare_with_codes(
    hub: &HubUrl,
    sites: usize,
    tag: &str,
    provinces: usize,
) -> Result<Meeting, String> {
    let credentials = hub
        .credentials
        .clone()
        .or_else(Credentials::from_env)
        .ok_or(
            "the hub needs an organizer's login: set DIEMCAU_LOADGEN_USER and \
         DIEMCAU_LOADGEN_PASSWORD (a hub started with --spawn-hub gets an account of its own)",
        )?;
    let login = http::login(hub, &credentials).await?;
    let csv = if provinces > 0 {
        crate::tree::sites_csv(sites, provinces)
    } else {
        sites_csv(sites)
    };
    post(
        hub,
        &login,
        "/api/sites/import",
        Some("text/csv; charset=utf-8"),
        csv.as_bytes(),
        "importing sites",
    )
    .await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let roster: Vec<Value> = (1..=sites)
        .map(|i| json!({"code": (FIRST_SITE_CODE + i as u32).to_string()}))
        .collect();
    let body = json!({
        "title": format!("Tải thử {tag}: {sites} điểm cầu"),
        "studio_name": "Studio Thử Nghiệm",
        "scheduled_start": now_ms,
        "scheduled_end": now_ms + 3 * 3600 * 1000,
        "sites": roster,
    });
    let meeting = post(
        hub,
        &login,
        "/api/meetings",
        Some("application/json"),
        body.to_string().as_bytes(),
        "creating the meeting",
    )
    .await?
    .json()?;
    let id = meeting
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("the created meeting has no numeric id")?;
    let studio = meeting
        .get("studio_code")
        .and_then(Value::as_str)
        .ok_or("the created meeting has no studio_code")?
        .to_owned();
    let codes = meeting
        .get("site_codes")
        .and_then(Value::as_object)
        .ok_or("the created meeting has no site_codes")?;
    // In a tree the root hands out no codes for the provinces' communes: each joins with its
    // own province's code (`tree::Tree::joins`), so the list stays empty here.
    let mut site_joins = Vec::with_capacity(sites);
    for i in (1..=sites).filter(|_| provinces == 0) {
        let admin = (FIRST_SITE_CODE + i as u32).to_string();
        let code = codes
            .get(&admin)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no join code for site {admin}"))?;
        site_joins.push(JoinRequest::Code(code.to_owned()));
    }
    let start = format!("/api/meetings/{id}/start");
    post(
        hub,
        &login,
        &start,
        None,
        b"",
        &format!("starting meeting {id}"),
    )
    .await?;
    Ok(Meeting {
        mode: JoinMode::Codes,
        id: Some(id),
        studio: JoinRequest::CodeWithLogin {
            code: studio,
            cookie: login.cookie.clone(),
        },
        sites: site_joins,
        login: Some(login),
    })
}

/// A `POST` as `login` that must succeed (2xx); errors start with `what` was being done.
async fn post(
    hub: &HubUrl,
    login: &Login,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    what: &str,
) -> Result<http::Response, String> {
    let response = http::request_as(hub, Some(login), "POST", path, content_type, body)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !(200..300).contains(&response.status) {
        return Err(format!(
            "{what}: status {}: {}",
            response.status,
            response.text()
        ));
    }
    Ok(response)
}

fn prepare_legacy(sites: usize, tag: &str) -> Meeting {
    let meeting: String = format!("loadgen-{tag}-{}", std::process::id())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    Meeting {
        mode: JoinMode::Legacy,
        id: None,
        studio: JoinRequest::Legacy {
            meeting: meeting.clone(),
            role: "studio",
            name: "Studio Thử Nghiệm".to_owned(),
        },
        sites: (1..=sites)
            .map(|i| JoinRequest::Legacy {
                meeting: meeting.clone(),
                role: "site",
                name: format!("Xã Thử Nghiệm {i}"),
            })
            .collect(),
        login: None,
    }
}

fn spoil_last(mut meeting: Meeting, bad_joins: usize) -> Meeting {
    let count = meeting.sites.len();
    for (i, join) in meeting
        .sites
        .iter_mut()
        .enumerate()
        .skip(count.saturating_sub(bad_joins))
    {
        *join = match join {
            JoinRequest::Code(_) | JoinRequest::CodeWithLogin { .. } => {
                JoinRequest::Code(format!("loadgen-bad-code-{i}"))
            }
            // The old protocol has no codes: an empty name is the refusal it can be asked for.
            JoinRequest::Legacy { meeting, role, .. } => JoinRequest::Legacy {
                meeting: meeting.clone(),
                role,
                name: String::new(),
            },
        };
    }
    meeting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lists_synthetic_communes() {
        let csv = sites_csv(3);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "900001,Xã Thử Nghiệm 1,xã,,,41");
    }

    #[test]
    fn spoils_the_last_joins() {
        let meeting = spoil_last(prepare_legacy(3, "t"), 1);
        assert!(matches!(&meeting.sites[1], JoinRequest::Legacy { name, .. } if !name.is_empty()));
        assert!(matches!(&meeting.sites[2], JoinRequest::Legacy { name, .. } if name.is_empty()));
        let coded = Meeting {
            mode: JoinMode::Codes,
            id: Some(1),
            studio: JoinRequest::Code("s".into()),
            sites: vec![JoinRequest::Code("a".into()), JoinRequest::Code("b".into())],
            login: None,
        };
        let coded = spoil_last(coded, 1);
        assert_eq!(coded.sites[0], JoinRequest::Code("a".into()));
        assert_eq!(
            coded.sites[1],
            JoinRequest::Code("loadgen-bad-code-1".into())
        );
    }
}
