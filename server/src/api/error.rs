//! [`ApiError`]: an HTTP status with the API's error body (a stable code, a message, the
//! diagnostics of an invalid program) and, for quotas, `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nnsight_remote::Diagnostic;
use nnsight_remote::api::ErrorBody;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// Seconds to wait before trying again (`429`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// `status` with `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody::new(code, message), retry_after: None }
    }

    /// `422 invalid_program` with `diagnostics`.
    pub fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        let n = diagnostics.len();
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_program",
            format!("the program does not fit the model ({n} problem{})", if n == 1 { "" } else { "s" }),
        );
        error.body.error.diagnostics = diagnostics;
        error
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `404 not_found` for job `id` (also another key's job: its existence is not told).
    pub fn no_job(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no job `{id}` of this key"))
    }

    /// `413 too_large`.
    pub fn too_large(what: String) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
