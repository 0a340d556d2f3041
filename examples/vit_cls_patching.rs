//! CLS-token patching on a Vision Transformer: classify two images, then, layer by layer, put the
//! first image's CLS token into the second's forward pass and watch the class logits move.
//!
//! ```sh
//! cargo run --release --example vit_cls_patching [MODEL_ID] [IMAGE_A IMAGE_B]
//! # default: google/vit-base-patch16-224 and the fixture's images
//! ```
//!
//! Paths are transformers 5's: `vit.layers[i]` is encoder layer `i` (its output is the residual
//! stream `[batch, 1 + patches, hidden]`, the CLS token first), `vit.layers[i].attention.attn_probs`
//! its attention probabilities `[batch, heads, tokens, tokens]`, `classifier` the head on the final
//! CLS token. Images go through the model's `preprocessor_config.json` (Pillow's resize,
//! reproduced exactly; rescale; normalize).
//!
//! The model comes from the Hugging Face cache or the Hub; when neither is reachable the example
//! says so and runs on the tiny random ViT the tests use.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::hub::ModelFiles;
use nnsight_models::vision::{ImageProcessor, open_image};
use nnsight_models::vit::ViTForImageClassification;

type ViT = ViTForImageClassification<Flex>;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, processor, name) = load(args.first().map_or("google/vit-base-patch16-224", String::as_str))?;
    let fixture = nnsight_support::fixture_dir("tiny-vit").join("images");
    let paths: Vec<PathBuf> = match &args[..] {
        [_, a, b, ..] => vec![a.into(), b.into()],
        _ => vec![fixture.join("wide.png"), fixture.join("tall.png")],
    };
    let images = paths.iter().map(|p| open_image(p)).collect::<nnsight::Result<Vec<_>>>()?;
    let pixels = processor.preprocess::<Flex>(&images, &Default::default())?;
    model.check_pixel_values(&pixels)?;
    let layers = model.vit.layers.len();
    println!("model: {name} ({layers} layers, {} classes)", model.labels.len());

    // One trace over both images: every layer's CLS token, the last layer's attention, the logits.
    let (cls, attention, logits) = model.trace(pixels.clone()).run(async |m| {
        let (mut cls, mut attention) = (Vec::new(), None);
        for (i, layer) in m.vit.layers.iter().enumerate() {
            // In execution order: the layer's attention runs before its output.
            if i == layers - 1 {
                attention = Some(layer.attention.attn_probs.output::<Tensor<Flex, 4>>().await?);
            }
            cls.push(layer.output().await?.narrow(1, 0, 1));
        }
        let attention = attention.expect("the last layer ran");
        Ok((cls, attention, m.output().await?))
    })?;
    for (i, path) in paths.iter().enumerate() {
        let (class, p) = top(&model, &logits, i);
        println!("image {i} ({}): {class} ({p:.3})", file_name(path));
    }
    let [_, heads, tokens, _] = attention.dims();
    let to_patches = attention.slice([1..2, 0..heads, 0..1, 1..tokens]).mean_dim(1).reshape([tokens - 1]);
    let weights: Vec<f32> = to_patches.into_data().to_vec().expect("f32 probabilities");
    let side = (tokens - 1).isqrt();
    if side * side == tokens - 1 {
        println!(
            "\nimage 1's CLS attention over its {side}×{side} patches (last layer, mean of {heads} heads):"
        );
        let max = weights.iter().copied().fold(0.0f32, f32::max);
        for row in weights.chunks(side) {
            let shades: String = row.iter().map(|w| shade(w / max)).collect();
            println!("  {shades}");
        }
    }

    // Patch image 1's CLS token after layer L with image 0's: where does the class move?
    let (source, _) = top(&model, &logits, 0);
    println!("\nimage 1 with image 0's CLS token after layer L — image 1's top class, and p({source}):");
    let target = pixels.narrow(0, 1, 1);
    for (layer, source_cls) in cls.iter().enumerate() {
        let donor = source_cls.clone().narrow(0, 0, 1);
        let patched = model.trace(target.clone()).run(async |m| {
            m.vit.layers[layer].output().edit(move |h| h.slice_assign([0..1, 0..1], donor.clone())).await?;
            m.output().await
        })?;
        let (class, p) = top(&model, &patched, 0);
        let index = model.labels.iter().position(|l| *l == source).expect("a label of the model");
        let p_source = probabilities(&patched, 0)[index];
        println!("  L = {layer:>2}: {class:<24} ({p:.3})  p({source}) = {p_source:.3}");
    }
    Ok(())
}

/// The classifier, its image processor, and what was loaded (the fixture when `id` cannot be).
fn load(id: &str) -> nnsight::Result<(ViT, ImageProcessor, String)> {
    let device = Default::default();
    let from = |files: &ModelFiles| -> nnsight::Result<(ViT, ImageProcessor)> {
        let (model, config) = ViT::from_files(files, &device)?;
        let (h, _) = config.image_size.hw();
        let processor = match &files.preprocessor {
            Some(path) => ImageProcessor::from_file(path)?,
            None => ImageProcessor::vit(h as u32),
        };
        Ok((model, processor))
    };
    match ModelFiles::resolve(id).and_then(|files| from(&files)) {
        Ok((model, processor)) => Ok((model, processor, id.to_owned())),
        Err(error) => {
            println!("could not load {id}: {error}");
            println!("running on the bundled tiny ViT fixture instead (random weights: the numbers");
            println!("show the workflow, not what ViT knows)\n");
            let (model, processor) = from(&ModelFiles::from_dir(&nnsight_support::fixture_dir("tiny-vit"))?)?;
            Ok((model, processor, "tiny-vit (test fixture)".to_owned()))
        }
    }
}

fn probabilities(logits: &Tensor<Flex, 2>, row: usize) -> Vec<f32> {
    let probs = burn::tensor::activation::softmax(logits.clone().narrow(0, row, 1), 1);
    probs.into_data().to_vec().expect("f32 probabilities")
}

/// The most likely class of `row` and its probability.
fn top(model: &ViT, logits: &Tensor<Flex, 2>, row: usize) -> (String, f32) {
    let probs = probabilities(logits, row);
    let (best, p) =
        probs.iter().enumerate().fold((0, f32::MIN), |a, (i, &p)| if p > a.1 { (i, p) } else { a });
    (model.labels[best].clone(), p)
}

fn shade(level: f32) -> char {
    const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];
    SHADES[((level * 4.0).round() as usize).min(4)]
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
