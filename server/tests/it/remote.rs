//! Local == remote: the same generic bodies run compiled on the fixtures and, through
//! `RemoteModel`, recorded → HTTP → validated → queued → interpreted by a worker → safetensors
//! back; every save is byte-identical.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_remote::arch::{Gpt2, Llama};
use nnsight_remote::client::{RemoteModel, Saves};

use super::harness::Harness;

type Gpt2Lm<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;
type LlamaLm<B> = LanguageModel<B, LlamaForCausalLM<B>>;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

/// Patching one position across prompts, and a logit lens through the final norm and the head.
pub(crate) fn patching_and_lens<B: Backend>(lm: &Gpt2Lm<B>) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    let clean = Shared::new("clean block 1");
    let ((), patched) = lm
        .tracer()
        .invoke(CLEAN, async |m| clean.set(m.transformer.h[1].output().await?))
        .invoke(CORRUPTED, async |m| {
            m.transformer.h[1]
                .output()
                .try_edit(|h| {
                    let [b, _, d] = h.dims();
                    Ok(h.slice_assign([0..b, 2..3, 0..d], clean.get()?.slice([0..b, 2..3, 0..d])))
                })
                .await?;
            m.output().await
        })
        .run()?;
    let model = lm.model();
    let lens = lm.trace(CLEAN).run(async |m| {
        let h0 = m.transformer.h[0].output().await?;
        Ok(model.lm_head.forward(model.transformer.ln_f.forward(h0)))
    })?;
    Ok((patched, lens))
}

/// Steering every generation step, reading the head's output at the last one.
pub(crate) fn steering<B: Backend>(lm: &LlamaLm<B>, steps: usize) -> nnsight::Result<Tensor<B, 3>> {
    let hidden = lm.model().model.embed_tokens.weight.val().dims()[1];
    let values: Vec<f32> = (0..hidden).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
    let device = lm.model().model.embed_tokens.weight.val().device();
    let direction = Tensor::<B, 3>::from_data(TensorData::new(values, [1, 1, hidden]), &device);
    let (last, _) = lm.generator(CLEAN, GenerateOptions::greedy(steps).ignore_eos()).run(async |m| {
        m.model.layers[1].output().every(move |h: Tensor<B, 3>| h + direction.clone())?;
        m.lm_head.output().at(steps as u32 - 1).await
    })?;
    Ok(last)
}

pub(crate) fn local_gpt2() -> Gpt2Lm<Flex> {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    LanguageModel::from_pretrained(dir.to_str().expect("a UTF-8 path"), &Default::default())
        .expect("the fixture loads")
}

fn local_llama() -> LlamaLm<Flex> {
    let dir = nnsight_support::fixture_dir("tiny-llama");
    LanguageModel::from_pretrained(dir.to_str().expect("a UTF-8 path"), &Default::default())
        .expect("the fixture loads")
}

pub(crate) fn assert_same<const D: usize>(saves: &Saves, name: &str, local: &Tensor<Flex, D>) {
    let remote = saves.get(name).unwrap_or_else(|| panic!("`{name}` came back"));
    let local = local.to_data();
    assert_eq!((&remote.shape, remote.dtype), (&local.shape, local.dtype), "{name}");
    assert!(remote.as_bytes() == local.as_bytes(), "{name}: remote bytes differ from the local run's");
}

#[test]
fn gpt2_patching_and_logit_lens_come_back_byte_identical() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Gpt2>::connect(&harness.url(), &key, "gpt2").expect("connects");
    let saves = remote
        .trace(|lm, rec| {
            let (patched, lens) = patching_and_lens(lm)?;
            rec.save("patched", &patched)?;
            rec.save("lens", &lens)
        })
        .expect("the remote trace runs");
    let (patched, lens) = patching_and_lens(&local_gpt2()).unwrap();
    assert_same(&saves, "patched", &patched);
    assert_same(&saves, "lens", &lens);
}

#[test]
fn llama_steering_every_generation_step_comes_back_byte_identical() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").expect("connects");
    let saves = remote.trace(|lm, rec| rec.save("last", &steering(lm, 4)?)).expect("the remote trace runs");
    assert_same(&saves, "last", &steering(&local_llama(), 4).unwrap());
}

#[test]
fn a_trace_macro_body_runs_remotely_as_locally() {
    fn body<B: Backend>(lm: &Gpt2Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
        nnsight::trace!(lm, CLEAN, |m| {
            let h = m.transformer.h[0].output();
            let mlp = m.transformer.h[1].mlp.output();
            m.transformer.h[1].mlp.output() = mlp * 0.5;
            h + m.transformer.h[1].output()
        })
    }
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Gpt2>::connect(&harness.url(), &key, "gpt2").expect("connects");
    let saves = remote.trace(|lm, rec| rec.save("sum", &body(lm)?)).expect("the remote trace runs");
    assert_same(&saves, "sum", &body(&local_gpt2()).unwrap());
}

#[test]
fn a_local_model_reaches_its_hosted_counterpart() {
    use nnsight_remote::client::RemoteExt;
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let lm = local_gpt2();
    let remote = lm.remote(&harness.url(), &key, "gpt2").expect("connects");
    let saves = remote.trace(|lm, rec| rec.save("sum", &patching_and_lens(lm)?.1)).unwrap();
    assert_same(&saves, "sum", &patching_and_lens(&lm).unwrap().1);
}

#[test]
fn connecting_with_the_wrong_family_is_an_error_naming_both() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let error = RemoteModel::<Llama>::connect(&harness.url(), &key, "gpt2").unwrap_err().to_string();
    assert!(error.contains("gpt2") && error.contains("llama"), "{error}");
}

/// Zero-ablation of block 0's MLP (a skip), then a stop after block 1: the mean of its output.
fn skip_and_stop<B: Backend>(lm: &Gpt2Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
    lm.trace(CLEAN).run(async |m| {
        let x: Tensor<B, 3> = m.transformer.h[0].mlp.input().await?;
        m.transformer.h[0].mlp.skip(x.zeros_like()).await?;
        let h1 = m.transformer.h[1].output().await?;
        m.stop()?;
        Ok(h1.mean_dim(2))
    })
}

/// A session: the first trace's block-0 output, saved, patched into the second trace at one
/// position.
fn session<B: Backend>(lm: &Gpt2Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
    let clean = lm.trace(CLEAN).run(async |m| m.transformer.h[0].output().await)?;
    lm.trace(CORRUPTED).run(async |m| {
        m.transformer.h[0]
            .output()
            .edit(move |h: Tensor<B, 3>| {
                let [b, _, d] = h.dims();
                h.slice_assign([0..b, 3..4, 0..d], clean.clone().slice([0..b, 3..4, 0..d]))
            })
            .await?;
        m.output().await
    })
}

#[test]
fn ablation_stop_and_sessions_come_back_byte_identical() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Gpt2>::connect(&harness.url(), &key, "gpt2").expect("connects");
    let alone = nnsight_remote::client::SubmitOptions { exclusive: true, ..Default::default() };
    let saves = remote
        .submit(&alone, |lm, rec| {
            rec.save("mean", &skip_and_stop(lm)?)?;
            rec.save("session", &session(lm)?)
        })
        .expect("records and is accepted")
        .wait(false)
        .expect("runs");
    let lm = local_gpt2();
    assert_same(&saves, "mean", &skip_and_stop(&lm).unwrap());
    assert_same(&saves, "session", &session(&lm).unwrap());
}

/// Reads `site` (saved as `h`) and the logits (`logits`) of `CLEAN`, with `site` doubled.
fn hand_written(site: nnsight_remote::ir::Site) -> nnsight_remote::ir::Program {
    use nnsight_remote::ir::{BinaryFn, Input, Invoke, Node, Op, Program, Site, SiteKind, Trace};
    let logits = Site { path: String::new(), kind: SiteKind::Output, occurrence: 0 };
    let nodes = vec![
        Node::new(Op::Read { site: site.clone() }),
        Node::new(Op::Save { name: "h".into(), value: 0, cast: None }),
        Node::new(Op::Binary { fun: BinaryFn::Add, lhs: 0, rhs: 0 }),
        Node::new(Op::Write { site, value: 2 }),
        Node::new(Op::Read { site: logits }),
        Node::new(Op::Save { name: "logits".into(), value: 4, cast: None }),
    ];
    let input = Some(Input::Text(CLEAN.into()));
    Program::new(vec![Trace { invokes: vec![Invoke { input, nodes }], generate: None }])
}

#[test]
fn transformer_lens_hook_names_in_a_program_run_remotely_as_the_module_paths_locally() {
    use nnsight_remote::interpret::{Hosted, run_language_model};
    use nnsight_remote::intervention::Intervention;
    use nnsight_remote::ir::{Site, SiteKind};
    let harness = Harness::start(|_| {});
    let client = nnsight_remote::client::Client::new(&harness.url(), &harness.key("alice"));
    let hook = Site { path: "blocks.1.hook_resid_pre".into(), kind: SiteKind::Output, occurrence: 0 };
    let intervention = Intervention { program: hand_written(hook.clone()), tensors: Vec::new() };
    let saves = client.submit("llama", &intervention, &Default::default()).unwrap().wait(false).unwrap();
    // Locally, by the module path the hook stands for (layer 1's input).
    let path = Site { path: "model.layers.1".into(), kind: SiteKind::Input(0), occurrence: 0 };
    let local =
        run_language_model(&local_llama(), &hand_written(path), &Default::default(), &Hosted::new()).unwrap();
    for name in ["h", "logits"] {
        let (shape, _, bytes) = local.saves[name].to_bytes();
        let remote = saves.get(name).unwrap();
        assert_eq!(remote.shape.to_vec(), shape, "{name}");
        assert!(remote.as_bytes() == bytes.as_slice(), "{name}: remote bytes differ from the local run's");
    }
    // A hook the family cannot resolve is refused at ingress, naming it.
    let past = Site { path: "blocks.9.hook_resid_post".into(), ..hook };
    let error = client
        .submit(
            "llama",
            &Intervention { program: hand_written(past), tensors: Vec::new() },
            &Default::default(),
        )
        .unwrap_err();
    assert_eq!(error.code(), Some("invalid_program"), "{error}");
    assert!(error.to_string().contains("layer 9 of a 2-layer Llama"), "{error}");
}

/// Patching one position across prompts on Gemma 3, and the logit lens through its final norm.
fn gemma_patching<B: Backend>(
    lm: &LanguageModel<B, nnsight_models::gemma3::Gemma3ForCausalLM<B>>,
) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    let clean = Shared::new("clean layer 1");
    let ((), patched) = lm
        .tracer()
        .invoke(CLEAN, async |m| clean.set(m.model.layers[1].output().await?))
        .invoke(CORRUPTED, async |m| {
            m.model.layers[1]
                .output()
                .try_edit(|h| {
                    let [b, _, d] = h.dims();
                    Ok(h.slice_assign([0..b, 2..3, 0..d], clean.get()?.slice([0..b, 2..3, 0..d])))
                })
                .await?;
            m.output().await
        })
        .run()?;
    let model = lm.model();
    let lens = lm.trace(CLEAN).run(async |m| {
        let h0 = m.model.layers[0].output().await?;
        Ok(model.lm_head.forward(model.model.norm.forward(h0)))
    })?;
    Ok((patched, lens))
}

#[test]
fn gemma3_is_hosted_and_comes_back_byte_identical() {
    let gemma = nnsight_support::fixture_dir("tiny-gemma3");
    let harness = Harness::start(|config| {
        let extra = format!(
            "listen = \"127.0.0.1:0\"\nkeys = \"k\"\n\n[[models]]\nkey = \"gemma\"\nsource = {gemma:?}\n"
        );
        let extra = nnsight_server::config::Config::parse(&extra).expect("parses");
        config.models.extend(extra.models);
    });
    let key = harness.key("alice");
    let remote = RemoteModel::<nnsight_remote::arch::Gemma3>::connect(&harness.url(), &key, "gemma")
        .expect("connects");
    let saves = remote
        .trace(|lm, rec| {
            let (patched, lens) = gemma_patching(lm)?;
            rec.save("patched", &patched)?;
            rec.save("lens", &lens)
        })
        .expect("the remote trace runs");
    let local: LanguageModel<Flex, nnsight_models::gemma3::Gemma3ForCausalLM<Flex>> =
        LanguageModel::from_pretrained(gemma.to_str().unwrap(), &Default::default()).unwrap();
    let (patched, lens) = gemma_patching(&local).unwrap();
    assert_same(&saves, "patched", &patched);
    assert_same(&saves, "lens", &lens);
    // Its hook names resolve through Gemma's vocabulary: attention's contribution is the norm after it.
    let words = nnsight_models::vocabulary::Standardized::vocabulary(remote.lm().model());
    assert_eq!(words.attention(0).unwrap().path, "model.layers.0.post_attention_layernorm");
}
