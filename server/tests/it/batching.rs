//! Cross-user batching: jobs of several keys that pile up while the model is busy run as one
//! batched forward pass; each gets its own values back (no cross-talk), equal to its solo run
//! within a stated tolerance; an exclusive job runs alone, bit-exact; a job that fails at run
//! time is taken out and the others complete.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_remote::api::{EventKind, State};
use nnsight_remote::arch::Llama;
use nnsight_remote::client::{Job, RemoteModel, SubmitOptions};
use nnsight_remote::record::Recorder;

use super::harness::Harness;
use super::remote::steering;

type LlamaLm<B> = LanguageModel<B, LlamaForCausalLM<B>>;

/// Batched and solo runs of a forward pass agree to this (absolute, per element; values are of
/// order 1): a larger batch changes how the CPU backend blocks its matmuls, so the order of
/// float sums, nothing else (seen: 1.7e-5).
const TOLERANCE: f32 = 1e-4;

/// Prompts of one length: jobs batch only with jobs whose longest prompt has their length, so
/// that each sees exactly the padding it has alone.
const PROMPTS: [[u32; 5]; 4] = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5], [40, 41, 42, 43, 44], [3, 3, 3, 3, 3]];

/// Block 1's output, scaled by a marker, and the logits: each job's own.
fn marked<B: Backend>(
    lm: &LlamaLm<B>,
    prompt: &[u32],
    marker: f32,
) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    lm.trace(prompt.to_vec()).run(async |m| {
        let h = m.model.layers[1].output().await?;
        Ok((h * marker, m.output().await?))
    })
}

fn local() -> LlamaLm<Flex> {
    let dir = nnsight_support::fixture_dir("tiny-llama");
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap()
}

fn batch_of(job: &Job) -> usize {
    let history = job.status().unwrap().history;
    history
        .iter()
        .find_map(|e| match e.kind {
            EventKind::Running { batch, .. } => Some(batch),
            _ => None,
        })
        .expect("it ran")
}

fn max_difference(a: &burn::tensor::TensorData, b: &burn::tensor::TensorData) -> f32 {
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Starts a long generation of key `busy` and waits until it runs: jobs sent now pile up.
fn occupy(remote: &RemoteModel<Llama>) -> Job {
    let job =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 1000)?)).unwrap();
    for event in job.events(0).unwrap() {
        if matches!(event.unwrap().kind, EventKind::Progress { .. }) {
            break;
        }
    }
    job
}

#[test]
fn jobs_that_pile_up_share_a_forward_pass_and_each_gets_its_own_values() {
    let harness = Harness::start(|_| {});
    let url = harness.url();
    let busy = RemoteModel::<Llama>::connect(&url, &harness.key("busy"), "llama").unwrap();
    let long = occupy(&busy);

    let mut jobs = Vec::new();
    for (i, prompt) in PROMPTS.iter().enumerate() {
        let remote = RemoteModel::<Llama>::connect(&url, &harness.key(&format!("user{i}")), "llama").unwrap();
        let marker = (i + 1) as f32;
        let job = remote
            .submit(&SubmitOptions::default(), |lm: &LlamaLm<Recorder>, rec| {
                let (h, logits) = marked(lm, prompt, marker)?;
                rec.save("h", &h)?;
                rec.save("logits", &logits)
            })
            .unwrap();
        jobs.push((job, prompt, marker));
    }
    // An exclusive job among them runs alone.
    let alone = RemoteModel::<Llama>::connect(&url, &harness.key("alone"), "llama").unwrap();
    let exclusive = alone
        .submit(&SubmitOptions { exclusive: true, ..SubmitOptions::default() }, |lm, rec| {
            let (h, _) = marked(lm, &PROMPTS[0], 9.0)?;
            rec.save("h", &h)
        })
        .unwrap();
    long.cancel().unwrap();

    let lm = local();
    let mut worst = 0.0f32;
    for (job, prompt, marker) in &jobs {
        let saves = job.wait(false).unwrap();
        let (h, logits) = marked(&lm, *prompt, *marker).unwrap();
        worst = worst.max(max_difference(saves.get("h").unwrap(), &h.to_data()));
        worst = worst.max(max_difference(saves.get("logits").unwrap(), &logits.to_data()));
    }
    assert!(worst <= TOLERANCE, "batched results differ from solo by {worst}");
    let batches: Vec<usize> = jobs.iter().map(|(job, ..)| batch_of(job)).collect();
    assert_eq!(batches, [PROMPTS.len(); PROMPTS.len()], "the four ran as one batch");

    let saves = exclusive.wait(false).unwrap();
    assert_eq!(batch_of(&exclusive), 1);
    let (h, _) = marked(&lm, &PROMPTS[0], 9.0).unwrap();
    assert!(saves.get("h").unwrap().as_bytes() == h.to_data().as_bytes(), "exclusive is bit-exact");
}

#[test]
fn a_job_failing_in_a_batch_is_taken_out_and_the_others_complete() {
    let harness = Harness::start(|_| {});
    let url = harness.url();
    let busy = RemoteModel::<Llama>::connect(&url, &harness.key("busy"), "llama").unwrap();
    let long = occupy(&busy);

    let good = |i: usize| {
        let remote = RemoteModel::<Llama>::connect(&url, &harness.key(&format!("good{i}")), "llama").unwrap();
        remote
            .submit(&SubmitOptions::default(), |lm: &LlamaLm<Recorder>, rec| {
                rec.save("h", &marked(lm, &PROMPTS[i], 1.0)?.0)
            })
            .unwrap()
    };
    let first = good(1);
    // Indices computed from the activations (so no check before running can see them) that
    // fall outside the hidden dimension.
    let bad = RemoteModel::<Llama>::connect(&url, &harness.key("bad"), "llama")
        .unwrap()
        .submit(&SubmitOptions::default(), |lm: &LlamaLm<Recorder>, rec| {
            let picked = lm.trace(PROMPTS[0].to_vec()).run(async |m| {
                let h = m.model.layers[0].output().await?;
                let [_, seq, _] = h.dims();
                let far = h.clone().argmax(2).reshape([seq]) + 1000;
                Ok(h.select(2, far))
            })?;
            rec.save("picked", &picked)
        })
        .unwrap();
    let second = good(2);
    long.cancel().unwrap();

    let error = bad.wait(false).unwrap_err();
    assert_eq!(batch_of(&bad), 3, "it started in the batch");
    assert_eq!(error.code(), Some("run_error"), "{error}");
    assert!(error.to_string().contains("index_select"), "its own error: {error}");
    let lm = local();
    for (job, i) in [(first, 1), (second, 2)] {
        let saves = job.wait(false).unwrap();
        let h = marked(&lm, &PROMPTS[i], 1.0).unwrap().0;
        assert!(max_difference(saves.get("h").unwrap(), &h.to_data()) <= TOLERANCE);
        assert_eq!(job.status().unwrap().state, State::Completed);
        assert_eq!(batch_of(&job), 3);
    }
}

#[test]
fn generations_of_one_length_batch_too() {
    let harness = Harness::start(|_| {});
    let url = harness.url();
    let busy = RemoteModel::<Llama>::connect(&url, &harness.key("busy"), "llama").unwrap();
    let long = occupy(&busy);
    let jobs: Vec<Job> = (0..3)
        .map(|i| {
            let remote =
                RemoteModel::<Llama>::connect(&url, &harness.key(&format!("user{i}")), "llama").unwrap();
            remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 3)?)).unwrap()
        })
        .collect();
    long.cancel().unwrap();
    let expected = steering(&local(), 3).unwrap().to_data();
    for job in &jobs {
        let saves = job.wait(false).unwrap();
        assert!(max_difference(saves.get("last").unwrap(), &expected) <= TOLERANCE);
        assert_eq!(batch_of(job), 3);
    }
}
