#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Records made by tfx verify with an independent COSE implementation (coset, decoding with
//! ciborium) and ring's Ed25519 used directly; every disclosure's digest is recomputed with the
//! `sha2` crate and found in the header coset decoded. No tfx decoding code is used on this path.

use coset::cbor::value::Value;
use coset::{iana, CborSerializable, CoseSign1, TaggedCborSerializable};
use sha2::{Digest, Sha256};
use tfx_protocol::derive::{PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::record::{seal, RecordFile, SealParams};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{LogIndex, MemberId, Timestamp};

fn header_digests(payload: &[u8]) -> Vec<Vec<u8>> {
    let v: Value = coset::cbor::de::from_reader(payload).expect("header decodes with ciborium");
    let map = v.as_map().expect("header is a map");
    let digests = map
        .iter()
        .find(|(k, _)| k.as_integer() == Some(7.into()))
        .expect("key 7")
        .1
        .clone();
    digests
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d.as_bytes().expect("bstr").clone())
        .collect()
}

#[test]
fn every_kind_verifies_with_coset_and_sha2() {
    let key = SigningKey::from_seed(&[0x33; 32]);
    let public = key.verifying_key().raw().to_vec();
    let origin = MemberId::new("science-dept").unwrap();
    let pk = PseudonymKey::derive(&[7; 32], PURPOSE_RISK_WARNING, 2026).unwrap();
    let mut entropy = tfx_node::entropy::SystemEntropy::new();
    for (seq, kind) in ["credit", "ip-valuation", "monitoring", "risk-warning"]
        .iter()
        .enumerate()
    {
        let json =
            std::fs::read(tfx_tests::repo_root().join(format!("examples/records/{kind}.json")))
                .unwrap();
        let body = parse_record_json(&json).unwrap();
        let params = SealParams {
            origin: &origin,
            seq: LogIndex(seq as u64),
            issued_at: Timestamp(1_790_000_000_000),
            pseudonym: Some(&pk),
        };
        let sealed = seal(&body, params, &key, &mut entropy).unwrap();
        // Go through the record file, as an auditor receiving one would.
        let file = RecordFile::decode(&RecordFile::from_sealed(&sealed).encode()).unwrap();

        let sign1 =
            CoseSign1::from_tagged_slice(&file.envelope).expect("coset parses tag-18 COSE_Sign1");
        assert_eq!(
            sign1.protected.header.alg,
            Some(coset::RegisteredLabelWithPrivate::Assigned(
                iana::Algorithm::EdDSA
            ))
        );
        assert_eq!(
            sign1.protected.header.content_type,
            Some(coset::ContentType::Text(
                "application/tfx-record+cbor".into()
            ))
        );
        assert_eq!(sign1.protected.header.key_id, key.key_id().0.to_vec());
        sign1
            .verify_signature(b"", |sig, data| {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                    .verify(data, sig)
            })
            .expect("signature verifies under coset's Sig_structure");
        // A flipped payload byte must fail the same independent check.
        let mut tampered = sign1.clone();
        if let Some(p) = tampered.payload.as_mut() {
            p[10] ^= 1;
        }
        assert!(tampered
            .verify_signature(b"", |sig, data| {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                    .verify(data, sig)
            })
            .is_err());

        let digests = header_digests(sign1.payload.as_ref().unwrap());
        assert!(!file.disclosures.is_empty());
        for d in &file.disclosures {
            let digest = Sha256::digest(d).to_vec();
            assert!(
                digests.contains(&digest),
                "{kind}: a disclosure's SHA-256 is not in the header"
            );
            let v: Value = coset::cbor::de::from_reader(d.as_slice()).unwrap();
            let arr = v.as_array().expect("disclosure is an array");
            assert_eq!(arr.len(), 3);
            assert_eq!(arr[0].as_bytes().map(Vec::len), Some(16), "16-byte salt");
            assert!(arr[2].is_text(), "field name last");
        }
        // The header is also decodable as a plain COSE structure by coset's own serializer.
        assert!(
            CoseSign1::from_slice(&file.envelope).is_err(),
            "untagged parse must reject the tag"
        );
    }
}

#[test]
fn signed_rosters_are_cose_sign_messages_coset_verifies() {
    use tfx_protocol::roster::{Governor, KeyWindow, Member, Roster, SignedRoster};
    let governors: Vec<SigningKey> = (0..3)
        .map(|i| SigningKey::from_seed(&[0x60 + i; 32]))
        .collect();
    let roster = Roster {
        consortium: "Tianfu test".into(),
        version: 1,
        previous: None,
        issued_at: Timestamp(1),
        governors: governors
            .iter()
            .enumerate()
            .map(|(i, k)| Governor {
                id: MemberId::new(&format!("gov-{i}")).unwrap(),
                key: *k.verifying_key(),
            })
            .collect(),
        threshold: 2,
        members: vec![Member {
            id: MemberId::new("bank-a").unwrap(),
            name: "Bank A".into(),
            roles: vec!["bank".into()],
            keys: vec![KeyWindow {
                key: *governors[0].verifying_key(),
                valid_from: Timestamp(0),
                valid_until: None,
            }],
            tls_fingerprint: [1; 32],
            endpoint: "bank-a.example:7400".into(),
        }],
        revocations: vec![],
        ca_fingerprint: [9; 32],
        witness_quorum: None,
    };
    let mut signed = SignedRoster::new(roster).unwrap();
    signed.sign(&governors[0]);
    signed.sign(&governors[2]);
    let msg = coset::CoseSign::from_tagged_slice(&signed.encode())
        .expect("coset parses tag-98 COSE_Sign");
    assert_eq!(
        msg.protected.header.content_type,
        Some(coset::ContentType::Text(
            "application/tfx-roster+cbor".into()
        ))
    );
    assert_eq!(msg.signatures.len(), 2);
    for (i, sig) in msg.signatures.iter().enumerate() {
        let signer = governors
            .iter()
            .find(|k| k.key_id().0.to_vec() == sig.protected.header.key_id)
            .expect("kid names a governor");
        let public = signer.verifying_key().raw().to_vec();
        msg.verify_signature(i, b"", |s, data| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                .verify(data, s)
        })
        .expect("each governor signature verifies under coset's Sig_structure");
    }
}
