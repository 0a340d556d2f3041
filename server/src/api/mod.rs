//! The HTTP API (see [`nnsight_remote::api`] for the endpoints and their answers): axum
//! handlers over the [`App`] state.

mod auth;
mod error;
mod jobs;
mod models;
mod ops;
mod submit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::config::Config;
use crate::hosted::Models;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The config.
    pub config: Config,
    /// The API keys.
    pub keys: KeyStore,
    /// The hosted models and their queues.
    pub models: Models,
    /// Where jobs are kept.
    pub store: Store,
    /// The counters.
    pub metrics: Arc<Metrics>,
}

/// The operators' routes only (a worker process): `/healthz`, `/readyz`, `/metrics`.
pub fn operations(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(app)
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    let body_limit = usize::try_from(app.config.max_request_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}/manifest", get(models::manifest))
        .route("/v1/models/{model}/twin", get(models::twin))
        .route("/v1/jobs", post(submit::submit))
        .route("/v1/jobs:validate", post(submit::dry_run))
        .route("/v1/jobs/{id}", get(jobs::status).delete(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/result", get(jobs::result))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}
