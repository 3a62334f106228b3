//! `tfx-node`: the member node binary. `tfx-node --config node.toml` runs the node (QUIC
//! transport, sync, local API) until SIGTERM or SIGINT, then shuts down cleanly;
//! `tfx-node check-store` re-verifies a stopped node's data offline.
//! Exit status: 0 ok, 1 a check failed, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tfx_node::config::{LogFormat, NodeConfig};
use tfx_node::keyfile;
use tfx_node::node::Node;
use tfx_node::sled_store::SledStore;
use tfx_protocol::log::verify_log;
use tfx_protocol::record::KeySet;
use tfx_protocol::store::Store;
use tfx_protocol::MemberId;

#[derive(Parser)]
#[command(
    name = "tfx-node",
    version,
    about = "tfx member node",
    args_conflicts_with_subcommands = true,
    after_help = "Run a node:\n  tfx-node --config /etc/tfx/node.toml\n(see deploy/node.example.toml for every setting)"
)]
struct Cli {
    /// Run the node with this configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log format, overriding `[log] format`: "text" or "json" (one object per line).
    #[arg(long, value_parser = ["text", "json"], requires = "config")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Re-verify every log in a data directory: each envelope's signature and position, each
    /// stored disclosure, the id index, the stored Merkle nodes, the head and the latest
    /// checkpoint. Run it with the node stopped (sled locks its directory).
    #[command(
        after_help = "Example:\n  tfx-node check-store --data /var/lib/tfx --pub keys/bank-a.pub --pub keys/ip-center.pub"
    )]
    CheckStore {
        /// The node's data directory.
        #[arg(long)]
        data: PathBuf,
        /// `ORIGIN=FILE`: an origin's record-signing public key (SPKI PEM). Repeat for each
        /// origin; a key verifies only its own origin's records and checkpoints.
        #[arg(long = "pub", required = true, value_parser = parse_origin_key)]
        public: Vec<(MemberId, PathBuf)>,
    },
}

fn parse_origin_key(s: &str) -> Result<(MemberId, PathBuf), String> {
    let (id, path) = s
        .split_once('=')
        .ok_or("expected ORIGIN=FILE, e.g. bank-a=keys/bank-a.pub")?;
    Ok((
        MemberId::new(id).map_err(|e| e.to_string())?,
        PathBuf::from(path),
    ))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tfx-node: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match (cli.config, cli.command) {
        (Some(config), _) => daemon(&config, cli.log_format.as_deref()).map(|()| true),
        (None, Some(Command::CheckStore { data, public })) => check_store(data, public),
        (None, None) => {
            anyhow::bail!("give --config FILE to run the node, or a command (see --help)")
        }
    }
}

fn daemon(path: &std::path::Path, log_format: Option<&str>) -> anyhow::Result<()> {
    let mut config = NodeConfig::load(path)?;
    match log_format {
        Some("json") => config.log_format = LogFormat::Json,
        Some(_) => config.log_format = LogFormat::Text,
        None => {}
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,quinn_proto=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let node = Node::start(&config).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        node.shutdown().await;
        Ok(())
    })
}

fn check_store(data: PathBuf, public: Vec<(MemberId, PathBuf)>) -> anyhow::Result<bool> {
    let keys = public
        .iter()
        .map(|(origin, p)| {
            let key = keyfile::load_verifying_key(p)
                .with_context(|| format!("loading {}", p.display()))?;
            Ok((origin.clone(), key))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(data.is_dir(), "{}: no such data directory", data.display());
    let store = SledStore::open_existing(&data)
        .with_context(|| format!("opening store {}", data.display()))?;
    let keys = KeySet(keys);
    let mut all_ok = true;
    let origins = store.origins().context("listing logs")?;
    if origins.is_empty() {
        println!("{}: no logs", data.display());
    }
    for origin in origins {
        match verify_log(&store, &origin, &keys, &mut |_| {}) {
            Ok(r) => println!(
                "{origin}: ok — {} records, {} disclosures verified, checkpoint at {}",
                r.size, r.disclosures_verified, r.checkpoint_size
            ),
            Err(e) => {
                all_ok = false;
                println!("{origin}: FAILED — {e}");
            }
        }
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
