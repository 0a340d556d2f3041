//! The server through real HTTP on loopback: local == remote byte for byte, the job life cycle
//! (events, resume, cancel, results with ranges, time limits), and every refusal's status and code.

mod batching;
mod broker;
mod harness;
mod jobs;
mod load;
mod refusals;
mod remote;
mod scale_out;

/// The tiny Llama fixture, loaded here.
fn batching_local() -> nnsight_models::LanguageModel<
    burn::backend::Flex,
    nnsight_models::llama::LlamaForCausalLM<burn::backend::Flex>,
> {
    let dir = nnsight_support::fixture_dir("tiny-llama");
    nnsight_models::LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap()
}
