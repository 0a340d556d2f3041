//! Finding a model's files: a local directory, or a Hugging Face Hub repository through hf-hub
//! (its cache, `HF_HOME`, `HF_ENDPOINT` and offline mode `HF_HUB_OFFLINE=1` honoured).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;

use nnsight::{Error, Result};

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
const TOKENIZER: &str = "tokenizer.json";
const PREPROCESSOR: &str = "preprocessor_config.json";

/// The files of a Hugging Face model, on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// Where they came from: a directory or a Hub repository id (for messages).
    pub source: String,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`, or every shard named by `model.safetensors.index.json`.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`, when the model has one.
    pub tokenizer: Option<PathBuf>,
    /// `preprocessor_config.json` (an image model's preprocessing), when the model has one.
    pub preprocessor: Option<PathBuf>,
}

impl ModelFiles {
    /// `id` is a local directory if one exists at that path, otherwise a Hub repository id such as
    /// `openai-community/gpt2` (optionally `repo@revision`).
    pub fn resolve(id: &str) -> Result<Self> {
        let path = Path::new(id);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.is_absolute() || id.starts_with('.') || id.split('/').count() > 2 {
            return Err(Error::Load {
                source_name: id.to_owned(),
                problem: "no such directory (and not a Hub repository id like `owner/name`)".to_owned(),
            });
        }
        let (repo, revision) = id.split_once('@').unwrap_or((id, "main"));
        Self::from_hub(repo, revision)
    }

    /// The files of a model saved in `dir` (as `save_pretrained` writes it).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let source = dir.display().to_string();
        let load_error = |problem: String| Error::Load { source_name: source.clone(), problem };
        if !dir.is_dir() {
            return Err(load_error("no such directory".to_owned()));
        }
        let config = dir.join(CONFIG);
        if !config.is_file() {
            return Err(load_error(format!("it has no {CONFIG}")));
        }
        let weights = if dir.join(WEIGHTS).is_file() {
            vec![dir.join(WEIGHTS)]
        } else if dir.join(WEIGHTS_INDEX).is_file() {
            let shards = shard_names(&dir.join(WEIGHTS_INDEX))?;
            let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
                return Err(load_error(format!(
                    "{WEIGHTS_INDEX} names {}, which is missing",
                    missing.display()
                )));
            }
            paths
        } else {
            return Err(load_error(format!("it has neither {WEIGHTS} nor {WEIGHTS_INDEX}")));
        };
        let tokenizer = Some(dir.join(TOKENIZER)).filter(|p| p.is_file());
        let preprocessor = Some(dir.join(PREPROCESSOR)).filter(|p| p.is_file());
        Ok(ModelFiles { source, config, weights, tokenizer, preprocessor })
    }

    /// The files of Hub repository `repo` at `revision`, from the hf-hub cache or downloaded
    /// (with a progress bar). With `HF_HUB_OFFLINE=1` only the cache is used.
    pub fn from_hub(repo: &str, revision: &str) -> Result<Self> {
        let source = if revision == "main" { repo.to_owned() } else { format!("{repo}@{revision}") };
        let hub_repo = Repo::with_revision(repo.to_owned(), RepoType::Model, revision.to_owned());
        let cache = Cache::from_env();
        let cached = cache.repo(hub_repo.clone());
        let files = if hub_offline() {
            let get = |name: &str| {
                cached.get(name).ok_or_else(|| Error::Load {
                    source_name: source.clone(),
                    problem: format!(
                        "{name} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                        cache.path().display()
                    ),
                })
            };
            Self::fetch(&source, get, |name| cached.get(name).is_some())?
        } else {
            let api = ApiBuilder::from_env().with_progress(true).build().map_err(|e| Error::Load {
                source_name: source.clone(),
                problem: format!("cannot set up the Hugging Face Hub client: {e}"),
            })?;
            let online = api.repo(hub_repo);
            let get = |name: &str| download(&online, &source, name, cache.path());
            // The repository's file list, asked for once and only if the cache cannot answer.
            let listing = std::cell::OnceCell::new();
            let has = |name: &str| {
                cached.get(name).is_some()
                    || listing
                        .get_or_init(|| online.info().ok())
                        .as_ref()
                        .is_some_and(|info| info.siblings.iter().any(|s| s.rfilename == name))
            };
            Self::fetch(&source, get, has)?
        };
        Ok(files)
    }

    fn fetch(
        source: &str,
        get: impl Fn(&str) -> Result<PathBuf>,
        has: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let config = get(CONFIG)?;
        let weights = if has(WEIGHTS) || !has(WEIGHTS_INDEX) {
            vec![get(WEIGHTS)?]
        } else {
            let index = get(WEIGHTS_INDEX)?;
            shard_names(&index)?.iter().map(|s| get(s)).collect::<Result<_>>()?
        };
        let tokenizer = if has(TOKENIZER) { Some(get(TOKENIZER)?) } else { None };
        let preprocessor = if has(PREPROCESSOR) { Some(get(PREPROCESSOR)?) } else { None };
        Ok(ModelFiles { source: source.to_owned(), config, weights, tokenizer, preprocessor })
    }
}

/// Whether `HF_HUB_OFFLINE` asks for the cache only (`1`, `true`, `yes`, `on`).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn download(repo: &ApiRepo, source: &str, name: &str, cache: &Path) -> Result<PathBuf> {
    repo.get(name).map_err(|e| Error::Load {
        source_name: source.to_owned(),
        problem: format!(
            "cannot get {name} from the Hugging Face Hub ({e}); it is not in the cache at {} either",
            cache.display()
        ),
    })
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The shard file names of a `model.safetensors.index.json`, each once, in order.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let load_error = |problem: String| Error::Load { source_name: index.display().to_string(), problem };
    let text = std::fs::read_to_string(index).map_err(|e| load_error(format!("cannot read it: {e}")))?;
    let parsed: ShardIndex =
        serde_json::from_str(&text).map_err(|e| load_error(format!("not a safetensors index: {e}")))?;
    let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(load_error("its weight_map is empty".to_owned()));
    }
    if let Some(bad) = shards.iter().find(|s| s.contains("..") || Path::new(s).is_absolute()) {
        return Err(load_error(format!("shard name `{bad}` leaves the model directory")));
    }
    Ok(shards)
}
