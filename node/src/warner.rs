//! The risk-warning member's rule runner (DESIGN §9): reads every record its node holds, as the
//! node holds them — its minimized view — into a [`warnings::Engine`], and issues the signed
//! `risk-warning` records the rules call for through the appender, like any submitted record;
//! sync then carries them to the regulators the policy entitles. Runs only on a node whose
//! config names a rules file (`[risk_warning] rules`).
//!
//! Records are read in order per origin from a cursor; on start the cursor is 0, so the engine
//! is rebuilt from the store and the node's own earlier warnings keep it from issuing one twice.
//! Log lines name record ids, levels and rules — never a pseudonym or other field value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tfx_protocol::disclosure::Disclosure;
use tfx_protocol::minimize::envelope_header;
use tfx_protocol::store::Store;
use tfx_protocol::warnings::Engine;
use tfx_protocol::{LogIndex, MemberId, RecordId};
use tokio::sync::watch;

use crate::appender::Appender;
use crate::sled_store::SledStore;

/// Records read per store call.
const SCAN_BATCH: usize = 1024;

/// Reads every record past the cursors into the engine; returns the subjects touched.
fn scan(
    store: &SledStore,
    engine: &mut Engine,
    cursors: &mut BTreeMap<MemberId, u64>,
) -> Result<BTreeSet<String>, String> {
    let mut touched = BTreeSet::new();
    for origin in store.origins().map_err(|e| e.to_string())? {
        let cursor = cursors.entry(origin.clone()).or_insert(0);
        loop {
            let page = store
                .records(&origin, LogIndex(*cursor), SCAN_BATCH)
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            *cursor = last.seq.0 + 1;
            for held in page {
                let Ok(header) = envelope_header(&held.envelope) else {
                    continue;
                };
                let ds: Vec<Disclosure> = held
                    .disclosures
                    .iter()
                    .filter_map(|d| Disclosure::decode(d).ok())
                    .collect();
                let id = RecordId::of_envelope(&held.envelope);
                touched.extend(engine.observe(id, &header, &ds));
            }
        }
    }
    Ok(touched)
}

/// Runs until `shutdown` turns true: every `interval`, reads new records and issues warnings.
pub async fn run(
    store: Arc<SledStore>,
    appender: Arc<Appender>,
    mut engine: Engine,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cursors = BTreeMap::new();
    loop {
        // After a restore, warnings wait until the node may issue again.
        while appender.recovering() {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
        let s = store.clone();
        let scanned = tokio::task::block_in_place(|| scan(&s, &mut engine, &mut cursors));
        match scanned {
            Ok(touched) => {
                for subject in touched {
                    let Some(body) = engine.evaluate(&subject, crate::clock::now()) else {
                        continue;
                    };
                    let level = body
                        .get("level")
                        .and_then(|v| v.as_text())
                        .unwrap_or("")
                        .to_owned();
                    let rules = match body.get("rule_ids") {
                        Some(tfx_protocol::schema::FieldValue::List(l)) => l.join(","),
                        _ => String::new(),
                    };
                    match appender.append(body).await {
                        Ok(r) => {
                            tracing::info!(record = %r.id, level, rules, "risk warning issued")
                        }
                        Err(e) => tracing::error!(error = %e, "could not issue a risk warning"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "risk-warning rules could not read the store"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
