//! `tfx-node`: the member node binary. `tfx-node --config node.toml` runs the node (QUIC
//! transport, sync, local API) until SIGTERM or SIGINT, then shuts down cleanly;
//! `tfx-node check-store` re-verifies a stopped node's data offline; `tfx-node backup` takes a
//! consistent backup (through a running node's API, or from a stopped node's store) and
//! `tfx-node restore` rebuilds a store from one.
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

/// jemalloc, not glibc's malloc. A node's threads take turns at the same data — the connection
/// readers decode a peer's messages, the verification pool checks them, the sync driver stores
/// them, sled frees its pages on its own threads — and glibc either spreads that over many
/// arenas that each fragment (a member held 303 MiB after a 200k-record catch-up with glibc's
/// default arena count, 149 MiB with one) or, capped at one arena, serialises every allocation
/// on that arena's lock. jemalloc's per-thread caches and per-size-class locks avoid both at
/// one arena: catching up 1M records, a member spent 49 µs of CPU per record against glibc's
/// 90, its peer 14 against 31, and held 106 MiB. Its settings (one arena, background purging,
/// no transparent huge pages) are in `.cargo/config.toml`; `_RJEM_MALLOC_CONF` overrides them
/// at run time. BENCHMARKS.md, "jemalloc", has the measurements, mimalloc's among them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Write a consistent backup of the node's store (every log, disclosure, checkpoint and the
    /// disclosure ledger) to a new file. While the node runs this goes through its local API
    /// and writes do not pause; with the node stopped it reads the store directly.
    #[command(after_help = "Example:
  tfx-node backup --config /etc/tfx/node.toml --out /srv/backup/tfx-$(date +%F).tfxbackup")]
    Backup {
        #[arg(long)]
        config: PathBuf,
        /// The backup file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild the node's store from a backup, with the node stopped, into an empty data
    /// directory. Every record and checkpoint is verified against the roster first; on the
    /// next start the node recovers from peers any of its own records newer than the backup
    /// before it issues again, then catches up on the rest.
    #[command(after_help = "Example:
  tfx-node restore --config /etc/tfx/node.toml --from /srv/backup/tfx-2026-11-30.tfxbackup")]
    Restore {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        from: PathBuf,
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
        (None, Some(Command::Backup { config, out })) => backup(&config, &out).map(|()| true),
        (None, Some(Command::Restore { config, from })) => restore(&config, &from).map(|()| true),
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

fn print_summary(what: &str, s: &tfx_node::backup::Summary) {
    println!(
        "{what}: {} records of {} logs, {} ledger entries, {} bytes (member {}, taken at {})",
        s.records,
        s.origins,
        s.ledger_entries,
        s.bytes,
        s.member,
        tfx_protocol::Timestamp(s.created_at_ms).to_rfc3339()
    );
}

fn backup(config: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    anyhow::ensure!(
        !out.exists(),
        "{} exists; a backup never overwrites a file",
        out.display()
    );
    // A running node answers on its API (and holds sled's lock); a stopped one does not.
    if let Some(done) = backup_through_api(&config, out)? {
        return Ok(done);
    }
    let store = SledStore::open_existing(&config.data)
        .with_context(|| format!("opening {}", config.data.display()))?;
    let ledger = tfx_node::ledger::Ledger::open(&store)?;
    let key = keyfile::load_signing_key(&config.record_signing_key)
        .context("loading the record-signing key, which signs the backup")?;
    let s = tfx_node::backup::write_file(&store, &ledger, &config.member, &key, None, out)?;
    print_summary(&format!("backup {} (node stopped)", out.display()), &s);
    Ok(())
}

/// If the node is running, it writes the backup into its data directory, which is then moved
/// to `out` (copied and removed when `out` is on another file system). `None`: no node answers.
fn backup_through_api(config: &NodeConfig, out: &std::path::Path) -> anyhow::Result<Option<()>> {
    if std::net::TcpStream::connect_timeout(&config.api_listen, std::time::Duration::from_secs(2))
        .is_err()
    {
        return Ok(None);
    }
    let token = keyfile::load_secret(&config.api_token)
        .with_context(|| format!("reading the API token {}", config.api_token.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(3600)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("http://{}/v1/backup", config.api_listen))
        .header(
            "Authorization",
            format!("Bearer {}", hex::encode(&token[..])),
        )
        .send_empty()
        .with_context(|| format!("asking the node at {} for a backup", config.api_listen))?;
    let body: serde_json::Value = r.body_mut().read_json().context("the node's answer")?;
    if !r.status().is_success() {
        anyhow::bail!(
            "the node refused the backup ({}): {}",
            r.status(),
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let written = std::path::PathBuf::from(body["path"].as_str().context("no path in the answer")?);
    let summary: tfx_node::backup::Summary = serde_json::from_value(body["summary"].clone())
        .context("the backup summary in the answer")?;
    // Never over a file that appeared meanwhile: a hard link fails if `out` exists; across
    // file systems, copy into a file created exclusively.
    if std::fs::hard_link(&written, out).is_err() {
        use std::os::unix::fs::OpenOptionsExt;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("creating {}", out.display()))?;
        let mut from = std::fs::File::open(&written)?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("copying {} to {}", written.display(), out.display()))?;
        to.sync_all()?;
    }
    std::fs::remove_file(&written)?;
    print_summary(
        &format!("backup {} (node running)", out.display()),
        &summary,
    );
    Ok(Some(()))
}

fn restore(config: &std::path::Path, from: &std::path::Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    let genesis = tfx_node::node::read_genesis(&config.genesis)?;
    let chain = tfx_node::node::read_roster_chain(&config.roster_dir)?;
    let roster = tfx_protocol::roster::verify_chain(&genesis, &chain).with_context(|| {
        format!(
            "verifying the roster chain in {}",
            config.roster_dir.display()
        )
    })?;
    let s = tfx_node::backup::restore(from, &config.data, &config.member, &roster)
        .with_context(|| format!("restoring {}", from.display()))?;
    print_summary(
        &format!("restored {} into {}", from.display(), config.data.display()),
        &s,
    );
    println!("every log verified; on its next start the node recovers its own newer records from peers before issuing, then catches up");
    Ok(())
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
