//! Generation on the tiny GPT-2 fixture: greedy continuations equal transformers' `generate`, every
//! step is a new visit of every site, and interventions at every step (steering) change the text
//! while a trace that does nothing leaves it as plain generation makes it.

use crate::support;

use std::cell::RefCell;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::generation::{GenerateOptions, Token};
use support::B;
use support::fixture::{Expected, tiny_gpt2};

/// Transformers' new tokens of `name`, each row cut after its first end-of-sequence token.
fn reference(expected: &Expected, name: &str, eos: u32) -> Vec<Vec<u32>> {
    expected
        .rows(name)
        .into_iter()
        .map(|row| match row.iter().position(|&t| t == eos) {
            Some(at) => row[..=at].to_vec(),
            None => row,
        })
        .collect()
}

#[test]
fn greedy_generation_equals_transformers_alone_and_in_a_padded_batch() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let eos = lm.eos_ids()[0];
    let single = lm.generate(expected.text("single", "prompt"), GenerateOptions::greedy(12)).unwrap();
    assert_eq!(single.tokens, reference(&expected, "generate.single.new_ids", eos));
    assert_eq!(single.texts[0], lm.decode(&single.tokens[0]).unwrap());

    let batch = lm.generate(expected.batch_prompts(), GenerateOptions::greedy(12)).unwrap();
    assert_eq!(batch.tokens, reference(&expected, "generate.batch.new_ids", eos));
    assert_eq!(batch.tokens[0], single.tokens[0], "a prompt continues alike alone and in a batch");
}

#[test]
fn the_kv_cache_gives_what_recomputing_the_whole_sequence_gives() {
    let lm = tiny_gpt2();
    let prompt = "The Colosseum is in";
    let generated = lm.generate(prompt, GenerateOptions::greedy(6).ignore_eos()).unwrap();
    let mut ids = lm.encode(prompt).unwrap();
    for &token in &generated.tokens[0] {
        let logits = lm.forward(ids.clone()).unwrap();
        let [_, n, vocab] = logits.dims();
        let next = logits.slice([0..1, n - 1..n]).reshape([vocab]).argmax(0).into_scalar() as u32;
        assert_eq!(next, token);
        ids.push(token);
    }
}

#[test]
fn every_step_is_a_new_visit_of_every_site() {
    let lm = tiny_gpt2();
    let prompt = "The Eiffel Tower is in the city of";
    let tokens = lm.encode(prompt).unwrap().len();
    let options = GenerateOptions::greedy(4).ignore_eos();
    let (shapes, generation) = lm
        .generator(prompt, options.clone())
        .run(async |m| {
            let mut shapes = Vec::new();
            for step in 0..4 {
                shapes.push(m.transformer.h[1].output().at(step).await?.dims());
            }
            // The model's output at each step is that step's logits.
            shapes.push(m.output().at(3).await?.dims());
            Ok(shapes)
        })
        .unwrap();
    assert_eq!(shapes[0], [1, tokens, 64], "step 0 is the prefill");
    assert!(shapes[1..4].iter().all(|s| *s == [1, 1, 64]), "later steps see one new token: {shapes:?}");
    assert_eq!(shapes[4], [1, 1, 512]);
    // A trace that only reads leaves the generation as it is without a trace.
    assert_eq!(generation, lm.generate(prompt, options).unwrap());
}

#[test]
fn steering_at_every_step_changes_the_text_and_the_plain_run_is_unchanged() {
    let lm = tiny_gpt2();
    let prompt = "The Colosseum is in";
    let options = GenerateOptions::greedy(8).ignore_eos();
    let plain = lm.generate(prompt, options.clone()).unwrap();

    // Add 1.5× layer 0's output at the last position to itself, at every step.
    let ((), steered) = lm
        .generator(prompt, options.clone())
        .run(async |m| {
            m.transformer.h[0].output().every(|h: Tensor<B, 3>| {
                let n = h.dims()[1];
                let last = h.clone().narrow(1, n - 1, 1);
                h.slice_assign([0..1, n - 1..n], last * 2.5)
            })
        })
        .unwrap();
    assert_ne!(steered.tokens, plain.tokens, "steering changes the continuation");

    // Steering only steps 2..4 changes nothing before step 2.
    let ((), partly) = lm
        .generator(prompt, options.clone())
        .run(async |m| m.transformer.h[0].output().steps(2..4, |h: Tensor<B, 3>| h * 3.0))
        .unwrap();
    assert_eq!(partly.tokens[0][..2], plain.tokens[0][..2]);

    // A trace whose body does nothing generates exactly what plain generation does.
    let ((), traced) = lm.generator(prompt, options).run(async |_| Ok(())).unwrap();
    assert_eq!(traced, plain);
}

#[test]
fn a_step_that_never_happens_is_an_error_at_the_waiting_line() {
    let lm = tiny_gpt2();
    let (steps, _) = lm
        .generator("The Colosseum is in", GenerateOptions::greedy(3).ignore_eos())
        .run(async |m| {
            // Read every step until the generation ends: the loop is cut short, values kept.
            let mut seen = 0;
            for step in 0.. {
                match m.lm_head.output().at(step).await {
                    Ok(_) => seen += 1,
                    Err(Error::NotReached { .. }) => break,
                    Err(other) => return Err(other),
                }
            }
            Ok(seen)
        })
        .unwrap();
    assert_eq!(steps, 3);
}

#[test]
fn a_generation_whose_body_fails_ends_at_that_step() {
    // A failed trace's remaining steps would be computed for nothing (a cancelled remote job held
    // its worker until its budget ran out): the loop ends at the step the body failed in.
    let lm = tiny_gpt2();
    let prompt = "The Colosseum is in";
    let options = GenerateOptions::greedy(50).ignore_eos();
    let plain = lm.generate(prompt, options.clone()).unwrap();
    let tokens = RefCell::new(0usize);
    let err = lm
        .generator(prompt, options.clone())
        .on_token(|_| *tokens.borrow_mut() += 1)
        .run(async |m| -> nnsight::Result<()> {
            m.lm_head.output().at(2).await?;
            Err(Error::Input { problem: "the body gave up at step 2".into() })
        })
        .unwrap_err();
    assert!(matches!(&err, Error::Input { problem } if problem.contains("gave up")), "{err}");
    assert_eq!(tokens.take(), 2, "steps 0 and 1 chose their tokens; step 2 failed, none ran after it");

    // A standing edit the engine refuses (the wrong shape) fails the first step.
    let err = lm
        .generator(prompt, options.clone())
        .on_token(|_| *tokens.borrow_mut() += 1)
        .run(async |m| {
            m.transformer.h[0].output().every(|_: Tensor<B, 3>| Tensor::zeros([1, 1, 3], &Default::default()))
        })
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert_eq!(tokens.take(), 0, "the prefill failed");

    // The model is unchanged.
    assert_eq!(lm.generate(prompt, options).unwrap(), plain);
}

#[test]
fn streaming_sees_every_token_and_sampling_is_seeded() {
    let lm = tiny_gpt2();
    let prompts = ["The Colosseum is in", "The Eiffel Tower is in"];
    let streamed = RefCell::new(Vec::<Token>::new());
    let options = GenerateOptions::sampled(6, 0.8, 42).top_k(20).top_p(0.95).ignore_eos();
    let ((), first) = lm
        .generator(prompts, options.clone())
        .on_token(|t| streamed.borrow_mut().push(t.clone()))
        .run(async |_| Ok(()))
        .unwrap();
    let streamed = streamed.into_inner();
    assert_eq!(streamed.len(), 12);
    for row in 0..2 {
        let ids: Vec<u32> = streamed.iter().filter(|t| t.prompt == row).map(|t| t.id).collect();
        assert_eq!(ids, first.tokens[row]);
    }
    assert_eq!(lm.generate(prompts, options).unwrap(), first, "the same seed, the same text");
    let other = lm.generate(prompts, GenerateOptions::sampled(6, 0.8, 43).ignore_eos()).unwrap();
    assert_ne!(other.tokens, first.tokens);
}

#[test]
fn prompts_longer_than_the_context_allows_are_errors() {
    let lm = tiny_gpt2();
    let err = lm.generate("The Colosseum is in", GenerateOptions::greedy(100_000)).unwrap_err();
    assert!(
        matches!(&err, Error::Input { problem } if problem.contains("exceed the model's context")),
        "{err}"
    );
    let err = lm.generate("x", GenerateOptions::sampled(3, 0.0, 1)).unwrap_err();
    assert!(matches!(&err, Error::Input { problem } if problem.contains("temperature")), "{err}");
}

#[test]
fn each_steps_logits_equal_a_forward_pass_on_the_text_so_far() {
    // Two prompts of different lengths (left-padded together), sampled: the logits each token
    // was chosen from equal one plain forward pass on the prompt and the tokens before it.
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let prompts = expected.batch_prompts();
    let options = GenerateOptions::sampled(6, 0.8, 7).ignore_eos().with_logits();
    let generation = lm.generate(prompts.clone(), options).unwrap();
    let prompt_tokens = &generation.prompt_tokens;
    let log_probs = generation.token_log_probs().unwrap();
    for (p, steps) in generation.logits.iter().enumerate() {
        assert_eq!(steps.len(), generation.tokens[p].len());
        for (s, row) in steps.iter().enumerate() {
            let text: Vec<u32> = prompt_tokens[p].iter().chain(&generation.tokens[p][..s]).copied().collect();
            let logits = lm.forward(text).unwrap();
            let [_, tokens, vocab] = logits.dims();
            let by_hand: Tensor<B, 1> = logits.narrow(1, tokens - 1, 1).reshape([vocab]);
            let ours = Tensor::<B, 1>::from_data(TensorData::new(row.clone(), [vocab]), &Default::default());
            support::fixture::assert_close(&format!("prompt {p} step {s}"), &ours, &by_hand, 1e-4);
            let chosen = by_hand.clone().narrow(0, generation.tokens[p][s] as usize, 1).into_scalar();
            let log_sum = by_hand.exp().sum().log().into_scalar();
            assert!((log_probs[p][s] - (chosen - log_sum)).abs() < 1e-4, "log-probability of step {s}");
        }
    }
    // Without `with_logits` nothing is kept, and asking for log-probabilities says so.
    let plain = lm.generate(prompts, GenerateOptions::greedy(3)).unwrap();
    assert!(plain.logits.is_empty());
    assert!(plain.token_log_probs().unwrap_err().to_string().contains("with_logits"));
}

#[test]
fn each_steps_scores_are_its_logits_processed_as_transformers_output_scores() {
    // Sampling with temperature 0.8 and top-k 5: a step's scores are its logits / 0.8 for the
    // five largest, −∞ for the rest; greedy scores are the logits. The chosen token is a kept one.
    let lm = tiny_gpt2();
    let sampled = GenerateOptions::sampled(5, 0.8, 11).top_k(5).ignore_eos().with_logits().with_scores();
    let generation = lm.generate("The Eiffel Tower is in", sampled).unwrap();
    for (s, (logits, scores)) in generation.logits[0].iter().zip(&generation.scores[0]).enumerate() {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        for (rank, &id) in order.iter().enumerate() {
            let expected = if rank < 5 { logits[id] / 0.8 } else { f32::NEG_INFINITY };
            assert_eq!(scores[id], expected, "step {s}, token {id}");
        }
        assert!(scores[generation.tokens[0][s] as usize].is_finite(), "step {s} chose a filtered token");
    }
    let greedy = lm
        .generate("The Eiffel Tower is in", GenerateOptions::greedy(3).with_logits().with_scores())
        .unwrap();
    assert_eq!(greedy.scores, greedy.logits);
    assert!(lm.generate("The Eiffel Tower is in", GenerateOptions::greedy(3)).unwrap().scores.is_empty());
}
