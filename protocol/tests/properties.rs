#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Property tests of the formats: encode/decode round trips, arbitrary bytes never panic any
//! decoder and respect the size limits, and every single-bit flip of an envelope or disclosure
//! fails verification (checked exhaustively, not sampled).

use proptest::prelude::*;
use tfx_protocol::checkpoint::{verify_checkpoint, Checkpoint};
use tfx_protocol::codec::{self, DecodeError};
use tfx_protocol::cose::{self, CONTENT_TYPE_RECORD};
use tfx_protocol::derive::{PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::disclosure::Disclosure;
use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::limits::{
    CHECKPOINT_BYTES_MAX, DISCLOSURES_PER_RECORD_MAX, DISCLOSURE_BYTES_MAX, ENVELOPE_BYTES_MAX,
    RECORD_FILE_BYTES_MAX,
};
use tfx_protocol::record::{
    seal, verify_disclosures, verify_disclosures_owned, verify_envelope, verify_envelope_held,
    verify_record, verify_record_owned, verify_record_owned_held, verify_records_owned_held,
    Header, OwnedVerification, RecordFile, SealParams, SealedRecord,
};
use tfx_protocol::schema::{FieldValue, RecordKind};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

fn key() -> SigningKey {
    SigningKey::from_seed(&[9; 32])
}

fn sealed(kind: &str, seq: u64) -> SealedRecord {
    let path = format!(
        "{}/../examples/records/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = parse_record_json(&std::fs::read(path).unwrap()).unwrap();
    let origin = MemberId::new("bank-a").unwrap();
    let pk = PseudonymKey::derive(&[3; 32], PURPOSE_RISK_WARNING, 2026).unwrap();
    let params = SealParams {
        origin: &origin,
        seq: LogIndex(seq),
        issued_at: Timestamp(1_790_000_000_000),
        pseudonym: Some(&pk),
    };
    seal(
        &body,
        params,
        &key(),
        &mut DeterministicEntropy::new(&seq.to_be_bytes()),
    )
    .unwrap()
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        ".{0,40}".prop_map(FieldValue::Text),
        any::<u64>().prop_map(FieldValue::Int),
        any::<bool>().prop_map(FieldValue::Bool),
        prop::collection::vec("[a-z0-9-]{1,10}", 0..5).prop_map(FieldValue::List),
    ]
}

/// Values shaped roughly like a disclosure — an array of a few items of every CBOR kind our
/// profile allows, right or wrong for their position — for comparing decoders.
fn disclosure_like() -> impl Strategy<Value = codec::Value> {
    use codec::Value as V;
    let leaf = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20).prop_map(V::Bytes),
        Just(V::Bytes(vec![7; 16])),
        "[a-z_]{0,12}".prop_map(V::Text),
        any::<u64>().prop_map(|n| V::Integer(n.into())),
        (1u64..1000).prop_map(|n| V::Integer(-i128::from(n))),
        any::<bool>().prop_map(V::Bool),
        Just(V::Null),
    ];
    let item = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
            inner.clone().prop_map(|v| V::Tag(24, Box::new(v))),
            prop::collection::vec(("[a-c]{1,2}", inner), 0..3)
                .prop_map(|kv| V::Map(kv.into_iter().map(|(k, v)| (V::Text(k), v)).collect())),
        ]
    });
    // Mostly a byte-string salt and a text name around any value, so the value's every kind is
    // reached; sometimes anything in their place, or one element too few or too many.
    let salt = prop_oneof![
        3 => any::<[u8; 16]>().prop_map(|s| V::Bytes(s.to_vec())),
        1 => item.clone(),
    ];
    let name = prop_oneof![3 => "[a-z_]{1,12}".prop_map(V::Text), 1 => item.clone()];
    (salt, item.clone(), name, item, 0u8..10).prop_map(|(salt, value, name, extra, shape)| {
        let mut items = vec![salt, value, name];
        match shape {
            0 => {
                items.pop();
            }
            1 => items.push(extra),
            _ => {}
        }
        V::Array(items)
    })
}

/// The disclosure decoder as it was, through a [`codec::Value`] tree: the reference the
/// head-by-head decoder must agree with.
fn reference_disclosure(bytes: &[u8]) -> Result<([u8; 16], FieldValue, String), String> {
    use codec::Value as V;
    let v = codec::decode("disclosure", bytes, DISCLOSURE_BYTES_MAX).map_err(|e| e.to_string())?;
    let V::Array(items) = v else {
        return Err("disclosure: expected an array".into());
    };
    let [salt, value, name] = &items[..] else {
        return Err(format!(
            "disclosure: has {} elements (expected 3)",
            items.len()
        ));
    };
    let V::Bytes(salt) = salt else {
        return Err("disclosure: expected a byte string".into());
    };
    let salt: [u8; 16] = salt[..]
        .try_into()
        .map_err(|_| format!("disclosure: salt has {} bytes (expected 16)", salt.len()))?;
    let value = FieldValue::from_cbor(value).ok_or_else(|| {
        "disclosure: value is not text, an unsigned integer, a bool or a text list".to_string()
    })?;
    let V::Text(name) = name else {
        return Err("disclosure: expected a text string".into());
    };
    Ok((salt, value, name.clone()))
}

proptest! {
    #[test]
    fn the_disclosure_decoder_agrees_with_the_value_tree_reference(v in disclosure_like()) {
        let bytes = codec::encode(&v);
        let ours = Disclosure::decode(&bytes)
            .map(|d| (*d.salt(), d.value().clone(), d.name().to_owned()))
            .map_err(|e| e.to_string());
        prop_assert_eq!(ours, reference_disclosure(&bytes));
    }

    #[test]
    fn disclosure_round_trip(salt in any::<[u8; 16]>(), name in "[a-z_]{1,30}", value in field_value()) {
        let d = Disclosure::new(salt, &name, &value);
        // The direct encoder writes exactly what serde_cbor (the reference) writes.
        let reference = codec::encode(&codec::Value::Array(vec![
            codec::Value::Bytes(salt.to_vec()), value.to_cbor(), codec::Value::Text(name.clone()),
        ]));
        prop_assert_eq!(d.bytes(), reference.as_slice());
        let back = Disclosure::decode(d.bytes()).unwrap();
        prop_assert_eq!(back.name(), name.as_str());
        prop_assert_eq!(back.value(), &value);
        prop_assert_eq!(back.salt(), &salt);
        prop_assert_eq!(back.digest(), d.digest());
    }

    #[test]
    fn header_round_trip(seq in any::<u64>(), at in any::<u64>(), sup in any::<Option<[u8; 32]>>(), kind in 0usize..4) {
        let kind = RecordKind::ALL[kind];
        let mut digests: Vec<[u8; 32]> = (0..kind.digest_count()).map(|i| tfx_protocol::ids::sha256(&[i as u8])).collect();
        digests.sort_unstable();
        let h = Header {
            origin: MemberId::new("ip-center").unwrap(), seq: LogIndex(seq), kind, schema: 1,
            issued_at: Timestamp(at), supersedes: sup.map(RecordId), digests,
        };
        prop_assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn record_file_round_trip(env in prop::collection::vec(any::<u8>(), 0..200), ds in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let rf = RecordFile { envelope: env, disclosures: ds };
        prop_assert_eq!(RecordFile::decode(&rf.encode()).unwrap(), rf);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let k = *key().verifying_key();
        let _ = codec::decode("fuzz", &bytes, 4096);
        let _ = Disclosure::decode(&bytes);
        let _ = Header::decode(&bytes);
        let _ = RecordFile::decode(&bytes);
        let _ = verify_envelope(&bytes, &k);
        let _ = verify_checkpoint(&bytes, &k);
        let _ = parse_record_json(&bytes);
        let _ = tfx_protocol::witness::verify_cosignature(&bytes, &k);
        let _ = tfx_protocol::witness::Witnessed::decode(&bytes);
        if let Ok(e) = tfx_protocol::evidence::Evidence::decode(&bytes) {
            let _ = e.verify(&k);
        }
        let _ = tfx_protocol::sync::wire::Message::decode(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(pos in 0usize..1000, byte in any::<u8>(), cut in 0usize..1000) {
        let r = sealed("credit", 1);
        let mut env = r.envelope.clone();
        let p = pos % env.len();
        env[p] = byte;
        env.truncate(cut.max(1) % (env.len() + 1));
        let _ = verify_envelope(&env, key().verifying_key());
    }
}

#[test]
fn decoders_refuse_inputs_over_their_limit() {
    let big = |n: usize| vec![0u8; n + 1];
    let too_large = |r: Result<(), DecodeError>| matches!(r, Err(DecodeError::TooLarge { .. }));
    assert!(too_large(
        Disclosure::decode(&big(DISCLOSURE_BYTES_MAX)).map(|_| ())
    ));
    assert!(too_large(
        RecordFile::decode(&big(RECORD_FILE_BYTES_MAX)).map(|_| ())
    ));
    assert!(too_large(
        Header::decode(&big(ENVELOPE_BYTES_MAX)).map(|_| ())
    ));
    let k = *key().verifying_key();
    let env_err = verify_envelope(&big(ENVELOPE_BYTES_MAX), &k)
        .unwrap_err()
        .to_string();
    assert!(env_err.contains("too large"), "{env_err}");
    let cp_err = verify_checkpoint(&big(CHECKPOINT_BYTES_MAX), &k)
        .unwrap_err()
        .to_string();
    assert!(cp_err.contains("too large"), "{cp_err}");
}

#[test]
fn every_bit_flip_of_an_envelope_fails_verification() {
    for (i, kind) in ["credit", "ip-valuation", "monitoring", "risk-warning"]
        .iter()
        .enumerate()
    {
        let r = sealed(kind, i as u64);
        let disclosures: Vec<&[u8]> = r.disclosures.iter().map(Disclosure::bytes).collect();
        verify_record(&r.envelope, &disclosures, key().verifying_key()).unwrap();
        for bit in 0..r.envelope.len() * 8 {
            let mut env = r.envelope.clone();
            env[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify_envelope(&env, key().verifying_key()).is_err(),
                "{kind}: flipping bit {bit} still verified"
            );
        }
    }
}

#[test]
fn every_bit_flip_of_a_disclosure_fails_verification() {
    let r = sealed("credit", 0);
    for (n, d) in r.disclosures.iter().enumerate() {
        for bit in 0..d.bytes().len() * 8 {
            let mut bytes = d.bytes().to_vec();
            bytes[bit / 8] ^= 1 << (bit % 8);
            assert!(
                verify_disclosures(&r.header, &[bytes]).is_err(),
                "disclosure {n} ({}): bit {bit}",
                d.name()
            );
        }
    }
}

/// The owned verification (what a catch-up uses) answers exactly as the borrowed one, and on
/// every failure gives back every byte string it was given, in order: a prechecked message
/// whose check is redone needs them.
#[test]
fn owned_verification_agrees_and_gives_every_byte_back() {
    let r = sealed("credit", 0);
    let all: Vec<Vec<u8>> = r.disclosures.iter().map(|d| d.bytes().to_vec()).collect();
    let owned = verify_disclosures_owned(&r.header, all.clone()).unwrap();
    let borrowed = verify_disclosures(&r.header, &all).unwrap();
    let bytes = |ds: &[Disclosure]| ds.iter().map(|d| d.bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(bytes(&owned), bytes(&borrowed));
    assert_eq!(bytes(&owned), all);

    let mut cases = Vec::new();
    for n in 0..all.len() {
        for bit in (0..all[n].len() * 8).step_by(11) {
            let mut c = all.clone();
            c[n][bit / 8] ^= 1 << (bit % 8);
            cases.push(c);
        }
    }
    let mut duplicated = all.clone();
    duplicated.insert(4, all[3].clone());
    cases.push(duplicated);
    let mut foreign = all.clone();
    foreign.insert(2, sealed("credit", 5).disclosures[0].bytes().to_vec());
    cases.push(foreign);
    let mut too_many = all.clone();
    while too_many.len() <= DISCLOSURES_PER_RECORD_MAX {
        too_many.push(all[0].clone());
    }
    cases.push(too_many);
    for c in cases {
        let want = verify_disclosures(&r.header, &c).unwrap_err().to_string();
        let (e, back) = verify_disclosures_owned(&r.header, c.clone()).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert_eq!(back, c);
    }

    let ok = verify_record_owned(&r.envelope, all.clone(), key().verifying_key()).unwrap();
    assert_eq!(bytes(&ok.disclosures), all);
    let mut envelope = r.envelope.clone();
    envelope[20] ^= 1;
    let (_, back) = verify_record_owned(&envelope, all.clone(), key().verifying_key()).unwrap_err();
    assert_eq!(back, all);
}

/// A verification result as comparable text: the record's id, header, key and disclosure
/// bytes, or the error and every byte string given back.
fn outcome(r: OwnedVerification) -> Result<String, (String, Vec<Vec<u8>>)> {
    r.map(|v| {
        let ds: Vec<String> = v
            .disclosures
            .iter()
            .map(|d| hex::encode(d.bytes()))
            .collect();
        format!(
            "{} {} {} {}",
            v.envelope.id,
            hex::encode(v.envelope.header.encode()),
            v.envelope.kid,
            ds.join(",")
        )
    })
    .map_err(|(e, back)| (e.to_string(), back))
}

/// Verifying records a batch at a time (their signature checks finished together) gives each
/// record exactly the answer it gets alone — valid or not, whatever its neighbours are: bit
/// flips in envelopes and disclosures, both at once (the signature's error comes first), an
/// unknown key, bytes that are no envelope, and held envelopes, which skip the signature.
#[test]
fn batched_record_verification_gives_each_record_the_single_answer() {
    let right = key();
    let other = SigningKey::from_seed(&[8; 32]);
    let disclosures = |r: &SealedRecord| -> Vec<Vec<u8>> {
        r.disclosures.iter().map(|d| d.bytes().to_vec()).collect()
    };
    // (envelope, held, disclosures)
    type Case = (Vec<u8>, Option<Vec<u8>>, Vec<Vec<u8>>);
    let mut cases: Vec<Case> = Vec::new();
    for (i, kind) in ["credit", "ip-valuation", "monitoring", "risk-warning"]
        .iter()
        .enumerate()
    {
        let r = sealed(kind, i as u64);
        cases.push((r.envelope.clone(), None, disclosures(&r)));
        cases.push((
            r.envelope.clone(),
            Some(r.envelope.clone()),
            disclosures(&r),
        ));
        for bit in (0..r.envelope.len() * 8).step_by(37) {
            let mut e = r.envelope.clone();
            e[bit / 8] ^= 1 << (bit % 8);
            cases.push((e.clone(), None, disclosures(&r)));
            cases.push((e, Some(r.envelope.clone()), disclosures(&r)));
        }
        let mut bad_disclosure = disclosures(&r);
        bad_disclosure[0][5] ^= 1;
        cases.push((r.envelope.clone(), None, bad_disclosure.clone()));
        let mut bad_signature = r.envelope.clone();
        let last = bad_signature.len() - 1;
        bad_signature[last] ^= 1;
        cases.push((bad_signature.clone(), None, disclosures(&r)));
        cases.push((bad_signature, None, bad_disclosure));
    }
    let mut foreign = sealed("credit", 7);
    foreign.envelope = cose::sign(&other, CONTENT_TYPE_RECORD, foreign.header.encode());
    cases.push((foreign.envelope.clone(), None, disclosures(&foreign)));
    cases.push((vec![0xa0; 40], None, vec![vec![1, 2, 3]]));
    let single: Vec<_> = cases
        .iter()
        .map(|(e, held, ds)| {
            outcome(verify_record_owned_held(
                e,
                held.as_deref(),
                ds.clone(),
                right.verifying_key(),
            ))
        })
        .collect();
    assert!(single.iter().filter(|o| o.is_ok()).count() >= 8);
    assert!(single.iter().filter(|o| o.is_err()).count() >= 20);
    let inputs = cases
        .iter()
        .map(|(e, held, ds)| (e.as_slice(), held.as_deref(), ds.clone()))
        .collect();
    let batched: Vec<_> = verify_records_owned_held(inputs, right.verifying_key())
        .into_iter()
        .map(outcome)
        .collect();
    assert_eq!(batched.len(), single.len());
    for (i, (b, s)) in batched.iter().zip(&single).enumerate() {
        assert_eq!(b, s, "case {i}");
    }
}

/// `verify_envelope_held` skips the signature only for the very bytes held: under a key set
/// that resolves nothing, the held envelope still reads back as `verify_envelope` read it
/// under the right key; every other envelope — a bit flipped anywhere, or none held — gets
/// exactly `verify_envelope`'s answer.
#[test]
fn only_the_held_bytes_skip_the_signature_check() {
    let r = sealed("credit", 0);
    let right = key();
    let nobody = SigningKey::from_seed(&[8; 32]);
    let fresh = verify_envelope(&r.envelope, right.verifying_key()).unwrap();
    let held =
        verify_envelope_held(&r.envelope, Some(&r.envelope), nobody.verifying_key()).unwrap();
    assert_eq!(
        (held.id, held.header.encode(), held.kid),
        (fresh.id, fresh.header.encode(), fresh.kid)
    );
    let answer = |e: &[u8], held: Option<&[u8]>| {
        verify_envelope_held(e, held, right.verifying_key())
            .map(|v| v.id)
            .map_err(|e| e.to_string())
    };
    let full = |e: &[u8]| {
        verify_envelope(e, right.verifying_key())
            .map(|v| v.id)
            .map_err(|e| e.to_string())
    };
    assert_eq!(answer(&r.envelope, None), full(&r.envelope));
    for bit in 0..r.envelope.len() * 8 {
        let mut e = r.envelope.clone();
        e[bit / 8] ^= 1 << (bit % 8);
        assert!(full(&e).is_err(), "bit {bit}");
        assert_eq!(answer(&e, Some(&r.envelope)), full(&e), "bit {bit}");
    }
    // Identical bytes that do not parse are refused, held or not.
    let garbage = vec![0xa0u8; 40];
    assert!(verify_envelope_held(&garbage, Some(&garbage), nobody.verifying_key()).is_err());
}

#[test]
fn verification_names_the_failed_check() {
    let r = sealed("credit", 0);
    let other = SigningKey::from_seed(&[8; 32]);
    let e = verify_envelope(&r.envelope, other.verifying_key())
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not known"), "{e}");
    // A disclosure from another record: well-formed and valid, but its digest is not signed here.
    let foreign = sealed("credit", 5).disclosures[0].bytes().to_vec();
    let e = verify_disclosures(&r.header, &[foreign])
        .unwrap_err()
        .to_string();
    assert!(e.contains("digest is not in the signed header"), "{e}");
    let dup = r.disclosures[0].bytes().to_vec();
    let e = verify_disclosures(&r.header, &[dup.clone(), dup])
        .unwrap_err()
        .to_string();
    assert!(e.contains("disclosed twice"), "{e}");
    // A record header signature must not pass as a checkpoint (content types differ). The small
    // risk-warning envelope fits the checkpoint size limit, so the content type is what refuses it.
    let small = sealed("risk-warning", 3);
    assert!(small.envelope.len() <= CHECKPOINT_BYTES_MAX);
    let e = verify_checkpoint(&small.envelope, key().verifying_key())
        .unwrap_err()
        .to_string();
    assert!(e.contains("content type"), "{e}");
    let e = verify_checkpoint(&r.envelope, key().verifying_key())
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large"), "{e}");
    let cp = Checkpoint {
        origin: MemberId::new("bank-a").unwrap(),
        size: 1,
        root: [0; 32],
        time: Timestamp(5),
    }
    .sign(&key());
    assert!(verify_envelope(&cp.bytes, key().verifying_key())
        .unwrap_err()
        .to_string()
        .contains("content type"));
    assert_eq!(
        verify_checkpoint(&cp.bytes, key().verifying_key())
            .unwrap()
            .checkpoint
            .size,
        1
    );
}

#[test]
fn a_key_set_binds_keys_to_their_origins() {
    use tfx_protocol::record::KeySet;
    // bank-a signs a record claiming to come from ip-center.
    let body = parse_record_json(
        &std::fs::read(format!(
            "{}/../examples/records/credit.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let forged_origin = MemberId::new("ip-center").unwrap();
    let params = SealParams {
        origin: &forged_origin,
        seq: LogIndex(0),
        issued_at: Timestamp(1),
        pseudonym: None,
    };
    let forged = seal(&body, params, &key(), &mut DeterministicEntropy::new(b"f")).unwrap();
    let other = SigningKey::from_seed(&[4; 32]);
    let keys = KeySet(vec![
        (MemberId::new("bank-a").unwrap(), *key().verifying_key()),
        (forged_origin.clone(), *other.verifying_key()),
    ]);
    let e = verify_envelope(&forged.envelope, &keys)
        .unwrap_err()
        .to_string();
    assert!(e.contains("of ip-center is not known"), "{e}");
    // The same record claiming bank-a verifies under bank-a's entry.
    let origin = MemberId::new("bank-a").unwrap();
    let params = SealParams {
        origin: &origin,
        seq: LogIndex(0),
        issued_at: Timestamp(1),
        pseudonym: None,
    };
    let honest = seal(&body, params, &key(), &mut DeterministicEntropy::new(b"h")).unwrap();
    assert!(verify_envelope(&honest.envelope, &keys).is_ok());
}

#[test]
fn disclosure_count_limit_at_n_and_n_plus_1() {
    use tfx_protocol::limits::DISCLOSURES_PER_RECORD_MAX;
    let r = sealed("credit", 0);
    // N disclosures pass the count check (and then fail as duplicates); N+1 fail the count check.
    let n: Vec<&[u8]> =
        std::iter::repeat_n(r.disclosures[0].bytes(), DISCLOSURES_PER_RECORD_MAX).collect();
    assert!(verify_disclosures(&r.header, &n)
        .unwrap_err()
        .to_string()
        .contains("disclosed twice"));
    let n1: Vec<&[u8]> =
        std::iter::repeat_n(r.disclosures[0].bytes(), DISCLOSURES_PER_RECORD_MAX + 1).collect();
    let e = verify_disclosures(&r.header, &n1).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{} disclosures (max {DISCLOSURES_PER_RECORD_MAX})",
            DISCLOSURES_PER_RECORD_MAX + 1
        )
    );
}

#[test]
fn withheld_fields_leave_the_header_unchanged() {
    // A holder given only some disclosures still verifies them; the header is identical.
    let r = sealed("credit", 0);
    let some: Vec<&[u8]> = r
        .disclosures
        .iter()
        .filter(|d| d.name().ends_with("_band"))
        .map(Disclosure::bytes)
        .collect();
    assert_eq!(some.len(), 2);
    let v = verify_record(&r.envelope, &some, key().verifying_key()).unwrap();
    assert_eq!(v.disclosures.len(), 2);
    assert_eq!(
        v.envelope.header.digests.len(),
        RecordKind::Credit.digest_count()
    );
}
