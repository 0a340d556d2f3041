//! BERT encoders — module for module as Hugging Face's `BertModel` (MiniLM, `bert-base`, …),
//! loadable from the Hub or a local directory — and sentence embeddings as sentence-transformers
//! computes them ([`SentenceEncoder`]: tokenizer, right padding, mean pooling, normalisation).
//!
//! Paper: Devlin et al. 2019, *BERT*; Wang et al. 2020, *MiniLM*; Reimers & Gurevych 2019,
//! *Sentence-BERT*. Reference implementation, whose numerics the tests match: Hugging Face
//! transformers `models/bert/modeling_bert.py` (eager attention) and sentence-transformers'
//! `Pooling` / `Normalize`.

mod attention;
mod config;
mod embeddings;
mod layer;
mod load;
mod model;
mod sentence;

pub use attention::{
    BertAttention, BertAttentionEnvoy, BertSelfAttention, BertSelfAttentionEnvoy, BertSelfOutput,
    BertSelfOutputEnvoy,
};
pub use config::BertConfig;
pub use embeddings::{BertEmbeddings, BertEmbeddingsEnvoy};
pub use layer::{
    BertIntermediate, BertIntermediateEnvoy, BertLayer, BertLayerEnvoy, BertOutput, BertOutputEnvoy,
};
pub use model::{
    BertEncoder, BertEncoderEnvoy, BertModel, BertModelEnvoy, BertPooler, BertPoolerEnvoy, mean_pool,
    normalize,
};
pub use sentence::{SentenceBatch, SentenceEncoder};
