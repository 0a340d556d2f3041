//! `GET /v1/jobs/{id}` (state and history), `/events` (server-sent events: the history, then
//! each new event as it happens, until the job ends; `Last-Event-ID` resumes after that event),
//! `/result` (the saves, one safetensors file; `Range: bytes=` for part of it), and
//! `DELETE /v1/jobs/{id}`. Another key's job is `404`, as a job that does not exist.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use nnsight_remote::api::JobView;

use super::auth::authorize;
use super::submit::unavailable;
use super::{ApiError, App};
use crate::jobs::ResultError;

/// A job's state and history.
pub(super) async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let key = authorize(&app, &headers)?;
    app.store.view(&id, &key.id).await.map_err(unavailable)?.map(Json).ok_or_else(|| ApiError::no_job(&id))
}

/// Cancels a job (see the [`api`](nnsight_remote::api) table).
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let key = authorize(&app, &headers)?;
    app.store
        .cancel(&app.models, &id, &key.id)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(|| ApiError::no_job(&id))
}

/// A job's events, as they happen.
pub(super) async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let key = authorize(&app, &headers)?;
    let from =
        match headers.get("last-event-id") {
            None => 0,
            Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).map(|n| n + 1).ok_or_else(
                || ApiError::bad_request("`Last-Event-ID` is the number of the last event received"),
            )?,
        };
    let events = app
        .store
        .follow(&id, &key.id, from)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::no_job(&id))?;
    let stream = events.map(|event| {
        let data = serde_json::to_string(&event).unwrap_or_default();
        Ok(SseEvent::default().id(event.id.to_string()).event(event.kind.name()).data(data))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

/// A job's result, whole or the `Range` asked.
pub(super) async fn result(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&app, &headers)?;
    let bytes = app.store.result(&id, &key.id).await.map_err(unavailable)?.map_err(|e| match e {
        ResultError::NotFound => ApiError::no_job(&id),
        ResultError::NotFinished(state) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "not_finished",
                format!("job {id} is {state:?}: no result yet"),
            );
            error.retry_after = Some(1);
            error
        }
        ResultError::NoResult(code, message) => {
            ApiError::new(StatusCode::CONFLICT, &code, format!("job {id} has no result: {message}"))
        }
        ResultError::Expired => {
            ApiError::new(StatusCode::GONE, "expired", format!("the result of job {id} was deleted"))
        }
    })?;
    let total = bytes.len() as u64;
    let octets = [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))];
    let Some(range) = headers.get(header::RANGE) else {
        let mut response = (octets, Body::from(bytes.as_ref().clone())).into_response();
        response.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(response);
    };
    let Some((start, end)) = range.to_str().ok().and_then(|r| parse_range(r, total)) else {
        let mut response = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the result has {total} bytes; ask `bytes=a-b` within them"),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        return Ok(response);
    };
    let part = bytes[start as usize..=end as usize].to_vec();
    let mut response = (StatusCode::PARTIAL_CONTENT, octets, Body::from(part)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// The first and last byte of one `bytes=` range within `total` bytes (`a-b`, `a-`, `-n`).
fn parse_range(range: &str, total: u64) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=-0", 100), None);
    }
}
