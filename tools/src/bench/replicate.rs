//! `tfx bench replicate` (DESIGN §12): replication between real `tfx-node` processes on loopback,
//! in a consortium built with the onboarding commands ([`LocalNet`]).
//!
//! 1. The origin (bank-a) writes N synthetic credit records through its own appender while no
//!    node runs — the same signed records its node would make.
//! 2. Baselines, in this run: the same bytes (envelope + disclosures per record) batch-inserted
//!    into a fresh sled with a flush per batch; and verify-only — the signature and disclosure
//!    checks a receiver runs on each record, on every core and nothing else (the ceiling a
//!    catch-up meets before it stores anything).
//! 3. Catch-up: fresh members start one at a time — from one peer (the origin), then two, then
//!    three — each timed from process start until its status shows all N records verified and
//!    stored. The resolution is the status refresh (200 ms) plus the 50 ms poll.
//! 4. Latency: under a steady background load at the origin, sequential probes submitted at the
//!    origin (A) and read at pbc-chengdu (B) through its API, which only serves records it has
//!    verified and stored, with a waiting read (`wait_ms`) that B answers as soon as the record
//!    is applied; each sample runs from A's submit to B's 200, and the part until A's durable
//!    acknowledgement is reported beside it.
//! 5. Anti-entropy: with every node in sync and idle, the bytes each node exchanges with each
//!    peer over ten anti-entropy intervals — sync frames, and everything on the wire (UDP
//!    payload: QUIC headers, encryption, acknowledgements) — divided by the rounds.
//! 6. Memory: the last fresh member's RSS once it holds N records, and its peak.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tfx_node::appender::{Appender, AppenderConfig};
use tfx_node::config::NodeConfig;
use tfx_node::sled_store::SledStore;
use tfx_node::synthetic;
use tfx_protocol::record::{verify_record, KeySet};
use tfx_protocol::store::Store;
use tfx_protocol::{LogIndex, MemberId};

use super::{median, sled_raw, threads};
use crate::client::{ok, NodeClient};
use crate::localnet::{status, wait_until, LocalNet};
use crate::Outcome;

/// The member whose log is replicated.
const ORIGIN: &str = "bank-a";
/// Fresh members in the order they join: each catches up from every node already running.
const JOINERS: [&str; 3] = ["science-dept", "pbc-chengdu", "risk-warning"];
/// Where latency probes are looked for.
const PROBE_AT: &str = "pbc-chengdu";
/// Anti-entropy intervals measured for bytes per round.
const ROUNDS: u64 = 10;

const CATCH_UP_TARGET: f64 = 0.5;
const LATENCY_P99_TARGET_MS: f64 = 50.0;
const ROUND_BYTES_TARGET: f64 = 200.0;
const RSS_TARGET_MIB: f64 = 150.0;

#[derive(clap::Args)]
pub struct ReplicateBench {
    /// Records the origin holds for fresh members to catch up.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Sequential latency probes.
    #[arg(long, default_value_t = 500)]
    pub probes: usize,
    /// Background submissions per second at the origin while probing.
    #[arg(long, default_value_t = 1_000)]
    pub load: u64,
    /// The nodes' anti-entropy interval.
    #[arg(long, default_value_t = 1_000)]
    pub anti_entropy_ms: u64,
    /// First of four consecutive UDP ports on 127.0.0.1 (APIs on these + 1000, metrics + 2000).
    #[arg(long, default_value_t = 7501)]
    pub base_port: u16,
    /// Directory for the members' directories (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

struct CatchUp {
    peers: usize,
    seconds: f64,
    per_s: f64,
    /// CPU time per record caught up, µs: the fresh member's, and its running peers' together
    /// (what serving cost them in that time).
    receiver_cpu_us: f64,
    senders_cpu_us: f64,
}

struct Figures {
    origin_appends_per_s: f64,
    sled_raw_per_s: f64,
    verify_only_per_s: f64,
    catch_up: Vec<CatchUp>,
    latency_ms: Vec<f64>,
    /// Of each probe, the part until A acknowledged it durable.
    ack_ms: Vec<f64>,
    load_per_s: f64,
    sync_bytes_per_round: f64,
    udp_bytes_per_round: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
}

pub fn run(b: &ReplicateBench) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        b.records > 0 && b.probes > 0,
        "--records and --probes must be at least 1"
    );
    let base = match &b.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating bench directory")?;
    let say = |s: String| {
        if !b.json {
            eprintln!("  {s}");
        }
    };
    if !b.json {
        eprintln!(
            "tfx bench replicate: {} records, {} cores, under {}",
            b.records,
            threads(),
            base.path().display()
        );
    }
    let sync_toml = format!("\n[sync]\nanti_entropy_ms = {}\n", b.anti_entropy_ms);
    let mut net = LocalNet::build(
        &base.path().join("net"),
        b.base_port,
        &sync_toml,
        // The bench measures replication alone: no rule runner reading the store meanwhile.
        false,
        &mut |_, _, _| {},
    )?;
    say("consortium of four built with the onboarding commands".into());

    let (origin_appends_per_s, values, sample) = write_origin(&net.dir(ORIGIN), b.records)?;
    say(format!(
        "{ORIGIN} wrote {} records ({origin_appends_per_s:.0}/s durable)",
        b.records
    ));
    let sled_raw_per_s = sled_raw(&values, &base.path().join("raw"))?;
    drop(values);
    say(format!(
        "raw sled batch insert of the same bytes: {sled_raw_per_s:.0}/s"
    ));
    let verify_only_per_s = verify_only(&sample)?;
    drop(sample);
    say(format!(
        "verify-only, {} of the records on every core: {verify_only_per_s:.0}/s",
        VERIFY_SAMPLE.min(b.records as usize)
    ));

    net.start(ORIGIN)?;
    let mut catch_up = Vec::new();
    for (i, m) in JOINERS.iter().enumerate() {
        let senders = running_pids(&net);
        let senders_before = cpu_seconds_of(&senders)?;
        let started = Instant::now();
        let client = net.start(m)?;
        wait_until(
            &format!("{m} to catch up"),
            Duration::from_secs(3600),
            Duration::from_millis(50),
            || Ok(size_of(&client, ORIGIN)? >= b.records),
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let receiver = net.pid(m).context("the fresh member is not running")?;
        let per_record = |cpu_s: f64| cpu_s * 1e6 / b.records as f64;
        let c = CatchUp {
            peers: i + 1,
            seconds,
            per_s: b.records as f64 / seconds,
            receiver_cpu_us: per_record(cpu_seconds_of(&[receiver])?),
            senders_cpu_us: per_record(cpu_seconds_of(&senders)? - senders_before),
        };
        say(format!(
            "{m} caught up from {} peer(s) in {seconds:.1} s ({:.0}/s; CPU per record {:.0} µs \
             receiving, {:.0} µs serving)",
            c.peers, c.per_s, c.receiver_cpu_us, c.senders_cpu_us
        ));
        catch_up.push(c);
    }
    let last = JOINERS[JOINERS.len() - 1];
    let pid = net.pid(last).context("the last joiner is not running")?;
    let rss_mib = proc_status_kib(pid, "VmRSS:")? as f64 / 1024.0;

    let (latency_ms, ack_ms, load_per_s) = latency(&net, b)?;
    say(format!(
        "latency: {} probes under {load_per_s:.0} records/s of load",
        latency_ms.len()
    ));
    let (sync_bytes_per_round, udp_bytes_per_round) = round_bytes(&net, b.anti_entropy_ms)?;
    let peak_rss_mib = proc_status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    for (id, status) in net.stop_all()? {
        if !status.success() {
            bail!("{id} exited with {status}");
        }
    }
    report(
        b,
        &Figures {
            origin_appends_per_s,
            sled_raw_per_s,
            verify_only_per_s,
            catch_up,
            latency_ms,
            ack_ms,
            load_per_s,
            sync_bytes_per_round,
            udp_bytes_per_round,
            rss_mib,
            peak_rss_mib,
        },
    );
    Ok(Outcome::Ok)
}

/// Writes `n` synthetic credit records into the origin's store through its appender, as its node
/// would; returns the append rate and the records' bytes (envelope + disclosures) for the
/// baseline.
/// Records whose verification is timed for the verify-only baseline: enough for a steady rate.
const VERIFY_SAMPLE: usize = 20_000;

/// The first records of the origin's log as a peer sends them, and the key they verify under.
struct Sample {
    keys: KeySet,
    records: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

/// Writes the origin's log; returns its durable append rate, each record's bytes (envelope then
/// disclosures, for the raw sled baseline) and the verify-only sample.
fn write_origin(member_dir: &Path, n: u64) -> anyhow::Result<(f64, Vec<Vec<u8>>, Sample)> {
    let config = NodeConfig::load(&member_dir.join("node.toml"))?;
    let key = tfx_node::keyfile::load_signing_key(&config.record_signing_key)?;
    let keys = KeySet(vec![(config.member.clone(), *key.verifying_key())]);
    let pseudonym = tfx_node::node::pseudonym_secret(&config)?;
    std::fs::create_dir_all(&config.data)?;
    let store = Arc::new(SledStore::open(&config.data)?);
    let appender = Arc::new(Appender::start(
        store.clone(),
        AppenderConfig {
            origin: config.member.clone(),
            key,
            previous_keys: Vec::new(),
            pseudonym,
        },
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Enough submitters to fill the committer's batches (see `tfx bench append`).
    const SUBMITTERS: u64 = 256;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let acked: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..SUBMITTERS)
            .map(|_| {
                let (appender, next) = (appender.clone(), next.clone());
                tokio::spawn(async move {
                    let mut acked = 0u64;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok::<u64, anyhow::Error>(acked);
                        }
                        appender.append(synthetic::credit(i)?).await?;
                        acked += 1;
                    }
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok::<u64, anyhow::Error>(total)
    })?;
    let rate = acked as f64 / started.elapsed().as_secs_f64();
    drop(rt);
    match Arc::try_unwrap(appender) {
        Ok(a) => a.shutdown(),
        Err(_) => bail!("appender still shared"),
    }
    let mut values = Vec::with_capacity(n as usize);
    let mut sample = Sample {
        keys,
        records: Vec::with_capacity(VERIFY_SAMPLE.min(n as usize)),
    };
    let origin: &MemberId = &config.member;
    let mut from = 0u64;
    while from < n {
        let page = store.envelopes(origin, LogIndex(from), 4096)?;
        if page.is_empty() {
            bail!("the origin's store holds {from} records, not {n}");
        }
        for (_, mut envelope) in page {
            let id = tfx_protocol::RecordId::of_envelope(&envelope);
            let disclosures = store.disclosures(&id)?;
            if sample.records.len() < VERIFY_SAMPLE {
                sample.records.push((envelope.clone(), disclosures.clone()));
            }
            for d in disclosures {
                envelope.extend_from_slice(&d);
            }
            values.push(envelope);
            from += 1;
        }
    }
    Ok((rate, values, sample))
}

/// Records per second through `verify_record` — Ed25519 signature, then every disclosure's
/// digest and value — on every core, as a receiver verifies a message (`protocol::par`).
fn verify_only(sample: &Sample) -> anyhow::Result<f64> {
    let started = Instant::now();
    let verified = tfx_protocol::par::map(&sample.records, |(envelope, disclosures)| {
        verify_record(envelope, disclosures, &sample.keys).is_ok()
    });
    let per_s = sample.records.len() as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        verified.iter().all(|ok| *ok),
        "a record the origin wrote does not verify"
    );
    Ok(per_s)
}

/// The size of `origin`'s log at the node behind `client`.
fn size_of(client: &NodeClient, origin: &str) -> anyhow::Result<u64> {
    let s = status(client)?;
    Ok(s["heads"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["origin"] == origin))
        .and_then(|h| h["size"].as_u64())
        .unwrap_or(0))
}

/// Sequential submit-at-A → verified-at-B probes under background load; returns the samples
/// in milliseconds, the part of each until A's durable acknowledgement, and the load actually
/// achieved.
fn latency(net: &LocalNet, b: &ReplicateBench) -> anyhow::Result<(Vec<f64>, Vec<f64>, f64)> {
    const LOADERS: u64 = 4;
    let a = NodeClient::for_node(&net.dir(ORIGIN))?;
    let at_b = NodeClient::for_node(&net.dir(PROBE_AT))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load_started = Instant::now();
    let loaders: Vec<_> = (0..LOADERS)
        .map(|t| {
            let (stop, sent) = (stop.clone(), sent.clone());
            let client = NodeClient::for_node(&net.dir(ORIGIN));
            let per_loader = (b.load / LOADERS).max(1) as f64;
            let first = b.records + 1_000_000 * (t + 1);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let client = client?;
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = started + Duration::from_secs_f64(n as f64 / per_loader);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = serde_json::to_vec(&synthetic::credit_json(first + n))?;
                    let (code, reply) = client.post("/v1/records", &body)?;
                    ok(code, reply)?;
                    sent.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                Ok(())
            })
        })
        .collect();
    // Let the load reach its pace before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let mut samples = Vec::with_capacity(b.probes);
    let mut acks = Vec::with_capacity(b.probes);
    let mut failure = None;
    for i in 0..b.probes as u64 {
        match probe(&a, &at_b, b.records + 500_000 + i) {
            Ok((ack, ms)) => {
                acks.push(ack);
                samples.push(ms);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let load = sent.load(Ordering::Relaxed) as f64 / load_started.elapsed().as_secs_f64();
    for l in loaders {
        l.join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((samples, acks, load))
}

/// One probe: (ms until A acknowledged the record durable, ms until B served it).
fn probe(a: &NodeClient, at_b: &NodeClient, n: u64) -> anyhow::Result<(f64, f64)> {
    let body = serde_json::to_vec(&synthetic::credit_json(n))?;
    let started = Instant::now();
    let (code, reply) = a.post("/v1/records", &body)?;
    let id = ok(code, reply)?["id"]
        .as_str()
        .context("no id in the submit reply")?
        .to_string();
    let acked = started.elapsed().as_secs_f64() * 1000.0;
    // One waiting read: B answers the moment the record is applied there, so the figure has
    // no polling interval in it and B serves no stream of polls while it verifies.
    let (code, reply) = at_b.get_record(&id, Duration::from_secs(30))?;
    match code {
        200 => Ok((acked, started.elapsed().as_secs_f64() * 1000.0)),
        404 => bail!("record {id} did not reach {PROBE_AT} within 30 s"),
        _ => bail!("{PROBE_AT} answered {code}: {reply}"),
    }
}

/// Sync and UDP bytes each node exchanges with each peer per anti-entropy round while in sync
/// (median over the connections, each seen from both ends).
fn round_bytes(net: &LocalNet, interval_ms: u64) -> anyhow::Result<(f64, f64)> {
    let clients: Vec<NodeClient> = crate::localnet::MEMBERS
        .iter()
        .map(|(m, ..)| NodeClient::for_node(&net.dir(m)))
        .collect::<Result<_, _>>()?;
    let heads = |c: &NodeClient| -> anyhow::Result<Value> { Ok(status(c)?["heads"].clone()) };
    wait_until(
        "every node in sync",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let all: Vec<Value> = clients.iter().map(heads).collect::<Result<_, _>>()?;
            Ok(all.windows(2).all(|w| w[0] == w[1]))
        },
    )?;
    // Two quiet rounds so no push or fetch is still in flight.
    std::thread::sleep(Duration::from_millis(2 * interval_ms));
    let sample = || -> anyhow::Result<Vec<(String, u64, u64)>> {
        let mut out = Vec::new();
        for c in &clients {
            let s = status(c)?;
            for p in s["peers"].as_array().into_iter().flatten() {
                let t = &p["traffic"];
                let get = |k: &str| t[k].as_u64().unwrap_or(0);
                if t.is_object() {
                    out.push((
                        format!("{}→{}", s["member"], p["member"]),
                        get("sync_bytes_sent") + get("sync_bytes_received"),
                        get("udp_bytes_sent") + get("udp_bytes_received"),
                    ));
                }
            }
        }
        Ok(out)
    };
    let before_heads: Vec<Value> = clients.iter().map(heads).collect::<Result<_, _>>()?;
    let before = sample()?;
    std::thread::sleep(Duration::from_millis(ROUNDS * interval_ms));
    let after = sample()?;
    let after_heads: Vec<Value> = clients.iter().map(heads).collect::<Result<_, _>>()?;
    if before_heads != after_heads {
        bail!("records moved during the in-sync measurement");
    }
    let mut sync = Vec::new();
    let mut udp = Vec::new();
    for (link, s0, u0) in &before {
        if let Some((_, s1, u1)) = after.iter().find(|(l, ..)| l == link) {
            sync.push(s1.saturating_sub(*s0) as f64 / ROUNDS as f64);
            udp.push(u1.saturating_sub(*u0) as f64 / ROUNDS as f64);
        }
    }
    if sync.is_empty() {
        bail!("no connected peers to measure");
    }
    Ok((median(sync), median(udp)))
}

/// A `/proc/PID/status` field in KiB (`VmRSS:` now, `VmHWM:` peak).
/// The pids of the nodes running now.
fn running_pids(net: &LocalNet) -> Vec<u32> {
    crate::localnet::MEMBERS
        .iter()
        .filter_map(|(id, _, _)| net.pid(id))
        .collect()
}

/// Clock ticks per second in `/proc/PID/stat`: the kernel's USER_HZ, 100 on Linux.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) the processes have used so far, in seconds, from `/proc/PID/stat`.
fn cpu_seconds_of(pids: &[u32]) -> anyhow::Result<f64> {
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name is in parentheses and may hold spaces: count fields after it, from
        // the state (field 3); utime and stime are fields 14 and 15.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .with_context(|| format!("no CPU time in /proc/{pid}/stat"))?;
        }
    }
    Ok(ticks as f64 / USER_HZ)
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(b: &ReplicateBench, f: &Figures) {
    let mut lat = f.latency_ms.clone();
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let mut ack = f.ack_ms.clone();
    ack.sort_by(f64::total_cmp);
    let (ack50, ack99) = (percentile(&ack, 0.5), percentile(&ack, 0.99));
    let catch: Vec<Value> = f
        .catch_up
        .iter()
        .map(|c| {
            json!({
                "peers": c.peers, "seconds": (c.seconds * 10.0).round() / 10.0,
                "records_per_s": c.per_s.round(),
                "vs_sled_raw": ((c.per_s / f.sled_raw_per_s) * 1000.0).round() / 1000.0,
                "cpu_us_per_record": {
                    "receiver": c.receiver_cpu_us.round(),
                    "senders": c.senders_cpu_us.round(),
                },
            })
        })
        .collect();
    let best_ratio = f
        .catch_up
        .iter()
        .map(|c| c.per_s / f.sled_raw_per_s)
        .fold(0.0, f64::max);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    if b.json {
        let out = json!({
            "bench": "replicate", "records": b.records, "cores": threads(),
            "origin_appends_per_s": f.origin_appends_per_s.round(),
            "sled_raw_per_s": f.sled_raw_per_s.round(),
            "verify_only_per_s": f.verify_only_per_s.round(),
            "catch_up": catch,
            "latency_ms": {
                "p50": p50, "p99": p99, "probes": lat.len(),
                "ack_at_origin_p50": ack50, "ack_at_origin_p99": ack99,
                "load_per_s": f.load_per_s.round(), "from": ORIGIN, "to": PROBE_AT,
            },
            "anti_entropy": {
                "interval_ms": b.anti_entropy_ms,
                "sync_bytes_per_round_per_peer": f.sync_bytes_per_round,
                "udp_bytes_per_round_per_peer": f.udp_bytes_per_round,
            },
            "rss_mib": { "with_all_records": f.rss_mib, "peak": f.peak_rss_mib },
            "targets": {
                "catch_up_vs_sled_raw": CATCH_UP_TARGET,
                "catch_up_met": best_ratio >= CATCH_UP_TARGET,
                "latency_p99_ms": LATENCY_P99_TARGET_MS,
                "latency_met": p99 <= LATENCY_P99_TARGET_MS,
                "bytes_per_round": ROUND_BYTES_TARGET,
                "bytes_per_round_met": f.udp_bytes_per_round <= ROUND_BYTES_TARGET,
                "rss_mib": RSS_TARGET_MIB,
                "rss_met": f.rss_mib <= RSS_TARGET_MIB,
            },
        });
        println!("{out}");
        return;
    }
    println!(
        "replication, {} records of {ORIGIN}, four tfx-node processes on loopback, {} cores",
        b.records,
        threads()
    );
    println!(
        "  origin durable appends (appender, 256 submitters)  {:>10.0} records/s",
        f.origin_appends_per_s
    );
    println!(
        "  raw sled batch insert + flush, same bytes          {:>10.0} records/s",
        f.sled_raw_per_s
    );
    println!(
        "  verify-only (signature + disclosures), all cores   {:>10.0} records/s  {:>5.2}× sled raw  (catch-up's ceiling)",
        f.verify_only_per_s,
        f.verify_only_per_s / f.sled_raw_per_s
    );
    for c in &f.catch_up {
        println!(
            "  fresh member catch-up from {} peer(s)              {:>10.0} records/s  {:>5.2}× sled raw  ({:.1} s; CPU per record: {:.0} µs receiving, {:.0} µs serving)",
            c.peers,
            c.per_s,
            c.per_s / f.sled_raw_per_s,
            c.seconds,
            c.receiver_cpu_us,
            c.senders_cpu_us
        );
    }
    println!(
        "  target catch-up ≥ {CATCH_UP_TARGET:.2}× sled raw: {} (best {best_ratio:.2}×)",
        met(best_ratio >= CATCH_UP_TARGET)
    );
    println!(
        "  submit at {ORIGIN} → verified at {PROBE_AT}: p50 {p50:.1} ms, p99 {p99:.1} ms ({} probes, {:.0} records/s load)",
        lat.len(),
        f.load_per_s
    );
    println!(
        "    of which until {ORIGIN} acknowledged the submit as durable: p50 {ack50:.1} ms, p99 {ack99:.1} ms"
    );
    println!(
        "  target p99 ≤ {LATENCY_P99_TARGET_MS:.0} ms: {}",
        met(p99 <= LATENCY_P99_TARGET_MS)
    );
    println!(
        "  in sync, per peer per {} ms round: {:.0} bytes of sync frames, {:.0} bytes of UDP payload",
        b.anti_entropy_ms, f.sync_bytes_per_round, f.udp_bytes_per_round
    );
    println!(
        "  target ≤ {ROUND_BYTES_TARGET:.0} bytes per round (on the wire): {}",
        met(f.udp_bytes_per_round <= ROUND_BYTES_TARGET)
    );
    println!(
        "  RSS of a member holding all {} records: {:.0} MiB (peak {:.0} MiB)",
        b.records, f.rss_mib, f.peak_rss_mib
    );
    println!(
        "  target ≤ {RSS_TARGET_MIB:.0} MiB: {}",
        met(f.rss_mib <= RSS_TARGET_MIB)
    );
}
