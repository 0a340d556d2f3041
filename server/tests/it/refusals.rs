//! Every refusal, as a hostile client meets it: the HTTP status and the stable error code, and
//! for an invalid program the diagnostic's code. Nothing refused is queued.

use nnsight_remote::api::ErrorBody;
use nnsight_remote::arch::Gpt2;
use nnsight_remote::canonical;
use nnsight_remote::client::{Client, RemoteModel, SubmitOptions};
use nnsight_remote::intervention::Intervention;
use nnsight_server::config::Quota;

use super::harness::Harness;
use super::remote::patching_and_lens;

/// A multipart body of `fields` (name, bytes) and its content type.
fn form(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, bytes) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends `body` to `path` with `key` (none: no `Authorization`); the status and error body.
fn post(
    harness: &Harness,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, Option<ErrorBody>, Option<String>) {
    let mut request = ureq::post(&format!("{}{path}", harness.url())).set("Content-Type", content_type);
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    answer(request.send_bytes(body))
}

fn get(harness: &Harness, path: &str, key: Option<&str>) -> (u16, Option<ErrorBody>, Option<String>) {
    let mut request = ureq::get(&format!("{}{path}", harness.url()));
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    answer(request.call())
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, Option<ErrorBody>, Option<String>) {
    match result {
        Ok(response) => (response.status(), None, None),
        Err(ureq::Error::Status(status, response)) => {
            let retry = response.header("Retry-After").map(str::to_owned);
            (status, response.into_json::<ErrorBody>().ok(), retry)
        }
        Err(other) => panic!("no answer: {other}"),
    }
}

/// The recorded patching program of the tiny GPT-2, through `key`'s connection.
fn program(harness: &Harness, key: &str) -> Intervention {
    let remote = RemoteModel::<Gpt2>::connect(&harness.url(), key, "gpt2").expect("connects");
    remote
        .record(|lm, rec| {
            let (patched, _) = patching_and_lens(lm)?;
            rec.save("patched", &patched)
        })
        .expect("records")
}

fn expect(found: (u16, Option<ErrorBody>, Option<String>), status: u16, code: &str) -> ErrorBody {
    assert_eq!(found.0, status, "{:?}", found.1);
    let body = found.1.unwrap_or_else(|| panic!("an error body for {status}"));
    assert_eq!(body.code(), code, "{body:?}");
    body
}

fn diagnostic(body: &ErrorBody) -> &str {
    body.error.diagnostics.first().map(|d| d.code.as_str()).unwrap_or("none")
}

#[test]
fn keys_are_checked_before_anything_else() {
    let harness = Harness::start(|_| {});
    let alice = harness.key("alice");
    expect(get(&harness, "/v1/models", None), 401, "missing_key");
    expect(get(&harness, "/v1/models", Some("nns_00000000_0000")), 401, "unknown_key");
    let (status, ..) = get(&harness, "/v1/models", Some(&alice));
    assert_eq!(status, 200);

    let id = harness.keys.list().into_iter().find(|k| k.name == "alice").unwrap().id;
    harness.keys.revoke(&id).unwrap();
    expect(get(&harness, "/v1/models", Some(&alice)), 403, "revoked_key");

    let only_llama = harness.key_with("bob", Quota::default(), Some(vec!["llama".to_owned()]));
    expect(get(&harness, "/v1/models/gpt2/manifest", Some(&only_llama)), 403, "forbidden");
    expect(get(&harness, "/v1/models/nope/manifest", Some(&only_llama)), 404, "unknown_model");
}

#[test]
fn bad_submissions_get_their_status_and_code() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let intervention = program(&harness, &key);
    let json = canonical::encode(&intervention.program);
    let submit = |fields: &[(&str, &[u8])]| {
        let (content_type, body) = form(fields);
        post(&harness, "/v1/jobs", Some(&key), &content_type, &body)
    };

    // Not a form, a form without a program, an unknown field.
    expect(post(&harness, "/v1/jobs", Some(&key), "application/json", b"{}"), 400, "bad_request");
    expect(submit(&[("model", b"gpt2")]), 400, "bad_request");
    expect(
        submit(&[("model", b"gpt2"), ("program", json.as_bytes()), ("code", b"rm -rf /")]),
        400,
        "bad_request",
    );
    // An unknown model.
    expect(submit(&[("model", b"gpt5"), ("program", json.as_bytes())]), 404, "unknown_model");
    // Malformed JSON; an unknown IR major; an unknown operation.
    let body = expect(submit(&[("model", b"gpt2"), ("program", b"{\"ir\":")]), 422, "invalid_program");
    assert_eq!(diagnostic(&body), "malformed");
    let major = json.replacen("\"major\":1", "\"major\":7", 1);
    let body = expect(submit(&[("model", b"gpt2"), ("program", major.as_bytes())]), 422, "invalid_program");
    assert_eq!(diagnostic(&body), "unsupported_version");
    let unknown_op = json.replacen("\"read\"", "\"exec\"", 1);
    assert_ne!(unknown_op, json, "the program reads a site");
    let body =
        expect(submit(&[("model", b"gpt2"), ("program", unknown_op.as_bytes())]), 422, "invalid_program");
    assert_eq!(diagnostic(&body), "malformed");
    // A path the model does not have.
    let bad_path = json.replacen("transformer.h.1", "transformer.h.9", 1);
    let body =
        expect(submit(&[("model", b"gpt2"), ("program", bad_path.as_bytes())]), 422, "invalid_program");
    assert_eq!(diagnostic(&body), "unknown_site");
    // Tensors that are not a safetensors file.
    let body = expect(
        submit(&[
            ("model", b"gpt2"),
            ("program", json.as_bytes()),
            ("tensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"),
        ]),
        422,
        "invalid_program",
    );
    assert_eq!(diagnostic(&body), "bad_tensors");

    // Nothing of this was queued.
    let client = Client::new(&harness.url(), &key);
    let job =
        client.submit("gpt2", &intervention, &SubmitOptions::default()).expect("a valid job is accepted");
    assert_eq!(job.status().unwrap().history[0].kind, nnsight_remote::api::EventKind::Queued { position: 0 });
}

#[test]
fn a_write_of_the_wrong_shape_is_refused_naming_its_node() {
    use nnsight_remote::ir::Op;
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let mut intervention = program(&harness, &key);
    // As a hostile client would: the patching write given the one-position slice instead of the
    // whole patched activation ([1, 1, 64] for [1, 8, 64]).
    let nodes = &mut intervention.program.traces[0].invokes[1].nodes;
    let slice = nodes.iter().position(|n| matches!(n.op, Op::Slice { .. })).expect("the patch slices") as u32;
    let write = nodes.iter_mut().find(|n| matches!(n.op, Op::Write { .. })).expect("the patch writes");
    let Op::Write { value, .. } = &mut write.op else { unreachable!() };
    *value = slice;
    let json = canonical::encode(&intervention.program);
    let (content_type, body) = form(&[("model", b"gpt2"), ("program", json.as_bytes())]);
    let refused =
        expect(post(&harness, "/v1/jobs", Some(&key), &content_type, &body), 422, "invalid_program");
    assert_eq!(diagnostic(&refused), "shape_mismatch", "{refused:?}");
    let node = refused.error.diagnostics[0].node.expect("it names the node");
    assert_eq!((node.trace, node.invoke), (0, 1));
    // The dry run says the same, and the valid program's cost.
    let found = post(&harness, "/v1/jobs:validate", Some(&key), &content_type, &body);
    expect(found, 422, "invalid_program");
    let estimate = Client::new(&harness.url(), &key).validate("gpt2", &program(&harness, &key)).unwrap();
    assert_eq!(estimate.forward_passes, 2, "the patching trace and the lens trace");
    assert!(estimate.result_bytes >= 8 * 64 * 4, "{estimate:?}");
}

#[test]
fn size_limits_and_quotas_refuse_before_queueing() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let intervention = program(&harness, &key);
    let json = canonical::encode(&intervention.program);

    // A declared length over the key's limit: 413 before the body is read.
    let small = Quota { max_request_bytes: 1000, ..Quota::default() };
    let tiny_body = harness.key_with("tiny-body", small, None);
    let (content_type, body) =
        form(&[("model", b"gpt2"), ("program", json.as_bytes()), ("tensors", &vec![0u8; 4000])]);
    expect(post(&harness, "/v1/jobs", Some(&tiny_body), &content_type, &body), 413, "too_large");

    // A result larger than the key may receive: refused by validation.
    let small = Quota { max_result_bytes: 100, ..Quota::default() };
    let tiny_result = harness.key_with("tiny-result", small, None);
    let (content_type, body) = form(&[("model", b"gpt2"), ("program", json.as_bytes())]);
    let refused =
        expect(post(&harness, "/v1/jobs", Some(&tiny_result), &content_type, &body), 422, "invalid_program");
    assert_eq!(diagnostic(&refused), "limit_exceeded");

    // No room in the queue: 429 with Retry-After.
    let none_queued = harness.key_with("none-queued", Quota { max_queued: 0, ..Quota::default() }, None);
    let found = post(&harness, "/v1/jobs", Some(&none_queued), &content_type, &body);
    assert!(found.2.is_some(), "Retry-After is sent");
    expect(found, 429, "quota_exceeded");

    // Compute for the day used up: 429 with the seconds to the next day.
    let no_compute = harness.key_with("no-compute", Quota { compute_per_day: 1, ..Quota::default() }, None);
    let found = post(&harness, "/v1/jobs", Some(&no_compute), &content_type, &body);
    let retry: u64 = found.2.as_deref().expect("Retry-After").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    expect(found, 429, "quota_exceeded");
}

#[test]
fn another_keys_job_is_not_found() {
    let harness = Harness::start(|_| {});
    let (alice, bob) = (harness.key("alice"), harness.key("bob"));
    let intervention = program(&harness, &alice);
    let job =
        Client::new(&harness.url(), &alice).submit("gpt2", &intervention, &SubmitOptions::default()).unwrap();
    job.wait(false).expect("it completes");
    for path in ["", "/events", "/result"] {
        expect(get(&harness, &format!("/v1/jobs/{}{path}", job.id()), Some(&bob)), 404, "not_found");
    }
    let stolen = Client::new(&harness.url(), &bob).job(job.id()).cancel().unwrap_err();
    assert_eq!(stolen.code(), Some("not_found"));
    // Alice still has it.
    assert!(job.result().is_ok());
}

#[test]
fn an_idempotency_key_submits_once() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let intervention = program(&harness, &key);
    let client = Client::new(&harness.url(), &key);
    let options = SubmitOptions { idempotency_key: Some("retry-1".to_owned()), ..SubmitOptions::default() };
    let first = client.submit("gpt2", &intervention, &options).unwrap();
    let again = client.submit("gpt2", &intervention, &options).unwrap();
    assert_eq!(first.id(), again.id());
    let other =
        client.submit("gpt2", &intervention, &SubmitOptions { exclusive: true, ..options }).unwrap_err();
    assert_eq!(other.code(), Some("idempotency_conflict"), "{other}");
}

#[test]
fn malformed_resumes_and_unknown_jobs_are_refused() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let intervention = program(&harness, &key);
    let job =
        Client::new(&harness.url(), &key).submit("gpt2", &intervention, &SubmitOptions::default()).unwrap();
    job.wait(false).unwrap();
    let events = format!("{}/v1/jobs/{}/events", harness.url(), job.id());
    let found = answer(
        ureq::get(&events).set("Authorization", &format!("Bearer {key}")).set("Last-Event-ID", "soon").call(),
    );
    expect(found, 400, "bad_request");
    let missing = Client::new(&harness.url(), &key).job("job_000000000000000000000000");
    assert_eq!(missing.cancel().unwrap_err().code(), Some("not_found"));
    assert_eq!(missing.status().unwrap_err().code(), Some("not_found"));
    assert_eq!(missing.result().unwrap_err().code(), Some("not_found"));
    // A form whose `exclusive` is not a boolean.
    let json = canonical::encode(&intervention.program);
    let (content_type, body) =
        form(&[("model", b"gpt2"), ("program", json.as_bytes()), ("exclusive", b"maybe")]);
    expect(post(&harness, "/v1/jobs", Some(&key), &content_type, &body), 400, "bad_request");
    // A key file that is being rewritten badly does not lock anyone out.
    let path = harness.keys_path();
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{\"keys\": [").unwrap();
    let (status, ..) = get(&harness, "/v1/models", Some(&key));
    assert_eq!(status, 200, "the keys read last still hold");
    std::fs::write(&path, good).unwrap();
}

#[test]
fn retries_sent_at_once_with_one_idempotency_key_queue_one_job() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let intervention = program(&harness, &key);
    let client = Client::new(&harness.url(), &key);
    let options = SubmitOptions { idempotency_key: Some("at-once".to_owned()), ..SubmitOptions::default() };
    let ids: std::collections::BTreeSet<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| client.submit("gpt2", &intervention, &options).unwrap().id().to_owned()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(ids.len(), 1, "{ids:?}");
}
