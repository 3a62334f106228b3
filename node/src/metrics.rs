//! Observability for operators (DESIGN §10): Prometheus metrics and the health check, served on
//! their own loopback listener (`[metrics] listen`) so a scraper needs no API token. Nothing
//! here carries a field value: labels are member ids and fixed reason words, values are counts,
//! sizes and durations.
//!
//! Most figures are read when scraped from what the node already keeps (the sync status, the
//! appender's commit stats, the membership's refusal counts); this module adds the few counters
//! nothing else holds — handshake failures outside the certificate check, flush-latency
//! histograms and the last time any peer was connected — and renders the text format by hand
//! (version 0.0.4), which is small enough not to warrant a client library.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Shared;

/// Upper bounds (seconds) of the flush-latency histogram buckets: an fsync on a quiet SSD takes
/// well under a millisecond, on a busy disk or network volume tens to hundreds.
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket latency histogram, lock-free to observe.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations ≤ each bound of [`FLUSH_BUCKETS`] (not cumulative; summed when rendered).
    buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = FLUSH_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        // `observe` bumps a bucket before the count: read the count first and cap the buckets
        // at it, so a scrape racing an observation stays cumulative up to +Inf.
        let count = self.count();
        let mut cumulative = 0;
        for (bound, bucket) in FLUSH_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let shown = cumulative.min(count);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {shown}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The counters the node keeps only for metrics and health.
#[derive(Debug)]
pub struct Metrics {
    /// Handshakes that failed other than by this node refusing the peer's certificate (those
    /// are counted by [`crate::transport::Membership`] with their reason).
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Flushes of records received from peers (the appender times its own).
    pub sync_flush: Histogram,
    /// When a peer was last seen connected (ms since the epoch); the start time until then.
    last_peer_ms: AtomicU64,
    /// The last store probe's time and outcome: health requests within [`PROBE_CACHE`] reuse
    /// it, so an unauthenticated caller cannot make the node fsync at will.
    probe: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// A probe's blocking write is still running (a stuck disk): never start a second.
    probing: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a store probe's outcome is reused.
const PROBE_CACHE: Duration = Duration::from_secs(5);

impl Metrics {
    pub fn new(now_ms: u64) -> Self {
        Metrics {
            handshake_failures: Mutex::new(BTreeMap::new()),
            sync_flush: Histogram::default(),
            last_peer_ms: AtomicU64::new(now_ms),
            probe: tokio::sync::Mutex::new(None),
            probing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    pub fn handshake_failed(&self, reason: &'static str) {
        if let Ok(mut m) = self.handshake_failures.lock() {
            *m.entry(reason).or_insert(0) += 1;
        }
    }

    /// Called whenever at least one peer is connected.
    pub fn peer_seen(&self, now_ms: u64) {
        self.last_peer_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn last_peer_ms(&self) -> u64 {
        self.last_peer_ms.load(Ordering::Relaxed)
    }
}

/// Why an incoming or outgoing handshake failed, as a metric label. Refusals of the peer's
/// certificate by this node are counted by the verifier itself, with a finer reason, so they
/// return `None` here.
pub fn handshake_failure_reason(e: &quinn::ConnectionError) -> Option<&'static str> {
    use quinn::ConnectionError as E;
    match e {
        E::TransportError(t) => {
            let reason = t.reason.to_ascii_lowercase();
            if reason.contains("invalid peer certificate") {
                None
            } else if reason.contains("no certificate") || reason.contains("certificaterequired") {
                Some("no-certificate")
            } else if reason.contains("application protocol") || reason.contains("alpn") {
                Some("alpn")
            } else {
                Some("tls")
            }
        }
        E::ConnectionClosed(_) | E::ApplicationClosed(_) => Some("refused-by-peer"),
        E::TimedOut => Some("timeout"),
        E::Reset | E::LocallyClosed | E::CidsExhausted => Some("transport"),
        E::VersionMismatch => Some("version-mismatch"),
    }
}

/// Escapes a label value (member ids are `[a-z0-9.-]`, but render defensively).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric family in the Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let status = shared.status.borrow().clone();
    let stats = shared.appender.stats();
    let me = label(shared.member.as_str());
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "tfx_records_appended_total",
        "counter",
        "Records this node issued and made durable since start.",
    );
    let _ = writeln!(
        out,
        "tfx_records_appended_total{{origin=\"{me}\"}} {}",
        stats.records
    );

    family(
        &mut out,
        "tfx_records_received_total",
        "counter",
        "Records received from peers, verified and stored since start, by origin.",
    );
    for (origin, n) in &status.received_records {
        let _ = writeln!(
            out,
            "tfx_records_received_total{{origin=\"{}\"}} {n}",
            label(origin)
        );
    }

    family(
        &mut out,
        "tfx_log_size_records",
        "gauge",
        "Records held of each origin's log.",
    );
    for h in &status.heads {
        let _ = writeln!(
            out,
            "tfx_log_size_records{{origin=\"{}\"}} {}",
            label(&h.origin),
            h.size
        );
    }

    // Per peer and origin, each way: what the peer lacks of ours, and what we lack of its.
    type Side = fn(&crate::driver::PeerStatus) -> &BTreeMap<String, u64>;
    let sides: [(&str, &str, Side); 2] = [
        (
            "tfx_replication_lag_records",
            "Records this node holds that the peer lacks, by peer and origin (from the peer's last heads).",
            |p| &p.behind,
        ),
        (
            "tfx_replication_missing_records",
            "Records the peer holds that this node lacks, by peer and origin.",
            |p| &p.ahead,
        ),
    ];
    for (name, help, side) in sides {
        family(&mut out, name, "gauge", help);
        for p in &status.peers {
            for (origin, n) in side(p) {
                let _ = writeln!(
                    out,
                    "{name}{{peer=\"{}\",origin=\"{}\"}} {n}",
                    label(&p.member),
                    label(origin)
                );
            }
        }
    }
    family(
        &mut out,
        "tfx_peer_connected",
        "gauge",
        "1 while the peer is connected.",
    );
    for p in &status.peers {
        let _ = writeln!(
            out,
            "tfx_peer_connected{{peer=\"{}\"}} {}",
            label(&p.member),
            u8::from(p.connected)
        );
    }

    family(
        &mut out,
        "tfx_handshake_failures_total",
        "counter",
        "Failed QUIC/TLS handshakes since start, by reason.",
    );
    let mut failures = shared.membership.refusals();
    if let Ok(m) = shared.metrics.handshake_failures.lock() {
        for (reason, n) in m.iter() {
            *failures.entry(reason).or_insert(0) += n;
        }
    }
    for (reason, n) in &failures {
        let _ = writeln!(
            out,
            "tfx_handshake_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }

    family(
        &mut out,
        "tfx_refused_disclosures_total",
        "counter",
        "Disclosures peers sent beyond this node's view, dropped unstored, since start.",
    );
    let _ = writeln!(
        out,
        "tfx_refused_disclosures_total {}",
        status.refused_disclosures
    );
    family(
        &mut out,
        "tfx_purged_disclosures_total",
        "counter",
        "Disclosures purged since start (narrower policy or expired retention).",
    );
    let _ = writeln!(
        out,
        "tfx_purged_disclosures_total {}",
        status.purged_disclosures
    );
    family(
        &mut out,
        "tfx_misbehaving_peers_total",
        "counter",
        "Peers disconnected for breaking the protocol since start.",
    );
    let _ = writeln!(out, "tfx_misbehaving_peers_total {}", status.misbehaviour);

    family(
        &mut out,
        "tfx_equivocation_evidence_total",
        "counter",
        "Forks detected since start: an origin signed two different histories.",
    );
    let _ = writeln!(out, "tfx_equivocation_evidence_total {}", status.forks);
    family(
        &mut out,
        "tfx_frozen_origins",
        "gauge",
        "Origins whose logs forked; sync with them is stopped.",
    );
    let _ = writeln!(out, "tfx_frozen_origins {}", status.frozen.len());

    family(
        &mut out,
        "tfx_policy_version",
        "gauge",
        "The data-minimization policy version in force (0: none).",
    );
    let _ = writeln!(out, "tfx_policy_version {}", status.policy_version);
    family(
        &mut out,
        "tfx_roster_version",
        "gauge",
        "The roster version in force.",
    );
    let _ = writeln!(out, "tfx_roster_version {}", status.roster_version);

    family(
        &mut out,
        "tfx_store_size_bytes",
        "gauge",
        "Bytes the store occupies on disk.",
    );
    match shared.store.size_on_disk() {
        Ok(n) => {
            let _ = writeln!(out, "tfx_store_size_bytes {n}");
        }
        Err(e) => tracing::warn!(error = %e, "metrics: store size unavailable"),
    }

    family(
        &mut out,
        "tfx_flush_seconds",
        "histogram",
        "Time to make store writes durable: each group commit of local appends (path=append: \
         value-log write and fsync) and each flush of records from peers (path=sync).",
    );
    shared
        .appender
        .commit_latency()
        .render(&mut out, "tfx_flush_seconds", "path=\"append\"");
    shared
        .metrics
        .sync_flush
        .render(&mut out, "tfx_flush_seconds", "path=\"sync\"");
    out
}

/// The outcome of a health check.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// "ok" or "unhealthy".
    pub status: &'static str,
    /// Why it is unhealthy; empty when ok.
    pub reasons: Vec<String>,
    pub connected_peers: usize,
    /// Seconds since a peer was last connected (0 while one is).
    pub no_peer_seconds: u64,
}

/// How long a store write probe may take before the store counts as not writable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the node: the store takes a durable write, neither the appender nor sync stopped on
/// a store failure, and some peer has been connected within `no_peer_ms` (unless the roster
/// has no other active member to reach).
pub async fn health(shared: &Shared, no_peer_ms: u64) -> Health {
    let mut reasons = Vec::new();
    if let Err(e) = probe_store(shared).await {
        reasons.push(e);
    }
    if let Some(e) = shared.appender.failure() {
        reasons.push(format!("appender stopped: {e}"));
    }
    let status = shared.status.borrow().clone();
    if let Some(e) = &status.store_failed {
        reasons.push(format!("sync stopped after a store failure: {e}"));
    }
    let connected_peers = status.peers.iter().filter(|p| p.connected).count();
    let now = crate::clock::now().0;
    if connected_peers > 0 {
        shared.metrics.peer_seen(now);
    }
    let no_peer_ms_now = now.saturating_sub(shared.metrics.last_peer_ms());
    let roster = shared.membership.roster();
    let others = roster
        .members
        .iter()
        .filter(|m| m.id != shared.member && roster.is_active(&m.id, crate::clock::now()))
        .count();
    if connected_peers == 0 && others > 0 && no_peer_ms_now > no_peer_ms {
        reasons.push(format!(
            "no peer reachable for {} s (limit {} s)",
            no_peer_ms_now / 1000,
            no_peer_ms / 1000
        ));
    }
    Health {
        status: if reasons.is_empty() {
            "ok"
        } else {
            "unhealthy"
        },
        reasons,
        connected_peers,
        no_peer_seconds: if connected_peers > 0 {
            0
        } else {
            no_peer_ms_now / 1000
        },
    }
}

/// Whether the store takes a durable write: one probe at a time, its outcome reused for
/// [`PROBE_CACHE`].
async fn probe_store(shared: &Shared) -> Result<(), String> {
    let m = &shared.metrics;
    let mut last = m.probe.lock().await;
    if let Some((at, outcome)) = last.as_ref() {
        if at.elapsed() < PROBE_CACHE {
            return outcome.clone();
        }
    }
    let outcome = if m.probing.swap(true, Ordering::SeqCst) {
        Err("store not writable: an earlier write probe has not finished".to_owned())
    } else {
        let store = shared.store.clone();
        let probing = m.probing.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let r = store.probe_write();
            probing.store(false, Ordering::SeqCst);
            r
        });
        match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("store not writable: {e}")),
            Ok(Err(e)) => Err(format!("store probe failed: {e}")),
            Err(_) => Err(format!(
                "store not writable: a write and flush took over {} s",
                STORE_PROBE_TIMEOUT.as_secs()
            )),
        }
    };
    *last = Some((std::time::Instant::now(), outcome.clone()));
    outcome
}

/// Answers a health request: 200 when healthy, 503 otherwise, the [`Health`] as JSON.
pub async fn health_response(shared: &Shared) -> Response {
    let h = health(shared, shared.no_peer_ms).await;
    let code = if h.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

/// Binds `GET /metrics` and `GET /health` on `addr` (loopback only) until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_route))
        .with_state(shared);
    crate::api::serve_loopback(addr, app, shutdown, "the metrics endpoint").await
}

async fn metrics(State(shared): State<Shared>) -> Response {
    // Rendering reads sled's size on disk, which walks its files: off the async threads.
    match tokio::task::spawn_blocking(move || render(&shared)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn health_route(State(shared): State<Shared>) -> Response {
    health_response(&shared).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "path=\"a\"");
        assert!(
            out.contains("x_bucket{path=\"a\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{path=\"a\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{path=\"a\",le=\"2.5\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{path=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{path=\"a\"} 3\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
