//! API keys: bearer tokens `nns_<id>_<secret>`, stored only as their SHA-256 in a JSON file the
//! `keys` subcommand manages; each key has a name, an optional quota of its own and optionally a
//! list of the models it may use. The server re-reads the file when it changes, so keys added or
//! revoked while it runs take effect at once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Quota;

/// One key, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Its public id (the token's second part): names the key in logs, quotas and metrics.
    pub id: String,
    /// Who it is for.
    pub name: String,
    /// Hex SHA-256 of the whole token.
    pub hash: String,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// A revoked key is refused (`403`).
    #[serde(default)]
    pub revoked: bool,
    /// Its own quota (else the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The models it may use (else all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<KeyEntry>,
}

/// Why the keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing it failed.
    #[error("the keys file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It is not a keys file.
    #[error("the keys file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No key has this id.
    #[error("no key has the id `{0}`")]
    NoSuchKey(String),
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random id (jobs, keys).
pub(crate) fn random_id(bytes: usize) -> String {
    random_hex(bytes)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// When a file was last changed, and its length.
type Stamp = (SystemTime, u64);

/// The keys file, read again when it changes.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    cached: Mutex<(Option<Stamp>, Vec<KeyEntry>)>,
}

impl KeyStore {
    /// The keys in `path` (none yet if it does not exist).
    ///
    /// # Errors
    /// [`KeyError`] for a file that exists but cannot be read as keys.
    pub fn open(path: &Path) -> Result<KeyStore, KeyError> {
        let store = KeyStore { path: path.to_owned(), cached: Mutex::new((None, Vec::new())) };
        store.refresh()?;
        Ok(store)
    }

    /// Reads the file again if it changed since the last read.
    fn refresh(&self) -> Result<(), KeyError> {
        // The time and the length: two writes within one tick of the clock still differ in length
        // (a key added) or are re-read at the next change.
        let modified = std::fs::metadata(&self.path).and_then(|m| Ok((m.modified()?, m.len()))).ok();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_some() && cached.0 == modified {
            return Ok(());
        }
        cached.1 = read(&self.path)?.keys;
        cached.0 = modified;
        Ok(())
    }

    /// The key of `token`, if there is one (revoked keys too: the caller answers `403`).
    pub fn find(&self, token: &str) -> Option<KeyEntry> {
        if let Err(error) = self.refresh() {
            // Keep the keys last read: a half-written file must not lock everyone out.
            eprintln!("nnsight-server: {error}");
        }
        let hash = hash_token(token);
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.1.iter().find(|k| k.hash == hash).cloned()
    }

    /// Every key.
    pub fn list(&self) -> Vec<KeyEntry> {
        let _ = self.refresh();
        self.cached.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// Adds a key for `name` and returns its token: shown once, never stored.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read or written.
    pub fn add(
        &self,
        name: &str,
        quota: Option<Quota>,
        models: Option<Vec<String>>,
    ) -> Result<(String, KeyEntry), KeyError> {
        let mut file = read(&self.path)?;
        let id = random_hex(4);
        let token = format!("nns_{id}_{}", random_hex(20));
        let entry = KeyEntry {
            id,
            name: name.to_owned(),
            hash: hash_token(&token),
            created_ms: now_ms(),
            revoked: false,
            quota,
            models,
        };
        file.keys.push(entry.clone());
        write(&self.path, &file)?;
        self.refresh()?;
        Ok((token, entry))
    }

    /// Revokes the key `id`.
    ///
    /// # Errors
    /// [`KeyError::NoSuchKey`], or the file cannot be read or written.
    pub fn revoke(&self, id: &str) -> Result<(), KeyError> {
        let mut file = read(&self.path)?;
        let entry =
            file.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| KeyError::NoSuchKey(id.to_owned()))?;
        entry.revoked = true;
        write(&self.path, &file)?;
        self.refresh()
    }
}

fn read(path: &Path) -> Result<KeyFile, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| KeyError::Invalid { path: path.to_owned(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(error) => Err(KeyError::Io { path: path.to_owned(), error }),
    }
}

/// Writes `file` whole or not at all (a temporary file renamed over it), readable by its owner
/// only: the hashes are not secret, but nobody else needs them.
fn write(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    let io = |error| KeyError::Io { path: path.to_owned(), error };
    let text = serde_json::to_string_pretty(file).map_err(|e| io(std::io::Error::other(e)))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, text).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&temporary, path).map_err(io)
}
