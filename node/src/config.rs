//! `node.toml`: what a member's node needs to run, every field documented with its default and
//! bound in `deploy/node.example.toml`. Paths are relative to the file's directory, so a member
//! directory can move as a whole. Unknown keys are errors (a typo must not silently fall back to
//! a default), and every bound is checked here, naming the field, before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tfx_protocol::MemberId;

/// Largest config file read.
const CONFIG_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    member: MemberSection,
    paths: PathsSection,
    network: NetworkSection,
    #[serde(default)]
    api: ApiSection,
    #[serde(default)]
    sync: SyncSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    health: HealthSection,
    #[serde(default)]
    recovery: RecoverySection,
    #[serde(default)]
    risk_warning: RiskWarningSection,
    #[serde(default)]
    store: StoreSection,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    cache_mib: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecoverySection {
    peers: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthSection {
    no_peer_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RiskWarningSection {
    rules: Option<PathBuf>,
    interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSection {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsSection {
    data: PathBuf,
    record_signing_key: PathBuf,
    tls_key: PathBuf,
    tls_cert: PathBuf,
    ca_cert: PathBuf,
    roster: PathBuf,
    genesis: PathBuf,
    /// Directory of policy versions; default `policy` beside this file.
    #[serde(default)]
    policy: Option<PathBuf>,
    /// The consortium pseudonym secret (issuers only; the risk-warning member has none).
    #[serde(default)]
    pseudonym_secret: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSection {
    listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    listen: Option<SocketAddr>,
    token_file: Option<PathBuf>,
    waiting_reads: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncSection {
    anti_entropy_ms: Option<u64>,
    fetch_timeout_ms: Option<u64>,
    pipeline: Option<usize>,
    retention_sweep_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A validated node configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub member: MemberId,
    pub data: PathBuf,
    pub record_signing_key: PathBuf,
    pub tls_key: PathBuf,
    pub tls_cert: PathBuf,
    pub ca_cert: PathBuf,
    pub roster_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub genesis: PathBuf,
    pub pseudonym_secret: Option<PathBuf>,
    pub listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub api_token: PathBuf,
    /// Reads waiting for a record (`wait_ms`) at one time at most (`[api] waiting_reads`).
    pub waiting_reads: usize,
    /// Prometheus metrics and the health check (`[metrics] listen`, loopback).
    pub metrics_listen: SocketAddr,
    /// Unhealthy once no peer has been connected for this long (`[health] no_peer_ms`).
    pub no_peer_ms: u64,
    /// After a restore: how many other members must report before the node issues again
    /// (`[recovery] peers`; `None` = all).
    pub recovery_peers: Option<usize>,
    pub anti_entropy_ms: u64,
    pub fetch_timeout_ms: u64,
    pub pipeline: usize,
    pub retention_sweep_ms: u64,
    pub log_format: LogFormat,
    /// Risk-warning rules file (`[risk_warning] rules`); the rule runner starts only with one.
    pub warning_rules: Option<PathBuf>,
    pub warning_interval_ms: u64,
    /// sled's page cache in bytes (`[store] cache_mib`).
    pub store_cache_bytes: u64,
}

/// Bounds: (min, max) for each tunable, with the reason in `deploy/node.example.toml`.
pub const ANTI_ENTROPY_MS: (u64, u64) = (50, 3_600_000);
pub const FETCH_TIMEOUT_MS: (u64, u64) = (100, 600_000);
pub const PIPELINE: (usize, usize) = (1, 64);
pub const RETENTION_SWEEP_MS: (u64, u64) = (1_000, 86_400_000);
pub const WARNING_INTERVAL_MS: (u64, u64) = (50, 3_600_000);
pub const NO_PEER_MS: (u64, u64) = (1_000, 604_800_000);
pub const WAITING_READS: (u64, u64) = (1, 65_536);
/// `[store] cache_mib`: below 4 MiB sled would re-read the heads every append needs; 4 GiB is
/// far past any use (the cache holds index pages only).
pub const STORE_CACHE_MIB: (u64, u64) = (4, 4_096);

/// The API port when `[api] listen` is absent: the QUIC port + 1000 on loopback.
pub const API_PORT_OFFSET: u16 = 1000;
/// The metrics port when `[metrics] listen` is absent: the QUIC port + 2000 on loopback.
pub const METRICS_PORT_OFFSET: u16 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{path}: {field}: {rule}")]
    Field {
        path: PathBuf,
        field: &'static str,
        rule: String,
    },
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses `text` (from `path`, for messages), resolving relative paths against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<NodeConfig, ConfigError> {
        let f: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let field = |field: &'static str, rule: String| ConfigError::Field {
            path: path.to_path_buf(),
            field,
            rule,
        };
        let member = MemberId::new(&f.member.id).map_err(|e| field("member.id", e.to_string()))?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let loopback_port = |name: &'static str, set: Option<SocketAddr>, offset: u16| {
            let addr = match set {
                Some(a) => a,
                None => {
                    let port = f.network.listen.port().checked_add(offset).ok_or_else(|| {
                        field(
                            name,
                            format!(
                                "no default: network.listen's port + {offset} overflows; set it"
                            ),
                        )
                    })?;
                    SocketAddr::from(([127, 0, 0, 1], port))
                }
            };
            if !addr.ip().is_loopback() {
                return Err(field(
                    name,
                    format!("{addr} is not a loopback address: it must never leave this host"),
                ));
            }
            Ok(addr)
        };
        let metrics_listen =
            loopback_port("metrics.listen", f.metrics.listen, METRICS_PORT_OFFSET)?;
        let api_listen = loopback_port("api.listen", f.api.listen, API_PORT_OFFSET)?;
        let bounded = |name: &'static str, v: Option<u64>, default: u64, (lo, hi): (u64, u64)| {
            let v = v.unwrap_or(default);
            if v < lo || v > hi {
                return Err(field(name, format!("{v} is outside {lo}..={hi}")));
            }
            Ok(v)
        };
        let anti_entropy_ms = bounded(
            "sync.anti_entropy_ms",
            f.sync.anti_entropy_ms,
            5_000,
            ANTI_ENTROPY_MS,
        )?;
        let fetch_timeout_ms = bounded(
            "sync.fetch_timeout_ms",
            f.sync.fetch_timeout_ms,
            30_000,
            FETCH_TIMEOUT_MS,
        )?;
        let pipeline = bounded(
            "sync.pipeline",
            f.sync.pipeline.map(|p| p as u64),
            8,
            (PIPELINE.0 as u64, PIPELINE.1 as u64),
        )? as usize;
        let retention_sweep_ms = bounded(
            "sync.retention_sweep_ms",
            f.sync.retention_sweep_ms,
            3_600_000,
            RETENTION_SWEEP_MS,
        )?;
        let warning_interval_ms = bounded(
            "risk_warning.interval_ms",
            f.risk_warning.interval_ms,
            1_000,
            WARNING_INTERVAL_MS,
        )?;
        let no_peer_ms = bounded(
            "health.no_peer_ms",
            f.health.no_peer_ms,
            300_000,
            NO_PEER_MS,
        )?;
        let waiting_reads =
            bounded("api.waiting_reads", f.api.waiting_reads, 256, WAITING_READS)? as usize;
        let store_cache_mib = bounded(
            "store.cache_mib",
            f.store.cache_mib,
            crate::limits::STORE_CACHE_BYTES >> 20,
            STORE_CACHE_MIB,
        )?;
        let recovery_peers = match f.recovery.peers {
            Some(0) => return Err(field(
                "recovery.peers",
                "0 would let a restored node issue before any peer reported its log; at least 1"
                    .into(),
            )),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let log_format = match f.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(field(
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        };
        let data = abs(&f.paths.data);
        Ok(NodeConfig {
            member,
            api_token: f
                .api
                .token_file
                .as_deref()
                .map(abs)
                .unwrap_or_else(|| data.join(API_TOKEN_FILE)),
            data,
            record_signing_key: abs(&f.paths.record_signing_key),
            tls_key: abs(&f.paths.tls_key),
            tls_cert: abs(&f.paths.tls_cert),
            ca_cert: abs(&f.paths.ca_cert),
            roster_dir: abs(&f.paths.roster),
            policy_dir: abs(f.paths.policy.as_deref().unwrap_or(Path::new("policy"))),
            genesis: abs(&f.paths.genesis),
            pseudonym_secret: f.paths.pseudonym_secret.as_deref().map(abs),
            listen: f.network.listen,
            api_listen,
            waiting_reads,
            metrics_listen,
            no_peer_ms,
            recovery_peers,
            anti_entropy_ms,
            fetch_timeout_ms,
            pipeline,
            retention_sweep_ms,
            log_format,
            warning_rules: f.risk_warning.rules.as_deref().map(abs),
            warning_interval_ms,
            store_cache_bytes: store_cache_mib << 20,
        })
    }
}

/// The API token's file name inside the data directory (when `[api] token_file` is absent).
pub const API_TOKEN_FILE: &str = "api.token";

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[member]
id = "bank-a"
[paths]
data = "data"
record_signing_key = "keys/record-signing.key"
tls_key = "keys/tls.key"
tls_cert = "tls.crt"
ca_cert = "ca.crt"
roster = "roster"
genesis = "genesis.sha256"
[network]
listen = "127.0.0.1:7403"
"#;

    fn parse(extra: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(
            &format!("{MINIMAL}{extra}"),
            Path::new("node.toml"),
            Path::new("/srv/tfx"),
        )
    }

    #[test]
    fn defaults_are_applied_and_paths_resolved() {
        let c = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.member.as_str(), "bank-a");
        assert_eq!(c.data, Path::new("/srv/tfx/data"));
        assert_eq!(c.api_token, Path::new("/srv/tfx/data/api.token"));
        assert_eq!(
            c.api_listen,
            "127.0.0.1:8403".parse().unwrap_or(c.api_listen)
        );
        assert_eq!(c.api_listen.port(), 8403);
        assert_eq!(c.anti_entropy_ms, 5_000);
        assert_eq!(c.waiting_reads, 256);
        assert_eq!(c.policy_dir, Path::new("/srv/tfx/policy"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.store_cache_bytes, crate::limits::STORE_CACHE_BYTES);
    }

    #[test]
    fn the_documented_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/node.example.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let c = NodeConfig::parse(&text, &path, Path::new("/srv/tfx"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.member.as_str(), "bank-a");
        // Uncommenting every optional setting must parse too, with the documented defaults.
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.starts_with("Run") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let d =
            NodeConfig::parse(&all, &path, Path::new("/srv/tfx")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.anti_entropy_ms, 5_000);
        assert_eq!(d.fetch_timeout_ms, 30_000);
        assert_eq!(d.pipeline, 8);
        assert_eq!(d.waiting_reads, 256);
        assert_eq!(d.retention_sweep_ms, 3_600_000);
        assert!(d.warning_rules.is_some());
        assert_eq!(d.warning_interval_ms, 1_000);
        assert_eq!(d.store_cache_bytes, crate::limits::STORE_CACHE_BYTES);
        assert_eq!(d.policy_dir, c.policy_dir);
        assert_eq!(d.api_listen, c.api_listen);
        assert_eq!(d.api_token, c.api_token);
        assert!(d.pseudonym_secret.is_some());
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("[api]\nlisten = \"0.0.0.0:9000\"\n", "api.listen"),
            ("[sync]\nanti_entropy_ms = 10\n", "sync.anti_entropy_ms"),
            ("[sync]\npipeline = 65\n", "sync.pipeline"),
            ("[api]\nwaiting_reads = 0\n", "api.waiting_reads"),
            ("[store]\ncache_mib = 2\n", "store.cache_mib"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[sync]\nanti_entropy = 100\n", "unknown field"),
        ];
        for (extra, expect) in cases {
            let err = parse(extra).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(expect), "{extra}: {err}");
        }
        let err = NodeConfig::parse(
            &MINIMAL.replace("bank-a", "Bank A"),
            Path::new("node.toml"),
            Path::new("."),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("member.id"), "{err}");
    }
}
