//! Origin logs as a holder keeps them: planning a local append (sequence numbers, Merkle nodes,
//! head and a freshly signed checkpoint, all in one [`AppendBatch`]) and re-verifying a stored log
//! end to end.
//!
//! Architecture invariant: for the local origin, every batch carries a checkpoint covering all
//! of its records, so the latest checkpoint always covers every durable local record.

use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::ids::{LogIndex, MemberId, RecordId, Timestamp};
use crate::keys::SigningKey;
use crate::merkle::{leaf_hash, Frontier, NodeId, ProofError};
use crate::record::{verify_disclosures, verify_envelope, KeyResolver, SealedRecord, VerifyError};
use crate::store::{AppendBatch, LogHead, Store, StoreNodes, StoredRecord, STORED_LEVEL_MIN};

/// Envelopes read per store call while verifying a log.
const VERIFY_PAGE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("store: {0}")]
    Store(String),
    #[error("log of {origin}: {error}")]
    Merkle { origin: MemberId, error: ProofError },
    #[error("sealed record has seq {got}, log expects {want}")]
    OutOfOrder { got: LogIndex, want: LogIndex },
    #[error("sealed record is from origin {got}, this log is {want}")]
    WrongOrigin { got: MemberId, want: MemberId },
}

/// The local origin's log: its frontier, which is all an append needs.
#[derive(Debug, Clone)]
pub struct LocalLog {
    origin: MemberId,
    frontier: Frontier,
}

impl LocalLog {
    /// Loads the origin's frontier from the store (O(log n) node reads).
    pub fn open<S: Store>(store: &S, origin: MemberId) -> Result<Self, LogError> {
        let size = store
            .head(&origin)
            .map_err(|e| LogError::Store(e.to_string()))?
            .map_or(0, |h| h.size);
        let nodes = StoreNodes::new(store, &origin);
        let frontier = Frontier::load(&nodes, size).map_err(|error| LogError::Merkle {
            origin: origin.clone(),
            error,
        })?;
        Ok(LocalLog { origin, frontier })
    }

    pub fn origin(&self) -> &MemberId {
        &self.origin
    }

    pub fn next_seq(&self) -> LogIndex {
        LogIndex(self.frontier.size())
    }

    pub fn head(&self) -> LogHead {
        LogHead {
            size: self.frontier.size(),
            root: self.frontier.root(),
        }
    }

    /// Plans the batch that appends `sealed` (which must continue the log in order) and signs a
    /// checkpoint over the result. The log advances only when the caller calls
    /// [`LocalLog::advance`]: a caller that advances before the batch is durable (the pipelined
    /// appender does) must stop appending after any failed write, because its log is then ahead
    /// of the store. Takes the records by value: their bytes move into the batch.
    pub fn plan(
        &self,
        sealed: Vec<SealedRecord>,
        now: Timestamp,
        key: &SigningKey,
    ) -> Result<(AppendBatch, Frontier), LogError> {
        let mut frontier = self.frontier.clone();
        let mut batch = AppendBatch::default();
        for r in sealed {
            if r.header.origin != self.origin {
                return Err(LogError::WrongOrigin {
                    got: r.header.origin.clone(),
                    want: self.origin.clone(),
                });
            }
            if r.header.seq.0 != frontier.size() {
                return Err(LogError::OutOfOrder {
                    got: r.header.seq,
                    want: LogIndex(frontier.size()),
                });
            }
            for (id, hash) in frontier.push(leaf_hash(&r.envelope)) {
                if id.level >= STORED_LEVEL_MIN {
                    batch.nodes.push((self.origin.clone(), id, hash));
                }
            }
            batch.records.push(StoredRecord::from_sealed(r));
        }
        let head = LogHead {
            size: frontier.size(),
            root: frontier.root(),
        };
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: head.size,
            root: head.root,
            time: now,
        }
        .sign(key);
        batch.heads.push((self.origin.clone(), head));
        batch
            .checkpoints
            .push((self.origin.clone(), checkpoint.bytes));
        Ok((batch, frontier))
    }

    pub fn advance(&mut self, frontier: Frontier) {
        self.frontier = frontier;
    }
}

/// What [`verify_log`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub origin: MemberId,
    pub size: u64,
    pub checkpoint_size: u64,
    pub disclosures_verified: u64,
    /// Witnessed checkpoints kept with cosignatures (SPEC §17), each checked against the log.
    pub witnessed: u64,
    /// Cosignatures among them, each verified.
    pub cosignatures: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogVerifyError {
    #[error("store: {0}")]
    Store(String),
    #[error("{origin} has no log in this store")]
    NoLog { origin: MemberId },
    #[error("{origin} seq {seq}: envelope missing")]
    MissingEnvelope { origin: MemberId, seq: u64 },
    #[error("{origin} seq {seq}: {error}")]
    Record {
        origin: MemberId,
        seq: u64,
        error: VerifyError,
    },
    #[error("{origin} seq {seq}: envelope claims {claimed_origin} seq {claimed_seq}")]
    WrongPosition {
        origin: MemberId,
        seq: u64,
        claimed_origin: MemberId,
        claimed_seq: u64,
    },
    #[error("{origin} seq {seq}: record id index points elsewhere")]
    IdIndex { origin: MemberId, seq: u64 },
    #[error("{origin}: stored merkle node level {} index {} does not match the envelopes", .node.level, .node.index)]
    NodeMismatch { origin: MemberId, node: NodeId },
    #[error("{origin}: stored head (size {size}) does not match the envelopes")]
    HeadMismatch { origin: MemberId, size: u64 },
    #[error("{origin}: a record is stored at seq {size}, past the head")]
    BeyondHead { origin: MemberId, size: u64 },
    #[error("{origin}: no signed checkpoint")]
    NoCheckpoint { origin: MemberId },
    #[error("{origin}: checkpoint: {error}")]
    Checkpoint {
        origin: MemberId,
        error: VerifyError,
    },
    #[error("{origin}: checkpoint is for {claimed}, not this origin")]
    CheckpointOrigin { origin: MemberId, claimed: MemberId },
    #[error("{origin}: checkpoint size {checkpoint} exceeds the log size {size}")]
    CheckpointBeyondLog {
        origin: MemberId,
        checkpoint: u64,
        size: u64,
    },
    #[error("{origin}: checkpoint root at size {size} does not match the log")]
    CheckpointRoot { origin: MemberId, size: u64 },
    #[error("{origin}: witnessed checkpoint at size {size}: {detail}")]
    Witnessed {
        origin: MemberId,
        size: u64,
        detail: String,
    },
}

/// Re-verifies one origin's stored log: every envelope's signature and position, every stored
/// disclosure against its header, the id index, every stored Merkle node, the head, and the
/// latest checkpoint's signature and root. `progress` is told the records checked so far.
pub fn verify_log<S: Store>(
    store: &S,
    origin: &MemberId,
    keys: &dyn KeyResolver,
    progress: &mut dyn FnMut(u64),
) -> Result<LogReport, LogVerifyError> {
    let st = |e: S::Error| LogVerifyError::Store(e.to_string());
    let o = || origin.clone();
    let head = store
        .head(origin)
        .map_err(st)?
        .ok_or_else(|| LogVerifyError::NoLog { origin: o() })?;
    let cp_bytes = store
        .checkpoint(origin)
        .map_err(st)?
        .ok_or_else(|| LogVerifyError::NoCheckpoint { origin: o() })?;
    let cp = verify_checkpoint(&cp_bytes, keys)
        .map_err(|error| LogVerifyError::Checkpoint { origin: o(), error })?;
    if &cp.checkpoint.origin != origin {
        return Err(LogVerifyError::CheckpointOrigin {
            origin: o(),
            claimed: cp.checkpoint.origin,
        });
    }
    if cp.checkpoint.size > head.size {
        return Err(LogVerifyError::CheckpointBeyondLog {
            origin: o(),
            checkpoint: cp.checkpoint.size,
            size: head.size,
        });
    }
    // Every retained checkpoint must commit to this very log: checked at its size on the way.
    // (Two checkpoints that each match the log's root at their size are consistent.)
    let mut expected = std::collections::BTreeMap::new();
    expected.insert(cp.checkpoint.size, (cp.checkpoint.root, false));
    let mut cosignatures = 0u64;
    let witnessed = store.witnessed(origin).map_err(st)?;
    for (size, bytes) in &witnessed {
        let bad = |detail: String| LogVerifyError::Witnessed {
            origin: o(),
            size: *size,
            detail,
        };
        let w = crate::witness::Witnessed::decode(bytes).map_err(|e| bad(e.to_string()))?;
        let c = verify_checkpoint(&w.checkpoint, keys)
            .map_err(|e| bad(e.to_string()))?
            .checkpoint;
        if &c.origin != origin || c.size != *size || c.size > head.size {
            return Err(bad(format!(
                "it is {}'s of size {} (the log holds {})",
                c.origin, c.size, head.size
            )));
        }
        let (witnesses, errors) = crate::witness::count_witnesses(&c, &w.cosignatures, keys);
        if let Some(e) = errors.first() {
            return Err(bad(e.to_string()));
        }
        cosignatures += witnesses.len() as u64;
        expected.insert(c.size, (c.root, true));
    }
    let mut frontier = Frontier::default();
    let mut disclosures_verified = 0u64;
    let check_cp = |f: &Frontier| match expected.get(&f.size()) {
        Some((root, witnessed)) if *root != f.root() => Err(if *witnessed {
            LogVerifyError::Witnessed {
                origin: o(),
                size: f.size(),
                detail: "its root does not match the log".into(),
            }
        } else {
            LogVerifyError::CheckpointRoot {
                origin: o(),
                size: f.size(),
            }
        }),
        _ => Ok(()),
    };
    check_cp(&frontier)?;
    while frontier.size() < head.size {
        let from = frontier.size();
        let page = store
            .envelopes(origin, LogIndex(from), VERIFY_PAGE)
            .map_err(st)?;
        if page.is_empty() {
            return Err(LogVerifyError::MissingEnvelope {
                origin: o(),
                seq: from,
            });
        }
        for (seq, envelope) in page.into_iter().take((head.size - from) as usize) {
            let expected = frontier.size();
            if seq.0 != expected {
                return Err(LogVerifyError::MissingEnvelope {
                    origin: o(),
                    seq: expected,
                });
            }
            disclosures_verified += verify_stored_record(store, origin, seq, &envelope, keys)?;
            for (node, hash) in frontier.push(leaf_hash(&envelope)) {
                // Lower nodes are not stored (they are recomputed from these very envelopes).
                if node.level >= STORED_LEVEL_MIN
                    && store.node(origin, node).map_err(st)? != Some(hash)
                {
                    return Err(LogVerifyError::NodeMismatch { origin: o(), node });
                }
            }
            check_cp(&frontier)?;
        }
        progress(frontier.size());
    }
    if frontier.root() != head.root {
        return Err(LogVerifyError::HeadMismatch {
            origin: o(),
            size: head.size,
        });
    }
    // Nothing may be stored past the head: a record there would be outside every checkpoint.
    if store
        .envelope(origin, LogIndex(head.size))
        .map_err(st)?
        .is_some()
    {
        return Err(LogVerifyError::BeyondHead {
            origin: o(),
            size: head.size,
        });
    }
    Ok(LogReport {
        origin: o(),
        size: head.size,
        checkpoint_size: cp.checkpoint.size,
        disclosures_verified,
        witnessed: witnessed.len() as u64,
        cosignatures,
    })
}

/// Verifies one stored envelope, its position, id index and disclosures; returns how many
/// disclosures it checked.
fn verify_stored_record<S: Store>(
    store: &S,
    origin: &MemberId,
    seq: LogIndex,
    envelope: &[u8],
    keys: &dyn KeyResolver,
) -> Result<u64, LogVerifyError> {
    let st = |e: S::Error| LogVerifyError::Store(e.to_string());
    let rec = |error| LogVerifyError::Record {
        origin: origin.clone(),
        seq: seq.0,
        error,
    };
    let v = verify_envelope(envelope, keys).map_err(rec)?;
    if &v.header.origin != origin || v.header.seq != seq {
        return Err(LogVerifyError::WrongPosition {
            origin: origin.clone(),
            seq: seq.0,
            claimed_origin: v.header.origin,
            claimed_seq: v.header.seq.0,
        });
    }
    if store.locate(&RecordId::of_envelope(envelope)).map_err(st)? != Some((origin.clone(), seq)) {
        return Err(LogVerifyError::IdIndex {
            origin: origin.clone(),
            seq: seq.0,
        });
    }
    let disclosures = store.disclosures(&v.id).map_err(st)?;
    verify_disclosures(&v.header, &disclosures).map_err(rec)?;
    Ok(disclosures.len() as u64)
}
