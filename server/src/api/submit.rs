//! `POST /v1/jobs` and `POST /v1/jobs:validate`: a multipart form (`model`, `program` — the
//! canonical JSON —, `tensors` — a safetensors file, optional —, `exclusive`, optional) read
//! under the key's size limit (a declared length over it is `413` before anything is read),
//! decoded and validated against the model's manifest (`422` with every diagnostic: an invalid
//! program never reaches a queue), checked against the key's quotas (`429` + `Retry-After`),
//! then queued (`202 {id}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::Multipart;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use nnsight_remote::api::{Estimate, Submitted};
use nnsight_remote::ir::Program;
use nnsight_remote::validate::{Limits, Plan, validate};
use nnsight_remote::{Code, Diagnostic, canonical, tensors};
use sha2::{Digest, Sha256};

use super::auth::{authorize, may_use, quota};
use super::models::loaded;
use super::{ApiError, App};
use crate::config::Quota;
use crate::keys::KeyEntry;
use crate::queue::Task;
use crate::store::Refusal;

/// The fields of a submission.
#[derive(Default)]
struct Form {
    model: String,
    program: Vec<u8>,
    tensors: Vec<u8>,
    exclusive: bool,
}

/// A checked submission.
struct Checked {
    program: Program,
    plan: Plan,
}

/// Queues a job.
pub(super) async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let key = authorize(&app, &headers)?;
    let quota = quota(&app, &key);
    let result = ingest(&app, &key, &quota, &headers, request).await;
    let (form, checked) = result.inspect_err(|e| refused(&app, e))?;
    let idempotency = headers.get("idempotency-key").map(|v| {
        let digest = digest(&form);
        (String::from_utf8_lossy(v.as_bytes()).into_owned(), digest)
    });
    let id = crate::jobs::Jobs::new_id();
    // Claimed before queueing, in one step: two retries sent at once queue one job.
    if let Some((idem, digest)) = &idempotency {
        match app.store.claim(&key.id, idem, digest, &id).await.map_err(unavailable)? {
            Ok(Some(id)) => return Ok((StatusCode::ACCEPTED, Json(Submitted { id, position: 0 }))),
            Ok(None) => {}
            Err(job) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_conflict",
                    format!("Idempotency-Key `{idem}` was used for job {job} with another request"),
                ));
            }
        }
    }
    let max_result_bytes = max_result_bytes(&app, &quota);
    let estimate = checked.plan.saved_bytes.min(max_result_bytes);
    let class = if form.exclusive { None } else { crate::batch::class(&checked.program) };
    let footprint = crate::batch::footprint(&checked.program);
    let program_json = nnsight_remote::canonical::encode(&checked.program);
    let task = Task {
        class,
        footprint,
        id: id.clone(),
        key: key.id.clone(),
        program: checked.program,
        tensors: form.tensors,
        exclusive: form.exclusive,
        max_result_bytes,
        max_running: quota.max_running,
    };
    let admitted = app
        .store
        .admit(
            &app.models,
            &form.model,
            task,
            checked.plan.positions,
            &quota,
            estimate,
            program_json.as_bytes(),
        )
        .await;
    if admitted.is_err()
        && let Some((idem, _)) = &idempotency
    {
        app.store.release(&key.id, idem).await;
    }
    let position = admitted.map_err(|refusal| {
        let error = match refusal {
            Refusal::Quota(over) => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", over.what);
                error.retry_after = Some(over.retry_after);
                error
            }
            Refusal::Broker(error) => unavailable(error),
        };
        refused(&app, &error);
        error
    })?;
    app.metrics.add("nnsight_jobs_submitted_total", &format!("model=\"{}\"", form.model), 1.0);
    Ok((StatusCode::ACCEPTED, Json(Submitted { id, position })))
}

/// `503 broker_unavailable`.
pub(super) fn unavailable(error: crate::nats::BrokerError) -> ApiError {
    let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", error.to_string());
    error.retry_after = Some(1);
    error
}

/// Checks a submission as [`submit`] does and says what it would cost; queues nothing.
pub(super) async fn dry_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Estimate>, ApiError> {
    let key = authorize(&app, &headers)?;
    let quota = quota(&app, &key);
    let (_, checked) = ingest(&app, &key, &quota, &headers, request).await?;
    let plan = checked.plan;
    Ok(Json(Estimate {
        nodes: plan.nodes,
        forward_passes: plan.forward_passes,
        positions: plan.positions,
        result_bytes: plan.saved_bytes,
    }))
}

/// Counts a refused submission.
fn refused(app: &App, error: &ApiError) {
    app.metrics.add("nnsight_jobs_refused_total", &format!("status=\"{}\"", error.status.as_u16()), 1.0);
}

/// The most bytes a result of this key may have.
fn max_result_bytes(app: &App, quota: &Quota) -> u64 {
    app.config.limits.max_result_bytes.min(quota.max_result_bytes)
}

/// Reads and checks a submission.
async fn ingest(
    app: &App,
    key: &KeyEntry,
    quota: &Quota,
    headers: &HeaderMap,
    request: Request,
) -> Result<(Form, Checked), ApiError> {
    let limit = app.config.max_request_bytes.min(quota.max_request_bytes);
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit
    {
        return Err(ApiError::too_large(format!(
            "the request has {length} bytes; this key may send {limit}"
        )));
    }
    let form = read_form(request, limit).await?;
    if form.model.is_empty() {
        return Err(ApiError::bad_request("the form has no `model` field"));
    }
    may_use(key, &form.model)?;
    let ready = loaded(app, &form.model)?;
    let mut program = canonical::decode(&form.program, app.config.limits.max_program_bytes)
        .map_err(|d| ApiError::invalid(vec![d]))?;
    program.tokenize(|text| ready.encode(text)).map_err(|(t, i, message)| {
        ApiError::invalid(vec![Diagnostic::program(
            Code::BadInput,
            format!("trace {t} invoke {i}: {message}"),
        )])
    })?;
    if let Some(vocabulary) = &ready.vocabulary {
        nnsight_remote::aliases::resolve(&mut program, vocabulary).map_err(|d| ApiError::invalid(vec![d]))?;
    }
    let shapes = if form.tensors.is_empty() {
        Default::default()
    } else {
        tensors::shapes(&form.tensors).map_err(|d| ApiError::invalid(vec![d]))?
    };
    let configured = &app.config.limits;
    let limits = Limits {
        max_nodes: configured.max_nodes,
        max_traces: configured.max_traces,
        max_invokes: configured.max_invokes,
        max_new_tokens: configured.max_new_tokens,
        max_saved_bytes: max_result_bytes(app, quota),
    };
    let plan = validate(&ready.manifest, &program, &shapes, &limits).map_err(ApiError::invalid)?;
    Ok((form, Checked { program, plan }))
}

/// The form's fields, at most `limit` bytes in all.
async fn read_form(request: Request, limit: u64) -> Result<Form, ApiError> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("not a multipart form: {e}")))?;
    let mut form = Form::default();
    let mut total = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| form_error(&e.to_string(), limit))? {
        let name = field.name().unwrap_or_default().to_owned();
        if !seen.insert(name.clone()) {
            return Err(ApiError::bad_request(format!("the form has two `{name}` fields")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| form_error(&e.to_string(), limit))? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(ApiError::too_large(format!(
                    "the request has more than {limit} bytes, this key's most"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "model" => form.model = text(&name, bytes)?,
            "program" => form.program = bytes,
            "tensors" => form.tensors = bytes,
            "exclusive" => {
                form.exclusive = match text(&name, bytes)?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "`exclusive` is `true` or `false`, not `{other}`"
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "the form has a field `{other}`; it takes `model`, `program`, `tensors` and `exclusive`"
                )));
            }
        }
    }
    if form.program.is_empty() {
        return Err(ApiError::bad_request("the form has no `program` field"));
    }
    Ok(form)
}

/// A broken form: `413` when the body limit cut it, else `400`.
fn form_error(message: &str, limit: u64) -> ApiError {
    if message.contains("limit") || message.contains("too large") {
        ApiError::too_large(format!("the request has more than {limit} bytes, this key's most"))
    } else {
        ApiError::bad_request(format!("a broken multipart form: {message}"))
    }
}

/// A text field.
fn text(name: &str, bytes: Vec<u8>) -> Result<String, ApiError> {
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request(format!("`{name}` is not UTF-8 text")))
}

/// What makes two submissions the same request.
fn digest(form: &Form) -> String {
    let mut hash = Sha256::new();
    for part in [form.model.as_bytes(), &form.program, &form.tensors, &[u8::from(form.exclusive)]] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
