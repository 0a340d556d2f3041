//! CLIP: which caption fits which image, and what happens to those scores when one image's
//! vision-tower state is patched with another's — texts and images as invokes of their own tower,
//! in one trace.
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

    // One trace, each input an invoke of its own tower (texts part 0, images part 1). The texts'
    // body reads its pooled summaries; the first image invoke keeps the tall image's vision state
    // after layer 0, the second writes it into the small image's; the last body reads the logits,
    // which combine both towers (rows in the order the images were added).
    let image = |i: usize| pixels.clone().narrow(0, i, 1);
    let donor = nnsight::Shared::new("the tall image's state after layer 0");
    let (pooled, (), (), patched) = model
        .tracer()
        .invoke_texts((ids.clone(), mask.clone()), async |m| Ok(m.text_model.output().await?.1))
        .invoke_images(image(1), async |m| donor.set(m.vision_model.encoder.layers[0].output().await?))
        .invoke_images(image(0), async |m| {
            m.vision_model.encoder.layers[0].output().replace_with(|| donor.get()).await
        })
        .invoke_images(image(2), async |m| m.output().await)
        .run()?;
    let plain = model.forward(ids, mask, pixels);
    println!("text tower's pooled summaries: {:?} (texts × width)\n", pooled.dims());
    show("similarity logits (image × text)", &plain, &names);
    show(
        "with the small image's vision state replaced by the tall image's after layer 0",
        &patched,
        &["tall", "small*", "wide"],
    );
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
