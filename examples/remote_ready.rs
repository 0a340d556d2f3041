//! Remote-ready bodies: the same trace code run locally, recorded as data (an IR program and
//! its tensors), saved as an intervention directory, loaded back and run by the interpreter —
//! byte-identical to the local run. Also `scan`: every site's shape, computed by nothing.
//!
//! `cargo run --release --example remote_ready` (runs on the tiny GPT-2 test fixture).

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_remote::interpret::{Hosted, run_language_model};
use nnsight_remote::intervention::Intervention;
use nnsight_remote::ir::SiteKind;
use nnsight_remote::record::{RecordDevice, Recorder, record, scan};

type Lm<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;

/// Patching and a logit lens, written once for any backend: run on `Flex` it computes, run on
/// the `Recorder` it is recorded.
fn body<B: Backend>(lm: &Lm<B>) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    let clean = Shared::new("clean block 1");
    let ((), patched) = lm
        .tracer()
        .invoke("The Eiffel Tower is in the city of", async |m| clean.set(m.transformer.h[1].output().await?))
        .invoke("The Colosseum is in the city of", async |m| {
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
    let lens = lm.trace("The Eiffel Tower is in the city of").run(async |m| {
        let h0 = m.transformer.h[0].output().await?;
        Ok(model.lm_head.forward(model.transformer.ln_f.forward(h0)))
    })?;
    Ok((patched, lens))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let lm: Lm<Flex> =
        LanguageModel::from_pretrained(dir.to_str().ok_or("a non-UTF-8 path")?, &Default::default())?;

    // The shape-only twin: the same config and tokenizer, no weights, nothing computed.
    let config = Gpt2Config::from_file(&dir.join("config.json"))?;
    let device = RecordDevice::default();
    let shapes: Lm<Recorder> =
        LanguageModel::new(config.init::<Recorder>(&device), lm.tokenizer().clone(), lm.pad_id(), device);

    let (sites, ()) = scan(|| shapes.trace("The Eiffel Tower is in").run(async |_| Ok(())))?;
    println!("scan: {} site values, e.g.", sites.len());
    for s in sites.iter().filter(|s| s.site.path.starts_with("transformer.h.0")).take(4) {
        let side = match s.site.kind {
            SiteKind::Output => "output".to_owned(),
            SiteKind::Input(i) => format!("input {i}"),
        };
        println!("  {:<24} {side:<8} {:?} {:?}", s.site.path, s.shape, s.dtype);
    }

    // Record the unchanged body and save it as a shareable intervention.
    let recorded = record(shapes.model(), |rec| {
        let (patched, lens) = body(&shapes)?;
        rec.save("patched", &patched)?;
        rec.save("lens", &lens)
    })?;
    let out = std::env::temp_dir().join(format!("nnsight-remote-ready-{}", std::process::id()));
    recorded.intervention()?.save(&out)?;
    let nodes: usize = recorded.program.traces.iter().flat_map(|t| &t.invokes).map(|i| i.nodes.len()).sum();
    println!("recorded {} traces, {nodes} nodes, saved to {}", recorded.program.traces.len(), out.display());

    // Anyone can load it and run it on a model whose paths and shapes fit.
    let loaded = Intervention::load(&out, 1 << 24)?;
    std::fs::remove_dir_all(&out)?;
    let tensors = if loaded.tensors.is_empty() {
        Default::default()
    } else {
        nnsight_remote::tensors::read::<Flex>(&loaded.tensors, &Default::default())?
    };
    let hosted = Hosted::new().parameters(lm.model()).forward("lm_head", &lm.model().lm_head);
    let outcome = run_language_model(&lm, &loaded.program, &tensors, &hosted)?;

    let (patched, lens) = body(&lm)?;
    for (name, local) in [("patched", patched), ("lens", lens)] {
        let (_, _, bytes) = outcome.saves[name].to_bytes();
        let same = bytes == local.to_data().as_bytes();
        println!("{name}: interpreted == local, byte for byte: {same}");
        if !same {
            return Err(format!("`{name}` differs").into());
        }
    }
    Ok(())
}
