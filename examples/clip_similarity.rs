//! CLIP: which caption fits which image, and what happens to those scores when one image's
//! vision-tower state is patched with another's — both towers reached in one trace.
//!
//! ```sh
//! cargo run --release --example clip_similarity
//! ```
//!
//! The model is `openai/clip-vit-base-patch32` from the Hugging Face cache or the Hub (its
//! tokenizer and preprocessing included); offline it says so and runs the tiny random test
//! fixture, whose numbers show the workflow, not what CLIP knows. The images are the three
//! synthetic PNGs of the ViT fixture.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::clip::{ClipConfig, ClipModel, encode_texts};
use nnsight_models::hub::ModelFiles;
use nnsight_models::vision::{ImageProcessor, open_image};

type B = Flex;

const TEXTS: [&str; 3] = ["a photo of a cat", "The Eiffel Tower", "a dog"];

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let device = Default::default();
    let files = match ModelFiles::resolve("openai/clip-vit-base-patch32") {
        Ok(files) => files,
        Err(error) => {
            println!("could not load openai/clip-vit-base-patch32: {error}");
            println!("running on the bundled tiny CLIP fixture instead (random weights)\n");
            ModelFiles::resolve(nnsight_support::fixture_dir("tiny-clip").to_str().expect("a UTF-8 path"))?
        }
    };
    let (model, config): (ClipModel<B>, ClipConfig) = ClipModel::from_files(&files, &device)?;
    let missing = |what: &str| nnsight::Error::Load {
        source_name: files.source.clone(),
        problem: format!("it has no {what}"),
    };
    let tokenizer_path = files.tokenizer.as_ref().ok_or_else(|| missing("tokenizer.json"))?;
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_path)
        .map_err(|e| nnsight::Error::Tokenizer { problem: e.to_string() })?;
    let processor = ImageProcessor::from_file(
        files.preprocessor.as_ref().ok_or_else(|| missing("preprocessor_config.json"))?,
    )?;

    let names = ["small", "tall", "wide"];
    let images = names
        .iter()
        .map(|n| open_image(&nnsight_support::fixture_dir("tiny-vit").join(format!("images/{n}.png"))))
        .collect::<nnsight::Result<Vec<_>>>()?;
    let pixels = processor.preprocess::<B>(&images, &device)?;
    let (ids, mask) = encode_texts::<B>(&tokenizer, &TEXTS, &config.text_config, &device)?;

    // One trace: read the text tower's pooled summaries and patch image 0's vision state (after
    // the first layer) with image 1's; the logits are the last site.
    let (pooled, patched) = model.trace((ids.clone(), mask.clone(), pixels.clone())).run(async |m| {
        m.vision_model.encoder.layers[0]
            .output()
            .edit(|h: Tensor<B, 3>| {
                let [_, tokens, width] = h.dims();
                let donor = h.clone().narrow(0, 1, 1);
                h.slice_assign([0..1, 0..tokens, 0..width], donor)
            })
            .await?;
        let (_, pooled) = m.text_model.output().await?;
        Ok((pooled, m.output().await?))
    })?;
    let plain = model.forward(ids, mask, pixels);
    println!("text tower's pooled summaries: {:?} (texts × width)\n", pooled.dims());
    show("similarity logits (image × text)", &plain, &names);
    show("with image 0's vision state replaced by image 1's after layer 0", &patched, &names);
    Ok(())
}

fn show(title: &str, logits: &Tensor<B, 2>, names: &[&str]) {
    println!("{title}:");
    print!("  {:<8}", "");
    for text in TEXTS {
        print!(" {text:>18}");
    }
    println!();
    let [images, texts] = logits.dims();
    let values = logits.to_data().to_vec::<f32>().unwrap_or_default();
    for i in 0..images {
        print!("  {:<8}", names[i]);
        for t in 0..texts {
            print!(" {:>18.3}", values[i * texts + t]);
        }
        println!();
    }
    println!();
}
