//! Disclosures in the SD-CWT encoding: each is the CBOR array `[salt, value, field name]` with a
//! 16-byte random salt, carried as a byte string; its digest is SHA-256 of those bytes. The record
//! header lists the digests, so holding a disclosure proves the value without revealing the
//! others — and without the salt, a withheld low-entropy value (a classification, a band) cannot
//! be guessed from its digest.

use crate::codec::{self, DecodeError};
use crate::ids::{sha256, Hash};
use crate::limits::DISCLOSURE_BYTES_MAX;
use crate::schema::FieldValue;

pub const SALT_BYTES: usize = 16;

/// One disclosed field, with the exact bytes its digest covers.
#[derive(Clone, PartialEq, Eq)]
pub struct Disclosure {
    bytes: Vec<u8>,
    digest: Hash,
    salt: [u8; SALT_BYTES],
    name: String,
    value: FieldValue,
}

/// Field values identify enterprises: `Debug` shows the field name and digest only.
impl std::fmt::Debug for Disclosure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Disclosure({}, digest {})",
            self.name,
            &hex::encode(self.digest)[..16]
        )
    }
}

impl Disclosure {
    pub fn new(salt: [u8; SALT_BYTES], name: &str, value: &FieldValue) -> Self {
        let mut e = codec::Encoder::with_capacity(64 + name.len());
        e.array(3).bytes(&salt);
        value.encode_into(&mut e);
        e.text(name);
        let bytes = e.finish();
        Disclosure {
            digest: sha256(&bytes),
            bytes,
            salt,
            name: name.to_owned(),
            value: value.clone(),
        }
    }

    /// Decodes a disclosure's structure. Whether the field and value fit the record's kind is
    /// checked by [`crate::record::verify_disclosures`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "disclosure";
        let v = codec::decode(WHAT, bytes, DISCLOSURE_BYTES_MAX)?;
        let items = codec::as_array(WHAT, &v)?;
        let [salt, value, name] = items else {
            return Err(DecodeError::structure(
                WHAT,
                format!("has {} elements (expected 3)", items.len()),
            ));
        };
        let salt_bytes = codec::as_bytes(WHAT, salt)?;
        let salt: [u8; SALT_BYTES] = salt_bytes.try_into().map_err(|_| {
            DecodeError::structure(
                WHAT,
                format!("salt has {} bytes (expected 16)", salt_bytes.len()),
            )
        })?;
        let value = FieldValue::from_cbor(value).ok_or_else(|| {
            DecodeError::structure(
                WHAT,
                "value is not text, an unsigned integer, a bool or a text list",
            )
        })?;
        Ok(Disclosure {
            digest: sha256(bytes),
            bytes: bytes.to_vec(),
            salt,
            name: codec::as_text(WHAT, name)?.to_owned(),
            value,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    pub fn digest(&self) -> &Hash {
        &self.digest
    }
    pub fn salt(&self) -> &[u8; SALT_BYTES] {
        &self.salt
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn value(&self) -> &FieldValue {
        &self.value
    }
}
