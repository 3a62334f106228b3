#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The roster: M-of-N governance over a hash-chained sequence of versions, and key resolution
//! with validity windows and revocations.

use proptest::prelude::*;
use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::record::{seal, verify_envelope, KeyResolver, SealParams};
use tfx_protocol::roster::{
    verify_chain, Governor, KeyWindow, Member, Revocation, Roster, RosterError, SignedRoster,
};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{LogIndex, MemberId, Timestamp};

fn id(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

fn gov_key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[0x40 + n; 32])
}

fn member(name: &str, role: &str, key: &SigningKey) -> Member {
    Member {
        id: id(name),
        name: format!("{name} (test)"),
        roles: vec![role.into()],
        keys: vec![KeyWindow {
            key: *key.verifying_key(),
            valid_from: Timestamp(0),
            valid_until: None,
        }],
        tls_fingerprint: [7; 32],
        endpoint: format!("{name}.example:7400"),
    }
}

/// Version 1: three governors (science-dept, local-finance, central-bank), threshold 2.
fn genesis() -> Roster {
    let governors = ["science-dept", "local-finance", "central-bank"]
        .iter()
        .enumerate()
        .map(|(i, g)| Governor {
            id: id(g),
            key: *gov_key(i as u8).verifying_key(),
        })
        .collect();
    Roster {
        consortium: "Tianfu test".into(),
        version: 1,
        previous: None,
        issued_at: Timestamp(1_000),
        governors,
        threshold: 2,
        members: vec![member(
            "science-dept",
            "science-dept",
            &SigningKey::from_seed(&[1; 32]),
        )],
        revocations: vec![],
        ca_fingerprint: [9; 32],
        witness_quorum: None,
    }
}

fn signed(r: Roster, governors: &[u8]) -> SignedRoster {
    let mut s = SignedRoster::new(r).unwrap();
    for g in governors {
        s.sign(&gov_key(*g));
    }
    s
}

fn next(current: &Roster) -> Roster {
    let mut r = current.clone();
    r.version += 1;
    r.previous = Some(current.hash());
    r.issued_at = Timestamp(current.issued_at.0 + 1000);
    r
}

#[test]
fn genesis_needs_threshold_of_its_own_governors() {
    let g = genesis();
    let hash = g.hash();
    assert!(signed(g.clone(), &[0, 2]).verify_genesis(&hash).is_ok());
    let e = signed(g.clone(), &[1]).verify_genesis(&hash).unwrap_err();
    assert_eq!(
        e.to_string(),
        "roster version 1: signed by 1 of 2 required governors"
    );
    // A signature by a non-governor is counted as invalid, not as a governor.
    let mut s = signed(g.clone(), &[1]);
    s.sign(&SigningKey::from_seed(&[0x99; 32]));
    let e = s.verify_genesis(&hash).unwrap_err().to_string();
    assert_eq!(
        e,
        "roster version 1: signed by 1 of 2 required governors (1 invalid or unknown signatures)"
    );
    // Signing twice with one key counts once.
    let mut s = signed(g.clone(), &[1]);
    s.sign(&gov_key(1));
    assert!(s.verify_genesis(&hash).is_err());
    // A genesis other than the trusted one is refused whatever its signatures.
    let mut other = g;
    other.consortium = "Someone else".into();
    assert!(matches!(
        signed(other, &[0, 1, 2]).verify_genesis(&hash),
        Err(RosterError::NotGenesis { .. })
    ));
}

#[test]
fn successors_chain_and_are_signed_by_the_previous_governors() {
    let v1 = genesis();
    let trusted = v1.hash();
    let s1 = signed(v1.clone(), &[0, 1]);
    let mut v2 = next(&v1);
    v2.members
        .push(member("bank-a", "bank", &SigningKey::from_seed(&[2; 32])));
    // v2 hands governance to two new keys: it must still be signed by v1's governors.
    v2.governors = vec![Governor {
        id: id("bank-a"),
        key: *gov_key(7).verifying_key(),
    }];
    v2.threshold = 1;
    assert!(matches!(
        signed(v2.clone(), &[7]).verify_successor(&v1),
        Err(RosterError::TooFewSignatures { valid: 0, .. })
    ));
    let s2 = signed(v2.clone(), &[1, 2]);
    s2.verify_successor(&v1).unwrap();
    // v3 is then governed by v2's governor alone.
    let v3 = next(&v2);
    let s3 = signed(v3.clone(), &[7]);
    s3.verify_successor(&v2).unwrap();
    let latest = verify_chain(&trusted, &[s1.encode(), s2.encode(), s3.encode()]).unwrap();
    assert_eq!(latest, v3);
    // Chain breaks: skipped version, wrong previous hash, out of order.
    let mut skip = next(&v2);
    skip.version = 4;
    assert!(matches!(
        signed(skip, &[7]).verify_successor(&v2),
        Err(RosterError::WrongVersion {
            previous: 2,
            got: 4
        })
    ));
    let mut fork = next(&v1);
    fork.previous = Some([0; 32]);
    assert!(matches!(
        signed(fork, &[0, 1]).verify_successor(&v1),
        Err(RosterError::NotChained { version: 2 })
    ));
    assert!(verify_chain(&trusted, &[s1.encode(), s3.encode()]).is_err());
}

#[test]
fn round_trips_and_every_byte_flip_fails() {
    let mut v1 = genesis();
    v1.revocations.push(Revocation {
        member: id("science-dept"),
        at: Timestamp(5),
        reason: "test".into(),
    });
    let s = signed(v1.clone(), &[0, 1]);
    let bytes = s.encode();
    let back = SignedRoster::decode(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.encode(), bytes);
    let hash = v1.hash();
    back.verify_genesis(&hash).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let ok = SignedRoster::decode(&b).is_ok_and(|r| r.verify_genesis(&hash).is_ok());
            assert!(!ok, "flipping byte {i} (bit {bit:#x}) still verified");
        }
    }
}

#[test]
fn rotated_keys_verify_inside_their_window_only() {
    let old = SigningKey::from_seed(&[0x10; 32]);
    let new = SigningKey::from_seed(&[0x11; 32]);
    let mut r = genesis();
    let mut bank = member("bank-a", "bank", &old);
    // Rotation at t = 2000 with an overlap: the old key signs until 2500, the new from 2000.
    bank.keys = vec![
        KeyWindow {
            key: *old.verifying_key(),
            valid_from: Timestamp(0),
            valid_until: Some(Timestamp(2500)),
        },
        KeyWindow {
            key: *new.verifying_key(),
            valid_from: Timestamp(2000),
            valid_until: None,
        },
    ];
    r.members.push(bank);
    r.check().unwrap();
    let body = parse_record_json(
        &std::fs::read(format!(
            "{}/../examples/records/credit.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let origin = id("bank-a");
    let record = |key: &SigningKey, at: u64| {
        let params = SealParams {
            origin: &origin,
            seq: LogIndex(0),
            issued_at: Timestamp(at),
            pseudonym: None,
        };
        seal(&body, params, key, &mut DeterministicEntropy::new(b"rot"))
            .unwrap()
            .envelope
    };
    assert!(
        verify_envelope(&record(&old, 1000), &r).is_ok(),
        "old key inside its window"
    );
    assert!(
        verify_envelope(&record(&old, 2400), &r).is_ok(),
        "old key in the overlap"
    );
    let e = verify_envelope(&record(&old, 2500), &r)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not known (or not valid at the issue time)"),
        "{e}"
    );
    assert!(verify_envelope(&record(&new, 2000), &r).is_ok());
    assert!(
        verify_envelope(&record(&new, 1999), &r).is_err(),
        "new key before its window"
    );
    // Revoked at 3000: records issued before still verify, later ones do not.
    r.revocations.push(Revocation {
        member: origin.clone(),
        at: Timestamp(3000),
        reason: "left".into(),
    });
    assert!(verify_envelope(&record(&new, 2999), &r).is_ok());
    assert!(verify_envelope(&record(&new, 3000), &r).is_err());
    assert!(r
        .resolve(&id("nobody"), &new.key_id(), Timestamp(1))
        .is_none());
}

#[test]
fn internal_rules_are_enforced() {
    type Mutation = Box<dyn Fn(&mut Roster)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|r| r.threshold = 0),
            "threshold 0 must be between 1 and the 3 governors",
        ),
        (
            Box::new(|r| r.threshold = 4),
            "threshold 4 must be between 1 and the 3 governors",
        ),
        (
            Box::new(|r| r.members[0].roles = vec!["banker".into()]),
            "unknown role \"banker\"",
        ),
        (
            Box::new(|r| r.members.push(r.members[0].clone())),
            "member science-dept is listed twice",
        ),
        (
            Box::new(|r| r.members[0].endpoint = "nohost".into()),
            "is not host:port",
        ),
        (
            Box::new(|r| r.members[0].keys.clear()),
            "needs 1 to 8 record-signing keys",
        ),
        (
            Box::new(|r| r.previous = Some([1; 32])),
            "version 1 has no previous hash",
        ),
        (
            Box::new(|r| {
                r.revocations.push(Revocation {
                    member: MemberId::new("ghost").unwrap(),
                    at: Timestamp(1),
                    reason: String::new(),
                })
            }),
            "who is not a member",
        ),
        (
            Box::new(|r| r.members[0].keys[0].valid_until = Some(Timestamp(0))),
            "ends before it starts",
        ),
    ];
    for (mutate, want) in cases {
        let mut r = genesis();
        mutate(&mut r);
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains(want), "expected {want:?}, got {e:?}");
        // The same rules apply when decoding: a signed document breaking them is refused.
        assert!(Roster::decode(&r.encode()).is_err());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = SignedRoster::decode(&bytes);
        let _ = Roster::decode(&bytes);
    }
}

#[test]
fn roster_limits_at_n_and_n_plus_1() {
    use tfx_protocol::limits::{ROSTER_GOVERNORS_MAX, ROSTER_MEMBERS_MAX};
    let key = SigningKey::from_seed(&[3; 32]);
    let with_members = |n: usize| {
        let mut r = genesis();
        r.members = (0..n)
            .map(|i| member(&format!("m{i}"), "bank", &key))
            .collect();
        r
    };
    let big = with_members(ROSTER_MEMBERS_MAX);
    assert_eq!(Roster::decode(&big.encode()).unwrap(), big);
    let e = Roster::decode(&with_members(ROSTER_MEMBERS_MAX + 1).encode())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "roster: {} members (max {ROSTER_MEMBERS_MAX})",
            ROSTER_MEMBERS_MAX + 1
        )
    );
    let with_governors = |n: usize| {
        let mut r = genesis();
        r.governors = (0..n)
            .map(|i| Governor {
                id: id(&format!("g{i}")),
                key: *SigningKey::from_seed(&[i as u8; 32]).verifying_key(),
            })
            .collect();
        r
    };
    assert!(Roster::decode(&with_governors(ROSTER_GOVERNORS_MAX).encode()).is_ok());
    assert!(Roster::decode(&with_governors(ROSTER_GOVERNORS_MAX + 1).encode()).is_err());
}
