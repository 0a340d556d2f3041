//! A real server on a free loopback port, hosting the tiny GPT-2 and the tiny Llama fixtures,
//! with a keys file of its own in a temporary directory.

use std::time::Duration;

use nnsight_server::config::{Config, Quota};
use nnsight_server::keys::KeyStore;
use nnsight_server::{Running, Server};

/// A started server and its keys.
pub(crate) struct Harness {
    /// The server (stopped on drop).
    pub(crate) server: Running,
    /// The keys file.
    pub(crate) keys: KeyStore,
    /// Holds the keys file.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A server whose config is the default one changed by `configure`, ready.
    pub(crate) fn start(configure: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let gpt2 = nnsight_support::fixture_dir("tiny-gpt2");
        let llama = nnsight_support::fixture_dir("tiny-llama");
        let text = format!(
            "listen = \"127.0.0.1:0\"\nkeys = {:?}\n\n[[models]]\nkey = \"gpt2\"\nsource = {:?}\n\n[[models]]\nkey = \"llama\"\nsource = {:?}\n",
            dir.path().join("keys.json"),
            gpt2,
            llama
        );
        let mut config = Config::parse(&text).expect("the test config parses");
        configure(&mut config);
        let keys = KeyStore::open(&config.keys).expect("the keys file opens");
        let server = Server::spawn(config).expect("the server starts");
        assert!(server.wait_ready(Duration::from_secs(120)), "the models load");
        Harness { server, keys, _dir: dir }
    }

    /// A new key with the default quota.
    pub(crate) fn key(&self, name: &str) -> String {
        self.keys.add(name, None, None).expect("a key is added").0
    }

    /// A new key with `quota`.
    pub(crate) fn key_with(&self, name: &str, quota: Quota, models: Option<Vec<String>>) -> String {
        self.keys.add(name, Some(quota), models).expect("a key is added").0
    }

    /// The keys file.
    pub(crate) fn keys_path(&self) -> std::path::PathBuf {
        self._dir.path().join("keys.json")
    }

    /// The base URL.
    pub(crate) fn url(&self) -> String {
        self.server.url()
    }
}
