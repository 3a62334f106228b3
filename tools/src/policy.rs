//! `tfx policy`: the data-minimization policy's life cycle (DESIGN §8). People write TOML
//! (`deploy/policy.example.toml`); `check` explains what it grants or why it is wrong; `sign`
//! compiles it into the next signed version in a consortium directory and adds the governor
//! signatures held there (or with `--key`), adopting it once the roster's threshold is met;
//! `show` prints a version; `install` hands versions to a running node, which adopts them and
//! spreads them to its peers through sync.
//!
//! Consortium directory additions:
//!
//! ```text
//! DIR/policy.toml                    the starting policy `tfx consortium init` writes
//! DIR/policy/v000001.tfxpolicy …     adopted policy versions
//! DIR/policy/pending/v….tfxpolicy    a proposed version still collecting signatures
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use tfx_node::keyfile;
use tfx_node::node::policy_file;
use tfx_protocol::limits::POLICY_BYTES_MAX;
use tfx_protocol::policy::{parse_grants, verify_policy_chain, Grant, Policy, SignedPolicy};
use tfx_protocol::roster::{Roster, SignedRoster};
use tfx_protocol::schema::{Presence, RecordKind};

use crate::consortium::ConsortiumDir;
use crate::record::{read_limited, replace_file, write_new};
use crate::Outcome;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy TOML file: every kind, role and field must exist. Prints each role's view.
    #[command(
        after_help = "Example:\n  tfx policy check deploy/policy.example.toml\n\n\
        Exit status: 0 valid, 1 invalid (the error names the table, key and rule), 2 unreadable."
    )]
    Check {
        file: PathBuf,
        /// Also list every record kind's fields.
        #[arg(long)]
        fields: bool,
    },
    /// Compile a policy TOML file into the consortium's next policy version and sign it with the
    /// governor keys at hand; or add signatures to a pending version (a .tfxpolicy file).
    #[command(
        after_help = "Examples:\n  tfx policy sign --consortium consortium consortium/policy.toml\n  \
        tfx policy sign --consortium consortium --key gov2/record-signing.key consortium/policy/pending/v000002.tfxpolicy\n\n\
        Exit status: 0 adopted, 1 still waiting for governor signatures, 2 error."
    )]
    Sign {
        /// The consortium directory (roster chain, governor keys, policy versions).
        #[arg(long)]
        consortium: PathBuf,
        /// A governor's record-signing key to sign with (repeatable); default: the governor
        /// keys kept in the consortium directory.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Policy TOML, or a pending signed version to add signatures to.
        file: PathBuf,
    },
    /// Show a signed policy version (a .tfxpolicy file) or a consortium's current policy.
    #[command(
        after_help = "Example:\n  tfx policy show consortium\n  tfx policy show members/bank-a/policy/v000001.tfxpolicy --json"
    )]
    Show {
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Install signed policy versions on a running node; it adopts them and its peers follow.
    #[command(
        after_help = "Example (a governor publishing the version it just signed):\n  \
        tfx policy install --node members/science-dept consortium/policy/v*.tfxpolicy"
    )]
    Install {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: PathBuf,
        /// The node is not running: write the versions into its policy directory, to be
        /// verified and adopted when it starts.
        #[arg(long)]
        offline: bool,
        /// Signed versions, oldest first (versions the node already has are skipped).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(c: PolicyCommand) -> anyhow::Result<Outcome> {
    match c {
        PolicyCommand::Check { file, fields } => check(&file, fields),
        PolicyCommand::Sign {
            consortium,
            key,
            file,
        } => sign(&consortium, &key, &file),
        PolicyCommand::Show { path, json } => show(&path, json),
        PolicyCommand::Install {
            node,
            offline,
            files,
        } => install(&node, offline, &files),
    }
}

fn read_toml(file: &Path) -> anyhow::Result<String> {
    let bytes = read_limited(file, POLICY_BYTES_MAX)?;
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", file.display()))
}

fn check(file: &Path, list_fields: bool) -> anyhow::Result<Outcome> {
    let text = read_toml(file)?;
    let grants = match parse_grants(&text) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(Outcome::CheckFailed);
        }
    };
    println!("{}: valid, {} grants", file.display(), grants.len());
    print!("{}", render_grants(&grants));
    if list_fields {
        println!();
        for kind in RecordKind::ALL {
            let names: Vec<String> = kind
                .fields()
                .iter()
                .map(|f| match f.presence {
                    Presence::Derived => format!("{} (derived)", f.name),
                    _ => f.name.to_owned(),
                })
                .collect();
            println!("{kind}: {}", names.join(", "));
        }
    }
    Ok(Outcome::Ok)
}

/// One line per grant: `kind  role  fields  (retention)`, grouped by kind.
pub fn render_grants(grants: &[Grant]) -> String {
    let mut out = String::new();
    for g in grants {
        let all = g.fields.len() == g.kind.fields().len();
        let fields = if all {
            "all fields".to_owned()
        } else {
            g.fields.join(", ")
        };
        let keep = g
            .retention_days
            .map_or(String::new(), |d| format!("  (kept {d} days)"));
        out.push_str(&format!(
            "  {:<13} {:<21} {fields}{keep}\n",
            g.kind.name(),
            g.role
        ));
    }
    out
}

/// The consortium's adopted policy chain (verified) and its latest version.
fn consortium_policies(
    cd: &ConsortiumDir,
    rosters: &[Vec<u8>],
) -> anyhow::Result<(Vec<Vec<u8>>, Option<Policy>)> {
    let dir = cd.root.join("policy");
    let chain = tfx_node::node::read_policy_chain(&dir)?;
    let current = verify_policy_chain(&chain, |v| roster_at(rosters, v))
        .with_context(|| format!("verifying the policy chain in {}", dir.display()))?;
    Ok((chain, current))
}

fn roster_at(rosters: &[Vec<u8>], version: u64) -> Option<Roster> {
    let i = usize::try_from(version.checked_sub(1)?).ok()?;
    SignedRoster::decode(rosters.get(i)?).ok().map(|r| r.roster)
}

fn sign(consortium: &Path, keys: &[PathBuf], file: &Path) -> anyhow::Result<Outcome> {
    let cd = ConsortiumDir::new(consortium);
    let (rosters, roster) = cd.chain()?;
    let (_, current) = consortium_policies(&cd, &rosters)?;
    let next_version = current.as_ref().map_or(1, |p| p.version + 1);
    let pending = policy_file(&cd.root.join("policy/pending"), next_version);
    let bytes = read_limited(file, POLICY_BYTES_MAX)?;
    let mut signed = match SignedPolicy::decode(&bytes) {
        Ok(p) => {
            if p.policy.version != next_version
                || p.policy.previous != current.as_ref().map(Policy::hash)
            {
                bail!(
                    "{} is policy v{}, not the consortium's next version v{next_version} chained to its current one",
                    file.display(),
                    p.policy.version
                );
            }
            p
        }
        Err(_) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!("{}: neither a signed policy nor TOML", file.display())
            })?;
            let grants =
                parse_grants(&text).with_context(|| format!("checking {}", file.display()))?;
            if pending.exists() {
                bail!(
                    "{} is a pending proposal for v{next_version}; have it signed (tfx policy sign --key …) or remove it first",
                    pending.display()
                );
            }
            let policy = Policy {
                consortium: roster.consortium.clone(),
                version: next_version,
                previous: current.as_ref().map(Policy::hash),
                issued_at: tfx_node::clock::now(),
                roster_version: roster.version,
                grants,
            };
            SignedPolicy::new(policy)?
        }
    };
    let signers = if keys.is_empty() {
        cd.local_governor_keys(&roster)?
    } else {
        keys.iter()
            .map(|k| {
                keyfile::load_signing_key(k).with_context(|| format!("loading {}", k.display()))
            })
            .collect::<anyhow::Result<_>>()?
    };
    for key in &signers {
        signed.sign(key);
    }
    let p = &signed.policy;
    let signing_roster = roster_at(&rosters, p.roster_version)
        .with_context(|| format!("the consortium holds no roster v{}", p.roster_version))?;
    match signed.verify_signatures(&signing_roster) {
        Ok(()) => {
            let path = policy_file(&cd.root.join("policy"), p.version);
            std::fs::create_dir_all(cd.root.join("policy"))?;
            write_new(&path, &signed.encode())?;
            let _ = std::fs::remove_file(&pending);
            println!("policy v{} adopted: {}", p.version, path.display());
            print!("{}", render_grants(&p.grants));
            println!("next: publish it on any running node (peers adopt it through sync):");
            println!("  tfx policy install --node MEMBER_DIR {}", path.display());
            Ok(Outcome::Ok)
        }
        Err(e) => {
            std::fs::create_dir_all(pending.parent().unwrap_or(Path::new(".")))?;
            replace_file(&pending, &signed.encode())?;
            println!("policy v{} proposed: {e}", p.version);
            println!(
                "  each further governor runs: tfx policy sign --consortium {} --key GOVERNOR_KEY {}",
                consortium.display(),
                pending.display()
            );
            Ok(Outcome::CheckFailed)
        }
    }
}

fn show(path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let policy = if path.is_dir() {
        let cd = ConsortiumDir::new(path);
        let (rosters, _) = cd.chain()?;
        match consortium_policies(&cd, &rosters)?.1 {
            Some(p) => p,
            None => bail!(
                "{}: no policy adopted yet (tfx policy sign)",
                path.display()
            ),
        }
    } else {
        SignedPolicy::decode(&read_limited(path, POLICY_BYTES_MAX)?)
            .with_context(|| format!("reading {}", path.display()))?
            .policy
    };
    if json {
        let grants: Vec<serde_json::Value> = policy
            .grants
            .iter()
            .map(|g| {
                serde_json::json!({
                    "kind": g.kind.name(), "role": g.role, "fields": g.fields,
                    "purpose": g.purpose, "retention_days": g.retention_days,
                })
            })
            .collect();
        let v = serde_json::json!({
            "consortium": policy.consortium,
            "version": policy.version,
            "previous": policy.previous.map(hex::encode),
            "issued_at_ms": policy.issued_at.0,
            "roster_version": policy.roster_version,
            "grants": grants,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "policy v{} of {:?} (signed under roster v{}, {} grants)",
            policy.version,
            policy.consortium,
            policy.roster_version,
            policy.grants.len()
        );
        print!("{}", render_grants(&policy.grants));
    }
    Ok(Outcome::Ok)
}

fn install(node: &Path, offline: bool, files: &[PathBuf]) -> anyhow::Result<Outcome> {
    let mut versions = Vec::new();
    for f in files {
        let bytes = read_limited(f, POLICY_BYTES_MAX)?;
        let p = SignedPolicy::decode(&bytes).with_context(|| format!("reading {}", f.display()))?;
        versions.push((p.policy.version, f, bytes));
    }
    versions.sort_by_key(|(v, _, _)| *v);
    if offline {
        let config = tfx_node::config::NodeConfig::load(&node.join("node.toml"))?;
        let dir = config.policy_dir;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut have = tfx_node::node::read_policy_chain(&dir)?.len() as u64;
        for (version, f, bytes) in versions {
            if version <= have {
                continue;
            }
            if version != have + 1 {
                bail!(
                    "{}: policy v{version} does not follow v{have} installed in {}",
                    f.display(),
                    dir.display()
                );
            }
            write_new(&policy_file(&dir, version), &bytes)?;
            have = version;
            println!(
                "{}: installed as v{version} (verified and adopted at the next start)",
                f.display()
            );
        }
        return Ok(Outcome::Ok);
    }
    let client = crate::client::NodeClient::for_node(node)?;
    for (version, f, bytes) in versions {
        let (status, body) = client.post("/v1/policy", &bytes)?;
        let body = crate::client::ok(status, body)
            .with_context(|| format!("installing {} (policy v{version})", f.display()))?;
        println!(
            "{}: node now at policy v{}",
            f.display(),
            body["version"].as_u64().unwrap_or(0)
        );
    }
    Ok(Outcome::Ok)
}
