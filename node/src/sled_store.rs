//! The node's [`Store`] on sled 0.34. Everything lives in one sled tree under one-byte keyspace
//! prefixes, so that an append — envelope, disclosures, id index, Merkle nodes, head, checkpoint,
//! query indexes — is a single `apply_batch`, which sled makes atomic across crashes. (Separate
//! trees would need sled's multi-tree transactions, several times slower; see ARCHITECTURE.md.)
//!
//! Keys (big-endian integers, origin = length byte + id bytes, so prefixes never collide):
//!
//! | prefix | key                                   | value                              |
//! |--------|---------------------------------------|------------------------------------|
//! | `E`    | origin, seq u64                       | envelope                           |
//! | `D`    | record id                             | disclosures, each u32 length + bytes |
//! | `I`    | record id                             | origin, seq u64                    |
//! | `N`    | origin, level u8, index u64           | Merkle node (levels ≥ 1 only)       |
//! | `H`    | origin                                | size u64, root                     |
//! | `C`    | origin                                | latest signed checkpoint           |
//! | `T`    | issued_at u64, origin, seq            | record id, kind u8                 |
//! | `S`    | subject (len u8 + bytes), issued_at, origin, seq | record id, kind u8      |
//! | `M`    | name                                  | node metadata (`format` = u32)     |
//!
//! Level-0 Merkle nodes (leaf hashes) are not stored: they are recomputed from `E`, saving one
//! key per record on the hot path.

use std::path::Path;

use tfx_protocol::ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
use tfx_protocol::limits::QUERY_RESULTS_MAX;
use tfx_protocol::merkle::{leaf_hash, NodeId};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::{AppendBatch, LogHead, Query, RecordRef, Store};

/// Version of the on-disk layout above. Bumped on any incompatible change; a binary opens its own
/// version and refuses newer ones with a clear message.
pub const STORE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SledStoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("data directory format {found} is newer than this tfx-node supports ({STORE_FORMAT}); upgrade tfx-node")]
    NewerFormat { found: u32 },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

/// A sled-backed store. Cheap to clone (sled handles are reference-counted).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
}

const E: u8 = b'E';
const D: u8 = b'D';
const I: u8 = b'I';
const N: u8 = b'N';
const H: u8 = b'H';
const C: u8 = b'C';
const T: u8 = b'T';
const S: u8 = b'S';
const M: u8 = b'M';

fn push_origin(k: &mut Vec<u8>, origin: &MemberId) {
    // Member ids are ≤ 64 bytes (protocol limit), so one length byte suffices.
    k.push(origin.as_str().len() as u8);
    k.extend_from_slice(origin.as_str().as_bytes());
}

fn origin_key(prefix: u8, origin: &MemberId) -> Vec<u8> {
    let mut k = vec![prefix];
    push_origin(&mut k, origin);
    k
}

fn seq_key(prefix: u8, origin: &MemberId, seq: u64) -> Vec<u8> {
    let mut k = origin_key(prefix, origin);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn id_key(prefix: u8, id: &RecordId) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&id.0);
    k
}

fn kind_byte(kind: RecordKind) -> u8 {
    RecordKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn corrupt(what: &str) -> SledStoreError {
    SledStoreError::Corrupt(what.to_string())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, SledStoreError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("short integer"))
}

/// Parses a length-prefixed origin at `at`; returns it and the offset just past it.
fn origin_at(b: &[u8], at: usize) -> Result<(MemberId, usize), SledStoreError> {
    let len = *b.get(at).ok_or_else(|| corrupt("short origin"))? as usize;
    let id = b
        .get(at + 1..at + 1 + len)
        .ok_or_else(|| corrupt("short origin"))?;
    let id = std::str::from_utf8(id)
        .ok()
        .and_then(|s| MemberId::new(s).ok())
        .ok_or_else(|| corrupt("bad origin"))?;
    Ok((id, at + 1 + len))
}

/// Parses `origin, seq` from `b` starting at `at`.
fn origin_seq_at(b: &[u8], at: usize) -> Result<(MemberId, LogIndex), SledStoreError> {
    let (id, end) = origin_at(b, at)?;
    Ok((id, LogIndex(u64_at(b, end)?)))
}

fn index_value(id: &RecordId, kind: RecordKind) -> Vec<u8> {
    let mut v = id.0.to_vec();
    v.push(kind_byte(kind));
    v
}

fn parse_index_value(v: &[u8]) -> Result<(RecordId, RecordKind), SledStoreError> {
    let id: [u8; 32] = v
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short index entry"))?;
    let kind = v
        .get(32)
        .and_then(|b| RecordKind::ALL.get(*b as usize))
        .ok_or_else(|| corrupt("bad kind"))?;
    Ok((RecordId(id), *kind))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, checking the on-disk format version.
    pub fn open(dir: &Path) -> Result<Self, SledStoreError> {
        // Flushing is ours to do (group commit); sled's background flusher would only add fsyncs.
        let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
        let format_key = [M, b'f', b'o', b'r', b'm', b'a', b't'];
        match db.get(format_key)? {
            None => {
                db.insert(format_key, &STORE_FORMAT.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt("format"))?;
                if found > STORE_FORMAT {
                    return Err(SledStoreError::NewerFormat { found });
                }
            }
        }
        Ok(SledStore { db })
    }

    /// Bytes sled reports on disk.
    pub fn size_on_disk(&self) -> Result<u64, SledStoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Scans an index whose keys are `prefix ‖ issued_at ‖ origin ‖ seq`, from `q.since` on.
    fn scan_index(&self, prefix: Vec<u8>, q: &Query) -> Result<Vec<RecordRef>, SledStoreError> {
        let limit = q.limit.min(QUERY_RESULTS_MAX);
        let at_offset = prefix.len();
        let mut start = prefix.clone();
        start.extend_from_slice(&q.since.unwrap_or(Timestamp(0)).0.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.db.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let at = Timestamp(u64_at(&k, at_offset)?);
            if q.until.is_some_and(|u| at >= u) {
                break;
            }
            let (id, kind) = parse_index_value(&v)?;
            if q.admits(kind, at) {
                let (origin, seq) = origin_seq_at(&k, at_offset + 8)?;
                out.push(RecordRef {
                    id,
                    origin,
                    seq,
                    kind,
                    issued_at: at,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn encode_disclosures(list: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(list.iter().map(|d| d.len() + 4).sum());
    for d in list {
        v.extend_from_slice(&(d.len() as u32).to_be_bytes());
        v.extend_from_slice(d);
    }
    v
}

fn decode_disclosures(mut b: &[u8]) -> Result<Vec<Vec<u8>>, SledStoreError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = b
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| corrupt("disclosure length"))?;
        let d = b
            .get(4..4 + len as usize)
            .ok_or_else(|| corrupt("disclosure bytes"))?;
        out.push(d.to_vec());
        b = &b[4 + len as usize..];
    }
    Ok(out)
}

impl Store for SledStore {
    type Error = SledStoreError;

    fn apply(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        let mut b = sled::Batch::default();
        for r in &batch.records {
            b.insert(seq_key(E, &r.origin, r.seq.0), r.envelope.as_slice());
            b.insert(id_key(D, &r.id), encode_disclosures(&r.disclosures));
            b.insert(
                id_key(I, &r.id),
                seq_key(0, &r.origin, r.seq.0)[1..].to_vec(),
            );
            let mut tail = r.issued_at.0.to_be_bytes().to_vec();
            push_origin(&mut tail, &r.origin);
            tail.extend_from_slice(&r.seq.0.to_be_bytes());
            let value = index_value(&r.id, r.kind);
            let mut tk = vec![T];
            tk.extend_from_slice(&tail);
            b.insert(tk, value.clone());
            for s in r
                .subjects
                .iter()
                .filter(|s| s.len() <= usize::from(u8::MAX))
            {
                let mut sk = vec![S, s.len() as u8];
                sk.extend_from_slice(s.as_bytes());
                sk.extend_from_slice(&tail);
                b.insert(sk, value.clone());
            }
        }
        for (origin, id, hash) in batch.nodes.iter().filter(|(_, id, _)| id.level > 0) {
            let mut k = origin_key(N, origin);
            k.push(id.level);
            k.extend_from_slice(&id.index.to_be_bytes());
            b.insert(k, &hash[..]);
        }
        for (origin, head) in &batch.heads {
            let mut v = head.size.to_be_bytes().to_vec();
            v.extend_from_slice(&head.root);
            b.insert(origin_key(H, origin), v);
        }
        for (origin, cp) in &batch.checkpoints {
            b.insert(origin_key(C, origin), cp.as_slice());
        }
        Ok(self.db.apply_batch(b)?)
    }

    fn flush(&self) -> Result<(), Self::Error> {
        self.db.flush()?;
        Ok(())
    }

    fn origins(&self) -> Result<Vec<MemberId>, Self::Error> {
        self.db
            .scan_prefix([H])
            .keys()
            .map(|k| Ok(origin_at(&k?, 1)?.0))
            .collect()
    }

    fn head(&self, origin: &MemberId) -> Result<Option<LogHead>, Self::Error> {
        let Some(v) = self.db.get(origin_key(H, origin))? else {
            return Ok(None);
        };
        let root: Hash = v
            .get(8..40)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupt("head"))?;
        Ok(Some(LogHead {
            size: u64_at(&v, 0)?,
            root,
        }))
    }

    fn checkpoint(&self, origin: &MemberId) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.db.get(origin_key(C, origin))?.map(|v| v.to_vec()))
    }

    fn node(&self, origin: &MemberId, id: NodeId) -> Result<Option<Hash>, Self::Error> {
        if id.level == 0 {
            return Ok(self
                .envelope(origin, LogIndex(id.index))?
                .map(|e| leaf_hash(&e)));
        }
        let mut k = origin_key(N, origin);
        k.push(id.level);
        k.extend_from_slice(&id.index.to_be_bytes());
        match self.db.get(k)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                v.as_ref().try_into().map_err(|_| corrupt("merkle node"))?,
            )),
        }
    }

    fn envelope(&self, origin: &MemberId, seq: LogIndex) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.db.get(seq_key(E, origin, seq.0))?.map(|v| v.to_vec()))
    }

    fn envelopes(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<(LogIndex, Vec<u8>)>, Self::Error> {
        let prefix = origin_key(E, origin);
        let start = seq_key(E, origin, from.0);
        let mut out = Vec::new();
        for kv in self.db.range(start..).take(limit) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((LogIndex(u64_at(&k, prefix.len())?), v.to_vec()));
        }
        Ok(out)
    }

    fn locate(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, Self::Error> {
        match self.db.get(id_key(I, id))? {
            None => Ok(None),
            Some(v) => Ok(Some(origin_seq_at(&v, 0)?)),
        }
    }

    fn disclosures(&self, id: &RecordId) -> Result<Vec<Vec<u8>>, Self::Error> {
        match self.db.get(id_key(D, id))? {
            None => Ok(Vec::new()),
            Some(v) => decode_disclosures(&v),
        }
    }

    fn query(&self, q: &Query) -> Result<Vec<RecordRef>, Self::Error> {
        match &q.subject {
            Some(s) if s.len() <= usize::from(u8::MAX) => {
                let mut prefix = vec![S, s.len() as u8];
                prefix.extend_from_slice(s.as_bytes());
                self.scan_index(prefix, q)
            }
            // Longer subjects are never indexed (apply skips them), so nothing can match.
            Some(_) => Ok(Vec::new()),
            None => self.scan_index(vec![T], q),
        }
    }
}
