//! The CBOR boundary. This is the only module that names `serde_cbor` (an unmaintained crate,
//! RUSTSEC-2021-0127, accepted in `deny.toml`): replacing it means changing this file alone.
//!
//! Decoding is two-step. [`scan`] walks the raw bytes first and refuses anything outside our
//! profile — indefinite lengths, floats, undefined simple values, duplicate map keys, depth over
//! [`CBOR_DEPTH_MAX`], more than [`CBOR_ITEMS_MAX`] items, lengths past the end of input, map keys
//! other than integers and text — allocating only one map's key list at a time. Only then does serde_cbor build a [`Value`]. Duplicate keys matter: serde_cbor keeps
//! the last one, another decoder might keep the first, and a signed document must mean one thing.
//! The hot decoders (disclosures, record headers, COSE envelopes, sync record messages) skip the
//! [`Value`] tree and read the scanned bytes head by head with [`Reader`] and the `item_*`
//! helpers; a test keeps the tree-based header and envelope decoders as an oracle.
//!
//! Encoding writes bytes directly with [`Encoder`] (preferred serialization: shortest heads,
//! definite lengths, map keys in ascending order) — several times faster than building a
//! [`Value`] tree, and on the append hot path. [`encode`] (serde_cbor) stays as the reference: a
//! property test checks that both produce identical bytes, and the test vectors pin them.

use std::collections::BTreeMap;

use crate::limits::{CBOR_DEPTH_MAX, CBOR_ITEMS_MAX, CBOR_MAP_ENTRIES_MAX};

/// A decoded CBOR data item.
pub type Value = serde_cbor::Value;

/// Why bytes could not be decoded as the expected structure. `what` names the structure
/// (`"envelope"`, `"disclosure"`, …) so the message reads on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} too large: {len} bytes (max {max})")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is not valid CBOR for tfx: {reason} (at byte {offset})")]
    Malformed {
        what: &'static str,
        reason: &'static str,
        offset: usize,
    },
    #[error("{what}: {detail}")]
    Structure { what: &'static str, detail: String },
}

impl DecodeError {
    pub(crate) fn structure(what: &'static str, detail: impl Into<String>) -> Self {
        DecodeError::Structure {
            what,
            detail: detail.into(),
        }
    }
}

/// A CBOR head — major type `major` with argument `n` — in its shortest form: the bytes and
/// how many of them are used (1 to 9).
pub(crate) fn head_bytes(major: u8, n: u64) -> ([u8; 9], usize) {
    let m = major << 5;
    let mut out = [0u8; 9];
    let len = match n {
        0..=23 => {
            out[0] = m | n as u8;
            1
        }
        24..=0xff => {
            out[..2].copy_from_slice(&[m | 24, n as u8]);
            2
        }
        0x100..=0xffff => {
            out[0] = m | 25;
            out[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            3
        }
        0x1_0000..=0xffff_ffff => {
            out[0] = m | 26;
            out[1..5].copy_from_slice(&(n as u32).to_be_bytes());
            5
        }
        _ => {
            out[0] = m | 27;
            out[1..9].copy_from_slice(&n.to_be_bytes());
            9
        }
    };
    (out, len)
}

/// Writes CBOR directly into a buffer. Callers write map entries in ascending key order; every
/// head uses its shortest form, as [`scan`] requires on the way back in.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn with_capacity(n: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(n),
        }
    }

    fn head(&mut self, major: u8, n: u64) {
        let (bytes, len) = head_bytes(major, n);
        self.buf.extend_from_slice(&bytes[..len]);
    }

    pub fn uint(&mut self, n: u64) -> &mut Self {
        self.head(0, n);
        self
    }

    pub fn int(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            // Major type 1 carries -1 - n.
            self.head(1, (-1 - n) as u64);
        } else {
            self.head(0, n as u64);
        }
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(4, len as u64);
        self
    }

    pub fn map(&mut self, len: usize) -> &mut Self {
        self.head(5, len as u64);
        self
    }

    pub fn tag(&mut self, tag: u64) -> &mut Self {
        self.head(6, tag);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.buf.push(0xf6);
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Encodes a value with serde_cbor: the reference the [`Encoder`] is tested against. Encoding into a `Vec` cannot fail for the value shapes we build (no floats,
/// no non-string map keys of unsupported types), so a failure is a programming error.
pub fn encode(value: &Value) -> Vec<u8> {
    match serde_cbor::to_vec(value) {
        Ok(bytes) => bytes,
        // Architecture invariant: `Value` trees built by this crate always serialize.
        Err(e) => unreachable!("serde_cbor failed to encode a Value: {e}"),
    }
}

/// Checks `bytes` against our CBOR profile and the size limit, then decodes it.
pub fn decode(what: &'static str, bytes: &[u8], bytes_max: usize) -> Result<Value, DecodeError> {
    decode_with_items(what, bytes, bytes_max, CBOR_ITEMS_MAX)
}

/// [`decode`] for the few documents larger than one record (the roster): same profile, with
/// their own item limit.
pub fn decode_with_items(
    what: &'static str,
    bytes: &[u8],
    bytes_max: usize,
    items_max: usize,
) -> Result<Value, DecodeError> {
    scan_bounded(what, bytes, bytes_max, items_max)?;
    value_of_scanned(what, bytes)
}

/// The checks of [`decode_with_items`] without building the [`Value`]: for decoders that read
/// the bytes with [`Reader`] afterwards, or build the tree only when they must
/// ([`value_of_scanned`]).
pub(crate) fn scan_bounded(
    what: &'static str,
    bytes: &[u8],
    bytes_max: usize,
    items_max: usize,
) -> Result<(), DecodeError> {
    if bytes.len() > bytes_max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max: bytes_max,
        });
    }
    scan_with_items(what, bytes, items_max)
}

/// [`scan_bounded`] with the item limit of one record ([`CBOR_ITEMS_MAX`]): the check before
/// a head-by-head decoder reads the bytes with [`Reader`].
pub(crate) fn scan_within(
    what: &'static str,
    bytes: &[u8],
    bytes_max: usize,
) -> Result<(), DecodeError> {
    scan_bounded(what, bytes, bytes_max, CBOR_ITEMS_MAX)
}

/// The [`Value`] tree of bytes [`scan`] has accepted.
pub(crate) fn value_of_scanned(what: &'static str, bytes: &[u8]) -> Result<Value, DecodeError> {
    serde_cbor::from_slice::<Value>(bytes).map_err(|e| DecodeError::Structure {
        what,
        detail: format!("cbor: {e}"),
    })
}

/// Walks one complete CBOR item spanning all of `bytes`, enforcing the profile described in the
/// module docs. Never allocates more than the duplicate-key bookkeeping of one map.
pub fn scan(what: &'static str, bytes: &[u8]) -> Result<(), DecodeError> {
    scan_with_items(what, bytes, CBOR_ITEMS_MAX)
}

fn scan_with_items(what: &'static str, bytes: &[u8], items_max: usize) -> Result<(), DecodeError> {
    let mut s = Scanner {
        what,
        bytes,
        pos: 0,
        items: 0,
        items_max,
    };
    s.item(0)?;
    if s.pos != bytes.len() {
        return Err(s.err("trailing bytes after the item"));
    }
    Ok(())
}

struct Scanner<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
    items: usize,
    items_max: usize,
}

impl Scanner<'_> {
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            what: self.what,
            reason,
            offset: self.pos,
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads the argument of an initial byte (RFC 8949 §3), refusing indefinite lengths.
    fn argument(&mut self, info: u8) -> Result<u64, DecodeError> {
        let n = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Err(self.err("indefinite-length items are not allowed")),
            _ => return Err(self.err("reserved additional information")),
        };
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        // Preferred serialization only: otherwise `1` could be spelled two ways and slip past the
        // duplicate-key check below (serde_cbor would then keep whichever came last).
        let min = match n {
            1 => 24,
            2 => 1 << 8,
            4 => 1 << 16,
            _ => 1 << 32,
        };
        if v < min {
            return Err(self.err("integer or length not in shortest form"));
        }
        Ok(v)
    }

    fn skip(&mut self, len: u64) -> Result<(usize, usize), DecodeError> {
        let start = self.pos;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if len > remaining {
            return Err(self.err("length runs past the end of input"));
        }
        self.pos += len as usize; // len <= remaining <= usize::MAX
        Ok((start, self.pos))
    }

    fn item(&mut self, depth: usize) -> Result<(usize, usize), DecodeError> {
        if depth > CBOR_DEPTH_MAX {
            return Err(self.err("nesting too deep"));
        }
        self.items += 1;
        if self.items > self.items_max {
            return Err(self.err("too many data items"));
        }
        let start = self.pos;
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let arg = self.argument(info)?;
        match major {
            0 | 1 => {}
            2 => {
                self.skip(arg)?;
            }
            3 => {
                let (a, b) = self.skip(arg)?;
                if std::str::from_utf8(&self.bytes[a..b]).is_err() {
                    return Err(self.err("text string is not UTF-8"));
                }
            }
            4 => {
                // Each element takes at least one byte: a count beyond the remaining input is a
                // lie, refused before looping on it.
                if arg > (self.bytes.len() - self.pos) as u64 {
                    return Err(self.err("array length runs past the end of input"));
                }
                for _ in 0..arg {
                    self.item(depth + 1)?;
                }
            }
            5 => {
                if arg > CBOR_MAP_ENTRIES_MAX as u64 {
                    return Err(self.err("map has too many entries"));
                }
                let mut keys: Vec<(usize, usize)> = Vec::with_capacity(arg as usize);
                for _ in 0..arg {
                    // Keys are integers or text only: composite keys could be spelled two ways
                    // (element order) and slip past the byte comparison below.
                    if !matches!(self.bytes.get(self.pos).map(|b| b >> 5), Some(0 | 1 | 3)) {
                        return Err(self.err("map keys must be integers or text"));
                    }
                    let (a, b) = self.item(depth + 1)?;
                    let key = &self.bytes[a..b];
                    if keys.iter().any(|&(x, y)| &self.bytes[x..y] == key) {
                        return Err(self.err("duplicate map key"));
                    }
                    keys.push((a, b));
                    self.item(depth + 1)?;
                }
            }
            6 => {
                self.item(depth + 1)?;
            }
            _ => {
                // Major type 7: only false, true and null are in our profile.
                if !(info == 20 || info == 21 || info == 22) {
                    return Err(self.err(
                        "floats and simple values other than true/false/null are not allowed",
                    ));
                }
            }
        }
        Ok((start, self.pos))
    }
}

// ---- typed access helpers: every error names the structure and the key --------------------

/// A CBOR map as decoded.
pub type Map = BTreeMap<Value, Value>;

/// One data item's head as [`Reader`] sees it: the item itself for scalars and strings, the
/// count for arrays and maps (whose elements follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head<'a> {
    Uint(u64),
    /// The negative integer `-1 - n`.
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(u64),
    Map(u64),
    Tag(u64),
    Bool(bool),
    Null,
}

impl Head<'_> {
    /// The value of an integer head, unsigned or negative.
    fn int(&self) -> Option<i128> {
        match *self {
            Head::Uint(n) => Some(i128::from(n)),
            Head::Negative(n) => Some(-1 - i128::from(n)),
            _ => None,
        }
    }
}

/// Reads bytes that passed [`scan`] head by head, borrowing strings from the input, for the hot
/// decoders that would otherwise build a [`Value`] tree per item (disclosures: 18 per record in a
/// catch-up). Every read is bounds-checked all the same: `None` means the bytes were not what
/// `scan` accepted, which callers report as a structure error rather than trusting.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// The bytes of the next complete item, with everything nested in it, moving past them.
    /// Iterative, and bounded by the input: every head read consumes at least one byte.
    pub(crate) fn item(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.head()? {
                Head::Array(n) => pending = pending.checked_add(n)?,
                Head::Map(n) => pending = pending.checked_add(n.checked_mul(2)?)?,
                // Cannot overflow (one was just taken off), but checked like the others.
                Head::Tag(_) => pending = pending.checked_add(1)?,
                _ => {}
            }
        }
        self.bytes.get(start..self.pos)
    }

    pub(crate) fn head(&mut self) -> Option<Head<'a>> {
        let initial = *self.take(1)?.first()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1u64 << (info - 24);
                self.take(n)?
                    .iter()
                    .fold(0u64, |v, b| (v << 8) | u64::from(*b))
            }
            _ => return None,
        };
        Some(match major {
            0 => Head::Uint(arg),
            1 => Head::Negative(arg),
            2 => Head::Bytes(self.take(arg)?),
            3 => Head::Text(std::str::from_utf8(self.take(arg)?).ok()?),
            4 => Head::Array(arg),
            5 => Head::Map(arg),
            6 => Head::Tag(arg),
            _ => match info {
                20 => Head::Bool(false),
                21 => Head::Bool(true),
                22 => Head::Null,
                _ => return None,
            },
        })
    }
}

/// The values of an integer-keyed map that [`scan`] accepted, in the order of `keys`, each as
/// the bytes of one complete item (read them with [`item_text`], [`item_u64`], …). A key not in
/// `keys` is refused, so a signed document cannot carry fields a verifier ignores; `scan` has
/// refused duplicates already. The counterpart of [`as_map`] + [`only_keys`] + [`field`] for hot
/// decoders, without a [`Value`] tree.
pub(crate) fn int_map<'a, const N: usize>(
    what: &'static str,
    item: &'a [u8],
    keys: [i64; N],
) -> Result<[Option<&'a [u8]>; N], DecodeError> {
    let mut r = Reader::new(item);
    let Some(Head::Map(entries)) = r.head() else {
        return Err(DecodeError::structure(what, "expected a map"));
    };
    let mut values = [None; N];
    for _ in 0..entries {
        let key = match r.head().ok_or_else(|| unreadable(what))? {
            Head::Text(_) => None,
            h => Some(h.int().ok_or_else(|| unreadable(what))?),
        };
        let Some(slot) = key.and_then(|key| keys.iter().position(|k| i128::from(*k) == key)) else {
            return Err(unexpected_key(what, item, &keys));
        };
        if values[slot].is_some() {
            // `scan` refuses duplicates already; kept for bytes that did not pass it.
            return Err(DecodeError::structure(what, "duplicate map key"));
        }
        values[slot] = Some(r.item().ok_or_else(|| unreadable(what))?);
    }
    if !r.at_end() {
        return Err(unreadable(what));
    }
    Ok(values)
}

/// Bytes the `Reader` cannot follow: only possible for input that did not pass [`scan`].
pub(crate) fn unreadable(what: &'static str) -> DecodeError {
    DecodeError::structure(what, "unreadable CBOR")
}

/// The error for a map with a key outside `keys`, worded as [`only_keys`] words it — which names
/// the smallest such key in `Value` order, not the first in the bytes — so both decoders give a
/// map with several unexpected keys the same message. Error path only: the tree is built here.
fn unexpected_key(what: &'static str, item: &[u8], keys: &[i64]) -> DecodeError {
    let worded =
        value_of_scanned(what, item).and_then(|v| only_keys(what, as_map(what, &v)?, keys));
    match worded {
        Err(e) => e,
        Ok(()) => DecodeError::structure(what, "unexpected key"),
    }
}

/// A value [`int_map`] found under `key`, or an error naming the key.
pub(crate) fn required<'a>(
    what: &'static str,
    value: Option<&'a [u8]>,
    key: i64,
) -> Result<&'a [u8], DecodeError> {
    value.ok_or_else(|| DecodeError::structure(what, format!("missing key {key}")))
}

/// The single head of a scalar or string item, which must make up all of `item`.
fn item_head<'a>(item: &'a [u8]) -> Option<Head<'a>> {
    let mut r = Reader::new(item);
    let h = r.head()?;
    r.at_end().then_some(h)
}

/// An integer item's value, if `item` is one integer.
pub(crate) fn item_int(item: &[u8]) -> Option<i128> {
    item_head(item)?.int()
}

/// The entry count of a map item (its entries follow its head).
pub(crate) fn item_map_len(what: &'static str, item: &[u8]) -> Result<u64, DecodeError> {
    match Reader::new(item).head() {
        Some(Head::Map(n)) => Ok(n),
        _ => Err(DecodeError::structure(what, "expected a map")),
    }
}

/// The text of a text-string item.
pub(crate) fn item_text<'a>(what: &'static str, item: &'a [u8]) -> Result<&'a str, DecodeError> {
    match item_head(item) {
        Some(Head::Text(t)) => Ok(t),
        _ => Err(DecodeError::structure(what, "expected a text string")),
    }
}

/// The content of a byte-string item.
pub(crate) fn item_bytes<'a>(what: &'static str, item: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    match item_head(item) {
        Some(Head::Bytes(b)) => Ok(b),
        _ => Err(DecodeError::structure(what, "expected a byte string")),
    }
}

/// The value of an unsigned-integer item.
pub(crate) fn item_u64(what: &'static str, item: &[u8]) -> Result<u64, DecodeError> {
    match item_head(item) {
        Some(Head::Uint(n)) => Ok(n),
        _ => Err(DecodeError::structure(what, "expected an unsigned integer")),
    }
}

/// A 32-byte byte-string item (a digest or record id).
pub(crate) fn item_hash(what: &'static str, item: &[u8]) -> Result<[u8; 32], DecodeError> {
    let b = item_bytes(what, item)?;
    b.try_into()
        .map_err(|_| DecodeError::structure(what, format!("expected 32 bytes, got {}", b.len())))
}

/// The elements of an array item, each as the bytes of one complete item.
pub(crate) fn item_array<'a>(
    what: &'static str,
    item: &'a [u8],
) -> Result<Vec<&'a [u8]>, DecodeError> {
    let mut r = Reader::new(item);
    let Some(Head::Array(n)) = r.head() else {
        return Err(DecodeError::structure(what, "expected an array"));
    };
    // `scan` bounded the count by the items present; the cap only guards unscanned input.
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(CBOR_ITEMS_MAX));
    for _ in 0..n {
        out.push(r.item().ok_or_else(|| unreadable(what))?);
    }
    if !r.at_end() {
        return Err(unreadable(what));
    }
    Ok(out)
}

pub(crate) fn as_array<'a>(what: &'static str, v: &'a Value) -> Result<&'a [Value], DecodeError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(DecodeError::structure(what, "expected an array")),
    }
}

pub(crate) fn as_map<'a>(what: &'static str, v: &'a Value) -> Result<&'a Map, DecodeError> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(DecodeError::structure(what, "expected a map")),
    }
}

pub(crate) fn as_bytes<'a>(what: &'static str, v: &'a Value) -> Result<&'a [u8], DecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(DecodeError::structure(what, "expected a byte string")),
    }
}

pub(crate) fn as_text<'a>(what: &'static str, v: &'a Value) -> Result<&'a str, DecodeError> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(DecodeError::structure(what, "expected a text string")),
    }
}

pub(crate) fn as_u64(what: &'static str, v: &Value) -> Result<u64, DecodeError> {
    match v {
        Value::Integer(i) => u64::try_from(*i)
            .map_err(|_| DecodeError::structure(what, "expected an unsigned integer")),
        _ => Err(DecodeError::structure(what, "expected an unsigned integer")),
    }
}

pub(crate) fn as_hash(what: &'static str, v: &Value) -> Result<[u8; 32], DecodeError> {
    let b = as_bytes(what, v)?;
    b.try_into()
        .map_err(|_| DecodeError::structure(what, format!("expected 32 bytes, got {}", b.len())))
}

/// Integer map key `k`.
pub(crate) fn key(k: i64) -> Value {
    Value::Integer(i128::from(k))
}

/// Looks up integer key `k`, naming it in the error when absent.
pub(crate) fn field<'a>(what: &'static str, m: &'a Map, k: i64) -> Result<&'a Value, DecodeError> {
    m.get(&key(k))
        .ok_or_else(|| DecodeError::structure(what, format!("missing key {k}")))
}

/// Refuses any key not in `allowed`, so a signed document cannot carry fields a verifier ignores.
pub(crate) fn only_keys(what: &'static str, m: &Map, allowed: &[i64]) -> Result<(), DecodeError> {
    for k in m.keys() {
        let ok = matches!(k, Value::Integer(i) if allowed.iter().any(|a| i128::from(*a) == *i));
        if !ok {
            return Err(DecodeError::structure(
                what,
                format!("unexpected key {k:?}"),
            ));
        }
    }
    Ok(())
}

/// Wraps a value in a CBOR tag.
#[cfg(test)]
pub(crate) fn tagged(tag: u64, v: Value) -> Value {
    Value::Tag(tag, Box::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }

    /// Shortest-form head for major type `major` with argument `n`.
    fn head(major: u8, n: usize) -> Vec<u8> {
        let m = major << 5;
        match n {
            0..=23 => vec![m | n as u8],
            24..=255 => vec![m | 24, n as u8],
            _ => vec![m | 25, (n >> 8) as u8, n as u8],
        }
    }

    #[test]
    fn accepts_profile_items() {
        for h in [
            "00",
            "1903e8",
            "40",
            "6161",
            "80",
            "a0",
            "d24100",
            "f4",
            "f5",
            "f6",
            "a201020304",
        ] {
            assert!(scan("t", &hex(h)).is_ok(), "{h}");
        }
    }

    #[test]
    fn rejects_outside_profile() {
        let cases = [
            ("", "unexpected end of input"),
            ("5f", "indefinite-length items are not allowed"),
            (
                "f93c00",
                "floats and simple values other than true/false/null are not allowed",
            ),
            ("a201020103", "duplicate map key"),
            ("4201", "length runs past the end of input"),
            (
                "9bffffffffffffffff",
                "array length runs past the end of input",
            ),
            ("0000", "trailing bytes after the item"),
            ("62c328", "text string is not UTF-8"),
            ("1c", "reserved additional information"),
            ("1801", "integer or length not in shortest form"),
            ("a2011801", "integer or length not in shortest form"),
            ("a1800000", "map keys must be integers or text"),
            ("a1a00000", "map keys must be integers or text"),
        ];
        for (h, want) in cases {
            match scan("t", &hex(h)) {
                Err(DecodeError::Malformed { reason, .. }) => assert_eq!(reason, want, "{h}"),
                other => panic!("{h}: expected {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn depth_limit_at_n_and_n_plus_1() {
        // CBOR_DEPTH_MAX nested single-element arrays around 0 is depth CBOR_DEPTH_MAX: accepted.
        let mut ok = vec![0x81u8; CBOR_DEPTH_MAX];
        ok.push(0);
        assert!(scan("t", &ok).is_ok());
        let mut deep = vec![0x81u8; CBOR_DEPTH_MAX + 1];
        deep.push(0);
        assert!(matches!(
            scan("t", &deep),
            Err(DecodeError::Malformed {
                reason: "nesting too deep",
                ..
            })
        ));
    }

    #[test]
    fn item_limit_at_n_and_n_plus_1() {
        // An array of (ITEMS_MAX - 1) zeros is ITEMS_MAX items including the array itself.
        let make = |n: usize| {
            let mut v = head(4, n);
            v.extend(std::iter::repeat_n(0u8, n));
            v
        };
        assert!(scan("t", &make(CBOR_ITEMS_MAX - 1)).is_ok());
        assert!(matches!(
            scan("t", &make(CBOR_ITEMS_MAX)),
            Err(DecodeError::Malformed {
                reason: "too many data items",
                ..
            })
        ));
    }

    #[test]
    fn reader_helpers_refuse_unscanned_input_without_panicking() {
        // Counts past the input, overflowing map counts, runs of tags, truncations: `item`
        // answers None rather than looping or panicking.
        let mut tags = vec![0xc1u8; 10_000];
        for h in [
            "9bffffffffffffffff",
            "bbffffffffffffffff",
            "8201",
            "a1",
            "d2",
            "",
        ] {
            assert_eq!(Reader::new(&hex(h)).item(), None, "{h}");
        }
        assert_eq!(Reader::new(&tags).item(), None);
        tags.push(0);
        assert_eq!(Reader::new(&tags).item().map(<[u8]>::len), Some(10_001));
        // A duplicate key that skipped `scan` is refused, not decided by the last one.
        assert_eq!(
            int_map("t", &hex("a201000101"), [1]),
            Err(DecodeError::structure("t", "duplicate map key"))
        );
        // Several unexpected keys: the smallest in `Value` order is named, as `only_keys` does.
        let e = int_map("t", &hex("a3090008000100"), [1])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("unexpected key Integer(8)"), "{e}");
        for h in ["", "ff", "5f", "7801", "1b00", "c1", "a1"] {
            let b = hex(h);
            assert!(
                item_text("t", &b).is_err() && item_bytes("t", &b).is_err(),
                "{h}"
            );
            assert!(
                item_u64("t", &b).is_err() && item_hash("t", &b).is_err(),
                "{h}"
            );
            assert!(item_int(&b).is_none() && item_map_len("t", &b).is_err() || h == "a1");
            assert!(item_array("t", &b).is_err(), "{h}");
        }
        // Trailing bytes after a scalar item are not part of it.
        assert!(item_u64("t", &hex("0101")).is_err());
    }

    #[test]
    fn map_entry_limit_at_n_and_n_plus_1() {
        let make = |n: usize| {
            let mut v = head(5, n);
            for i in 0..n {
                v.extend([i as u8, 0]);
            }
            v
        };
        assert!(scan("t", &make(CBOR_MAP_ENTRIES_MAX)).is_ok());
        assert!(scan("t", &make(CBOR_MAP_ENTRIES_MAX + 1)).is_err());
    }

    #[test]
    fn size_limit_at_n_and_n_plus_1() {
        // A byte string with 15 content bytes and a 1-byte head is 16 bytes.
        let mut v = head(2, 15);
        v.extend([0u8; 15]);
        assert!(decode("t", &v, 16).is_ok());
        let mut v = head(2, 16);
        v.extend([0u8; 16]);
        assert!(matches!(
            decode("t", &v, 16),
            Err(DecodeError::TooLarge {
                len: 17,
                max: 16,
                ..
            })
        ));
    }

    #[test]
    fn encoder_matches_serde_cbor() {
        let mut e = Encoder::default();
        let ints = [
            0i64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            4_294_967_295,
            4_294_967_296,
            -1,
            -24,
            -25,
            -8,
            -19,
        ];
        e.tag(18).array(ints.len() + 4);
        for i in ints {
            e.int(i);
        }
        e.bytes(&[1; 300]).text("键").bool(true).map(2);
        e.uint(1).text("a").uint(4).bytes(b"");
        let mut m = Map::new();
        m.insert(key(4), Value::Bytes(vec![]));
        m.insert(key(1), Value::Text("a".into()));
        let mut items: Vec<Value> = ints
            .iter()
            .map(|i| Value::Integer(i128::from(*i)))
            .collect();
        items.extend([
            Value::Bytes(vec![1; 300]),
            Value::Text("键".into()),
            Value::Bool(true),
            Value::Map(m),
        ]);
        assert_eq!(e.finish(), encode(&tagged(18, Value::Array(items))));
    }

    #[test]
    fn tags_survive_a_round_trip() {
        // Without serde_cbor's `tags` feature the tag would silently vanish.
        let v = tagged(18, Value::Array(vec![]));
        let bytes = encode(&v);
        assert_eq!(bytes, hex("d280"));
        assert_eq!(decode("t", &bytes, 16), Ok(v));
    }
}
