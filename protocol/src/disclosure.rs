//! Disclosures in the SD-CWT encoding: each is the CBOR array `[salt, value, field name]` with a
//! 16-byte random salt, carried as a byte string; its digest is SHA-256 of those bytes. The record
//! header lists the digests, so holding a disclosure proves the value without revealing the
//! others — and without the salt, a withheld low-entropy value (a classification, a band) cannot
//! be guessed from its digest.

use crate::codec::{self, DecodeError, Head};
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

    /// The field name of an encoded disclosure, read without decoding its value: the cheap path
    /// for filtering held disclosures by view. Malformed input gives `None` (the caller then
    /// treats the disclosure as not admitted); it never panics.
    pub fn field_name(bytes: &[u8]) -> Option<&str> {
        // [bstr(16) salt, value, tstr name]: 0x83, 0x50, 16 salt bytes, then the value.
        let rest = bytes.strip_prefix(&[0x83, 0x50])?.get(SALT_BYTES..)?;
        let rest = skip_value(rest)?;
        let (len, rest) = text_head(rest)?;
        if rest.len() != len {
            return None;
        }
        std::str::from_utf8(rest).ok()
    }

    /// Decodes a disclosure's structure. Whether the field and value fit the record's kind is
    /// checked by [`crate::record::verify_disclosures`].
    ///
    /// Read head by head ([`codec::Reader`]) after the profile [`codec::scan`], not through a
    /// [`codec::Value`] tree: a catch-up decodes every disclosure of every record it receives,
    /// and the tree's allocations were most of that cost. The property tests check it against
    /// the encoder and arbitrary bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (salt, name, value) = Self::parts(bytes)?;
        Ok(Disclosure {
            digest: sha256(bytes),
            bytes: bytes.to_vec(),
            salt,
            name,
            value,
        })
    }

    /// [`Disclosure::decode`] keeping `bytes` rather than a copy of them; on failure the
    /// bytes come back with the error.
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Self, (DecodeError, Vec<u8>)> {
        match Self::parts(&bytes) {
            Ok((salt, name, value)) => Ok(Disclosure {
                digest: sha256(&bytes),
                bytes,
                salt,
                name,
                value,
            }),
            Err(e) => Err((e, bytes)),
        }
    }

    /// Salt, field name and value of an encoded disclosure.
    fn parts(bytes: &[u8]) -> Result<([u8; SALT_BYTES], String, FieldValue), DecodeError> {
        const WHAT: &str = "disclosure";
        codec::scan_within(WHAT, bytes, DISCLOSURE_BYTES_MAX)?;
        let bad = |detail: &'static str| DecodeError::structure(WHAT, detail);
        let not_value = || bad("value is not text, an unsigned integer, a bool or a text list");
        let mut r = codec::Reader::new(bytes);
        match r.head() {
            Some(Head::Array(3)) => {}
            Some(Head::Array(n)) => {
                return Err(DecodeError::structure(
                    WHAT,
                    format!("has {n} elements (expected 3)"),
                ))
            }
            _ => return Err(bad("expected an array")),
        }
        let Some(Head::Bytes(salt_bytes)) = r.head() else {
            return Err(bad("expected a byte string"));
        };
        let salt: [u8; SALT_BYTES] = salt_bytes.try_into().map_err(|_| {
            DecodeError::structure(
                WHAT,
                format!("salt has {} bytes (expected 16)", salt_bytes.len()),
            )
        })?;
        let value = match r.head() {
            Some(Head::Text(t)) => FieldValue::Text(t.to_owned()),
            Some(Head::Uint(n)) => FieldValue::Int(n),
            Some(Head::Bool(b)) => FieldValue::Bool(b),
            Some(Head::Array(n)) => {
                // `scan` bounded the count by the input's length and the item limit.
                let mut items = Vec::with_capacity(n.min(64) as usize);
                for _ in 0..n {
                    match r.head() {
                        Some(Head::Text(t)) => items.push(t.to_owned()),
                        _ => return Err(not_value()),
                    }
                }
                FieldValue::List(items)
            }
            _ => return Err(not_value()),
        };
        let Some(Head::Text(name)) = r.head() else {
            return Err(bad("expected a text string"));
        };
        if !r.at_end() {
            return Err(bad("trailing bytes after the item"));
        }
        Ok((salt, name.to_owned(), value))
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

/// The argument of a CBOR head (`initial` byte's low bits, plus following bytes) and the rest.
fn head_arg(initial: u8, rest: &[u8]) -> Option<(u64, &[u8])> {
    match initial & 0x1f {
        n @ 0..=23 => Some((u64::from(n), rest)),
        24 => Some((u64::from(*rest.first()?), rest.get(1..)?)),
        25 => Some((
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            rest.get(2..)?,
        )),
        26 => Some((
            u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
            rest.get(4..)?,
        )),
        27 => Some((
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
            rest.get(8..)?,
        )),
        _ => None,
    }
}

/// A text string's length and the bytes from its content on.
fn text_head(b: &[u8]) -> Option<(usize, &[u8])> {
    let (&initial, rest) = b.split_first()?;
    if initial >> 5 != 3 {
        return None;
    }
    let (len, rest) = head_arg(initial, rest)?;
    Some((usize::try_from(len).ok()?, rest))
}

/// Skips one disclosure value (text, unsigned integer, bool, or array of text).
fn skip_value(b: &[u8]) -> Option<&[u8]> {
    let (&initial, rest) = b.split_first()?;
    match initial >> 5 {
        0 => head_arg(initial, rest).map(|(_, r)| r),
        3 => {
            let (len, rest) = text_head(b)?;
            rest.get(len..)
        }
        4 => {
            let (n, mut rest) = head_arg(initial, rest)?;
            // Every element takes at least a byte: a longer count is malformed.
            if n > rest.len() as u64 {
                return None;
            }
            for _ in 0..n {
                let (len, r) = text_head(rest)?;
                rest = r.get(len..)?;
            }
            Some(rest)
        }
        7 if initial == 0xf4 || initial == 0xf5 => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_name_reads_every_value_shape_and_never_panics() {
        let long = "x".repeat(300);
        let values = [
            FieldValue::Text("成都".into()),
            FieldValue::Text(long),
            FieldValue::Int(0),
            FieldValue::Int(23),
            FieldValue::Int(24),
            FieldValue::Int(70_000),
            FieldValue::Int(u64::MAX),
            FieldValue::Bool(true),
            FieldValue::Bool(false),
            FieldValue::List(vec!["a".into(), "bb".into()]),
            FieldValue::List(vec![]),
        ];
        for v in &values {
            let d = Disclosure::new([7; SALT_BYTES], "overdue_days", v);
            assert_eq!(
                Disclosure::field_name(d.bytes()),
                Some("overdue_days"),
                "{v:?}"
            );
            // Every truncation and every single-byte change is handled without a panic, and a
            // truncation never yields a name.
            for n in 0..d.bytes().len() {
                assert_eq!(Disclosure::field_name(&d.bytes()[..n]), None);
                let mut b = d.bytes().to_vec();
                b[n] ^= 0xff;
                let _ = Disclosure::field_name(&b);
            }
        }
    }
}
