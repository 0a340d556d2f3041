//! The Vision Transformer (ViT) — module for module as Hugging Face's `ViTModel` and
//! `ViTForImageClassification` (transformers ≥ 5 module names), loadable from the Hub or a local
//! directory (checkpoints with either transformers 4's or 5's names), with the image
//! preprocessing of `ViTImageProcessor` ([`crate::vision::ImageProcessor`]).
//!
//! Paper: Dosovitskiy et al. 2021, *An Image is Worth 16x16 Words*. Reference implementation,
//! whose numerics the tests match: Hugging Face transformers `models/vit/modeling_vit.py` (eager
//! attention) and `image_processing_pil_vit.py`.

mod attention;
mod config;
mod embeddings;
mod layer;
mod load;
mod model;

pub use attention::{ViTAttention, ViTAttentionEnvoy};
pub use config::{Size, ViTConfig};
pub use embeddings::{
    PatchProjection, PatchProjectionEnvoy, ViTEmbeddings, ViTEmbeddingsEnvoy, ViTPatchEmbeddings,
    ViTPatchEmbeddingsEnvoy,
};
pub use layer::{ViTLayer, ViTLayerEnvoy, ViTMlp, ViTMlpEnvoy};
pub use model::{
    ViTForImageClassification, ViTForImageClassificationEnvoy, ViTModel, ViTModelEnvoy, ViTPooler,
    ViTPoolerEnvoy,
};
