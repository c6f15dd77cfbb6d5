//! The error every HTTP handler answers with: a status, a stable code and a message, as
//! `{"error": {"code": ..., "message": ...}}` (`docs/api.md`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::directory::ImportProblem;
use crate::store::StoreError;

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

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        match e {
            StoreError::Invalid(m) => AppError::invalid(m),
            StoreError::NotFound(m) => AppError::new(StatusCode::NOT_FOUND, "not_found", m),
            other => AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}
