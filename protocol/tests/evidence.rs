#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Equivocation evidence of every kind, built from two real forked logs of one origin (the same
//! key signing two histories after a common prefix), verifies; tampered or non-contradicting
//! evidence does not.

mod common;

use common::{append, credit_body, genesis_roster, member_id, member_key, T0};
use tfx_protocol::checkpoint::Checkpoint;
use tfx_protocol::evidence::{Evidence, EvidenceError};
use tfx_protocol::merkle::{self, Frontier};
use tfx_protocol::store::{MemoryStore, Store, StoreNodes};
use tfx_protocol::{LogIndex, Timestamp};

/// Two copies of m01's log: a common prefix of 3 records, then 4 different records each.
/// Returns (a, b, checkpoint at the prefix).
fn forked() -> (MemoryStore, MemoryStore, Vec<u8>) {
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    append(&a, 1, &credit_body(), 3, T0, 1);
    append(&b, 1, &credit_body(), 3, T0, 1);
    let prefix = a.checkpoint(&member_id(1)).unwrap().unwrap();
    assert_eq!(Some(&prefix), b.checkpoint(&member_id(1)).unwrap().as_ref());
    append(&a, 1, &credit_body(), 4, T0 + 1, 2);
    append(&b, 1, &credit_body(), 4, T0 + 1, 3);
    (a, b, prefix)
}

fn envelope(s: &MemoryStore, seq: u64) -> Vec<u8> {
    s.envelope(&member_id(1), LogIndex(seq)).unwrap().unwrap()
}

fn checkpoint(s: &MemoryStore) -> Vec<u8> {
    s.checkpoint(&member_id(1)).unwrap().unwrap()
}

#[test]
fn two_records_at_one_position_are_evidence() {
    let (a, b, _) = forked();
    let roster = genesis_roster(3);
    let ev = Evidence::Records {
        origin: member_id(1),
        a: envelope(&a, 3),
        b: envelope(&b, 3),
    };
    let eq = ev.verify(&roster).unwrap();
    assert_eq!((eq.origin, eq.fork_at), (member_id(1), 3));
    assert_eq!(Evidence::decode(&ev.encode()).unwrap(), ev);
    // The same record twice, or records at different positions, are not.
    for (x, y) in [
        (envelope(&a, 3), envelope(&a, 3)),
        (envelope(&a, 3), envelope(&b, 4)),
    ] {
        let not = Evidence::Records {
            origin: member_id(1),
            a: x,
            b: y,
        };
        assert!(matches!(
            not.verify(&roster),
            Err(EvidenceError::NotEquivocation(_))
        ));
    }
}

#[test]
fn records_that_do_not_lead_to_a_checkpoint_are_evidence() {
    let (a, b, prefix) = forked();
    let roster = genesis_roster(3);
    let m1 = member_id(1);
    let nodes = StoreNodes::new(&a, &m1);
    let frontier = Frontier::load(&nodes, 3).unwrap().hashes();
    let ev = Evidence::Inconsistent {
        origin: member_id(1),
        older: Some(prefix.clone()),
        frontier: frontier.clone(),
        envelopes: (3..7).map(|i| envelope(&a, i)).collect(),
        newer: checkpoint(&b),
    };
    let eq = ev.verify(&roster).unwrap();
    assert_eq!(eq.origin, member_id(1));
    assert_eq!(Evidence::decode(&ev.encode()).unwrap(), ev);
    // From the empty log too.
    let from_empty = Evidence::Inconsistent {
        origin: member_id(1),
        older: None,
        frontier: vec![],
        envelopes: (0..7).map(|i| envelope(&a, i)).collect(),
        newer: checkpoint(&b),
    };
    from_empty.verify(&roster).unwrap();
    // The records that do lead to the checkpoint are no evidence.
    let consistent = Evidence::Inconsistent {
        origin: member_id(1),
        older: Some(prefix),
        frontier,
        envelopes: (3..7).map(|i| envelope(&b, i)).collect(),
        newer: checkpoint(&b),
    };
    assert!(matches!(
        consistent.verify(&roster),
        Err(EvidenceError::NotEquivocation(_))
    ));
}

#[test]
fn a_consistency_proof_from_the_longer_log_is_evidence() {
    let (a, b, _) = forked();
    let roster = genesis_roster(3);
    // b grows further; a's checkpoint at 7 contradicts b's tree at 7.
    append(&b, 1, &credit_body(), 5, T0 + 2, 4);
    let m1 = member_id(1);
    let nodes = StoreNodes::new(&b, &m1);
    let ev = Evidence::Diverged {
        origin: member_id(1),
        a: checkpoint(&a),
        b: checkpoint(&b),
        prefix_root: merkle::root(&nodes, 7).unwrap(),
        proof: merkle::consistency_proof(&nodes, 7, 12).unwrap(),
    };
    let eq = ev.verify(&roster).unwrap();
    assert_eq!(eq.fork_at, 6);
    assert_eq!(Evidence::decode(&ev.encode()).unwrap(), ev);
    // A proof of a's own extension is not evidence.
    append(&a, 1, &credit_body(), 5, T0 + 2, 5);
    let cp7 = Checkpoint::decode_unverified(&ev_a7(&ev)).unwrap();
    assert_eq!(cp7.size, 7);
    let m1 = member_id(1);
    let nodes = StoreNodes::new(&a, &m1);
    let honest = Evidence::Diverged {
        origin: member_id(1),
        a: ev_a7(&ev),
        b: checkpoint(&a),
        prefix_root: merkle::root(&nodes, 7).unwrap(),
        proof: merkle::consistency_proof(&nodes, 7, 12).unwrap(),
    };
    assert!(matches!(
        honest.verify(&roster),
        Err(EvidenceError::NotEquivocation(_))
    ));
    // Every single flipped byte of the encoded evidence makes it fail to decode or verify.
    let bytes = ev.encode();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        if let Ok(e) = Evidence::decode(&t) {
            assert!(
                e.verify(&roster).is_err(),
                "flipped byte {i} still verifies"
            );
        }
    }
}

fn ev_a7(ev: &Evidence) -> Vec<u8> {
    match ev {
        Evidence::Diverged { a, .. } => a.clone(),
        _ => unreachable!(),
    }
}

#[test]
fn the_empty_log_contradicts_nothing() {
    // An honest origin's checkpoint of size 0 and any later one: a made-up "root at size 0"
    // must not pass for a fork (RFC 9162 consistency from size 0 constrains nothing).
    let (a, _, _) = forked();
    let key = member_key(1);
    let empty = Checkpoint {
        origin: member_id(1),
        size: 0,
        root: merkle::empty_root(),
        time: Timestamp(T0),
    }
    .sign(&key)
    .bytes;
    let forged = Evidence::Diverged {
        origin: member_id(1),
        a: empty,
        b: checkpoint(&a),
        prefix_root: [0x42; 32],
        proof: vec![],
    };
    assert!(matches!(
        forged.verify(&genesis_roster(3)),
        Err(EvidenceError::NotEquivocation(_))
    ));
}
