//! The error every HTTP handler answers with: a status, a stable code and a message, as
//! `{"error": {"code": ..., "message": ...}}` (`docs/api.md`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::directory::ImportProblem;
use crate::store::{CreateMeetingError, ReissueError, StoreError};

/// An API error: a status, a stable code and a message (plus the lines of a refused CSV).
#[derive(Debug)]
pub struct AppError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) problems: Vec<ImportProblem>,
}

impl AppError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> AppError {
        AppError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}: {}", self.code, self.message);
        }
        let error = if self.problems.is_empty() {
            json!({"code": self.code, "message": self.message})
        } else {
            json!({"code": self.code, "message": self.message, "problems": self.problems})
        };
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// A failure of the store is the hub's: the client hears `internal` and nothing of the
/// database, the log hears the whole error.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::NotFound(m) => AppError::new(StatusCode::NOT_FOUND, "not_found", m),
            other => {
                tracing::error!("store failed: {other}");
                AppError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the hub could not complete this request; try again later",
                )
            }
        }
    }
}

impl From<CreateMeetingError> for AppError {
    fn from(e: CreateMeetingError) -> AppError {
        match e {
            CreateMeetingError::Store(e) => e.into(),
            refused => AppError::invalid(refused.to_string()),
        }
    }
}

impl From<ReissueError> for AppError {
    fn from(e: ReissueError) -> AppError {
        match e {
            ReissueError::Store(e) => e.into(),
            refused @ ReissueError::NotInvited { .. } => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", refused.to_string())
            }
        }
    }
}
