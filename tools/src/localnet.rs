//! A four-member consortium of real `tfx-node` processes on loopback, built with the onboarding
//! commands exactly as operators run them (consortium init; member init, approve and join; roster
//! install on a governor's node). `tfx demo` shows one; `tfx bench replicate` measures one. Every
//! process it started is killed when it is dropped, so an error or Ctrl-C leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::client::{ok, NodeClient};

/// (member id, role, display name): the science department, the central bank's Chengdu branch,
/// a bank, and the risk-warning system.
pub const MEMBERS: [(&str, &str, &str); 4] = [
    ("science-dept", "science-dept", "四川省科学技术厅"),
    ("pbc-chengdu", "central-bank", "中国人民银行成都分行"),
    ("bank-a", "bank", "天府银行科技支行"),
    ("risk-warning", "risk-warning", "科技金融风险预警系统"),
];

/// The risk-warning member's rules (DESIGN §9).
const WARNING_RULES: &str = include_str!("../../deploy/warnings.example.toml");

/// How long to wait for a node to start or stop.
const NODE_WAIT: Duration = Duration::from_secs(60);

pub struct LocalNet {
    root: PathBuf,
    node_bin: PathBuf,
    nodes: Vec<(String, Child)>,
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        for (_, c) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs this `tfx` binary with `args`, failing with its output if it fails.
pub fn run_tfx(args: &[&str]) -> anyhow::Result<String> {
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

/// `tfx-node`: `$TFX_NODE`, or the binary beside this one.
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

/// Polls `f` every `every` until it says true, failing after `within`.
pub fn wait_until(
    what: &str,
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// `GET /v1/status`.
pub fn status(c: &NodeClient) -> anyhow::Result<Value> {
    let (code, reply) = c.get("/v1/status")?;
    ok(code, reply)
}

impl LocalNet {
    /// Builds the consortium in `root` (which must be empty or absent): members listen on
    /// 127.0.0.1 at `base_port`.. in [`MEMBERS`] order; `sync_toml` is appended to every
    /// node.toml (e.g. a shorter anti-entropy interval). `warnings`: the risk-warning member
    /// runs the example rules. `joined` is told of each member.
    pub fn build(
        root: &Path,
        base_port: u16,
        sync_toml: &str,
        warnings: bool,
        joined: &mut dyn FnMut(&str, &str, &str),
    ) -> anyhow::Result<LocalNet> {
        let node_bin = tfx_node_binary()?;
        let p = |rel: &str| root.join(rel).display().to_string();
        run_tfx(&[
            "consortium",
            "init",
            "--dir",
            &p("consortium"),
            "--name",
            "Sichuan sci-tech finance (local)",
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
        // The starting policy, signed by the two governors whose keys this directory holds.
        run_tfx(&[
            "policy",
            "sign",
            "--consortium",
            &p("consortium"),
            &p("consortium/policy.toml"),
        ])?;
        let policy = root.join("consortium/policy/v000001.tfxpolicy");
        for (i, (id, role, name)) in MEMBERS.iter().enumerate() {
            let endpoint = format!("127.0.0.1:{}", base_port + i as u16);
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
            let config = root.join(id).join("node.toml");
            // `member join` listens on every interface, as a server would; a local consortium
            // stays on loopback.
            let mut text = std::fs::read_to_string(&config)?
                .replace("listen = \"0.0.0.0:", "listen = \"127.0.0.1:");
            if warnings && *role == "risk-warning" {
                std::fs::write(root.join(id).join("warnings.toml"), WARNING_RULES)?;
                text.push_str("\n[risk_warning]\nrules = \"warnings.toml\"\n");
            }
            text.push_str(sync_toml);
            std::fs::write(&config, text)?;
            // Every node starts from the consortium's policy (a node without one would hold
            // envelopes only until it adopted one from a peer).
            let policy_dir = root.join(id).join("policy");
            std::fs::create_dir_all(&policy_dir)?;
            std::fs::copy(&policy, policy_dir.join("v000001.tfxpolicy"))
                .context("installing the policy")?;
            joined(id, role, &endpoint);
        }
        // Earlier members joined under older roster versions; publishing the latest on one
        // governor's node is enough, the others adopt it through sync.
        let mut versions: Vec<String> = std::fs::read_dir(root.join("consortium/roster"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tfxroster"))
            .map(|p| p.display().to_string())
            .collect();
        versions.sort();
        let sd = p("science-dept");
        let mut args = vec!["roster", "install", "--dir", &sd];
        args.extend(versions.iter().map(String::as_str));
        run_tfx(&args)?;
        Ok(LocalNet {
            root: root.to_path_buf(),
            node_bin,
            nodes: Vec::new(),
        })
    }

    /// A member's directory (node.toml, keys, data, node.log).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Starts `id`'s node (appending to its node.log) and waits until its API answers.
    pub fn start(&mut self, id: &str) -> anyhow::Result<NodeClient> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir(id).join("node.log"))?;
        let child = Command::new(&self.node_bin)
            .arg("--config")
            .arg(self.dir(id).join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.node_bin.display()))?;
        self.nodes.push((id.to_string(), child));
        let deadline = Instant::now() + NODE_WAIT;
        loop {
            if let Some((_, child)) = self.nodes.iter_mut().find(|(m, _)| m == id) {
                if let Some(status) = child.try_wait()? {
                    let log =
                        std::fs::read_to_string(self.dir(id).join("node.log")).unwrap_or_default();
                    bail!("{id}'s node exited ({status}):\n{log}");
                }
            }
            if let Ok(c) = NodeClient::for_node(&self.dir(id)) {
                if status(&c).is_ok() {
                    return Ok(c);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{id}'s node did not start; see {}",
                    self.dir(id).join("node.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of `id`'s running node.
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.nodes
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, c)| c.id())
    }

    /// Stops every running node with SIGTERM and waits for each to exit.
    pub fn stop_all(&mut self) -> anyhow::Result<Vec<(String, ExitStatus)>> {
        for (id, child) in &self.nodes {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()?;
            if !sent.success() {
                bail!("could not signal {id}");
            }
        }
        let mut stopped = Vec::new();
        for (id, mut child) in std::mem::take(&mut self.nodes) {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = child.try_wait()? {
                    stopped.push((id, status));
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("{id} did not stop within 15 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(stopped)
    }
}
