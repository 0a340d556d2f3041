//! `GET /v1/models`, `/v1/models/{key}/manifest`, `/v1/models/{key}/twin`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nnsight_remote::api::{ModelInfo, Twin};

use super::auth::{authorize, may_use};
use super::{ApiError, App};
use crate::hosted::{Ready, Status};

/// The loaded models this key may use.
pub(super) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ModelInfo>>, ApiError> {
    let key = authorize(&app, &headers)?;
    let models = app
        .models
        .iter()
        .filter(|(name, _)| may_use(&key, name).is_ok())
        .filter_map(|(_, slot)| slot.ready().map(|r| r.info.clone()))
        .collect();
    Ok(Json(models))
}

/// The manifest of a model.
pub(super) async fn manifest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let ready = ready(&app, &headers, &model)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], ready.manifest_json.clone()).into_response())
}

/// What a client builds the twin of a model from.
pub(super) async fn twin(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Json<Twin>, ApiError> {
    Ok(Json(ready(&app, &headers, &model)?.twin.clone()))
}

/// The loaded model `model`, if the request's key may use it.
///
/// # Errors
/// As [`authorize`]; `404 unknown_model`; `503 model_loading` / `model_failed`.
pub(super) fn ready(app: &App, headers: &HeaderMap, model: &str) -> Result<Arc<Ready>, ApiError> {
    let key = authorize(app, headers)?;
    loaded(app, model).and_then(|ready| may_use(&key, model).map(|()| ready))
}

/// The loaded model `model`.
///
/// # Errors
/// `404 unknown_model`; `503 model_loading` / `model_failed`.
pub(super) fn loaded(app: &App, model: &str) -> Result<Arc<Ready>, ApiError> {
    let slot = app.models.get(model).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!("no model `{model}` is hosted here (hosted: {})", app.models.keys()),
        )
    })?;
    match slot.status() {
        Status::Ready(ready) => Ok(ready),
        Status::Loading => {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_loading",
                format!("model `{model}` is loading"),
            );
            error.retry_after = Some(5);
            Err(error)
        }
        Status::Failed(why) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_failed",
            format!("model `{model}` failed to load: {why}"),
        )),
    }
}
