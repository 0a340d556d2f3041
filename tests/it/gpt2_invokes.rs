//! Seed workflows on the tiny GPT-2 fixture: cross-prompt activation sharing in one batched trace,
//! and gradients of block outputs against PyTorch autograd (and a finite difference).

use crate::support;

use burn::backend::Autodiff;
use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use support::B;
use support::fixture::{Expected, assert_close, fixture_dir, tiny_gpt2};

type A = Autodiff<B>;

/// The last position's vector of a `[1, T, D]` tensor, as `[1, 1, D]`.
fn last<Bk: Backend>(h: Tensor<Bk, 3>) -> Tensor<Bk, 3> {
    let tokens = h.dims()[1];
    h.narrow(1, tokens - 1, 1)
}

/// `h` with its last position replaced by `v` (`[1, 1, D]`).
fn with_last<Bk: Backend>(h: Tensor<Bk, 3>, v: Tensor<Bk, 3>) -> Tensor<Bk, 3> {
    let tokens = h.dims()[1];
    h.slice_assign([0..1, tokens - 1..tokens], v)
}

#[test]
fn cross_prompt_sharing_in_one_batch_equals_two_separate_traces() {
    let lm = tiny_gpt2();
    let (cat, dog) = ("The cat sat on the", "The dog ran through the");
    let layer = lm.model().transformer.h.len() - 1;

    // One trace, one batched forward: invoke 0 reads, invoke 1 patches.
    let cat_hidden = Shared::new("the cat prompt's last-position block output");
    let (cat_logits, dog_logits) = lm
        .tracer()
        .invoke(cat, async |m| {
            cat_hidden.set(last(m.transformer.h[layer].output().await?))?;
            m.output().await
        })
        .invoke(dog, async |m| {
            m.transformer.h[layer].output().try_edit(|h| Ok(with_last(h, cat_hidden.get()?))).await?;
            m.output().await
        })
        .run()
        .unwrap();

    // Two traces: read, then patch.
    let read = lm.trace(cat).run(async |m| Ok(last(m.transformer.h[layer].output().await?))).unwrap();
    let patched = lm
        .trace(dog)
        .run(async |m| {
            m.transformer.h[layer].output().edit(|h| with_last(h, read.clone())).await?;
            m.output().await
        })
        .unwrap();
    let alone = lm.forward(cat).unwrap();

    // Left padding moves the shorter prompt right; its last position is the batch's last column.
    assert_close("cat logits, last position", &last(cat_logits), &last(alone), 1e-4);
    assert_close("patched dog logits, last position", &last(dog_logits.clone()), &last(patched), 1e-4);
    let plain_dog = lm.forward(dog).unwrap();
    let moved = (last(dog_logits) - last(plain_dog)).abs().max().into_scalar();
    assert!(moved > 1e-3, "the patch changed the dog prompt's prediction ({moved})");
}

/// The tiny GPT-2 on the autodiff backend, its clean and corrupted prompts and answer ids.
struct Gradients {
    lm: LanguageModel<A, Gpt2LMHeadModel<A>>,
    expected: Expected,
    clean: Vec<u32>,
    corrupted: Vec<u32>,
    answer: usize,
    distractor: usize,
}

impl Gradients {
    fn new() -> Self {
        let dir = fixture_dir("tiny-gpt2");
        let lm = LanguageModel::<A, Gpt2LMHeadModel<A>>::from_pretrained(
            dir.to_str().unwrap(),
            &Default::default(),
        )
        .unwrap();
        let expected = Expected::load();
        let clean = expected.rows("patch.clean_ids").remove(0);
        let corrupted = expected.rows("patch.corrupt_ids").remove(0);
        let ids = &expected.rows("patch.answer_ids")[0];
        Gradients { lm, expected, clean, corrupted, answer: ids[0] as usize, distractor: ids[1] as usize }
    }

    /// `logit(answer) − logit(distractor)` at the last position of row `row`, as a `[1]` tensor.
    fn metric<Bk: Backend>(&self, logits: Tensor<Bk, 3>, row: usize) -> Tensor<Bk, 1> {
        let [_, tokens, vocab] = logits.dims();
        let last = logits.narrow(0, row, 1).narrow(1, tokens - 1, 1).reshape([vocab]);
        last.clone().narrow(0, self.answer, 1) - last.narrow(0, self.distractor, 1)
    }

    /// The metric of the clean prompt with `delta` added to block `layer`'s output at
    /// (`position`, `dim`).
    fn perturbed(&self, layer: usize, position: usize, dim: usize, delta: f32) -> f32 {
        let logits = self
            .lm
            .trace(self.clean.clone())
            .run(async |m| {
                m.transformer.h[layer]
                    .output()
                    .edit(|h| {
                        let bump =
                            h.zeros_like().slice_fill([0..1, position..position + 1, dim..dim + 1], delta);
                        h + bump
                    })
                    .await?;
                m.output().await
            })
            .unwrap();
        self.metric(logits, 0).into_scalar()
    }
}

#[test]
fn gradients_of_block_outputs_match_pytorch_autograd_and_a_finite_difference() {
    let g = Gradients::new();
    let (tracked, logits) =
        g.lm.trace(g.clean.clone())
            .run(async |m| {
                let mut tracked = Vec::new();
                for block in &m.transformer.h {
                    tracked.push(block.output().track_grad().await?);
                }
                Ok((tracked, m.output().await?))
            })
            .unwrap();
    let metric = g.metric(logits, 0);
    let value = metric.clone().into_scalar();
    assert!((value - g.expected.scalar("patch.clean_metric")).abs() < 1e-4);
    let grads = metric.backward();
    for (layer, tracked) in tracked.iter().enumerate() {
        let grad = tracked.grad(&grads).unwrap();
        let reference = g.expected.tensor::<3>(&format!("grad.hidden.{layer}"));
        assert_close(&format!("d metric / d h[{layer}]"), &grad, &reference, 1e-4);
    }

    // A central difference on the coordinate with the largest gradient of block 0.
    let grad = tracked[0].grad(&grads).unwrap();
    let values = grad.to_data().to_vec::<f32>().unwrap();
    let (index, &slope) =
        values.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).expect("non-empty");
    let d = grad.dims()[2];
    let (position, dim) = (index / d, index % d);
    let eps = 1e-2;
    let difference = (g.perturbed(0, position, dim, eps) - g.perturbed(0, position, dim, -eps)) / (2.0 * eps);
    assert!(
        (difference - slope).abs() <= 2e-3 * (1.0 + slope.abs()),
        "finite difference {difference} vs gradient {slope} at position {position}, dim {dim}"
    );
}

#[test]
fn gradients_through_invoke_narrowing_equal_the_single_prompt_gradients() {
    let g = Gradients::new();
    let (tracked, logits) =
        g.lm.tracer()
            .invoke(g.corrupted.clone(), async |_| Ok(()))
            .invoke(g.clean.clone(), async |m| m.transformer.h[0].output().track_grad().await)
            .invoke_all(async |m| m.output().await)
            .run()
            .map(|((), tracked, logits)| (tracked, logits))
            .unwrap();
    assert_eq!(tracked.value().dims()[0], 1, "invoke 1 tracks its own row");
    let grads = g.metric(logits, 1).backward();
    let grad = tracked.grad(&grads).unwrap();
    assert_close("d metric / d h[0] in a batch", &grad, &g.expected.tensor::<3>("grad.hidden.0"), 1e-4);
}

#[test]
fn an_edited_language_model_applies_its_edit_to_traces_and_invokes() {
    let lm = tiny_gpt2();
    let prompt = "The Colosseum is in";
    let ablated = lm.edit(async |m| m.transformer.h[0].mlp.output().edit(|h| h.zeros_like()).await);

    let by_hand = lm
        .trace(prompt)
        .run(async |m| {
            m.transformer.h[0].mlp.output().edit(|h| h.zeros_like()).await?;
            m.output().await
        })
        .unwrap();
    let edited = ablated.trace(prompt).run(async |m| m.output().await).unwrap();
    assert_close("edited trace", &edited, &by_hand, 0.0);
    let (in_batch, ()) = ablated
        .tracer()
        .invoke(prompt, async |m| m.output().await)
        .invoke("The Eiffel Tower is in the city of", async |_| Ok(()))
        .run()
        .unwrap();
    assert_close("edited invoke, last position", &last(in_batch), &last(by_hand.clone()), 1e-4);

    // The language model itself is unchanged.
    let plain = lm.forward(prompt).unwrap();
    assert!((plain - by_hand).abs().max().into_scalar() > 1e-4);
}
