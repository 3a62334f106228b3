//! `tfx demo`: a complete consortium on loopback in one command. It runs the real onboarding
//! commands (consortium init; member init, approve and join for four members; roster install on
//! a governor's node), starts four `tfx-node` processes, submits records drawn from
//! `shared/domain/enterprises.csv` at the three issuers through their local APIs, shows them
//! arriving at every node, and shuts the nodes down with SIGTERM. `--keep DIR` leaves every
//! member's directory (keys, config, data, node.log) in DIR.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::{ok, NodeClient};

/// (member id, role, display name): the science department, the central bank's Chengdu branch,
/// a bank, and the risk-warning system.
const MEMBERS: [(&str, &str, &str); 4] = [
    ("science-dept", "science-dept", "四川省科学技术厅"),
    ("pbc-chengdu", "central-bank", "中国人民银行成都分行"),
    ("bank-a", "bank", "天府银行科技支行"),
    ("risk-warning", "risk-warning", "科技金融风险预警系统"),
];

/// How long the demo waits for nodes to start, connect and converge.
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
    /// First of four consecutive UDP ports (the local APIs use these + 1000 on 127.0.0.1).
    #[arg(long, default_value_t = 7401)]
    pub base_port: u16,
}

struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn step(n: usize, text: &str) {
    println!("\n[{n}/5] {text}");
}

fn run_tfx(args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the tfx binary")?;
    let out = Command::new(&exe)
        .args(args)
        .output()
        .with_context(|| format!("running tfx {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "tfx {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tfx_node_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TFX_NODE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("tfx-node");
    if !p.is_file() {
        bail!(
            "{} not found; build it (cargo build --release) or set TFX_NODE",
            p.display()
        );
    }
    Ok(p)
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
    let p = |rel: &str| root.join(rel).display().to_string();

    step(
        1,
        "building a four-member consortium with the onboarding commands",
    );
    run_tfx(&[
        "consortium",
        "init",
        "--dir",
        &p("consortium"),
        "--name",
        "Sichuan sci-tech finance (demo)",
        "--governor",
        "science-dept",
        "--governor",
        "local-finance",
        "--governor",
        "central-bank",
        "--threshold",
        "2",
    ])?;
    let genesis = std::fs::read_to_string(root.join("consortium/genesis.sha256"))?
        .trim()
        .to_string();
    for (i, (id, role, name)) in MEMBERS.iter().enumerate() {
        let endpoint = format!("127.0.0.1:{}", a.base_port + i as u16);
        run_tfx(&[
            "member",
            "init",
            "--dir",
            &p(id),
            "--id",
            id,
            "--name",
            name,
            "--role",
            role,
            "--endpoint",
            &endpoint,
        ])?;
        run_tfx(&[
            "member",
            "approve",
            "--consortium",
            &p("consortium"),
            &p(&format!("{id}/join-request.json")),
            "--out",
            &p(&format!("{id}.bundle")),
        ])?;
        run_tfx(&[
            "member",
            "join",
            "--dir",
            &p(id),
            "--genesis",
            &genesis,
            &p(&format!("{id}.bundle")),
        ])?;
        // Loopback: a short anti-entropy interval makes the demo brisk.
        let config = root.join(id).join("node.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str("\n[sync]\nanti_entropy_ms = 1000\n");
        std::fs::write(&config, text)?;
        println!("  {id:<14} {role:<14} {endpoint}  joined");
    }
    let mut versions: Vec<String> = std::fs::read_dir(root.join("consortium/roster"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tfxroster"))
        .map(|p| p.display().to_string())
        .collect();
    versions.sort();
    let mut args = vec!["roster", "install", "--dir"];
    let sd = p("science-dept");
    args.push(&sd);
    args.extend(versions.iter().map(String::as_str));
    run_tfx(&args)?;
    println!("  genesis {genesis}; latest roster published on science-dept's node");

    step(2, "starting four tfx-node processes on 127.0.0.1");
    let node_bin = tfx_node_binary()?;
    let mut nodes = Nodes(Vec::new());
    for (id, ..) in MEMBERS {
        let log = std::fs::File::create(root.join(id).join("node.log"))?;
        let child = Command::new(&node_bin)
            .arg("--config")
            .arg(root.join(id).join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", node_bin.display()))?;
        nodes.0.push((id.to_string(), child));
    }
    let clients = wait_for_apis(&root, &mut nodes)?;
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
    for (id, ..) in MEMBERS.iter().take(3) {
        let client = &clients.iter().find(|(m, _)| m == id).context("client")?.1;
        for i in 0..a.records {
            let e = &enterprises[(i * 7 + id.len() * 131) % enterprises.len()];
            let body = serde_json::to_vec(&record_for(id, i, e))?;
            let (code, reply) = client.post("/v1/records", &body)?;
            ok(code, reply).with_context(|| format!("submitting at {id}"))?;
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
            let held: u64 = s["heads"]
                .as_array()
                .map(|h| h.iter().filter_map(|h| h["size"].as_u64()).sum())
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

    step(5, "shutting down (SIGTERM)");
    for (id, child) in &mut nodes.0 {
        let out = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !out.success() {
            bail!("could not signal {id}");
        }
    }
    for (id, child) in &mut nodes.0 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                println!("  {id:<14} stopped ({status})");
                break;
            }
            if Instant::now() > deadline {
                bail!("{id} did not stop within 15 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nodes.0.clear();
    match &a.keep {
        Some(dir) => println!(
            "\nmember directories kept in {} (see */node.log)",
            dir.display()
        ),
        None => println!("\ndone; temporary directories removed (use --keep DIR to inspect them)"),
    }
    Ok(crate::Outcome::Ok)
}

fn status(c: &NodeClient) -> anyhow::Result<Value> {
    let (code, reply) = c.get("/v1/status")?;
    ok(code, reply)
}

fn wait_for_apis(root: &Path, nodes: &mut Nodes) -> anyhow::Result<Vec<(String, NodeClient)>> {
    let deadline = Instant::now() + WAIT;
    let mut clients = Vec::new();
    for (id, ..) in MEMBERS {
        loop {
            if let Some((_, child)) = nodes.0.iter_mut().find(|(m, _)| m == id) {
                if let Some(status) = child.try_wait()? {
                    let log =
                        std::fs::read_to_string(root.join(id).join("node.log")).unwrap_or_default();
                    bail!("{id}'s node exited ({status}):\n{log}");
                }
            }
            if let Ok(c) = NodeClient::for_node(&root.join(id)) {
                if status(&c).is_ok() {
                    clients.push((id.to_string(), c));
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{id}'s node did not start; see {}",
                    root.join(id).join("node.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(clients)
}

fn wait_until(what: &str, mut f: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
