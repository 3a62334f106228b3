//! `tfx audit log`: re-verifies a stopped node's whole store (SPEC §8.4, §17, §18) — for every
//! origin, every envelope's signature under the roster key valid at its issue time, its
//! position, id index and disclosures, every stored Merkle node, the head, the latest checkpoint,
//! and every witnessed checkpoint with its cosignatures against the log; then every piece of
//! equivocation evidence. It opens sled directly, which a running node holds locked.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;
use tfx_node::config::NodeConfig;
use tfx_node::sled_store::{SledStore, SledStoreError};
use tfx_protocol::evidence::Evidence;
use tfx_protocol::log::verify_log;
use tfx_protocol::roster::verify_chain;
use tfx_protocol::store::Store;

use crate::Outcome;

/// Width of the progress bar in characters.
const BAR: usize = 30;

pub fn run(node: &Path, json: bool) -> anyhow::Result<Outcome> {
    let config_path = if node.is_file() {
        node.to_path_buf()
    } else {
        node.join("node.toml")
    };
    let config = NodeConfig::load(&config_path)?;
    let genesis = tfx_node::node::read_genesis(&config.genesis)?;
    let chain = tfx_node::node::read_roster_chain(&config.roster_dir)?;
    let roster = verify_chain(&genesis, &chain).with_context(|| {
        format!(
            "verifying the roster chain in {}",
            config.roster_dir.display()
        )
    })?;
    let store = match SledStore::open(&config.data) {
        Ok(s) => s,
        Err(SledStoreError::Locked(dir)) => bail!(
            "{}: the node is running (its store is locked); stop it first — `tfx audit log` reads \
             the store directly. A running node's records can be checked with `tfx audit export` \
             and `tfx audit verify`",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {}", config.data.display())),
    };
    let origins = store.origins().context("listing the logs in the store")?;
    let total: u64 = origins
        .iter()
        .map(|o| store.head(o).ok().flatten().map_or(0, |h| h.size))
        .sum();
    let mut done = 0u64;
    let mut logs = Vec::new();
    let mut failures = Vec::new();
    let mut stderr = std::io::stderr();
    for origin in &origins {
        let base = done;
        let mut progress = |n: u64| {
            if !json && total > 0 {
                let at = base + n;
                let filled = (at as u128 * BAR as u128 / total as u128) as usize;
                let _ = write!(
                    stderr,
                    "\r[{}{}] {at}/{total} records  {origin:<20}",
                    "#".repeat(filled.min(BAR)),
                    " ".repeat(BAR - filled.min(BAR)),
                );
                let _ = stderr.flush();
            }
        };
        match verify_log(&store, origin, &roster, &mut progress) {
            Ok(r) => {
                done += r.size;
                logs.push(r);
            }
            Err(e) => {
                done += store.head(origin).ok().flatten().map_or(0, |h| h.size);
                failures.push(e.to_string());
            }
        }
    }
    if !json && total > 0 {
        eprintln!();
    }
    let mut evidence = Vec::new();
    for (origin, bytes) in store.evidence().context("reading evidence")? {
        match Evidence::decode(&bytes).map(|e| e.verify(&roster)) {
            Ok(Ok(eq)) => evidence.push((origin, eq.summary)),
            Ok(Err(e)) => failures.push(format!("evidence against {origin}: {e}")),
            Err(e) => failures.push(format!("evidence against {origin}: {e}")),
        }
    }
    if json {
        let out = json!({
            "verified": failures.is_empty(),
            "logs": logs.iter().map(|r| json!({
                "origin": r.origin.as_str(),
                "records": r.size,
                "checkpoint_size": r.checkpoint_size,
                "disclosures_verified": r.disclosures_verified,
                "witnessed_checkpoints": r.witnessed,
                "cosignatures": r.cosignatures,
            })).collect::<Vec<_>>(),
            "failures": failures,
            "equivocations": evidence.iter().map(|(o, s)| json!({"origin": o.as_str(), "summary": s})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<20} {:>10} {:>11} {:>12} {:>10} {:>7}",
            "ORIGIN", "RECORDS", "CHECKPOINT", "DISCLOSURES", "WITNESSED", "COSIGS"
        );
        for r in &logs {
            println!(
                "{:<20} {:>10} {:>11} {:>12} {:>10} {:>7}",
                r.origin.as_str(),
                r.size,
                r.checkpoint_size,
                r.disclosures_verified,
                r.witnessed,
                r.cosignatures
            );
        }
        for (o, s) in &evidence {
            println!("ALERT: evidence verifies that {o} signed two histories: {s}");
        }
        for f in &failures {
            println!("FAILED: {f}");
        }
        if failures.is_empty() {
            println!(
                "VERIFIED: {} logs, {done} records, every checkpoint and cosignature held",
                logs.len()
            );
        }
    }
    Ok(if failures.is_empty() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
