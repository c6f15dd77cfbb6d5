//! The HTTP API (`docs/api.md`): the sites directory, meetings with their join links, and
//! attendance reports in JSON, CSV and Excel. Every handler names who may call it:
//! [`Organizer`] for anything that changes state or shows join codes, [`Caller`] (any logged-in
//! account) for reading; staff see meetings without their join codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use diemcau_signaling::{MeetingId, SiteCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::attendance::export::{self, Table};
use crate::attendance::{report, xlsx};
use crate::auth::Role;
use crate::auth::http::{Caller, Organizer};
use crate::cascade::mirror::served_by;
use crate::directory;
use crate::error::AppError;
use crate::hub::{HttpSessionKind, MeetingError, ProbeError};
use crate::state::AppState;
use crate::store::{MeetingView, NewMeeting, StoreError, TokenKind, now_millis};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/connectivity", get(connectivity))
        .route("/api/connectivity/probe", post(connectivity_probe))
        .route("/api/sites", get(list_sites))
        .route("/api/sites.csv", get(export_sites))
        .route("/api/sites/import", post(import_sites))
        .route("/api/meetings", get(list_meetings).post(create_meeting))
        .route("/api/meetings/{id}", get(show_meeting))
        .route("/api/meetings/{id}/start", post(start_meeting))
        .route("/api/meetings/{id}/end", post(end_meeting))
        .route(
            "/api/meetings/{id}/sites/{code}/reissue",
            post(reissue_code),
        )
        .route("/api/meetings/{id}/encoder", get(show_encoder))
        .route(
            "/api/meetings/{id}/encoder/token",
            post(issue_encoder_token),
        )
        .route("/api/meetings/{id}/watch", get(show_watch))
        .route("/api/meetings/{id}/watch/token", post(issue_watch_token))
        .route("/api/meetings/{id}/report", get(report_json))
        .route("/api/meetings/{id}/report.csv", get(report_csv))
        .route("/api/meetings/{id}/report.xlsx", get(report_xlsx))
        .route(
            "/api/meetings/{id}/recordings/{part}",
            get(download_recording),
        )
}

impl From<MeetingError> for AppError {
    fn from(e: MeetingError) -> AppError {
        match e {
            MeetingError::NotFound(_) => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            MeetingError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            MeetingError::Store(s) => s.into(),
        }
    }
}

type ApiResult<T> = Result<T, AppError>;

/// Where media reaches the hub: the announced UDP addresses and TCP listener addresses. Open
/// to anyone (a hall checks its network before it has logged in); it names only what every
/// ICE candidate already announces.
async fn connectivity(State(app): State<Arc<AppState>>) -> Response {
    let media = app.hub.media();
    let list = |addresses: &[std::net::SocketAddr]| {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    Json(json!({
        "udp": list(&media.addresses()),
        "tcp": list(media.tcp_addresses()),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeOffer {
    sdp: String,
}

/// A connection check: the page's offer answered by a media worker, never joined to a
/// meeting; the page then reads which path ICE chose (UDP, TCP) or sees none connect.
async fn connectivity_probe(
    State(app): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let offer: ProbeOffer = serde_json::from_slice(&body)
        .map_err(|_| AppError::invalid("send {\"sdp\": \"<an SDP offer>\"}"))?;
    let ip = crate::state::client_address(&app, peer, &headers).ip();
    match app.hub.probe(ip, offer.sdp).await {
        Ok(sdp) => Ok(Json(json!({ "sdp": sdp })).into_response()),
        Err(e @ ProbeError::InvalidOffer(_)) => Err(AppError::invalid(e.to_string())),
        Err(e @ ProbeError::Busy) => Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
        )),
        Err(e @ ProbeError::Internal) => Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

async fn list_sites(_: Caller, State(app): State<Arc<AppState>>) -> ApiResult<Response> {
    let sites = app.hub.store().blocking(|store| store.sites()).await?;
    Ok(Json(sites).into_response())
}

async fn export_sites(_: Caller, State(app): State<Arc<AppState>>) -> ApiResult<Response> {
    let sites = app.hub.store().blocking(|store| store.sites()).await?;
    Ok(csv_response(directory::write_csv(&sites), "diem-cau.csv"))
}

async fn import_sites(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> ApiResult<Response> {
    let sites = directory::parse_csv(&body[..]).map_err(|e| AppError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_csv",
        message: e.to_string(),
        problems: e.problems,
    })?;
    let imported = app
        .hub
        .store()
        .blocking(move |store| store.import_sites(&sites))
        .await?;
    tracing::info!(imported, username = ?caller.account.username, "sites imported");
    Ok(Json(json!({ "imported": imported })).into_response())
}

/// A meeting with the links the organizer sends out.
#[derive(Debug, Serialize)]
struct MeetingWithLinks {
    #[serde(flatten)]
    view: MeetingView,
    links: Links,
    /// In a national meeting at the root: the invited sites that join through their own
    /// provincial hub (docs/cascade.md), with that hub's node name. They have no code or link
    /// here: their hub issues them.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    served_by: HashMap<String, String>,
    /// Hubs sharing a database (a standby pair): the hub that runs the meeting now, while one
    /// does.
    #[serde(skip_serializing_if = "Option::is_none")]
    running_on: Option<RunningOn>,
}

/// Where a live meeting runs, among hubs sharing a database.
#[derive(Debug, Serialize)]
struct RunningOn {
    /// Its `--hub-name`.
    hub: String,
    /// Its public address.
    address: String,
}

#[derive(Debug, Serialize)]
struct Links {
    studio: Option<String>,
    sites: HashMap<String, String>,
}

impl MeetingWithLinks {
    fn running_on(mut self, holder: Option<crate::store::LeaseHolder>) -> MeetingWithLinks {
        self.running_on = holder.map(|h| RunningOn {
            hub: h.hub,
            address: h.address,
        });
        self
    }
}

/// The meeting as `role` may see it: staff get neither join codes nor links; sites that a
/// provincial hub serves (`served`) get none either.
fn with_links(
    mut view: MeetingView,
    role: Role,
    served: &HashMap<String, String>,
) -> MeetingWithLinks {
    if role != Role::Organizer {
        view.studio_code = None;
        view.site_codes.clear();
    }
    let served_by: HashMap<String, String> = view
        .plan
        .roster
        .iter()
        .filter_map(|site| Some((site.code.clone(), served.get(&site.code)?.clone())))
        .collect();
    view.site_codes
        .retain(|site, _| !served_by.contains_key(site.as_str()));
    let id = view.plan.id;
    let studio = view
        .studio_code
        .as_ref()
        .map(|code| format!("/studio.html?meeting={id}&code={code}"));
    let sites = view
        .site_codes
        .iter()
        .map(|(site, code)| (site.to_string(), site_link(MeetingId(id), code.as_str())))
        .collect();
    MeetingWithLinks {
        view,
        links: Links { studio, sites },
        served_by,
        running_on: None,
    }
}

fn site_link(meeting: MeetingId, code: &str) -> String {
    format!("/site.html?meeting={meeting}&code={code}")
}

async fn list_meetings(caller: Caller, State(app): State<Arc<AppState>>) -> ApiResult<Response> {
    let (meetings, served, running) = app
        .hub
        .store()
        .blocking(|store| {
            Ok::<_, StoreError>((store.meetings()?, served_by(store)?, store.running_hubs()?))
        })
        .await?;
    let meetings: Vec<MeetingWithLinks> = meetings
        .into_iter()
        .map(|view| {
            let running_on = running.get(&MeetingId(view.plan.id)).cloned();
            with_links(view, caller.account.role, &served).running_on(running_on)
        })
        .collect();
    Ok(Json(meetings).into_response())
}

/// Times may be given as milliseconds or as RFC 3339 text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeInput {
    Millis(i64),
    Text(String),
}

impl TimeInput {
    fn millis(&self, field: &str) -> ApiResult<i64> {
        match self {
            TimeInput::Millis(ms) => Ok(*ms),
            TimeInput::Text(text) => {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                    .map_err(|e| AppError::invalid(format!("{field}: {e}")))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMeeting {
    title: String,
    studio_name: String,
    scheduled_start: TimeInput,
    scheduled_end: TimeInput,
    sites: Vec<crate::store::InvitedSite>,
    #[serde(default)]
    recording: Option<crate::meeting::RecordingMode>,
}

/// The body of `POST /api/meetings` read into a meeting plan, or why it cannot be (the store
/// checks the plan itself: [`crate::store::Store::create_meeting`]).
pub fn new_meeting_from_json(body: &[u8]) -> Result<NewMeeting, AppError> {
    let request: CreateMeeting = serde_json::from_slice(body)
        .map_err(|e| AppError::invalid(format!("the meeting is not valid JSON: {e}")))?;
    Ok(NewMeeting {
        title: request.title,
        studio_name: request.studio_name,
        scheduled_start: request.scheduled_start.millis("scheduled_start")?,
        scheduled_end: request.scheduled_end.millis("scheduled_end")?,
        sites: request.sites,
        recording: request.recording,
    })
}

async fn create_meeting(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut new = new_meeting_from_json(&body)?;
    let hub_mode = app.hub.recording_mode();
    if hub_mode == crate::meeting::RecordingMode::Off
        && new
            .recording
            .is_some_and(|mode| mode != crate::meeting::RecordingMode::Off)
    {
        return Err(AppError::invalid(
            "recording: this hub records no meeting (it runs with --recording off)",
        ));
    }
    // The hub's setting of the day becomes the meeting's own.
    new.recording.get_or_insert(hub_mode);
    let view = app
        .hub
        .store()
        .blocking(move |store| store.create_meeting(&new))
        .await?;
    let served = app.hub.store().blocking(served_by).await?;
    tracing::info!(
        meeting = view.plan.id,
        sites = view.plan.roster.len(),
        username = ?caller.account.username,
        "meeting created"
    );
    app.node_links.meetings_changed();
    Ok((
        StatusCode::CREATED,
        Json(with_links(view, caller.account.role, &served)),
    )
        .into_response())
}

async fn show_meeting(
    caller: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let (view, served, running) = app
        .hub
        .store()
        .blocking(move |store| {
            Ok::<_, StoreError>((
                store.meeting(MeetingId(id))?,
                served_by(store)?,
                store.running_hubs()?.remove(&MeetingId(id)),
            ))
        })
        .await?;
    Ok(Json(with_links(view, caller.account.role, &served).running_on(running)).into_response())
}

async fn start_meeting(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    app.hub.start_meeting(MeetingId(id)).await?;
    app.node_links.meetings_changed();
    tracing::info!(meeting = id, username = ?caller.account.username, "meeting started by");
    show_meeting(caller, State(app), Path(id)).await
}

async fn end_meeting(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    app.hub.end_meeting(MeetingId(id)).await?;
    app.node_links.meetings_changed();
    tracing::info!(meeting = id, username = ?caller.account.username, "meeting ended by");
    show_meeting(caller, State(app), Path(id)).await
}

async fn reissue_code(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path((id, site)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let meeting = MeetingId(id);
    // A path that is not a site code names no invited site.
    let site_code = SiteCode::try_from(site.as_str()).map_err(|_| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("site {site} is not invited to meeting {id}"),
        )
    })?;
    let code = app
        .hub
        .store()
        .blocking(move |store| store.reissue_code(meeting, &site_code))
        .await?;
    tracing::info!(meeting = id, site = ?site, username = ?caller.account.username, "join code reissued");
    if let Ok(site) = SiteCode::try_from(site.as_str()) {
        app.hub.code_reissued_here(meeting, &site).await;
    }
    let link = site_link(meeting, code.as_str());
    Ok(Json(json!({ "code": code, "link": link })).into_response())
}

/// The studio encoder's WHIP endpoint of a meeting, its token (if one was issued) and whether
/// an encoder publishes now. Organizers only: the token publishes the programme.
async fn show_encoder(
    Organizer(_caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    show_stream(&app, MeetingId(id), TokenKind::Encoder).await
}

/// The meeting's watch link (WHEP): its token, the viewers now and their limit.
async fn show_watch(
    Organizer(_caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    show_stream(&app, MeetingId(id), TokenKind::Watch).await
}

/// Issues a new encoder token, revoking the one before (an encoder publishing with it goes on
/// until it stops).
async fn issue_encoder_token(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    issue_stream_token(&app, &caller, MeetingId(id), TokenKind::Encoder).await
}

/// Issues a new watch token, revoking the one before (players watching go on).
async fn issue_watch_token(
    Organizer(caller): Organizer,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    issue_stream_token(&app, &caller, MeetingId(id), TokenKind::Watch).await
}

async fn show_stream(app: &AppState, meeting: MeetingId, kind: TokenKind) -> ApiResult<Response> {
    let token = app
        .hub
        .store()
        .blocking(move |store| {
            store.meeting(meeting)?;
            store.stream_token(meeting, kind)
        })
        .await?;
    Ok(Json(stream_view(app, meeting, kind, token)).into_response())
}

async fn issue_stream_token(
    app: &AppState,
    caller: &Caller,
    meeting: MeetingId,
    kind: TokenKind,
) -> ApiResult<Response> {
    let token = app
        .hub
        .store()
        .blocking(move |store| store.issue_stream_token(meeting, kind))
        .await?;
    tracing::info!(meeting = %meeting, ?kind, username = ?caller.account.username, "stream token issued");
    Ok(Json(stream_view(app, meeting, kind, Some(token))).into_response())
}

fn stream_view(
    app: &AppState,
    meeting: MeetingId,
    kind: TokenKind,
    token: Option<String>,
) -> serde_json::Value {
    match kind {
        TokenKind::Encoder => json!({
            "whip": format!("/whip/{meeting}"),
            "token": token,
            "publishing": app.hub.http_sessions(meeting, HttpSessionKind::Encoder) > 0,
        }),
        TokenKind::Watch => json!({
            "whep": format!("/whep/{meeting}"),
            "token": token,
            "viewers": app.hub.http_sessions(meeting, HttpSessionKind::Viewer),
            "limit": app.hub.max_viewers(),
        }),
    }
}

async fn compute_report(app: &AppState, id: i64) -> ApiResult<report::Report> {
    let meeting = MeetingId(id);
    let (view, events) = app
        .hub
        .store()
        .blocking(move |store| {
            Ok::<_, StoreError>((store.meeting(meeting)?, store.events(meeting)?))
        })
        .await?;
    Ok(report::compute(
        &view.plan,
        &events,
        now_millis(),
        &app.rules,
    ))
}

async fn report_json(
    _: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    Ok(Json(compute_report(&app, id).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct CsvQuery {
    table: Option<String>,
}

async fn report_csv(
    _: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(query): Query<CsvQuery>,
) -> ApiResult<Response> {
    let table = match query.table.as_deref() {
        None => Table::Sites,
        Some(name) => Table::parse(name).ok_or_else(|| {
            AppError::invalid(format!("unknown table `{name}`: sites, sessions or events"))
        })?,
    };
    let report = compute_report(&app, id).await?;
    let bytes = export::csv(&report, table, app.offset);
    Ok(csv_response(
        bytes,
        &format!("bao-cao-hop-{id}-{}.csv", table.name()),
    ))
}

async fn report_xlsx(
    _: Caller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let report = compute_report(&app, id).await?;
    let title = report.summary.title.clone();
    let offset = app.offset;
    let bytes = tokio::task::spawn_blocking(move || xlsx::workbook(&report, offset))
        .await
        .map_err(workbook_failed)?
        .map_err(workbook_failed)?;
    Ok((
        [
            (header::CONTENT_TYPE, XLSX_TYPE.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                report_attachment(id, &title, "xlsx"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// One part of a meeting's recording, the whole file or the byte range asked for (a browser's
/// player seeks with ranges).
async fn download_recording(
    _: Caller,
    State(app): State<Arc<AppState>>,
    Path((id, part)): Path<(i64, u32)>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let not_found = || {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("meeting {id} has no recording part {part} on this hub"),
        )
    };
    let local = app
        .hub
        .recordings()
        .and_then(|r| crate::recording::existing_in(r.dir(), MeetingId(id), part));
    let Some(path) = local else {
        // Written by the other hub of a standby pair: the file is there.
        let elsewhere = written_elsewhere(&app, MeetingId(id), part).await?;
        return match elsewhere {
            Some(hub) => {
                let location = format!(
                    "{}/api/meetings/{id}/recordings/{part}",
                    hub.trim_end_matches('/')
                );
                Ok((
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response())
            }
            None => Err(not_found()),
        };
    };
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| not_found())?;
    let size = file.metadata().await.map_err(|_| not_found())?.len();
    let mut header = [0u8; 64];
    let read = tokio::io::AsyncReadExt::read(&mut file, &mut header)
        .await
        .map_err(|_| not_found())?;
    let media_type = crate::recording::media_type(header.get(..read).unwrap_or_default());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::web::byte_range(v, size));
    let extension = path
        .extension()
        .map_or_else(|| "mkv".to_owned(), |e| e.to_string_lossy().into_owned());
    let title = app
        .hub
        .store()
        .blocking(move |store| store.meeting_title(MeetingId(id)))
        .await
        .unwrap_or_default();
    let disposition = recording_attachment(id, part, &title, &extension);
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, media_type.to_owned()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::CONTENT_LENGTH, (end - start).to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        crate::web::file_body(file, start, end)
            .await
            .map_err(|_| not_found())?,
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", end.saturating_sub(1));
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// The public address of the other hub of a standby pair that wrote part `part` of
/// `meeting`'s recording, if another did.
async fn written_elsewhere(
    app: &AppState,
    meeting: MeetingId,
    part: u32,
) -> ApiResult<Option<String>> {
    let Some(me) = app.hub.public_address().map(str::to_owned) else {
        return Ok(None);
    };
    let events = app
        .hub
        .store()
        .blocking(move |store| store.events(meeting))
        .await?;
    Ok(events.into_iter().find_map(|event| match event.kind {
        crate::attendance::EventKind::RecordingStarted { part: p, hub, .. } if p == part => {
            hub.filter(|hub| *hub != me)
        }
        _ => None,
    }))
}

/// The workbook could not be written: the hub's failure, told to its log, not to the client.
fn workbook_failed(e: impl std::fmt::Display) -> AppError {
    tracing::error!("report workbook not written: {e}");
    AppError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the hub could not complete this request; try again later",
    )
}

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// `Content-Disposition` for a download named after the meeting: an ASCII `filename` for old
/// clients (`bao-cao-hop-7-hoi-nghi-thang-12.xlsx`) and the title as it is in `filename*`
/// (RFC 6266), so a browser saves `Báo cáo họp 7 - Hội nghị tháng 12.xlsx`.
fn report_attachment(id: i64, title: &str, extension: &str) -> String {
    named_attachment(
        &format!("bao-cao-hop-{id}"),
        &format!("Báo cáo họp {id}"),
        title,
        extension,
    )
}

/// The same for part `part` of the meeting's recording: `ghi-hinh-hop-7-phan-1-....mkv`,
/// `Ghi hình họp 7 phần 1 - Hội nghị tháng 12.mkv`.
fn recording_attachment(id: i64, part: u32, title: &str, extension: &str) -> String {
    named_attachment(
        &format!("ghi-hinh-hop-{id}-phan-{part}"),
        &format!("Ghi hình họp {id} phần {part}"),
        title,
        extension,
    )
}

/// `plain` (ASCII) and `readable` (Vietnamese) names, each followed by the meeting's title.
fn named_attachment(plain: &str, readable: &str, title: &str, extension: &str) -> String {
    let ascii = ascii_slug(title);
    let plain = if ascii.is_empty() {
        format!("{plain}.{extension}")
    } else {
        format!("{plain}-{ascii}.{extension}")
    };
    let readable: String = format!("{readable} - {title}")
        .chars()
        .map(|c| {
            if c.is_control() || "/\\:*?\"<>|".contains(c) {
                '_'
            } else {
                c
            }
        })
        .take(150)
        .collect();
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}.{extension}",
        percent_encode(readable.trim())
    )
}

/// The title in lower-case ASCII words joined by `-`: Vietnamese letters lose their marks
/// (`đ` becomes `d`), anything else is dropped; at most 60 characters.
fn ascii_slug(title: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut slug = String::new();
    for c in title.nfd() {
        let c = match c {
            'đ' => 'd',
            'Đ' => 'D',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if c.is_ascii() && !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        // Combining marks and other letters are dropped.
    }
    let slug: String = slug.chars().take(60).collect();
    slug.trim_end_matches('-').to_owned()
}

/// RFC 5987 `value-chars`: UTF-8 bytes, percent-encoded but for letters, digits and a few marks.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn csv_response(bytes: Vec<u8>, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}
