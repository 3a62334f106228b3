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

/// A structurally valid COSE_Sign1 whose signature has not been checked yet, borrowing the
/// bytes it was opened from: every record a member receives or serves is opened, and copying
/// its payload to check it only to drop the copy was a quarter of the allocations a received
/// record cost.
#[derive(Debug)]
pub struct Sign1<'a> {
    pub protected: &'a [u8],
    pub payload: &'a [u8],
    pub signature: &'a [u8],
    pub alg: i64,
    pub kid: KeyId,
}

impl<'a> Sign1<'a> {
    /// The bytes the signature covers.
    pub fn to_be_signed(&self) -> Vec<u8> {
        ToBeSigned::new(self.protected, self.payload).to_vec()
    }

    /// The bytes the signature covers, in pieces and without a copy of the payload.
    pub fn to_be_signed_parts(&self) -> ToBeSigned<'a> {
        ToBeSigned::new(self.protected, self.payload)
    }
}

/// How every Sig_structure starts: an array of four, then the text "Signature1".
const SIG_STRUCTURE_START: &[u8] = b"\x84\x6aSignature1";

/// `Sig_structure = ["Signature1", protected, h'', payload]` as the four pieces it is made of,
/// in order: the CBOR up to the protected header's bytes, those bytes, the CBOR between them and
/// the payload, and the payload. Hashing the pieces one after another hashes the encoded
/// structure; only the two short CBOR runs between them are written out.
#[derive(Debug)]
pub struct ToBeSigned<'a> {
    /// Array head, "Signature1", and the protected header's byte-string head: at most
    /// 1 + 11 + 9 bytes.
    before_protected: ([u8; 21], usize),
    protected: &'a [u8],
    /// The empty external_aad and the payload's byte-string head: at most 1 + 9 bytes.
    before_payload: ([u8; 10], usize),
    payload: &'a [u8],
}

impl<'a> ToBeSigned<'a> {
    fn new(protected: &'a [u8], payload: &'a [u8]) -> Self {
        let mut before_protected = [0u8; 21];
        before_protected[..SIG_STRUCTURE_START.len()].copy_from_slice(SIG_STRUCTURE_START);
        let n = SIG_STRUCTURE_START.len();
        let (head, len) = codec::head_bytes(2, protected.len() as u64);
        before_protected[n..n + len].copy_from_slice(&head[..len]);
        let mut before_payload = [0u8; 10];
        // h'' (external_aad, unused).
        before_payload[0] = 0x40;
        let (head, payload_head_len) = codec::head_bytes(2, payload.len() as u64);
        before_payload[1..1 + payload_head_len].copy_from_slice(&head[..payload_head_len]);
        ToBeSigned {
            before_protected: (before_protected, n + len),
            protected,
            before_payload: (before_payload, 1 + payload_head_len),
            payload,
        }
    }

    /// The pieces, in order.
    pub fn parts(&self) -> [&[u8]; 4] {
        [
            &self.before_protected.0[..self.before_protected.1],
            self.protected,
            &self.before_payload.0[..self.before_payload.1],
            self.payload,
        ]
    }

    /// The pieces joined: the encoded Sig_structure.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// Signs `payload` and returns the tagged COSE_Sign1 bytes.
pub fn sign(key: &SigningKey, content_type: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut hdr = codec::Encoder::with_capacity(64);
    hdr.map(3).uint(HDR_ALG as u64).int(ALG_EDDSA);
    hdr.uint(HDR_CONTENT_TYPE as u64).text(content_type);
    hdr.uint(HDR_KID as u64).bytes(&key.key_id().0);
    let protected = hdr.finish();
    let signature = key.sign(&ToBeSigned::new(&protected, &payload).to_vec());
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
pub fn open<'a>(
    what: &'static str,
    bytes: &'a [u8],
    bytes_max: usize,
    content_type: &str,
) -> Result<Sign1<'a>, DecodeError> {
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
    let protected = codec::item_bytes(what, protected)?;
    codec::scan_within(what, protected, bytes_max)?;
    let [alg, ct, kid] = codec::int_map(what, protected, [HDR_ALG, HDR_CONTENT_TYPE, HDR_KID])?;
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
    let signature = codec::item_bytes(what, signature)?;
    if signature.len() != 64 {
        return Err(DecodeError::structure(
            what,
            format!("signature has {} bytes (expected 64)", signature.len()),
        ));
    }
    Ok(Sign1 {
        protected,
        payload: codec::item_bytes(what, payload)?,
        signature,
        alg,
        kid,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::keys::finish_checks;

    /// The Sig_structure encoded whole by the general encoder, as it was built before it was
    /// hashed in pieces.
    fn encoded(protected: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut e = codec::Encoder::with_capacity(protected.len() + payload.len() + 24);
        e.array(4)
            .text("Signature1")
            .bytes(protected)
            .bytes(&[])
            .bytes(payload);
        e.finish()
    }

    #[test]
    fn the_pieces_are_the_encoded_sig_structure_at_every_head_size() {
        // Each length where a CBOR byte-string head changes size, and either side of it.
        let lengths = [0, 1, 23, 24, 255, 256, 65_535, 65_536];
        for p in lengths {
            for q in lengths {
                let (protected, payload) = (vec![0xa1; p], vec![0x5c; q]);
                let tbs = ToBeSigned::new(&protected, &payload);
                assert_eq!(tbs.to_vec(), encoded(&protected, &payload), "{p} {q}");
                assert_eq!(tbs.parts()[1], &protected[..]);
                assert_eq!(tbs.parts()[3], &payload[..]);
            }
        }
    }

    #[test]
    fn an_opened_message_checks_from_its_pieces_and_not_once_changed() {
        let key = SigningKey::from_seed(&[4; 32]);
        for len in [0, 100, 70_000] {
            let signed = sign(&key, CONTENT_TYPE_RECORD, vec![7; len]);
            let sign1 = open("test", &signed, 1 << 20, CONTENT_TYPE_RECORD).unwrap();
            assert_eq!(sign1.payload.len(), len);
            let vk = key.verifying_key();
            assert!(vk.verify(&sign1.to_be_signed(), sign1.signature));
            let parts = sign1.to_be_signed_parts();
            let good = vk.begin_verify(&parts.parts(), sign1.signature);
            // The same pieces with the payload one byte short: a different message.
            let mut short = parts.parts();
            short[3] = &short[3][..len.saturating_sub(1)];
            let changed = vk.begin_verify(&short, sign1.signature);
            assert_eq!(finish_checks(&[good, changed]), vec![true, len == 0]);
        }
    }
}
