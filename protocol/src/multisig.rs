//! Governed documents' signatures: a COSE_Sign (RFC 9052 §4.1, CBOR tag 98) whose body carries
//! a content type and a payload, with one EdDSA COSE_Signature per governor. The roster and the
//! policy are both signed this way, so M-of-N counting, the `Sig_structure` and the strict
//! decoding exist once.
//!
//! Signatures can be added without changing the payload (governors sign one after another), and
//! each is checked over the payload bytes exactly as received — never re-encoded.

use std::collections::BTreeSet;

use crate::codec::{self, DecodeError, Encoder, Value};
use crate::keys::{KeyId, SigningKey};
use crate::limits::ROSTER_GOVERNORS_MAX;
use crate::roster::Governor;

pub const COSE_SIGN_TAG: u64 = 98;

/// A payload of content type `content_type` and the governors' signatures collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiSigned {
    content_type: &'static str,
    /// The payload bytes exactly as signed.
    pub payload: Vec<u8>,
    /// `(signer protected header bytes, kid, signature)`.
    signatures: Vec<(Vec<u8>, KeyId, Vec<u8>)>,
}

fn body_protected(content_type: &str) -> Vec<u8> {
    let mut e = Encoder::with_capacity(40);
    e.map(1).uint(3).text(content_type);
    e.finish()
}

fn signer_protected(kid: &KeyId) -> Vec<u8> {
    let mut e = Encoder::with_capacity(32);
    e.map(2)
        .uint(1)
        .int(crate::cose::ALG_EDDSA)
        .uint(4)
        .bytes(&kid.0);
    e.finish()
}

/// RFC 9052 §4.4 Sig_structure for COSE_Sign: `["Signature", body_protected, sign_protected,
/// external_aad, payload]`.
fn to_be_signed(body: &[u8], signer: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(body.len() + signer.len() + payload.len() + 32);
    e.array(5)
        .text("Signature")
        .bytes(body)
        .bytes(signer)
        .bytes(&[])
        .bytes(payload);
    e.finish()
}

impl MultiSigned {
    /// A payload with no signatures yet.
    pub fn new(content_type: &'static str, payload: Vec<u8>) -> Self {
        MultiSigned {
            content_type,
            payload,
            signatures: Vec::new(),
        }
    }

    /// Adds (or replaces) the signature of `key`'s holder.
    pub fn sign(&mut self, key: &SigningKey) {
        let kid = key.key_id();
        let signer = signer_protected(&kid);
        let body = body_protected(self.content_type);
        let sig = key
            .sign(&to_be_signed(&body, &signer, &self.payload))
            .to_vec();
        self.signatures.retain(|(_, k, _)| *k != kid);
        self.signatures.push((signer, kid, sig));
    }

    pub fn signer_ids(&self) -> Vec<KeyId> {
        self.signatures.iter().map(|(_, k, _)| *k).collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = body_protected(self.content_type);
        let mut e = Encoder::with_capacity(self.payload.len() + 128 * self.signatures.len() + 64);
        e.tag(COSE_SIGN_TAG)
            .array(4)
            .bytes(&body)
            .map(0)
            .bytes(&self.payload);
        e.array(self.signatures.len());
        for (signer, _, sig) in &self.signatures {
            e.array(3).bytes(signer).map(0).bytes(sig);
        }
        e.finish()
    }

    /// Decodes the COSE_Sign structure (`what` names it in errors), requiring `content_type`.
    /// Signatures are decoded, not checked: see [`MultiSigned::count_signatures`].
    pub fn decode(
        what: &'static str,
        content_type: &'static str,
        bytes: &[u8],
        bytes_max: usize,
        items_max: usize,
    ) -> Result<Self, DecodeError> {
        let w = what;
        let v = codec::decode_with_items(w, bytes, bytes_max, items_max)?;
        let Value::Tag(COSE_SIGN_TAG, inner) = v else {
            return Err(DecodeError::structure(w, "not a COSE_Sign (CBOR tag 98)"));
        };
        let [body, unprotected, payload, sigs] = codec::as_array(w, &inner)? else {
            return Err(DecodeError::structure(w, "COSE_Sign must have 4 elements"));
        };
        if codec::as_bytes(w, body)? != body_protected(content_type).as_slice() {
            return Err(DecodeError::structure(
                w,
                format!("protected header must be {{3: {content_type:?}}}"),
            ));
        }
        if !codec::as_map(w, unprotected)?.is_empty() {
            return Err(DecodeError::structure(
                w,
                "unprotected header must be empty",
            ));
        }
        let payload = codec::as_bytes(w, payload)?.to_vec();
        let sigs = codec::as_array(w, sigs)?;
        if sigs.len() > ROSTER_GOVERNORS_MAX {
            return Err(DecodeError::structure(
                w,
                format!(
                    "{} signatures (max {ROSTER_GOVERNORS_MAX}, one per governor)",
                    sigs.len()
                ),
            ));
        }
        let mut signatures = Vec::with_capacity(sigs.len());
        for s in sigs {
            signatures.push(decode_signature(w, s)?);
        }
        Ok(MultiSigned {
            content_type,
            payload,
            signatures,
        })
    }

    /// Counts distinct `governors` with a valid signature; also returns how many signatures
    /// are invalid or by keys that are not governors'.
    pub fn count_signatures(&self, governors: &[Governor]) -> (usize, usize) {
        let body = body_protected(self.content_type);
        let mut valid = BTreeSet::new();
        let mut bad = 0;
        for (signer, kid, sig) in &self.signatures {
            let ok = governors
                .iter()
                .find(|g| g.key.id() == *kid)
                .is_some_and(|g| {
                    g.key
                        .verify(&to_be_signed(&body, signer, &self.payload), sig)
                });
            if ok {
                valid.insert(*kid);
            } else {
                bad += 1;
            }
        }
        (valid.len(), bad)
    }
}

fn decode_signature(w: &'static str, s: &Value) -> Result<(Vec<u8>, KeyId, Vec<u8>), DecodeError> {
    let [signer, unprotected, sig] = codec::as_array(w, s)? else {
        return Err(DecodeError::structure(
            w,
            "COSE_Signature must have 3 elements",
        ));
    };
    if !codec::as_map(w, unprotected)?.is_empty() {
        return Err(DecodeError::structure(
            w,
            "signature unprotected header must be empty",
        ));
    }
    let signer = codec::as_bytes(w, signer)?.to_vec();
    let hdr = codec::decode(w, &signer, 64)?;
    let hdr = codec::as_map(w, &hdr)?;
    codec::only_keys(w, hdr, &[1, 4])?;
    if codec::field(w, hdr, 1)? != &codec::key(crate::cose::ALG_EDDSA)
        && codec::field(w, hdr, 1)? != &codec::key(crate::cose::ALG_ED25519)
    {
        return Err(DecodeError::structure(
            w,
            "signature algorithm must be EdDSA",
        ));
    }
    let kid_bytes = codec::as_bytes(w, codec::field(w, hdr, 4)?)?;
    let kid = KeyId(
        kid_bytes
            .try_into()
            .map_err(|_| DecodeError::structure(w, "kid must be 16 bytes"))?,
    );
    Ok((signer, kid, codec::as_bytes(w, sig)?.to_vec()))
}
