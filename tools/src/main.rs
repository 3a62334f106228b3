//! `tfx`: the operator's, member's and auditor's command-line tool. Each subcommand lives in its
//! own module; this file parses arguments and maps outcomes to exit codes:
//! 0 success, 1 a check failed (a record did not verify, input was invalid), 2 an error
//! (unreadable file, bad arguments). Errors print as one chain: `tfx: reading x.json: …`.

mod audit;
mod audit_log;
mod bench;
mod client;
mod consortium;
mod demo;
mod governance;
mod key;
mod localnet;
mod member;
mod onboarding;
mod policy;
mod record;
mod sealed;
mod warnings;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The node's allocator and settings (`node/src/bin/tfx-node.rs`), so that what `tfx bench`
/// measures in this process — the raw-sled baseline, sealing, verification — runs on the same
/// allocator as the node it is compared with.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "tfx",
    version,
    about = "Tianfu eXchange: signed, minimised data exchange between agencies and banks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a complete four-member consortium on loopback: onboarding, four nodes, records
    /// submitted at each issuer and replicated everywhere, clean shutdown.
    #[command(after_help = "Example:\n  tfx demo\n  tfx demo --keep /tmp/tfx-demo --records 100")]
    Demo(demo::DemoArgs),
    /// Create a consortium (CA, genesis roster, governors).
    #[command(subcommand)]
    Consortium(governance::ConsortiumCommand),
    /// Bring a member in: init (member), approve (operator), join (member).
    #[command(subcommand)]
    Member(governance::MemberCommand),
    /// Sign, show and verify roster versions.
    #[command(subcommand)]
    Roster(governance::RosterCommand),
    /// Check, sign, show and install the data-minimization policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Audit: the disclosures a node sent, audit bundles (export, offline verify), whole-store checks.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Generate record-signing keys and pseudonym secrets.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Validate, sign, verify and inspect records offline.
    #[command(subcommand)]
    Record(record::RecordCommand),
    /// Measure throughput on this machine (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The risk warnings a node holds, resolved to the enterprise where its holdings allow.
    #[command(after_help = "Example:\n  tfx warnings --node members/pbc-chengdu")]
    Warnings {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: std::path::PathBuf,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// A running node's peers, connection state, per-origin heads and lag.
    #[command(after_help = "Example:\n  tfx status --node members/bank-a")]
    Status {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: std::path::PathBuf,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// How a command ended when it did not fail outright.
#[derive(Debug)]
pub enum Outcome {
    Ok,
    /// A check ran and failed (exit 1); the command already explained why.
    CheckFailed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Consortium(c) => governance::consortium(c),
        Command::Member(c) => governance::member(c),
        Command::Roster(c) => governance::roster(c),
        Command::Policy(c) => policy::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Key(c) => key::run(c),
        Command::Record(c) => record::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Status { node, json } => client::status(&node, json),
        Command::Warnings { node, json } => warnings::run(&node, json),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tfx: {e:#}");
            ExitCode::from(2)
        }
    }
}
