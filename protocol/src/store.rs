//! The `Store` trait (DESIGN §6): what every holder persists — envelopes by (origin, seq),
//! disclosures by record id, complete Merkle nodes, log heads, latest checkpoints, and indexes
//! over the fields the holder was given. `tfx-node` implements it on sled; [`MemoryStore`] serves
//! tests and the simulator.
//!
//! Architecture invariant: a store changes only through [`Store::apply`] of a whole
//! [`AppendBatch`], atomically; [`Store::flush`] makes everything applied so far durable. Callers
//! acknowledge a record only after a flush that follows its batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::disclosure::Disclosure;
use crate::ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
use crate::limits::QUERY_RESULTS_MAX;
use crate::merkle::NodeId;
use crate::record::Header;
use crate::schema::{FieldValue, RecordKind};

/// An origin's log as stored: how many records and the Merkle root over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub size: u64,
    pub root: Hash,
}

/// One record as a holder stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub origin: MemberId,
    pub seq: LogIndex,
    pub id: RecordId,
    pub kind: RecordKind,
    pub issued_at: Timestamp,
    /// Index keys: the subject's USCC and/or pseudonym, whichever this holder was disclosed.
    pub subjects: Vec<String>,
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Vec<u8>>,
}

impl StoredRecord {
    /// Builds the stored form from a verified header and the disclosures this holder keeps.
    pub fn new(
        id: RecordId,
        header: &Header,
        envelope: Vec<u8>,
        disclosures: Vec<Disclosure>,
    ) -> Self {
        let subjects = subjects_of(&disclosures);
        StoredRecord {
            origin: header.origin.clone(),
            seq: header.seq,
            id,
            kind: header.kind,
            issued_at: header.issued_at,
            subjects,
            envelope,
            // Moved, not copied: a catch-up stores millions of these.
            disclosures: disclosures
                .into_iter()
                .map(Disclosure::into_bytes)
                .collect(),
        }
    }
}

impl StoredRecord {
    /// The stored form of a record this node sealed itself (it holds every disclosure).
    pub fn from_sealed(r: crate::record::SealedRecord) -> Self {
        let mut stored = StoredRecord::new(r.id, &r.header, Vec::new(), Vec::new());
        stored.subjects = subjects_of(&r.disclosures);
        stored.envelope = r.envelope;
        stored.disclosures = r
            .disclosures
            .into_iter()
            .map(Disclosure::into_bytes)
            .collect();
        stored
    }
}

/// The subjects (USCC, pseudonym) among stored disclosure bytes; undecodable ones are skipped
/// (everything stored was verified on the way in).
pub fn subjects_of_bytes(disclosures: &[Vec<u8>]) -> Vec<String> {
    let decoded: Vec<Disclosure> = disclosures
        .iter()
        .filter_map(|d| Disclosure::decode(d).ok())
        .collect();
    subjects_of(&decoded)
}

fn subjects_of(disclosures: &[Disclosure]) -> Vec<String> {
    disclosures
        .iter()
        .filter(|d| d.name() == "subject_uscc" || d.name() == "subject_pseudonym")
        .filter_map(|d| d.value().as_text().map(str::to_owned))
        .collect()
}

/// A record as a holder has it: position, envelope and the disclosures it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecord {
    pub seq: LogIndex,
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Vec<u8>>,
}

/// Everything one append writes, applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendBatch {
    pub records: Vec<StoredRecord>,
    pub nodes: Vec<(MemberId, NodeId, Hash)>,
    pub heads: Vec<(MemberId, LogHead)>,
    /// Latest signed checkpoint per origin (replaces the previous one).
    pub checkpoints: Vec<(MemberId, Vec<u8>)>,
    /// Sets (`Some((next, end))`) or clears (`None`) an origin's pending back-fill: records held
    /// with fewer fields than this holder's view, to be completed from the origin. Kept with the
    /// records so a crash cannot forget it.
    pub backfill: Vec<(MemberId, Option<(u64, u64)>)>,
    /// Sets (`Some`, a [`crate::witness::Witnessed`] encoding) or deletes (`None`) the
    /// checkpoint of `(origin, size)` kept with the cosignatures gathered for it.
    pub witnessed: Vec<(MemberId, u64, Option<Vec<u8>>)>,
    /// Verified equivocation evidence against an origin ([`crate::evidence`]); the first piece
    /// per origin is kept, so a frozen origin stays frozen across restarts.
    pub evidence: Vec<(MemberId, Vec<u8>)>,
}

/// A lookup over the index. All given filters apply; results are ordered by issue time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub subject: Option<String>,
    pub kind: Option<RecordKind>,
    /// Inclusive lower bound on issue time.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on issue time.
    pub until: Option<Timestamp>,
    /// At most this many results (capped at [`QUERY_RESULTS_MAX`]).
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            subject: None,
            kind: None,
            since: None,
            until: None,
            limit: QUERY_RESULTS_MAX,
        }
    }
}

impl Query {
    /// Whether an index entry passes the kind and time filters.
    pub fn admits(&self, kind: RecordKind, at: Timestamp) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.since.is_none_or(|s| at >= s)
            && self.until.is_none_or(|u| at < u)
    }
}

/// One query result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub id: RecordId,
    pub origin: MemberId,
    pub seq: LogIndex,
    pub kind: RecordKind,
    pub issued_at: Timestamp,
}

/// Why a batch is not an append: its records for `origin` do not continue the stored log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch does not append to the log of {origin}: expected seq {expected}, got {got}")]
pub struct NotAnAppend {
    pub origin: MemberId,
    pub expected: u64,
    pub got: u64,
}

/// Checks that, for every origin, the batch's records continue the stored log with no gap,
/// overlap or reordering (`head` gives each origin's stored size). Every store runs this in
/// `apply` before writing anything: logs are append-only, and a replayed or overlapping batch
/// must fail rather than corrupt the layout.
pub fn check_append(
    batch: &AppendBatch,
    head: impl Fn(&MemberId) -> u64,
) -> Result<(), NotAnAppend> {
    let mut next: BTreeMap<&MemberId, u64> = BTreeMap::new();
    for r in &batch.records {
        let expected = *next.entry(&r.origin).or_insert_with(|| head(&r.origin));
        if r.seq.0 != expected {
            return Err(NotAnAppend {
                origin: r.origin.clone(),
                expected,
                got: r.seq.0,
            });
        }
        next.insert(&r.origin, expected.saturating_add(1));
    }
    Ok(())
}

/// Persistent state of a holder. Implementations must make `apply` atomic across a crash and
/// `flush` durable, and refuse a batch whose records do not continue each log
/// ([`check_append`]). A reader running beside `apply` may see part of the batch, but never an
/// index entry, head or checkpoint ahead of the records it leads to.
pub trait Store {
    type Error: std::error::Error + Send + Sync + 'static;

    fn apply(&self, batch: &AppendBatch) -> Result<(), Self::Error>;
    fn flush(&self) -> Result<(), Self::Error>;
    /// Applies `batch` and returns once it is durable: a group commit of local appends, whose
    /// records are acknowledged right after. A store that makes a batch durable by itself
    /// (the sled store's write-ahead value log) need not flush everything else with it.
    fn commit(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        self.apply(batch)?;
        self.flush()
    }

    fn origins(&self) -> Result<Vec<MemberId>, Self::Error>;
    fn head(&self, origin: &MemberId) -> Result<Option<LogHead>, Self::Error>;
    fn checkpoint(&self, origin: &MemberId) -> Result<Option<Vec<u8>>, Self::Error>;
    fn node(&self, origin: &MemberId, id: NodeId) -> Result<Option<Hash>, Self::Error>;
    fn envelope(&self, origin: &MemberId, seq: LogIndex) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Envelopes of `origin` from `from` on, at most `limit`, in sequence order.
    fn envelopes(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<(LogIndex, Vec<u8>)>, Self::Error>;
    fn locate(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, Self::Error>;
    fn disclosures(&self, id: &RecordId) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Records of `origin` from `from` on with their disclosures, at most `limit`, in order.
    fn records(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<HeldRecord>, Self::Error>;
    /// Replaces the disclosures held for records already stored — a back-fill adds some, a
    /// purge removes some — and their subject index entries, atomically. Each record must be
    /// stored at its (origin, seq) with the same id (its `envelope` field is ignored): envelopes
    /// and logs never change.
    fn replace_disclosures(&self, records: &[StoredRecord]) -> Result<(), Self::Error>;
    /// Pending back-fills: (origin, next, end).
    fn backfills(&self) -> Result<Vec<(MemberId, u64, u64)>, Self::Error>;
    /// The witnessed checkpoints of `origin`: (size, [`crate::witness::Witnessed`] bytes),
    /// smallest size first.
    fn witnessed(&self, origin: &MemberId) -> Result<Vec<(u64, Vec<u8>)>, Self::Error>;
    /// Every piece of equivocation evidence held: (origin, evidence bytes).
    fn evidence(&self) -> Result<Vec<(MemberId, Vec<u8>)>, Self::Error>;
    fn query(&self, q: &Query) -> Result<Vec<RecordRef>, Self::Error>;
}

/// Why [`Store::replace_disclosures`] refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot replace disclosures of {origin}#{seq}: the store holds no record {id} there")]
pub struct NotStored {
    pub origin: MemberId,
    pub seq: u64,
    pub id: RecordId,
}

/// Merkle nodes below this level are not persisted: [`StoreNodes`] recomputes one from at most
/// 2^7 = 128 envelopes (a 256-leaf block at worst for a whole proof), while storing them would
/// cost about one extra write per append. Nodes at this level and above (one per 256 appends)
/// are stored, so proofs and frontier loads stay O(log n) reads beyond that block.
pub const STORED_LEVEL_MIN: u8 = 8;

/// Reads one origin's Merkle nodes from a store, for proofs and frontier loading: stored nodes
/// from [`STORED_LEVEL_MIN`] up, lower ones hashed from the envelopes. A store read error
/// surfaces as a missing node (and is kept in `error` for the caller to report).
#[derive(Debug)]
pub struct StoreNodes<'a, S: Store> {
    pub store: &'a S,
    pub origin: &'a MemberId,
    pub error: Mutex<Option<String>>,
}

impl<'a, S: Store> StoreNodes<'a, S> {
    pub fn new(store: &'a S, origin: &'a MemberId) -> Self {
        StoreNodes {
            store,
            origin,
            error: Mutex::new(None),
        }
    }

    fn keep<T>(&self, r: Result<T, S::Error>) -> Option<T> {
        r.map_err(|e| {
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert(e.to_string());
            }
        })
        .ok()
    }

    /// The root of the perfect subtree `id`, hashed from its envelopes.
    fn hash_envelopes(&self, id: NodeId) -> Option<Hash> {
        let width = 1usize << id.level;
        let start = id.index.checked_shl(u32::from(id.level))?;
        let envelopes = self.keep(self.store.envelopes(self.origin, LogIndex(start), width))?;
        if envelopes.len() != width
            || envelopes
                .iter()
                .enumerate()
                .any(|(i, (seq, _))| seq.0 != start + i as u64)
        {
            return None;
        }
        let mut level: Vec<Hash> = envelopes
            .iter()
            .map(|(_, e)| crate::merkle::leaf_hash(e))
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| crate::merkle::node_hash(&p[0], &p[1]))
                .collect();
        }
        level.pop()
    }
}

impl<S: Store> crate::merkle::NodeSource for StoreNodes<'_, S> {
    fn node(&self, id: NodeId) -> Option<Hash> {
        if id.level >= STORED_LEVEL_MIN {
            self.keep(self.store.node(self.origin, id)).flatten()
        } else {
            self.hash_envelopes(id)
        }
    }
}

/// In-memory [`Store`] for tests and simulation. Applied batches are immediately "durable".
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    envelopes: BTreeMap<(MemberId, LogIndex), (RecordId, Vec<u8>)>,
    disclosures: HashMap<RecordId, Vec<Vec<u8>>>,
    ids: HashMap<RecordId, (MemberId, LogIndex)>,
    nodes: HashMap<(MemberId, NodeId), Hash>,
    heads: BTreeMap<MemberId, LogHead>,
    checkpoints: BTreeMap<MemberId, Vec<u8>>,
    by_time: BTreeMap<(Timestamp, MemberId, LogIndex), (RecordId, RecordKind)>,
    by_subject: BTreeMap<(String, Timestamp, MemberId, LogIndex), (RecordId, RecordKind)>,
    backfill: BTreeMap<MemberId, (u64, u64)>,
    witnessed: BTreeMap<(MemberId, u64), Vec<u8>>,
    evidence: BTreeMap<MemberId, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryStoreError {
    #[error("memory store lock poisoned")]
    Poisoned,
    #[error(transparent)]
    NotAnAppend(#[from] NotAnAppend),
    #[error(transparent)]
    NotStored(#[from] NotStored),
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> Result<T, MemoryStoreError> {
        let mut guard = self.inner.lock().map_err(|_| MemoryStoreError::Poisoned)?;
        Ok(f(&mut guard))
    }
}

impl Store for MemoryStore {
    type Error = MemoryStoreError;

    fn apply(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        self.with(|m| check_append(batch, |o| m.heads.get(o).map_or(0, |h| h.size)))??;
        self.with(|m| {
            for r in &batch.records {
                let pos = (r.origin.clone(), r.seq);
                m.envelopes.insert(pos.clone(), (r.id, r.envelope.clone()));
                m.disclosures.insert(r.id, r.disclosures.clone());
                m.ids.insert(r.id, pos);
                let entry = (r.id, r.kind);
                m.by_time
                    .insert((r.issued_at, r.origin.clone(), r.seq), entry);
                for s in &r.subjects {
                    m.by_subject
                        .insert((s.clone(), r.issued_at, r.origin.clone(), r.seq), entry);
                }
            }
            for (origin, id, hash) in &batch.nodes {
                m.nodes.insert((origin.clone(), *id), *hash);
            }
            for (origin, head) in &batch.heads {
                m.heads.insert(origin.clone(), *head);
            }
            for (origin, cp) in &batch.checkpoints {
                m.checkpoints.insert(origin.clone(), cp.clone());
            }
            for (origin, range) in &batch.backfill {
                match range {
                    Some(r) => m.backfill.insert(origin.clone(), *r),
                    None => m.backfill.remove(origin),
                };
            }
            for (origin, size, w) in &batch.witnessed {
                let key = (origin.clone(), *size);
                match w {
                    Some(w) => m.witnessed.insert(key, w.clone()),
                    None => m.witnessed.remove(&key),
                };
            }
            for (origin, e) in &batch.evidence {
                m.evidence
                    .entry(origin.clone())
                    .or_insert_with(|| e.clone());
            }
        })
    }

    fn witnessed(&self, origin: &MemberId) -> Result<Vec<(u64, Vec<u8>)>, Self::Error> {
        self.with(|m| {
            m.witnessed
                .range((origin.clone(), 0)..=(origin.clone(), u64::MAX))
                .map(|((_, size), w)| (*size, w.clone()))
                .collect()
        })
    }

    fn evidence(&self) -> Result<Vec<(MemberId, Vec<u8>)>, Self::Error> {
        self.with(|m| {
            m.evidence
                .iter()
                .map(|(o, e)| (o.clone(), e.clone()))
                .collect()
        })
    }

    fn flush(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn origins(&self) -> Result<Vec<MemberId>, Self::Error> {
        self.with(|m| m.heads.keys().cloned().collect())
    }

    fn head(&self, origin: &MemberId) -> Result<Option<LogHead>, Self::Error> {
        self.with(|m| m.heads.get(origin).copied())
    }

    fn checkpoint(&self, origin: &MemberId) -> Result<Option<Vec<u8>>, Self::Error> {
        self.with(|m| m.checkpoints.get(origin).cloned())
    }

    fn node(&self, origin: &MemberId, id: NodeId) -> Result<Option<Hash>, Self::Error> {
        self.with(|m| m.nodes.get(&(origin.clone(), id)).copied())
    }

    fn envelope(&self, origin: &MemberId, seq: LogIndex) -> Result<Option<Vec<u8>>, Self::Error> {
        self.with(|m| {
            m.envelopes
                .get(&(origin.clone(), seq))
                .map(|(_, e)| e.clone())
        })
    }

    fn envelopes(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<(LogIndex, Vec<u8>)>, Self::Error> {
        self.with(|m| {
            m.envelopes
                .range((origin.clone(), from)..)
                .take_while(|((o, _), _)| o == origin)
                .take(limit)
                .map(|((_, seq), (_, e))| (*seq, e.clone()))
                .collect()
        })
    }

    fn locate(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, Self::Error> {
        self.with(|m| m.ids.get(id).cloned())
    }

    fn disclosures(&self, id: &RecordId) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.with(|m| m.disclosures.get(id).cloned().unwrap_or_default())
    }

    fn records(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<HeldRecord>, Self::Error> {
        self.with(|m| {
            m.envelopes
                .range((origin.clone(), from)..)
                .take_while(|((o, _), _)| o == origin)
                .take(limit)
                .map(|((_, seq), (id, e))| HeldRecord {
                    seq: *seq,
                    envelope: e.clone(),
                    disclosures: m.disclosures.get(id).cloned().unwrap_or_default(),
                })
                .collect()
        })
    }

    fn backfills(&self) -> Result<Vec<(MemberId, u64, u64)>, Self::Error> {
        self.with(|m| {
            m.backfill
                .iter()
                .map(|(o, (n, e))| (o.clone(), *n, *e))
                .collect()
        })
    }

    fn replace_disclosures(&self, records: &[StoredRecord]) -> Result<(), Self::Error> {
        self.with(|m| {
            for r in records {
                let pos = (r.origin.clone(), r.seq);
                if m.envelopes.get(&pos).map(|(id, _)| id) != Some(&r.id) {
                    return Err(NotStored {
                        origin: r.origin.clone(),
                        seq: r.seq.0,
                        id: r.id,
                    }
                    .into());
                }
            }
            for r in records {
                let key = |s: &String| (s.clone(), r.issued_at, r.origin.clone(), r.seq);
                // The old entries are the subjects the held disclosures name: remove just those.
                let held = m.disclosures.get(&r.id).cloned().unwrap_or_default();
                for s in subjects_of_bytes(&held) {
                    m.by_subject.remove(&key(&s));
                }
                for s in &r.subjects {
                    m.by_subject.insert(key(s), (r.id, r.kind));
                }
                m.disclosures.insert(r.id, r.disclosures.clone());
            }
            Ok(())
        })?
    }

    fn query(&self, q: &Query) -> Result<Vec<RecordRef>, Self::Error> {
        let limit = q.limit.min(QUERY_RESULTS_MAX);
        let to_ref = |(at, origin, seq): (Timestamp, MemberId, LogIndex),
                      (id, kind): (RecordId, RecordKind)| {
            RecordRef {
                id,
                origin,
                seq,
                kind,
                issued_at: at,
            }
        };
        self.with(|m| match &q.subject {
            Some(s) => m
                .by_subject
                .range((s.clone(), Timestamp(0), MemberId::min(), LogIndex(0))..)
                .take_while(|((subject, ..), _)| subject == s)
                .filter(|((_, at, ..), (_, kind))| q.admits(*kind, *at))
                .take(limit)
                .map(|((_, at, o, seq), v)| to_ref((*at, o.clone(), *seq), *v))
                .collect(),
            None => m
                .by_time
                .range(
                    (
                        q.since.unwrap_or(Timestamp(0)),
                        MemberId::min(),
                        LogIndex(0),
                    )..,
                )
                .filter(|((at, ..), (_, kind))| q.admits(*kind, *at))
                .take(limit)
                .map(|((at, o, seq), v)| to_ref((*at, o.clone(), *seq), *v))
                .collect(),
        })
    }
}

impl MemberId {
    /// The smallest member id in sort order, as a range bound.
    pub(crate) fn min() -> MemberId {
        MemberId::new("0").unwrap_or_else(|_| unreachable!("\"0\" is a valid member id"))
    }
}

/// The value of field `name` among a record's disclosures, if disclosed.
pub fn disclosed<'a>(disclosures: &'a [Disclosure], name: &str) -> Option<&'a FieldValue> {
    disclosures
        .iter()
        .find(|d| d.name() == name)
        .map(Disclosure::value)
}
