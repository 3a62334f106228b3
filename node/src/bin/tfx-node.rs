//! `tfx-node`: the member node binary. Today it offers the offline store check; the network
//! daemon (`tfx-node --config FILE`: QUIC transport, sync, local API) comes with the replication
//! work (DESIGN §7, §10). Exit status: 0 ok, 1 a check failed, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tfx_node::keyfile;
use tfx_node::sled_store::SledStore;
use tfx_protocol::log::verify_log;
use tfx_protocol::record::KeySet;
use tfx_protocol::store::Store;
use tfx_protocol::MemberId;

#[derive(Parser)]
#[command(name = "tfx-node", version, about = "tfx member node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let Command::CheckStore { data, public } = cli.command;
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
