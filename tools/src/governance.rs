//! Command-line surface of the PKI and governance commands (`tfx consortium`, `tfx member`,
//! `tfx roster`); the work is in [`crate::consortium`] (operator side) and [`crate::member`]
//! (new member's side).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tfx_protocol::MemberId;

use crate::consortium::{self, parse_governor};
use crate::{member, Outcome};

#[derive(Subcommand)]
pub enum ConsortiumCommand {
    /// Create a consortium: its CA, roster version 1 with the governors, and the genesis hash.
    #[command(
        after_help = "Example:\n  tfx consortium init --dir consortium --name \"Sichuan sci-tech finance\" \\\n      \
        --governor science-dept --governor local-finance --governor central-bank --threshold 2\n\n\
        A governor given as ID gets a key generated under DIR/governors/ID (for development and\n\
        single-operator setups); ID=FILE uses a public key the governor generated on its own machine\n\
        with `tfx key generate`."
    )]
    Init {
        /// New (or empty) directory for the consortium's CA and rosters.
        #[arg(long)]
        dir: PathBuf,
        /// The consortium's name.
        #[arg(long)]
        name: String,
        /// A governor: `ID` or `ID=PUBLIC_KEY_FILE`. Repeat for each.
        #[arg(long = "governor", value_parser = parse_governor)]
        governors: Vec<(MemberId, Option<PathBuf>)>,
        /// Signatures required to change the roster (default: a majority of the governors).
        #[arg(long)]
        threshold: Option<u32>,
        /// Members other than an origin that must cosign its checkpoint for it to be final
        /// (1–256; default 1). Records under a final checkpoint are what audit bundles prove.
        #[arg(long)]
        witness_quorum: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// On the new member's machine: generate its keys and a join request (public material only).
    #[command(
        after_help = "Example:\n  tfx member init --dir /var/lib/tfx/bank-a --id bank-a --name \"天府银行科技支行\" \\\n      \
        --role bank --endpoint bank-a.example.cn:7400"
    )]
    Init {
        /// The node's directory (keys go in DIR/keys, 0600).
        #[arg(long)]
        dir: PathBuf,
        /// Member id: lowercase letters, digits, '-' and '.'.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// A role (science-dept, local-finance, central-bank, banking-regulator,
        /// securities-regulator, finance-dept, ip-center, bank, risk-warning, auditor). Repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// HOST:PORT other members dial.
        #[arg(long)]
        endpoint: String,
    },
    /// On the consortium operator's machine: act on a member's request — join (issue its
    /// certificate, propose admitting it), key rotation (propose listing the new key) or renewal
    /// (issue a new certificate for the same key, propose its fingerprint) — and write the bundle
    /// once enough governors have signed the roster version.
    #[command(
        after_help = "Example:\n  tfx member approve --consortium consortium bank-a/join-request.json --out bank-a.bundle\n\n\
        With a threshold above the governor keys held locally, the command stops after proposing;\n\
        other governors run `tfx roster sign`, then this command is run again to write the bundle.\n\
        Exit status: 0 bundle written, 1 still waiting for signatures, 2 error."
    )]
    Approve {
        /// The consortium directory.
        #[arg(long)]
        consortium: PathBuf,
        /// The member's join request.
        request: PathBuf,
        /// Where to write the join bundle.
        #[arg(long)]
        out: PathBuf,
        /// Certificate validity in days.
        #[arg(long, default_value_t = tfx_node::pki::MEMBER_CERT_VALID_DAYS)]
        valid_days: u32,
        /// For a key rotation request: hours the old key may still sign after the new one is
        /// listed (records it signed before then verify for good).
        #[arg(long, default_value_t = 24)]
        overlap_hours: u32,
    },
    /// On a member's machine: request a new TLS certificate for the same key, before expiry.
    #[command(
        after_help = "Example:\n  tfx member renew --dir /var/lib/tfx/bank-a\n  \
        (operator) tfx member approve --consortium consortium bank-a/renew-request.json --out bank-a.renewal\n  \
        tfx member join --dir /var/lib/tfx/bank-a bank-a.renewal"
    )]
    Renew {
        /// The node's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// On a member's machine: generate the next record-signing key and a rotation request (signed
    /// by the current and the new key) for the consortium operator.
    #[command(
        after_help = "Example:\n  tfx member rotate-key --dir /var/lib/tfx/bank-a\n  \
        (operator) tfx member approve --consortium consortium bank-a/rotate-request.json --out bank-a.rotation\n  \
        tfx member join --dir /var/lib/tfx/bank-a bank-a.rotation"
    )]
    RotateKey {
        /// The node's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// On the consortium operator's machine: propose revoking a member from a time on (default
    /// now). Its earlier records keep verifying; its keys verify nothing issued later and its node
    /// is refused at the next handshake.
    #[command(
        after_help = "Example:\n  tfx member revoke --consortium consortium --id bank-b --reason \"left the programme\"\n\n\
        Exit status: 0 revoked (roster adopted), 1 still waiting for governor signatures, 2 error."
    )]
    Revoke {
        #[arg(long)]
        consortium: PathBuf,
        /// The member to revoke.
        #[arg(long)]
        id: String,
        /// Why (kept in the roster).
        #[arg(long)]
        reason: String,
        /// Revocation time, RFC 3339 UTC (default now). Records issued from then on are refused.
        #[arg(long)]
        at: Option<String>,
    },
    /// On the new member's machine: check the bundle and install it with a node config.
    #[command(
        after_help = "Example:\n  tfx member join --dir /var/lib/tfx/bank-a --genesis 3f1c…  bank-a.bundle\n\n\
        Checks the roster chain from the genesis, the CA named in the roster, the certificate\n\
        against this node's TLS key, and this node's roster entry, before writing anything."
    )]
    Join {
        /// The node's directory (where `tfx member init` ran).
        #[arg(long)]
        dir: PathBuf,
        /// The consortium's published genesis hash: required on first join (the trust anchor is
        /// never taken from the bundle); on updates it must match the installed one.
        #[arg(long)]
        genesis: Option<String>,
        /// The join bundle.
        bundle: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RosterCommand {
    /// Add a governor's signature to a roster file (a proposal collecting signatures).
    #[command(
        after_help = "Example:\n  tfx roster sign --key governors/local-finance/record-signing.key consortium/roster/pending/v000002.tfxroster"
    )]
    Sign {
        /// The governor's private key (0600).
        #[arg(long)]
        key: PathBuf,
        /// The roster file; rewritten in place, atomically.
        roster: PathBuf,
    },
    /// Show a roster file, or a consortium directory's current roster with certificate expiry.
    #[command(
        after_help = "Example:\n  tfx roster show consortium\n  tfx roster show --json node/roster/v000002.tfxroster"
    )]
    Show {
        #[arg(long)]
        json: bool,
        /// A roster file or a consortium directory.
        path: PathBuf,
    },
    /// Install newer roster versions on a joined node (after verifying them from its genesis);
    /// peers then adopt them from it through sync.
    #[command(
        after_help = "Example (a governor publishing the roster it just signed):\n  tfx roster install --dir members/science-dept consortium/roster/v*.tfxroster"
    )]
    Install {
        /// The node's member directory.
        #[arg(long)]
        dir: PathBuf,
        /// Roster files, version 1 first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify a chain of roster files from the trusted genesis hash (exit 0 valid, 1 invalid).
    #[command(
        after_help = "Example:\n  tfx roster verify --genesis $(cat consortium/genesis.sha256) consortium/roster/v*.tfxroster"
    )]
    Verify {
        /// SHA-256 of roster version 1, as published by the consortium.
        #[arg(long)]
        genesis: String,
        /// Roster files, version 1 first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn consortium(cmd: ConsortiumCommand) -> anyhow::Result<Outcome> {
    let ConsortiumCommand::Init {
        dir,
        name,
        governors,
        threshold,
        witness_quorum,
    } = cmd;
    consortium::init(consortium::InitArgs {
        dir,
        name,
        governors,
        threshold,
        witness_quorum,
    })?;
    Ok(Outcome::Ok)
}

pub fn member(cmd: MemberCommand) -> anyhow::Result<Outcome> {
    match cmd {
        MemberCommand::Init {
            dir,
            id,
            name,
            roles,
            endpoint,
        } => {
            member::init(member::InitArgs {
                dir,
                id,
                name,
                roles,
                endpoint,
            })?;
            Ok(Outcome::Ok)
        }
        MemberCommand::Approve {
            consortium,
            request,
            out,
            valid_days,
            overlap_hours,
        } => {
            let done = consortium::approve(consortium::ApproveArgs {
                consortium,
                request,
                out,
                valid_days,
                overlap_hours,
            })?;
            Ok(if done {
                Outcome::Ok
            } else {
                Outcome::CheckFailed
            })
        }
        MemberCommand::Renew { dir } => {
            member::renew(&dir)?;
            Ok(Outcome::Ok)
        }
        MemberCommand::RotateKey { dir } => {
            member::rotate_key(&dir)?;
            Ok(Outcome::Ok)
        }
        MemberCommand::Revoke {
            consortium,
            id,
            reason,
            at,
        } => {
            let id = MemberId::new(&id).context("--id")?;
            let at = at
                .map(|t| {
                    tfx_protocol::Timestamp::parse_rfc3339(&t)
                        .map_err(anyhow::Error::msg)
                        .context("--at")
                })
                .transpose()?;
            let done = consortium::revoke(consortium::RevokeArgs {
                consortium,
                id,
                reason,
                at,
            })?;
            Ok(if done {
                Outcome::Ok
            } else {
                Outcome::CheckFailed
            })
        }
        MemberCommand::Join {
            dir,
            genesis,
            bundle,
        } => {
            member::join(member::JoinArgs {
                dir,
                bundle,
                genesis,
            })?;
            Ok(Outcome::Ok)
        }
    }
}

pub fn roster(cmd: RosterCommand) -> anyhow::Result<Outcome> {
    match cmd {
        RosterCommand::Sign { key, roster } => {
            consortium::sign_roster(&key, &roster).map(|()| Outcome::Ok)
        }
        RosterCommand::Show { json, path } => consortium::show(&path, json).map(|()| Outcome::Ok),
        RosterCommand::Install { dir, files } => {
            crate::member::install_roster(&dir, &files).map(|()| Outcome::Ok)
        }
        RosterCommand::Verify { genesis, files } => Ok(if consortium::verify(&genesis, &files)? {
            Outcome::Ok
        } else {
            Outcome::CheckFailed
        }),
    }
}
