//! Building a Llama from a safetensors checkpoint (Hugging Face names and layouts), from `f32`
//! tensors by Hugging Face name (e.g. dequantized from another format), or from random weights.

use burn::prelude::*;
use nnsight::HookPoint;

use nnsight::Result;

use super::{
    LlamaAttention, LlamaConfig, LlamaDecoderLayer, LlamaForCausalLM, LlamaMlp, LlamaModel,
    LlamaRotaryEmbedding, Silu,
};
use crate::building::{check_layer_count, projection, rms_norm};
use crate::hub::ModelFiles;
use crate::language_model::Pretrained;
use crate::lm_head::LmHead;
use crate::weights::{Kind, Random, Scope, TensorSource, Weights, checkpoint, embedding, given};

impl LlamaConfig {
    /// A model of this shape with random weights (normal with std `initializer_range`, norms 1,
    /// biases 0, as transformers initialises Llama).
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> LlamaForCausalLM<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a Llama from an invalid config: {problem}");
        }
        let source = Random::<B> { std: self.initializer_range, device: device.clone() };
        build(self, &source, device).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Loads a model from a Hub repository id (`HuggingFaceTB/SmolLM2-135M`) or a local directory;
    /// see [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, LlamaConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a model from its files: `config.json` and safetensors weights with Hugging Face's
    /// names (`model.layers.0.self_attn.q_proj.weight`, …; also without the `model.` prefix) and
    /// layouts (`nn.Linear` weights `[out, in]`, transposed here), in F32, F16 or BF16.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a missing or invalid `config.json` or an unreadable weights file,
    /// [`Error::MissingWeight`](nnsight::Error::MissingWeight) / [`Error::BadWeight`](nnsight::Error::BadWeight) naming a tensor that is absent or has the
    /// wrong shape or dtype.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, LlamaConfig)> {
        let config = LlamaConfig::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        check_layer_count(
            &weights,
            &["layers"],
            config.num_hidden_layers,
            &files.config,
            "num_hidden_layers",
        )?;
        let source = checkpoint::<B>(&weights, "model", "embed_tokens.weight", device);
        let model = build(&config, &source, device)?;
        Ok((model, config))
    }

    /// Builds a model of `config` from `f32` tensors asked for by Hugging Face name and shape,
    /// e.g. dequantized from a GGUF file: `tensors(name, shape)` returns the values of tensor
    /// `name` (`model.layers.3.mlp.up_proj.weight`, `model.norm.weight`, `lm_head.weight`, …),
    /// row-major, in Hugging Face's layout (`nn.Linear` weights `[out, in]`, as `shape` says).
    ///
    /// `lm_head.weight` is asked for only when `tie_word_embeddings` is false, biases only when
    /// `attention_bias` / `mlp_bias` is set.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a config that fails [`LlamaConfig::validate`]; the errors of `tensors`,
    /// which should be [`Error::MissingWeight`](nnsight::Error::MissingWeight) / [`Error::BadWeight`](nnsight::Error::BadWeight) naming the tensor; and
    /// [`Error::BadWeight`](nnsight::Error::BadWeight) when `tensors` returns the wrong number of values.
    pub fn from_tensors<F>(config: &LlamaConfig, tensors: F, device: &B::Device) -> Result<Self>
    where
        F: Fn(&str, &[usize]) -> Result<Vec<f32>>,
    {
        config.validate().map_err(|e| e.in_source("a Llama config"))?;
        let source =
            given::<B, _>(tensors, "the tensors given to LlamaForCausalLM::from_tensors".to_owned(), device);
        build(config, &source, device)
    }
}

fn build<B: Backend, S: TensorSource<B>>(
    config: &LlamaConfig,
    source: &S,
    device: &B::Device,
) -> Result<LlamaForCausalLM<B>> {
    let (d, vocab) = (config.hidden_size, config.vocab_size);
    let root = Scope::new(source);
    let body = root.pp("model");
    let embed_tokens = embedding(body.get("embed_tokens.weight", [vocab, d], Kind::Weight)?);
    let lm_head = if config.tie_word_embeddings {
        LmHead::new(embed_tokens.weight.val())
    } else {
        LmHead::new(root.get("lm_head.weight", [vocab, d], Kind::Weight)?)
    };
    let layers = (0..config.num_hidden_layers)
        .map(|i| layer(config, &body.pp("layers").pp(i)))
        .collect::<Result<Vec<_>>>()?;
    let rotary_emb = LlamaRotaryEmbedding::new(config, device).map_err(|e| e.in_source("a Llama config"))?;
    Ok(LlamaForCausalLM {
        model: LlamaModel {
            embed_tokens,
            layers,
            norm: rms_norm(&body.pp("norm"), config.hidden_size, config.rms_norm_eps)?,
            rotary_emb,
            sliding_window: config.sliding_window,
        },
        lm_head,
    })
}

/// A decoder layer, its tensors read in `vb` (`model.layers.{i}`).
fn layer<B: Backend, S: TensorSource<B>>(
    config: &LlamaConfig,
    vb: &Scope<'_, S>,
) -> Result<LlamaDecoderLayer<B>> {
    let (d, inner, head_dim) = (config.hidden_size, config.intermediate_size, config.head_dim());
    let (q_width, kv_width) = (config.num_attention_heads * head_dim, config.kv_heads() * head_dim);
    let (attn, mlp) = (vb.pp("self_attn"), vb.pp("mlp"));
    let attn_linear =
        |name: &str, d_in, d_out| projection(&attn.pp(name), d_in, d_out, config.attention_bias);
    let mlp_linear = |name: &str, d_in, d_out| projection(&mlp.pp(name), d_in, d_out, config.mlp_bias);
    Ok(LlamaDecoderLayer {
        input_layernorm: rms_norm(&vb.pp("input_layernorm"), config.hidden_size, config.rms_norm_eps)?,
        self_attn: LlamaAttention {
            q_proj: attn_linear("q_proj", d, q_width)?,
            k_proj: attn_linear("k_proj", d, kv_width)?,
            v_proj: attn_linear("v_proj", d, kv_width)?,
            o_proj: attn_linear("o_proj", q_width, d)?,
            attn_probs: HookPoint::new(),
            num_heads: config.num_attention_heads,
            num_key_value_heads: config.kv_heads(),
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
        },
        post_attention_layernorm: rms_norm(
            &vb.pp("post_attention_layernorm"),
            config.hidden_size,
            config.rms_norm_eps,
        )?,
        mlp: LlamaMlp {
            gate_proj: mlp_linear("gate_proj", d, inner)?,
            up_proj: mlp_linear("up_proj", d, inner)?,
            down_proj: mlp_linear("down_proj", inner, d)?,
            act_fn: Silu::new(),
        },
    })
}

impl<B: Backend> Pretrained<B> for LlamaForCausalLM<B> {
    fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Option<u32>)> {
        let (model, config) = LlamaForCausalLM::from_files(files, device)?;
        Ok((model, config.pad_id()))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::language_model::CausalLm;

    fn tiny(extra: &str) -> LlamaConfig {
        LlamaConfig::from_json(&format!(
            r#"{{"vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_random_model_runs_with_the_configured_shapes() {
        let config = tiny(r#", "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": true"#);
        let device = Default::default();
        let model = config.init::<Flex>(&device);
        let attn = &model.model.layers[0].self_attn;
        assert_eq!(attn.k_proj.weight.dims(), [16, 8], "two key/value heads of width 4");
        assert!(attn.o_proj.bias.is_some() && model.model.layers[1].mlp.down_proj.bias.is_some());
        assert_eq!((model.vocab_size(), model.max_positions()), (32, 64));
        let ids = Tensor::<Flex, 2, Int>::from_data([[1, 2, 3], [0, 4, 5]], &device);
        let mask = Tensor::<Flex, 2, Int>::from_data([[1, 1, 1], [0, 1, 1]], &device);
        let logits = model.forward(ids, mask);
        assert_eq!(logits.dims(), [2, 3, 32]);
        let values = logits.into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn tensors_by_name_are_asked_in_hugging_face_layout() {
        let config = tiny("");
        let asked = std::cell::RefCell::new(Vec::new());
        let model = LlamaForCausalLM::<Flex>::from_tensors(
            &config,
            |name, shape| {
                asked.borrow_mut().push((name.to_owned(), shape.to_vec()));
                Ok(vec![0.5; shape.iter().product()])
            },
            &Default::default(),
        )
        .unwrap();
        let asked = asked.into_inner();
        assert!(asked.contains(&("model.layers.1.self_attn.k_proj.weight".to_owned(), vec![8, 16])));
        assert!(asked.contains(&("model.layers.0.mlp.down_proj.weight".to_owned(), vec![16, 24])));
        assert!(asked.contains(&("lm_head.weight".to_owned(), vec![32, 16])), "untied by default");
        assert_eq!(asked.len(), 1 + 1 + 1 + 2 * 9);
        assert_eq!(model.model.layers[0].mlp.down_proj.weight.dims(), [24, 16]);

        let short =
            LlamaForCausalLM::<Flex>::from_tensors(&config, |_, _| Ok(vec![0.0; 3]), &Default::default());
        assert!(matches!(short, Err(nnsight::Error::BadWeight { .. })), "{short:?}");
    }
}
