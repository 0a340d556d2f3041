//! A sparse autoencoder on GPT-2's residual stream: which features fire on which token, and what
//! the next-token prediction does when the strongest one is switched off.
//!
//! ```sh
//! cargo run --release --example sae_features [SAE_DIR] [MODEL]
//! ```
//!
//! `SAE_DIR` is an SAE in SAELens' format (`cfg.json` + `sae_weights.safetensors`, e.g. a
//! directory of `jbloom/GPT2-Small-SAEs-Reformatted` for `openai-community/gpt2`). Without one, the
//! example runs the tiny random SAE of the test fixtures on the tiny GPT-2 fixture: the numbers
//! show the workflow, not what GPT-2 knows. It writes a heatmap of the top features per token to
//! `target/pictures/sae_features.{png,svg}`.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_support::pictures::picture;
use nnsight_toolkit::plot::{Heatmap, token_label};
use nnsight_toolkit::sae::{Sae, Splice};

type B = Flex;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let device = Default::default();
    let mut args = std::env::args().skip(1);
    let (sae_dir, model) = match (args.next(), args.next()) {
        (Some(sae), model) => (sae.into(), model.unwrap_or_else(|| "openai-community/gpt2".to_owned())),
        (None, _) => {
            println!("no SAE given: the tiny random SAE and GPT-2 of the test fixtures (random weights)\n");
            let fixture = nnsight_support::fixture_dir("tiny-gpt2");
            (nnsight_support::fixture_dir("tiny-sae").join("standard"), fixture.display().to_string())
        }
    };
    let lm = LanguageModel::<B, Gpt2LMHeadModel<B>>::from_pretrained(&model, &device)?;
    let sae = Sae::<B>::load(&sae_dir, &device)?;
    let config = sae.config();
    let location = sae.location(&lm)?;
    println!(
        "{}: {} features over {}-wide activations at {} ({}'s {:?})\n",
        sae_dir.canonicalize().unwrap_or(sae_dir.clone()).display(),
        config.d_sae,
        config.d_in,
        config.hook_name.as_deref().unwrap_or("?"),
        location.path,
        location.port
    );

    // Which features fire on which token: the three strongest per token.
    let features = sae.features(&lm, PROMPT)?;
    let [_, tokens, d_sae] = features.dims();
    let ids = lm.encode(PROMPT)?;
    let values: Vec<f32> = features.clone().into_data().to_vec().expect("f32 features");
    let mut strongest = Vec::new();
    for (t, &id) in ids.iter().enumerate() {
        let row = &values[t * d_sae..(t + 1) * d_sae];
        let mut order: Vec<usize> = (0..d_sae).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let active = row.iter().filter(|&&v| v > 0.0).count();
        let top: Vec<String> = order[..3].iter().map(|&f| format!("#{f} {:.2}", row[f])).collect();
        println!("  {:<12} {active:>3} active   {}", format!("{:?}", lm.token_text(id)?), top.join("  "));
        strongest.extend(order[..3].iter().copied());
    }

    // A heatmap of those features (rows) over the tokens (columns).
    strongest.sort_unstable();
    strongest.dedup();
    let rows: Vec<String> = strongest.iter().map(|f| format!("feature {f}")).collect();
    let columns =
        ids.iter().map(|&id| lm.token_text(id).map(|t| token_label(&t))).collect::<nnsight::Result<_>>()?;
    let values = &values;
    let cells = strongest.iter().flat_map(|&f| (0..tokens).map(move |t| values[t * d_sae + f])).collect();
    let heatmap = Heatmap::new("SAE feature activations", rows, columns, cells)?.axes("token", "feature");
    let (png, svg) = (picture("sae_features.png")?, picture("sae_features.svg")?);
    heatmap.save(&png)?;
    heatmap.save(&svg)?;
    println!("  heatmap: {} (and .svg)", png.display());

    // Switch the last token's strongest feature off, keeping the SAE's error term.
    let last: Vec<f32> = values[(tokens - 1) * d_sae..].to_vec();
    let feature = (0..d_sae).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap_or(0);
    let (edited, _) = sae.edited(&lm, PROMPT, Splice::KeepError, |f| {
        f.slice_assign([0..1, tokens - 1..tokens, feature..feature + 1], Tensor::zeros([1, 1, 1], &device))
    })?;
    let plain = lm.forward(PROMPT)?;
    for (name, logits) in [("plain", plain), (&*format!("feature {feature} off"), edited)] {
        let vocab = logits.dims()[2];
        let probs = softmax(logits.narrow(1, tokens - 1, 1).reshape([vocab]), 0);
        let (p, id) = probs.max_dim_with_indices(0);
        println!(
            "  {name:<18} next token {:?} (p = {:.3})",
            lm.token_text(id.into_scalar() as u32)?,
            p.into_scalar()
        );
    }
    Ok(())
}
