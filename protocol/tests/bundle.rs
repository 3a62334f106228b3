#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Audit bundles (SPEC §19) end to end in one process: exported from a holder's store with
//! witnessed checkpoints, verified offline from the bytes alone; every flipped byte fails and
//! names what failed; a record signed before its origin rotated keys verifies from a bundle
//! exported after the rotation; evidence in a bundle marks records past the fork point.

mod common;

use common::{append, credit_body, genesis_roster, member_id, member_key, sign_roster, T0};
use tfx_protocol::bundle::{export, verify_bundle, ExportRequest, Report};
use tfx_protocol::checkpoint::Checkpoint;
use tfx_protocol::ids::sha256;
use tfx_protocol::roster::{verify_chain, KeyWindow, Roster, SignedRoster};
use tfx_protocol::store::{AppendBatch, MemoryStore, Store};
use tfx_protocol::witness::{Cosignature, Witnessed};
use tfx_protocol::{LogIndex, RecordId, Timestamp};

/// Cosigns `origin`'s stored checkpoint by each of `witnesses` and keeps it as witnessed.
fn witness(store: &MemoryStore, origin: usize, witnesses: &[usize]) {
    let bytes = store.checkpoint(&member_id(origin)).unwrap().unwrap();
    let cp = Checkpoint::decode_unverified(&bytes).unwrap();
    let cosignatures = witnesses
        .iter()
        .map(|w| Cosignature::of(&cp, member_id(*w), Timestamp(T0 + 5)).sign(&member_key(*w)))
        .collect();
    let w = Witnessed {
        checkpoint: bytes,
        cosignatures,
    };
    store
        .apply(&AppendBatch {
            witnessed: vec![(member_id(origin), cp.size, Some(w.encode()))],
            ..AppendBatch::default()
        })
        .unwrap();
}

fn id_at(store: &MemoryStore, origin: usize, seq: u64) -> RecordId {
    RecordId::of_envelope(
        &store
            .envelope(&member_id(origin), LogIndex(seq))
            .unwrap()
            .unwrap(),
    )
}

fn bundle_of(store: &MemoryStore, rosters: Vec<Vec<u8>>, records: Vec<RecordId>) -> Vec<u8> {
    let genesis = sha256(&SignedRoster::decode(&rosters[0]).unwrap().payload);
    let roster = verify_chain(&genesis, &rosters).unwrap();
    let b = export(
        store,
        ExportRequest {
            exporter: member_id(0),
            created: Timestamp(T0 + 10),
            rosters,
            roster: &roster,
            records,
            fields: None,
            local_durable: 0,
            evidence: vec![],
        },
    )
    .unwrap();
    b.sign(&member_key(0))
}

fn failures(r: &Report) -> Vec<String> {
    r.checks
        .iter()
        .chain(r.records.iter().flat_map(|x| &x.checks))
        .filter(|c| !c.passed())
        .map(|c| format!("{}: {}", c.what, c.outcome.clone().unwrap_err()))
        .collect()
}

#[test]
fn an_exported_bundle_verifies_offline_and_every_flipped_byte_fails_by_name() {
    let store = MemoryStore::new();
    append(&store, 1, &credit_body(), 5, T0, 1);
    witness(&store, 1, &[2]);
    let rosters = vec![sign_roster(genesis_roster(3))];
    let genesis = sha256(&SignedRoster::decode(&rosters[0]).unwrap().payload);
    let bytes = bundle_of(
        &store,
        rosters,
        vec![id_at(&store, 1, 1), id_at(&store, 1, 4)],
    );
    if let Ok(path) = std::env::var("TFX_SAMPLE_BUNDLE") {
        std::fs::write(path, &bytes).unwrap();
    }
    let report = verify_bundle(&bytes, Some(genesis));
    assert!(report.passed(), "{:?}", failures(&report));
    assert_eq!(report.records.len(), 2);
    let names: Vec<&str> = report.records[0].checks.iter().map(|c| c.what).collect();
    assert_eq!(
        names,
        [
            "record signature",
            "disclosures",
            "checkpoint",
            "inclusion",
            "final"
        ]
    );
    // The wrong genesis: nothing else can be trusted.
    let wrong = verify_bundle(&bytes, Some([0; 32]));
    assert!(!wrong.passed());
    assert_eq!(failures(&wrong)[0].split(':').next(), Some("roster chain"));
    // Every single byte changed makes verification fail, naming a check.
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x20;
        let r = verify_bundle(&t, Some(genesis));
        assert!(
            !r.passed(),
            "byte {i} changed and the bundle still verifies"
        );
        assert!(!failures(&r).is_empty(), "byte {i}: no check named");
    }
}

#[test]
fn a_checkpoint_short_of_the_quorum_is_reported_not_final() {
    let store = MemoryStore::new();
    append(&store, 1, &credit_body(), 2, T0, 1);
    witness(&store, 1, &[]);
    let mut r = genesis_roster(3);
    r.witness_quorum = Some(2);
    let bytes = bundle_of(&store, vec![sign_roster(r)], vec![id_at(&store, 1, 0)]);
    let report = verify_bundle(&bytes, None);
    assert!(!report.passed());
    assert!(!report.genesis_pinned);
    assert_eq!(
        failures(&report),
        vec!["final: checkpoint cosigned by 0 witnesses, 2 required"]
    );
}

#[test]
fn records_signed_before_a_key_rotation_verify_from_a_bundle_exported_after_it() {
    // m01 signs 3 records with its first key, rotates at T0 + 100, signs 2 more with the new
    // key; its checkpoint over all 5 is signed with the new key.
    let v1 = genesis_roster(3);
    let rotated_at = T0 + 100;
    let new_key = tfx_protocol::keys::SigningKey::from_seed(&[0x55; 32]);
    let mut v2 = Roster {
        version: 2,
        previous: Some(v1.hash()),
        issued_at: Timestamp(rotated_at),
        ..v1.clone()
    };
    let m1 = &mut v2.members[1];
    m1.keys[0].valid_until = Some(Timestamp(rotated_at));
    m1.keys.push(KeyWindow {
        key: *new_key.verifying_key(),
        valid_from: Timestamp(rotated_at),
        valid_until: None,
    });
    let rosters = vec![sign_roster(v1), sign_roster(v2)];
    let store = MemoryStore::new();
    append(&store, 1, &credit_body(), 3, T0, 1);
    {
        // The new key's records and checkpoint, appended as the node would after the switch.
        let origin = member_id(1);
        let mut log = tfx_protocol::log::LocalLog::open(&store, origin.clone()).unwrap();
        let sealed = (3..5u64)
            .map(|seq| {
                let params = tfx_protocol::record::SealParams {
                    origin: &origin,
                    seq: LogIndex(seq),
                    issued_at: Timestamp(rotated_at + 10),
                    pseudonym: None,
                };
                let mut e = tfx_protocol::entropy::DeterministicEntropy::new(&seq.to_be_bytes());
                tfx_protocol::record::seal(&credit_body(), params, &new_key, &mut e).unwrap()
            })
            .collect();
        let (batch, frontier) = log
            .plan(sealed, Timestamp(rotated_at + 10), &new_key)
            .unwrap();
        store.apply(&batch).unwrap();
        log.advance(frontier);
    }
    witness(&store, 1, &[2]);
    let genesis = sha256(&SignedRoster::decode(&rosters[0]).unwrap().payload);
    let old = id_at(&store, 1, 0);
    let new = id_at(&store, 1, 4);
    let bytes = bundle_of(&store, rosters.clone(), vec![old, new]);
    let report = verify_bundle(&bytes, Some(genesis));
    assert!(report.passed(), "{:?}", failures(&report));
    assert_eq!(report.roster_version, Some(2));
    // Without the rotation in the chain the new key is unknown: the bundle must carry it.
    let short = bundle_of(&store, rosters[..1].to_vec(), vec![old, new]);
    let report = verify_bundle(&short, Some(genesis));
    assert!(!report.passed());
    assert!(
        failures(&report)
            .iter()
            .any(|f| f.starts_with("record signature") && f.contains("not known")),
        "{:?}",
        failures(&report)
    );
}

#[test]
fn two_records_at_one_position_in_a_bundle_are_reported_as_a_fork() {
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    append(&a, 1, &credit_body(), 2, T0, 1);
    append(&b, 1, &credit_body(), 2, T0, 2);
    witness(&a, 1, &[2]);
    witness(&b, 1, &[2]);
    let rosters = vec![sign_roster(genesis_roster(3))];
    let genesis = sha256(&SignedRoster::decode(&rosters[0]).unwrap().payload);
    let roster = verify_chain(&genesis, &rosters).unwrap();
    let request = |records| ExportRequest {
        exporter: member_id(0),
        created: Timestamp(T0 + 10),
        rosters: rosters.clone(),
        roster: &roster,
        records,
        fields: None,
        local_durable: 0,
        evidence: vec![],
    };
    let mut bundle = export(&a, request(vec![id_at(&a, 1, 1)])).unwrap();
    let other = export(&b, request(vec![id_at(&b, 1, 1)])).unwrap();
    bundle.items.extend(other.items);
    let report = verify_bundle(&bundle.sign(&member_key(0)), Some(genesis));
    assert!(report.records.iter().all(|r| r.passed()));
    assert!(!report.passed());
    assert!(
        failures(&report)[0].starts_with("one record per position: records 1 and 2"),
        "{:?}",
        failures(&report)
    );
}
