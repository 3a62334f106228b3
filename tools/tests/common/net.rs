//! Real `tfx-node` processes on 127.0.0.1 for the multi-process tests: a consortium built at
//! test time by `certs/dev-consortium.sh` (the `tfx` CLI), nodes started and signalled, and
//! their local APIs. Every process is killed when the [`Net`] is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MEMBERS: [&str; 4] = ["science-dept", "pbc-chengdu", "bank-a", "risk-warning"];

pub fn tfx_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tfx"))
}

pub fn tfx_node_bin() -> PathBuf {
    tfx_bin().with_file_name("tfx-node")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Four free consecutive ports for QUIC (UDP) whose +1000 and +2000 neighbours are free for the
/// API and the metrics listener (TCP). All of them stay below 32,768, where Linux's ephemeral
/// range starts: a port handed to another test's outgoing socket between this check and the
/// node's bind made a node fail to start ("Address already in use" on its metrics port, CI,
/// 2026-12-03).
pub fn free_base_port() -> u16 {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        // Bases 20,000..=29,596, so the highest port (base + 2,003) is at most 31,599.
        let base = 20_000 + ((seed + attempt * 97) % 2_400) as u16 * 4;
        let ok = (0..4).all(|i| {
            std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i + 1000)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + i + 2000)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

/// A dev consortium and its running nodes.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub procs: BTreeMap<String, Child>,
}

impl Net {
    pub fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port();
        let out = Command::new("bash")
            .arg(repo().join("certs/dev-consortium.sh"))
            .arg(dir.path().join("c"))
            .env("TFX", tfx_bin())
            .env("TFX_BASE_PORT", base.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", super::text(&out));
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

    pub fn member(&self, m: &str) -> PathBuf {
        self.dir.path().join("c").join(m)
    }

    pub fn start(&mut self, m: &str) {
        self.start_with(m, &[]);
    }

    /// Starts `m` with extra `tfx-node` arguments after `--config FILE`.
    pub fn start_with(&mut self, m: &str, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{m}.log")))
            .unwrap();
        let child = Command::new(tfx_node_bin())
            .arg("--config")
            .arg(self.member(m).join("node.toml"))
            .args(args)
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

    pub fn signal(&mut self, m: &str, sig: i32) -> std::process::ExitStatus {
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

    pub fn log(&self, m: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{m}.log"))).unwrap_or_default()
    }

    /// Runs `tfx-node check-store` on a stopped member's data with every member's public key;
    /// asserts it passed and returns its report.
    pub fn check_store(&self, m: &str) -> String {
        let mut args = vec![
            "check-store".to_string(),
            "--data".into(),
            self.member(m).join("data").display().to_string(),
        ];
        for other in MEMBERS {
            args.push("--pub".into());
            args.push(format!(
                "{other}={}",
                self.member(other).join("keys/record-signing.pub").display()
            ));
        }
        let out = Command::new(tfx_node_bin()).args(&args).output().unwrap();
        let report = super::text(&out);
        assert!(out.status.success(), "{m}: {report}");
        report
    }

    pub fn tfx(&self, args: &[&str]) -> std::process::Output {
        Command::new(tfx_bin())
            .args(args)
            .current_dir(self.dir.path().join("c"))
            .output()
            .unwrap()
    }
}

/// Sends `sig` with kill(1): the workspace forbids `unsafe`, which libc::kill needs.
pub fn send_signal(pid: u32, sig: i32) -> i32 {
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
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(member_dir: &Path) -> Api {
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

    pub fn health(&self) -> Result<(), ureq::Error> {
        self.agent
            .get(format!("{}/v1/health", self.base))
            .call()
            .map(|_| ())
    }

    pub fn submit(&self, body: &[u8]) -> Option<Value> {
        let mut r = self
            .agent
            .post(format!("{}/v1/records", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send(body)
            .ok()?;
        (r.status().as_u16() == 201).then(|| r.body_mut().read_json().unwrap())
    }

    /// `GET path` with the token; the JSON body of a 2xx answer.
    pub fn get(&self, path: &str) -> Option<Value> {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .ok()?;
        if !(200..300).contains(&r.status().as_u16()) {
            return None;
        }
        r.body_mut().read_json().ok()
    }

    /// `GET path` with the token; just the status code.
    pub fn get_code(&self, path: &str) -> u16 {
        self.agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn status(&self) -> Option<Value> {
        let mut r = self
            .agent
            .get(format!("{}/v1/status", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .ok()?;
        r.body_mut().read_json().ok()
    }
}

/// A node's metrics listener (`[metrics] listen`, no token).
pub struct Metrics {
    base: String,
    agent: ureq::Agent,
}

impl Metrics {
    pub fn new(member_dir: &Path) -> Metrics {
        let config = tfx_node::config::NodeConfig::load(&member_dir.join("node.toml")).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Metrics {
            base: format!("http://{}", config.metrics_listen),
            agent,
        }
    }

    /// `GET /metrics`, parsed and checked by [`parse_prometheus`].
    pub fn scrape(&self) -> BTreeMap<String, f64> {
        let mut r = self
            .agent
            .get(format!("{}/metrics", self.base))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        parse_prometheus(&r.body_mut().read_to_string().unwrap())
    }

    /// `GET /health`: the status code and the JSON body.
    pub fn health(&self) -> (u16, Value) {
        let mut r = self
            .agent
            .get(format!("{}/health", self.base))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }
}

/// Parses the Prometheus text exposition format (0.0.4) strictly enough to catch what a
/// scraper would reject: every sample belongs to a family declared by `# HELP` and `# TYPE`
/// (once each, before its samples), names and label names are valid, label values are quoted,
/// values are numbers, no series repeats, and each histogram's buckets are cumulative, end in
/// `le="+Inf"` and equal its `_count`. Returns series (`name{labels}` as written) → value.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    fn name_ok(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_ok(name), "bad family name: {line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type: {line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment: {line}");
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let name = key.split('{').next().unwrap();
        assert!(name_ok(name), "bad metric name: {line}");
        if let Some(labels) = key.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line}"));
            for pair in inner.split("\",") {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(name_ok(k), "bad label name: {line}");
                assert!(v.starts_with('"'), "unquoted label value: {line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family) && helped.contains(family),
            "sample before its HELP/TYPE: {line}"
        );
        assert!(
            series.insert(key.to_string(), value).is_none(),
            "series twice: {line}"
        );
    }
    // Histograms: cumulative buckets ending in +Inf, equal to _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_labels: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (key, v) in &series {
            let Some(labels) = key.strip_prefix(&format!("{family}_bucket{{")) else {
                continue;
            };
            let (rest, le) = labels.trim_end_matches('}').rsplit_once("le=\"").unwrap();
            let le = le.trim_end_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            by_labels
                .entry(rest.trim_end_matches(',').to_string())
                .or_default()
                .push((le, *v));
        }
        for (labels, mut buckets) in by_labels {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}}: buckets not cumulative"
            );
            let last = buckets.last().unwrap();
            assert!(last.0.is_infinite(), "{family}{{{labels}}}: no +Inf bucket");
            let count = series[&format!("{family}_count{{{labels}}}")];
            assert_eq!(last.1, count, "{family}{{{labels}}}: +Inf bucket != count");
        }
    }
    series
}

pub fn heads(status: &Value) -> BTreeMap<String, (u64, String)> {
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

pub fn example(kind: &str) -> Vec<u8> {
    std::fs::read(repo().join(format!("examples/records/{kind}.json"))).unwrap()
}

/// Submits `count` records of `kind` at `api` from `threads` concurrent clients; returns how
/// many the node acknowledged (each acknowledgement means durable).
pub fn submit_many(api: &Api, kind: &str, count: u64, threads: u64, acked: Arc<AtomicU64>) {
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
pub fn wait_converged(
    net: &Net,
    members: &[&str],
    expected: &BTreeMap<String, u64>,
    within: Duration,
) {
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

/// Every file under `dir` (sled's included) that contains one of `needles`, byte for byte:
/// (file, needle) pairs. The test of truth for minimization (DESIGN §8).
pub fn files_containing(dir: &Path, needles: &[&str]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    found.push((p.clone(), (*n).to_owned()));
                }
            }
        }
    }
    found
}
