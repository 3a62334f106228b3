//! `tfx audit`: what auditors run. `disclosures` reads a node's disclosure ledger (DESIGN §8):
//! every record whose fields the node sent to another member, which fields, when and under
//! which policy version — field names only, never values. `export` has a running node write
//! an audit bundle (SPEC §19); `verify` checks one with nothing but the file; `log` re-verifies
//! a stopped node's whole store.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use tfx_protocol::bundle::{verify_bundle, Check, Report, BUNDLE_BYTES_MAX};

use crate::client::{ok, NodeClient};
use crate::Outcome;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List the disclosures a node sent to other members, from its ledger.
    #[command(
        after_help = "Examples:\n  tfx audit disclosures --node members/bank-a\n  \
        tfx audit disclosures --node members/bank-a --recipient risk-warning --json"
    )]
    Disclosures {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: PathBuf,
        /// Only disclosures to this member.
        #[arg(long)]
        recipient: Option<String>,
        /// Only this record (64 hex digits).
        #[arg(long)]
        record: Option<String>,
        /// Only disclosures at or after this time (Unix milliseconds).
        #[arg(long)]
        since_ms: Option<u64>,
        /// Only disclosures before this time (Unix milliseconds).
        #[arg(long)]
        until_ms: Option<u64>,
        /// At most this many rows (the node caps it at 10,000).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Have a running node write an audit bundle of some records: envelopes, the disclosures
    /// chosen, checkpoints with cosignatures, inclusion proofs and the roster chain, signed by
    /// the node. One file, checked offline with `tfx audit verify`.
    #[command(
        after_help = "Examples:\n  tfx audit export --node members/bank-a --record 3f2a…e1 --out audit.tfxbundle\n  \
        tfx audit export --node members/bank-a --record ID1 --record ID2 --field lender --field balance_band --out audit.tfxbundle"
    )]
    Export {
        /// The node's member directory (holding node.toml); the node must be running.
        #[arg(long)]
        node: PathBuf,
        /// A record id (64 hex digits); repeat for more (at most 10,000).
        #[arg(long = "record", required = true)]
        records: Vec<String>,
        /// Include only these fields' disclosures (repeat); default: every field the node holds.
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Where to write the bundle (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an audit bundle offline: the roster chain, the exporter's signature, and for each
    /// record its signature under the key valid at issue time, its disclosures, its inclusion in a
    /// checkpoint and that checkpoint's cosignatures. Exit 0: all verified; 1: something failed
    /// (named); 2: the file could not be read.
    #[command(after_help = "Examples:\n  tfx audit verify audit.tfxbundle\n  \
        tfx audit verify audit.tfxbundle --genesis $(cat members/bank-a/genesis.sha256) --json")]
    Verify {
        file: PathBuf,
        /// The consortium's genesis roster hash (64 hex digits), as published. Without it the
        /// bundle's own first roster is trusted, and the report says so.
        #[arg(long)]
        genesis: Option<String>,
        /// One JSON object instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Re-verify a stopped node's whole store: every log against its records, stored Merkle
    /// nodes, head, checkpoint and witnessed checkpoints with their cosignatures, and any
    /// equivocation evidence. Reads the store directly, so the node must be stopped.
    #[command(after_help = "Example:\n  tfx audit log --node members/bank-a")]
    Log {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: PathBuf,
        /// One JSON object instead of the report (no progress bar).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: AuditCommand) -> anyhow::Result<Outcome> {
    match c {
        AuditCommand::Disclosures {
            node,
            recipient,
            record,
            since_ms,
            until_ms,
            limit,
            json,
        } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(r) = recipient {
                q.push(format!("recipient={r}"));
            }
            if let Some(r) = record {
                q.push(format!("record={r}"));
            }
            if let Some(t) = since_ms {
                q.push(format!("since_ms={t}"));
            }
            if let Some(t) = until_ms {
                q.push(format!("until_ms={t}"));
            }
            let client = NodeClient::for_node(&node)?;
            let (status, body) = client.get(&format!("/v1/ledger?{}", q.join("&")))?;
            let body = ok(status, body)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", render(&body));
            }
            Ok(Outcome::Ok)
        }
        AuditCommand::Export {
            node,
            records,
            fields,
            out,
        } => export(&node, records, fields, &out),
        AuditCommand::Verify {
            file,
            genesis,
            json,
        } => verify(&file, genesis.as_deref(), json),
        AuditCommand::Log { node, json } => crate::audit_log::run(&node, json),
    }
}

fn export(
    node: &Path,
    records: Vec<String>,
    fields: Vec<String>,
    out: &Path,
) -> anyhow::Result<Outcome> {
    if out.exists() {
        bail!("{} exists; choose another --out", out.display());
    }
    let client = NodeClient::for_node(node)?;
    let mut body = json!({ "records": records });
    if !fields.is_empty() {
        body["fields"] = json!(fields);
    }
    let (status, reply) = client.post("/v1/audit/export", body.to_string().as_bytes())?;
    let reply = ok(status, reply)?;
    let bytes = hex::decode(reply["bundle_hex"].as_str().unwrap_or(""))
        .context("the node's bundle is not hex")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: {} records ({} with cosigned checkpoints), {} bytes; check it with: tfx audit verify {}",
        out.display(),
        reply["records"],
        reply["records_with_cosignatures"],
        bytes.len(),
        out.display()
    );
    Ok(Outcome::Ok)
}

fn verify(file: &Path, genesis: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let genesis = match genesis {
        None => None,
        Some(g) => {
            let b = hex::decode(g.trim()).ok().filter(|b| b.len() == 32);
            let Some(b) = b else {
                bail!("--genesis must be 64 hex digits (the SHA-256 of the genesis roster)");
            };
            let mut h = [0u8; 32];
            h.copy_from_slice(&b);
            Some(h)
        }
    };
    let bytes = crate::record::read_limited(file, BUNDLE_BYTES_MAX)?;
    let report = verify_bundle(&bytes, genesis);
    // Exit 2 when this is no bundle at all (nothing inside could be checked).
    let unreadable = !report.readable;
    if json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print!("{}", render_report(&report));
    }
    if unreadable {
        bail!("{}: not an audit bundle this tfx can read", file.display());
    }
    Ok(if report.passed() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

fn check_json(c: &Check) -> Value {
    json!({
        "check": c.what,
        "ok": c.passed(),
        "detail": match &c.outcome { Ok(d) | Err(d) => d },
    })
}

/// The `--json` form of a report (SPEC §19.3).
pub fn report_json(r: &Report) -> Value {
    json!({
        "verified": r.passed(),
        "genesis": r.genesis.map(hex::encode),
        "genesis_pinned": r.genesis_pinned,
        "consortium": r.consortium,
        "exporter": r.exporter.as_ref().map(|m| m.as_str()),
        "created_ms": r.created.map(|t| t.0),
        "roster_version": r.roster_version,
        "witness_quorum": r.witness_quorum,
        "checks": r.checks.iter().map(check_json).collect::<Vec<_>>(),
        "records": r.records.iter().map(|rec| json!({
            "index": rec.index,
            "id": rec.id.to_hex(),
            "origin": rec.origin.as_ref().map(|m| m.as_str()),
            "seq": rec.seq,
            "kind": rec.kind,
            "issued_at_ms": rec.issued_at.map(|t| t.0),
            "fields": rec.fields,
            "verified": rec.passed(),
            "checks": rec.checks.iter().map(check_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "equivocations": r.equivocations.iter().map(|e| json!({
            "origin": e.origin.as_str(),
            "fork_at": e.fork_at,
            "summary": e.summary,
        })).collect::<Vec<_>>(),
    })
}

fn line(c: &Check) -> String {
    match &c.outcome {
        Ok(d) => format!("  ok      {:<22} {d}\n", c.what),
        Err(d) => format!("  FAILED  {:<22} {d}\n", c.what),
    }
}

/// The human report: what was checked, what held, and what failed.
pub fn render_report(r: &Report) -> String {
    let mut out = String::new();
    if let (Some(c), Some(e), Some(t)) = (&r.consortium, &r.exporter, r.created) {
        out += &format!(
            "audit bundle of consortium {c:?}, exported by {e} at {} ms\n",
            t.0
        );
    }
    if let Some(g) = r.genesis {
        let pinned = if r.genesis_pinned {
            "pinned with --genesis"
        } else {
            "NOT pinned: taken from the bundle; compare it with the consortium's published hash"
        };
        out += &format!("genesis roster {} ({pinned})\n", hex::encode(g));
    }
    if let (Some(v), Some(q)) = (r.roster_version, r.witness_quorum) {
        out += &format!("roster version {v}; a checkpoint is final with {q} cosignatures\n");
    }
    out += "\nbundle\n";
    for c in &r.checks {
        out += &line(c);
    }
    for rec in &r.records {
        out += &format!(
            "\nrecord {} {}  {}#{}  {}  issued {} ms  fields: {}\n",
            rec.index,
            rec.id.to_hex(),
            rec.origin.as_ref().map_or("?", |m| m.as_str()),
            rec.seq.map_or("?".into(), |s| s.to_string()),
            rec.kind.as_deref().unwrap_or("?"),
            rec.issued_at.map_or("?".into(), |t| t.0.to_string()),
            if rec.fields.is_empty() {
                "none".into()
            } else {
                rec.fields.join(", ")
            }
        );
        for c in &rec.checks {
            out += &line(c);
        }
    }
    let failed: usize = r.checks.iter().filter(|c| !c.passed()).count()
        + r.records
            .iter()
            .flat_map(|x| &x.checks)
            .filter(|c| !c.passed())
            .count();
    let records_ok = r.records.iter().filter(|x| x.passed()).count();
    out += &if failed == 0 {
        format!(
            "\nVERIFIED: all {} records and every check above hold\n",
            r.records.len()
        )
    } else {
        format!(
            "\nFAILED: {failed} checks failed; {records_ok} of {} records verified\n",
            r.records.len()
        )
    };
    out
}

fn render(body: &Value) -> String {
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{:<13}  {:<16}  {:>3}  {:<16}  {:<18}  {:<12}  fields\n",
        "at (ms)", "recipient", "pol", "record", "origin#seq", "kind"
    );
    for r in &rows {
        let fields: Vec<&str> = r["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let record = r["record"].as_str().unwrap_or("");
        out.push_str(&format!(
            "{:<13}  {:<16}  {:>3}  {:<16}  {:<18}  {:<12}  {}\n",
            r["at_ms"].as_u64().unwrap_or(0),
            r["recipient"].as_str().unwrap_or(""),
            r["policy_version"].as_u64().unwrap_or(0),
            &record[..record.len().min(16)],
            format!(
                "{}#{}",
                r["origin"].as_str().unwrap_or(""),
                r["seq"].as_u64().unwrap_or(0)
            ),
            r["kind"].as_str().unwrap_or(""),
            fields.join(",")
        ));
    }
    out.push_str(&format!("{} disclosed records\n", rows.len()));
    out
}
