//! JSON errors with a message a human understands.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use coop_orchestra::ComputeError;
use coop_state::{CommandError, StoreError, WriteError};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A machine-readable code, e.g. `unauthorized`, `bad_request`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// An error a handler returns; it becomes a JSON response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A write that would take a bucket past its quota.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = ErrorBody {
            error: code.into(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(format!("reading the control plane failed: {err}"))
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Rejected(cmd) => cmd.into(),
            WriteError::Unavailable { .. } => ApiError::Unavailable(err.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(cmd: CommandError) -> Self {
        match cmd {
            CommandError::PeerUnknown(_)
            | CommandError::TokenUnknown
            | CommandError::S3KeyUnknown(_)
            | CommandError::BucketUnknown(_)
            | CommandError::TemplateUnknown(_)
            | CommandError::ContainerUnknown(_)
            | CommandError::EnvironmentUnknown(_)
            | CommandError::NetworkUnknown(_) => ApiError::NotFound(cmd.to_string()),
            CommandError::InvalidConfig(_)
            | CommandError::InvalidRecord(_)
            | CommandError::AddressOutside { .. } => ApiError::BadRequest(cmd.to_string()),
            CommandError::QuotaExceeded { .. } => ApiError::QuotaExceeded(cmd.to_string()),
            _ => ApiError::Conflict(cmd.to_string()),
        }
    }
}

impl From<ComputeError> for ApiError {
    fn from(err: ComputeError) -> Self {
        let message = err.to_string();
        match err.root() {
            ComputeError::NotFound(_) => ApiError::NotFound(message),
            ComputeError::Invalid(_) => ApiError::BadRequest(message),
            ComputeError::Conflict(_) | ComputeError::Short(_) => ApiError::Conflict(message),
            ComputeError::Unavailable(_) | ComputeError::Unreachable { .. } => {
                ApiError::Unavailable(message)
            }
            ComputeError::Runtime(_) | ComputeError::Internal(_) | ComputeError::Refused { .. } => {
                ApiError::Internal(message)
            }
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::BadRequest(format!("invalid JSON body: {}", rejection.body_text()))
    }
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
