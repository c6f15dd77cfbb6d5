//! The programme over HTTP. WHIP ingest (RFC 9725): a studio's encoder (OBS 30 or later, a
//! vision mixer, a hardware encoder) publishes a meeting's programme with one HTTP `POST` of
//! an SDP offer, and stops with a `DELETE` of the resource the answer names. WHEP: a player
//! (press, a big screen in a hall, a leader's phone) watches it the same way, receive-only.
//! docs/api.md is the contract; docs/studio-encoders.md says how to set up OBS.
//!
//! - `POST /whip/<meeting>` with `Authorization: Bearer <encoder token>` and
//!   `Content-Type: application/sdp`: `201 Created`, the answer, `Location:
//!   /whip/<meeting>/<resource>`. A new encoder replaces the one publishing.
//! - `POST /whep/<meeting>` with the meeting's watch token: the same, for a player, up to the
//!   meeting's limit of viewers (`503` beyond).
//! - `DELETE` of the resource with the same token: `200`, the session ends.
//! - `PATCH` (trickle ICE) is `405`: the hub is ICE lite and its answer holds all its
//!   candidates; the client's own candidates are not needed.
//!
//! The endpoints answer browsers on any site's page (CORS, with `OPTIONS` preflights): a web
//! encoder or a player embedded in a province's portal. They take no cookie and no login,
//! only the bearer token, so a page can do no more with them than the token allows.
//!
//! An encoder's offer is checked before it reaches a media worker, so that a refusal says
//! what to change: video must be H.264 constrained baseline or baseline in packetization mode
//! 1 (or VP8), audio Opus. A player's offer must only receive, in codecs the hub sends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use diemcau_sfu::str0m::change::SdpOffer;
use diemcau_signaling::{ErrorCode, MeetingId, ProtocolError};

use crate::hub::{ClientInfo, HttpSessionKind, StopSessionError};
use crate::state::{AppState, client_address};
use crate::store::{StoreError, StreamTokenError, TokenKind};

/// Largest offer taken: an encoder's offer is a few KiB.
const MAX_OFFER_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/whip/{meeting}", post(publish).options(preflight))
        .route(
            "/whip/{meeting}/{resource}",
            axum::routing::delete(stop_publishing)
                .patch(trickle)
                .options(preflight),
        )
        .route("/whep/{meeting}", post(watch).options(preflight))
        .route(
            "/whep/{meeting}/{resource}",
            axum::routing::delete(stop_watching)
                .patch(trickle)
                .options(preflight),
        )
        .layer(axum::middleware::map_response(cross_origin))
        .layer(DefaultBodyLimit::max(MAX_OFFER_BYTES))
}

/// Every answer may be read by a page of any site (RFC 9725 section 4.1 recommends it): the
/// token is the credential, never a cookie, so none is allowed along.
async fn cross_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Link, Allow, WWW-Authenticate"),
    );
    response
}

/// A browser's preflight before a cross-site `POST`, `DELETE` or `PATCH`.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "POST, DELETE, PATCH, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, If-Match",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// A refusal as an encoder shows it: a status and a line of text.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"diemcau\""),
        );
    }
    response
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

async fn publish(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(meeting): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(
        &app,
        peer,
        MeetingId(meeting),
        HttpSessionKind::Encoder,
        &headers,
        &body,
    )
    .await
}

async fn watch(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(meeting): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(
        &app,
        peer,
        MeetingId(meeting),
        HttpSessionKind::Viewer,
        &headers,
        &body,
    )
    .await
}

/// The path a session's resources live under.
fn base_path(kind: HttpSessionKind) -> &'static str {
    match kind {
        HttpSessionKind::Encoder => "whip",
        HttpSessionKind::Viewer => "whep",
    }
}

/// A WHIP or WHEP `POST`: the token, the offer, the seat, the answer.
async fn start(
    app: &Arc<AppState>,
    peer: SocketAddr,
    meeting: MeetingId,
    kind: HttpSessionKind,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let token_kind = match kind {
        HttpSessionKind::Encoder => TokenKind::Encoder,
        HttpSessionKind::Viewer => TokenKind::Watch,
    };
    let address = client_address(app, peer, headers);
    let Some(token) = bearer(headers).map(str::to_owned) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            match kind {
                HttpSessionKind::Encoder => {
                    "an encoder token is required: Authorization: Bearer <token> (OBS: the Bearer Token field)"
                }
                HttpSessionKind::Viewer => {
                    "the meeting's watch token is required: Authorization: Bearer <token>"
                }
            },
        );
    };
    let checked = {
        let token = token.clone();
        app.hub
            .store()
            .blocking(move |store| {
                Ok::<_, StoreError>(store.check_stream_token(meeting, token_kind, &token))
            })
            .await
    };
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e @ (StreamTokenError::Unknown | StreamTokenError::Revoked))) => {
            tracing::warn!(meeting = %meeting, %address, ?kind, "refused: {e}");
            return refuse(StatusCode::UNAUTHORIZED, e.to_string());
        }
        Ok(Err(e @ StreamTokenError::MeetingEnded)) => {
            return refuse(StatusCode::FORBIDDEN, e.to_string());
        }
        Ok(Err(StreamTokenError::Database(e))) | Err(e) => {
            tracing::error!(meeting = %meeting, "a stream token could not be checked: {e}");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the token could not be checked now; try again",
            );
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/sdp")) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return refuse(StatusCode::BAD_REQUEST, "the offer is not UTF-8 text");
    };
    let checked = match kind {
        HttpSessionKind::Encoder => check_offer(&offer),
        HttpSessionKind::Viewer => check_watch_offer(&offer),
    };
    if let Err(problem) = checked {
        tracing::warn!(meeting = %meeting, %address, ?kind, "offer refused: {}", problem.message());
        return refuse(problem.status(), problem.message());
    }
    let client = ClientInfo {
        address: Some(address),
        user_agent: crate::state::user_agent(headers),
        slot: None,
        login: None,
    };
    match app
        .hub
        .start_http_session(meeting, kind, token, offer, client)
        .await
    {
        Ok((resource, answer)) => {
            let location = format!("/{}/{meeting}/{resource}", base_path(kind));
            let mut response = (StatusCode::CREATED, answer).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/sdp"),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => refuse(status_of(&e), e.message),
    }
}

async fn stop_publishing(
    State(app): State<Arc<AppState>>,
    Path((meeting, resource)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    stop(
        &app,
        MeetingId(meeting),
        HttpSessionKind::Encoder,
        &resource,
        &headers,
    )
}

async fn stop_watching(
    State(app): State<Arc<AppState>>,
    Path((meeting, resource)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    stop(
        &app,
        MeetingId(meeting),
        HttpSessionKind::Viewer,
        &resource,
        &headers,
    )
}

fn stop(
    app: &AppState,
    meeting: MeetingId,
    kind: HttpSessionKind,
    resource: &str,
    headers: &HeaderMap,
) -> Response {
    let Some(token) = bearer(headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the token the session started with is required: Authorization: Bearer <token>",
        );
    };
    match app.hub.stop_http_session(meeting, kind, resource, token) {
        Ok(()) => (StatusCode::OK, "stopped").into_response(),
        Err(e @ StopSessionError::Unknown) => refuse(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ StopSessionError::WrongToken) => refuse(StatusCode::UNAUTHORIZED, e.to_string()),
    }
}

async fn trickle() -> Response {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not supported: the hub's answer holds all its candidates",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    response
}

/// The HTTP status of a refused join or offer.
fn status_of(e: &ProtocolError) -> StatusCode {
    match e.code {
        ErrorCode::InvalidSdp => StatusCode::BAD_REQUEST,
        ErrorCode::MeetingEnded => StatusCode::FORBIDDEN,
        ErrorCode::MeetingFull | ErrorCode::HubShuttingDown | ErrorCode::RateLimited => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Why an encoder's offer is refused before it reaches a media worker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OfferProblem {
    /// Not an SDP offer the hub can read: `400`.
    Malformed(String),
    /// Readable, in codecs the hub does not forward: `422`, saying what to set.
    Unsupported(String),
}

impl OfferProblem {
    fn status(&self) -> StatusCode {
        match self {
            OfferProblem::Malformed(_) => StatusCode::BAD_REQUEST,
            OfferProblem::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn message(&self) -> &str {
        match self {
            OfferProblem::Malformed(m) | OfferProblem::Unsupported(m) => m,
        }
    }
}

/// One m-section's kind and codecs: (payload type, codec name, fmtp parameters).
struct Section<'a> {
    kind: &'a str,
    codecs: Vec<(&'a str, &'a str, &'a str)>,
}

/// Checks that an encoder's offer is SDP the hub reads, with video it forwards (H.264
/// constrained baseline or baseline in packetization mode 1, or VP8) and Opus audio.
fn check_offer(sdp: &str) -> Result<(), OfferProblem> {
    if let Err(e) = SdpOffer::from_sdp_string(sdp) {
        return Err(OfferProblem::Malformed(format!(
            "the body is not an SDP offer the hub can read: {e}"
        )));
    }
    let sections = media_sections(sdp);
    if !sections.iter().any(|s| matches!(s.kind, "audio" | "video")) {
        return Err(OfferProblem::Malformed(
            "the offer has no audio or video to publish".to_owned(),
        ));
    }
    for section in &sections {
        let names = || {
            let mut names: Vec<&str> = section.codecs.iter().map(|(_, name, _)| *name).collect();
            names.dedup();
            names.join(", ")
        };
        match section.kind {
            "video" if !section.codecs.iter().any(|c| video_accepted(c.1, c.2)) => {
                let h264: Vec<String> = section
                    .codecs
                    .iter()
                    .filter(|(_, name, _)| name.eq_ignore_ascii_case("H264"))
                    .map(|(_, _, fmtp)| h264_description(fmtp))
                    .collect();
                return Err(OfferProblem::Unsupported(if h264.is_empty() {
                    format!(
                        "the video is offered as {}; the hub takes H.264 (constrained baseline or \
                         baseline profile) or VP8: in OBS choose an H.264 video encoder (x264 or \
                         the hardware one) with the profile set to baseline",
                        names()
                    )
                } else {
                    format!(
                        "H.264 is offered as {}; the hub takes constrained baseline or baseline \
                         in packetization mode 1: in OBS set the encoder's profile to baseline",
                        h264.join(", ")
                    )
                }));
            }
            "audio"
                if !section
                    .codecs
                    .iter()
                    .any(|(_, name, _)| name.eq_ignore_ascii_case("opus")) =>
            {
                return Err(OfferProblem::Unsupported(format!(
                    "the audio is offered as {}; the hub takes Opus (OBS's WHIP output sends Opus)",
                    names()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that a player's offer is SDP the hub reads and only receives (`recvonly`), video
/// in a codec the hub sends (H.264 or VP8) where it asks for video, Opus for audio.
fn check_watch_offer(sdp: &str) -> Result<(), OfferProblem> {
    if let Err(e) = SdpOffer::from_sdp_string(sdp) {
        return Err(OfferProblem::Malformed(format!(
            "the body is not an SDP offer the hub can read: {e}"
        )));
    }
    let sections = media_sections(sdp);
    if !sections.iter().any(|s| matches!(s.kind, "audio" | "video")) {
        return Err(OfferProblem::Malformed(
            "the offer asks for no audio or video".to_owned(),
        ));
    }
    if sdp
        .lines()
        .map(str::trim_end)
        .any(|l| matches!(l, "a=sendonly" | "a=sendrecv"))
    {
        return Err(OfferProblem::Unsupported(
            "a watch link only receives: offer every m-line recvonly".to_owned(),
        ));
    }
    for section in &sections {
        let has = |name: &str| {
            section
                .codecs
                .iter()
                .any(|c| c.1.eq_ignore_ascii_case(name))
        };
        match section.kind {
            "video" if !has("H264") && !has("VP8") => {
                return Err(OfferProblem::Unsupported(
                    "the programme's video is H.264 or VP8; the offer takes neither".to_owned(),
                ));
            }
            "audio" if !has("opus") => {
                return Err(OfferProblem::Unsupported(
                    "the programme's audio is Opus; the offer does not take it".to_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn media_sections(sdp: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    let mut fmtps: Vec<Vec<(&str, &str)>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            let kind = media.split(' ').next().unwrap_or("");
            sections.push(Section {
                kind,
                codecs: Vec::new(),
            });
            fmtps.push(Vec::new());
            continue;
        }
        let (Some(section), Some(fmtp)) = (sections.last_mut(), fmtps.last_mut()) else {
            continue;
        };
        if let Some(map) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, codec)) = map.split_once(' ')
        {
            let name = codec.split('/').next().unwrap_or("");
            section.codecs.push((pt, name, ""));
        } else if let Some(params) = line.strip_prefix("a=fmtp:")
            && let Some((pt, params)) = params.split_once(' ')
        {
            fmtp.push((pt, params));
        }
    }
    for (section, fmtp) in sections.iter_mut().zip(fmtps) {
        for codec in &mut section.codecs {
            if let Some((_, params)) = fmtp.iter().find(|(pt, _)| *pt == codec.0) {
                codec.2 = params;
            }
        }
    }
    sections
}

/// A parameter of an fmtp line (`key=value;key=value`).
fn fmtp_value<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// Whether the hub forwards video in this codec with these parameters.
fn video_accepted(name: &str, fmtp: &str) -> bool {
    if name.eq_ignore_ascii_case("VP8") {
        return true;
    }
    if !name.eq_ignore_ascii_case("H264") {
        return false;
    }
    let mode_1 = fmtp_value(fmtp, "packetization-mode") == Some("1");
    // profile_idc 66 (0x42): baseline, constrained or not. Without the parameter, RFC 6184
    // means constrained baseline level 1.
    let baseline = fmtp_value(fmtp, "profile-level-id")
        .is_none_or(|id| id.len() == 6 && id[..2].eq_ignore_ascii_case("42"));
    mode_1 && baseline
}

/// An H.264 offer as a person reads it: its profile and packetization mode.
fn h264_description(fmtp: &str) -> String {
    let profile = match fmtp_value(fmtp, "profile-level-id").map(|id| id.get(..2).unwrap_or(id)) {
        Some(p) if p.eq_ignore_ascii_case("42") => "baseline",
        Some(p) if p.eq_ignore_ascii_case("4d") => "main",
        Some(p) if p.eq_ignore_ascii_case("58") => "extended",
        Some(p) if p.eq_ignore_ascii_case("64") => "high",
        Some(p) if p.eq_ignore_ascii_case("6e") => "high 10",
        Some(p) if p.eq_ignore_ascii_case("7a") => "high 4:2:2",
        Some(p) if p.eq_ignore_ascii_case("f4") => "high 4:4:4",
        Some(_) => "an unknown profile",
        None => "baseline",
    };
    let mode = fmtp_value(fmtp, "packetization-mode").unwrap_or("0");
    format!("{profile} (packetization mode {mode})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(video: &[(&str, &str)], audio: &str) -> String {
        let mut sdp = String::from(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
             a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n",
        );
        sdp.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
             a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sendonly\r\na=rtcp-mux\r\n\
             a=rtpmap:111 {audio}/48000/2\r\n"
        ));
        let pts: Vec<String> = (0..video.len()).map(|i| (96 + i).to_string()).collect();
        sdp.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\n\
             a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=sendonly\r\na=rtcp-mux\r\n",
            pts.join(" ")
        ));
        for (pt, (name, fmtp)) in pts.iter().zip(video) {
            sdp.push_str(&format!("a=rtpmap:{pt} {name}/90000\r\n"));
            if !fmtp.is_empty() {
                sdp.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
            }
        }
        sdp
    }

    const OBS_H264: &str = "profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1";

    #[test]
    fn an_obs_offer_passes_and_other_codecs_say_what_to_set() {
        assert_eq!(check_offer(&offer(&[("H264", OBS_H264)], "opus")), Ok(()));
        assert_eq!(check_offer(&offer(&[("VP8", "")], "opus")), Ok(()));
        assert_eq!(
            check_offer(&offer(&[("AV1", ""), ("H264", OBS_H264)], "opus")),
            Ok(()),
            "one accepted codec among others is enough"
        );

        let av1 = check_offer(&offer(&[("AV1", "")], "opus")).expect_err("AV1 alone");
        assert_eq!(av1.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            av1.message().contains("AV1") && av1.message().contains("H.264"),
            "{av1:?}"
        );

        let high = check_offer(&offer(
            &[("H264", "profile-level-id=64001f;packetization-mode=1")],
            "opus",
        ))
        .expect_err("high profile");
        assert!(
            high.message().contains("high (packetization mode 1)"),
            "{high:?}"
        );
        assert!(high.message().contains("baseline"));

        let mode_0 = check_offer(&offer(&[("H264", "profile-level-id=42e01f")], "opus"))
            .expect_err("packetization mode 0");
        assert!(
            mode_0.message().contains("packetization mode 0"),
            "{mode_0:?}"
        );

        let aac =
            check_offer(&offer(&[("H264", OBS_H264)], "MPEG4-GENERIC")).expect_err("not Opus");
        assert!(aac.message().contains("Opus"), "{aac:?}");
    }

    #[test]
    fn text_that_is_no_offer_is_malformed() {
        for body in ["", "hello", "v=0\r\nm=video\r\n", "{\"sdp\": \"v=0\"}"] {
            let problem = check_offer(body).expect_err(body);
            assert_eq!(
                problem.status(),
                StatusCode::BAD_REQUEST,
                "{body:?}: {problem:?}"
            );
        }
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_s_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
