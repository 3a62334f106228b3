//! The disclosure ledger (DESIGN §8): every disclosure this node sends a peer — which fields of
//! which record, to which member, when, under which policy version — kept in the store's sled
//! tree under prefix `L` so auditors can check that minimization was respected
//! (`GET /v1/ledger`, `tfx audit disclosures`). Field names only: the ledger never holds a value.
//!
//! Key: `L, at_ms u64, n u64` (n orders entries written in the same millisecond). Value:
//! `recipient, origin` (each length byte + id), `policy_version u64`, `count u32`, then per
//! record `seq u64, kind u8, record id (32 bytes), field mask u32` (bit i = the kind's i-th
//! field, [`tfx_protocol::minimize::mask_fields`]). One entry is one `Records` message queued for
//! the peer, so a record sent twice (a push and a re-fetch) appears twice.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tfx_protocol::minimize::mask_fields;
use tfx_protocol::schema::RecordKind;
use tfx_protocol::{MemberId, RecordId, Timestamp};

use crate::sled_store::{SledStore, SledStoreError};

const L: u8 = b'L';

/// Ledger entries a query examines at most, matching or not.
pub const LEDGER_SCAN_MAX: usize = 1_000_000;

/// Rows one query returns at most.
pub const LEDGER_ROWS_MAX: usize = 10_000;

/// One `Records` message's disclosures to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub at: Timestamp,
    pub recipient: MemberId,
    pub origin: MemberId,
    pub policy_version: u64,
    /// (seq, record id, kind, field mask) per record that carried at least one disclosure.
    pub records: Vec<(u64, RecordId, RecordKind, u32)>,
}

/// One disclosed record as the API and CLI show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerRow {
    pub at_ms: u64,
    pub recipient: String,
    pub policy_version: u64,
    pub record: String,
    pub origin: String,
    pub seq: u64,
    pub kind: String,
    pub fields: Vec<&'static str>,
}

/// Which rows to return; every given filter applies.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub recipient: Option<MemberId>,
    pub record: Option<RecordId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: usize,
}

/// The ledger over a node's store.
#[derive(Debug)]
pub struct Ledger {
    store: SledStore,
    db: sled::Db,
    next: AtomicU64,
}

fn push_id(v: &mut Vec<u8>, id: &MemberId) {
    v.push(id.as_str().len() as u8);
    v.extend_from_slice(id.as_str().as_bytes());
}

fn corrupt(what: &str) -> SledStoreError {
    SledStoreError::Corrupt(format!("disclosure ledger: {what}"))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SledStoreError> {
        if self.0.len() < n {
            return Err(corrupt("short entry"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, SledStoreError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| corrupt("int"))?,
        ))
    }
    fn u32(&mut self) -> Result<u32, SledStoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| corrupt("int"))?,
        ))
    }
    fn id(&mut self) -> Result<MemberId, SledStoreError> {
        let len = usize::from(self.take(1)?[0]);
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("member id"))?;
        MemberId::new(s).map_err(|_| corrupt("member id"))
    }
}

impl Ledger {
    pub fn open(store: &SledStore) -> Result<Ledger, SledStoreError> {
        let db = store.db().clone();
        let next = match db.scan_prefix([L]).keys().next_back() {
            Some(k) => {
                let k = k?;
                Reader(k.get(9..).ok_or_else(|| corrupt("key"))?).u64()? + 1
            }
            None => 0,
        };
        Ok(Ledger {
            store: store.clone(),
            db,
            next: AtomicU64::new(next),
        })
    }

    /// Records entries durably — one value-log frame, fsynced — before returning, so the
    /// disclosures they list may leave. A sled flush would do too, but would also write out
    /// everything else the store holds unflushed (a second of appends) on a push's way out.
    pub fn append(&self, entries: &[LedgerEntry]) -> Result<(), SledStoreError> {
        let mut w = crate::frame::Writes::default();
        for e in entries {
            let (k, v) = self.encode(e);
            w.insert(k, v);
        }
        self.store.write_durable(w)
    }

    /// An entry's key (time, then a counter) and value.
    fn encode(&self, e: &LedgerEntry) -> (Vec<u8>, Vec<u8>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut key = vec![L];
        key.extend_from_slice(&e.at.0.to_be_bytes());
        key.extend_from_slice(&n.to_be_bytes());
        let mut v = Vec::with_capacity(96 + 45 * e.records.len());
        push_id(&mut v, &e.recipient);
        push_id(&mut v, &e.origin);
        v.extend_from_slice(&e.policy_version.to_be_bytes());
        v.extend_from_slice(&(e.records.len() as u32).to_be_bytes());
        for (seq, id, kind, mask) in &e.records {
            v.extend_from_slice(&seq.to_be_bytes());
            v.push(RecordKind::ALL.iter().position(|k| k == kind).unwrap_or(0) as u8);
            v.extend_from_slice(&id.0);
            v.extend_from_slice(&mask.to_be_bytes());
        }
        (key, v)
    }

    /// Every entry as stored (key, value), oldest first: what a backup copies.
    pub fn raw_entries(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), SledStoreError>> + '_ {
        self.db
            .scan_prefix([L])
            .map(|kv| kv.map_err(SledStoreError::from))
    }

    /// Inserts an entry read from a backup, after checking it decodes, and keeps the entry
    /// counter beyond it.
    pub fn import_raw(&self, key: &[u8], value: &[u8]) -> Result<(), SledStoreError> {
        if key.len() != 17 || key[0] != L {
            return Err(corrupt("key"));
        }
        Self::decode(key, value)?;
        let n = Reader(&key[9..]).u64()?;
        self.next.fetch_max(n.saturating_add(1), Ordering::Relaxed);
        self.db.insert(key, value)?;
        Ok(())
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<LedgerEntry, SledStoreError> {
        let at = Timestamp(Reader(key.get(1..).ok_or_else(|| corrupt("key"))?).u64()?);
        let mut r = Reader(value);
        let recipient = r.id()?;
        let origin = r.id()?;
        let policy_version = r.u64()?;
        let count = r.u32()? as usize;
        // Each record takes 45 bytes: a count beyond what the value holds is corruption.
        if count > r.0.len() / 45 {
            return Err(corrupt("record count"));
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = r.u64()?;
            let kind = *RecordKind::ALL
                .get(usize::from(r.take(1)?[0]))
                .ok_or_else(|| corrupt("kind"))?;
            let id = RecordId(r.take(32)?.try_into().map_err(|_| corrupt("id"))?);
            records.push((seq, id, kind, r.u32()?));
        }
        Ok(LedgerEntry {
            at,
            recipient,
            origin,
            policy_version,
            records,
        })
    }

    /// Rows matching `f`, oldest first, at most `f.limit` (capped at [`LEDGER_ROWS_MAX`]).
    pub fn query(&self, f: &LedgerFilter) -> Result<Vec<LedgerRow>, SledStoreError> {
        let limit = f.limit.clamp(1, LEDGER_ROWS_MAX);
        let mut start = vec![L];
        start.extend_from_slice(&f.since.unwrap_or(Timestamp(0)).0.to_be_bytes());
        let mut rows = Vec::new();
        for kv in self.db.range(start..).take(LEDGER_SCAN_MAX) {
            let (k, v) = kv?;
            if k.first() != Some(&L) || rows.len() >= limit {
                break;
            }
            let e = Self::decode(&k, &v)?;
            if f.until.is_some_and(|u| e.at >= u) {
                break;
            }
            if f.recipient.as_ref().is_some_and(|r| r != &e.recipient) {
                continue;
            }
            for (seq, id, kind, mask) in &e.records {
                if f.record.is_some_and(|r| r != *id) || rows.len() >= limit {
                    continue;
                }
                rows.push(LedgerRow {
                    at_ms: e.at.0,
                    recipient: e.recipient.to_string(),
                    policy_version: e.policy_version,
                    record: id.to_string(),
                    origin: e.origin.to_string(),
                    seq: *seq,
                    kind: kind.name().to_owned(),
                    fields: mask_fields(*kind, *mask),
                });
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_filter() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let ledger = Ledger::open(&store).unwrap_or_else(|e| panic!("{e}"));
        let id = |s: &str| MemberId::new(s).unwrap_or_else(|e| panic!("{e}"));
        let rec = RecordId([7; 32]);
        for (at, to) in [(5, "risk-warning"), (5, "pbc"), (9, "risk-warning")] {
            let e = LedgerEntry {
                at: Timestamp(at),
                recipient: id(to),
                origin: id("bank-a"),
                policy_version: 2,
                records: vec![
                    (3, rec, RecordKind::Credit, 0b101),
                    (4, RecordId([8; 32]), RecordKind::Credit, 1),
                ],
            };
            ledger.append(&[e]).unwrap_or_else(|e| panic!("{e}"));
        }
        let all = ledger
            .query(&LedgerFilter {
                limit: 100,
                ..LedgerFilter::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 6);
        assert_eq!(all[0].fields, ["subject_uscc", "region_code"]);
        let some = ledger
            .query(&LedgerFilter {
                recipient: Some(id("risk-warning")),
                record: Some(rec),
                since: Some(Timestamp(6)),
                until: None,
                limit: 100,
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(some.len(), 1);
        assert_eq!((some[0].at_ms, some[0].seq), (9, 3));
        // Reopening continues the entry counter: nothing is overwritten.
        drop(ledger);
        let ledger = Ledger::open(&store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledger.next.load(Ordering::Relaxed), 3);
    }
}
