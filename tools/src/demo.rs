//! `tfx demo`: a complete consortium on loopback in one command. It runs the real onboarding
//! commands (consortium init; member init, approve and join for four members; roster install on
//! a governor's node), starts four `tfx-node` processes, submits records drawn from
//! `shared/domain/enterprises.csv` at the three issuers through their local APIs, shows them
//! arriving at every node, shows one record as each member holds it (the data-minimization
//! policy at work), waits for the risk-warning member to raise a warning and shows who can
//! resolve it, and shuts the nodes down with SIGTERM. `--keep DIR` leaves every
//! member's directory (keys, config, data, node.log) in DIR.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::ok;
use crate::localnet::{self, status, LocalNet, MEMBERS};

/// How long the demo waits for nodes to connect and converge.
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the members' directories (data, config, logs) here instead of deleting them.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Records each issuer submits.
    #[arg(long, default_value_t = 20)]
    pub records: usize,
    /// The synthetic enterprises the records are about.
    #[arg(long, default_value = "../shared/domain/enterprises.csv")]
    pub enterprises: PathBuf,
    /// First of four consecutive UDP ports (the local APIs use these + 1000 on 127.0.0.1, the
    /// metrics listeners + 2000).
    #[arg(long, default_value_t = 7401)]
    pub base_port: u16,
}

fn step(n: usize, text: &str) {
    println!("\n[{n}/7] {text}");
}

fn wait_until(what: &str, f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    localnet::wait_until(what, WAIT, Duration::from_millis(200), f)
}

/// (uscc, name, region code, industry) rows.
fn enterprises(path: &Path) -> anyhow::Result<Vec<[String; 4]>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (run from the repository, or pass --enterprises FILE)",
            path.display()
        )
    })?;
    let rows: Vec<[String; 4]> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 5).then(|| [f[0], f[1], f[3], f[4]].map(str::to_string))
        })
        .collect();
    if rows.is_empty() {
        bail!("{}: no enterprises", path.display());
    }
    Ok(rows)
}

/// A record about enterprise `e` that `issuer` may issue.
fn record_for(issuer: &str, i: usize, e: &[String; 4]) -> Value {
    let [uscc, name, region, industry] = e;
    match issuer {
        "science-dept" => json!({
            "kind": "monitoring", "subject_uscc": uscc, "subject_name": name,
            "period": "2026Q3", "event": "innovation-points",
            "innovation_points_score": 60 + (i % 40) as u64,
        }),
        _ => {
            let amount = 100_000_000u64 * (1 + (i % 50) as u64);
            let overdue = [0u64, 0, 0, 15, 120][i % 5];
            let product = ["tianfu-kechuang-dai", "points-loan", "ip-pledge-loan"][i % 3];
            let guarantee = ["credit", "guarantee", "ip-pledge"][i % 3];
            let lender = if issuer == "bank-a" {
                "天府银行科技支行"
            } else {
                "中国人民银行成都分行再贷款"
            };
            json!({
                "kind": "credit", "subject_uscc": uscc, "subject_name": name,
                "region_code": region, "industry": industry,
                "lender": lender,
                "product": product,
                "contract_amount_fen": amount, "balance_fen": amount / 2,
                "start_date": "2026-03-01", "maturity_date": "2027-02-28",
                "guarantee": guarantee,
                "classification": tfx_protocol::validate::minimum_classification(overdue),
                "overdue_days": overdue, "risk_compensation_pool": i.is_multiple_of(2),
            })
        }
    }
}

/// One record's fields as each member holds them: a row per field (in the issuer's order),
/// a column per member, `·` where the member's view withholds the field.
fn side_by_side(
    clients: &[(String, crate::client::NodeClient)],
    id: &str,
) -> anyhow::Result<String> {
    let mut copies = Vec::new();
    for (m, c) in clients {
        let (code, reply) = c.get(&format!("/v1/records/{id}"))?;
        copies.push((m.as_str(), ok(code, reply)?));
    }
    let issuer = copies
        .iter()
        .find(|(m, r)| r["origin"] == *m)
        .map(|(_, r)| r.clone())
        .context("the issuer's copy")?;
    let kind = issuer["kind"].as_str().unwrap_or_default();
    let fields: Vec<&str> = tfx_protocol::schema::RecordKind::parse(kind)
        .map(|k| k.fields().iter().map(|f| f.name).collect())
        .unwrap_or_default();
    let cell = |v: &Value| -> String {
        let s = match v {
            Value::Null => return "·".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let short: String = s.chars().take(14).collect();
        if short.len() < s.len() {
            format!("{short}…")
        } else {
            short
        }
    };
    let mut out = format!("  {:<24}", "field");
    for (m, _) in &copies {
        out += &format!(" {m:<16}");
    }
    out.push('\n');
    for f in fields {
        if issuer["fields"].get(f).is_none() {
            continue;
        }
        out += &format!("  {f:<24}");
        for (_, r) in &copies {
            let v = r["fields"].get(f).cloned().unwrap_or(Value::Null);
            out += &format!(" {:<16}", cell(&v));
        }
        out.push('\n');
    }
    Ok(out)
}

pub fn run(a: DemoArgs) -> anyhow::Result<crate::Outcome> {
    let enterprises = enterprises(&a.enterprises)?;
    let temp;
    let root = match &a.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "--keep {}: the directory exists and is not empty",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    step(
        1,
        "building a four-member consortium with the onboarding commands",
    );
    // Loopback: a short anti-entropy interval makes the demo brisk.
    let mut net = LocalNet::build(
        &root,
        a.base_port,
        "\n[sync]\nanti_entropy_ms = 1000\n",
        true,
        &mut |id, role, endpoint| println!("  {id:<14} {role:<14} {endpoint}  joined"),
    )?;
    println!("  latest roster published on science-dept's node");

    step(2, "starting four tfx-node processes on 127.0.0.1");
    let mut clients = Vec::new();
    for (id, ..) in MEMBERS {
        clients.push((id.to_string(), net.start(id)?));
    }
    wait_until("every node connected to the other three", || {
        Ok(clients.iter().all(|(_, c)| {
            status(c).is_ok_and(|s| {
                s["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 3 && p.iter().all(|p| p["connected"] == true))
            })
        }))
    })?;
    println!("  all four connected (mutual TLS, roster-checked)");

    step(
        3,
        &format!("submitting {} records at each issuer", a.records),
    );
    let mut expected = std::collections::BTreeMap::new();
    let mut sample = None;
    for (id, ..) in MEMBERS.iter().take(3) {
        let client = &clients.iter().find(|(m, _)| m == id).context("client")?.1;
        for i in 0..a.records {
            let e = &enterprises[(i * 7 + id.len() * 131) % enterprises.len()];
            let body = serde_json::to_vec(&record_for(id, i, e))?;
            let (code, reply) = client.post("/v1/records", &body)?;
            let reply = ok(code, reply).with_context(|| format!("submitting at {id}"))?;
            if *id == "pbc-chengdu" && sample.is_none() {
                sample = reply["id"].as_str().map(str::to_owned);
            }
        }
        expected.insert(id.to_string(), a.records as u64);
        println!("  {id:<14} {} records appended (durable)", a.records);
    }

    step(4, "watching them arrive at every node");
    let started = Instant::now();
    let mut last = String::new();
    wait_until("every record at every node", || {
        let mut line = String::new();
        let mut done = true;
        for (id, c) in &clients {
            let s = status(c)?;
            // The issuers' logs (risk-warning's own warnings are shown below).
            let held: u64 = s["heads"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter(|h| {
                            h["origin"]
                                .as_str()
                                .is_some_and(|o| expected.contains_key(o))
                        })
                        .filter_map(|h| h["size"].as_u64())
                        .sum()
                })
                .unwrap_or(0);
            let want: u64 = expected.values().sum();
            done &= held == want;
            line += &format!("  {id} {held}/{want}");
        }
        if line != last {
            println!("  {:>5} ms {line}", started.elapsed().as_millis());
            last = line;
        }
        Ok(done)
    })?;
    for (id, c) in &clients {
        let (code, reply) = c.get("/v1/records?limit=1000")?;
        let n = ok(code, reply)?["records"].as_array().map_or(0, Vec::len);
        println!("  {id:<14} holds {n} records, each re-verifiable against its origin's signature");
    }
    println!(
        "\n{}",
        crate::client::render_status(&status(&clients[3].1)?)
    );

    step(
        5,
        "one credit record of pbc-chengdu's, as each member holds it",
    );
    let sample = sample.context("no record submitted at pbc-chengdu")?;
    wait_until("every member to complete the record", || {
        Ok(clients.iter().all(|(_, c)| {
            status(c).is_ok_and(|s| s["backfilling"].as_object().is_some_and(|b| b.is_empty()))
        }))
    })?;
    print!("{}", side_by_side(&clients, &sample)?);
    println!("  (· withheld by the policy: deploy/policy.example.toml; every shown value verifies against pbc-chengdu's signature)");

    step(
        6,
        "a risk warning, raised on the risk-warning member's minimized view",
    );
    let bank = &clients
        .iter()
        .find(|(m, _)| m == "bank-a")
        .context("client")?
        .1;
    let e = &enterprises[enterprises.len() / 2];
    // i = 4: a loan 120 days overdue (see record_for).
    let overdue_loan = serde_json::to_vec(&record_for("bank-a", 4, e))?;
    let (code, reply) = bank.post("/v1/records", &overdue_loan)?;
    let overdue = ok(code, reply)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("  bank-a reports a loan of {} 120 days overdue", e[1]);
    let pbc = &clients
        .iter()
        .find(|(m, _)| m == "pbc-chengdu")
        .context("client")?
        .1;
    let rests_on = |w: &Value| {
        w["basis_record_ids"]
            .as_array()
            .is_some_and(|b| b.iter().any(|i| i == overdue.as_str()))
    };
    wait_until("the warning at pbc-chengdu", || {
        Ok(crate::warnings::list(pbc)?.iter().any(rests_on))
    })?;
    for (id, c) in &clients {
        let rows = crate::warnings::list(c)?;
        let ours: Vec<&Value> = rows.iter().filter(|w| rests_on(w)).collect();
        if ours.is_empty() {
            println!(
                "  {id:<14} holds {} warning envelopes; the policy gives it none of their fields",
                rows.len()
            );
        }
        for w in ours {
            let subject = match (w["subject_uscc"].as_str(), w["subject_name"].as_str()) {
                (Some(u), Some(n)) => format!("resolves it to {u} {n}"),
                _ => format!(
                    "sees {} only",
                    w["subject_pseudonym"].as_str().unwrap_or("-")
                ),
            };
            println!(
                "  {id:<14} {} {} {}: {subject}",
                w["level"].as_str().unwrap_or("-"),
                w["period"].as_str().unwrap_or("-"),
                w["rule_ids"][0].as_str().unwrap_or("-"),
            );
        }
    }
    println!("  (a regulator resolves a warning through its own holdings of the pseudonym; the risk-warning member cannot)");

    step(7, "shutting down (SIGTERM)");
    for (id, status) in net.stop_all()? {
        println!("  {id:<14} stopped ({status})");
    }
    match &a.keep {
        Some(dir) => println!(
            "\nmember directories kept in {} (see */node.log)",
            dir.display()
        ),
        None => println!("\ndone; temporary directories removed (use --keep DIR to inspect them)"),
    }
    Ok(crate::Outcome::Ok)
}
