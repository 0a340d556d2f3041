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
use futures_util::Stream;
use nnsight_remote::api::{Event, JobView};

use super::auth::authorize;
use super::{ApiError, App};
use crate::jobs::ResultError;

/// A job's state and history.
pub(super) async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let key = authorize(&app, &headers)?;
    app.jobs.view(&id, &key.id).map(Json).ok_or_else(|| ApiError::no_job(&id))
}

/// Cancels a job (see the [`api`](nnsight_remote::api) table).
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let key = authorize(&app, &headers)?;
    let (model, _) = app.jobs.owned(&id, &key.id).ok_or_else(|| ApiError::no_job(&id))?;
    let removed = app.models.get(&model).is_some_and(|slot| slot.queue.remove(&key.id, &id));
    app.jobs.cancel(&id, &key.id, removed).map(Json).ok_or_else(|| ApiError::no_job(&id))
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
    let (_, _, receiver) = app.jobs.follow(&id, &key.id, from).ok_or_else(|| ApiError::no_job(&id))?;
    let state = Follow { app, id, key: key.id, next: from, pending: Vec::new(), receiver, done: false };
    let stream = futures_util::stream::unfold(state, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

/// Where an event stream is.
struct Follow {
    app: Arc<App>,
    id: String,
    key: String,
    next: u64,
    /// Events read but not sent yet, newest last.
    pending: Vec<Event>,
    receiver: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

/// The stream's next event, waiting for one when none is there; `None` once the job's last
/// event is sent.
async fn next_event(mut s: Follow) -> Option<(Result<SseEvent, Infallible>, Follow)> {
    loop {
        if !s.pending.is_empty() {
            let event = s.pending.remove(0);
            s.next = event.id + 1;
            let data = serde_json::to_string(&event).unwrap_or_default();
            let sse = SseEvent::default().id(event.id.to_string()).event(event.kind.name()).data(data);
            return Some((Ok(sse), s));
        }
        if s.done {
            return None;
        }
        s.receiver.borrow_and_update();
        // The job may be forgotten (its time to live) while followed: the stream ends.
        let (events, ended, _) = s.app.jobs.follow(&s.id, &s.key, s.next)?;
        if events.is_empty() {
            if ended {
                return None;
            }
            if s.receiver.changed().await.is_err() {
                return None;
            }
            continue;
        }
        s.done = ended;
        s.pending = events;
    }
}

/// A job's result, whole or the `Range` asked.
pub(super) async fn result(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = authorize(&app, &headers)?;
    let bytes = app.jobs.result(&id, &key.id).map_err(|e| match e {
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
