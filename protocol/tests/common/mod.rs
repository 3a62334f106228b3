//! A test consortium for the sync tests: members with deterministic keys, a genesis roster
//! signed by two of three governors, record sealing, and a store that loses unflushed writes
//! in a crash.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Mutex;

use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::ids::{sha256, Hash};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::LocalLog;
use tfx_protocol::merkle::NodeId;
use tfx_protocol::policy::{Grant, Policy, SignedPolicy};
use tfx_protocol::record::{seal, SealParams};
use tfx_protocol::roster::{Governor, KeyWindow, Member, Roster, SignedRoster};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::{
    AppendBatch, HeldRecord, LogHead, MemoryStore, Query, RecordRef, Store, StoredRecord,
};
use tfx_protocol::validate::{parse_record_json, RecordBody};
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

pub const T0: u64 = 1_790_000_000_000;

pub fn id(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

pub fn member_id(i: usize) -> MemberId {
    id(&format!("m{i:02}"))
}

pub fn member_key(i: usize) -> SigningKey {
    SigningKey::from_seed(&[i as u8 + 1; 32])
}

pub fn gov_key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[0x80 + n; 32])
}

fn member(i: usize, role: &str) -> Member {
    Member {
        id: member_id(i),
        name: format!("member {i}"),
        roles: vec![role.into()],
        keys: vec![KeyWindow {
            key: *member_key(i).verifying_key(),
            valid_from: Timestamp(0),
            valid_until: None,
        }],
        tls_fingerprint: [i as u8; 32],
        endpoint: format!("127.0.0.1:{}", 7400 + i),
    }
}

/// Roster v1 with `n` members (all role `bank`, which may issue credit records).
pub fn genesis_roster(n: usize) -> Roster {
    genesis_roster_with(n, |_| "bank")
}

/// Roster v1 with `n` members whose roles `role(i)` gives.
pub fn genesis_roster_with(n: usize, role: impl Fn(usize) -> &'static str) -> Roster {
    Roster {
        consortium: "sync test".into(),
        version: 1,
        previous: None,
        issued_at: Timestamp(T0 - 1000),
        governors: (0..3)
            .map(|g| Governor {
                id: id(&format!("gov{g}")),
                key: *gov_key(g).verifying_key(),
            })
            .collect(),
        threshold: 2,
        members: (0..n).map(|i| member(i, role(i))).collect(),
        revocations: vec![],
        ca_fingerprint: [9; 32],
        witness_quorum: None,
    }
}

pub fn sign_roster(r: Roster) -> Vec<u8> {
    let mut s = SignedRoster::new(r).unwrap();
    s.sign(&gov_key(0));
    s.sign(&gov_key(1));
    s.encode()
}

/// (genesis hash, chain) for `n` members.
pub fn chain(n: usize) -> (Hash, Vec<Vec<u8>>) {
    let genesis = sign_roster(genesis_roster(n));
    let hash = sha256(&SignedRoster::decode(&genesis).unwrap().payload);
    (hash, vec![genesis])
}

pub fn credit_body() -> RecordBody {
    let path = format!(
        "{}/../examples/records/credit.json",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_record_json(&std::fs::read(path).unwrap()).unwrap()
}

/// Seals `count` records onto member `i`'s log in `store` (one batch with a checkpoint), as
/// the node's appender does. Returns the new head.
pub fn append<S: Store>(
    store: &S,
    i: usize,
    body: &RecordBody,
    count: usize,
    now: u64,
    salt: u64,
) -> LogHead {
    append_as(store, i, &member_key(i), body, count, now, salt)
}

/// [`append`], signed with `key` rather than member `i`'s own (a forger's log).
pub fn append_as<S: Store>(
    store: &S,
    i: usize,
    key: &SigningKey,
    body: &RecordBody,
    count: usize,
    now: u64,
    salt: u64,
) -> LogHead {
    let origin = member_id(i);
    let mut log = LocalLog::open(store, origin.clone()).unwrap();
    let sealed = (0..count)
        .map(|k| {
            let seq = log.next_seq().0 + k as u64;
            let params = SealParams {
                origin: &origin,
                seq: LogIndex(seq),
                issued_at: Timestamp(now),
                pseudonym: None,
            };
            let seed = [salt.to_be_bytes(), seq.to_be_bytes()].concat();
            seal(body, params, key, &mut DeterministicEntropy::new(&seed)).unwrap()
        })
        .collect();
    let (batch, frontier) = log.plan(sealed, Timestamp(now), key).unwrap();
    store.apply(&batch).unwrap();
    log.advance(frontier);
    log.head()
}

/// One write to a [`CrashStore`], in order, for replay after a crash.
#[derive(Debug)]
enum Op {
    Apply(AppendBatch),
    Replace(Vec<StoredRecord>),
}

/// A [`MemoryStore`] that remembers which batches were flushed: [`CrashStore::crash`] keeps
/// only those, as a power loss would.
#[derive(Debug, Default)]
pub struct CrashStore {
    live: Mutex<MemoryStore>,
    applied: Mutex<Vec<Op>>,
    flushed: Mutex<usize>,
}

impl CrashStore {
    pub fn crash(&self) {
        let applied = self.applied.lock().unwrap();
        let flushed = *self.flushed.lock().unwrap();
        let fresh = MemoryStore::new();
        for op in &applied[..flushed] {
            match op {
                Op::Apply(b) => fresh.apply(b).unwrap(),
                Op::Replace(r) => fresh.replace_disclosures(r).unwrap(),
            }
        }
        *self.live.lock().unwrap() = fresh;
        drop(applied);
        self.applied.lock().unwrap().truncate(flushed);
    }

    /// Operations applied and flushed so far: the points a backup could have been taken at.
    pub fn flushed_ops(&self) -> usize {
        *self.flushed.lock().unwrap()
    }

    /// Replaces the store by its state after the first `keep` flushed operations, as restoring
    /// a backup taken then would (`keep` ≤ [`CrashStore::flushed_ops`]).
    pub fn restore(&self, keep: usize) {
        let mut applied = self.applied.lock().unwrap();
        let fresh = MemoryStore::new();
        for op in &applied[..keep] {
            match op {
                Op::Apply(b) => fresh.apply(b).unwrap(),
                Op::Replace(r) => fresh.replace_disclosures(r).unwrap(),
            }
        }
        *self.live.lock().unwrap() = fresh;
        applied.truncate(keep);
        *self.flushed.lock().unwrap() = keep;
    }

    pub fn unflushed(&self) -> bool {
        self.applied.lock().unwrap().len() > *self.flushed.lock().unwrap()
    }
}

impl Store for CrashStore {
    type Error = <MemoryStore as Store>::Error;

    fn apply(&self, batch: &AppendBatch) -> Result<(), Self::Error> {
        self.live.lock().unwrap().apply(batch)?;
        self.applied.lock().unwrap().push(Op::Apply(batch.clone()));
        Ok(())
    }
    fn flush(&self) -> Result<(), Self::Error> {
        *self.flushed.lock().unwrap() = self.applied.lock().unwrap().len();
        Ok(())
    }
    fn origins(&self) -> Result<Vec<MemberId>, Self::Error> {
        self.live.lock().unwrap().origins()
    }
    fn head(&self, origin: &MemberId) -> Result<Option<LogHead>, Self::Error> {
        self.live.lock().unwrap().head(origin)
    }
    fn checkpoint(&self, origin: &MemberId) -> Result<Option<Vec<u8>>, Self::Error> {
        self.live.lock().unwrap().checkpoint(origin)
    }
    fn node(&self, origin: &MemberId, id: NodeId) -> Result<Option<Hash>, Self::Error> {
        self.live.lock().unwrap().node(origin, id)
    }
    fn envelope(&self, origin: &MemberId, seq: LogIndex) -> Result<Option<Vec<u8>>, Self::Error> {
        self.live.lock().unwrap().envelope(origin, seq)
    }
    fn envelopes(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<(LogIndex, Vec<u8>)>, Self::Error> {
        self.live.lock().unwrap().envelopes(origin, from, limit)
    }
    fn locate(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, Self::Error> {
        self.live.lock().unwrap().locate(id)
    }
    fn disclosures(&self, id: &RecordId) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.live.lock().unwrap().disclosures(id)
    }
    fn records(
        &self,
        origin: &MemberId,
        from: LogIndex,
        limit: usize,
    ) -> Result<Vec<HeldRecord>, Self::Error> {
        self.live.lock().unwrap().records(origin, from, limit)
    }
    fn replace_disclosures(&self, records: &[StoredRecord]) -> Result<(), Self::Error> {
        self.live.lock().unwrap().replace_disclosures(records)?;
        self.applied
            .lock()
            .unwrap()
            .push(Op::Replace(records.to_vec()));
        Ok(())
    }
    fn backfills(&self) -> Result<Vec<(MemberId, u64, u64)>, Self::Error> {
        self.live.lock().unwrap().backfills()
    }
    fn witnessed(&self, origin: &MemberId) -> Result<Vec<(u64, Vec<u8>)>, Self::Error> {
        self.live.lock().unwrap().witnessed(origin)
    }
    fn evidence(&self) -> Result<Vec<(MemberId, Vec<u8>)>, Self::Error> {
        self.live.lock().unwrap().evidence()
    }
    fn query(&self, q: &Query) -> Result<Vec<RecordRef>, Self::Error> {
        self.live.lock().unwrap().query(q)
    }
}

/// Policy version `version` (chained after `previous`) with the given `(kind, role, fields)`
/// grants, signed by two of the three governors under roster version `roster_version`.
pub fn sign_policy(
    version: u64,
    previous: Option<&Policy>,
    roster_version: u64,
    grants: &[(&str, &str, &[&str])],
) -> (Policy, Vec<u8>) {
    let mut grants: Vec<Grant> = grants
        .iter()
        .map(|(kind, role, fields)| {
            let kind = RecordKind::parse(kind).unwrap();
            Grant {
                kind,
                role: (*role).into(),
                fields: kind
                    .fields()
                    .iter()
                    .map(|f| f.name)
                    .filter(|f| fields.contains(f) || fields == &["*"])
                    .map(str::to_owned)
                    .collect(),
                purpose: "test".into(),
                retention_days: None,
            }
        })
        .collect();
    grants.sort_by(|a, b| (a.kind, &a.role).cmp(&(b.kind, &b.role)));
    let policy = Policy {
        consortium: "sync test".into(),
        version,
        previous: previous.map(Policy::hash),
        issued_at: Timestamp(T0 - 500),
        roster_version,
        grants,
    };
    let mut s = SignedPolicy::new(policy.clone()).unwrap();
    s.sign(&gov_key(0));
    s.sign(&gov_key(2));
    (policy, s.encode())
}

/// splitmix64 for the simulations: small, fast, and the same everywhere, so a seed replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (near enough for a simulation).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}
