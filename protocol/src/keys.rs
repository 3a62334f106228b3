//! Record-signing keys (Ed25519). A member's signing key signs its records and log checkpoints;
//! verifiers identify it by [`KeyId`], the first 16 bytes of SHA-256 over the raw 32-byte public
//! key, carried as the COSE `kid`.
//!
//! ed25519-dalek signs and verifies; ring parses PKCS#8 key files and generates keys (in
//! tfx-node). dalek, because verification is most of a catch-up's CPU and signing a third of an
//! append's, and dalek verifies about 2.5x (1.3x without AVX-512 IFMA, which
//! `.cargo/config.toml` compiles in and the CPU is asked for at run time) and signs about 1.2x
//! as fast as ring on these machines. A [`VerifyingKey`] also decodes its curve point once, not
//! once per signature. Both libraries run the same cofactorless check (`[s]B - [k]A` re-encoded
//! must equal `R` byte for byte, `s < l`), so they accept the same signatures: the
//! `ed25519_agreement` test checks that against ring, edge cases included, on each backend, and
//! that both sign the same bytes.
//!
//! Key generation needs randomness and so lives in `tfx-node`; this module only loads keys.

use std::fmt;

use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::{Signer, Verifier};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha512};

/// Identifies a record-signing public key: SHA-256(raw public key)[..16].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    pub fn of_public_key(raw: &[u8; 32]) -> Self {
        let mut out = [0u8; 16];
        out.copy_from_slice(&crate::ids::sha256(raw)[..16]);
        KeyId(out)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex::encode(self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    Pkcs8(String),
    #[error("not an Ed25519 public key: expected 32 bytes, got {0}")]
    PublicLength(usize),
    #[error("not an Ed25519 public key: SubjectPublicKeyInfo is not id-Ed25519")]
    NotEd25519Spki,
}

/// An Ed25519 private key. `Debug` never prints key material, and the seed is zeroized on drop
/// (best effort: signing's stack temporaries and ring's copy made while loading are not). The
/// PKCS#8 bytes it was loaded from are the caller's to zeroize (tfx-node's key loader does).
///
/// ed25519-dalek signs: RFC 8032 signatures are deterministic, so its bytes are ring's bytes (the
/// SPEC vectors and the `ed25519_agreement` test pin them), and it signs about 1.2x faster here.
pub struct SigningKey {
    secret: ed25519_dalek::SigningKey,
    public: VerifyingKey,
}

/// What precedes the 32-byte seed in an RFC 8410 Ed25519 private key, after the outer SEQUENCE's
/// header and the version (0 for PKCS#8 v1, 1 for v2): the algorithm identifier, then the
/// privateKey OCTET STRING wrapping a 32-byte OCTET STRING.
const PKCS8_BEFORE_SEED: [u8; 11] = [
    0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl SigningKey {
    /// Loads a PKCS#8 v1 or v2 Ed25519 private key (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        // ring parses and checks the document (including a v2 public key against the seed); the
        // seed is then read from its fixed place, and the key derived from it must be ring's.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        // The outer SEQUENCE's length is short-form unless attributes make the document 128
        // bytes or longer; DER (which ring enforces) allows no other header.
        let body = match der {
            [0x30, 0x81, _, rest @ ..] | [0x30, 0x82, _, _, rest @ ..] => rest,
            [0x30, len, rest @ ..] if *len < 0x80 => rest,
            _ => &[],
        };
        let seed = match body {
            [0x02, 0x01, 0 | 1, rest @ ..] => rest
                .strip_prefix(&PKCS8_BEFORE_SEED[..])
                .and_then(|r| r.get(..32))
                .and_then(|s| <&[u8; 32]>::try_from(s).ok()),
            _ => None,
        };
        // Defensive: every document ring accepts has this layout (and the test loads v1, v2
        // and attribute-carrying files), but a wrong guess must refuse, never sign as another key.
        match seed.map(Self::from_seed) {
            Some(key) if key.public.raw[..] == *pair.public_key().as_ref() => Ok(key),
            _ => Err(KeyError::Pkcs8(
                "the private key is not laid out as RFC 8410 section 7 gives it".into(),
            )),
        }
    }

    /// Builds a key from a 32-byte seed (every 32-byte string is one).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = ed25519_dalek::SigningKey::from_bytes(seed);
        let point = secret.verifying_key();
        let public = VerifyingKey::with_point(point.to_bytes(), Some(point));
        SigningKey { secret, public }
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.secret.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.public.id)
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (32 bytes) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 public key.
#[derive(Clone, Copy)]
pub struct VerifyingKey {
    raw: [u8; 32],
    id: KeyId,
    /// The decoded point, kept so verifying does not decode it again for every signature.
    /// `None` when `raw` is not a point on the curve: then no signature verifies, as with ring.
    point: Option<ed25519_dalek::VerifyingKey>,
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for VerifyingKey {}

impl VerifyingKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self::with_point(raw, ed25519_dalek::VerifyingKey::from_bytes(&raw).ok())
    }

    /// `raw` with its decoded point (a signing key has it already; decoding costs a square root).
    fn with_point(raw: [u8; 32], point: Option<ed25519_dalek::VerifyingKey>) -> Self {
        VerifyingKey {
            raw,
            id: KeyId::of_public_key(&raw),
            point,
        }
    }

    pub fn from_slice(raw: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::PublicLength(raw.len()))?;
        Ok(Self::from_raw(raw))
    }

    /// Parses a DER SubjectPublicKeyInfo holding an Ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) => Self::from_slice(raw),
            None => Err(KeyError::NotEd25519Spki),
        }
    }

    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut v = ED25519_SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.raw);
        v
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Verifies an Ed25519 signature (RFC 8032, cofactorless, `s` canonical). `true` only for a
    /// valid signature by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (Some(point), Ok(sig)) = (&self.point, ed25519_dalek::Signature::from_slice(sig))
        else {
            return false;
        };
        point.verify(msg, &sig).is_ok()
    }

    /// [`VerifyingKey::verify`] up to its last step, for [`finish_checks`] to complete together
    /// with others. The same check, computed the way dalek's `verify` computes it: `s` must be
    /// canonical, `k = SHA-512(R ‖ A ‖ msg) mod l`, and `[s]B - [k]A` is what must encode to `R`.
    /// The message is given in pieces (`msg` concatenated), so a COSE Sig_structure can be
    /// checked without being copied out ([`crate::cose::ToBeSigned`]).
    pub fn begin_verify(&self, msg: &[&[u8]], sig: &[u8]) -> PendingCheck {
        let refused = PendingCheck {
            expected: None,
            r: [0; 32],
        };
        let (Some(point), Ok(sig)) = (&self.point, <&[u8; 64]>::try_from(sig)) else {
            return refused;
        };
        let (r, s) = sig.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return refused;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return refused;
        };
        // The SHA-512 dalek's `verify` uses (sha2's).
        let mut hash = Sha512::new().chain_update(r).chain_update(self.raw);
        for piece in msg {
            hash.update(piece);
        }
        let wide: [u8; 64] = hash.finalize().into();
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        let minus_a = -point.to_edwards();
        PendingCheck {
            expected: Some(EdwardsPoint::vartime_double_scalar_mul_basepoint(
                &k, &minus_a, &s,
            )),
            r,
        }
    }
}

/// An Ed25519 check ([`VerifyingKey::begin_verify`]) computed up to its last step: the point
/// `[s]B - [k]A`, still to be encoded and compared with the signature's `R` byte for byte.
/// Encoding a point costs a field inversion, a fifth of a whole check where dalek's AVX-512
/// backend runs; [`finish_checks`] encodes a batch's points with one inversion between them
/// (Montgomery's trick). Every signature is still checked by its own equation, exactly as
/// `verify` checks it. This is not batch verification, whose combined, cofactored equation
/// accepts signatures the single check refuses (ARCHITECTURE.md).
#[derive(Debug, Clone)]
pub struct PendingCheck {
    /// `None`: refused before any curve arithmetic (no such point, a signature that is not 64
    /// bytes, `s` not canonical).
    expected: Option<EdwardsPoint>,
    r: [u8; 32],
}

/// Completes `checks`: for each, whether its signature is valid, in order.
pub fn finish_checks(checks: &[PendingCheck]) -> Vec<bool> {
    let points: Vec<EdwardsPoint> = checks.iter().filter_map(|c| c.expected).collect();
    let mut encoded = EdwardsPoint::compress_batch_alloc(&points).into_iter();
    checks
        .iter()
        .map(|c| {
            c.expected
                .is_some()
                .then(|| encoded.next())
                .flatten()
                .is_some_and(|e| e.as_bytes() == &c.r)
        })
        .collect()
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trip_and_debug_redacts() {
        let k = SigningKey::from_seed(&[7; 32]);
        let der = k.verifying_key().to_spki_der();
        assert_eq!(VerifyingKey::from_spki_der(&der), Ok(*k.verifying_key()));
        assert!(VerifyingKey::from_spki_der(&der[1..]).is_err());
        let dbg = format!("{k:?}");
        assert!(dbg.contains("redacted") && !dbg.contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn sign_verify() {
        let k = SigningKey::from_seed(&[1; 32]);
        let sig = k.sign(b"msg");
        assert!(k.verifying_key().verify(b"msg", &sig));
        assert!(!k.verifying_key().verify(b"msh", &sig));
    }
}
