//! `tfx warnings`: the risk warnings a node holds (DESIGN §9), each resolved to the enterprise
//! where this node's own holdings allow it: a regulator entitled to identities finds, under the
//! warning's pseudonym, records that also carry the USCC and name. The risk-warning member and
//! anyone else without those fields sees the pseudonym only.

use std::path::Path;

use serde_json::{json, Value};

use crate::client::{ok, NodeClient};
use crate::Outcome;

/// Warnings listed at most.
const WARNINGS_MAX: usize = 1000;

/// The (USCC, name) this node holds for `pseudonym`, if any of its records under the pseudonym
/// discloses them.
fn resolve(client: &NodeClient, pseudonym: &str) -> anyhow::Result<Option<(String, String)>> {
    let (status, body) = client.get(&format!("/v1/records?subject={pseudonym}&limit=100"))?;
    let body = ok(status, body)?;
    for r in body["records"].as_array().into_iter().flatten() {
        if r["kind"] == "risk-warning" {
            continue;
        }
        let id = r["id"].as_str().unwrap_or_default();
        let (status, full) = client.get(&format!("/v1/records/{id}"))?;
        let full = ok(status, full)?;
        let f = &full["fields"];
        if f["subject_pseudonym"] == pseudonym {
            if let (Some(u), Some(n)) = (f["subject_uscc"].as_str(), f["subject_name"].as_str()) {
                return Ok(Some((u.to_owned(), n.to_owned())));
            }
        }
    }
    Ok(None)
}

pub fn run(node: &Path, as_json: bool) -> anyhow::Result<Outcome> {
    let client = NodeClient::for_node(node)?;
    let rows = list(&client)?;
    if as_json {
        let all = json!({ "warnings": rows });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", render(&rows));
    }
    Ok(Outcome::Ok)
}

/// Every warning the node holds, with the subject resolved where its holdings allow.
pub fn list(client: &NodeClient) -> anyhow::Result<Vec<Value>> {
    let path = format!("/v1/records?kind=risk-warning&limit={WARNINGS_MAX}");
    let (status, body) = client.get(&path)?;
    let body = ok(status, body)?;
    let mut rows = Vec::new();
    for r in body["records"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        let (status, full) = client.get(&format!("/v1/records/{id}"))?;
        let full = ok(status, full)?;
        let f = &full["fields"];
        let pseudonym = f["subject_pseudonym"].as_str().map(str::to_owned);
        let subject = match &pseudonym {
            Some(p) => resolve(client, p)?,
            None => None,
        };
        rows.push(json!({
            "id": id,
            "origin": full["origin"],
            "issued_at": full["issued_at"],
            "level": f["level"],
            "period": f["period"],
            "rule_ids": f["rule_ids"],
            "basis_record_ids": f["basis_record_ids"],
            "subject_pseudonym": pseudonym,
            "subject_uscc": subject.as_ref().map(|s| s.0.clone()),
            "subject_name": subject.as_ref().map(|s| s.1.clone()),
        }));
    }
    Ok(rows)
}

/// The warnings as a table, one per line.
pub fn render(rows: &[Value]) -> String {
    let mut out = format!(
        "{:<10} {:<7} {:<44} {:<44} subject\n",
        "level", "period", "rules", "pseudonym"
    );
    for w in rows {
        let rules: Vec<&str> = w["rule_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let subject = match (w["subject_uscc"].as_str(), w["subject_name"].as_str()) {
            (Some(u), Some(n)) => format!("{u} {n}"),
            _ => "(not resolvable with this member's holdings)".to_owned(),
        };
        out.push_str(&format!(
            "{:<10} {:<7} {:<44} {:<44} {subject}\n",
            w["level"].as_str().unwrap_or("(withheld)"),
            w["period"].as_str().unwrap_or("-"),
            rules.join(","),
            w["subject_pseudonym"].as_str().unwrap_or("(withheld)"),
        ));
    }
    out.push_str(&format!("{} warnings\n", rows.len()));
    out
}
