//! `tfx bench`: throughput measured on the machine at hand. Every figure is printed beside
//! baselines measured **in the same run** (machines here are shared and noisy, so ratios are what
//! carry over), and each is the median of `--runs` repetitions. Methodology in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use tfx_node::appender::{Appender, AppenderConfig};
use tfx_node::limits::COMMIT_BATCH_MAX;
use tfx_node::sled_store::SledStore;
use tfx_node::synthetic;
use tfx_protocol::derive::{PseudonymKey, PseudonymSecret, PURPOSE_RISK_WARNING};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::record::{seal, SealParams, SealedRecord};
use tfx_protocol::validate::RecordBody;
use tfx_protocol::{LogIndex, MemberId, Timestamp};

use crate::Outcome;

pub mod replicate;

/// The append throughput the design targets (DESIGN §12).
const APPEND_TARGET_PER_S: f64 = 20_000.0;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable, acknowledged appends/s at one node with 1, 8 and 64 concurrent submitters, beside
    /// the same run's seal-only rate and raw sled batch-insert rate of the same bytes.
    #[command(
        after_help = "Example:\n  tfx bench append --records 50000 --runs 3\n  tfx bench append --json > append.json"
    )]
    Append {
        /// Records appended per measurement.
        #[arg(long, default_value_t = 50_000)]
        records: u64,
        /// Concurrent submitters, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        concurrency: Vec<usize>,
        /// Repetitions; every figure is the median.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Directory for the temporary stores (default: the system temp dir). Use the disk you
        /// will run on: fsync cost is most of an append.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replication between four tfx-node processes on loopback: a fresh member catching up from
    /// one, two and three peers beside the same run's raw sled batch-insert rate of the same
    /// bytes; submit-to-verified latency under load; bytes per anti-entropy round in sync; RSS.
    #[command(
        after_help = "Example:\n  tfx bench replicate --records 1000000\n  tfx bench replicate --records 100000 --json > replicate.json"
    )]
    Replicate(replicate::ReplicateBench),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<Outcome> {
    // Committer breakdowns go to stderr at RUST_LOG=info; stdout stays the report.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match cmd {
        BenchCommand::Append {
            records,
            concurrency,
            runs,
            dir,
            json,
        } => {
            anyhow::ensure!(
                records > 0 && runs > 0,
                "--records and --runs must be at least 1"
            );
            anyhow::ensure!(
                concurrency.iter().all(|c| *c > 0),
                "--concurrency values must be at least 1"
            );
            append(&AppendBench {
                records,
                concurrency,
                runs,
                dir,
                json,
            })
        }
        BenchCommand::Replicate(b) => replicate::run(&b),
    }
}

struct AppendBench {
    records: u64,
    concurrency: Vec<usize>,
    runs: usize,
    dir: Option<PathBuf>,
    json: bool,
}

/// One run's figures (records per second, bytes per record).
struct RunFigures {
    seal_only: f64,
    sled_raw: f64,
    append: Vec<f64>,
    disk_bytes_per_record: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn threads() -> usize {
    tfx_protocol::par::cores()
}

/// The pseudonym secret every bench record is sealed under.
const BENCH_PSEUDONYM_SECRET: [u8; 32] = [0x24; 32];

fn bench_key() -> (MemberId, SigningKey, PseudonymKey) {
    let origin = MemberId::new("bench-origin").unwrap_or_else(|e| unreachable!("{e}"));
    let key = SigningKey::from_seed(&[0x42; 32]);
    let pseudonym = PseudonymKey::derive(&BENCH_PSEUDONYM_SECRET, PURPOSE_RISK_WARNING, 2026)
        .unwrap_or_else(|e| unreachable!("{e}"));
    (origin, key, pseudonym)
}

fn append(b: &AppendBench) -> anyhow::Result<Outcome> {
    let bodies: Vec<RecordBody> = (0..b.records)
        .map(synthetic::credit)
        .collect::<Result<_, _>>()
        .context("generating synthetic records")?;
    let bodies = Arc::new(bodies);
    let base = match &b.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating bench directory")?;
    if !b.json {
        eprintln!(
            "tfx bench append: {} records × {} runs, {} cores, stores under {}",
            b.records,
            b.runs,
            threads(),
            base.path().display()
        );
    }
    let mut runs = Vec::new();
    for run in 0..b.runs {
        let dir = base.path().join(format!("run{run}"));
        std::fs::create_dir_all(&dir).context("creating run directory")?;
        let figures = one_run(b, &bodies, &dir)?;
        std::fs::remove_dir_all(&dir).ok();
        if !b.json {
            eprintln!(
                "  run {}: seal {:.0}/s, sled raw {:.0}/s, append {:?}",
                run + 1,
                figures.seal_only,
                figures.sled_raw,
                figures.append.iter().map(|r| r.round()).collect::<Vec<_>>()
            );
        }
        runs.push(figures);
    }
    report(b, &runs);
    Ok(Outcome::Ok)
}

fn one_run(
    b: &AppendBench,
    bodies: &Arc<Vec<RecordBody>>,
    dir: &Path,
) -> anyhow::Result<RunFigures> {
    let (seal_only, sealed) = seal_only(bodies);
    let values: Vec<Vec<u8>> = sealed
        .into_iter()
        .map(|r| {
            let mut value = r.envelope;
            for d in &r.disclosures {
                value.extend_from_slice(d.bytes());
            }
            value
        })
        .collect();
    let sled_raw = sled_raw(&values, &dir.join("raw"))?;
    drop(values);
    let mut append = Vec::new();
    let mut disk_bytes_per_record = 0.0;
    for (i, &c) in b.concurrency.iter().enumerate() {
        let store_dir = dir.join(format!("append-{c}"));
        append.push(appends(bodies, c, &store_dir)?);
        if i + 1 == b.concurrency.len() {
            disk_bytes_per_record = dir_size(&store_dir)? as f64 / bodies.len() as f64;
        }
        std::fs::remove_dir_all(&store_dir).ok();
    }
    Ok(RunFigures {
        seal_only,
        sled_raw,
        append,
        disk_bytes_per_record,
    })
}

/// Seals every body on all cores, as the committer does, without storing anything.
fn seal_only(bodies: &[RecordBody]) -> (f64, Vec<SealedRecord>) {
    let (origin, key, pseudonym) = bench_key();
    let chunk = bodies.len().div_ceil(threads());
    let start = Instant::now();
    let sealed: Vec<SealedRecord> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                let (origin, key, pseudonym) = (&origin, &key, &pseudonym);
                s.spawn(move || {
                    let mut entropy = tfx_node::entropy::SystemEntropy::new();
                    part.iter()
                        .enumerate()
                        .filter_map(|(i, body)| {
                            let seq = LogIndex((n * chunk + i) as u64);
                            let params = SealParams {
                                origin,
                                seq,
                                issued_at: Timestamp(1),
                                pseudonym: Some(pseudonym),
                            };
                            seal(body, params, key, &mut entropy).ok()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    (sealed.len() as f64 / start.elapsed().as_secs_f64(), sealed)
}

/// Inserts the same bytes (envelope + disclosures per record, one key each) into a fresh sled in
/// batches of the committer's size, flushing after each batch: the storage ceiling.
fn sled_raw(values: &[Vec<u8>], dir: &Path) -> anyhow::Result<f64> {
    let db = tfx_node::sled_store::sled_config(dir)
        .open()
        .context("opening raw sled")?;
    let start = Instant::now();
    for (n, chunk) in values.chunks(COMMIT_BATCH_MAX).enumerate() {
        let mut batch = sled::Batch::default();
        for (i, value) in chunk.iter().enumerate() {
            batch.insert(
                &((n * COMMIT_BATCH_MAX + i) as u64).to_be_bytes(),
                value.as_slice(),
            );
        }
        db.apply_batch(batch).context("raw sled batch")?;
        db.flush().context("raw sled flush")?;
    }
    let rate = values.len() as f64 / start.elapsed().as_secs_f64();
    drop(db);
    std::fs::remove_dir_all(dir).ok();
    Ok(rate)
}

/// Durable appends/s through the real appender with `submitters` concurrent tasks.
fn appends(bodies: &Arc<Vec<RecordBody>>, submitters: usize, dir: &Path) -> anyhow::Result<f64> {
    let (origin, key, _) = bench_key();
    let store = Arc::new(SledStore::open(dir).context("opening store")?);
    let appender = Arc::new(Appender::start(
        store,
        AppenderConfig {
            origin,
            key,
            previous_keys: Vec::new(),
            pseudonym: Some(
                PseudonymSecret::new(&BENCH_PSEUDONYM_SECRET)
                    .unwrap_or_else(|e| unreachable!("{e}")),
            ),
        },
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    let n = bodies.len();
    let start = Instant::now();
    let acked: usize = rt.block_on(async {
        let tasks: Vec<_> = (0..submitters)
            .map(|t| {
                let (appender, bodies) = (appender.clone(), bodies.clone());
                tokio::spawn(async move {
                    let mut ok = 0usize;
                    for i in (t..n).step_by(submitters) {
                        if appender.append(bodies[i].clone()).await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        total
    });
    let rate = acked as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(acked == n, "only {acked} of {n} appends were acknowledged");
    let s = appender.stats();
    let per = |ns: u64| ns as f64 / 1000.0 / s.records.max(1) as f64;
    tracing::info!(
        submitters,
        batches = s.batches,
        records_per_batch = s.records as f64 / s.batches.max(1) as f64,
        seal_us = per(s.seal_ns),
        plan_us = per(s.plan_ns),
        commit_us = per(s.commit_ns),
        "committer time per record"
    );
    drop(appender);
    Ok(rate)
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn report(b: &AppendBench, runs: &[RunFigures]) {
    let seal = median(runs.iter().map(|r| r.seal_only).collect());
    let raw = median(runs.iter().map(|r| r.sled_raw).collect());
    let disk = median(runs.iter().map(|r| r.disk_bytes_per_record).collect());
    let rows: Vec<serde_json::Value> = b
        .concurrency
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "concurrency": c,
                "appends_per_s": median(runs.iter().map(|r| r.append[i]).collect()).round(),
                "vs_seal_only": median(runs.iter().map(|r| r.append[i] / r.seal_only).collect()),
                "vs_sled_raw": median(runs.iter().map(|r| r.append[i] / r.sled_raw).collect()),
            })
        })
        .collect();
    let best = rows
        .iter()
        .filter_map(|r| r["appends_per_s"].as_f64())
        .fold(0.0, f64::max);
    if b.json {
        let out = json!({
            "bench": "append", "records": b.records, "runs": b.runs, "cores": threads(),
            "seal_only_per_s": seal.round(), "sled_raw_per_s": raw.round(),
            "append": rows, "disk_bytes_per_record": disk.round(),
            "target_appends_per_s": APPEND_TARGET_PER_S, "target_met": best >= APPEND_TARGET_PER_S,
        });
        println!("{out}");
        return;
    }
    println!(
        "durable appends, {} records, median of {} runs, {} cores",
        b.records,
        b.runs,
        threads()
    );
    println!(
        "  {:<30} {:>10}  {:>12}  {:>12}",
        "", "records/s", "vs seal-only", "vs sled raw"
    );
    println!(
        "  {:<30} {:>10.0}",
        format!("seal only ({} threads)", threads()),
        seal
    );
    println!("  {:<30} {:>10.0}", "raw sled batch insert + flush", raw);
    for r in &rows {
        let label = format!("append, {} submitter(s)", r["concurrency"]);
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "  {label:<30} {:>10.0}  {:>12.2}  {:>12.2}",
            f("appends_per_s"),
            f("vs_seal_only"),
            f("vs_sled_raw")
        );
    }
    println!("  bytes on disk per record: {disk:.0} (sled + value log, after the last run)");
    let verdict = if best >= APPEND_TARGET_PER_S {
        "met"
    } else {
        "NOT met"
    };
    println!("  target ≥ {APPEND_TARGET_PER_S:.0} durable appends/s: {verdict} (best {best:.0}/s)");
}
