//! CLIP (`openai/clip-vit-base-patch32` and its kind), module for module as Hugging Face's
//! `CLIPModel`: a causal text transformer pooled at each text's end-of-text token, a vision
//! transformer pooled at its class token, both projected into one space, and their cosine
//! similarities scaled by a learned temperature. Texts are prepared by [`encode_texts`], images
//! by [`ImageProcessor`](crate::vision::ImageProcessor) (shortest-edge resize and center crop);
//! [`ClipModel::tracer`] takes them as invokes of their own tower ([`ClipInvokes`]).
//!
//! Paper: Radford et al. 2021, *Learning Transferable Visual Models From Natural Language
//! Supervision*. Reference implementation, whose numerics the tests match: Hugging Face
//! transformers `models/clip/modeling_clip.py` (eager attention).

mod config;
mod inputs;
mod invokes;
mod layer;
mod load;
mod model;
mod text;
mod vision;

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use inputs::encode_texts;
pub use invokes::{ClipInput, ClipInvokes, IMAGES, TEXTS};
pub use layer::{
    ClipActivation, ClipActivationEnvoy, ClipAttention, ClipAttentionEnvoy, ClipEncoder, ClipEncoderEnvoy,
    ClipEncoderLayer, ClipEncoderLayerEnvoy, ClipMlp, ClipMlpEnvoy,
};
pub use model::{ClipModel, ClipModelEnvoy};
pub use text::{ClipTextEmbeddings, ClipTextEmbeddingsEnvoy, ClipTextModel, ClipTextModelEnvoy};
pub use vision::{ClipVisionEmbeddings, ClipVisionEmbeddingsEnvoy, ClipVisionModel, ClipVisionModelEnvoy};
