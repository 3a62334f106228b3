//! tfx verifies Ed25519 signatures with ed25519-dalek (`keys::VerifyingKey::verify`, and the
//! same equation finished in batches by `begin_verify` and `finish_checks`), chosen for speed.
//! Signatures were verified by ring before, and ring is what the independent COSE test and most
//! other tools use. If the two libraries ever disagreed, members running different versions of
//! tfx could disagree about which records are valid. These tests feed both the same inputs and
//! require the same answer, from the single check and from a batched one: valid signatures,
//! every bit flipped, non-canonical scalars and encodings, small-order keys and nonces, and keys
//! with a small-order component. The last of these tells a cofactorless verifier from a
//! cofactored one (the batch-verification form).
//! tfx also signs with dalek: the signatures must be ring's, byte for byte, and a key file must
//! load to the key ring loads from it.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha512};
use tfx_protocol::keys::{finish_checks, SigningKey, VerifyingKey};

/// The group order l, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[derive(Default, Debug)]
struct Tally {
    accepted: usize,
    refused: usize,
}

impl Tally {
    /// Both verifiers' answer for one input; panics, naming the input, if they differ.
    fn check(&mut self, public: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
        let ring = UnparsedPublicKey::new(&ED25519, public)
            .verify(msg, sig)
            .is_ok();
        let key = VerifyingKey::from_raw(*public);
        let ours = key.verify(msg, sig);
        assert_eq!(
            ours,
            ring,
            "tfx and ring disagree: key {} message {} signature {}",
            hex::encode(public),
            hex::encode(msg),
            hex::encode(sig)
        );
        // The same check finished in a batch (`finish_checks`, one inversion for all), between
        // a valid signature and a refused one, whose answers must not leak into this one's.
        let other = SigningKey::from_seed(&[9; 32]);
        let batch = finish_checks(&[
            other
                .verifying_key()
                .begin_verify(&[b"before"], &other.sign(b"before")),
            // In two pieces, as COSE Sig_structures are hashed.
            key.begin_verify(&[&msg[..msg.len() / 2], &msg[msg.len() / 2..]], sig),
            other
                .verifying_key()
                .begin_verify(&[b"after"], &other.sign(b"other")),
        ]);
        assert_eq!(
            batch,
            [true, ring, false],
            "a batched check and ring disagree: key {} message {} signature {}",
            hex::encode(public),
            hex::encode(msg),
            hex::encode(sig)
        );
        if ours {
            self.accepted += 1;
        } else {
            self.refused += 1;
        }
        ours
    }
}

/// `a + b` over 256-bit little-endian integers (no overflow for the values used here).
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

fn message(i: usize) -> Vec<u8> {
    (0..(i * 7) % 300).map(|j| (i * 31 + j) as u8).collect()
}

fn signature(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
    [&r[..], &s[..]].concat()
}

/// Every encoding of a small-order point: each of the eight canonically, with the sign bit
/// flipped, and the non-canonical y + p forms of y = 0 and y = 1 (the only small-order y
/// values below 19), each with either sign bit.
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for t in EIGHT_TORSION {
        let enc = t.compress().to_bytes();
        out.push(enc);
        let mut flipped = enc;
        flipped[31] ^= 0x80;
        out.push(flipped);
    }
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for y in [0u8, 1] {
        let mut small = [0u8; 32];
        small[0] = y;
        let enc = add_le(&p, &small);
        out.push(enc);
        let mut flipped = enc;
        flipped[31] ^= 0x80;
        out.push(flipped);
    }
    out
}

#[test]
fn valid_signatures_and_every_bit_flip_get_the_same_answer() {
    let mut tally = Tally::default();
    for i in 0..200 {
        let key = SigningKey::from_seed(&[i as u8; 32]);
        let public = *key.verifying_key().raw();
        let msg = message(i);
        let sig = key.sign(&msg);
        assert!(
            tally.check(&public, &msg, &sig),
            "a valid signature was refused"
        );
        if i < 4 {
            for bit in 0..512 {
                let mut bad = sig;
                bad[bit / 8] ^= 1 << (bit % 8);
                tally.check(&public, &msg, &bad);
            }
            for bit in 0..256 {
                let mut other = public;
                other[bit / 8] ^= 1 << (bit % 8);
                tally.check(&other, &msg, &sig);
            }
            for len in [0, 1, 63, 65, 128] {
                tally.check(&public, &msg, &vec![0x5a; len]);
            }
        }
    }
    assert_eq!(tally.accepted, 200);
    assert!(tally.refused > 4 * 768, "{tally:?}");
}

#[test]
fn non_canonical_scalars_are_refused_by_both() {
    assert!(bool::from(Scalar::from_canonical_bytes(L).is_none()));
    let mut tally = Tally::default();
    for i in 0..50 {
        let key = SigningKey::from_seed(&[0x80 | i as u8; 32]);
        let public = *key.verifying_key().raw();
        let msg = message(i);
        let sig = key.sign(&msg);
        let (r, s): ([u8; 32], [u8; 32]) =
            (sig[..32].try_into().unwrap(), sig[32..].try_into().unwrap());
        // s + l is the same scalar mod l: an equation check alone would accept it.
        tally.check(&public, &msg, &signature(&r, &add_le(&s, &L)));
        let mut high = s;
        high[31] |= 0xe0;
        tally.check(&public, &msg, &signature(&r, &high));
        tally.check(&public, &msg, &signature(&r, &L));
    }
    assert_eq!(tally.accepted, 0, "{tally:?}");
}

#[test]
fn small_order_keys_and_nonces_get_the_same_answer() {
    let encodings = small_order_encodings();
    let mut nonces = encodings.clone();
    nonces.push(ED25519_BASEPOINT_POINT.compress().to_bytes());
    let mut s_one = [0u8; 32];
    s_one[0] = 1;
    let mut tally = Tally::default();
    for public in &encodings {
        let accepted_before = tally.accepted;
        for i in 0..16 {
            let msg = message(i);
            for r in &nonces {
                for s in [[0u8; 32], s_one] {
                    tally.check(public, &msg, &signature(r, &s));
                }
            }
        }
        // Every encoding here decodes (non-canonical ones too), and for s = 0 the check wants
        // R = -[k]A, a small-order point among the nonces: each key must see an acceptance, so
        // the non-canonical encodings are compared where it matters, with k hashed over the
        // key's bytes as given.
        assert!(
            tally.accepted > accepted_before,
            "nothing accepted under key {}",
            hex::encode(public)
        );
    }
    assert!(tally.refused > 0, "{tally:?}");
    // The largest canonical s: with the identity as key, (R = [l - 1]B, s = l - 1) verifies.
    let mut l_minus_one = L;
    l_minus_one[0] -= 1;
    let big_r = EdwardsPoint::mul_base(&Scalar::from_canonical_bytes(l_minus_one).unwrap())
        .compress()
        .to_bytes();
    let identity = EIGHT_TORSION[0].compress().to_bytes();
    assert!(tally.check(&identity, b"any", &signature(&big_r, &l_minus_one)));
}

/// A key `A + T` with T of small order, and signatures made honestly with A's secret over the
/// key `A + T`. A cofactorless check accepts exactly when `[k]T` is the identity (k the challenge
/// hash); a cofactored check would accept all of them.
#[test]
fn keys_with_a_small_order_component_tell_cofactorless_from_cofactored() {
    let mut tally = Tally::default();
    let mut expected_accepts = 0;
    for (t_index, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        for i in 0..64 {
            let h = Sha512::digest([t_index as u8, i as u8]);
            let mut a_bytes: [u8; 32] = h[..32].try_into().unwrap();
            a_bytes[0] &= 248;
            a_bytes[31] &= 127;
            a_bytes[31] |= 64;
            let a = Scalar::from_bytes_mod_order(a_bytes);
            let mixed: EdwardsPoint = EdwardsPoint::mul_base(&a) + torsion;
            let public = mixed.compress().to_bytes();
            let msg = message(i);
            let r = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(&h[32..])
                    .chain_update(&msg)
                    .finalize()
                    .into(),
            );
            let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
            let k = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(big_r)
                    .chain_update(public)
                    .chain_update(&msg)
                    .finalize()
                    .into(),
            );
            let s = r + k * a;
            let expected = (torsion * k).is_identity();
            expected_accepts += usize::from(expected);
            assert_eq!(
                tally.check(&public, &msg, &signature(&big_r, &s.to_bytes())),
                expected,
                "not the cofactorless answer for torsion point {t_index}, message {i}"
            );
        }
    }
    assert_eq!(tally.accepted, expected_accepts);
    assert!(
        tally.accepted > 0 && tally.refused > tally.accepted,
        "{tally:?}"
    );
}

#[test]
fn signatures_are_rings_byte_for_byte() {
    for i in 0..300 {
        let seed: [u8; 32] = Sha512::digest((i as u32).to_le_bytes())[..32]
            .try_into()
            .unwrap();
        let ring = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let ours = SigningKey::from_seed(&seed);
        assert_eq!(ours.verifying_key().raw()[..], *ring.public_key().as_ref());
        let msg = message(i);
        assert_eq!(ours.sign(&msg)[..], *ring.sign(&msg).as_ref(), "seed {i}");
    }
}

#[test]
fn key_files_load_to_the_key_ring_loads() {
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..20 {
        // ring writes PKCS#8 v2 (seed and public key).
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ring = Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
        let ours = SigningKey::from_pkcs8(v2.as_ref()).unwrap();
        assert_eq!(ours.verifying_key().raw()[..], *ring.public_key().as_ref());
        assert_eq!(ours.sign(b"m")[..], *ring.sign(b"m").as_ref());
        // The same seed as PKCS#8 v1 (RFC 8410 section 7's example layout, no public key).
        let seed = &v2.as_ref()[16..48];
        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(seed);
        assert_eq!(
            SigningKey::from_pkcs8(&v1).unwrap().verifying_key(),
            ours.verifying_key()
        );
        // A v2 file whose public key is not the seed's is refused (by ring's check).
        let mut wrong = v2.as_ref().to_vec();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        assert!(SigningKey::from_pkcs8(&wrong).is_err());
        assert!(SigningKey::from_pkcs8(&v1[..v1.len() - 1]).is_err());
        // Attributes (`[0]`, which ring skips) long enough for a long-form outer length.
        for attributes in [60usize, 300] {
            let mut inner = v1[2..].to_vec();
            inner.push(0xa0);
            inner.extend_from_slice(&der_len(attributes));
            inner.extend(std::iter::repeat_n(0x31, attributes));
            let mut doc = vec![0x30];
            doc.extend_from_slice(&der_len(inner.len()));
            doc.extend_from_slice(&inner);
            let ring = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&doc).unwrap();
            let key = SigningKey::from_pkcs8(&doc).unwrap();
            assert_eq!(key.verifying_key().raw()[..], *ring.public_key().as_ref());
        }
    }
}

/// A DER length.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}
