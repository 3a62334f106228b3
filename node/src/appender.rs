//! Group commit for local appends (DESIGN §6). Submitters hand validated bodies to one committer
//! thread through a bounded queue; the committer takes everything waiting (up to
//! [`COMMIT_BATCH_MAX`]), assigns sequence numbers, seals the records in parallel, plans the Merkle
//! update and a signed checkpoint, applies it as one atomic batch, flushes once, and only then
//! answers every submitter. Many concurrent appends thus share one fsync and one checkpoint
//! signature.
//!
//! Architecture invariant: a receipt is sent only after the flush that made its record durable.
//! If a write or flush fails the appender stops accepting work (the store's state is unknown
//! until it is reopened and re-verified), and every waiting submitter gets the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tfx_protocol::derive::PseudonymKey;
use tfx_protocol::ids::{LogIndex, MemberId, RecordId, Timestamp};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::{LocalLog, LogError};
use tfx_protocol::record::{seal, SealParams, SealedRecord};
use tfx_protocol::store::Store;
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
    #[error("opening the local log: {0}")]
    Open(String),
}

/// Who the node appends as.
pub struct AppenderConfig {
    pub origin: MemberId,
    pub key: SigningKey,
    pub pseudonym: Option<PseudonymKey>,
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
    /// Applying the batch to the store.
    pub apply_ns: AtomicU64,
    /// Flushing (fsync).
    pub flush_ns: AtomicU64,
}

/// A point-in-time copy of [`CommitStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStatsSnapshot {
    pub batches: u64,
    pub records: u64,
    pub seal_ns: u64,
    pub plan_ns: u64,
    pub apply_ns: u64,
    pub flush_ns: u64,
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
            apply_ns: get(&self.apply_ns),
            flush_ns: get(&self.flush_ns),
        }
    }
}

struct Request {
    body: RecordBody,
    reply: oneshot::Sender<Result<AppendReceipt, AppendError>>,
}

/// Handle to the committer thread. Dropping it (or [`Appender::shutdown`]) lets the committer
/// finish what is queued and exit.
#[derive(Debug)]
pub struct Appender {
    tx: Option<mpsc::Sender<Request>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<CommitStats>,
}

impl Appender {
    /// Opens the origin's log in `store` and starts the committer thread.
    pub fn start<S: Store + Send + Sync + 'static>(
        store: Arc<S>,
        config: AppenderConfig,
    ) -> Result<Self, AppendError> {
        let log = LocalLog::open(&*store, config.origin.clone())
            .map_err(|e| AppendError::Open(e.to_string()))?;
        let (tx, rx) = mpsc::channel(APPEND_QUEUE_CAPACITY);
        let stats = Arc::new(CommitStats::default());
        let committer = Committer {
            store,
            config,
            log,
            last_time: Timestamp(0),
            failed: None,
            stats: stats.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("tfx-committer".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| AppendError::Open(format!("spawning committer thread: {e}")))?;
        Ok(Appender {
            tx: Some(tx),
            worker: Some(worker),
            stats,
        })
    }

    /// Cumulative committer timings.
    pub fn stats(&self) -> CommitStatsSnapshot {
        self.stats.snapshot()
    }

    /// Appends a record and returns once it is durable.
    pub async fn append(&self, body: RecordBody) -> Result<AppendReceipt, AppendError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Request { body, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// [`Appender::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, body: RecordBody) -> Result<AppendReceipt, AppendError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.blocking_send(Request { body, reply })
            .map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// Stops accepting appends, lets the committer drain the queue, and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::error!("committer thread panicked");
            }
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Committer<S> {
    store: Arc<S>,
    config: AppenderConfig,
    log: LocalLog,
    /// Issue times never go backwards within a log, even if the wall clock does.
    last_time: Timestamp,
    failed: Option<AppendError>,
    stats: Arc<CommitStats>,
}

impl<S: Store> Committer<S> {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < COMMIT_BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let results = match &self.failed {
                Some(e) => Err(e.clone()),
                None => self.commit(&batch),
            };
            match results {
                Ok(receipts) => {
                    for (req, receipt) in batch.into_iter().zip(receipts) {
                        // A submitter that gave up waiting is not an error: its record is durable.
                        let _ = req.reply.send(Ok(receipt));
                    }
                }
                Err(e) => {
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn commit(&mut self, batch: &[Request]) -> Result<Vec<AppendReceipt>, AppendError> {
        let now = Timestamp(crate::clock::now().0.max(self.last_time.0));
        let first_seq = self.log.next_seq().0;
        let t = Instant::now();
        let sealed = seal_all(&self.config, batch, first_seq, now)?;
        let t = CommitStats::add(&self.stats.seal_ns, t);
        let (plan, frontier) =
            self.log
                .plan(&sealed, now, &self.config.key)
                .map_err(|e| match e {
                    LogError::Store(s) => AppendError::Store(s),
                    other => AppendError::Store(other.to_string()),
                })?;
        let t = CommitStats::add(&self.stats.plan_ns, t);
        let durable = self.store.apply(&plan).and_then(|()| {
            let t = CommitStats::add(&self.stats.apply_ns, t);
            let flushed = self.store.flush();
            CommitStats::add(&self.stats.flush_ns, t);
            flushed
        });
        if let Err(e) = durable {
            let err = AppendError::Store(e.to_string());
            tracing::error!(error = %e, "store write failed; appender stopped");
            self.failed = Some(err.clone());
            return Err(err);
        }
        self.log.advance(frontier);
        self.last_time = now;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .records
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        tracing::debug!(
            records = sealed.len(),
            size = self.log.next_seq().0,
            "group commit"
        );
        Ok(sealed
            .iter()
            .map(|r| AppendReceipt {
                id: r.id,
                seq: r.header.seq,
                issued_at: now,
            })
            .collect())
    }
}

/// Seals the batch, on several threads when it is large enough to pay for them.
fn seal_all(
    config: &AppenderConfig,
    batch: &[Request],
    first_seq: u64,
    now: Timestamp,
) -> Result<Vec<SealedRecord>, AppendError> {
    let seal_range = |start: usize, reqs: &[Request]| -> Result<Vec<SealedRecord>, AppendError> {
        let mut entropy = SystemEntropy::new();
        reqs.iter()
            .enumerate()
            .map(|(i, r)| {
                let params = SealParams {
                    origin: &config.origin,
                    seq: LogIndex(first_seq + (start + i) as u64),
                    issued_at: now,
                    pseudonym: config.pseudonym.as_ref(),
                };
                seal(&r.body, params, &config.key, &mut entropy).map_err(|_| AppendError::Entropy)
            })
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(SEAL_THREADS_MAX);
    if batch.len() < PARALLEL_SEAL_MIN || threads < 2 {
        return seal_range(0, batch);
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .enumerate()
            .map(|(n, reqs)| scope.spawn(move || seal_range(n * chunk, reqs)))
            .collect();
        let mut out = Vec::with_capacity(batch.len());
        for h in handles {
            // A panic while sealing is a bug, not bad input; surface it as a failed batch.
            let part = h
                .join()
                .map_err(|_| AppendError::Store("sealing thread panicked".into()))??;
            out.extend(part);
        }
        Ok(out)
    })
}
