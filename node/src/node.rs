//! A running member node: [`Node::start`] checks everything it is given (key permissions, the
//! certificate against the CA and the roster, the roster chain from the trusted genesis), opens
//! the store, and starts the appender, the QUIC endpoint, the sync driver, the dialers, the
//! acceptor and the local API; [`Node::shutdown`] stops them in order and flushes.
//!
//! Connections: each member dials every other member it is not connected to, so a member that
//! comes back reaches everyone at once instead of waiting out their backoff (or their idle
//! timeout, if they have not noticed it went). When both of a pair dial at once, both sides keep
//! the connection the lower id dialed and close the other (the driver), so each pair settles on
//! one connection. A dialer retries with exponential
//! backoff (1 s to 60 s, with jitter) and follows the roster: members added by a newer roster
//! get a dialer, revoked ones are no longer dialled.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tfx_protocol::derive::PseudonymSecret;
use tfx_protocol::ids::sha256;
use tfx_protocol::roster::verify_chain;
use tfx_protocol::sync::{SyncConfig, SyncCore};
use tfx_protocol::MemberId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::appender::{Appender, AppenderConfig};
use crate::config::NodeConfig;
use crate::connection::{self, Input};
use crate::driver::{Driver, DriverParts, SyncStatus, INPUT_QUEUE};
use crate::ledger::Ledger;
use crate::pki::{self, MemberCert};
use crate::sled_store::SledStore;
use crate::transport::{self, Identity, Membership, HANDSHAKE_TIMEOUT};

/// Dial backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Roster files read at start: `v000001.tfxroster` onwards, at most this many.
const ROSTER_VERSIONS_MAX: usize = 100_000;

/// Everything a running node shares with its API and tasks.
#[derive(Debug, Clone)]
pub struct Shared {
    pub member: MemberId,
    pub store: Arc<SledStore>,
    pub appender: Arc<Appender>,
    pub membership: Arc<Membership>,
    pub status: watch::Receiver<SyncStatus>,
    /// Changes whenever records from peers have been applied (see `GET /v1/records/{id}`'s
    /// `wait_ms`).
    pub arrivals: watch::Receiver<u64>,
    pub ledger: Arc<Ledger>,
    pub policy_dir: PathBuf,
    /// The driver's input queue (the API installs policy versions through it).
    pub driver: mpsc::Sender<Input>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The health check's limit on time without any peer connected (`[health] no_peer_ms`).
    pub no_peer_ms: u64,
    /// Where `POST /v1/backup` writes backups: `<data>/backups`.
    pub backup_dir: PathBuf,
    /// The record-signing key file, loaded to sign each backup.
    pub record_signing_key: PathBuf,
    /// Held while a backup is written: one at a time.
    pub backup_running: Arc<tokio::sync::Mutex<()>>,
    /// Where the roster chain lives (audit bundles carry it whole).
    pub roster_dir: PathBuf,
}

/// A started node.
#[derive(Debug)]
pub struct Node {
    pub shared: Shared,
    pub quic_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

/// The file holding roster `version` in a roster directory: `v000001.tfxroster`, … The one
/// naming rule for consortium, member and node directories alike.
pub fn roster_file(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("v{version:06}.tfxroster"))
}

/// The file holding policy `version` in a policy directory: `v000001.tfxpolicy`, …
pub fn policy_file(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("v{version:06}.tfxpolicy"))
}

/// Reads consecutive versions `file(dir, 1)`, `file(dir, 2)`, … until one is missing, each at
/// most `bytes_max` bytes (`what` names them in errors).
fn read_versions(
    dir: &Path,
    file: fn(&Path, u64) -> PathBuf,
    bytes_max: usize,
    what: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut chain = Vec::new();
    for v in 1..=ROSTER_VERSIONS_MAX as u64 {
        let path = file(dir, v);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if len > bytes_max as u64 {
            bail!(
                "{}: {len} bytes, larger than any {what} ({bytes_max} max)",
                path.display()
            );
        }
        chain.push(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(chain)
}

/// Reads the roster chain `roster_dir/v000001.tfxroster …`, each file at most
/// `ROSTER_BYTES_MAX` bytes.
pub fn read_roster_chain(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let chain = read_versions(
        dir,
        roster_file,
        tfx_protocol::limits::ROSTER_BYTES_MAX,
        "roster",
    )?;
    if chain.is_empty() {
        bail!(
            "{}: no roster (v000001.tfxroster missing); has this member joined?",
            dir.display()
        );
    }
    Ok(chain)
}

/// Reads the policy chain `policy_dir/v000001.tfxpolicy …` (empty when no policy is installed
/// yet, or the directory does not exist).
pub fn read_policy_chain(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    read_versions(
        dir,
        policy_file,
        tfx_protocol::limits::POLICY_BYTES_MAX,
        "policy",
    )
}

/// Loads the risk-warning rules; only a member holding the `risk-warning` role may run them
/// (only it may issue risk-warning records).
fn load_warning_rules(
    path: &Path,
    roster: &tfx_protocol::roster::Roster,
    member: &MemberId,
) -> anyhow::Result<tfx_protocol::warnings::Rules> {
    let holds = roster
        .member(member)
        .is_some_and(|m| m.roles.iter().any(|r| r == "risk-warning"));
    if !holds {
        bail!(
            "[risk_warning] rules is set, but {member} does not hold the risk-warning role in roster v{}",
            roster.version
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    tfx_protocol::warnings::Rules::parse(&text).with_context(|| path.display().to_string())
}

/// Reads a `genesis.sha256` file: 64 hex digits.
pub fn read_genesis(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{}: expected 64 hex digits", path.display()))?;
    Ok(bytes)
}

impl Node {
    /// Starts the node described by `config`. Fails, naming the file and the problem, if any key
    /// is readable by others, the certificate does not match the CA or the roster, or the
    /// roster chain does not verify from the genesis.
    pub async fn start(config: &NodeConfig) -> anyhow::Result<Node> {
        let member = config.member.clone();
        let signing_key = crate::keyfile::load_signing_key(&config.record_signing_key)
            .context("loading the record-signing key")?;
        let tls_key = pki::load_tls_key_pkcs8(&config.tls_key).context("loading the TLS key")?;
        let cert_pem = std::fs::read_to_string(&config.tls_cert)
            .with_context(|| format!("reading {}", config.tls_cert.display()))?;
        let cert = MemberCert::parse_pem(&cert_pem)
            .with_context(|| format!("{}", config.tls_cert.display()))?;
        let ca_pem = std::fs::read_to_string(&config.ca_cert)
            .with_context(|| format!("reading {}", config.ca_cert.display()))?;
        let ca_der = MemberCert::ca_der_from_pem(&ca_pem)
            .with_context(|| format!("{}", config.ca_cert.display()))?;
        let now = crate::clock::now();
        cert.verify(&ca_der, now)
            .with_context(|| format!("{}", config.tls_cert.display()))?;
        if cert.member != member {
            bail!(
                "{}: the certificate is for {}, but node.toml says member.id = {member}",
                config.tls_cert.display(),
                cert.member
            );
        }
        let days = cert.days_left(now);
        if days <= i64::from(pki::EXPIRY_WARNING_DAYS) {
            tracing::warn!(
                days,
                "the TLS certificate expires soon; run `tfx member renew`"
            );
        }
        let genesis = read_genesis(&config.genesis)?;
        let chain = read_roster_chain(&config.roster_dir)?;
        let roster = verify_chain(&genesis, &chain).with_context(|| {
            format!(
                "verifying the roster chain in {}",
                config.roster_dir.display()
            )
        })?;
        if sha256(&ca_der) != roster.ca_fingerprint {
            bail!(
                "{}: not the CA roster v{} names",
                config.ca_cert.display(),
                roster.version
            );
        }
        let entry = roster
            .member(&member)
            .with_context(|| format!("{member} is not in roster v{}", roster.version))?;
        if entry.tls_fingerprint != cert.fingerprint {
            bail!(
                "{}: roster v{} lists another certificate for {member}; install the latest bundle with `tfx member join`",
                config.tls_cert.display(),
                roster.version
            );
        }
        if !entry
            .keys
            .iter()
            .any(|k| k.key == *signing_key.verifying_key())
        {
            bail!(
                "{}: roster v{} does not list this record-signing key for {member}",
                config.record_signing_key.display(),
                roster.version
            );
        }
        let pseudonym = pseudonym_secret(config)?;

        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating {}", config.data.display()))?;
        let store = Arc::new(
            tokio::task::block_in_place(|| {
                SledStore::open_with_cache(&config.data, config.store_cache_bytes)
            })
            .with_context(|| format!("opening the store in {}", config.data.display()))?,
        );
        let appender = Arc::new(
            Appender::start(
                store.clone(),
                AppenderConfig {
                    origin: member.clone(),
                    previous_keys: roster
                        .member(&member)
                        .map(|m| m.keys.iter().map(|k| k.key).collect())
                        .unwrap_or_default(),
                    key: signing_key,
                    pseudonym,
                },
            )
            .context("starting the appender")?,
        );
        // A store restored from a backup may lack the newest records of our own log, which
        // peers hold: issuing before they are fetched back would reuse sequence numbers.
        let recovering = tokio::task::block_in_place(|| store.recovering())
            .context("reading the store's recovery mark")?;
        if recovering {
            appender.hold_for_recovery();
            tracing::warn!("restored from a backup: recovering this member's own log from peers before issuing again");
        }
        let durable = appender.durable_head();
        let local = *durable.borrow();
        let sync_config = SyncConfig {
            local: member.clone(),
            anti_entropy_ms: config.anti_entropy_ms,
            fetch_timeout_ms: config.fetch_timeout_ms,
            pipeline: config.pipeline,
            recovering,
            recovery_peers: config.recovery_peers,
            // The key this member signs records with also signs its cosignatures (SPEC §17);
            // ring's key pair is not Clone, so the file is read a second time.
            witness_key: Some(Arc::new(
                crate::keyfile::load_signing_key(&config.record_signing_key)
                    .context("loading the record-signing key for cosigning")?,
            )),
            // One cosigning round per anti-entropy interval: a checkpoint is final within about
            // one interval of reaching the witnesses.
            witness_ms: config.anti_entropy_ms,
        };
        let policies = read_policy_chain(&config.policy_dir)?;
        let core = tokio::task::block_in_place(|| {
            SyncCore::new(sync_config, &*store, genesis, chain, policies, local)
        })
        .with_context(|| {
            format!(
                "loading sync state (roster chain, policy chain in {})",
                config.policy_dir.display()
            )
        })?;

        let membership = Membership::new(ca_der, roster.clone());
        let identity = Identity {
            cert_der: cert.der.clone(),
            key_pkcs8: tls_key,
        };
        let endpoint = transport::endpoint(config.listen, &identity, membership.clone())?;
        let quic_addr = endpoint.local_addr()?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(SyncStatus {
            member: member.to_string(),
            roster_version: roster.version,
            ..SyncStatus::default()
        });
        let (roster_tx, roster_rx) = watch::channel(roster.version);
        let (arrivals_tx, arrivals) = watch::channel(0u64);
        let connected = Arc::new(Mutex::new(BTreeSet::new()));
        let (inputs, inputs_rx) = mpsc::channel::<Input>(INPUT_QUEUE);
        let ledger =
            Arc::new(Ledger::open(&store).context("opening the disclosure ledger in the store")?);
        let metrics = Arc::new(crate::metrics::Metrics::new(now.0));
        let driver = Driver::new(DriverParts {
            core,
            store: store.clone(),
            membership: membership.clone(),
            roster_dir: config.roster_dir.clone(),
            policy_dir: config.policy_dir.clone(),
            ledger: ledger.clone(),
            status: status_tx,
            arrivals: arrivals_tx,
            roster_version: roster_tx,
            connected: connected.clone(),
            retention_sweep: Duration::from_millis(config.retention_sweep_ms),
            metrics: metrics.clone(),
            appender: appender.clone(),
        });
        let driver = tokio::spawn(driver.run(inputs_rx, durable, shutdown_rx.clone()));

        let receiving = connection::Receiving {
            driver: inputs.clone(),
            membership: membership.clone(),
            store: store.clone(),
        };
        let shared = Shared {
            member: member.clone(),
            store,
            appender,
            membership: membership.clone(),
            status,
            arrivals,
            ledger,
            policy_dir: config.policy_dir.clone(),
            driver: inputs.clone(),
            metrics: metrics.clone(),
            no_peer_ms: config.no_peer_ms,
            backup_dir: config.data.join(crate::backup::BACKUP_DIR),
            record_signing_key: config.record_signing_key.clone(),
            backup_running: Arc::new(tokio::sync::Mutex::new(())),
            roster_dir: config.roster_dir.clone(),
        };
        let (api_addr, api_task) = crate::api::serve(
            config.api_listen,
            &config.api_token,
            config.waiting_reads,
            shared.clone(),
            shutdown_rx.clone(),
        )
        .await?;
        let (metrics_addr, metrics_task) =
            crate::metrics::serve(config.metrics_listen, shared.clone(), shutdown_rx.clone())
                .await?;
        let mut tasks = vec![metrics_task];
        if let Some(path) = &config.warning_rules {
            let rules = load_warning_rules(path, &roster, &member)?;
            tasks.push(tokio::spawn(crate::warner::run(
                shared.store.clone(),
                shared.appender.clone(),
                tfx_protocol::warnings::Engine::new(rules),
                Duration::from_millis(config.warning_interval_ms),
                shutdown_rx.clone(),
            )));
        }
        tasks.extend([
            tokio::spawn(accept_loop(
                endpoint.clone(),
                member.clone(),
                receiving.clone(),
                metrics.clone(),
            )),
            tokio::spawn(dial_manager(
                Dialing {
                    endpoint: endpoint.clone(),
                    receiving,
                    connected,
                    shutdown: shutdown_rx,
                    metrics,
                },
                member.clone(),
                roster_rx,
            )),
            api_task,
        ]);
        tracing::info!(%member, quic = %quic_addr, api = %api_addr, metrics = %metrics_addr, roster = roster.version, "node started");
        Ok(Node {
            shared,
            quic_addr,
            api_addr,
            metrics_addr,
            endpoint,
            shutdown,
            driver,
            tasks,
        })
    }

    /// Stops accepting, closes connections, drains the appender and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.endpoint.close(
            quinn::VarInt::from_u32(connection::CLOSE_SHUTDOWN),
            b"shutting down",
        );
        let _ = self.driver.await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        // Give close frames a moment to leave, bounded.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        let Shared {
            appender, store, ..
        } = self.shared;
        match Arc::try_unwrap(appender) {
            Ok(a) => tokio::task::block_in_place(|| a.shutdown()),
            Err(_) => {
                tracing::warn!("appender still referenced at shutdown; it stops when released")
            }
        }
        if let Err(e) = tokio::task::block_in_place(|| tfx_protocol::store::Store::flush(&*store)) {
            tracing::error!(error = %e, "final flush failed");
        }
        tracing::info!("node stopped");
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    me: MemberId,
    receiving: connection::Receiving,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let receiving = receiving.clone();
        let me = me.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                // A member that dialed us while we dialed it gives its handshake up once ours
                // connects (`dial_loop`): expected at every start, not a failure.
                Ok(Err(quinn::ConnectionError::ConnectionClosed(c)))
                    if c.error_code == quinn::TransportErrorCode::APPLICATION_ERROR =>
                {
                    tracing::debug!(%remote, "a peer gave up its dial: connected the other way");
                    return;
                }
                Ok(Err(e)) => {
                    if let Some(reason) = crate::metrics::handshake_failure_reason(&e) {
                        metrics.handshake_failed(reason);
                    }
                    tracing::warn!(%remote, error = %e, "incoming handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.handshake_failed("timeout");
                    tracing::warn!(%remote, "incoming handshake timed out");
                    return;
                }
            };
            let Some(peer) = transport::peer_member(&conn) else {
                conn.close(
                    quinn::VarInt::from_u32(connection::CLOSE_POLICY),
                    b"no identity",
                );
                return;
            };
            if peer == me {
                conn.close(quinn::VarInt::from_u32(connection::CLOSE_POLICY), b"self");
                return;
            }
            connection::run(conn, peer, false, receiving).await;
        });
    }
}

/// What every dial loop shares.
#[derive(Clone)]
struct Dialing {
    endpoint: quinn::Endpoint,
    receiving: connection::Receiving,
    connected: Arc<Mutex<BTreeSet<MemberId>>>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Keeps one dial loop per other member, following roster changes.
async fn dial_manager(d: Dialing, me: MemberId, mut roster: watch::Receiver<u64>) {
    let mut dialing: BTreeSet<MemberId> = BTreeSet::new();
    let mut loops = tokio::task::JoinSet::new();
    loop {
        for m in &d.receiving.membership.roster().members {
            if m.id != me && !dialing.contains(&m.id) {
                dialing.insert(m.id.clone());
                loops.spawn(dial_loop(d.clone(), m.id.clone()));
            }
        }
        if roster.changed().await.is_err() {
            break;
        }
    }
    loops.abort_all();
}

async fn dial_loop(d: Dialing, peer: MemberId) {
    let Dialing {
        endpoint,
        receiving,
        connected,
        shutdown,
        metrics,
    } = d;
    let membership = receiving.membership.clone();
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let roster = membership.roster();
        let Some(entry) = roster.member(&peer) else {
            return;
        };
        if !roster.is_active(&peer, crate::clock::now()) {
            tracing::info!(%peer, "no longer dialling: revoked in the roster");
            return;
        }
        if is_connected(&connected, &peer) {
            tokio::time::sleep(BACKOFF_MIN).await;
            continue;
        }
        // A handshake with a peer that is down keeps retrying until it times out, and would
        // complete if the peer came up meanwhile — after the peer has dialed us, replacing
        // that connection mid-catch-up. Give it up once we are connected.
        let dialed = tokio::select! {
            r = dial(&endpoint, &peer, &entry.endpoint) => r,
            () = connected_meanwhile(&connected, &peer) => continue,
        };
        match dialed {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!(%peer, failures, "connected after retries");
                }
                backoff = BACKOFF_MIN;
                failures = 0;
                connection::run(conn, peer.clone(), true, receiving.clone()).await;
            }
            Err(e) => {
                failures += 1;
                // A peer that is simply down shows as "unreachable", not as a TLS problem.
                let reason = match e.downcast_ref::<quinn::ConnectionError>() {
                    Some(quinn::ConnectionError::TimedOut) => Some("unreachable"),
                    Some(c) => crate::metrics::handshake_failure_reason(c),
                    None if e.to_string().contains("timed out") => Some("unreachable"),
                    None => Some("dial-error"),
                };
                if let Some(reason) = reason {
                    metrics.handshake_failed(reason);
                }
                // First failure and then every tenth: a member offline for days must not flood the log.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(%peer, endpoint = %entry.endpoint, failures, error = %e, "dial failed; retrying with backoff");
                }
                let jitter = Duration::from_millis(u64::from(crate::clock::now().0 as u32 % 500));
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The consortium pseudonym secret, if this member holds it (issuers do; DESIGN §4). Keys are
/// derived from it per epoch as records are sealed.
pub fn pseudonym_secret(config: &NodeConfig) -> anyhow::Result<Option<PseudonymSecret>> {
    let Some(path) = &config.pseudonym_secret else {
        return Ok(None);
    };
    let secret = crate::keyfile::load_secret(path).context("loading the pseudonym secret")?;
    let secret = PseudonymSecret::new(&secret)
        .with_context(|| format!("the pseudonym secret in {}", path.display()))?;
    Ok(Some(secret))
}

/// Connects to `peer` at `endpoint` (host:port) and completes the mutual-TLS handshake.
/// Whether the driver holds a connection to `peer`.
fn is_connected(connected: &Mutex<BTreeSet<MemberId>>, peer: &MemberId) -> bool {
    connected.lock().map(|s| s.contains(peer)).unwrap_or(false)
}

/// Returns once `peer` is connected (checked every 100 ms).
async fn connected_meanwhile(connected: &Mutex<BTreeSet<MemberId>>, peer: &MemberId) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if is_connected(connected, peer) {
            return;
        }
    }
}

pub async fn dial(
    endpoint: &quinn::Endpoint,
    peer: &MemberId,
    address: &str,
) -> anyhow::Result<quinn::Connection> {
    let addr = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))?;
    let connecting = endpoint
        .connect(addr, peer.as_str())
        .with_context(|| format!("connecting to {addr}"))?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("handshake with {addr} timed out"))??;
    Ok(conn)
}
