//! [`RemoteModel`]: a language model hosted by a server, traced with the same bodies as a local
//! one.

use std::collections::BTreeMap;

use nnsight_models::LanguageModel;

use super::{Client, ClientError, Job, Saves, SubmitOptions};
use crate::arch::Architecture;
use crate::intervention::Intervention;
use crate::manifest::Manifest;
use crate::record::{RecordDevice, RecordError, Recorder, Recording, record};
use crate::validate::{Limits, validate};
use nnsight_models::vocabulary::Standardized;

/// The shape-only twin a body is recorded on.
pub type TwinLm<A> = LanguageModel<Recorder, <A as Architecture>::Model<Recorder>>;

/// A language model of family `A` hosted by a server: bodies are recorded on its shape-only twin
/// (built from the config and tokenizer the server sends; no weights), checked against its
/// manifest, and run there.
///
/// ```no_run
/// use nnsight_remote::arch::Gpt2;
/// use nnsight_remote::client::RemoteModel;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let remote = RemoteModel::<Gpt2>::connect("http://127.0.0.1:8470", "nns_...", "gpt2")?;
/// let saves = remote.trace(|lm, rec| {
///     let h = lm.trace("The Eiffel Tower is in").run(async |m| m.transformer.h[1].output().await)?;
///     rec.save("h1", &h)
/// })?;
/// println!("{:?}", saves.get("h1").map(|t| t.shape.clone()));
/// # Ok(())
/// # }
/// ```
pub struct RemoteModel<A: Architecture> {
    client: Client,
    model: String,
    manifest: Manifest,
    twin: TwinLm<A>,
}

impl<A: Architecture> std::fmt::Debug for RemoteModel<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteModel")
            .field("client", &self.client)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl<A: Architecture> RemoteModel<A> {
    /// Connects to hosted model `model` of the server at `url` with API key `key`: fetches its
    /// manifest and twin, and checks that the twin built here describes the same model.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`unknown_key`, `unknown_model`, ...); [`ClientError::Protocol`]
    /// for a model of another family than `A`; [`ClientError::DigestMismatch`] when the twin
    /// built here and the server's manifest disagree.
    pub fn connect(url: &str, key: &str, model: &str) -> Result<Self, ClientError> {
        Self::with_client(Client::new(url, key), model)
    }

    /// [`connect`](Self::connect) through `client`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn with_client(client: Client, model: &str) -> Result<Self, ClientError> {
        let twin_info = client.twin(model)?;
        if twin_info.arch != A::NAME {
            return Err(ClientError::Protocol(format!(
                "`{model}` is a {} model; this RemoteModel is for {}",
                twin_info.arch,
                A::NAME
            )));
        }
        let config = A::parse_config(&twin_info.config.to_string())
            .map_err(|e| ClientError::Protocol(format!("the server's config of `{model}`: {e}")))?;
        let tokenizer: tokenizers::Tokenizer = twin_info
            .tokenizer
            .parse()
            .map_err(|e| ClientError::Protocol(format!("the server's tokenizer of `{model}`: {e}")))?;
        let device = RecordDevice::default();
        let twin =
            LanguageModel::new(A::init::<Recorder>(&config, &device), tokenizer, twin_info.pad_id, device)
                .with_eos(twin_info.eos_ids);
        let manifest = client.manifest(model)?;
        let local = Manifest::of_language_model(&twin, A::callable())
            .map_err(|e| ClientError::Protocol(format!("scanning the twin of `{model}`: {e}")))?;
        if local.config_digest != manifest.config_digest {
            return Err(ClientError::DigestMismatch {
                what: "architecture",
                local: local.config_digest,
                remote: manifest.config_digest,
            });
        }
        if local.tokenizer_digest != manifest.tokenizer_digest {
            return Err(ClientError::DigestMismatch {
                what: "tokenizer",
                local: local.tokenizer_digest.unwrap_or_default(),
                remote: manifest.tokenizer_digest.unwrap_or_default(),
            });
        }
        Ok(RemoteModel { client, model: model.to_owned(), manifest, twin })
    }

    /// The shape-only twin bodies run on (trace it as the local model).
    pub fn lm(&self) -> &TwinLm<A> {
        &self.twin
    }

    /// The hosted model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The client it sends with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Records `body` on the twin and checks it against the manifest: the intervention that
    /// would be sent.
    ///
    /// # Errors
    /// [`ClientError::Record`] for a body the IR cannot express (or a trace that fails as it
    /// would locally); [`ClientError::Invalid`] for one the hosted model cannot run.
    pub fn record<T>(
        &self,
        body: impl FnOnce(&TwinLm<A>, &Recording) -> Result<T, RecordError>,
    ) -> Result<Intervention, ClientError> {
        let mut recorded = record(self.twin.model(), |rec| body(&self.twin, rec))?;
        // Text prompts tokenized here as the host would (the same tokenizer: its digest was
        // checked), so that every shape is checked before sending.
        recorded.program.tokenize(|text| self.twin.encode(text).map_err(|e| e.to_string())).map_err(
            |(t, i, message)| {
                ClientError::Invalid(vec![crate::Diagnostic::program(
                    crate::Code::BadInput,
                    format!("trace {t} invoke {i}: {message}"),
                )])
            },
        )?;
        // TransformerLens' hook names resolved as the host resolves them.
        crate::aliases::resolve(&mut recorded.program, &self.twin.model().vocabulary())
            .map_err(|d| ClientError::Invalid(vec![d]))?;
        let shapes: BTreeMap<_, _> = recorded
            .tensors
            .iter()
            .filter_map(|(name, data)| {
                crate::record::ir_dtype(data.dtype).map(|dtype| (name.clone(), (data.shape.to_vec(), dtype)))
            })
            .collect();
        // The server applies its own limits; here only what the model itself allows.
        let unlimited = Limits {
            max_nodes: usize::MAX,
            max_traces: usize::MAX,
            max_invokes: usize::MAX,
            max_new_tokens: u32::MAX,
            max_saved_bytes: u64::MAX,
        };
        validate(&self.manifest, &recorded.program, &shapes, &unlimited).map_err(ClientError::Invalid)?;
        recorded.intervention().map_err(|d| ClientError::Invalid(vec![d]))
    }

    /// Records `body` ([`record`](Self::record)) and sends it; the job runs on the server.
    ///
    /// # Errors
    /// As [`record`](Self::record) and [`Client::submit`].
    pub fn submit<T>(
        &self,
        options: &SubmitOptions,
        body: impl FnOnce(&TwinLm<A>, &Recording) -> Result<T, RecordError>,
    ) -> Result<Job, ClientError> {
        let intervention = self.record(body)?;
        self.client.submit(&self.model, &intervention, options)
    }

    /// Runs `body` on the server and waits for its saves, showing the job's status on a
    /// terminal.
    ///
    /// # Errors
    /// As [`submit`](Self::submit) and [`Job::wait`].
    pub fn trace<T>(
        &self,
        body: impl FnOnce(&TwinLm<A>, &Recording) -> Result<T, RecordError>,
    ) -> Result<Saves, ClientError> {
        self.submit(&SubmitOptions::default(), body)?.wait(true)
    }
}

/// `lm.remote(url, key, model)`: the hosted counterpart of a local language model, as nnsight's
/// `remote=True` — the same bodies, run by the server on its copy of the model.
pub trait RemoteExt {
    /// The model's family.
    type Arch: Architecture;

    /// Connects to hosted model `model` (of this model's family) on the server at `url`.
    ///
    /// # Errors
    /// As [`RemoteModel::connect`].
    fn remote(&self, url: &str, key: &str, model: &str) -> Result<RemoteModel<Self::Arch>, ClientError>;
}

impl<B: burn::prelude::Backend, M: crate::arch::Family> RemoteExt for LanguageModel<B, M> {
    type Arch = M::Arch;

    fn remote(&self, url: &str, key: &str, model: &str) -> Result<RemoteModel<M::Arch>, ClientError> {
        RemoteModel::connect(url, key, model)
    }
}
