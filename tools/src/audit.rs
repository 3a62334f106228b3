//! `tfx audit`: what auditors run. `disclosures` reads a node's disclosure ledger (DESIGN §8):
//! every record whose fields the node sent to another member, which fields, when and under
//! which policy version — field names only, never values.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;

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
    }
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
