//! Group commit for local appends (DESIGN §6), as a two-stage pipeline. Submitters hand validated
//! bodies through a bounded queue to the **sealer** thread, which takes everything waiting (up to
//! [`COMMIT_BATCH_MAX`]), assigns sequence numbers, seals the records in parallel and plans the
//! Merkle update with a signed checkpoint. The **writer** thread commits each planned batch
//! atomically and durably ([`Store::commit`]: for the sled store, one value-log write and fsync)
//! and only then answers every submitter in it. Sealing batch k+1 overlaps the write and fsync of
//! batch k, and many appends share one fsync and one checkpoint signature.
//!
//! Architecture invariant: a receipt is sent only after the commit that made its record durable.
//! If a commit fails the appender stops accepting work (the store's state is unknown until it is
//! reopened and re-verified), and every waiting submitter gets the error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tfx_protocol::derive::PseudonymSecret;
use tfx_protocol::ids::{LogIndex, MemberId, RecordId, Timestamp};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::LocalLog;
use tfx_protocol::record::{seal, SealParams, SealedRecord};
use tfx_protocol::store::{AppendBatch, LogHead, Store};
use tfx_protocol::validate::RecordBody;
use tokio::sync::{mpsc, oneshot};

use crate::entropy::SystemEntropy;
use crate::limits::{APPEND_QUEUE_CAPACITY, COMMIT_BATCH_MAX, PARALLEL_SEAL_MIN, SEAL_THREADS_MAX};

/// Proof that a record is durable in the local log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReceipt {
    pub id: RecordId,
    pub seq: LogIndex,
    pub issued_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("appender is shut down")]
    Closed,
    #[error("appender stopped after a store failure: {0}")]
    Store(String),
    #[error("random number generator unavailable; record not sealed")]
    Entropy,
    #[error("deriving the pseudonym key: {0}")]
    Pseudonym(String),
    #[error("this node is recovering its own log from peers after a restore; it issues records again once they have reported (tfx status shows progress)")]
    Recovering,
    #[error("opening the local log: {0}")]
    Open(String),
}

/// Who the node appends as.
pub struct AppenderConfig {
    pub origin: MemberId,
    pub key: SigningKey,
    /// Record-signing keys this member used before `key` (the roster lists them with closed
    /// windows): after a key rotation the latest stored checkpoint is signed by one of them.
    pub previous_keys: Vec<tfx_protocol::keys::VerifyingKey>,
    /// The consortium pseudonym secret (issuers only); each batch derives the key of its
    /// issue time's epoch, so pseudonyms rotate at the new year without a restart.
    pub pseudonym: Option<PseudonymSecret>,
}

impl std::fmt::Debug for AppenderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppenderConfig({}, {:?})", self.origin, self.key)
    }
}

/// Where the committer spends its time, cumulatively. Read with [`Appender::stats`].
#[derive(Debug, Default)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    /// Sealing (derive, salt, sign), nanoseconds.
    pub seal_ns: AtomicU64,
    /// Planning Merkle nodes and signing the checkpoint.
    pub plan_ns: AtomicU64,
    /// Committing the batch to the store until it is durable ([`Store::commit`]).
    pub commit_ns: AtomicU64,
    /// Each group commit's [`Store::commit`], for the metrics histogram.
    pub commit_latency: crate::metrics::Histogram,
}

/// A point-in-time copy of [`CommitStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStatsSnapshot {
    pub batches: u64,
    pub records: u64,
    pub seal_ns: u64,
    pub plan_ns: u64,
    pub commit_ns: u64,
}

impl CommitStats {
    fn add(counter: &AtomicU64, since: Instant) -> Instant {
        let now = Instant::now();
        counter.fetch_add(
            u64::try_from((now - since).as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        now
    }

    pub fn snapshot(&self) -> CommitStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CommitStatsSnapshot {
            batches: get(&self.batches),
            records: get(&self.records),
            seal_ns: get(&self.seal_ns),
            plan_ns: get(&self.plan_ns),
            commit_ns: get(&self.commit_ns),
        }
    }
}

struct Request {
    body: RecordBody,
    reply: oneshot::Sender<Result<AppendReceipt, AppendError>>,
}

/// A batch sealed and planned, waiting for the writer.
struct Planned {
    batch: AppendBatch,
    replies: Vec<(
        oneshot::Sender<Result<AppendReceipt, AppendError>>,
        AppendReceipt,
    )>,
}

/// Set once a write fails; both stages refuse further work with this error.
type Failure = Arc<Mutex<Option<AppendError>>>;

fn failure(f: &Failure) -> Option<AppendError> {
    f.lock().map_or_else(
        |_| Some(AppendError::Store("failure flag poisoned".into())),
        |g| g.clone(),
    )
}

/// Handle to the sealer and writer threads. Dropping it (or [`Appender::shutdown`]) lets them
/// finish what is queued and exit.
#[derive(Debug)]
pub struct Appender {
    tx: Option<mpsc::Sender<Request>>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<CommitStats>,
    durable: tokio::sync::watch::Receiver<LogHead>,
    durable_tx: Arc<tokio::sync::watch::Sender<LogHead>>,
    failed: Failure,
    /// Set while the local log is recovered from peers after a restore: appends are refused.
    recovering: Arc<AtomicBool>,
    /// Set when recovery ends: the sealer reopens the local log (which sync extended) before
    /// its next batch.
    reopen: Arc<AtomicBool>,
}

impl Appender {
    /// Opens the origin's log in `store` and starts the sealer and writer threads.
    pub fn start<S: Store + Send + Sync + 'static>(
        store: Arc<S>,
        config: AppenderConfig,
    ) -> Result<Self, AppendError> {
        let log = LocalLog::open(&*store, config.origin.clone())
            .map_err(|e| AppendError::Open(e.to_string()))?;
        // Everything in the store at start is durable (it was flushed before being acknowledged,
        // or survived a crash, which is the same thing for sled).
        let (durable_tx, durable) = tokio::sync::watch::channel(log.head());
        let durable_tx = Arc::new(durable_tx);
        let last_time = last_checkpoint_time(&*store, &config)?;
        let reopen = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(APPEND_QUEUE_CAPACITY);
        // One planned batch may wait while another is written: bounded, and enough to overlap.
        let (to_writer, from_sealer) = std::sync::mpsc::sync_channel::<Planned>(1);
        let stats = Arc::new(CommitStats::default());
        let failed: Failure = Arc::new(Mutex::new(None));
        let sealer = Sealer {
            config,
            log,
            last_time,
            stats: stats.clone(),
            failed: failed.clone(),
            store: store.clone(),
            reopen: reopen.clone(),
        };
        let writer = Writer {
            store,
            stats: stats.clone(),
            failed: failed.clone(),
            durable: durable_tx.clone(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| AppendError::Open(format!("spawning {name} thread: {e}")))
        };
        let workers = vec![
            spawn("tfx-writer", Box::new(move || writer.run(from_sealer)))?,
            spawn("tfx-sealer", Box::new(move || sealer.run(rx, to_writer)))?,
        ];
        Ok(Appender {
            tx: Some(tx),
            workers,
            stats,
            durable,
            durable_tx,
            failed,
            recovering: Arc::new(AtomicBool::new(false)),
            reopen,
        })
    }

    /// The local log's durable head: advanced only after the flush that made it durable.
    /// Architecture invariant: anything that serves the local log to others (sync, the local
    /// API's reads) must not go past this, even though the store may briefly hold later records
    /// between a batch's write and its flush. Serving an unflushed record and then losing it in a
    /// crash would make this node sign a different record at the same seq: equivocation.
    pub fn durable_head(&self) -> tokio::sync::watch::Receiver<LogHead> {
        self.durable.clone()
    }

    /// Cumulative committer timings.
    pub fn stats(&self) -> CommitStatsSnapshot {
        self.stats.snapshot()
    }

    /// Latency of each group commit ([`Store::commit`]: written and durable).
    pub fn commit_latency(&self) -> &crate::metrics::Histogram {
        &self.stats.commit_latency
    }

    /// The store failure that stopped the appender, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().map_or_else(
            |_| Some("failure flag poisoned".into()),
            |f| f.as_ref().map(|e| e.to_string()),
        )
    }

    /// Refuses appends until [`Appender::recovered`]: the node was restored from a backup and
    /// its own log may continue on peers (`SyncConfig::recovering`). Issuing now could sign a
    /// second record at a sequence number already used — equivocation.
    pub fn hold_for_recovery(&self) {
        self.recovering.store(true, Ordering::SeqCst);
    }

    /// Whether appends are held for recovery.
    pub fn recovering(&self) -> bool {
        self.recovering.load(Ordering::SeqCst)
    }

    /// Ends the hold: sync has recovered the local log up to `head`, durably. The sealer
    /// reopens the log from the store before its next batch.
    pub fn recovered(&self, head: LogHead) {
        self.reopen.store(true, Ordering::SeqCst);
        self.durable_tx.send_if_modified(|d| {
            let newer = head.size > d.size;
            if newer {
                *d = head;
            }
            newer
        });
        self.recovering.store(false, Ordering::SeqCst);
    }

    /// Appends a record and returns once it is durable.
    pub async fn append(&self, body: RecordBody) -> Result<AppendReceipt, AppendError> {
        if self.recovering() {
            return Err(AppendError::Recovering);
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Request { body, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// [`Appender::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, body: RecordBody) -> Result<AppendReceipt, AppendError> {
        if self.recovering() {
            return Err(AppendError::Recovering);
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.blocking_send(Request { body, reply })
            .map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// Stops accepting appends, lets both stages drain what is queued, and waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Closing the queue ends the sealer, whose exit closes the writer's channel in turn.
        self.tx.take();
        for w in self.workers.drain(..).rev() {
            if w.join().is_err() {
                tracing::error!("appender thread panicked");
            }
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Sealer<S> {
    config: AppenderConfig,
    /// Runs ahead of the store by at most the batches in the pipeline.
    log: LocalLog,
    /// Issue times never go backwards within a log, even if the wall clock does.
    last_time: Timestamp,
    stats: Arc<CommitStats>,
    failed: Failure,
    store: Arc<S>,
    reopen: Arc<AtomicBool>,
}

impl<S: Store> Sealer<S> {
    fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        to_writer: std::sync::mpsc::SyncSender<Planned>,
    ) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < COMMIT_BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let planned = match failure(&self.failed) {
                Some(e) => Err((e, batch)),
                None => self.prepare(batch),
            };
            match planned {
                Ok(p) => {
                    if let Err(std::sync::mpsc::SendError(p)) = to_writer.send(p) {
                        for (reply, _) in p.replies {
                            let _ = reply.send(Err(AppendError::Closed));
                        }
                    }
                }
                Err((e, batch)) => {
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Seals and plans a batch; on failure hands the requests back so they can be answered.
    fn prepare(&mut self, batch: Vec<Request>) -> Result<Planned, (AppendError, Vec<Request>)> {
        if self.reopen.swap(false, Ordering::SeqCst) {
            let reopened = LocalLog::open(&*self.store, self.config.origin.clone())
                .map_err(|e| AppendError::Open(e.to_string()))
                .and_then(|log| Ok((log, last_checkpoint_time(&*self.store, &self.config)?)));
            match reopened {
                Ok((log, last)) => {
                    self.log = log;
                    self.last_time = self.last_time.max(last);
                }
                Err(e) => {
                    // Never seal on a stale log: stop, as after a store failure, so the health
                    // check and every later submission say why until the node restarts.
                    tracing::error!(error = %e, "reopening the local log after recovery failed; appender stopped");
                    if let Ok(mut slot) = self.failed.lock() {
                        slot.get_or_insert(e.clone());
                    }
                    return Err((e, batch));
                }
            }
        }
        let now = Timestamp(crate::clock::now().0.max(self.last_time.0));
        let t = Instant::now();
        let sealed = match seal_all(&self.config, &batch, self.log.next_seq().0, now) {
            Ok(s) => s,
            Err(e) => return Err((e, batch)),
        };
        let t = CommitStats::add(&self.stats.seal_ns, t);
        let receipts: Vec<AppendReceipt> = sealed
            .iter()
            .map(|r| AppendReceipt {
                id: r.id,
                seq: r.header.seq,
                issued_at: now,
            })
            .collect();
        let (plan, frontier) = match self.log.plan(sealed, now, &self.config.key) {
            Ok(p) => p,
            Err(e) => return Err((AppendError::Store(e.to_string()), batch)),
        };
        CommitStats::add(&self.stats.plan_ns, t);
        self.log.advance(frontier);
        self.last_time = now;
        let replies = batch.into_iter().map(|r| r.reply).zip(receipts).collect();
        Ok(Planned {
            batch: plan,
            replies,
        })
    }
}

struct Writer<S> {
    store: Arc<S>,
    stats: Arc<CommitStats>,
    failed: Failure,
    durable: Arc<tokio::sync::watch::Sender<LogHead>>,
}

impl<S: Store> Writer<S> {
    fn run(self, rx: std::sync::mpsc::Receiver<Planned>) {
        for planned in rx {
            let result = match failure(&self.failed) {
                Some(e) => Err(e),
                None => self.write(&planned.batch),
            };
            let records = planned.replies.len() as u64;
            match result {
                Ok(()) => {
                    if let Some((_, head)) = planned.batch.heads.first() {
                        self.durable.send_replace(*head);
                    }
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.records.fetch_add(records, Ordering::Relaxed);
                    tracing::debug!(records, "group commit durable");
                    for (reply, receipt) in planned.replies {
                        // A submitter that gave up waiting is not an error: its record is durable.
                        let _ = reply.send(Ok(receipt));
                    }
                }
                Err(e) => {
                    for (reply, _) in planned.replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn write(&self, batch: &AppendBatch) -> Result<(), AppendError> {
        let t = Instant::now();
        let durable = self.store.commit(batch);
        self.stats.commit_latency.observe(t.elapsed());
        CommitStats::add(&self.stats.commit_ns, t);
        durable.map_err(|e| {
            let err = AppendError::Store(e.to_string());
            tracing::error!(error = %e, "store write failed; appender stopped");
            if let Ok(mut slot) = self.failed.lock() {
                slot.get_or_insert(err.clone());
            }
            err
        })
    }
}

/// The time of the origin's latest stored checkpoint, so issue times continue from it after a
/// restart even if the wall clock has stepped back. The checkpoint is verified with our own key,
/// current or previous (a rotation leaves the latest checkpoint under the old one): a store
/// holding someone else's log under our name is refused.
fn last_checkpoint_time<S: Store>(
    store: &S,
    config: &AppenderConfig,
) -> Result<Timestamp, AppendError> {
    let open = |e: String| AppendError::Open(e);
    match store
        .checkpoint(&config.origin)
        .map_err(|e| open(e.to_string()))?
    {
        None => Ok(Timestamp(0)),
        Some(bytes) => {
            let mut keys = vec![(config.origin.clone(), *config.key.verifying_key())];
            keys.extend(
                config
                    .previous_keys
                    .iter()
                    .map(|k| (config.origin.clone(), *k)),
            );
            let keys = tfx_protocol::record::KeySet(keys);
            let cp = tfx_protocol::checkpoint::verify_checkpoint(&bytes, &keys)
                .map_err(|e| open(format!("latest checkpoint of {}: {e}", config.origin)))?;
            if cp.checkpoint.origin != config.origin {
                return Err(open(format!(
                    "latest checkpoint of {} names {}",
                    config.origin, cp.checkpoint.origin
                )));
            }
            Ok(cp.checkpoint.time)
        }
    }
}

/// Seals the batch, on several threads when it is large enough to pay for them.
fn seal_all(
    config: &AppenderConfig,
    batch: &[Request],
    first_seq: u64,
    now: Timestamp,
) -> Result<Vec<SealedRecord>, AppendError> {
    let pseudonym = config
        .pseudonym
        .as_ref()
        .map(|s| s.key_at(now))
        .transpose()
        .map_err(|e| AppendError::Pseudonym(e.to_string()))?;
    let pseudonym = pseudonym.as_ref();
    let seal_range = |start: usize, reqs: &[Request]| -> Result<Vec<SealedRecord>, AppendError> {
        let mut entropy = SystemEntropy::new();
        reqs.iter()
            .enumerate()
            .map(|(i, r)| {
                let params = SealParams {
                    origin: &config.origin,
                    seq: LogIndex(first_seq + (start + i) as u64),
                    issued_at: now,
                    pseudonym,
                };
                seal(&r.body, params, &config.key, &mut entropy).map_err(|_| AppendError::Entropy)
            })
            .collect()
    };
    let threads = tfx_protocol::par::cores().min(SEAL_THREADS_MAX);
    if batch.len() < PARALLEL_SEAL_MIN || threads < 2 {
        return seal_range(0, batch);
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .enumerate()
            .skip(1)
            .map(|(n, reqs)| scope.spawn(move || seal_range(n * chunk, reqs)))
            .collect();
        // The sealer takes the first share itself instead of waiting idle.
        let first = seal_range(0, &batch[..chunk.min(batch.len())]);
        // Join every helper before looking at results, so an early error never leaves a panicked
        // helper for the scope to re-raise. A panic while sealing is a bug, not bad input: it
        // fails the batch.
        let parts: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let mut out = first?;
        out.reserve(batch.len() - out.len());
        for part in parts {
            out.extend(part.map_err(|_| AppendError::Store("sealing thread panicked".into()))??);
        }
        Ok(out)
    })
}
