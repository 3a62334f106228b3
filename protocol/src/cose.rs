//! COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18) as tfx uses it for records and checkpoints:
//! protected header `{1: alg, 3: content type, 4: kid}`, an empty unprotected header, an attached
//! payload, and an Ed25519 signature over `Sig_structure = ["Signature1", protected, h'', payload]`.
//!
//! The content type separates what was signed: a record header signature can never pass as a
//! checkpoint signature, or the reverse. Verification rebuilds `Sig_structure` from the bytes
//! received — it never re-encodes the payload.

use crate::codec::{self, DecodeError};
use crate::keys::{KeyId, SigningKey};

pub const COSE_SIGN1_TAG: u64 = 18;
/// EdDSA (RFC 9053). What tfx signs with.
pub const ALG_EDDSA: i64 = -8;
/// Ed25519, fully specified (RFC 9864). Accepted when verifying.
pub const ALG_ED25519: i64 = -19;
pub const CONTENT_TYPE_RECORD: &str = "application/tfx-record+cbor";
pub const CONTENT_TYPE_CHECKPOINT: &str = "application/tfx-checkpoint+cbor";

pub(crate) const HDR_ALG: i64 = 1;
pub(crate) const HDR_CONTENT_TYPE: i64 = 3;
pub(crate) const HDR_KID: i64 = 4;

/// A structurally valid COSE_Sign1 whose signature has not been checked yet.
#[derive(Debug)]
pub struct Sign1 {
    pub protected: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub alg: i64,
    pub kid: KeyId,
}

impl Sign1 {
    /// The bytes the signature covers.
    pub fn to_be_signed(&self) -> Vec<u8> {
        sig_structure(&self.protected, &self.payload)
    }
}

fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = codec::Encoder::with_capacity(protected.len() + payload.len() + 24);
    e.array(4)
        .text("Signature1")
        .bytes(protected)
        .bytes(&[])
        .bytes(payload);
    e.finish()
}

/// Signs `payload` and returns the tagged COSE_Sign1 bytes.
pub fn sign(key: &SigningKey, content_type: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut hdr = codec::Encoder::with_capacity(64);
    hdr.map(3).uint(HDR_ALG as u64).int(ALG_EDDSA);
    hdr.uint(HDR_CONTENT_TYPE as u64).text(content_type);
    hdr.uint(HDR_KID as u64).bytes(&key.key_id().0);
    let protected = hdr.finish();
    let signature = key.sign(&sig_structure(&protected, &payload));
    let mut e = codec::Encoder::with_capacity(protected.len() + payload.len() + 96);
    e.tag(COSE_SIGN1_TAG)
        .array(4)
        .bytes(&protected)
        .map(0)
        .bytes(&payload)
        .bytes(&signature);
    e.finish()
}

/// Decodes a COSE_Sign1 and checks its structure, algorithm and content type (not the signature).
///
/// Read head by head after the profile scan ([`codec::Reader`]), not through a
/// [`codec::Value`] tree, which copied every payload once more: each record a member receives
/// or serves is opened.
pub fn open(
    what: &'static str,
    bytes: &[u8],
    bytes_max: usize,
    content_type: &str,
) -> Result<Sign1, DecodeError> {
    codec::scan_within(what, bytes, bytes_max)?;
    let mut r = codec::Reader::new(bytes);
    let Some(codec::Head::Tag(COSE_SIGN1_TAG)) = r.head() else {
        return Err(DecodeError::structure(
            what,
            "not a COSE_Sign1 (CBOR tag 18)",
        ));
    };
    let inner = r.item().ok_or_else(|| codec::unreadable(what))?;
    let parts = codec::item_array(what, inner)?;
    let [protected, unprotected, payload, signature] = parts[..] else {
        return Err(DecodeError::structure(
            what,
            format!("COSE_Sign1 has {} elements (expected 4)", parts.len()),
        ));
    };
    if codec::item_map_len(what, unprotected)? != 0 {
        return Err(DecodeError::structure(
            what,
            "unprotected header must be empty",
        ));
    }
    let protected = codec::item_bytes(what, protected)?.to_vec();
    codec::scan_within(what, &protected, bytes_max)?;
    let [alg, ct, kid] = codec::int_map(what, &protected, [HDR_ALG, HDR_CONTENT_TYPE, HDR_KID])?;
    let alg = codec::required(what, alg, HDR_ALG)?;
    let alg = match codec::item_int(alg) {
        Some(a) if a == i128::from(ALG_EDDSA) || a == i128::from(ALG_ED25519) => a as i64,
        _ => {
            let other = codec::value_of_scanned(what, alg)?;
            return Err(DecodeError::structure(
                what,
                format!("unsupported algorithm {other:?} (expected EdDSA: -8 or -19)"),
            ));
        }
    };
    let ct = codec::item_text(what, codec::required(what, ct, HDR_CONTENT_TYPE)?)?;
    if ct != content_type {
        return Err(DecodeError::structure(
            what,
            format!("content type {ct:?} (expected {content_type:?})"),
        ));
    }
    let kid_bytes = codec::item_bytes(what, codec::required(what, kid, HDR_KID)?)?;
    let kid = KeyId(kid_bytes.try_into().map_err(|_| {
        DecodeError::structure(
            what,
            format!("kid has {} bytes (expected 16)", kid_bytes.len()),
        )
    })?);
    let signature = codec::item_bytes(what, signature)?.to_vec();
    if signature.len() != 64 {
        return Err(DecodeError::structure(
            what,
            format!("signature has {} bytes (expected 64)", signature.len()),
        ));
    }
    Ok(Sign1 {
        protected,
        payload: codec::item_bytes(what, payload)?.to_vec(),
        signature,
        alg,
        kid,
    })
}
