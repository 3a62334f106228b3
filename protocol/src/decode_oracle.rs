//! Test oracle for the head-by-head decoders of [`crate::record::Header::decode`] and
//! [`crate::cose::open`]: their earlier versions, which built a [`Value`] tree and read it with
//! the `codec::as_*` helpers, kept verbatim. Every input the tests make — valid envelopes of each
//! kind, every single-byte change and truncation of them, hand-made headers with extra, missing
//! or mistyped keys, and hand-written encodings the `Value` encoder cannot produce (keys out of
//! order, several unexpected keys, tagged or extreme algorithm values, tags inside the COSE
//! structure) — must get the same result from both, errors included: the rewrite was for speed
//! and must not change what a verifier accepts or what it says.

use crate::codec::{self, DecodeError, Value};
use crate::cose::{
    self, ALG_ED25519, ALG_EDDSA, CONTENT_TYPE_RECORD, COSE_SIGN1_TAG, HDR_ALG, HDR_CONTENT_TYPE,
    HDR_KID,
};
use crate::ids::{LogIndex, MemberId, RecordId, Timestamp};
use crate::keys::{KeyId, SigningKey};
use crate::limits::ENVELOPE_BYTES_MAX;
use crate::record::{
    Header, H_DIGESTS, H_ISSUED_AT, H_KIND, H_ORIGIN, H_SCHEMA, H_SEQ, H_SUPERSEDES,
};
use crate::schema::{RecordKind, SCHEMA_VERSION};

fn header_via_value(bytes: &[u8]) -> Result<Header, DecodeError> {
    const W: &str = "record header";
    let v = codec::decode(W, bytes, ENVELOPE_BYTES_MAX)?;
    let m = codec::as_map(W, &v)?;
    codec::only_keys(
        W,
        m,
        &[
            H_ORIGIN,
            H_SEQ,
            H_KIND,
            H_SCHEMA,
            H_ISSUED_AT,
            H_SUPERSEDES,
            H_DIGESTS,
        ],
    )?;
    let origin = MemberId::new(codec::as_text(W, codec::field(W, m, H_ORIGIN)?)?)
        .map_err(|e| DecodeError::structure(W, e.to_string()))?;
    let kind_name = codec::as_text(W, codec::field(W, m, H_KIND)?)?;
    let kind = RecordKind::parse(kind_name)
        .ok_or_else(|| DecodeError::structure(W, format!("unknown record kind {kind_name:?}")))?;
    let schema = codec::as_u64(W, codec::field(W, m, H_SCHEMA)?)?;
    if schema != SCHEMA_VERSION {
        return Err(DecodeError::structure(
            W,
            format!("unsupported schema version {schema} for {kind}"),
        ));
    }
    let supersedes = match m.get(&codec::key(H_SUPERSEDES)) {
        Some(v) => Some(RecordId(codec::as_hash(W, v)?)),
        None => None,
    };
    let list = codec::as_array(W, codec::field(W, m, H_DIGESTS)?)?;
    if list.len() != kind.digest_count() {
        let detail = format!(
            "{} digests (a {kind} header has {})",
            list.len(),
            kind.digest_count()
        );
        return Err(DecodeError::structure(W, detail));
    }
    let digests = list
        .iter()
        .map(|d| codec::as_hash(W, d))
        .collect::<Result<Vec<_>, _>>()?;
    if !digests.windows(2).all(|w| w[0] < w[1]) {
        return Err(DecodeError::structure(
            W,
            "digests are not sorted and unique",
        ));
    }
    Ok(Header {
        origin,
        seq: LogIndex(codec::as_u64(W, codec::field(W, m, H_SEQ)?)?),
        kind,
        schema,
        issued_at: Timestamp(codec::as_u64(W, codec::field(W, m, H_ISSUED_AT)?)?),
        supersedes,
        digests,
    })
}

/// What the value-tree decoder returned: a COSE_Sign1 with its parts copied out (the direct
/// decoder's [`cose::Sign1`] borrows them).
struct OwnedSign1 {
    protected: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
    alg: i64,
    kid: KeyId,
}

fn open_via_value(
    what: &'static str,
    bytes: &[u8],
    bytes_max: usize,
    content_type: &str,
) -> Result<OwnedSign1, DecodeError> {
    let value = codec::decode(what, bytes, bytes_max)?;
    let Value::Tag(COSE_SIGN1_TAG, inner) = value else {
        return Err(DecodeError::structure(
            what,
            "not a COSE_Sign1 (CBOR tag 18)",
        ));
    };
    let parts = codec::as_array(what, &inner)?;
    let [protected, unprotected, payload, signature] = parts else {
        return Err(DecodeError::structure(
            what,
            format!("COSE_Sign1 has {} elements (expected 4)", parts.len()),
        ));
    };
    if !codec::as_map(what, unprotected)?.is_empty() {
        return Err(DecodeError::structure(
            what,
            "unprotected header must be empty",
        ));
    }
    let protected = codec::as_bytes(what, protected)?.to_vec();
    let hdr_value = codec::decode(what, &protected, bytes_max)?;
    let hdr = codec::as_map(what, &hdr_value)?;
    codec::only_keys(what, hdr, &[HDR_ALG, HDR_CONTENT_TYPE, HDR_KID])?;
    let alg = match codec::field(what, hdr, HDR_ALG)? {
        Value::Integer(a) if *a == i128::from(ALG_EDDSA) || *a == i128::from(ALG_ED25519) => {
            *a as i64
        }
        other => {
            return Err(DecodeError::structure(
                what,
                format!("unsupported algorithm {other:?} (expected EdDSA: -8 or -19)"),
            ))
        }
    };
    let ct = codec::as_text(what, codec::field(what, hdr, HDR_CONTENT_TYPE)?)?;
    if ct != content_type {
        return Err(DecodeError::structure(
            what,
            format!("content type {ct:?} (expected {content_type:?})"),
        ));
    }
    let kid_bytes = codec::as_bytes(what, codec::field(what, hdr, HDR_KID)?)?;
    let kid = KeyId(kid_bytes.try_into().map_err(|_| {
        DecodeError::structure(
            what,
            format!("kid has {} bytes (expected 16)", kid_bytes.len()),
        )
    })?);
    let signature = codec::as_bytes(what, signature)?.to_vec();
    if signature.len() != 64 {
        return Err(DecodeError::structure(
            what,
            format!("signature has {} bytes (expected 64)", signature.len()),
        ));
    }
    Ok(OwnedSign1 {
        protected,
        payload: codec::as_bytes(what, payload)?.to_vec(),
        signature,
        alg,
        kid,
    })
}

fn header(kind: RecordKind, supersedes: Option<[u8; 32]>) -> Header {
    let mut digests: Vec<[u8; 32]> = (0..kind.digest_count())
        .map(|i| crate::ids::sha256(&[i as u8]))
        .collect();
    digests.sort_unstable();
    Header {
        origin: MemberId::new("bank-a").unwrap(),
        seq: LogIndex(70_000),
        kind,
        schema: SCHEMA_VERSION,
        issued_at: Timestamp(1_764_000_000_000),
        supersedes: supersedes.map(RecordId),
        digests,
    }
}

/// Every single-byte change (three replacement bytes per position) and every truncation.
fn variants(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![bytes.to_vec()];
    for i in 0..bytes.len() {
        for x in [0x00, 0xff, bytes[i] ^ 0x20] {
            let mut b = bytes.to_vec();
            b[i] = x;
            out.push(b);
        }
        out.push(bytes[..i].to_vec());
    }
    out
}

/// Opens every case with both decoders, requires the same result (errors included), and
/// returns how many were accepted.
fn open_both(cases: &[Vec<u8>]) -> usize {
    let mut accepted = 0;
    for c in cases {
        let new = cose::open("envelope", c, ENVELOPE_BYTES_MAX, CONTENT_TYPE_RECORD);
        let old = open_via_value("envelope", c, ENVELOPE_BYTES_MAX, CONTENT_TYPE_RECORD);
        let same = match (&new, &old) {
            (Ok(a), Ok(b)) => {
                (a.protected, a.payload, a.signature, a.alg, a.kid)
                    == (
                        &b.protected[..],
                        &b.payload[..],
                        &b.signature[..],
                        b.alg,
                        b.kid,
                    )
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        assert!(
            same,
            "{}: {:?} vs {:?}",
            hex::encode(c),
            new.err(),
            old.err()
        );
        accepted += usize::from(new.is_ok());
    }
    accepted
}

#[test]
fn header_decoding_matches_the_value_tree_decoder() {
    let mut cases = Vec::new();
    for kind in RecordKind::ALL {
        for sup in [None, Some([9u8; 32])] {
            cases.extend(variants(&header(kind, sup).encode()));
        }
    }
    let map =
        |entries: &[(Value, Value)]| codec::encode(&Value::Map(entries.iter().cloned().collect()));
    let good = header(RecordKind::ALL[0], None);
    let int = |k: i64| Value::Integer(i128::from(k));
    let base: Vec<(Value, Value)> = vec![
        (int(H_ORIGIN), Value::Text("bank-a".into())),
        (int(H_SEQ), int(7)),
        (int(H_KIND), Value::Text(good.kind.name().into())),
        (int(H_SCHEMA), int(SCHEMA_VERSION as i64)),
        (int(H_ISSUED_AT), int(1)),
        (
            int(H_DIGESTS),
            Value::Array(
                good.digests
                    .iter()
                    .map(|d| Value::Bytes(d.to_vec()))
                    .collect(),
            ),
        ),
    ];
    cases.push(map(&base));
    for (i, bad) in [
        Value::Integer(-3),
        Value::Text("x".into()),
        Value::Bytes(vec![1; 31]),
        Value::Array(vec![]),
        Value::Tag(24, Box::new(int(1))),
        Value::Null,
        Value::Bool(true),
        Value::Map(Default::default()),
    ]
    .into_iter()
    .enumerate()
    {
        // Each key in turn given a wrong value, and each key in turn left out.
        let mut m = base.clone();
        let slot = i % m.len();
        m[slot].1 = bad.clone();
        cases.push(map(&m));
        let mut m = base.clone();
        m.remove(slot);
        cases.push(map(&m));
        // An extra key, integer (negative too) or text.
        for extra in [int(8), int(-1), Value::Text("note".into())] {
            let mut m = base.clone();
            m.push((extra, bad.clone()));
            cases.push(map(&m));
        }
    }
    let mut m = base.clone();
    m.push((int(H_SUPERSEDES), Value::Bytes(vec![0; 33])));
    cases.push(map(&m));
    let mut unsorted = base.clone();
    if let Value::Array(d) = &mut unsorted[5].1 {
        d.swap(0, 1);
    }
    cases.push(map(&unsorted));
    cases.push(codec::encode(&Value::Array(vec![])));
    cases.push(vec![0u8; ENVELOPE_BYTES_MAX + 1]);
    assert!(cases.len() > 1_000);
    let mut accepted = 0;
    for c in &cases {
        let (new, old) = (Header::decode(c), header_via_value(c));
        assert_eq!(new, old, "{}", hex::encode(c));
        accepted += usize::from(new.is_ok());
    }
    // The cases must exercise both outcomes (a changed digest or seq byte still decodes).
    let refused = cases.len() - accepted;
    assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
}

#[test]
fn envelope_opening_matches_the_value_tree_decoder() {
    let key = SigningKey::from_seed(&[5; 32]);
    let mut cases = Vec::new();
    for kind in [RecordKind::ALL[0], RecordKind::ALL[3]] {
        let env = cose::sign(&key, CONTENT_TYPE_RECORD, header(kind, None).encode());
        cases.extend(variants(&env));
    }
    // Outside the signer's encoding: another algorithm, a non-integer one, an unprotected
    // header with an entry, three elements, no tag.
    let int = |k: i64| Value::Integer(i128::from(k));
    let protected = |alg: Value| {
        codec::encode(&Value::Map(
            [
                (int(HDR_ALG), alg),
                (
                    int(HDR_CONTENT_TYPE),
                    Value::Text(CONTENT_TYPE_RECORD.into()),
                ),
                (int(HDR_KID), Value::Bytes(key.key_id().0.to_vec())),
            ]
            .into_iter()
            .collect(),
        ))
    };
    let sign1 = |items: Vec<Value>| {
        codec::encode(&Value::Tag(COSE_SIGN1_TAG, Box::new(Value::Array(items))))
    };
    let body = |p: Vec<u8>, u: Value| {
        vec![
            Value::Bytes(p),
            u,
            Value::Bytes(vec![1, 2]),
            Value::Bytes(vec![0; 64]),
        ]
    };
    for alg in [
        int(ALG_EDDSA),
        int(ALG_ED25519),
        int(-7),
        int(7),
        Value::Text("EdDSA".into()),
    ] {
        cases.push(sign1(body(protected(alg), Value::Map(Default::default()))));
    }
    let one = Value::Map([(int(4), int(1))].into_iter().collect());
    cases.push(sign1(body(protected(int(ALG_EDDSA)), one)));
    cases.push(sign1(body(protected(int(ALG_EDDSA)), Value::Array(vec![]))));
    let mut three = body(protected(int(ALG_EDDSA)), Value::Map(Default::default()));
    three.pop();
    cases.push(sign1(three));
    cases.push(codec::encode(&Value::Array(body(
        protected(int(ALG_EDDSA)),
        Value::Map(Default::default()),
    ))));
    let accepted = open_both(&cases);
    let refused = cases.len() - accepted;
    assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
}

/// A map written entry by entry in the order given (the `Value` encoder would sort them).
fn raw_map(entries: &[(Value, Value)]) -> Vec<u8> {
    let mut e = codec::Encoder::with_capacity(16);
    e.map(entries.len());
    let mut out = e.finish();
    for (k, v) in entries {
        out.extend(codec::encode(k));
        out.extend(codec::encode(v));
    }
    out
}

fn int(k: i64) -> Value {
    Value::Integer(i128::from(k))
}

fn text(t: &str) -> Value {
    Value::Text(t.into())
}

/// A header's entries in canonical order, for the hand-written cases to rearrange.
fn header_entries() -> Vec<(Value, Value)> {
    let h = header(RecordKind::ALL[0], None);
    vec![
        (int(H_ORIGIN), text(h.origin.as_str())),
        (int(H_SEQ), int(7)),
        (int(H_KIND), text(h.kind.name())),
        (int(H_SCHEMA), int(SCHEMA_VERSION as i64)),
        (int(H_ISSUED_AT), int(1)),
        (
            int(H_DIGESTS),
            Value::Array(h.digests.iter().map(|d| Value::Bytes(d.to_vec())).collect()),
        ),
    ]
}

/// Hand-written encodings the generated cases cannot reach: keys out of order, several
/// unexpected keys (whose error must name the same one), extreme and tagged algorithm values,
/// tags inside the COSE structure, and nested values under keys that are not last.
#[test]
fn hand_written_encodings_match_the_value_tree_decoder() {
    let mut headers = Vec::new();
    let mut reversed = header_entries();
    reversed.reverse();
    headers.push(raw_map(&reversed));
    for extra in [
        [int(9), int(8)],
        [int(-1), int(8)],
        [text("a"), int(8)],
        [text("bb"), text("a")],
    ] {
        for order in [[0, 1], [1, 0]] {
            let mut m = header_entries();
            m.insert(2, (extra[order[0]].clone(), int(0)));
            m.push((extra[order[1]].clone(), int(0)));
            headers.push(raw_map(&m));
        }
    }
    // Nested values under keys that are not last: the reader must skip them whole.
    let nested = Value::Map(
        [(
            int(1),
            Value::Array(vec![int(2), Value::Tag(3, Box::new(int(4)))]),
        )]
        .into_iter()
        .collect(),
    );
    for slot in [1, 3, 4] {
        let mut m = header_entries();
        m[slot].1 = nested.clone();
        headers.push(raw_map(&m));
    }
    let mut m = header_entries();
    m.insert(5, (int(H_SUPERSEDES), nested.clone()));
    headers.push(raw_map(&m));
    let mut m = header_entries();
    m.insert(5, (int(H_SUPERSEDES), Value::Bytes(vec![3; 32])));
    m.swap(0, 6);
    headers.push(raw_map(&m));
    for c in &headers {
        assert_eq!(Header::decode(c), header_via_value(c), "{}", hex::encode(c));
    }
    assert!(
        Header::decode(&headers[0]).is_ok(),
        "keys out of order are accepted"
    );

    let key = SigningKey::from_seed(&[5; 32]);
    let kid = Value::Bytes(key.key_id().0.to_vec());
    let ct = text(CONTENT_TYPE_RECORD);
    let protected_with = |alg: Vec<u8>| {
        let mut p = codec::Encoder::with_capacity(4);
        p.map(3).uint(HDR_ALG as u64);
        let mut p = p.finish();
        p.extend(alg);
        p.extend(codec::encode(&int(HDR_CONTENT_TYPE)));
        p.extend(codec::encode(&ct));
        p.extend(codec::encode(&int(HDR_KID)));
        p.extend(codec::encode(&kid));
        p
    };
    let hex_of = |h: &str| hex::decode(h).unwrap();
    let mut protecteds: Vec<Vec<u8>> = [
        "27",
        "32",
        "3bffffffffffffffff",
        "1b8000000000000000",
        "d81827",
        "80",
        "a0",
    ]
    .iter()
    .map(|a| protected_with(hex_of(a)))
    .collect();
    let valid = [
        (int(HDR_ALG), int(ALG_EDDSA)),
        (int(HDR_CONTENT_TYPE), ct.clone()),
        (int(HDR_KID), kid.clone()),
    ];
    let mut backwards = valid.to_vec();
    backwards.reverse();
    protecteds.push(raw_map(&backwards));
    for extra in [[int(9), int(8)], [text("a"), int(-1)]] {
        for order in [[0, 1], [1, 0]] {
            let mut m = valid.to_vec();
            m.insert(1, (extra[order[0]].clone(), int(0)));
            m.push((extra[order[1]].clone(), int(0)));
            protecteds.push(raw_map(&m));
        }
    }
    // tag(18, [protected, unprotected, payload, signature]) from raw parts.
    let envelope = |tags: &str, protected: Vec<u8>, unprotected: Vec<u8>| {
        let mut out = hex_of(tags);
        out.push(0x84);
        out.extend(protected);
        out.extend(unprotected);
        out.extend(codec::encode(&Value::Bytes(
            header(RecordKind::ALL[0], None).encode(),
        )));
        out.extend(codec::encode(&Value::Bytes(vec![0; 64])));
        out
    };
    let bstr = |b: &[u8]| codec::encode(&Value::Bytes(b.to_vec()));
    let empty = hex_of("a0");
    let mut cases: Vec<Vec<u8>> = protecteds
        .iter()
        .map(|p| envelope("d2", bstr(p), empty.clone()))
        .collect();
    let good = bstr(&protected_with(hex_of("27")));
    cases.push(envelope("d2d2", good.clone(), empty.clone()));
    cases.push(envelope(
        "d2",
        [hex_of("d818"), good.clone()].concat(),
        empty.clone(),
    ));
    cases.push(envelope("d2", good.clone(), hex_of("d818a0")));
    cases.push(envelope("d2", good.clone(), hex_of("a10100")));
    let accepted = open_both(&cases);
    // EdDSA (-8), Ed25519 (-19), and the valid keys written backwards.
    assert_eq!(accepted, 3);
}
