#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The `Store` contract, run against both implementations (in-memory and sled): appends through
//! `LocalLog` are readable by id, by position, in ranges and through every index; Merkle nodes
//! serve proofs; the whole log re-verifies; and sled state survives a reopen.

use std::sync::Arc;
use std::time::Duration;

use tfx_node::appender::{Appender, AppenderConfig};
use tfx_node::sled_store::{SledStore, SledStoreError};
use tfx_node::vlog::{Pointer, VLOG_FILE};
use tfx_protocol::derive::{PseudonymKey, PseudonymSecret, PURPOSE_RISK_WARNING};
use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::{verify_log, LocalLog};
use tfx_protocol::merkle::{inclusion_proof, leaf_hash, verify_inclusion};
use tfx_protocol::record::{seal, verify_record, SealParams};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::{AppendBatch, MemoryStore, Query, Store, StoreNodes};
use tfx_protocol::{LogIndex, MemberId, Timestamp};

fn key() -> SigningKey {
    SigningKey::from_seed(&[0x11; 32])
}

fn origin() -> MemberId {
    MemberId::new("bank-a").unwrap()
}

fn pseudonym_key() -> PseudonymKey {
    PseudonymKey::derive(&[0x22; 32], PURPOSE_RISK_WARNING, 2026).unwrap()
}

/// Appends `n` synthetic records in batches of `batch`, issued at 1000 + seq ms, flushing the
/// store after each.
fn append<S: Store>(store: &S, n: u64, batch: usize) {
    append_with(store, n, batch, true)
}

fn append_with<S: Store>(store: &S, n: u64, batch: usize, flush: bool) {
    let mut log = LocalLog::open(store, origin()).unwrap();
    let mut entropy = DeterministicEntropy::new(b"contract");
    let (o, k, pk) = (origin(), key(), pseudonym_key());
    let mut next = log.next_seq().0;
    let end = next + n;
    while next < end {
        let take = (end - next).min(batch as u64);
        let sealed: Vec<_> = (next..next + take)
            .map(|seq| {
                let body = tfx_node::synthetic::credit(seq).unwrap();
                let params = SealParams {
                    origin: &o,
                    seq: LogIndex(seq),
                    issued_at: Timestamp(1000 + seq),
                    pseudonym: Some(&pk),
                };
                seal(&body, params, &k, &mut entropy).unwrap()
            })
            .collect();
        let (b, frontier) = log.plan(sealed, Timestamp(1000 + next + take), &k).unwrap();
        store.apply(&b).unwrap();
        if flush {
            store.flush().unwrap();
        }
        log.advance(frontier);
        next += take;
    }
}

fn contract<S: Store>(store: &S) {
    append(store, 37, 10);
    append(store, 13, 4); // reopen the log from the store and continue
    let o = origin();
    let head = store.head(&o).unwrap().unwrap();
    assert_eq!(head.size, 50);
    assert_eq!(store.origins().unwrap(), vec![o.clone()]);
    let report = verify_log(store, &o, key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!((report.size, report.checkpoint_size), (50, 50));
    assert_eq!(report.disclosures_verified, 50 * 18);

    // By position, by id, ranges.
    let env = store.envelope(&o, LogIndex(7)).unwrap().unwrap();
    let id = tfx_protocol::RecordId::of_envelope(&env);
    assert_eq!(store.locate(&id).unwrap(), Some((o.clone(), LogIndex(7))));
    let v = verify_record(
        &env,
        &store.disclosures(&id).unwrap(),
        key().verifying_key(),
    )
    .unwrap();
    assert_eq!(v.envelope.header.seq, LogIndex(7));
    let page = store.envelopes(&o, LogIndex(45), 100).unwrap();
    assert_eq!(
        page.iter().map(|(s, _)| s.0).collect::<Vec<_>>(),
        vec![45, 46, 47, 48, 49]
    );
    assert!(store.envelope(&o, LogIndex(50)).unwrap().is_none());
    assert!(store
        .envelopes(&MemberId::new("nobody").unwrap(), LogIndex(0), 10)
        .unwrap()
        .is_empty());

    // Merkle nodes serve proofs against the head.
    let nodes = StoreNodes::new(store, &o);
    let proof = inclusion_proof(&nodes, 7, 50).unwrap();
    verify_inclusion(&leaf_hash(&env), 7, 50, &proof, &head.root).unwrap();

    // Indexes: subject (USCC and pseudonym), kind, time window, limit.
    let subject = tfx_node::synthetic::credit_json(7)["subject_uscc"]
        .as_str()
        .unwrap()
        .to_string();
    let uscc = tfx_protocol::domain::Uscc::parse(&subject).unwrap();
    let by_uscc = store
        .query(&Query {
            subject: Some(uscc.as_str().into()),
            ..Query::default()
        })
        .unwrap();
    let seqs: Vec<u64> = by_uscc.iter().map(|r| r.seq.0).collect();
    assert!(seqs.contains(&7), "{seqs:?}");
    let pseudonym = pseudonym_key().pseudonym(&uscc);
    let by_ps = store
        .query(&Query {
            subject: Some(pseudonym),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(by_ps, by_uscc);
    let window = Query {
        since: Some(Timestamp(1010)),
        until: Some(Timestamp(1020)),
        ..Query::default()
    };
    assert_eq!(
        store
            .query(&window)
            .unwrap()
            .iter()
            .map(|r| r.seq.0)
            .collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    let none = Query {
        kind: Some(RecordKind::Monitoring),
        ..Query::default()
    };
    assert!(store.query(&none).unwrap().is_empty());
    let limited = Query {
        kind: Some(RecordKind::Credit),
        limit: 3,
        ..Query::default()
    };
    assert_eq!(store.query(&limited).unwrap().len(), 3);
}

/// Witnessed checkpoints are set and deleted per (origin, size) and listed in size order;
/// evidence is kept per origin, the first piece winning.
fn audit_contract<S: Store>(store: &S) {
    let other = MemberId::new("bank-b").unwrap();
    let batch = AppendBatch {
        witnessed: vec![
            (origin(), 4096, Some(vec![2])),
            (origin(), 7, Some(vec![1])),
            (origin(), 9000, Some(vec![3])),
            (other.clone(), 5, Some(vec![9])),
        ],
        evidence: vec![(other.clone(), vec![0xe1])],
        ..AppendBatch::default()
    };
    store.apply(&batch).unwrap();
    assert_eq!(
        store.witnessed(&origin()).unwrap(),
        vec![(7, vec![1]), (4096, vec![2]), (9000, vec![3])]
    );
    let batch = AppendBatch {
        witnessed: vec![(origin(), 7, None), (origin(), 4096, Some(vec![4]))],
        evidence: vec![(other.clone(), vec![0xe2])],
        ..AppendBatch::default()
    };
    store.apply(&batch).unwrap();
    assert_eq!(
        store.witnessed(&origin()).unwrap(),
        vec![(4096, vec![4]), (9000, vec![3])]
    );
    assert_eq!(store.witnessed(&other).unwrap(), vec![(5, vec![9])]);
    assert_eq!(store.evidence().unwrap(), vec![(other, vec![0xe1])]);
}

#[test]
fn memory_store_meets_the_contract() {
    contract(&MemoryStore::new());
    audit_contract(&MemoryStore::new());
}

#[test]
fn sled_store_keeps_witnessed_checkpoints_and_evidence_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        audit_contract(&store);
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.witnessed(&origin()).unwrap().len(), 2);
    assert_eq!(store.evidence().unwrap().len(), 1);
}

#[test]
fn sled_store_meets_the_contract_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        contract(&store);
    }
    let store = SledStore::open(dir.path()).unwrap();
    let report = verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!(report.size, 50);
}

#[test]
fn sled_store_refuses_a_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        db.insert(b"Mformat", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(dir.path()) {
        Err(e @ SledStoreError::NewerFormat { found: 99 }) => {
            assert!(e.to_string().contains("upgrade tfx-node"))
        }
        other => panic!("expected a newer-format refusal, got {other:?}"),
    }
}

#[test]
fn concurrent_appends_get_contiguous_sequence_numbers_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let config = AppenderConfig {
        origin: origin(),
        key: key(),
        previous_keys: Vec::new(),
        pseudonym: Some(PseudonymSecret::new(&[0x22; 32]).unwrap()),
    };
    let appender = Arc::new(Appender::start(store.clone(), config).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut receipts = rt.block_on(async {
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let a = appender.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..25 {
                        out.push(
                            a.append(tfx_node::synthetic::credit(t * 100 + i).unwrap())
                                .await
                                .unwrap(),
                        );
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    receipts.sort_by_key(|r| r.seq);
    assert_eq!(
        receipts.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    for r in &receipts {
        assert_eq!(store.locate(&r.id).unwrap(), Some((origin(), r.seq)));
    }
    assert!(
        receipts
            .windows(2)
            .all(|w| w[0].issued_at <= w[1].issued_at),
        "issue times never go backwards"
    );
    Arc::try_unwrap(appender).unwrap().shutdown();
    let report = verify_log(&*store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!((report.size, report.checkpoint_size), (400, 400));

    // A restarted appender continues the same log.
    let config = AppenderConfig {
        origin: origin(),
        key: key(),
        previous_keys: Vec::new(),
        pseudonym: None,
    };
    let appender = Appender::start(store.clone(), config).unwrap();
    let r = appender
        .append_blocking(tfx_node::synthetic::credit(9999).unwrap())
        .unwrap();
    assert_eq!(r.seq, LogIndex(400));
}

#[test]
fn a_tampered_store_fails_log_verification() {
    // Corrupt one byte on disk, inside the last disclosure of record 6 (the end of the first
    // chunk: batches of 7 make chunks 0..=6, 7..=13, 14..=19). Signatures of the envelope still
    // hold; the disclosure no longer matches its digest, and verification names the record.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 20, 7);
    }
    // The chunk's bytes live in the value log; sled holds where (tag 1, offset u64, len u32).
    // Flip the chunk's last byte in the file and make sure reopening reads the flipped byte.
    let chunk_key = [b"E\x06bank-a".as_slice(), &0u64.to_be_bytes()].concat();
    let pointer = {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        db.get(&chunk_key).unwrap().unwrap().to_vec()
    };
    assert_eq!((pointer.len(), pointer[0]), (13, 1), "E holds a pointer");
    let offset = u64::from_be_bytes(pointer[1..9].try_into().unwrap());
    let len = u32::from_be_bytes(pointer[9..13].try_into().unwrap()) as u64;
    let vlog = dir.path().join(tfx_node::vlog::VLOG_FILE);
    let mut bytes = std::fs::read(&vlog).unwrap();
    let last = (offset + len - 1) as usize;
    bytes[last] ^= 0x01;
    std::fs::write(&vlog, &bytes).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let err = verify_log(&store, &origin(), key().verifying_key(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("bank-a seq 6: disclosure"), "{err}");
}

#[test]
fn proofs_span_stored_and_recomputed_merkle_levels() {
    // 600 records cross two 256-leaf blocks: proofs mix stored nodes (level ≥ 8) with nodes
    // recomputed from envelopes, on both stores, and must agree with each other.
    let dir = tempfile::tempdir().unwrap();
    let sled_store = SledStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    append(&sled_store, 600, 97);
    append(&memory, 600, 256);
    let o = origin();
    let (sled_nodes, memory_nodes) = (
        StoreNodes::new(&sled_store, &o),
        StoreNodes::new(&memory, &o),
    );
    let head = sled_store.head(&o).unwrap().unwrap();
    assert_eq!(memory.head(&o).unwrap().unwrap().size, 600);
    for (index, size) in [
        (0, 600),
        (255, 600),
        (256, 600),
        (511, 513),
        (599, 600),
        (300, 300 + 1),
    ] {
        let proof = inclusion_proof(&sled_nodes, index, size).unwrap();
        assert_eq!(proof, inclusion_proof(&memory_nodes, index, size).unwrap());
        let root = tfx_protocol::merkle::root(&sled_nodes, size).unwrap();
        let env = sled_store.envelope(&o, LogIndex(index)).unwrap().unwrap();
        verify_inclusion(&leaf_hash(&env), index, size, &proof, &root).unwrap();
    }
    for (old, new) in [(1, 600), (255, 257), (256, 512), (300, 600), (599, 600)] {
        let proof = tfx_protocol::merkle::consistency_proof(&sled_nodes, old, new).unwrap();
        let old_root = tfx_protocol::merkle::root(&sled_nodes, old).unwrap();
        let new_root = tfx_protocol::merkle::root(&sled_nodes, new).unwrap();
        tfx_protocol::merkle::verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
    }
    assert_eq!(
        tfx_protocol::merkle::root(&sled_nodes, 600).unwrap(),
        head.root
    );
    // Level-8 nodes are stored; nothing below is.
    let stored = |level: u8, index: u64| {
        sled_store
            .node(&o, tfx_protocol::merkle::NodeId { level, index })
            .unwrap()
    };
    assert!(stored(8, 0).is_some() && stored(8, 1).is_some() && stored(9, 0).is_some());
    assert!(stored(7, 0).is_none() && stored(0, 0).is_none());
    let report = verify_log(&sled_store, &o, key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!(report.size, 600);
}

/// Seals records `seqs` of the test origin (they need not continue any log).
fn sealed_at(seqs: std::ops::Range<u64>) -> Vec<tfx_protocol::record::SealedRecord> {
    let (o, k, pk) = (origin(), key(), pseudonym_key());
    let mut entropy = DeterministicEntropy::new(b"overlap");
    seqs.map(|seq| {
        let body = tfx_node::synthetic::credit(seq).unwrap();
        let params = SealParams {
            origin: &o,
            seq: LogIndex(seq),
            issued_at: Timestamp(5000 + seq),
            pseudonym: Some(&pk),
        };
        seal(&body, params, &k, &mut entropy).unwrap()
    })
    .collect()
}

fn batch_of(records: Vec<tfx_protocol::record::SealedRecord>) -> tfx_protocol::store::AppendBatch {
    tfx_protocol::store::AppendBatch {
        records: records
            .into_iter()
            .map(tfx_protocol::store::StoredRecord::from_sealed)
            .collect(),
        ..Default::default()
    }
}

fn refuses_non_appends<S: Store>(store: &S) {
    append(store, 70, 70);
    for (what, seqs) in [
        ("overlap", 5..6),
        ("replay", 0..70),
        ("gap", 71..72),
        ("straddle", 69..72),
    ] {
        let err = store
            .apply(&batch_of(sealed_at(seqs)))
            .expect_err(what)
            .to_string();
        assert!(
            err.contains("does not append to the log of bank-a: expected seq 70"),
            "{what}: {err}"
        );
    }
    // Nothing was written: the log is intact and the next real append continues it.
    assert_eq!(store.head(&origin()).unwrap().unwrap().size, 70);
    append(store, 3, 3);
    let report = verify_log(store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!(report.size, 73);
}

#[test]
fn both_stores_refuse_batches_that_do_not_append() {
    refuses_non_appends(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    refuses_non_appends(&SledStore::open(dir.path()).unwrap());
}

#[test]
fn a_mislabelled_record_cannot_redirect_a_pseudonym() {
    // Record 0 is about enterprise A but (by an issuer's bug or malice) carries B's pseudonym.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let subject = |n: u64| {
        tfx_node::synthetic::credit_json(n)["subject_uscc"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (subject(0), subject(3));
    assert_ne!(a, b);
    let p_b = pseudonym_key().pseudonym(&tfx_protocol::domain::Uscc::parse(&b).unwrap());
    let mut log = LocalLog::open(&store, origin()).unwrap();
    let sealed = sealed_at(0..6);
    let (mut batch, frontier) = log.plan(sealed, Timestamp(9000), &key()).unwrap();
    batch.records[0].subjects = vec![a.clone(), p_b.clone()];
    store.apply(&batch).unwrap();
    log.advance(frontier);
    // B's own records (synthetic records n and n+1.. share subject n/3) stay findable.
    let by_ps: Vec<u64> = store
        .query(&Query {
            subject: Some(p_b),
            ..Query::default()
        })
        .unwrap()
        .iter()
        .map(|r| r.seq.0)
        .collect();
    let by_b: Vec<u64> = store
        .query(&Query {
            subject: Some(b),
            ..Query::default()
        })
        .unwrap()
        .iter()
        .map(|r| r.seq.0)
        .collect();
    assert!(!by_b.is_empty());
    assert_eq!(
        by_ps, by_b,
        "every record of B is found by B's pseudonym, and none of A's"
    );
}

#[test]
fn the_durable_head_follows_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let config = AppenderConfig {
        origin: origin(),
        key: key(),
        previous_keys: Vec::new(),
        pseudonym: None,
    };
    let appender = Appender::start(store.clone(), config).unwrap();
    let durable = appender.durable_head();
    assert_eq!(durable.borrow().size, 0);
    let mut last = None;
    for n in 0..20 {
        let r = appender
            .append_blocking(tfx_node::synthetic::credit(n).unwrap())
            .unwrap();
        // The receipt is sent after the watermark moves, so it already covers the record.
        assert!(durable.borrow().size > r.seq.0);
        last = Some(r);
    }
    assert_eq!(durable.borrow().size, 20);
    assert_eq!(
        durable.borrow().root,
        store.head(&origin()).unwrap().unwrap().root
    );
    appender.shutdown();
    // Restarted, the appender starts from the stored head and keeps issue times monotonic.
    let config = AppenderConfig {
        origin: origin(),
        key: key(),
        previous_keys: Vec::new(),
        pseudonym: None,
    };
    let appender = Appender::start(store.clone(), config).unwrap();
    assert_eq!(appender.durable_head().borrow().size, 20);
    let r = appender
        .append_blocking(tfx_node::synthetic::credit(99).unwrap())
        .unwrap();
    assert!(r.issued_at >= last.unwrap().issued_at);
    // Another origin's key cannot take over this log: its latest checkpoint does not verify.
    let config = AppenderConfig {
        origin: origin(),
        key: SigningKey::from_seed(&[0x77; 32]),
        previous_keys: Vec::new(),
        pseudonym: None,
    };
    drop(appender);
    let err = Appender::start(store, config).unwrap_err().to_string();
    assert!(err.contains("latest checkpoint of bank-a"), "{err}");
}

#[test]
fn sled_chunks_stay_under_their_byte_cap_through_a_back_fill() {
    use tfx_node::sled_store::CHUNK_BYTES_MAX;
    use tfx_protocol::store::{subjects_of_bytes, StoredRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // Each chunk's size, from the pointer sled holds into the value log.
    let chunks = |store: &SledStore| -> Vec<usize> {
        store
            .db()
            .scan_prefix(b"E")
            .map(|kv| Pointer::decode(&kv.unwrap().1).unwrap().unwrap().len as usize)
            .collect()
    };
    // 64 records held with three fields each, as a member with a narrow view holds them…
    let full: Vec<StoredRecord> = sealed_at(0..64)
        .into_iter()
        .map(StoredRecord::from_sealed)
        .collect();
    let narrow: Vec<StoredRecord> = full
        .iter()
        .map(|r| {
            let disclosures = r.disclosures[..3].to_vec();
            StoredRecord {
                subjects: subjects_of_bytes(&disclosures),
                disclosures,
                ..r.clone()
            }
        })
        .collect();
    store
        .apply(&AppendBatch {
            records: narrow,
            ..Default::default()
        })
        .unwrap();
    let before = chunks(&store);
    assert!(before.len() >= 2, "{before:?}");
    assert!(before.iter().all(|&n| n <= CHUNK_BYTES_MAX), "{before:?}");
    // …then back-filled with every field: the chunks grow past the cap and are split.
    store.replace_disclosures(&full).unwrap();
    let after = chunks(&store);
    assert!(after.len() > before.len(), "{before:?} → {after:?}");
    assert!(after.iter().all(|&n| n <= CHUNK_BYTES_MAX), "{after:?}");
    let held = store.records(&origin(), LogIndex(0), 100).unwrap();
    assert_eq!(held.len(), 64);
    for (h, r) in held.iter().zip(&full) {
        assert_eq!(
            (h.seq, &h.envelope, &h.disclosures),
            (r.seq, &r.envelope, &r.disclosures)
        );
        assert_eq!(store.disclosures(&r.id).unwrap(), r.disclosures);
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A store in `dir` holding records 0..40 of `sealed_at`, durably, and those records.
fn store_of_40(dir: &std::path::Path) -> (SledStore, Vec<tfx_protocol::store::StoredRecord>) {
    use tfx_protocol::store::StoredRecord;
    let store = SledStore::open(dir).unwrap();
    let full: Vec<StoredRecord> = sealed_at(0..40)
        .into_iter()
        .map(StoredRecord::from_sealed)
        .collect();
    store
        .apply(&AppendBatch {
            records: full.clone(),
            ..Default::default()
        })
        .unwrap();
    store.flush().unwrap();
    (store, full)
}

/// `r` holding only `disclosures` (its subjects follow them), as a purge leaves it.
fn with_disclosures(
    r: &tfx_protocol::store::StoredRecord,
    disclosures: Vec<Vec<u8>>,
) -> tfx_protocol::store::StoredRecord {
    tfx_protocol::store::StoredRecord {
        subjects: tfx_protocol::store::subjects_of_bytes(&disclosures),
        disclosures,
        ..r.clone()
    }
}

#[test]
fn a_purge_leaves_no_removed_disclosure_in_the_value_log() {
    use tfx_protocol::store::StoredRecord;
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = store_of_40(dir.path());
    let removed: Vec<Vec<u8>> = full.iter().map(|r| r.disclosures[5].clone()).collect();
    let vlog = dir.path().join(VLOG_FILE);
    let file = std::fs::read(&vlog).unwrap();
    assert!(
        removed.iter().all(|d| contains(&file, d)),
        "held before the purge"
    );
    // The policy narrows: every record keeps all but its sixth disclosure.
    let narrow: Vec<StoredRecord> = full
        .iter()
        .map(|r| {
            let mut disclosures = r.disclosures.clone();
            disclosures.remove(5);
            with_disclosures(r, disclosures)
        })
        .collect();
    store.replace_disclosures(&narrow).unwrap();
    let file = std::fs::read(&vlog).unwrap();
    for (d, r) in removed.iter().zip(&narrow) {
        assert!(
            !contains(&file, d),
            "seq {}: a purged disclosure is still in the file",
            r.seq.0
        );
        assert_eq!(store.disclosures(&r.id).unwrap(), r.disclosures);
    }
    // Nothing is left to zero, and the store reopens to the purged records.
    assert_eq!(store.db().scan_prefix(b"Z").count(), 0);
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let held = store.records(&origin(), LogIndex(0), 100).unwrap();
    assert_eq!(held.len(), narrow.len());
    for (h, r) in held.iter().zip(&narrow) {
        assert_eq!((&h.envelope, &h.disclosures), (&r.envelope, &r.disclosures));
    }
}

#[test]
fn a_purged_uscc_is_left_in_no_value_log_frame() {
    // The USCC is a disclosure (zeroed with its chunk) but also part of a subject index key,
    // which every frame that wrote or removed it repeats: the purge scrubs those too.
    use tfx_protocol::disclosure::Disclosure;
    use tfx_protocol::store::StoredRecord;
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = store_of_40(dir.path());
    let usccs: Vec<String> = full
        .iter()
        .map(|r| {
            r.subjects
                .iter()
                .find(|s| !tfx_protocol::derive::is_pseudonym(s))
                .unwrap()
                .clone()
        })
        .collect();
    let vlog = dir.path().join(VLOG_FILE);
    let file = std::fs::read(&vlog).unwrap();
    assert!(usccs.iter().all(|u| contains(&file, u.as_bytes())));
    let narrow: Vec<StoredRecord> = full
        .iter()
        .map(|r| {
            let disclosures: Vec<Vec<u8>> = r
                .disclosures
                .iter()
                .filter(|d| Disclosure::decode(d).unwrap().name() != "subject_uscc")
                .cloned()
                .collect();
            assert_eq!(disclosures.len(), r.disclosures.len() - 1);
            with_disclosures(r, disclosures)
        })
        .collect();
    store.replace_disclosures(&narrow).unwrap();
    let file = std::fs::read(&vlog).unwrap();
    for (u, r) in usccs.iter().zip(&narrow) {
        assert!(
            !contains(&file, u.as_bytes()),
            "seq {}: its purged USCC is still in the value log",
            r.seq.0
        );
    }
    // A reopen is unaffected: the scrubbed frames are never read again.
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let held = store.records(&origin(), LogIndex(0), 100).unwrap();
    assert_eq!(held.len(), narrow.len());
    for (h, r) in held.iter().zip(&narrow) {
        assert_eq!(&h.disclosures, &r.disclosures);
    }
}

/// `records` as a purge of their USCC disclosure leaves them.
fn without_uscc(
    records: &[tfx_protocol::store::StoredRecord],
) -> Vec<tfx_protocol::store::StoredRecord> {
    use tfx_protocol::disclosure::Disclosure;
    records
        .iter()
        .map(|r| {
            let disclosures = r
                .disclosures
                .iter()
                .filter(|d| Disclosure::decode(d).unwrap().name() != "subject_uscc")
                .cloned()
                .collect();
            with_disclosures(r, disclosures)
        })
        .collect()
}

/// Records 0..40 of `bank-b` about the same enterprises as [`store_of_40`]'s, USCC included.
fn bank_b_records() -> Vec<tfx_protocol::store::StoredRecord> {
    let other = MemberId::new("bank-b").unwrap();
    let (k, pk) = (key(), pseudonym_key());
    let mut entropy = DeterministicEntropy::new(b"other issuer");
    (0..40)
        .map(|seq| {
            let body = tfx_node::synthetic::credit(seq).unwrap();
            let params = SealParams {
                origin: &other,
                seq: LogIndex(seq),
                issued_at: Timestamp(9000 + seq),
                pseudonym: Some(&pk),
            };
            tfx_protocol::store::StoredRecord::from_sealed(
                seal(&body, params, &k, &mut entropy).unwrap(),
            )
        })
        .collect()
}

fn pseudonym_of(r: &tfx_protocol::store::StoredRecord) -> String {
    r.subjects
        .iter()
        .find(|s| tfx_protocol::derive::is_pseudonym(s))
        .unwrap()
        .clone()
}

fn by_subject(store: &SledStore, subject: String) -> Vec<tfx_protocol::store::RecordRef> {
    store
        .query(&Query {
            subject: Some(subject),
            ..Query::default()
        })
        .unwrap()
}

#[test]
fn a_pseudonym_whose_uscc_was_purged_is_mapped_again_by_a_later_append() {
    // A purge removes pseudonym → USCC (`P`) entries; the next record that carries the pair
    // must put its entry back (an append writes it only when missing, so anything that
    // remembers which entries exist must forget on a purge), or a query by pseudonym would
    // miss records indexed under the USCC.
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = store_of_40(dir.path());
    let pairs = |store: &SledStore| store.db().scan_prefix(b"P").count();
    assert_eq!(pairs(&store), 40);
    store.replace_disclosures(&without_uscc(&full)).unwrap();
    assert_eq!(pairs(&store), 0, "the purge dropped every pair");
    store
        .apply(&AppendBatch {
            records: bank_b_records(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pairs(&store), 40);
    let found = by_subject(&store, pseudonym_of(&full[3]));
    assert!(
        found
            .iter()
            .any(|r| r.origin.as_str() == "bank-b" && r.seq == LogIndex(3)),
        "{found:?}"
    );
}

#[test]
fn a_purge_keeps_a_pseudonym_pair_another_held_record_still_carries() {
    // Two origins recorded the same enterprises; this member's view loses one origin's USCCs.
    // The other origin's records still carry USCC and pseudonym together, so the pair stays and
    // a query by pseudonym still finds them; once no record carries both, the pair goes.
    let dir = tempfile::tempdir().unwrap();
    let (store, full) = store_of_40(dir.path());
    let b = bank_b_records();
    store
        .apply(&AppendBatch {
            records: b.clone(),
            ..Default::default()
        })
        .unwrap();
    let pairs = |store: &SledStore| store.db().scan_prefix(b"P").count();
    assert_eq!(pairs(&store), 40);
    store.replace_disclosures(&without_uscc(&b)).unwrap();
    assert_eq!(pairs(&store), 40, "bank-a's records still carry every pair");
    let found = by_subject(&store, pseudonym_of(&full[3]));
    let seen: Vec<(&str, u64)> = found.iter().map(|r| (r.origin.as_str(), r.seq.0)).collect();
    assert!(seen.contains(&("bank-a", 3)), "{seen:?}");
    assert!(seen.contains(&("bank-b", 3)), "{seen:?}");
    store.replace_disclosures(&without_uscc(&full)).unwrap();
    assert_eq!(pairs(&store), 0, "no record carries a USCC any more");
}

#[test]
fn a_value_log_tail_no_batch_points_at_is_ignored_and_overwritten() {
    // Bodies written for a batch that never became durable (a crash between the value log's
    // fsync and sled's) are never served after a reopen and are overwritten by the next append;
    // everything acknowledged stays.
    let dir = tempfile::tempdir().unwrap();
    let valid;
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 30, 10);
        valid = store.value_log_len();
    }
    let vlog = dir.path().join(VLOG_FILE);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&vlog).unwrap();
        f.write_all_at(&[0xAB; 5000], valid).unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.value_log_len(), valid);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    append(&store, 5, 5);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    assert_eq!(store.head(&origin()).unwrap().unwrap().size, 35);
    let grown = store.value_log_len();
    assert!(grown > valid);
    let bytes = std::fs::read(&vlog).unwrap();
    assert!(
        bytes[valid as usize..grown as usize]
            .windows(16)
            .all(|w| w != [0xAB; 16]),
        "the new records' bodies replaced the stale tail"
    );
    // A value log shorter than sled says is refused, not silently served as missing records.
    drop(store);
    let f = std::fs::OpenOptions::new().write(true).open(&vlog).unwrap();
    f.set_len(grown - 1).unwrap();
    drop(f);
    let err = SledStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("truncated or replaced"), "{err}");
}

/// Copies sled's files in `dir` (everything but the value log) to `to`.
fn copy_sled_files(dir: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() == VLOG_FILE {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_sled_files(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn batches_whose_sled_writes_were_lost_are_applied_again_from_the_value_log() {
    // `commit` acknowledges a batch once its value-log frame is fsynced, without flushing sled.
    // Here sled loses everything after the first 40 records (its files are put back as they
    // were), as a crash can; the frames bring the rest back, in order, and the log verifies.
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let (root, ids);
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 40, 10);
        drop(store);
        copy_sled_files(dir.path(), saved.path());
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 60, 7);
        root = store.head(&origin()).unwrap().unwrap();
        ids = store
            .records(&origin(), LogIndex(0), 100)
            .unwrap()
            .iter()
            .map(|h| tfx_protocol::RecordId::of_envelope(&h.envelope))
            .collect::<Vec<_>>();
    }
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != VLOG_FILE {
            if e.file_type().unwrap().is_dir() {
                std::fs::remove_dir_all(e.path()).unwrap();
            } else {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    copy_sled_files(saved.path(), dir.path());
    {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        let h = db.get(b"H\x06bank-a").unwrap().unwrap();
        assert_eq!(&h[..8], &40u64.to_be_bytes(), "sled is back at 40 records");
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.head(&origin()).unwrap().unwrap(), root);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    for (seq, id) in ids.iter().enumerate() {
        assert_eq!(
            store.locate(id).unwrap(),
            Some((origin(), LogIndex(seq as u64)))
        );
    }
    append(&store, 5, 5);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    drop(store);
    // Applied once: a second open finds nothing left to apply and the same log.
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.head(&origin()).unwrap().unwrap().size, 105);
}

#[test]
fn a_concurrent_reader_never_sees_a_head_or_checkpoint_ahead_of_its_records() {
    // The sled store applies a frame's writes to sled one by one, not as one sled batch, so a
    // reader can see part of an append. Heads and checkpoints go last: whatever size a reader
    // finds there, the records up to it can be read.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let o = origin();
            let mut looks = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(h) = store.head(&o).unwrap() {
                    let last = store.envelope(&o, LogIndex(h.size - 1)).unwrap();
                    assert!(last.is_some(), "head at {} before its last record", h.size);
                    looks += 1;
                }
                if let Some(cp) = store.checkpoint(&o).unwrap() {
                    let size = tfx_protocol::checkpoint::Checkpoint::decode_unverified(&cp)
                        .unwrap()
                        .size;
                    let last = store.envelope(&o, LogIndex(size - 1)).unwrap();
                    assert!(
                        last.is_some(),
                        "checkpoint at {size} before its last record"
                    );
                }
            }
            looks
        })
    };
    append_with(&*store, 600, 1, false);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0, "the reader never saw a head");
    verify_log(&*store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
}

/// Every key and value in the sled database of the store in `dir` (closed).
fn sled_contents(dir: &std::path::Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let db = tfx_node::sled_store::open_db(dir).unwrap();
    db.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

type Contents = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// sled's key holding the value log's valid length.
const VALID_LEN_KEY: &[u8] = b"Mvlog";

/// Appends 40 records (flushed, then settled) to a new store in `dir`, then `more` with
/// `append_more`, and returns sled's contents before the second step and after it once settled,
/// the keys it changed besides the valid length, and the head and record ids the store then had.
fn before_and_after(
    dir: &std::path::Path,
    append_more: impl FnOnce(&SledStore),
) -> (
    Contents,
    Contents,
    Vec<Vec<u8>>,
    tfx_protocol::store::LogHead,
    Vec<tfx_protocol::RecordId>,
) {
    {
        let store = SledStore::open(dir).unwrap();
        append(&store, 40, 10);
    }
    // Opened once more, for sled to hold these appends settled (see below).
    drop(SledStore::open(dir).unwrap());
    let before = sled_contents(dir);
    let (head, ids) = {
        let store = SledStore::open(dir).unwrap();
        append_more(&store);
        let ids: Vec<_> = store
            .records(&origin(), LogIndex(0), 100)
            .unwrap()
            .iter()
            .map(|h| tfx_protocol::RecordId::of_envelope(&h.envelope))
            .collect();
        (store.head(&origin()).unwrap().unwrap(), ids)
    };
    let unsettled = sled_contents(dir);
    let changed = unsettled
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v) && k.as_slice() != VALID_LEN_KEY)
        .map(|(k, _)| k.clone())
        .collect();
    // The second step did not settle, so sled holds its subject index entries only once an
    // open has applied its frames again and settled (they are merged into their buckets then,
    // `tfx_node::subject_index`), as every repaired copy will have been: opened in a copy, so
    // that the store in `dir` stays unsettled.
    let copy = copy_with_reverted(dir, &before, []);
    drop(SledStore::open(copy.path()).unwrap());
    let after = sled_contents(copy.path());
    (before, after, changed, head, ids)
}

/// A copy of the store in `dir` with sled's `keys` put back to what `before` held, as a crash
/// or a power loss may leave them.
fn copy_with_reverted<'a>(
    dir: &std::path::Path,
    before: &Contents,
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_sled_files(dir, copy.path());
    std::fs::copy(dir.join(VLOG_FILE), copy.path().join(VLOG_FILE)).unwrap();
    let db = tfx_node::sled_store::open_db(copy.path()).unwrap();
    for k in keys {
        match before.get(k) {
            Some(v) => db.insert(k, v.as_slice()).unwrap(),
            None => db.remove(k).unwrap(),
        };
    }
    db.flush().unwrap();
    copy
}

/// Opens the store in `dir` and checks it holds the log `head` and `ids` describe, and exactly
/// sled's `after` contents.
fn assert_repaired(
    dir: &std::path::Path,
    head: tfx_protocol::store::LogHead,
    ids: &[tfx_protocol::RecordId],
    after: &Contents,
    what: &str,
) {
    let store = SledStore::open(dir).unwrap();
    assert_eq!(store.head(&origin()).unwrap(), Some(head), "{what}");
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    for (seq, id) in ids.iter().enumerate() {
        assert_eq!(
            store.locate(id).unwrap(),
            Some((origin(), LogIndex(seq as u64)))
        );
    }
    drop(store);
    let repaired = sled_contents(dir);
    let differing: Vec<String> = repaired
        .keys()
        .chain(after.keys())
        .filter(|k| repaired.get(*k) != after.get(*k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: sled differs at {differing:?}"
    );
}

#[test]
fn a_frame_sled_kept_only_part_of_is_applied_again_in_full() {
    // The sled store applies a frame's writes one at a time, the value log's valid length last,
    // and sled recovers a prefix of its log: a crash can leave some of a frame's writes in sled
    // without the valid length that covers it. Opening applies the whole frame again. Here sled
    // is put back to such states — every subset tried, not only prefixes — by hand.
    let dir = tempfile::tempdir().unwrap();
    let (before, after, frame, head, ids) =
        before_and_after(dir.path(), |store| append(store, 12, 12));
    assert!(
        frame.len() > 12,
        "the last append wrote {} keys",
        frame.len()
    );
    for kept in [0, 1, frame.len() / 2, frame.len() - 1] {
        let reverted = frame.iter().skip(kept).map(Vec::as_slice);
        let copy = copy_with_reverted(dir.path(), &before, reverted.chain([VALID_LEN_KEY]));
        assert_repaired(copy.path(), head, &ids, &after, &format!("kept {kept}"));
    }
}

#[test]
fn a_power_loss_that_kept_sleds_valid_length_but_lost_earlier_writes_is_repaired() {
    // sled's own flush is `sync_file_range`: a disk with a volatile write cache may keep a later
    // write of sled's (the value log's valid length) and lose earlier ones. Frames from the
    // settled mark — where sled was last fsynced — are applied again on open, so whatever the
    // disk lost after it comes back. Here sled is put back to such a state by hand: every key the
    // unsettled appends wrote reverted, the valid length kept.
    let dir = tempfile::tempdir().unwrap();
    // Three frames, not flushed: nothing settles them (settling is at most once a second, and
    // the open just did).
    let (before, after, lost, head, ids) =
        before_and_after(dir.path(), |store| append_with(store, 12, 4, false));
    assert!(lost.len() > 12, "the appends wrote {} keys", lost.len());
    let copy = copy_with_reverted(dir.path(), &before, lost.iter().map(Vec::as_slice));
    let kept = sled_contents(copy.path());
    assert_eq!(kept[VALID_LEN_KEY], after[VALID_LEN_KEY]);
    assert_repaired(copy.path(), head, &ids, &after, "valid length kept");
}

#[test]
fn a_format_1_store_is_upgraded_in_place() {
    // Build a store as format 1 kept it — every chunk inline in `E`, no value log — from one
    // written now, then open it: the chunks move to the value log and everything verifies.
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<_>;
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 600, 97);
        ids = store
            .records(&origin(), LogIndex(0), 600)
            .unwrap()
            .iter()
            .map(|h| tfx_protocol::RecordId::of_envelope(&h.envelope))
            .collect();
    }
    let vlog = dir.path().join(VLOG_FILE);
    let bytes = std::fs::read(&vlog).unwrap();
    let inline_chunks = {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        let mut n = 0;
        for kv in db.scan_prefix(b"E") {
            let (k, v) = kv.unwrap();
            let p = Pointer::decode(&v).unwrap().unwrap();
            let body = &bytes[p.offset as usize..(p.offset + u64::from(p.len)) as usize];
            db.insert(k, body).unwrap();
            n += 1;
        }
        db.remove(b"Mvlog").unwrap();
        db.insert(b"Mformat", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        n
    };
    std::fs::remove_file(&vlog).unwrap();
    assert!(inline_chunks >= 10, "{inline_chunks}");
    let store = SledStore::open(dir.path()).unwrap();
    let format = store.db().get(b"Mformat").unwrap().unwrap();
    assert_eq!(
        format.as_ref(),
        &tfx_node::sled_store::STORE_FORMAT.to_be_bytes()
    );
    let pointers = store
        .db()
        .scan_prefix(b"E")
        .filter(|kv| Pointer::decode(&kv.as_ref().unwrap().1).unwrap().is_some())
        .count();
    assert_eq!(pointers, inline_chunks, "every chunk moved");
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    for (seq, id) in ids.iter().enumerate().step_by(37) {
        assert_eq!(
            store.locate(id).unwrap(),
            Some((origin(), LogIndex(seq as u64)))
        );
        assert!(!store.disclosures(id).unwrap().is_empty());
    }
    append(&store, 10, 10);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
}

/// The record ids of `origin()`'s first `n` records in `store`.
fn record_ids(store: &SledStore, n: usize) -> Vec<tfx_protocol::RecordId> {
    store
        .records(&origin(), LogIndex(0), n)
        .unwrap()
        .iter()
        .map(|h| tfx_protocol::RecordId::of_envelope(&h.envelope))
        .collect()
}

/// Every id in `ids` is found at its position, with its disclosures.
fn assert_located(store: &SledStore, ids: &[tfx_protocol::RecordId]) {
    for (seq, id) in ids.iter().enumerate() {
        assert_eq!(
            store.locate(id).unwrap(),
            Some((origin(), LogIndex(seq as u64))),
            "record {seq}"
        );
    }
    assert!(!store.disclosures(&ids[0]).unwrap().is_empty());
    let absent = tfx_protocol::RecordId([0x5A; 32]);
    assert_eq!(store.locate(&absent).unwrap(), None);
}

/// The entries of a store's subject index as store format 4 kept them: `S‖len‖subject‖tail` →
/// kind byte. Format 5 keeps them in buckets (`s‖slot u16‖first entry` → entries, each
/// `tail, subject len u8 + bytes, kind`), where a tail is `issued_at u64, origin len u8 + bytes,
/// seq u64`.
fn format_4_entries(db: &sled::Db) -> Vec<(Vec<u8>, u8)> {
    let mut out = Vec::new();
    for kv in db.scan_prefix(b"s") {
        let (_, v) = kv.unwrap();
        let mut rest = &v[..];
        while !rest.is_empty() {
            let tail = 8 + 1 + usize::from(rest[8]) + 8;
            let subject = &rest[tail + 1..tail + 1 + usize::from(rest[tail])];
            let key = [&[b'S', subject.len() as u8][..], subject, &rest[..tail]].concat();
            out.push((key, rest[tail + 1 + subject.len()]));
            rest = &rest[tail + 2 + subject.len()..];
        }
    }
    out
}

#[test]
fn a_format_4_store_has_its_subject_index_moved_into_buckets() {
    // Format 4 kept one sled key per record in the subject index. Rebuild that shape from a
    // store written now and open it.
    let dir = tempfile::tempdir().unwrap();
    let (subjects, answers);
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 700, 64);
    }
    {
        let store = SledStore::open(dir.path()).unwrap(); // settled: entries in their buckets
        let entries = format_4_entries(store.db());
        assert_eq!(entries.len(), 700);
        subjects = entries
            .iter()
            .map(|(k, _)| String::from_utf8(k[2..2 + usize::from(k[1])].to_vec()).unwrap())
            .collect::<std::collections::BTreeSet<_>>();
        answers = subjects
            .iter()
            .map(|s| by_subject(&store, s.clone()))
            .collect::<Vec<_>>();
    }
    assert!(subjects.len() > 1 && answers.iter().all(|a| !a.is_empty()));
    {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        for (k, kind) in format_4_entries(&db) {
            db.insert(k, &[kind][..]).unwrap();
        }
        for k in db.scan_prefix(b"s").keys() {
            db.remove(k.unwrap()).unwrap();
        }
        db.insert(b"Mformat", &4u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.db().get(b"Mformat").unwrap().unwrap().as_ref(),
        &tfx_node::sled_store::STORE_FORMAT.to_be_bytes()
    );
    assert_eq!(store.db().scan_prefix(b"S").count(), 0, "the keys moved");
    assert_eq!(format_4_entries(store.db()).len(), 700);
    for (s, answer) in subjects.iter().zip(&answers) {
        assert_eq!(&by_subject(&store, s.clone()), answer, "{s}");
    }
    append(&store, 20, 7);
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(format_4_entries(store.db()).len(), 720);
}

#[test]
fn a_format_3_store_gets_a_record_id_index_file_and_loses_its_sled_id_keys() {
    // Format 3 kept record id → (origin, seq) as sled keys `I‖id` → origin, seq. Rebuild that
    // shape from a store written now — no index file, no origin numbers — and open it.
    let dir = tempfile::tempdir().unwrap();
    let ids;
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 700, 64);
        ids = record_ids(&store, 700);
    }
    std::fs::remove_file(dir.path().join(tfx_node::idindex::INDEX_FILE)).unwrap();
    {
        let db = tfx_node::sled_store::open_db(dir.path()).unwrap();
        for k in db.scan_prefix(b"O").keys() {
            db.remove(k.unwrap()).unwrap();
        }
        for (seq, id) in ids.iter().enumerate() {
            let mut k = b"I".to_vec();
            k.extend_from_slice(&id.0);
            let mut v = vec![origin().as_str().len() as u8];
            v.extend_from_slice(origin().as_str().as_bytes());
            v.extend_from_slice(&(seq as u64).to_be_bytes());
            db.insert(k, v).unwrap();
        }
        db.insert(b"Mformat", &3u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.db().get(b"Mformat").unwrap().unwrap().as_ref(),
        &tfx_node::sled_store::STORE_FORMAT.to_be_bytes()
    );
    assert_eq!(
        store.db().scan_prefix(b"I").count(),
        0,
        "the sled keys are gone"
    );
    assert_located(&store, &ids);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    append(&store, 20, 7);
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &record_ids(&store, 720));
}

#[test]
fn a_lost_or_damaged_record_id_index_is_rebuilt_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(tfx_node::idindex::INDEX_FILE);
    let ids;
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 300, 50);
        ids = record_ids(&store, 300);
    }
    std::fs::remove_file(&index).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
    drop(store);
    // Cut short: not a whole number of levels.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 10).unwrap();
    drop(f);
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
    drop(store);
    // Overwritten: a header that is not the index's.
    std::fs::write(&index, vec![0xEE; len as usize]).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
    verify_log(&store, &origin(), key().verifying_key(), &mut |_| {}).unwrap();
    drop(store);
    // Sound but behind: the file of an empty store (what an interrupted rebuild used to leave),
    // and an older copy of this store's own file. Neither locates the newest record.
    let empty = tempfile::tempdir().unwrap();
    drop(SledStore::open(empty.path()).unwrap());
    std::fs::copy(empty.path().join(tfx_node::idindex::INDEX_FILE), &index).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
    let older = std::fs::read(&index).unwrap();
    append(&store, 30, 30);
    let ids = record_ids(&store, 330);
    drop(store);
    std::fs::write(&index, &older).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
    assert!(
        !dir.path().join("records.idx.new").exists(),
        "a finished rebuild is renamed into place"
    );
}

#[test]
fn index_entries_lost_with_unsynced_pages_come_back_from_the_frames() {
    // The index file is fsynced only when the store settles; entries written since ride on
    // their frames. Put the file back as it was after 100 records, as a power loss may, while
    // sled and the value log keep all 260: opening applies the frames from the settled mark
    // again, and those restore the entries. (The settled mark is put back with the file.)
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(tfx_node::idindex::INDEX_FILE);
    let settled = dir.path().join(tfx_node::settled::SETTLED_FILE);
    let (old_index, old_mark);
    {
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 100, 25);
        drop(store);
        old_index = std::fs::read(&index).unwrap();
        old_mark = std::fs::read(&settled).unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        append(&store, 160, 40);
    }
    let ids = {
        let store = SledStore::open(dir.path()).unwrap();
        record_ids(&store, 260)
    };
    std::fs::write(&index, &old_index).unwrap();
    std::fs::write(&settled, &old_mark).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_located(&store, &ids);
}

#[test]
fn a_flush_a_settle_interval_on_settles_in_the_background_and_a_dropped_store_frees_its_directory()
{
    // Settling (merging the subject index, fsyncing sled) runs on the store's own thread, so
    // that the appender's commits and the driver's flushes do not wait for it; dropping the
    // store joins that thread, so the directory can be opened again at once.
    let dir = tempfile::tempdir().unwrap();
    let settled = |dir: &std::path::Path| {
        tfx_node::settled::SettledMark::open(dir)
            .unwrap()
            .1
            .unwrap_or(0)
    };
    let store = SledStore::open(dir.path()).unwrap();
    append(&store, 10, 10);
    let before = settled(dir.path());
    std::thread::sleep(tfx_node::sled_store::SETTLE_INTERVAL + Duration::from_millis(50));
    append(&store, 10, 10); // the flush asks for a settle
    let end = store.value_log_len();
    assert!(end > before);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while settled(dir.path()) < end {
        assert!(std::time::Instant::now() < deadline, "never settled");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A query finds the subject index entries merged by that settle.
    let total = store
        .query(&Query {
            limit: 100,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(total.len(), 20);
    for r in &total {
        let subjects = tfx_protocol::store::subjects_of_bytes(&store.disclosures(&r.id).unwrap());
        for s in subjects {
            assert!(by_subject(&store, s).iter().any(|x| x.id == r.id));
        }
    }
    drop(store);
    let store = SledStore::open(dir.path()).expect("the directory is free once the store drops");
    assert_eq!(store.head(&origin()).unwrap().unwrap().size, 20);
}
