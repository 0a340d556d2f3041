//! Who is asking: the bearer token of `Authorization`, looked up by its hash. No token or an
//! unknown one is `401`; a revoked key, or a model the key may not use, is `403`.

use axum::http::{HeaderMap, StatusCode, header};

use super::{ApiError, App};
use crate::config::Quota;
use crate::keys::KeyEntry;

/// The key of the request.
///
/// # Errors
/// `401 missing_key` / `unknown_key`, `403 revoked_key`.
pub(super) fn authorize(app: &App, headers: &HeaderMap) -> Result<KeyEntry, ApiError> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "send an API key: `Authorization: Bearer nns_...` (make one with `nnsight-server keys add`)",
        ));
    };
    let key = app.keys.find(token).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unknown_key", "this API key is not known here")
    })?;
    if key.revoked {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "revoked_key",
            format!("key `{}` is revoked", key.id),
        ));
    }
    Ok(key)
}

/// Whether `key` may use `model`.
///
/// # Errors
/// `403 forbidden`.
pub(super) fn may_use(key: &KeyEntry, model: &str) -> Result<(), ApiError> {
    match &key.models {
        Some(models) if !models.iter().any(|m| m == model) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("key `{}` may not use model `{model}` (it may use: {})", key.id, models.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// The quota of `key`.
pub(super) fn quota(app: &App, key: &KeyEntry) -> Quota {
    key.quota.clone().unwrap_or_else(|| app.config.quota.clone())
}
