//! The local API's client side: `tfx record submit|get|query` and `tfx status` talk to a running
//! node over loopback HTTP, finding its address and token from the node's `node.toml`
//! (`--node DIR`, the member directory). The token file is read, never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tfx_node::config::NodeConfig;

use crate::Outcome;

/// How long one API call may take. Submit waits for a durable append, normally milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait asked of the node in one `GET /v1/records/{id}` (the node allows 30 s).
const RECORD_WAIT_PER_CALL: Duration = Duration::from_secs(20);

/// Pause before asking again when a node answered 404 without waiting.
const RECORD_RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct NodeClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl NodeClient {
    /// A client for the node whose member directory (holding `node.toml`) is `dir`.
    pub fn for_node(dir: &Path) -> anyhow::Result<Self> {
        let config_path = if dir.is_file() {
            dir.to_path_buf()
        } else {
            dir.join("node.toml")
        };
        let config = NodeConfig::load(&config_path)?;
        let secret = tfx_node::keyfile::load_secret(&config.api_token).with_context(|| {
            format!(
                "reading the API token {} (has the node started once? are you the node's user?)",
                config.api_token.display()
            )
        })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(NodeClient {
            base: format!("http://{}", config.api_listen),
            token: hex::encode(&secret[..]),
            agent,
        })
    }

    fn finish(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut r = r.with_context(|| format!("{what}: is the node running at {}?", self.base))?;
        let status = r.status().as_u16();
        let body: Value = r
            .body_mut()
            .read_json()
            .with_context(|| format!("{what}: the node's answer is not JSON (HTTP {status})"))?;
        Ok((status, body))
    }

    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.finish(path, r)
    }

    /// `GET /v1/records/{id}`, waiting up to `wait` for the record to arrive: the node answers
    /// as soon as it holds it. Long waits are split into calls well inside [`CALL_TIMEOUT`].
    pub fn get_record(&self, id: &str, wait: Duration) -> anyhow::Result<(u16, Value)> {
        let start = std::time::Instant::now();
        let until = start
            .checked_add(wait)
            .unwrap_or(start + RECORD_WAIT_PER_CALL);
        loop {
            let asked = std::time::Instant::now();
            let left = until.saturating_duration_since(asked);
            let per_call = left.min(RECORD_WAIT_PER_CALL);
            let wait_ms = per_call.as_millis();
            let (status, reply) = self.get(&format!("/v1/records/{id}?wait_ms={wait_ms}"))?;
            // 503: the node's limit of waiting reads is reached; its reads free up as records
            // arrive or waits end, so it is worth asking again within our own wait.
            if !(status == 404 || status == 503) || left.is_zero() {
                return Ok((status, reply));
            }
            // A 404 well before the wait asked for: a node that does not wait (older, or
            // stopping), or a 503. Pause rather than asking again at once.
            if asked.elapsed() < per_call / 2 {
                std::thread::sleep(RECORD_RETRY_PAUSE.min(left));
            }
        }
    }

    pub fn post(&self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Value)> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body);
        self.finish(path, r)
    }
}

/// Fails with the API's error message unless the status is 2xx.
pub fn ok(status: u16, body: Value) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let msg = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_string();
    bail!("the node refused (HTTP {status}): {msg}")
}

pub fn submit(node: &Path, file: &Path) -> anyhow::Result<Outcome> {
    let body = crate::record::read_limited(file, tfx_protocol::limits::RECORD_JSON_BYTES_MAX)?;
    let client = NodeClient::for_node(node)?;
    let (status, reply) = client.post("/v1/records", &body)?;
    if status == 422 {
        eprintln!(
            "{}: {}",
            file.display(),
            reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("invalid")
        );
        return Ok(Outcome::CheckFailed);
    }
    let reply = ok(status, reply)?;
    println!(
        "{} appended as {}#{} (durable)",
        reply["id"].as_str().unwrap_or(""),
        reply["origin"].as_str().unwrap_or(""),
        reply["seq"]
    );
    Ok(Outcome::Ok)
}

pub fn get(node: &Path, id: &str, json: bool, wait: Duration) -> anyhow::Result<Outcome> {
    let client = NodeClient::for_node(node)?;
    let (status, reply) = client.get_record(id, wait)?;
    let reply = ok(status, reply)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "{} {} {}#{} issued {} (signature verified)",
        reply["id"].as_str().unwrap_or(""),
        reply["kind"].as_str().unwrap_or(""),
        reply["origin"].as_str().unwrap_or(""),
        reply["seq"],
        reply["issued_at"].as_str().unwrap_or("")
    );
    if let Some(fields) = reply["fields"].as_object() {
        for (k, v) in fields {
            println!("  {k:<28} {v}");
        }
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The node's member directory (holding node.toml).
    #[arg(long)]
    pub node: PathBuf,
    /// A subject USCC or pseudonym.
    #[arg(long)]
    pub subject: Option<String>,
    /// credit, ip-valuation, monitoring or risk-warning.
    #[arg(long)]
    pub kind: Option<String>,
    /// Issued at or after (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Issued before (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn query(a: &QueryArgs) -> anyhow::Result<Outcome> {
    let client = NodeClient::for_node(&a.node)?;
    let mut params = vec![format!("limit={}", a.limit)];
    for (k, v) in [
        ("subject", &a.subject),
        ("kind", &a.kind),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            params.push(format!("{k}={}", encode(v)));
        }
    }
    let (status, reply) = client.get(&format!("/v1/records?{}", params.join("&")))?;
    let reply = ok(status, reply)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(Outcome::Ok);
    }
    let empty = Vec::new();
    let records = reply["records"].as_array().unwrap_or(&empty);
    println!("{:<64}  {:<13} {:<24} ISSUED", "ID", "KIND", "ORIGIN#SEQ");
    for r in records {
        println!(
            "{:<64}  {:<13} {:<24} {}",
            r["id"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            format!("{}#{}", r["origin"].as_str().unwrap_or(""), r["seq"]),
            r["issued_at"].as_str().unwrap_or("")
        );
    }
    println!("{} records", records.len());
    Ok(Outcome::Ok)
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn status(node: &Path, json: bool) -> anyhow::Result<Outcome> {
    let client = NodeClient::for_node(node)?;
    let (code, reply) = client.get("/v1/status")?;
    let s = ok(code, reply)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(Outcome::Ok);
    }
    print!("{}", render_status(&s));
    Ok(Outcome::Ok)
}

/// The readable status table.
pub fn render_status(s: &Value) -> String {
    let mut out = format!(
        "member {}  roster v{}  local log {} records\n\nLOGS\n{:<20} {:>10}  ROOT\n",
        s["member"].as_str().unwrap_or("?"),
        s["roster_version"],
        s["local_log"]["size"],
        "ORIGIN",
        "RECORDS"
    );
    let empty = Vec::new();
    for e in s["equivocations"].as_array().unwrap_or(&empty) {
        out = format!(
            "ALERT: {} SIGNED TWO HISTORIES; its log is frozen here. {}\n\n{out}",
            e["origin"].as_str().unwrap_or("?"),
            e["summary"].as_str().unwrap_or("")
        );
    }
    for h in s["heads"].as_array().unwrap_or(&empty) {
        let root = h["root"].as_str().unwrap_or("");
        let fin = match h["final_size"].as_u64() {
            Some(f) => format!("  final to {f} ({} witnesses)", h["witnesses"]),
            None => String::new(),
        };
        out += &format!(
            "{:<20} {:>10}  {}…{fin}\n",
            h["origin"].as_str().unwrap_or(""),
            h["size"],
            &root[..16.min(root.len())]
        );
    }
    out += &format!(
        "\nPEERS\n{:<20} {:<10} {:<22} LAG (records it has that we lack)\n",
        "MEMBER", "STATE", "ADDRESS"
    );
    for p in s["peers"].as_array().unwrap_or(&empty) {
        let ahead: u64 = p["ahead"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        out += &format!(
            "{:<20} {:<10} {:<22} {}\n",
            p["member"].as_str().unwrap_or(""),
            if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "down"
            },
            p["address"].as_str().unwrap_or("-"),
            ahead
        );
    }
    let frozen = s["frozen"].as_array().map_or(0, Vec::len);
    if frozen > 0 {
        out += &format!("\nFROZEN ORIGINS (forked logs): {}\n", s["frozen"]);
    }
    if let Some(r) = s.get("recovering").filter(|r| !r.is_null()) {
        let waiting: Vec<&str> = r["waiting_for"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        out += &format!(
            "\nRECOVERING own log after a restore: not issuing yet; peers hold {} of it; waiting for {}\n",
            r["peers_hold"].as_u64().unwrap_or(0),
            if waiting.is_empty() { "nothing more".to_owned() } else { waiting.join(", ") }
        );
    }
    if let Some(e) = s["store_failed"].as_str() {
        out += &format!("\nSTORE FAILED: sync stopped ({e}); restart the node\n");
    }
    out += &render_minimization(s);
    out
}

/// The data-minimization lines of the status: policy version, refused and purged disclosures,
/// flagged peers and records still being completed from their origin.
fn render_minimization(s: &Value) -> String {
    let policy = s["policy_version"].as_u64().unwrap_or(0);
    let mut out = if policy == 0 {
        "\nPOLICY none adopted: this node sends and keeps no fields of other members' records\n"
            .to_owned()
    } else {
        format!("\nPOLICY v{policy}")
    };
    if policy > 0 {
        out += &format!(
            "  refused disclosures {}  purged disclosures {}\n",
            s["refused_disclosures"].as_u64().unwrap_or(0),
            s["purged_disclosures"].as_u64().unwrap_or(0)
        );
    }
    let counts = |key: &str| -> Vec<String> {
        s[key]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} ({v})")).collect())
            .unwrap_or_default()
    };
    let flagged = counts("flagged");
    if !flagged.is_empty() {
        out += &format!(
            "FLAGGED PEERS (sent disclosures beyond this member's view): {}\n",
            flagged.join(", ")
        );
    }
    let backfilling = counts("backfilling");
    if !backfilling.is_empty() {
        out += &format!(
            "COMPLETING FROM ORIGIN (records short of this member's view): {}\n",
            backfilling.join(", ")
        );
    }
    out
}
