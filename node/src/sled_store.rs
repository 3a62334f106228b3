//! The node's [`Store`] on sled 0.34. Everything lives in one sled tree under one-byte keyspace
//! prefixes. An append — records, id index, Merkle nodes, head, checkpoint, query indexes — is
//! one value-log frame, fsynced, which makes it atomic across a crash ([`crate::vlog`]); its
//! writes then reach sled one by one, ordered so that a concurrent reader never finds an index
//! entry, head or checkpoint ahead of the records it leads to (`apply_framed`).
//!
//! Keys (big-endian integers; origin = length byte + id bytes, so prefixes never collide):
//!
//! | prefix | key                                         | value                                   |
//! |--------|---------------------------------------------|-----------------------------------------|
//! | `E`    | origin, first seq u64                       | where the chunk lies in the value log: 0x01, offset u64, len u32 |
//! | `O`    | origin number u16                           | origin: numbers for the record-id index |
//! | `N`    | origin, level u8, index u64                 | Merkle node (levels ≥ `STORED_LEVEL_MIN`) |
//! | `H`    | origin                                      | size u64, root                          |
//! | `C`    | origin                                      | latest signed checkpoint                |
//! | `T`    | issued_at u64, origin, first seq u64        | one kind byte per record of the run     |
//! | `s`    | slot u16, first entry (issued_at, origin, seq, subject) | a bucket of subject index entries ([`crate::subject_index`]) |
//! | `P`    | pseudonym (len u8 + bytes), USCC (len u8 + bytes) | empty: "signed together"          |
//! | `M`    | name                                        | node metadata (`format` = u32, `slots` = the subject index's hash key) |
//! | `B`    | origin                                      | pending back-fill: next u64, end u64    |
//! | `L`    | at_ms u64, n u64                            | disclosure ledger entry (`ledger.rs`)   |
//! | `W`    | origin, size u64                            | witnessed checkpoint with cosignatures  |
//! | `X`    | origin                                      | equivocation evidence (first verified)  |
//! | `Z`    | offset u64                                  | len u32: rewritten chunk still to zero  |
//!
//! A chunk is ≤ 64 consecutive records and ≤ 64 KiB, each as u32 len + record; a record inside a
//! chunk is `u32 envelope len, envelope, then each disclosure as u32 len + bytes`. Chunk bodies
//! live in the value log (`records.vlog`, [`crate::vlog`]) beside sled, not in sled: sled 0.34
//! keeps large pages it has read resident, so a member serving catch-ups from chunks in sled grew
//! to the size of its data. The metadata key `Mvlog` holds the value log's valid length, written
//! in the same batch as the pointers into it. Store format 1 kept chunks inline in `E`; opening
//! such a store moves them into the value log ([`STORE_FORMAT`] 2).
//!
//! Record id → (origin, seq) is not in sled: it is the record-id index, a file of its own
//! ([`crate::idindex`]; store format 4). Format ≤ 3 kept it under prefix `I` (record id →
//! origin, seq); opening such a store builds the index from the records and drops those keys.
//! A frame still carries each record's index entry as a write of `I‖id` → origin number u16,
//! seq u64, which applying the frame sends to the index instead of sled.
//!
//! sled costs ~12–15 µs per key written whatever the value size (measured on the 2-core machine
//! the benchmarks run on), so an append writes few keys: records go in **chunks** of up to
//! [`CHUNK_RECORDS_MAX`] records and [`CHUNK_BYTES_MAX`] bytes per value; each record adds only
//! its record-id index entry (not a sled key) and **one** subject index entry — under its USCC
//! when this holder has it, else under its pseudonym — which is staged in memory and merged into
//! its slot's newest bucket when the store settles, not a sled key of its own either
//! ([`crate::subject_index`]; store format 5). Format ≤ 4 kept one key per record,
//! `S‖subject len u8 + bytes‖issued_at‖origin‖seq` → kind byte, moved into buckets on open; a
//! frame still carries each entry as such a write. A `P` entry maps a
//! pseudonym to its USCC the first time the pair is seen, so a pseudonym query still finds the
//! records indexed by USCC (and filters them by their signed pseudonym). The time index `T`
//! holds one entry per *run* of consecutive records of one origin issued in the same millisecond
//! (a group commit stamps its whole batch with one time), and Merkle nodes below level 8 are
//! recomputed from envelopes rather than stored.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use tfx_protocol::ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
use tfx_protocol::limits::QUERY_RESULTS_MAX;
use tfx_protocol::merkle::NodeId;
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::{
    check_append, AppendBatch, HeldRecord, LogHead, NotAnAppend, NotStored, Query, RecordRef,
    Store, StoredRecord,
};

use crate::frame::Writes;
use crate::idindex::{IdIndex, IdIndexError};
use crate::settled::{SettledError, SettledMark};
use crate::settler::Settler;
use crate::subject_index::{SubjectIndex, SubjectIndexError};
use crate::vlog::{Pointer, ValueLog, ValueLogError};

/// Version of the on-disk layout above. Bumped on any incompatible change; a binary opens its own
/// version and refuses newer ones with a clear message.
pub const STORE_FORMAT: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SledStoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("data directory format {found} is newer than this tfx-node supports ({STORE_FORMAT}); upgrade tfx-node")]
    NewerFormat { found: u32 },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store is corrupt: {0}")]
    ValueLog(#[from] ValueLogError),
    #[error("store is corrupt: {0}")]
    Settled(#[from] SettledError),
    #[error(transparent)]
    IdIndex(#[from] IdIndexError),
    #[error(transparent)]
    NotAnAppend(#[from] NotAnAppend),
    #[error(transparent)]
    NotStored(#[from] NotStored),
    #[error("{0}: the data directory is in use by another process (is another tfx-node running?)")]
    Locked(std::path::PathBuf),
    #[error("{0}: not a tfx data directory (no sled database in it)")]
    NotAStore(std::path::PathBuf),
    #[error("settling the store failed: {0}")]
    Settle(String),
}

impl From<SubjectIndexError> for SledStoreError {
    fn from(e: SubjectIndexError) -> Self {
        match e {
            SubjectIndexError::Sled(e) => SledStoreError::Sled(e),
            e => SledStoreError::Corrupt(e.to_string()),
        }
    }
}

/// Where applying a frame sends its subject index writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subjects {
    /// Staged for the buckets ([`crate::subject_index`]).
    Staged,
    /// To sled as they are: a format-4 store, whose index is still one `S` key per entry.
    InSled,
}

/// A sled-backed store. Cheap to clone (sled handles are reference-counted).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    vlog: Arc<ValueLog>,
    /// sled's log file, fsynced by [`SledStore::settle`].
    sled_file: Arc<std::fs::File>,
    /// How far sled's fsynced state accounts for the value log ([`crate::settled`]).
    settled: Arc<SettledMark>,
    /// When the store last settled; see [`SETTLE_INTERVAL`].
    last_settle: Arc<std::sync::Mutex<std::time::Instant>>,
    /// Held for a whole settle, so that settles record their marks in order.
    settling: Arc<std::sync::Mutex<()>>,
    /// The thread that settles when [`SledStore::settle_if_due`] asks; `None` in that thread's
    /// own copy of the store.
    background: Option<Arc<Settler>>,
    /// Record id → (origin, seq) ([`crate::idindex`]).
    ids: Arc<IdIndex>,
    /// Subject → records, in buckets, with the entries applied since the last settle
    /// ([`crate::subject_index`]).
    subjects: Arc<SubjectIndex>,
    /// Held while a new origin gets its number, so two batches cannot give it two.
    numbering: Arc<std::sync::Mutex<()>>,
}

/// How often, at most, committing local appends (or flushing records applied from peers) also
/// settles the store, on its background thread: merges the staged subject index entries,
/// flushes sled, fsyncs its file and records the settled mark. Appends are
/// durable through their value-log frame, so this only bounds the frames an open applies again
/// after a crash or a power loss (and sled's memory for unwritten buffers): about a second of
/// appends.
pub const SETTLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

const E: u8 = b'E';
const I: u8 = b'I';
const O: u8 = b'O';
const N: u8 = b'N';
const H: u8 = b'H';
const C: u8 = b'C';
const T: u8 = b'T';
const S: u8 = crate::subject_index::FRAME_PREFIX;
const P: u8 = b'P';
const B: u8 = b'B';
const W: u8 = b'W';
const X: u8 = b'X';
const Z: u8 = b'Z';

/// USCCs followed for one pseudonym in a query. Honestly there is one; more means issuers
/// signed one pseudonym for several enterprises, and the query must stay bounded regardless.
const PSEUDONYM_USCCS_MAX: usize = 8;

/// Index entries a query examines at most, matching or not: a filter that matches nothing must
/// not walk the whole index.
pub const QUERY_SCAN_MAX: usize = 100_000;

/// Records per `E` chunk at most: enough that the chunk key costs under a microsecond per
/// record, few enough that reading one record copies little.
pub const CHUNK_RECORDS_MAX: usize = 64;

/// Bytes per `E` chunk at most (a single larger record still gets a chunk of its own): reading
/// one record reads its whole chunk from the value log.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
const FORMAT_KEY: &[u8] = b"Mformat";
const HEALTH_KEY: &[u8] = b"Mhealth";
/// Present while the local log is to be recovered from peers (set by a restore).
const RECOVERING_KEY: &[u8] = b"Mrecovering";
/// The value log's valid length (u64), written with every batch that points into it.
const VLOG_LEN_KEY: &[u8] = b"Mvlog";
/// Where the value log's frames have had their sled writes scrubbed up to (u64): see
/// [`SledStore::scrub_frames`].
const SCRUBBED_KEY: &[u8] = b"Mscrubbed";
/// Inline chunks moved into the value log per batch when opening a format-1 store.
const MIGRATE_CHUNKS_PER_BATCH: usize = 256;

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

fn id_key(id: &RecordId) -> Vec<u8> {
    let mut k = vec![I];
    k.extend_from_slice(&id.0);
    k
}

/// A record-id index entry as a frame carries it: origin number, seq.
fn id_value(origin: u16, seq: u64) -> Vec<u8> {
    let mut v = origin.to_be_bytes().to_vec();
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn origin_number_key(n: u16) -> Vec<u8> {
    let mut k = vec![O];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Parses an `O` write: the origin number and the origin.
fn origin_number_entry(k: &[u8], v: &[u8]) -> Result<(u16, MemberId), SledStoreError> {
    let n = k
        .get(1..3)
        .filter(|_| k.len() == 3)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| corrupt("origin number key"))?;
    let origin = std::str::from_utf8(v)
        .ok()
        .and_then(|s| MemberId::new(s).ok())
        .ok_or_else(|| corrupt("origin number entry"))?;
    Ok((n, origin))
}

/// Parses an `I` write of a frame into an index entry.
fn id_entry(k: &[u8], v: &[u8]) -> Result<crate::idindex::Entry, SledStoreError> {
    let id = k
        .get(1..)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| corrupt("record-id index key"))?;
    if v.len() != 10 {
        return Err(corrupt("record-id index entry"));
    }
    Ok((
        RecordId(id),
        u16::from_be_bytes([v[0], v[1]]),
        u64_at(v, 2)?,
    ))
}

fn zero_key(offset: u64) -> Vec<u8> {
    let mut k = vec![Z];
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// Frees what sled's writes left for epoch-based reclamation. sled defers freeing every page
/// version it replaces to crossbeam-epoch, which collects a few bags of garbage only every 128
/// pins of a thread; an `apply_batch` pins once for thousands of replaced nodes, so garbage
/// outran collection and a store written in large batches grew without bound (the `sled_rss`
/// example with the value-log layout: 1,007 MiB at 1M records, 161 MiB with this). Each
/// pin-and-flush pushes this thread's garbage and collects up to 8 bags of 64; `keys` is the
/// batch's write count, a bound on the garbage it made.
fn reclaim(keys: usize) {
    for _ in 0..keys / 64 + 2 {
        crossbeam_epoch::pin().flush();
    }
}

fn node_key(origin: &MemberId, id: NodeId) -> Vec<u8> {
    let mut k = origin_key(N, origin);
    k.push(id.level);
    k.extend_from_slice(&id.index.to_be_bytes());
    k
}

fn kind_byte(kind: RecordKind) -> u8 {
    RecordKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn kind_of(b: u8) -> Result<RecordKind, SledStoreError> {
    RecordKind::ALL
        .get(usize::from(b))
        .copied()
        .ok_or_else(|| corrupt("bad kind byte"))
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

fn u32_at(b: &[u8], at: usize) -> Result<usize, SledStoreError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(|a| u32::from_be_bytes(a) as usize)
        .ok_or_else(|| corrupt("short length"))
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

/// One stored record (an element of an `E` chunk): envelope length, envelope, then each
/// disclosure length-prefixed.
fn encode_record(r: &StoredRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(encoded_len(r));
    write_record(&mut v, r);
    v
}

/// Appends `r` as [`encode_record`] writes it.
fn write_record(out: &mut Vec<u8>, r: &StoredRecord) {
    out.extend_from_slice(&(r.envelope.len() as u32).to_be_bytes());
    out.extend_from_slice(&r.envelope);
    for d in &r.disclosures {
        out.extend_from_slice(&(d.len() as u32).to_be_bytes());
        out.extend_from_slice(d);
    }
}

/// The record at position `index` of a chunk, if the chunk has that many.
fn chunk_record(chunk: &[u8], index: u64) -> Result<Option<&[u8]>, SledStoreError> {
    let mut at = 0usize;
    let mut i = 0u64;
    while at < chunk.len() {
        let len = u32_at(chunk, at)?;
        let record = chunk
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| corrupt("short chunk"))?;
        if i == index {
            return Ok(Some(record));
        }
        at += 4 + len;
        i += 1;
    }
    Ok(None)
}

/// Every record of a chunk, in order.
fn chunk_records(chunk: &[u8]) -> Result<Vec<&[u8]>, SledStoreError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < chunk.len() {
        let len = u32_at(chunk, at)?;
        out.push(
            chunk
                .get(at + 4..at + 4 + len)
                .ok_or_else(|| corrupt("short chunk"))?,
        );
        at += 4 + len;
    }
    Ok(out)
}

/// Splits a stored record into the envelope and the rest (the disclosures).
fn split_record(v: &[u8]) -> Result<(&[u8], &[u8]), SledStoreError> {
    let len = u32_at(v, 0)?;
    let envelope = v.get(4..4 + len).ok_or_else(|| corrupt("short envelope"))?;
    Ok((envelope, &v[4 + len..]))
}

fn decode_disclosures(mut b: &[u8]) -> Result<Vec<Vec<u8>>, SledStoreError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32_at(b, 0)?;
        out.push(
            b.get(4..4 + len)
                .ok_or_else(|| corrupt("short disclosure"))?
                .to_vec(),
        );
        b = &b[4 + len..];
    }
    Ok(out)
}

/// A record's USCC and pseudonym subjects, as far as this holder was disclosed them.
fn subjects(r: &StoredRecord) -> (Option<&str>, Option<&str>) {
    let uscc = r
        .subjects
        .iter()
        .find(|s| !tfx_protocol::derive::is_pseudonym(s))
        .map(String::as_str);
    let pseudonym = r
        .subjects
        .iter()
        .find(|s| tfx_protocol::derive::is_pseudonym(s))
        .map(String::as_str);
    (uscc, pseudonym)
}

/// `prefix, len u8, bytes` for a short string (≤ 255 bytes).
fn short_key(prefix: u8, s: &str) -> Vec<u8> {
    let mut k = vec![prefix, s.len() as u8];
    k.extend_from_slice(s.as_bytes());
    k
}

fn subject_key(subject: &str, r: &StoredRecord) -> Vec<u8> {
    let mut k = short_key(S, subject);
    k.extend_from_slice(&time_tail(r.issued_at, &r.origin, r.seq));
    k
}

/// Index key tail: `issued_at, origin, seq`.
fn time_tail(at: Timestamp, origin: &MemberId, seq: LogIndex) -> Vec<u8> {
    let mut k = at.0.to_be_bytes().to_vec();
    push_origin(&mut k, origin);
    k.extend_from_slice(&seq.0.to_be_bytes());
    k
}

/// An `E` value: each record (as [`encode_record`] writes it) prefixed with its u32 length.
fn chunk_value<'a>(records: impl IntoIterator<Item = &'a [u8]>, capacity: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(capacity);
    for record in records {
        value.extend_from_slice(&(record.len() as u32).to_be_bytes());
        value.extend_from_slice(record);
    }
    value
}

/// The length of a record as [`encode_record`] writes it.
fn encoded_len(r: &StoredRecord) -> usize {
    4 + r.envelope.len() + r.disclosures.iter().map(|d| d.len() + 4).sum::<usize>()
}

/// Splits `records` into runs: consecutive records of one origin with contiguous sequence
/// numbers, at most `max` long and — when `max_bytes` is given — of at most that many encoded
/// bytes (with their length prefixes), and — when `same_time` — issued in the same millisecond.
fn runs(
    records: &[StoredRecord],
    max: usize,
    max_bytes: Option<usize>,
    same_time: bool,
) -> Vec<&[StoredRecord]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let first = &records[i];
        let mut bytes = 4 + encoded_len(first);
        let mut j = i + 1;
        while let Some(r) = records.get(j) {
            bytes += 4 + encoded_len(r);
            let continues = j - i < max
                && max_bytes.is_none_or(|m| bytes <= m)
                && r.origin == first.origin
                && first.seq.0.checked_add((j - i) as u64) == Some(r.seq.0)
                && (!same_time || r.issued_at == first.issued_at);
            if !continues {
                break;
            }
            j += 1;
        }
        out.push(&records[i..j]);
        i = j;
    }
    out
}

/// The sled configuration every tfx store uses (and the benchmark's raw-sled baseline, so the two
/// are compared like for like). Flushing is ours to do (group commit): sled's background flusher
/// would only add fsyncs. High-throughput mode trades some space for fewer page rewrites. The cache
/// is bounded by [`STORE_CACHE_BYTES`](crate::limits::STORE_CACHE_BYTES).
pub fn sled_config(dir: &Path) -> sled::Config {
    sled_config_with_cache(dir, crate::limits::STORE_CACHE_BYTES)
}

/// [`sled_config`] with a cache of `cache_bytes` (a node's `[store] cache_mib`).
pub fn sled_config_with_cache(dir: &Path, cache_bytes: u64) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput)
}

/// Opens the sled database in `dir` with [`sled_config`], waiting up to
/// [`STORE_LOCK_WAIT`](crate::limits::STORE_LOCK_WAIT) for its directory lock.
pub fn open_db(dir: &Path) -> Result<sled::Db, SledStoreError> {
    open_db_with_cache(dir, crate::limits::STORE_CACHE_BYTES)
}

fn open_db_with_cache(dir: &Path, cache_bytes: u64) -> Result<sled::Db, SledStoreError> {
    let deadline = std::time::Instant::now() + crate::limits::STORE_LOCK_WAIT;
    loop {
        match sled_config_with_cache(dir, cache_bytes).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(SledStoreError::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, checking the on-disk format version.
    ///
    /// Cuts the value log back to the length sled recorded (a tail written for a batch that
    /// never became durable), finishes zeroing chunks rewritten before a crash, and moves the
    /// inline chunks of a format-1 store into the value log.
    pub fn open(dir: &Path) -> Result<Self, SledStoreError> {
        Self::open_with_cache(dir, crate::limits::STORE_CACHE_BYTES)
    }

    /// [`SledStore::open`] with sled's cache at `cache_bytes` (the node's `[store] cache_mib`;
    /// offline tools use the default).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, SledStoreError> {
        let db = open_db_with_cache(dir, cache_bytes)?;
        let found = match db.get(FORMAT_KEY)? {
            None => None,
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt("format"))?;
                if found > STORE_FORMAT {
                    return Err(SledStoreError::NewerFormat { found });
                }
                Some(found)
            }
        };
        let valid = match db.get(VLOG_LEN_KEY)? {
            None => 0,
            Some(v) => u64_at(&v, 0)?,
        };
        // Frames are applied again from the settled mark when it is below sled's valid length:
        // writes sled only `sync_file_range`d since may be lost under a later one it kept.
        let (settled, mark) = SettledMark::open(dir)?;
        let replay_from = mark.map_or(valid, |m| m.min(valid));
        let (vlog, replay) = ValueLog::open(dir, replay_from, valid)?;
        let sled_file = std::fs::File::open(dir.join("db")).map_err(|e| {
            SledStoreError::Corrupt(format!("opening sled's file to fsync it: {e}"))
        })?;
        let (ids, index_missing) = IdIndex::open(dir)?;
        let subjects = SubjectIndex::open(&db)?;
        // Format ≤ 3 kept the record-id index in sled: its frames' `I` writes are sled writes.
        let legacy = found.is_some_and(|f| f < 4);
        let mut store = SledStore {
            db,
            vlog: Arc::new(vlog),
            sled_file: Arc::new(sled_file),
            settled: Arc::new(settled),
            last_settle: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            settling: Arc::default(),
            background: Some(Arc::new(Settler::new("tfx-settle"))),
            ids: Arc::new(ids),
            subjects: Arc::new(subjects),
            numbering: Arc::new(std::sync::Mutex::new(())),
        };
        store.register_origins()?;
        let frames = replay.len();
        for r in replay {
            // Batches made durable by their frames whose sled writes the crash may have lost.
            if legacy {
                let mut b = r.writes.to_batch();
                b.insert(VLOG_LEN_KEY, &r.end.to_be_bytes()[..]);
                store.db.apply_batch(b)?;
            } else {
                // A format-4 store's subject index is still its `S` keys, which the upgrade
                // below moves once these frames' writes are among them.
                let subjects = if found.is_some_and(|f| f < 5) {
                    Subjects::InSled
                } else {
                    Subjects::Staged
                };
                store.apply_writes(&r.writes, true, subjects)?;
                store.db.insert(VLOG_LEN_KEY, &r.end.to_be_bytes()[..])?;
                if store.subjects.staged_len() >= crate::subject_index::STAGED_ENTRIES_MAX {
                    store.subjects.merge(&store.db, || store.sync_sled())?;
                }
            }
            store.vlog.replayed(r.end);
            reclaim(r.writes.len());
        }
        if legacy {
            // Origins numbered by frames just applied as plain sled writes.
            store.register_origins()?;
        }
        // Settled unless the mark already covers everything (a clean stop after a settle): a
        // store made before the mark existed gets its first one, and an offline tool opening a
        // settled store writes nothing.
        if frames > 0 || mark != Some(valid) {
            store.settle()?;
        }
        if frames > 0 {
            tracing::info!(
                frames,
                "applied value-log frames again that sled may not have held durably"
            );
        }
        store.finish_zeroing()?;
        // Format 2 differs from 3 only in what may follow the valid length (raw bodies of a batch
        // that never became durable, which the open above zeroed): nothing to move.
        if found.is_some_and(|f| f < 2) {
            let moved = store.migrate_inline_chunks()?;
            tracing::info!(
                chunks = moved,
                "store format upgraded to {STORE_FORMAT}: chunk bodies moved to the value log"
            );
        }
        if found == Some(2) {
            // Format 2 wrote bodies without frames: the first frame starts at its valid length.
            store.db.insert(SCRUBBED_KEY, &valid.to_be_bytes())?;
        }
        let mut rebuild = match (found, index_missing) {
            (Some(f), _) if f < 4 => Some(format!("store format {f} kept it in sled")),
            // A new store's index is built too, from no records: that puts its file in place.
            (_, why) => why,
        };
        if rebuild.is_none() {
            rebuild = store.id_index_stale()?;
        }
        if let Some(why) = rebuild {
            if found == Some(STORE_FORMAT) {
                tracing::warn!(%why, "rebuilding the record-id index from the records");
            }
            let records = store.rebuild_id_index(dir)?;
            if found.is_some() {
                tracing::info!(records, %why, "record-id index built from the records");
            }
        }
        if found.is_some_and(|f| f < 5) {
            // Format ≤ 4 kept one `S` key per record; a crash part way leaves the format at 4
            // and the keys not yet moved, which the next open moves.
            let moved = crate::subject_index::migrate_format_4(&store.db, &store.subjects, || {
                store.sync_sled()
            })?;
            tracing::info!(
                entries = moved,
                "store format upgraded to {STORE_FORMAT}: subject index moved into buckets"
            );
        }
        if found != Some(STORE_FORMAT) {
            store.db.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes())?;
            // Fsynced before the old keys go: a power loss must not leave a format-3 store
            // without them.
            store.sync_sled()?;
        }
        // Format ≤ 3's `I` keys, dropped once the format says the index is the file (also
        // finishing a drop a crash interrupted).
        store.drop_sled_id_keys()?;
        Ok(store)
    }

    /// Why the record-id index cannot be trusted although its file is sound, if it cannot: it
    /// must locate the first and the newest record of every log (a file left from an older copy
    /// of the store, or otherwise behind, does not).
    fn id_index_stale(&self) -> Result<Option<String>, SledStoreError> {
        for origin in self.origins()? {
            let size = self.head(&origin)?.map_or(0, |h| h.size);
            if size == 0 {
                continue;
            }
            for seq in [0, size - 1] {
                let Some(envelope) = self.envelope(&origin, LogIndex(seq))? else {
                    continue;
                };
                let held = Some((origin.clone(), LogIndex(seq)));
                if self.ids.get(&RecordId::of_envelope(&envelope))? != held {
                    return Ok(Some(format!(
                        "it does not locate record {seq} of origin {origin}"
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Builds the record-id index afresh from the records, read from the chunks, beside the
    /// old file, and puts it in place once complete and durable ([`IdIndex::finish`]), so an
    /// interrupted rebuild is done again by the next open. Returns the records indexed.
    fn rebuild_id_index(&mut self, dir: &Path) -> Result<u64, SledStoreError> {
        self.ids_while_opening()?.reset(dir)?;
        let mut records = 0u64;
        {
            let _reading = self.vlog.reading();
            for kv in self.db.scan_prefix([E]) {
                let (k, value) = kv?;
                let (origin, first) = origin_seq_at(&k, 1)?;
                let n = self.origin_number(&origin)?;
                let chunk = self.chunk_bytes(&value)?;
                let mut entries = Vec::new();
                for (i, record) in chunk_records(&chunk)?.into_iter().enumerate() {
                    let envelope = split_record(record)?.0;
                    entries.push((RecordId::of_envelope(envelope), n, first.0 + i as u64));
                }
                self.ids.insert(&entries, false)?;
                records += entries.len() as u64;
            }
        }
        self.ids_while_opening()?.finish(dir)?;
        Ok(records)
    }

    /// The record-id index to replace or put in place: only while opening, before the store
    /// has been cloned.
    fn ids_while_opening(&mut self) -> Result<&mut IdIndex, SledStoreError> {
        Arc::get_mut(&mut self.ids).ok_or_else(|| corrupt("record-id index shared while opening"))
    }

    /// Registers with the record-id index every origin number sled holds.
    fn register_origins(&self) -> Result<(), SledStoreError> {
        for kv in self.db.scan_prefix([O]) {
            let (k, v) = kv?;
            let (n, origin) = origin_number_entry(&k, &v)?;
            self.ids.register(n, origin)?;
        }
        Ok(())
    }

    /// Removes the `I` keys a format ≤ 3 store kept in sled, in batches.
    fn drop_sled_id_keys(&self) -> Result<(), SledStoreError> {
        loop {
            let mut b = sled::Batch::default();
            let mut n = 0;
            for k in self
                .db
                .scan_prefix([I])
                .keys()
                .take(MIGRATE_CHUNKS_PER_BATCH * 64)
            {
                b.remove(k?);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.db.apply_batch(b)?;
            self.db.flush()?;
            reclaim(n);
        }
    }

    /// `origin`'s number in the record-id index, assigning the next one — durably, in a frame
    /// of its own ahead of the records that use it — the first time the origin is seen.
    fn origin_number(&self, origin: &MemberId) -> Result<u16, SledStoreError> {
        if let Some(n) = self.ids.origin_number(origin) {
            return Ok(n);
        }
        let _numbering = self.numbering.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = self.ids.origin_number(origin) {
            return Ok(n);
        }
        let n = self
            .ids
            .next_origin_number()
            .ok_or(IdIndexError::TooManyOrigins)?;
        let mut w = Writes::default();
        w.insert(origin_number_key(n), origin.as_str().as_bytes());
        // Applying the frame registers the number with the index (`apply_writes`).
        self.write_durable(w)?;
        Ok(n)
    }

    /// Applies a frame's writes one at a time, in order: `I` writes to the record-id index (a
    /// run of them at once), the rest to sled; an `O` write also registers its origin number
    /// with the index. Not atomic: a concurrent reader sees the writes land one by one, and a
    /// crash keeps a prefix of them (sled recovers a prefix of its log); the caller orders them
    /// for both, and the frame they came from restores the rest ([`crate::vlog`]). `replaying`:
    /// the frame is applied again on open, and its index entries may be there already.
    /// `subjects`: where its subject index (`S`) writes go.
    fn apply_writes(
        &self,
        w: &Writes,
        replaying: bool,
        subjects: Subjects,
    ) -> Result<(), SledStoreError> {
        let mut ids = Vec::new();
        for (k, v) in w.iter() {
            if k.first() == Some(&I) {
                ids.push(id_entry(
                    k,
                    v.ok_or_else(|| corrupt("record-id index removal"))?,
                )?);
                continue;
            }
            if k.first() == Some(&S) && subjects == Subjects::Staged {
                self.subjects.stage(k, v)?;
                continue;
            }
            if !ids.is_empty() {
                self.ids.insert(&ids, replaying)?;
                ids.clear();
            }
            match v {
                Some(v) => {
                    self.db.insert(k, v)?;
                    if k.first() == Some(&O) {
                        let (n, origin) = origin_number_entry(k, v)?;
                        self.ids.register(n, origin)?;
                    }
                }
                None => {
                    self.db.remove(k)?;
                }
            }
        }
        if !ids.is_empty() {
            self.ids.insert(&ids, replaying)?;
        }
        Ok(())
    }

    /// Zeroes the chunks that a rewrite replaced before a crash (their `Z` entries), then drops
    /// the entries.
    fn finish_zeroing(&self) -> Result<(), SledStoreError> {
        let mut pending = Vec::new();
        let mut keys = Vec::new();
        for kv in self.db.scan_prefix([Z]) {
            let (k, v) = kv?;
            pending.push(Pointer {
                offset: u64_at(&k, 1)?,
                len: u32::try_from(u32_at(&v, 0)?).map_err(|_| corrupt("zeroing entry"))?,
            });
            keys.push(k);
        }
        if pending.is_empty() {
            return Ok(());
        }
        // As in `replace_disclosures`: sled durable past the frames before their bytes go.
        let settled = self.settle()?;
        self.vlog.zero(&pending)?;
        self.scrub_frames(settled)?;
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(k);
        }
        self.db.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Moves every chunk stored inline in `E` (store format 1) into the value log, a batch at a
    /// time; each batch is durable on its own, so an interrupted upgrade resumes where it stopped.
    fn migrate_inline_chunks(&self) -> Result<usize, SledStoreError> {
        let mut moved = 0;
        let mut after: Option<sled::IVec> = None;
        loop {
            let range = match &after {
                Some(k) => self.db.range::<&[u8], _>((
                    std::ops::Bound::Excluded(k.as_ref()),
                    std::ops::Bound::Unbounded,
                )),
                None => self.db.range::<&[u8], _>(&[E][..]..),
            };
            let mut inline = Vec::new();
            for kv in range {
                let (k, v) = kv?;
                if k.first() != Some(&E) {
                    break;
                }
                after = Some(k.clone());
                if Pointer::decode(&v)?.is_none() {
                    inline.push((k, v.to_vec()));
                    if inline.len() == MIGRATE_CHUNKS_PER_BATCH {
                        break;
                    }
                }
            }
            if inline.is_empty() {
                return Ok(moved);
            }
            let (keys, bodies): (Vec<_>, Vec<_>) =
                inline.into_iter().map(|(k, v)| (k.to_vec(), v)).unzip();
            self.apply_framed(Writes::default(), keys, &bodies)?;
            // Bounds what a crash leaves to apply again: the frames hold every body.
            self.db.flush()?;
            moved += bodies.len();
        }
    }

    /// Writes `w` and `bodies` as one value-log frame, `keys[i]` pointing at `bodies[i]`, then
    /// applies them to sled: the pointers first, then `w` in its order, then the log's new valid
    /// length. Durable on return (the frame's fsync); sled itself is not flushed.
    ///
    /// One write at a time, not one sled batch: sled 0.34 writes its I/O buffer out twice for
    /// every `apply_batch` (before and after reserving the batch's manifest: `pin_log`), each a
    /// `pwrite` and `sync_file_range` on its thread pool, and keeps every other reader and writer
    /// out meanwhile. At a trickle of small batches — every push a member receives, every ledger
    /// entry — that was most of the store's cost and a third of the latency from submit to
    /// verified at a peer (BENCHMARKS.md). The frame makes the writes atomic across a crash
    /// instead: sled recovers a prefix of its log, so a valid length it recovered means every
    /// write before it is there, and a frame past the valid length is applied again, whole, on
    /// open (writes set values: applying some twice changes nothing). Frames reach sled in the
    /// order they were written (under the value log's lock). A concurrent reader sees a frame
    /// land write by write, which the order keeps harmless: a chunk's pointer before any index
    /// entry leading to it, and [`Store::apply`] puts heads and checkpoints after the records
    /// they cover.
    fn apply_framed(
        &self,
        w: Writes,
        keys: Vec<Vec<u8>>,
        bodies: &[Vec<u8>],
    ) -> Result<(), SledStoreError> {
        let writes = w.len() + keys.len();
        self.vlog.append(
            bodies,
            |pointers| {
                let mut all = Writes::default();
                for (k, p) in keys.into_iter().zip(pointers) {
                    all.insert(k, p.encode());
                }
                all.extend(w);
                all
            },
            |w, end| {
                self.apply_writes(w, false, Subjects::Staged)?;
                self.db.insert(VLOG_LEN_KEY, &end.to_be_bytes()[..])?;
                Ok::<_, SledStoreError>(())
            },
        )?;
        reclaim(writes);
        if self.subjects.staged_len() >= crate::subject_index::STAGED_ENTRIES_MAX {
            self.subjects.merge(&self.db, || self.sync_sled())?;
        }
        Ok(())
    }

    /// Applies `w` durably: one value-log frame, fsynced, then the sled batch. For small
    /// writes that must be durable at once without flushing all of sled (the disclosure ledger).
    pub fn write_durable(&self, w: Writes) -> Result<(), SledStoreError> {
        if w.is_empty() {
            return Ok(());
        }
        self.apply_framed(w, Vec::new(), &[])
    }

    /// Zeroes the sled writes of the frames below `to`, which sled must hold durably, from where
    /// the last scrub stopped. A purge removes a USCC from the subject index, but the frames that
    /// wrote the index entry — and the purge's own frame, which names the key it removes — would
    /// otherwise keep it in the value log for good.
    fn scrub_frames(&self, to: u64) -> Result<(), SledStoreError> {
        let from = match self.db.get(SCRUBBED_KEY)? {
            None => 0,
            Some(v) => u64_at(&v, 0)?,
        };
        if from >= to {
            return Ok(());
        }
        self.vlog.scrub_writes(from, to)?;
        // Not flushed: a scrub that sled forgets is done again, to the same effect.
        self.db.insert(SCRUBBED_KEY, &to.to_be_bytes())?;
        Ok(())
    }

    /// Flushes sled and fsyncs its file: sled's own flush only `sync_file_range`s, which does
    /// not reach past a disk's volatile cache.
    fn sync_sled(&self) -> Result<(), SledStoreError> {
        self.db.flush()?;
        self.sled_file
            .sync_all()
            .map_err(|e| SledStoreError::Sled(sled::Error::Io(e)))?;
        Ok(())
    }

    /// Makes sled's state and the record-id index durable ([`SledStore::sync_sled`],
    /// [`IdIndex::sync`]) and records the settled mark ([`crate::settled`]): every frame below
    /// the returned length has its writes in sled's fsynced state and its index entries in the
    /// fsynced index, so no open reads those frames again and they may be zeroed or scrubbed.
    fn settle(&self) -> Result<u64, SledStoreError> {
        let _settling = self.settling.lock().unwrap_or_else(|p| p.into_inner());
        // Taken before the flush: every frame below it is applied to sled by then.
        let settled = self.vlog.settled_len();
        // Before sled is made durable: the mark then covers their frames' index entries.
        self.subjects.merge(&self.db, || self.sync_sled())?;
        self.sync_sled()?;
        self.ids.sync()?;
        self.settled.record(settled)?;
        Ok(settled)
    }

    /// Asks for a [`SledStore::settle`] when [`SETTLE_INTERVAL`] has passed since the last
    /// time, on the store's background thread: a settle merges the staged subject index
    /// entries and fsyncs sled's file, tens of milliseconds that the appender's commit or the
    /// driver's flush would otherwise wait for. Reports a background settle that failed.
    fn settle_if_due(&self) -> Result<(), SledStoreError> {
        let Some(background) = &self.background else {
            return Ok(());
        };
        if let Some(e) = background.take_failure() {
            return Err(SledStoreError::Settle(e));
        }
        let mut last = self.last_settle.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= SETTLE_INTERVAL {
            *last = std::time::Instant::now();
            background.request(|| {
                // The thread's own copy: it must not keep the settler alive.
                let store = SledStore {
                    background: None,
                    ..self.clone()
                };
                Box::new(move || store.settle().map(drop).map_err(|e| e.to_string()))
            });
        }
        Ok(())
    }

    /// A chunk's bytes from its `E` value: read from the value log, or inline (format 1, only
    /// while an upgrade runs). The caller holds [`ValueLog::reading`].
    fn chunk_bytes<'a>(&self, value: &'a [u8]) -> Result<Cow<'a, [u8]>, SledStoreError> {
        Ok(match Pointer::decode(value)? {
            Some(p) => Cow::Owned(self.vlog.read(p)?),
            None => Cow::Borrowed(value),
        })
    }

    /// Opens a store that must already exist (for offline tools: never creates one by mistake).
    pub fn open_existing(dir: &Path) -> Result<Self, SledStoreError> {
        if !dir.join("db").is_file() {
            return Err(SledStoreError::NotAStore(dir.to_path_buf()));
        }
        Self::open(dir)
    }

    /// The sled handle, for the disclosure ledger that shares this tree (prefix `L`).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Writes and flushes a metadata key: whether the store still takes durable writes (the
    /// health check). The key holds the probe time and nothing else reads it.
    pub fn probe_write(&self) -> Result<(), SledStoreError> {
        let now = crate::clock::now().0;
        self.db.insert(HEALTH_KEY, &now.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Whether the store was restored from a backup and its local log not yet recovered from
    /// peers (the node then holds appends until sync says it has).
    pub fn recovering(&self) -> Result<bool, SledStoreError> {
        Ok(self.db.get(RECOVERING_KEY)?.is_some())
    }

    /// Sets or clears the recovery mark, durably.
    pub fn set_recovering(&self, on: bool) -> Result<(), SledStoreError> {
        if on {
            self.db.insert(RECOVERING_KEY, &[1u8][..])?;
        } else {
            self.db.remove(RECOVERING_KEY)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The value log's valid length: the bytes of it that records point into.
    pub fn value_log_len(&self) -> u64 {
        self.vlog.len()
    }

    /// Bytes on disk: sled's files, the value log and the record-id index.
    pub fn size_on_disk(&self) -> Result<u64, SledStoreError> {
        Ok(self.db.size_on_disk()? + self.vlog.len() + self.ids.len_on_disk())
    }

    /// Runs `f` on the stored bytes of record (origin, seq), found in its chunk.
    fn with_record<T>(
        &self,
        origin: &MemberId,
        seq: LogIndex,
        f: impl FnOnce(&[u8]) -> Result<T, SledStoreError>,
    ) -> Result<Option<T>, SledStoreError> {
        let prefix = origin_key(E, origin);
        let _reading = self.vlog.reading();
        let Some(kv) = self
            .db
            .range(prefix.clone()..=seq_key(E, origin, seq.0))
            .next_back()
        else {
            return Ok(None);
        };
        let (k, value) = kv?;
        let chunk = self.chunk_bytes(&value)?;
        let first = u64_at(&k, prefix.len())?;
        match chunk_record(&chunk, seq.0 - first)? {
            Some(record) => Ok(Some(f(record)?)),
            None => Ok(None),
        }
    }

    /// Runs `f` over the stored records of `origin` from `from` on, at most `limit`, in order.
    fn scan_records<T>(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
        mut f: impl FnMut(LogIndex, &[u8]) -> Result<T, SledStoreError>,
    ) -> Result<Vec<T>, SledStoreError> {
        let prefix = origin_key(E, origin);
        let mut out = Vec::new();
        let _reading = self.vlog.reading();
        // Start at the chunk holding `from` (the last chunk key at or before it).
        let start = match self
            .db
            .range(prefix.clone()..=seq_key(E, origin, from.0))
            .next_back()
        {
            Some(kv) => kv?.0.to_vec(),
            None => seq_key(E, origin, from.0),
        };
        for kv in self.db.range(start..) {
            let (k, value) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let chunk = self.chunk_bytes(&value)?;
            let first = u64_at(&k, prefix.len())?;
            for (i, record) in chunk_records(&chunk)?.into_iter().enumerate() {
                let seq = first + i as u64;
                if seq >= from.0 && out.len() < limit {
                    out.push(f(LogIndex(seq), record)?);
                }
            }
        }
        Ok(out)
    }

    /// Records of a pseudonym: those indexed under it directly, plus — for each USCC this
    /// holder has seen signed together with it — those indexed under the USCC that carry this
    /// very pseudonym. Keying the map by (pseudonym, USCC) means one wrongly issued record cannot
    /// redirect a pseudonym away from its enterprise's records.
    fn scan_pseudonym(
        &self,
        pseudonym: &str,
        q: &Query,
        limit: usize,
    ) -> Result<Vec<RecordRef>, SledStoreError> {
        let mut out = self.scan_subject(pseudonym, q, limit)?;
        let prefix = short_key(P, pseudonym);
        for key in self
            .db
            .scan_prefix(&prefix)
            .keys()
            .take(PSEUDONYM_USCCS_MAX)
        {
            let key = key?;
            let len = usize::from(
                *key.get(prefix.len())
                    .ok_or_else(|| corrupt("pseudonym map"))?,
            );
            let uscc = key
                .get(prefix.len() + 1..prefix.len() + 1 + len)
                .ok_or_else(|| corrupt("pseudonym map"))?;
            let uscc = std::str::from_utf8(uscc).map_err(|_| corrupt("pseudonym map"))?;
            // Other epochs give the same USCC other pseudonyms: keep only records signed with this one.
            for r in self.scan_subject(uscc, q, limit)? {
                if carries_pseudonym(&self.disclosures(&r.id)?, pseudonym) {
                    out.push(r);
                }
            }
        }
        // The earliest `limit` across all sources, so paging by `since` stays correct.
        out.sort_by(|a, b| (a.issued_at, &a.origin, a.seq).cmp(&(b.issued_at, &b.origin, b.seq)));
        out.truncate(limit);
        Ok(out)
    }

    fn record_ref(
        &self,
        origin: MemberId,
        seq: LogIndex,
        kind: RecordKind,
        at: Timestamp,
    ) -> Result<Option<RecordRef>, SledStoreError> {
        let Some(envelope) = self.envelope(&origin, seq)? else {
            return Ok(None);
        };
        Ok(Some(RecordRef {
            id: RecordId::of_envelope(&envelope),
            origin,
            seq,
            kind,
            issued_at: at,
        }))
    }

    /// Whether a record indexed under `uscc`, other than those under the `leaving` keys,
    /// carries `pseudonym` (of the first [`PAIR_CHECK_MAX`] examined).
    fn still_paired(
        &self,
        uscc: &str,
        pseudonym: &str,
        leaving: &std::collections::HashSet<Vec<u8>>,
    ) -> Result<bool, SledStoreError> {
        if uscc.len() > usize::from(u8::MAX) {
            return Ok(false); // never indexed
        }
        let prefix = short_key(S, uscc);
        let (mut examined, mut paired) = (0, false);
        self.subjects
            .scan(&self.db, uscc, 0, QUERY_SCAN_MAX, |tail, _| {
                if leaving.contains(&[prefix.as_slice(), tail].concat()) {
                    return Ok(true);
                }
                let (origin, seq) = origin_seq_at(tail, 8)?;
                let carries = self.with_record(&origin, seq, |r| {
                    Ok(carries_pseudonym(
                        &decode_disclosures(split_record(r)?.1)?,
                        pseudonym,
                    ))
                })?;
                paired = carries == Some(true);
                examined += 1;
                Ok::<_, SledStoreError>(!paired && examined < PAIR_CHECK_MAX)
            })?;
        Ok(paired)
    }

    /// The records of `subject` from `q.since` on, by the subject index.
    fn scan_subject(
        &self,
        subject: &str,
        q: &Query,
        limit: usize,
    ) -> Result<Vec<RecordRef>, SledStoreError> {
        let since = q.since.unwrap_or(Timestamp(0)).0;
        let mut out = Vec::new();
        self.subjects
            .scan(&self.db, subject, since, QUERY_SCAN_MAX, |tail, kind| {
                if out.len() >= limit {
                    return Ok(false);
                }
                let at = Timestamp(u64_at(tail, 0)?);
                if q.until.is_some_and(|u| at >= u) {
                    return Ok(false);
                }
                let kind = kind_of(kind)?;
                if q.admits(kind, at) {
                    let (origin, seq) = origin_seq_at(tail, 8)?;
                    out.extend(self.record_ref(origin, seq, kind, at)?);
                }
                Ok::<_, SledStoreError>(true)
            })?;
        Ok(out)
    }

    /// Scans the time index from `q.since` on, expanding each run.
    fn scan_time(&self, q: &Query, limit: usize) -> Result<Vec<RecordRef>, SledStoreError> {
        let mut start = vec![T];
        start.extend_from_slice(&q.since.unwrap_or(Timestamp(0)).0.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.db.range(start..).take(QUERY_SCAN_MAX) {
            let (k, kinds) = kv?;
            if k.first() != Some(&T) || out.len() >= limit {
                break;
            }
            let at = Timestamp(u64_at(&k, 1)?);
            if q.until.is_some_and(|u| at >= u) {
                break;
            }
            let (origin, first) = origin_seq_at(&k, 9)?;
            for (i, b) in kinds.iter().enumerate() {
                let kind = kind_of(*b)?;
                if q.admits(kind, at) && out.len() < limit {
                    out.extend(self.record_ref(
                        origin.clone(),
                        LogIndex(first.0.saturating_add(i as u64)),
                        kind,
                        at,
                    )?);
                }
            }
        }
        Ok(out)
    }
}

/// Moves a record's subject index entry from what `old` held to what `new` holds (USCC when
/// held, else pseudonym), and notes in `pairs` how its pseudonym → USCC map entry changes.
fn reindex_subjects(
    b: &mut Writes,
    pairs: &mut PairChanges,
    old: &StoredRecord,
    new: &StoredRecord,
) {
    let (old_uscc, old_pseudonym) = subjects(old);
    let (new_uscc, new_pseudonym) = subjects(new);
    let fits = |s: &&str| s.len() <= usize::from(u8::MAX);
    let old_subject = old_uscc.or(old_pseudonym).filter(fits);
    let new_subject = new_uscc.or(new_pseudonym).filter(fits);
    if old_subject != new_subject {
        if let Some(s) = old_subject {
            b.remove(subject_key(s, old));
        }
        if let Some(s) = new_subject {
            b.insert(subject_key(s, new), &[kind_byte(new.kind)][..]);
        }
    }
    if let (Some(u), Some(p)) = (old_uscc, old_pseudonym) {
        if new_uscc.is_none() {
            let dropped = pairs
                .dropped
                .entry(pair_key(p, u))
                .or_insert_with(|| DroppedPair {
                    uscc: u.to_string(),
                    pseudonym: p.to_string(),
                    leaving: Default::default(),
                });
            if fits(&u) {
                dropped.leaving.insert(subject_key(u, old));
            }
        }
    }
    if let (Some(u), Some(p)) = (new_uscc, new_pseudonym) {
        let key = pair_key(p, u);
        b.insert(key.clone(), &[][..]);
        pairs.kept.insert(key);
    }
}

/// The pseudonym → USCC (`P`) entries a rewrite touches: those some record no longer carries
/// a USCC for (with the USCC, the pseudonym and the subject index keys of those records), and
/// those some record carries.
#[derive(Default)]
struct PairChanges {
    dropped: std::collections::BTreeMap<Vec<u8>, DroppedPair>,
    kept: std::collections::HashSet<Vec<u8>>,
}

/// A pair some record of a rewrite no longer carries a USCC for.
struct DroppedPair {
    uscc: String,
    pseudonym: String,
    /// The subject index keys of those records, which the rewrite removes.
    leaving: std::collections::HashSet<Vec<u8>>,
}

/// Records under one USCC a purge examines at most when deciding whether its pseudonym pair is
/// still carried; past them the pair goes (a query by pseudonym may then miss records indexed
/// under the USCC, never the other way round).
const PAIR_CHECK_MAX: usize = 64;

/// Whether `disclosures` include the subject pseudonym `pseudonym`.
fn carries_pseudonym(disclosures: &[Vec<u8>], pseudonym: &str) -> bool {
    disclosures.iter().any(|d| {
        tfx_protocol::disclosure::Disclosure::decode(d).is_ok_and(|d| {
            d.name() == "subject_pseudonym" && d.value().as_text() == Some(pseudonym)
        })
    })
}

fn pair_key(pseudonym: &str, uscc: &str) -> Vec<u8> {
    [short_key(P, pseudonym), short_key(0, uscc)[1..].to_vec()].concat()
}

impl Store for SledStore {
    type Error = SledStoreError;

    fn apply(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        // Logs are append-only; an overlapping or gapped batch would corrupt the chunk layout.
        let mut heads = std::collections::BTreeMap::new();
        for r in &batch.records {
            if !heads.contains_key(&r.origin) {
                heads.insert(
                    r.origin.clone(),
                    self.head(&r.origin)?.map_or(0, |h| h.size),
                );
            }
        }
        check_append(batch, |o| heads.get(o).copied().unwrap_or(0))?;
        let mut b = Writes::default();
        let mut chunk_keys = Vec::new();
        let mut bodies = Vec::new();
        for chunk in runs(
            &batch.records,
            CHUNK_RECORDS_MAX,
            Some(CHUNK_BYTES_MAX),
            false,
        ) {
            // Each record written straight into its chunk: a catch-up stores millions.
            let bytes = chunk.iter().map(|r| 4 + encoded_len(r)).sum();
            let mut body = Vec::with_capacity(bytes);
            for r in chunk {
                body.extend_from_slice(&(encoded_len(r) as u32).to_be_bytes());
                write_record(&mut body, r);
            }
            bodies.push(body);
            chunk_keys.push(seq_key(E, &chunk[0].origin, chunk[0].seq.0));
        }
        // Index entries (`I`) go before the subject, time and other keys; the chunk pointers
        // they lead to go before all of these (`apply_framed`).
        for r in &batch.records {
            let n = self.origin_number(&r.origin)?;
            // Refused before the frame is written: once it is durable, every open applies it.
            if r.seq.0 > crate::idindex::SEQ_MAX {
                return Err(IdIndexError::SeqTooLarge(r.seq.0).into());
            }
            b.insert(id_key(&r.id), id_value(n, r.seq.0));
        }
        let mut pairs_seen = std::collections::HashSet::new();
        for r in &batch.records {
            let (uscc, pseudonym) = subjects(r);
            if let Some(subject) = uscc
                .or(pseudonym)
                .filter(|s| s.len() <= usize::from(u8::MAX))
            {
                b.insert(subject_key(subject, r), &[kind_byte(r.kind)][..]);
            }
            if let (Some(u), Some(p)) = (uscc, pseudonym) {
                let key = pair_key(p, u);
                if pairs_seen.insert((p, u)) && self.db.get(&key)?.is_none() {
                    b.insert(key, &[][..]);
                }
            }
        }
        for run in runs(&batch.records, usize::MAX, None, true) {
            let mut key = vec![T];
            key.extend_from_slice(&time_tail(run[0].issued_at, &run[0].origin, run[0].seq));
            b.insert(
                key,
                run.iter().map(|r| kind_byte(r.kind)).collect::<Vec<u8>>(),
            );
        }
        for (origin, id, hash) in &batch.nodes {
            b.insert(node_key(origin, *id), &hash[..]);
        }
        for (origin, range) in &batch.backfill {
            match range {
                Some((next, end)) => {
                    let v = [next.to_be_bytes(), end.to_be_bytes()].concat();
                    b.insert(origin_key(B, origin), v);
                }
                None => b.remove(origin_key(B, origin)),
            }
        }
        for (origin, size, w) in &batch.witnessed {
            match w {
                Some(w) => b.insert(seq_key(W, origin, *size), w.as_slice()),
                None => b.remove(seq_key(W, origin, *size)),
            }
        }
        for (origin, e) in &batch.evidence {
            // The first verified piece is kept: evidence is never replaced.
            if self.db.get(origin_key(X, origin))?.is_none() {
                b.insert(origin_key(X, origin), e.as_slice());
            }
        }
        // Last, for readers that see the writes land one by one (`apply_framed`): a head or
        // checkpoint is never ahead of the records and Merkle nodes it covers.
        for (origin, cp) in &batch.checkpoints {
            b.insert(origin_key(C, origin), cp.as_slice());
        }
        for (origin, head) in &batch.heads {
            let mut v = head.size.to_be_bytes().to_vec();
            v.extend_from_slice(&head.root);
            b.insert(origin_key(H, origin), v);
        }
        self.apply_framed(b, chunk_keys, &bodies)
    }

    /// Flushes sled (which bounds its unwritten buffers), and has the store settle about once
    /// per [`SETTLE_INTERVAL`] (in the background): an fsync of sled's file per flush would slow
    /// a catch-up, which flushes every few milliseconds.
    fn flush(&self) -> Result<(), Self::Error> {
        self.db.flush()?;
        self.settle_if_due()
    }

    /// [`Store::apply`] is durable here already (the value-log frame); the store settles about
    /// once per [`SETTLE_INTERVAL`] only, to bound what a crash leaves to apply again.
    fn commit(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        self.apply(batch)?;
        self.settle_if_due()
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
        match self.db.get(node_key(origin, id))? {
            None => Ok(None),
            Some(v) => Ok(Some(
                v.as_ref().try_into().map_err(|_| corrupt("merkle node"))?,
            )),
        }
    }

    fn envelope(&self, origin: &MemberId, seq: LogIndex) -> Result<Option<Vec<u8>>, Self::Error> {
        self.with_record(origin, seq, |r| Ok(split_record(r)?.0.to_vec()))
    }

    fn envelopes(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<(LogIndex, Vec<u8>)>, Self::Error> {
        self.scan_records(origin, from, limit, |seq, record| {
            Ok((seq, split_record(record)?.0.to_vec()))
        })
    }

    fn records(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<HeldRecord>, Self::Error> {
        self.scan_records(origin, from, limit, |seq, record| {
            let (envelope, rest) = split_record(record)?;
            Ok(HeldRecord {
                seq,
                envelope: envelope.to_vec(),
                disclosures: decode_disclosures(rest)?,
            })
        })
    }

    fn backfills(&self) -> Result<Vec<(MemberId, u64, u64)>, Self::Error> {
        self.db
            .scan_prefix([B])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((origin_at(&k, 1)?.0, u64_at(&v, 0)?, u64_at(&v, 8)?))
            })
            .collect()
    }

    fn witnessed(&self, origin: &MemberId) -> Result<Vec<(u64, Vec<u8>)>, Self::Error> {
        let prefix = origin_key(W, origin);
        self.db
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_at(&k, prefix.len())?, v.to_vec()))
            })
            .collect()
    }

    fn evidence(&self) -> Result<Vec<(MemberId, Vec<u8>)>, Self::Error> {
        self.db
            .scan_prefix([X])
            .map(|kv| {
                let (k, v) = kv?;
                Ok((origin_at(&k, 1)?.0, v.to_vec()))
            })
            .collect()
    }

    fn replace_disclosures(&self, records: &[StoredRecord]) -> Result<(), Self::Error> {
        // Chunks touched, read once, rewritten once: key → (first seq, records).
        let mut chunks: std::collections::BTreeMap<Vec<u8>, (u64, Vec<Vec<u8>>)> =
            std::collections::BTreeMap::new();
        // The value-log bodies being replaced, zeroed once the new pointers are durable.
        let mut replaced = Vec::new();
        let mut b = Writes::default();
        let mut pairs = PairChanges::default();
        let reading = self.vlog.reading();
        for r in records {
            let prefix = origin_key(E, &r.origin);
            let not_stored = || NotStored {
                origin: r.origin.clone(),
                seq: r.seq.0,
                id: r.id,
            };
            let key = match self
                .db
                .range(prefix.clone()..=seq_key(E, &r.origin, r.seq.0))
                .next_back()
            {
                Some(kv) => kv?.0.to_vec(),
                None => return Err(not_stored().into()),
            };
            if !chunks.contains_key(&key) {
                let value = self
                    .db
                    .get(&key)?
                    .ok_or_else(|| corrupt("chunk vanished"))?;
                replaced.extend(Pointer::decode(&value)?);
                let chunk = self.chunk_bytes(&value)?;
                let first = u64_at(&key, prefix.len())?;
                let list = chunk_records(&chunk)?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                chunks.insert(key.clone(), (first, list));
            }
            let Some((first, list)) = chunks.get_mut(&key) else {
                return Err(corrupt("chunk vanished"));
            };
            let Some(slot) = usize::try_from(r.seq.0 - *first)
                .ok()
                .and_then(|i| list.get_mut(i))
            else {
                return Err(not_stored().into());
            };
            let (envelope, old) = split_record(slot)?;
            if RecordId::of_envelope(envelope) != r.id {
                return Err(not_stored().into());
            }
            let old = decode_disclosures(old)?;
            let old = StoredRecord {
                subjects: tfx_protocol::store::subjects_of_bytes(&old),
                disclosures: old,
                ..r.clone()
            };
            reindex_subjects(&mut b, &mut pairs, &old, r);
            let mut updated = r.clone();
            updated.envelope = envelope.to_vec();
            *slot = encode_record(&updated);
        }
        drop(reading);
        // A pair goes unless a record outside this rewrite still carries both its USCC and its
        // pseudonym — so no identity outlives its disclosures in the index, yet purging one
        // origin's copy keeps the pair of another record that holds both (this member's own,
        // say), which queries by pseudonym need.
        for (key, d) in pairs.dropped {
            if !pairs.kept.contains(&key)
                && !self.still_paired(&d.uscc, &d.pseudonym, &d.leaving)?
            {
                b.remove(key);
            }
        }
        let mut part_keys = Vec::new();
        let mut bodies = Vec::new();
        for (key, (first, list)) in chunks {
            // A back-fill grows records: a chunk that outgrew CHUNK_BYTES_MAX is split, each part
            // under the sequence number of its first record, where reads look for it.
            let prefix = &key[..key.len() - 8];
            let mut start = 0;
            while start < list.len() {
                let mut bytes = 4 + list[start].len();
                let mut end = start + 1;
                while end < list.len() && bytes + 4 + list[end].len() <= CHUNK_BYTES_MAX {
                    bytes += 4 + list[end].len();
                    end += 1;
                }
                bodies.push(chunk_value(
                    list[start..end].iter().map(Vec::as_slice),
                    bytes,
                ));
                part_keys.push([prefix, &(first + start as u64).to_be_bytes()].concat());
                start = end;
            }
        }
        // Pointer switch and the note of what to zero land together; the zeroing itself waits
        // until they are durable, so a crash in between finds either the old pointers (nothing
        // zeroed) or the `Z` entries (zeroed on open).
        for old in &replaced {
            b.insert(zero_key(old.offset), &old.len.to_be_bytes()[..]);
        }
        self.apply_framed(b, part_keys, &bodies)?;
        if replaced.is_empty() {
            return Ok(());
        }
        // The frames holding the old bodies must never be applied again once zeroed (their
        // checksums would fail and end the replay early): sled's state past them is made durable
        // first, fsync included.
        let settled = self.settle()?;
        self.vlog.zero(&replaced)?;
        self.scrub_frames(settled)?;
        let mut done = sled::Batch::default();
        for old in &replaced {
            done.remove(zero_key(old.offset));
        }
        Ok(self.db.apply_batch(done)?)
    }

    fn locate(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, Self::Error> {
        Ok(self.ids.get(id)?)
    }

    fn disclosures(&self, id: &RecordId) -> Result<Vec<Vec<u8>>, Self::Error> {
        let Some((origin, seq)) = self.locate(id)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .with_record(&origin, seq, |r| decode_disclosures(split_record(r)?.1))?
            .unwrap_or_default())
    }

    fn query(&self, q: &Query) -> Result<Vec<RecordRef>, Self::Error> {
        let limit = q.limit.min(QUERY_RESULTS_MAX);
        match &q.subject {
            Some(s) if s.len() <= usize::from(u8::MAX) && tfx_protocol::derive::is_pseudonym(s) => {
                self.scan_pseudonym(s, q, limit)
            }
            Some(s) if s.len() <= usize::from(u8::MAX) => self.scan_subject(s, q, limit),
            // Longer subjects are never indexed (apply skips them), so nothing can match.
            Some(_) => Ok(Vec::new()),
            None => self.scan_time(q, limit),
        }
    }
}
