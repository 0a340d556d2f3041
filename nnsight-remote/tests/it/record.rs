//! Recording the unchanged body: the same generic functions run (a) compiled on the tiny GPT-2
//! fixture and (b) recorded on the shape-only recorder → canonical JSON + safetensors → decoded
//! → interpreted on the fixture; every saved tensor is byte-identical. What cannot be recorded
//! is an error naming it; `scan` gives every site's shape without computing.

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_remote::canonical;
use nnsight_remote::interpret::{Hosted, Outcome, run_language_model};
use nnsight_remote::ir::{Op, SiteKind};
use nnsight_remote::record::{RecordDevice, RecordError, Recorded, Recorder, record, scan};

type Lm<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

fn tiny() -> (Lm<Flex>, Lm<Recorder>) {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let real: Lm<Flex> = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
        .expect("the fixture loads");
    let config = Gpt2Config::from_file(&dir.join("config.json")).expect("its config reads");
    let device = RecordDevice::default();
    let shapes =
        LanguageModel::new(config.init::<Recorder>(&device), real.tokenizer().clone(), real.pad_id(), device);
    (real, shapes)
}

/// Runs a recording's program on the real model, through its wire form.
fn replay<T>(real: &Lm<Flex>, recorded: &Recorded<T>) -> Outcome<Flex> {
    let bytes = canonical::encode(&recorded.program);
    let program = canonical::decode(bytes.as_bytes(), 1 << 20).expect("the recorded program decodes");
    assert_eq!(program, recorded.program, "the round trip changes nothing");
    let intervention = recorded.intervention().expect("its tensors write");
    let tensors = nnsight_remote::tensors::read::<Flex>(&intervention.tensors, &Default::default())
        .or_else(|e| if intervention.tensors.is_empty() { Ok(BTreeMap::new()) } else { Err(e) })
        .expect("its tensors read");
    let hosted = Hosted::new().parameters(real.model()).forward("lm_head", &real.model().lm_head);
    run_language_model(real, &program, &tensors, &hosted).expect("the recorded program runs")
}

fn assert_same<const D: usize>(outcome: &Outcome<Flex>, name: &str, expected: &Tensor<Flex, D>) {
    let saved = outcome.saves.get(name).unwrap_or_else(|| panic!("`{name}` was not saved"));
    let (shape, dtype, bytes) = saved.to_bytes();
    let data = expected.to_data();
    assert_eq!((shape, dtype), (data.shape.to_vec(), data.dtype), "{name}");
    assert!(bytes == data.as_bytes(), "{name}: the bytes differ from the compiled body's");
}

/// Reads of every block, arithmetic and burn's activations on them (which backends fuse), and a
/// softmax of the last position's logits.
fn reads<B: Backend>(lm: &Lm<B>) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>)> {
    use burn::tensor::activation::{gelu, relu, sigmoid, silu, softmax};
    lm.trace(CLEAN).run(async |m| {
        let h0 = m.transformer.h[0].output().await?;
        let h1 = m.transformer.h[1].output().await?;
        let mixed = (h1 - h0.clone() * 0.5).tanh();
        let mixed = gelu(mixed.clone()) + relu(mixed.clone()) * sigmoid(mixed.clone()) - silu(mixed);
        let logits = m.output().await?;
        let [_, seq, _] = logits.dims();
        let probs = softmax(logits.slice([0..1, seq - 1..seq]), 2);
        Ok((h0, mixed, probs))
    })
}

#[test]
fn reads_and_tensor_ops_record_and_replay_bit_for_bit() {
    let (real, shapes) = tiny();
    let (h0, mixed, probs) = reads(&real).unwrap();
    let recorded = record(shapes.model(), |rec| {
        let (h0, mixed, probs) = reads(&shapes)?;
        rec.save("h0", &h0)?;
        rec.save("mixed", &mixed)?;
        rec.save("probs", &probs)
    })
    .unwrap();
    let nodes = &recorded.program.traces[0].invokes[0].nodes;
    assert!(matches!(nodes[0].op, Op::Read { .. }), "{:?}", nodes[0]);
    let at = nodes[0].at.as_ref().expect("a read keeps its source location");
    assert!(at.file.ends_with("record.rs"), "{at}");
    let outcome = replay(&real, &recorded);
    assert_same(&outcome, "h0", &h0);
    assert_same(&outcome, "mixed", &mixed);
    assert_same(&outcome, "probs", &probs);
}

/// The clean prompt's block-1 output at position 2 patched into the corrupted prompt's.
fn patching<B: Backend>(lm: &Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
    let clean = Shared::new("clean block 1");
    let ((), logits) = lm
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
    Ok(logits)
}

#[test]
fn cross_invoke_patching_records_a_shared_value() {
    let (real, shapes) = tiny();
    let expected = patching(&real).unwrap();
    let recorded = record(shapes.model(), |rec| rec.save("logits", &patching(&shapes)?)).unwrap();
    let corrupted = &recorded.program.traces[0].invokes[1].nodes;
    assert!(corrupted.iter().any(|n| matches!(n.op, Op::Shared { invoke: 0, .. })), "{corrupted:?}");
    assert!(corrupted.iter().any(|n| matches!(n.op, Op::Write { .. })));
    assert_same(&replay(&real, &recorded), "logits", &expected);
}

/// A logit lens: block 0's output through the model's own final norm and head, in the body.
fn logit_lens<B: Backend>(lm: &Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
    let model = lm.model();
    lm.trace(CLEAN).run(async |m| {
        let h0 = m.transformer.h[0].output().await?;
        Ok(model.lm_head.forward(model.transformer.ln_f.forward(h0)))
    })
}

#[test]
fn a_logit_lens_through_model_weights_records_param_nodes() {
    let (real, shapes) = tiny();
    let expected = logit_lens(&real).unwrap();
    let recorded = record(shapes.model(), |rec| rec.save("lens", &logit_lens(&shapes)?)).unwrap();
    let params: Vec<&str> = recorded.program.traces[0].invokes[0]
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Param { path } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert!(params.iter().any(|p| p.contains("ln_f")), "{params:?}");
    let calls: Vec<&str> = recorded.program.traces[0].invokes[0]
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Call { module, .. } => Some(module.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["lm_head"], "the instrumented head is one call of the hosted module");
    let ops: Vec<&str> = recorded.program.traces[0].invokes[0].nodes.iter().map(|n| n.op.name()).collect();
    assert!(ops.contains(&"layer_norm"), "burn's decomposition of layer_norm is fused back: {ops:?}");
    assert!(!ops.contains(&"reduce"), "its steps are pruned: {ops:?}");
    assert_same(&replay(&real, &recorded), "lens", &expected);
}

/// A session: the first trace's mean block-1 output, and a constant made before the second
/// trace, both added to block 1 in the second trace.
fn session<B: Backend>(lm: &Lm<B>, device: &B::Device) -> nnsight::Result<Tensor<B, 3>> {
    let mean = lm.trace(CLEAN).run(async |m| Ok(m.transformer.h[1].output().await?.mean_dim(1)))?;
    let width = mean.dims()[2];
    let values: Vec<f32> = (0..width).map(|i| i as f32 / width as f32 - 0.5).collect();
    let bias = Tensor::<B, 3>::from_data(TensorData::new(values, [1, 1, width]), device);
    lm.trace(CORRUPTED).run(async |m| {
        m.transformer.h[1].output().edit(|h| h + mean.clone() + bias.clone()).await?;
        let logits = m.output().await?;
        let zero = Tensor::<B, 3>::zeros(logits.dims(), &bias.device());
        Ok(logits + zero)
    })
}

#[test]
fn a_session_of_two_traces_records_saved_values_and_literals() {
    let (real, shapes) = tiny();
    let expected = session(&real, &Default::default()).unwrap();
    let recorded =
        record(shapes.model(), |rec| rec.save("logits", &session(&shapes, &RecordDevice::default())?))
            .unwrap();
    assert_eq!(recorded.program.traces.len(), 2);
    let second = &recorded.program.traces[1].invokes[0].nodes;
    assert!(second.iter().any(|n| matches!(n.op, Op::Saved { .. })), "{second:?}");
    assert!(second.iter().any(|n| matches!(n.op, Op::Tensor { .. })), "{second:?}");
    assert_eq!(recorded.tensors.len(), 2, "the bias and the zeros are attached");
    assert_same(&replay(&real, &recorded), "logits", &expected);
}

fn refusal<T: std::fmt::Debug>(result: Result<Recorded<T>, RecordError>) -> (String, Option<String>) {
    match result {
        Err(RecordError::NotRecordable { what, at }) => (what, at.map(|a| a.to_string())),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn what_cannot_be_recorded_is_an_error_naming_it() {
    let (_, shapes) = tiny();
    // An operation outside the IR's list: the error names it and the line that runs it.
    let op_line = line!() + 3;
    let (what, at) = refusal(record(shapes.model(), |_| {
        Ok(shapes.trace(CLEAN).run(async |m| {
            let h: Tensor<Recorder, 3> = m.transformer.h[0].output().await?;
            Ok(h.repeat_dim(0, 2))
        })?)
    }));
    assert!(what.contains("RepeatDim"), "{what}");
    let at = at.expect("a location");
    assert!(at.contains(&format!("record.rs:{}:", op_line + 1)), "{at} (expected line {})", op_line + 1);
    // Value-dependent host code: the error names the line that reads the value.
    let read_line = line!() + 4;
    let result = record(shapes.model(), |_| {
        Ok(shapes.trace(CLEAN).run(async |m| {
            let h: Tensor<Recorder, 3> = m.transformer.h[0].output().await?;
            let positive = h.sum().into_scalar() > 0.0;
            Ok(positive)
        })?)
    });
    let (what, at) = refusal(result);
    assert!(what.contains("value-dependent host code"), "{what}");
    let at = at.expect("a location");
    assert!(at.contains(&format!("record.rs:{read_line}:")), "{at} (expected line {read_line})");
    // Random numbers in the body.
    let (what, _) = refusal(record(shapes.model(), |_| {
        Ok(shapes.trace(CLEAN).run(async |m| {
            let h: Tensor<Recorder, 3> = m.transformer.h[0].output().await?;
            let noise = Tensor::random(h.dims(), burn::tensor::Distribution::Default, &h.device());
            Ok(h + noise)
        })?)
    }));
    assert!(what.contains("random"), "{what}");
    // A persistent edit is refused (record its body as part of the trace).
    let edited = shapes.edit(async |m| m.transformer.h[0].output().edit(|h| h * 2.0).await);
    let (what, _) =
        refusal(record(shapes.model(), |_| Ok(edited.trace(CLEAN).run(async |m| m.output().await)?)));
    assert!(what.contains("persistent edit"), "{what}");
    // A trace that fails locally fails while recording, before anything is sent.
    let result = record(shapes.model(), |_| {
        Ok(shapes.trace(CLEAN).run(async |m| {
            let _late = m.transformer.h[1].output().await?;
            m.transformer.h[0].output().await
        })?)
    });
    assert!(matches!(result, Err(RecordError::Trace(nnsight::Error::OutOfOrder { .. }))), "{result:?}");
    // A recording inside a recording on the same thread is refused.
    let inner = std::cell::RefCell::new(None);
    record(shapes.model(), |rec| {
        *inner.borrow_mut() = Some(record(shapes.model(), |_| Ok(())).map(|_| ()));
        rec.save("h", &reads(&shapes)?.0)
    })
    .unwrap();
    assert!(matches!(inner.take(), Some(Err(RecordError::Nested))));
    // A recording in which no trace runs has nothing to send.
    let (what, _) = refusal(record(shapes.model(), |_| Ok(())));
    assert!(what.contains("no trace ran"), "{what}");
    // A save from another thread than the recording's is refused, naming the value.
    let result = record(shapes.model(), |rec| {
        let h = reads(&shapes)?.0;
        std::thread::scope(|s| s.spawn(|| rec.save("h", &h)).join().expect("the thread runs"))
    });
    let (what, _) = refusal(result);
    assert!(what.contains("another thread"), "{what}");
    // Recording leaves the thread clean: a new recording works.
    assert!(record(shapes.model(), |rec| rec.save("h", &reads(&shapes)?.0)).is_ok());
}

#[test]
fn scan_gives_every_site_shape_in_forward_order_without_computing() {
    let (real, shapes) = tiny();
    let (sites, ()) = scan(|| shapes.trace(CLEAN).run(async |_| Ok(()))).unwrap();
    let tokens = real.encode(CLEAN).unwrap().len();
    let logits = sites.iter().find(|s| s.site.path.is_empty() && s.site.kind == SiteKind::Output).unwrap();
    let expected: Tensor<Flex, 3> = real.trace(CLEAN).run(async |m| m.output().await).unwrap();
    assert_eq!(logits.shape, expected.dims().to_vec());
    assert_eq!(logits.shape[1], tokens);
    let blocks: Vec<usize> = sites
        .iter()
        .filter(|s| {
            s.site.kind == SiteKind::Output
                && s.site.path.starts_with("transformer.h.")
                && s.site.path.len() == 15
        })
        .map(|s| s.site.path[14..].parse().unwrap())
        .collect();
    assert_eq!(blocks, vec![0, 1], "blocks in forward order");
    // The input site of the root: the token ids and the attention mask.
    assert_eq!(sites[0].site.kind, SiteKind::Input(0));
}

/// A steering vector (made before the trace, scaled between traces) added to block 1's output at
/// every step of a greedy generation; the head's output at the last step.
fn steering<B: Backend>(lm: &Lm<B>, device: &B::Device, steps: usize) -> nnsight::Result<Tensor<B, 3>> {
    use nnsight_models::generation::GenerateOptions;
    let width = lm.model().lm_head.weight.val().dims()[1];
    let values: Vec<f32> = (0..width).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
    let scaled = Tensor::<B, 3>::from_data(TensorData::new(values, [1, 1, width]), device).mul_scalar(2.0);
    let (last, _) = lm.generator(CLEAN, GenerateOptions::greedy(steps).ignore_eos()).run(async |m| {
        m.transformer.h[1].output().every(move |h: Tensor<B, 3>| h + scaled.clone())?;
        m.lm_head.output().at(steps as u32 - 1).await
    })?;
    Ok(last)
}

#[test]
fn steering_every_generation_step_records_a_standing_edit() {
    let (real, shapes) = tiny();
    let expected = steering(&real, &Default::default(), 4).unwrap();
    let recorded =
        record(shapes.model(), |rec| rec.save("last", &steering(&shapes, &RecordDevice::default(), 4)?))
            .unwrap();
    let trace = &recorded.program.traces[0];
    let generate = trace.generate.as_ref().expect("the trace generates");
    assert_eq!(generate.max_new_tokens, 4);
    assert!(!generate.stop_at_eos);
    let edit = trace.invokes[0].nodes.iter().find_map(|n| match &n.op {
        Op::Edit { body, .. } => Some(body),
        _ => None,
    });
    let body = edit.expect("the standing edit is one edit node");
    assert!(matches!(body[0].op, Op::Arg), "{body:?}");
    assert_same(&replay(&real, &recorded), "last", &expected);
}

#[test]
fn a_standing_edit_that_changes_between_steps_is_refused() {
    let (_, shapes) = tiny();
    let options = nnsight_models::generation::GenerateOptions::greedy(3).ignore_eos();
    let (what, _) = refusal(record(shapes.model(), |_| {
        Ok(shapes.generator(CLEAN, options).run(async |m| {
            let mut scale = 1.0;
            m.transformer.h[1].output().every(move |h: Tensor<Recorder, 3>| {
                scale *= 2.0;
                h * scale
            })?;
            m.lm_head.output().at(2).await
        })?)
    }));
    assert!(what.contains("other operations at a later visit"), "{what}");
}

/// The same body as a `trace!` block.
fn with_the_macro<B: Backend>(lm: &Lm<B>) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    nnsight::trace!(lm, CLEAN, |m| {
        let h1: Tensor<B, 3> = m.transformer.h[1].output();
        let logits = m.output();
        (h1.clone() * 3.0, logits)
    })
}

#[test]
fn a_trace_macro_body_records_and_replays_bit_for_bit() {
    let (real, shapes) = tiny();
    let (h1, logits) = with_the_macro(&real).unwrap();
    let recorded = record(shapes.model(), |rec| {
        let (h1, logits) = with_the_macro(&shapes)?;
        rec.save("h1", &h1)?;
        rec.save("logits", &logits)
    })
    .unwrap();
    let outcome = replay(&real, &recorded);
    assert_same(&outcome, "h1", &h1);
    assert_same(&outcome, "logits", &logits);
}

/// Zero-ablation of block 0's MLP by skipping it (its input's shape, zeros), block 1's mean
/// output, and the forward pass stopped there.
fn ablation<B: Backend>(lm: &Lm<B>) -> nnsight::Result<Tensor<B, 3>> {
    lm.trace(CLEAN).run(async |m| {
        let x: Tensor<B, 3> = m.transformer.h[0].mlp.input().await?;
        m.transformer.h[0].mlp.skip(x.zeros_like()).await?;
        let h1 = m.transformer.h[1].output().await?;
        m.stop()?;
        Ok(h1.mean_dim(2))
    })
}

#[test]
fn zero_ablation_by_skip_and_a_stop_record_and_replay_bit_for_bit() {
    let (real, shapes) = tiny();
    let expected = ablation(&real).unwrap();
    let recorded = record(shapes.model(), |rec| rec.save("mean", &ablation(&shapes)?)).unwrap();
    let ops: Vec<&str> = recorded.program.traces[0].invokes[0].nodes.iter().map(|n| n.op.name()).collect();
    assert!(ops.contains(&"skip") && ops.contains(&"stop"), "{ops:?}");
    assert_same(&replay(&real, &recorded), "mean", &expected);
}

#[test]
fn concurrent_recordings_on_one_twin_are_independent_and_equal() {
    let (_, shapes) = tiny();
    let once = || {
        record(shapes.model(), |rec| {
            rec.save("logits", &patching(&shapes)?)?;
            let (h0, mixed, probs) = reads(&shapes)?;
            rec.save("h0", &h0)?;
            rec.save("mixed", &mixed)?;
            rec.save("probs", &probs)
        })
        .expect("the recording succeeds")
        .program
    };
    let alone = once();
    let together: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(once)).collect();
        handles.into_iter().map(|h| h.join().expect("a recording thread")).collect()
    });
    for program in together {
        assert_eq!(program, alone, "a recording on another thread at the same time gives the same program");
    }
}
