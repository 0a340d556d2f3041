//! Loading by Hub repository id from the hf-hub cache with `HF_HUB_OFFLINE=1`: no network, the
//! cache layout Hugging Face tools write (`models--owner--name/refs/main` → `snapshots/<commit>/`).
//!
//! One test in its own binary: it sets process environment variables.

mod support;

use std::fs;

use nnsight::Error;
use nnsight_models::LanguageModel;
use support::fixture::{TinyGpt2, fixture_dir, tiny_gpt2};

#[test]
fn offline_mode_loads_from_the_cache_and_says_when_a_model_is_not_there() {
    let home = tempfile::tempdir().unwrap();
    // SAFETY: this binary runs this one test; no other thread reads the environment meanwhile.
    unsafe {
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }

    let missing = LanguageModel::from_pretrained("nnsight-rs/tiny-gpt2", &Default::default());
    let error: Error = missing.map(|_: TinyGpt2| ()).expect_err("nothing is cached yet");
    let message = error.to_string();
    assert!(message.contains("nnsight-rs/tiny-gpt2"), "{message}");
    assert!(
        message.contains("not in the Hugging Face cache") && message.contains("HF_HUB_OFFLINE"),
        "{message}"
    );

    let repo = home.path().join("hub").join("models--nnsight-rs--tiny-gpt2");
    let snapshot = repo.join("snapshots").join("0123456789abcdef");
    fs::create_dir_all(&snapshot).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs").join("main"), "0123456789abcdef").unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(fixture_dir("tiny-gpt2").join(name), snapshot.join(name)).unwrap();
    }

    let cached: TinyGpt2 =
        LanguageModel::from_pretrained("nnsight-rs/tiny-gpt2", &Default::default()).unwrap();
    let prompt = "The Eiffel Tower is in the city of";
    support::assert_identical(&cached.forward(prompt).unwrap(), &tiny_gpt2().forward(prompt).unwrap());
}
