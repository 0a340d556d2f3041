//! The IR's tests: the corpus of programs (one per kind of intervention of the examples) against
//! the committed golden files, structural checks with each diagnostic, the committed schema, and
//! the decoder and checker fuzzed.

mod aliases;
mod check;
mod corpus;
mod fuzz;
mod golden;
mod interpret;
mod language_model;
mod llama;
mod record;
mod record_llama;
mod schema;
mod tensors;
mod validate;
