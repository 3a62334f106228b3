#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is a failed test
//! Real `tfx-node` processes on 127.0.0.1 with a consortium built at test time by
//! `certs/dev-consortium.sh` (the `tfx` CLI): four nodes converge while one is SIGKILLed and
//! restarted mid-replication, nothing is lost or duplicated, every store re-verifies offline,
//! and a revoked member is disconnected and refused. Every process is killed when a test ends.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

const MEMBERS: [&str; 4] = ["science-dept", "pbc-chengdu", "bank-a", "risk-warning"];

fn tfx_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tfx"))
}

fn tfx_node_bin() -> PathBuf {
    tfx_bin().with_file_name("tfx-node")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Four free consecutive ports for QUIC (UDP) whose +1000 neighbours are free for the API (TCP).
fn free_base_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed + attempt * 97) % 4_000) as u16 * 4;
        let ok = (0..4).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i + 1000)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

/// A dev consortium and its running nodes.
struct Net {
    dir: tempfile::TempDir,
    procs: BTreeMap<String, Child>,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port();
        let out = Command::new("bash")
            .arg(repo().join("certs/dev-consortium.sh"))
            .arg(dir.path().join("c"))
            .env("TFX", tfx_bin())
            .env("TFX_BASE_PORT", base.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
        for m in MEMBERS {
            let path = dir.path().join("c").join(m).join("node.toml");
            let mut config = std::fs::read_to_string(&path).unwrap();
            // Loopback tests: short anti-entropy and fetch timeouts.
            config.push_str("\n[sync]\nanti_entropy_ms = 300\nfetch_timeout_ms = 3000\n");
            std::fs::write(&path, config).unwrap();
        }
        Net {
            dir,
            procs: BTreeMap::new(),
        }
    }

    fn member(&self, m: &str) -> PathBuf {
        self.dir.path().join("c").join(m)
    }

    fn start(&mut self, m: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{m}.log")))
            .unwrap();
        let child = Command::new(tfx_node_bin())
            .arg("--config")
            .arg(self.member(m).join("node.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(m.to_string(), child);
        let api = Api::new(&self.member(m));
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.health().is_err() {
            assert!(
                Instant::now() < deadline,
                "{m} did not come up:\n{}",
                self.log(m)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&mut self, m: &str, sig: i32) -> std::process::ExitStatus {
        let mut child = self.procs.remove(m).unwrap();
        let rc = send_signal(child.id(), sig);
        assert_eq!(rc, 0);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{m} did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, m: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{m}.log"))).unwrap_or_default()
    }

    fn tfx(&self, args: &[&str]) -> std::process::Output {
        Command::new(tfx_bin())
            .args(args)
            .current_dir(self.dir.path().join("c"))
            .output()
            .unwrap()
    }
}

/// Sends `sig` with kill(1): the workspace forbids `unsafe`, which libc::kill needs.
fn send_signal(pid: u32, sig: i32) -> i32 {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() {
        0
    } else {
        1
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The local API of one node.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(member_dir: &Path) -> Api {
        let config = tfx_node::config::NodeConfig::load(&member_dir.join("node.toml")).unwrap();
        let token = tfx_node::keyfile::load_secret(&config.api_token)
            .map(|s| hex::encode(&s[..]))
            .unwrap_or_default();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Api {
            base: format!("http://{}", config.api_listen),
            token,
            agent,
        }
    }

    fn health(&self) -> Result<(), ureq::Error> {
        self.agent
            .get(format!("{}/v1/health", self.base))
            .call()
            .map(|_| ())
    }

    fn submit(&self, body: &[u8]) -> Option<Value> {
        let mut r = self
            .agent
            .post(format!("{}/v1/records", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send(body)
            .ok()?;
        (r.status().as_u16() == 201).then(|| r.body_mut().read_json().unwrap())
    }

    fn status(&self) -> Option<Value> {
        let mut r = self
            .agent
            .get(format!("{}/v1/status", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .ok()?;
        r.body_mut().read_json().ok()
    }
}

fn heads(status: &Value) -> BTreeMap<String, (u64, String)> {
    status["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["origin"].as_str().unwrap().to_string(),
                (
                    h["size"].as_u64().unwrap(),
                    h["root"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn example(kind: &str) -> Vec<u8> {
    std::fs::read(repo().join(format!("examples/records/{kind}.json"))).unwrap()
}

/// Submits `count` records of `kind` at `api` from `threads` concurrent clients; returns how
/// many the node acknowledged (each acknowledgement means durable).
fn submit_many(api: &Api, kind: &str, count: u64, threads: u64, acked: Arc<AtomicU64>) {
    let body = example(kind);
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (api, body, next, acked) = (api.clone(), body.clone(), next.clone(), acked.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    if api.submit(&body).is_some() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Waits until every running node reports exactly `expected` (origin → size) with equal roots.
fn wait_converged(net: &Net, members: &[&str], expected: &BTreeMap<String, u64>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let all: Vec<_> = members
            .iter()
            .map(|m| Api::new(&net.member(m)).status().map(|s| heads(&s)))
            .collect();
        let sizes_ok = all.iter().all(|h| {
            h.as_ref().is_some_and(|h| {
                expected
                    .iter()
                    .all(|(o, n)| h.get(o).map(|x| x.0) == Some(*n))
            })
        });
        let same = all.windows(2).all(|w| w[0] == w[1]);
        if sizes_ok && same {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = members
                .iter()
                .map(|m| format!("--- {m}\n{}", net.log(m)))
                .collect();
            panic!("no convergence to {expected:?}: {all:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn four_nodes_converge_through_a_sigkill_and_a_revoked_member_is_cut_off() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let bank = Api::new(&net.member("bank-a"));
    let science = Api::new(&net.member("science-dept"));
    let bank_acked = Arc::new(AtomicU64::new(0));
    let science_acked = Arc::new(AtomicU64::new(0));
    let writers = {
        let (bank, science) = (bank.clone(), science.clone());
        let (b, s) = (bank_acked.clone(), science_acked.clone());
        std::thread::spawn(move || {
            let t = std::thread::spawn(move || submit_many(&science, "monitoring", 300, 4, s));
            submit_many(&bank, "credit", 1_500, 8, b);
            t.join().unwrap();
        })
    };
    // Kill the central bank's node mid-replication, with no chance to flush, then restart it.
    while bank_acked.load(Ordering::Relaxed) < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    net.signal("pbc-chengdu", 9);
    std::thread::sleep(Duration::from_millis(300));
    net.start("pbc-chengdu");
    writers.join().unwrap();
    let expected: BTreeMap<String, u64> = [
        ("bank-a".to_string(), bank_acked.load(Ordering::Relaxed)),
        (
            "science-dept".to_string(),
            science_acked.load(Ordering::Relaxed),
        ),
    ]
    .into();
    assert_eq!(
        expected["bank-a"], 1_500,
        "every submission is acknowledged"
    );
    // Exactly the acknowledged records everywhere: none lost, none duplicated.
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(90));

    // Clean shutdown, then every store re-verifies offline.
    for m in MEMBERS {
        let status = net.signal(m, 15);
        assert!(
            status.success(),
            "{m} exited with {status} on SIGTERM:\n{}",
            net.log(m)
        );
        assert!(net.log(m).contains("node stopped"), "{m}:\n{}", net.log(m));
    }
    let pubs: Vec<String> = MEMBERS
        .iter()
        .map(|m| {
            format!(
                "{m}={}",
                net.member(m).join("keys/record-signing.pub").display()
            )
        })
        .collect();
    for m in MEMBERS {
        let mut args = vec![
            "check-store".to_string(),
            "--data".into(),
            net.member(m).join("data").display().to_string(),
        ];
        for p in &pubs {
            args.push("--pub".into());
            args.push(p.clone());
        }
        let out = Command::new(tfx_node_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{m}: {}", common::text(&out));
        assert!(
            common::text(&out).contains("bank-a: ok — 1500 records"),
            "{}",
            common::text(&out)
        );
    }

    // Revoke the risk-warning member; a governor's node learns the new roster and spreads it.
    let out = net.tfx(&[
        "member",
        "revoke",
        "--consortium",
        "consortium",
        "--id",
        "risk-warning",
        "--reason",
        "test",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let files: Vec<String> = std::fs::read_dir(net.dir.path().join("c/consortium/roster"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tfxroster"))
        .map(|p| p.display().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut args = vec!["roster", "install", "--dir", "science-dept"];
    args.extend(files.iter().map(String::as_str));
    let out = net.tfx(&args);
    assert!(out.status.success(), "{}", common::text(&out));
    for m in MEMBERS {
        net.start(m);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rw = Api::new(&net.member("risk-warning")).status().unwrap();
        let others_dropped = ["pbc-chengdu", "bank-a"].iter().all(|m| {
            let s = Api::new(&net.member(m)).status().unwrap();
            s["roster_version"].as_u64() == Some(6)
                && s["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["member"] != "risk-warning" || p["connected"] == false)
        });
        let rw_alone = rw["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["connected"] == false);
        if others_dropped && rw_alone {
            break;
        }
        assert!(Instant::now() < deadline, "risk-warning not cut off: {rw}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it stays refused: the handshake fails on the members' side, with the reason logged.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        net.log("science-dept")
            .contains("risk-warning is revoked in roster v6"),
        "{}",
        net.log("science-dept")
    );
}

#[test]
fn the_demo_runs_end_to_end_and_keeps_its_directories() {
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("demo");
    let out = Command::new(tfx_bin())
        .args(["demo", "--records", "3", "--base-port"])
        .arg(free_base_port().to_string())
        .arg("--keep")
        .arg(&dir)
        .arg("--enterprises")
        .arg(repo().join("../shared/domain/enterprises.csv"))
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("science-dept 9/9  pbc-chengdu 9/9  bank-a 9/9  risk-warning 9/9"),
        "{text}"
    );
    assert_eq!(
        text.matches("stopped (exit status: 0)").count(),
        4,
        "{text}"
    );
    for m in MEMBERS {
        assert!(dir.join(m).join("node.log").is_file());
        assert!(dir.join(m).join("data").is_dir());
    }
}
