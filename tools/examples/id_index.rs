//! The record-id index file (`tfx_node::idindex`) on its own: µs per insert over each fifth of a
//! million random record ids (fsynced every 20,000, about a settle's worth at a catch-up's rate),
//! the same for sled inserts of the keys store format 3 used (`I` + 32-byte id → origin, seq;
//! flushed every 1,000), and µs per lookup of a held id at the end. Then how long opening a store
//! takes to rebuild a lost index from its records.
//! Release build: `cargo run --release -p tfx-tools --example id_index [records-to-rebuild]`
//! (default 200,000). Cited in BENCHMARKS.md ("The record-id index out of sled").
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement harness: any failure should stop it loudly

use std::time::Instant;

use tfx_node::idindex::IdIndex;
use tfx_node::sled_store::SledStore;
use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::LocalLog;
use tfx_protocol::record::{seal, SealParams};
use tfx_protocol::store::Store;
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

const INSERTS: u64 = 1_000_000;
const STEP: u64 = 200_000;

fn id(i: u64) -> RecordId {
    RecordId(tfx_protocol::ids::sha256(&i.to_be_bytes()))
}

fn index_file() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = IdIndex::open(dir.path()).unwrap();
    index.register(1, MemberId::new("bank-a").unwrap()).unwrap();
    timed_inserts(
        "records.idx",
        20_000,
        |i| index.insert(&[(id(i), 1, i)], false).unwrap(),
        || index.sync().unwrap(),
    );
    let t = Instant::now();
    for i in (0..INSERTS).step_by(10) {
        assert!(index.get(&id(i)).unwrap().is_some());
    }
    println!(
        "{:<22} {:6.2}   µs per lookup of a held id, at 1M",
        "records.idx",
        per(t, INSERTS / 10)
    );
    println!(
        "{:<22} {:>6}   bytes of file per id, at 1M",
        "records.idx",
        index.len_on_disk() / INSERTS
    );
}

fn sled_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = tfx_node::sled_store::sled_config(dir.path())
        .open()
        .unwrap();
    let value = [&[6u8][..], b"bank-a", &[0u8; 8]].concat();
    timed_inserts(
        "sled I keys (format 3)",
        1_000,
        |i| {
            db.insert([&b"I"[..], &id(i).0].concat(), value.as_slice())
                .unwrap();
        },
        || {
            db.flush().unwrap();
        },
    );
}

/// Runs `insert` for each of [`INSERTS`], `sync` after every `sync_every`, and prints µs per
/// insert over each [`STEP`].
fn timed_inserts(label: &str, sync_every: u64, insert: impl Fn(u64), sync: impl Fn()) {
    let mut line = format!("{label:<22}");
    let mut t = Instant::now();
    for i in 0..INSERTS {
        insert(i);
        if i % sync_every == sync_every - 1 {
            sync();
        }
        if i % STEP == STEP - 1 {
            line.push_str(&format!(" {:6.2}", per(t, STEP)));
            t = Instant::now();
        }
    }
    println!("{line}   µs per insert, each {}k", STEP / 1000);
}

fn per(t: Instant, n: u64) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Seals `n` synthetic credit records into a fresh store, removes its index and reopens it.
fn rebuild(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let origin = MemberId::new("bank-a").unwrap();
    let key = SigningKey::from_seed(&[7; 32]);
    {
        let store = SledStore::open(dir.path()).unwrap();
        let mut log = LocalLog::open(&store, origin.clone()).unwrap();
        let mut entropy = DeterministicEntropy::new(b"id_index");
        let mut next = 0;
        while next < n {
            let take = (n - next).min(1024);
            let sealed: Vec<_> = (next..next + take)
                .map(|seq| {
                    let body = tfx_node::synthetic::credit(seq).unwrap();
                    let params = SealParams {
                        origin: &origin,
                        seq: LogIndex(seq),
                        issued_at: Timestamp(1_000 + seq),
                        pseudonym: None,
                    };
                    seal(&body, params, &key, &mut entropy).unwrap()
                })
                .collect();
            let (batch, frontier) = log
                .plan(sealed, Timestamp(1_000 + next + take), &key)
                .unwrap();
            store.commit(&batch).unwrap();
            log.advance(frontier);
            next += take;
        }
        store.flush().unwrap();
    }
    std::fs::remove_file(dir.path().join(tfx_node::idindex::INDEX_FILE)).unwrap();
    let t = Instant::now();
    let store = SledStore::open(dir.path()).unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(store
        .locate(&rebuilt_first(&store, &origin))
        .unwrap()
        .is_some());
    println!(
        "rebuilding records.idx for {n} records on open: {s:.2} s ({:.0} records/s)",
        n as f64 / s
    );
}

fn rebuilt_first(store: &SledStore, origin: &MemberId) -> RecordId {
    let first = store.records(origin, LogIndex(0), 1).unwrap();
    RecordId::of_envelope(&first[0].envelope)
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("records to rebuild: a number"))
        .unwrap_or(200_000);
    index_file();
    sled_keys();
    rebuild(n);
}
