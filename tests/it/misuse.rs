//! Misuse: bad input and odd model code, as a user would try them. Each case asserts the typed
//! error (never a panic, never a silently wrong value) AND that the model gives bit-identical
//! results afterwards.

use crate::support;

use std::any::Any;
use std::fs;
use std::sync::Arc;

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::FloatDType;
use nnsight::prelude::*;
use nnsight::{Error, HookPoint};
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use support::fixture::{TinyGpt2, fixture_dir, tiny_gpt2};
use support::llama_fixture::{copy_of_tiny_llama, load_llama};
use support::models::{Block, Transformer};
use support::{B, assert_differs, assert_identical, input};

/// A model whose forward calls another model by hand: `helper` is not part of its module tree
/// (it is not a field burn or nnsight sees), so the helper's calls are not sites of its traces —
/// although the helper has a `blocks` list at the same slot.
#[derive(Module, Debug, Inspectable)]
pub(crate) struct Outer<B: Backend> {
    pub(crate) blocks: Vec<Block<B>>,
    pub(crate) head: Linear<B>,
    /// A `Transformer<B>` (type-erased: burn's derive sees a field mentioning `B` as a module).
    #[module(skip)]
    pub(crate) helper: Arc<dyn Any + Send + Sync>,
    /// Run a trace of the helper inside the forward, whose body ends before the helper's forward
    /// starts: by finishing (`Some(false)`) or by failing (`Some(true)`).
    #[module(skip)]
    pub(crate) nested: Option<bool>,
}

#[inspect]
impl<B: Backend> Outer<B> {
    pub(crate) fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let helper = self.helper();
        let side = helper.forward(x.clone());
        if let Some(fails) = self.nested {
            let nested = helper.trace(x.clone()).run(async |_| match fails {
                true => Err(Error::custom("the nested body fails before its forward")),
                false => Ok(()),
            });
            assert_eq!(nested.is_err(), fails);
        }
        let mut h = x;
        for block in &self.blocks {
            h = block.forward(h);
        }
        self.head.forward(h) + side
    }
}

fn outer(nested: Option<bool>) -> Outer<B> {
    let device = Default::default();
    let template = Transformer::<B>::new(2, &device);
    Outer {
        blocks: Transformer::<B>::new(2, &device).blocks,
        head: LinearConfig::new(Transformer::<B>::D, 3).init(&device),
        helper: Arc::new(template),
        nested,
    }
}

impl<B: Backend> Outer<B> {
    fn helper(&self) -> &Transformer<B> {
        self.helper.downcast_ref().expect("the helper is a Transformer of this backend")
    }

    /// The forward with block `at`'s output replaced by `f(output)`, by hand.
    fn by_hand(&self, x: Tensor<B, 3>, at: usize, f: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>) -> Tensor<B, 3> {
        let side = self.helper().forward(x.clone());
        let mut h = x;
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(h);
            if i == at {
                h = f(h);
            }
        }
        self.head.forward(h) + side
    }
}

#[test]
fn a_model_called_by_hand_inside_the_forward_is_not_part_of_the_trace() {
    let model = outer(None);
    let x = input([1, 4, Transformer::<B>::D], 1);
    let plain = model.forward(x.clone());
    // The body's read is the outer model's own block 1, and its edit lands there only.
    let (h1, patched) = model
        .trace(x.clone())
        .run(async |m| {
            let h1 = m.blocks[1].output().await?;
            m.blocks[1].output().replace(h1.clone() * 2.0).await?;
            Ok((h1, m.output().await?))
        })
        .unwrap();
    let own = model.blocks[1].forward(model.blocks[0].forward(x.clone()));
    assert_identical(&h1, &own);
    assert_identical(&patched, &model.by_hand(x.clone(), 1, |h| h * 2.0));
    // The outer model's block 1 runs once per forward: there is no second visit.
    let second = model.trace(x.clone()).run(async |m| m.blocks[1].output().at(1).await);
    assert!(matches!(second, Err(Error::NotReached { .. })), "{second:?}");
    assert_identical(&model.forward(x), &plain);
}

#[test]
fn a_trace_run_inside_a_traced_forward_leaves_the_outer_trace_on() {
    for fails in [false, true] {
        let model = outer(Some(fails));
        let x = input([1, 4, Transformer::<B>::D], 2);
        let plain = model.forward(x.clone());
        let (h0, out) = model
            .trace(x.clone())
            .run(async |m| {
                let h0 = m.blocks[0].output().await?;
                m.blocks[0].output().replace(h0.zeros_like()).await?;
                Ok((h0, m.output().await?))
            })
            .unwrap_or_else(|e| panic!("the outer trace failed (nested body fails: {fails}): {e}"));
        assert_identical(&h0, &model.blocks[0].forward(x.clone()));
        assert_identical(&out, &model.by_hand(x.clone(), 0, |h| h.zeros_like()));
        assert_identical(&model.forward(x), &plain);
    }
}

#[test]
fn a_skip_value_of_the_wrong_shape_is_a_shape_mismatch_naming_the_module() {
    let device = Default::default();
    let model = Transformer::<B>::new(2, &device);
    let x = input([1, 5, Transformer::<B>::D], 3);
    let plain = model.forward(x.clone());
    let d = Transformer::<B>::D;
    // Layer norm, MLP (expand/matmul downstream), attention pattern (broadcast in matmul), the
    // twice-called projection.
    let wrong = Tensor::<B, 3>::zeros([1, 4, d], &device);
    let cases: [(&str, nnsight::Result<Tensor<B, 3>>); 4] = [
        (
            "blocks.0.ln_1",
            model.trace(x.clone()).run(async |m| {
                m.blocks[0].ln_1.skip(wrong.clone()).await?;
                m.output().await
            }),
        ),
        (
            "blocks.0.mlp",
            model.trace(x.clone()).run(async |m| {
                m.blocks[0].mlp.skip(Tensor::zeros([1, 5, 4 * d], &device)).await?;
                m.output().await
            }),
        ),
        (
            "blocks.1.attn.pattern",
            model.trace(x.clone()).run(async |m| {
                m.blocks[1].attn.pattern.skip(Tensor::<B, 3>::zeros([1, 5, 4], &device)).await?;
                m.output().await
            }),
        ),
        (
            "proj",
            model.trace(x.clone()).run(async |m| {
                m.proj.skip(Tensor::<B, 3>::zeros([1, 5, 3], &device)).await?;
                m.output().await
            }),
        ),
    ];
    for (path, result) in cases {
        let Err(Error::ShapeMismatch { site, expected, found }) = &result else {
            panic!("skipping {path}: expected a shape mismatch, got {result:?}")
        };
        assert!(site.starts_with(&format!("{path}.input.i0")) && site.ends_with("(skip)"), "{site}");
        assert_ne!(expected, found);
        assert_identical(&model.forward(x.clone()), &plain);
    }
    // A skip of the right shape still replaces the module.
    let skipped = model
        .trace(x.clone())
        .run(async |m| {
            m.blocks[0].mlp.skip(Tensor::zeros([1, 5, d], &device)).await?;
            m.output().await
        })
        .unwrap();
    assert_differs(&skipped, &plain);
}

#[test]
fn a_replacement_of_another_element_type_is_a_type_mismatch() {
    let device = Default::default();
    let model = Transformer::<B>::new(2, &device);
    let x = input([1, 5, Transformer::<B>::D], 4);
    let plain = model.forward(x.clone());
    for dtype in [FloatDType::F16, FloatDType::F64] {
        let result = model.trace(x.clone()).run(async |m| {
            let h = m.blocks[0].output().await?;
            m.blocks[0].output().replace(h.cast(dtype)).await?;
            m.output().await
        });
        let Err(Error::TypeMismatch { site, expected, found }) = &result else {
            panic!("expected a type mismatch for {dtype:?}, got {result:?}")
        };
        assert_eq!((site.as_str(), *expected), ("blocks.0.output.i0", "f32"));
        assert_ne!(*found, "f32");
        // The skip value is checked the same way.
        let result = model.trace(x.clone()).run(async |m| {
            m.blocks[1]
                .ln_2
                .skip(Tensor::<B, 3>::zeros([1, 5, Transformer::<B>::D], &device).cast(dtype))
                .await?;
            m.output().await
        });
        assert!(matches!(result, Err(Error::TypeMismatch { .. })), "{result:?}");
        assert_identical(&model.forward(x.clone()), &plain);
    }
}

/// Logits of the tiny GPT-2 on a fixed prompt, untraced.
fn gpt2_logits(lm: &TinyGpt2) -> Tensor<B, 3> {
    lm.forward("The quick brown fox").unwrap()
}

#[test]
fn token_ids_written_by_a_body_are_checked_against_the_vocabulary() {
    let lm = tiny_gpt2();
    let plain = gpt2_logits(&lm);
    let vocab = lm.model().transformer.wte.weight.val().dims()[0] as i64;
    for bad in [vocab, vocab + 1000, -1] {
        // Into the root input.
        let root = lm.trace("The quick brown fox").run(async |m| {
            let ids = m.input().await?;
            m.input().replace(ids.ones_like() * bad).await?;
            m.output().await
        });
        // Into the embedding's input.
        let wte = lm.trace("The quick brown fox").run(async |m| {
            m.transformer.wte.input().edit(|ids| ids.zeros_like() + bad).await?;
            m.output().await
        });
        for result in [root, wte] {
            let Err(Error::Input { problem }) = &result else { panic!("id {bad}: {result:?}") };
            assert!(
                problem.contains("transformer.wte.input.i0") && problem.contains(&bad.to_string()),
                "{problem}"
            );
        }
        assert_identical(&gpt2_logits(&lm), &plain);
    }
    // Ids in the vocabulary still go through.
    let ones = lm
        .trace("The quick brown fox")
        .run(async |m| {
            m.transformer.wte.input().edit(|ids| ids.ones_like()).await?;
            m.output().await
        })
        .unwrap();
    assert_differs(&ones, &plain);
}

#[test]
fn max_new_tokens_near_usize_max_is_an_input_error() {
    let lm = tiny_gpt2();
    let plain = gpt2_logits(&lm);
    for count in [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1] {
        let result = lm.generate("The quick brown fox", GenerateOptions::greedy(count));
        let Err(Error::Input { problem }) = &result else { panic!("{count}: {result:?}") };
        assert!(problem.contains("exceed the model's context"), "{problem}");
    }
    assert_identical(&gpt2_logits(&lm), &plain);
    assert_eq!(lm.generate("The quick brown fox", GenerateOptions::greedy(2)).unwrap().tokens[0].len(), 2);
}

/// A copy of the tiny GPT-2 directory whose config.json is changed by `edit`.
fn gpt2_with_config(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["model.safetensors", "tokenizer.json"] {
        fs::copy(fixture_dir("tiny-gpt2").join(name), tmp.path().join(name)).unwrap();
    }
    let text = fs::read_to_string(fixture_dir("tiny-gpt2/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    tmp
}

fn load_gpt2(dir: &std::path::Path) -> Result<TinyGpt2, Error> {
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
}

fn assert_load_error<T: std::fmt::Debug>(result: Result<T, Error>, parts: &[&str]) {
    let Err(error @ Error::Load { .. }) = &result else { panic!("expected a load error, got {result:?}") };
    let message = error.to_string();
    for part in parts {
        assert!(message.contains(part), "`{part}` is not in: {message}");
    }
}

#[test]
fn pad_and_eos_ids_outside_the_vocabulary_are_load_errors() {
    let vocab = tiny_gpt2().model().transformer.wte.weight.val().dims()[0];
    for field in ["pad_token_id", "eos_token_id"] {
        let dir = gpt2_with_config(|c| c[field] = serde_json::json!(vocab + 5));
        assert_load_error(load_gpt2(dir.path()), &[field, &(vocab + 5).to_string(), "vocab"]);
    }
    for field in ["pad_token_id", "eos_token_id"] {
        let dir = copy_of_tiny_llama();
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let vocab = config["vocab_size"].as_u64().unwrap();
        config[field] = serde_json::json!(vocab);
        fs::write(&path, config.to_string()).unwrap();
        assert_load_error(load_llama(dir.path()), &[field, &vocab.to_string()]);
    }
}

#[test]
fn a_gpt2_config_of_another_architecture_or_fewer_layers_is_a_load_error() {
    let dir = gpt2_with_config(|c| c["model_type"] = serde_json::json!("llama"));
    assert_load_error(load_gpt2(dir.path()), &["model_type", "llama"]);
    let dir = gpt2_with_config(|c| c["n_layer"] = serde_json::json!(1));
    assert_load_error(load_gpt2(dir.path()), &["n_layer is 1", "h.1."]);
    let dir = copy_of_tiny_llama();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["num_hidden_layers"] = serde_json::json!(1);
    fs::write(&path, config.to_string()).unwrap();
    assert_load_error(load_llama(dir.path()), &["num_hidden_layers is 1", "layers.1."]);
}

#[test]
fn decoding_an_id_outside_the_vocabulary_is_an_input_error() {
    let lm = tiny_gpt2();
    let vocab = lm.model().transformer.wte.weight.val().dims()[0] as u32;
    for ids in [vec![vocab], vec![1, 2, u32::MAX]] {
        let result = lm.decode(&ids);
        let Err(Error::Input { problem }) = &result else { panic!("{ids:?}: {result:?}") };
        assert!(problem.contains("outside the vocabulary"), "{problem}");
    }
    assert!(matches!(lm.token_text(vocab), Err(Error::Input { .. })));
    assert!(lm.decode(&[1, 2]).is_ok());
}

/// Lists of zero-sized modules: one hook point per block, and activations.
#[derive(Module, Debug, Inspectable)]
pub(crate) struct Hooked<B: Backend> {
    pub(crate) layers: Vec<Linear<B>>,
    pub(crate) hooks: Vec<HookPoint>,
    pub(crate) acts: Vec<Relu>,
    pub(crate) norm: LayerNorm<B>,
    /// Call the activations through a loop variable (their element cannot be told).
    pub(crate) by_loop: bool,
}

#[inspect]
impl<B: Backend> Hooked<B> {
    pub(crate) fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = self.hooks[i].forward(self.acts[i].forward(layer.forward(h)));
        }
        if self.by_loop {
            for act in &self.acts {
                h = act.forward(h);
            }
        }
        self.norm.forward(h)
    }
}

fn hooked(by_loop: bool) -> Hooked<B> {
    let device = Default::default();
    Hooked {
        layers: (0..3).map(|_| LinearConfig::new(6, 6).init(&device)).collect(),
        hooks: vec![HookPoint::new(); 3],
        acts: vec![Relu::new(); 3],
        norm: LayerNormConfig::new(6).init(&device),
        by_loop,
    }
}

#[test]
fn lists_of_zero_sized_modules_have_one_site_per_element() {
    let model = hooked(false);
    let x = input([2, 6], 5);
    let plain = model.forward(x.clone());
    let (h1, a2, out) = model
        .trace(x.clone())
        .run(async |m| {
            let h1: Tensor<B, 2> = m.hooks[1].output().await?;
            let a2: Tensor<B, 2> = m.acts[2].output().await?;
            m.hooks[2].output().replace(a2.clone() * 3.0).await?;
            Ok((h1, a2, m.output().await?))
        })
        .unwrap();
    // By hand: the hook after layer 1, the activation after layer 2, the patched hook 2.
    let r = |t: Tensor<B, 2>| burn::tensor::activation::relu(t);
    let by_hand_h1 = r(model.layers[1].forward(r(model.layers[0].forward(x.clone()))));
    let by_hand_a2 = r(model.layers[2].forward(by_hand_h1.clone()));
    assert_identical(&h1, &by_hand_h1);
    assert_identical(&a2, &by_hand_a2);
    assert_identical(&out, &model.norm.forward(by_hand_a2 * 3.0));
    assert_identical(&model.forward(x), &plain);
}

#[test]
fn a_zero_sized_module_called_through_a_loop_variable_is_an_error() {
    let model = hooked(true);
    let x = input([2, 6], 6);
    let plain = model.forward(x.clone());
    let result = model.trace(x.clone()).run(async |m| m.norm.output::<Tensor<B, 2>>().await);
    let Err(Error::Unsupported { what }) = &result else { panic!("{result:?}") };
    assert!(what.contains("`acts`") && what.contains("self.acts[i]"), "{what}");
    assert_identical(&model.forward(x), &plain);
}

/// A time-major forward: the block transposes `[batch, seq, d]` to `[seq, batch, d]` and calls
/// its projection on that, declaring where the batch is.
#[derive(Module, Debug, Inspectable)]
pub(crate) struct TimeMajor<B: Backend> {
    pub(crate) proj: Linear<B>,
}

#[inspect(batch_dim = 1)]
impl<B: Backend> TimeMajor<B> {
    pub(crate) fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj.forward(x.swap_dims(0, 1)).swap_dims(0, 1)
    }
}

/// A forward that merges the batch into the rows of a matrix (`[batch * seq, d]`), undeclared.
#[derive(Module, Debug, Inspectable)]
pub(crate) struct Flattening<B: Backend> {
    pub(crate) time: TimeMajor<B>,
    pub(crate) proj: Linear<B>,
}

#[inspect]
impl<B: Backend> Flattening<B> {
    pub(crate) fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, d] = x.dims();
        let h = self.time.forward(x);
        self.proj.forward(h.reshape([batch * seq, d])).reshape([batch, seq, d])
    }
}

#[test]
fn invokes_see_their_rows_along_the_declared_batch_dimension_or_get_an_error() {
    let device = Default::default();
    let model = Flattening::<B> {
        time: TimeMajor { proj: LinearConfig::new(4, 4).init(&device) },
        proj: LinearConfig::new(4, 4).init(&device),
    };
    // Two invokes of one row each, two tokens: seq == batch, where dimension 0 would be wrong.
    let (a, b) = (input([1, 2, 4], 7), input([1, 2, 4], 8));
    let plain = model.forward(Tensor::cat(vec![a.clone(), b.clone()], 0));
    let ((seen_a, out), seen_b) = model
        .tracer()
        .invoke(a.clone(), async |m| Ok((m.time.proj.output::<Tensor<B, 3>>().await?, m.output().await?)))
        .invoke(b.clone(), async |m| {
            let h: Tensor<B, 3> = m.time.proj.output().await?;
            m.time.proj.output().replace(h.zeros_like()).await?;
            Ok(h)
        })
        .run()
        .unwrap();
    // Each invoke's rows, time-major ([seq, 1, d]), equal the projection of its own input.
    assert_identical(&seen_a, &model.time.proj.forward(a.clone().swap_dims(0, 1)));
    assert_identical(&seen_b, &model.time.proj.forward(b.clone().swap_dims(0, 1)));
    // Invoke 1's zeros landed in its column only: invoke 0's output is the plain one.
    assert_identical(&out, &plain.clone().narrow(0, 0, 1));
    // The merged `[batch * seq, d]` rows cannot be told apart: an error, not the whole batch.
    let merged = model
        .tracer()
        .invoke(a.clone(), async |m| m.proj.output::<Tensor<B, 2>>().await)
        .invoke(b.clone(), async |_| Ok(Tensor::<B, 2>::zeros([1, 1], &device)))
        .run();
    let Err(Error::NotBatched { site, invoke, problem }) = &merged else { panic!("{merged:?}") };
    assert_eq!((site.as_str(), invoke.as_str()), ("proj.output.i0", "invoke 0"));
    assert!(problem.contains("[4, 4] has 4 at dimension 0"), "{problem}");
    // A body that sees the whole batch reads it.
    let ((), whole) = model
        .tracer()
        .invoke(Tensor::cat(vec![a.clone(), b.clone()], 0), async |_| Ok(()))
        .invoke_all(async |m| m.proj.output::<Tensor<B, 2>>().await)
        .run()
        .unwrap();
    assert_eq!(whole.dims(), [4, 4]);
    assert_identical(&model.forward(Tensor::cat(vec![input([1, 2, 4], 7), input([1, 2, 4], 8)], 0)), &plain);
}
