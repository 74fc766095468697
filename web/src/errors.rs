//! The crate's errors and how the API answers them: a status code and Zuul's JSON error body
//! (`{"error": ..., "description": ..., "code": ...}`, which `zuul-client` prints).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The tenant, build, job, ... does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (bad query parameter, bad body).
    #[error("{0}")]
    BadRequest(String),
    /// No or an invalid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the needed rights.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] sluice_store::StoreError),
    /// Something else on the server's side (a key that cannot be read, ...).
    #[error("{0}")]
    Internal(String),
}

/// Zuul's JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP reason (`Not Found`, `Unauthorized`, ...).
    pub error: String,
    /// What went wrong.
    pub description: String,
    /// The HTTP status code.
    pub code: u16,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "web request failed");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: status.canonical_reason().unwrap_or("Error").to_string(),
                description: self.to_string(),
                code: status.as_u16(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
