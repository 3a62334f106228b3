//! Record-signing keys (Ed25519). A member's signing key signs its records and log checkpoints;
//! verifiers identify it by [`KeyId`], the first 16 bytes of SHA-256 over the raw 32-byte public
//! key, carried as the COSE `kid`.
//!
//! ring signs. ed25519-dalek verifies, because verification is most of a catch-up's CPU and
//! dalek's is about 1.5x ring's speed on these machines; a [`VerifyingKey`] also decodes its
//! curve point once, not once per signature. Both libraries run the same cofactorless check
//! (`[s]B - [k]A` re-encoded must equal `R` byte for byte, `s < l`), so they accept the same
//! signatures: the `ed25519_agreement` test checks that against ring, edge cases included.
//!
//! Key generation needs randomness and so lives in `tfx-node`; this module only loads keys.

use std::fmt;

use ed25519_dalek::Verifier;
use ring::signature::{Ed25519KeyPair, KeyPair};

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

/// An Ed25519 private key. `Debug` never prints key material. ring holds the expanded key; the
/// PKCS#8 bytes it was loaded from are the caller's to zeroize (tfx-node's key loader does).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl SigningKey {
    /// Loads a PKCS#8 v1 or v2 Ed25519 private key (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// Builds a key from a 32-byte seed. For test vectors and simulations only.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        match Ed25519KeyPair::from_seed_unchecked(seed) {
            Ok(pair) => Self::from_pair(pair),
            // Architecture invariant: any 32-byte string is a valid Ed25519 seed.
            Err(e) => unreachable!("ring refused a 32-byte Ed25519 seed: {e}"),
        }
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        SigningKey {
            pair,
            public: VerifyingKey::from_raw(raw),
        }
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
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
        VerifyingKey {
            raw,
            id: KeyId::of_public_key(&raw),
            point: ed25519_dalek::VerifyingKey::from_bytes(&raw).ok(),
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
