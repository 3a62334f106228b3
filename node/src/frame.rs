//! Value-log frames: one store batch — its chunk bodies and every sled write that goes with
//! them — as written to the value log before sled sees any of it ([`crate::vlog`]). A frame is
//! what makes a batch durable: once its `fdatasync` returns, the batch survives a crash even if
//! sled never wrote its copy, because opening the store applies again every frame past the
//! valid length sled recorded. The SHA-256 in the header tells a complete frame from a torn one.
//!
//! Layout (integers big-endian):
//!
//! | field | bytes |
//! |---|---|
//! | magic `TFXF` | 4 |
//! | payload length | u32 |
//! | SHA-256 of the payload | 32 |
//! | payload: bodies length u32, the bodies, write count u32, then each write | |
//! | a write: 1 = insert / 0 = remove, key length u16, key, (insert) value length u32, value | |

use std::collections::TryReserveError;

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"TFXF";
/// Magic, payload length, SHA-256.
pub const HEADER_LEN: usize = 4 + 4 + 32;

/// Writes to sled, in order (a later write to a key wins, as in a `sled::Batch`), kept so that
/// a frame can carry them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Writes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    /// Takes owned keys and values as they are (most are built for the call) and copies
    /// borrowed ones.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push((key.into(), None));
    }

    /// Appends `other`'s writes after these.
    pub fn extend(&mut self, other: Writes) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The writes in order: key, and the value for an insert (`None` for a remove).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// The same writes as one atomic sled batch.
    pub fn to_batch(&self) -> sled::Batch {
        let mut b = sled::Batch::default();
        for (k, v) in &self.0 {
            match v {
                Some(v) => b.insert(k.as_slice(), v.as_slice()),
                None => b.remove(k.as_slice()),
            }
        }
        b
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("sled key of {0} bytes is too long for a frame")]
    KeyTooLong(usize),
    #[error("frame of {0} bytes is over the 4 GiB a frame can hold")]
    TooLarge(usize),
    #[error("frame payload is malformed: {0}")]
    Malformed(&'static str),
    #[error("out of memory for a frame: {0}")]
    Alloc(#[from] TryReserveError),
}

/// Offset of the first body inside a frame: bodies begin right after the header and the
/// bodies' length, so pointers can be computed before the frame is built.
pub const BODIES_AT: u64 = (HEADER_LEN + 4) as u64;

/// The frame holding `bodies` (concatenated in order) and `writes`.
pub fn encode(bodies: &[Vec<u8>], writes: &Writes) -> Result<Vec<u8>, FrameError> {
    let bodies_len: usize = bodies.iter().map(Vec::len).sum();
    let writes_len: usize = writes
        .0
        .iter()
        .map(|(k, v)| 1 + 2 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
        .sum();
    let payload_len = 4 + bodies_len + 4 + writes_len;
    let too_large = || FrameError::TooLarge(payload_len);
    let payload_len32 = u32::try_from(payload_len).map_err(|_| too_large())?;
    let mut f = Vec::new();
    f.try_reserve_exact(HEADER_LEN + payload_len)?;
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&payload_len32.to_be_bytes());
    f.extend_from_slice(&[0u8; 32]);
    f.extend_from_slice(&(bodies_len as u32).to_be_bytes());
    for b in bodies {
        f.extend_from_slice(b);
    }
    f.extend_from_slice(&(writes.0.len() as u32).to_be_bytes());
    for (k, v) in &writes.0 {
        let klen = u16::try_from(k.len()).map_err(|_| FrameError::KeyTooLong(k.len()))?;
        f.push(u8::from(v.is_some()));
        f.extend_from_slice(&klen.to_be_bytes());
        f.extend_from_slice(k);
        if let Some(v) = v {
            let vlen = u32::try_from(v.len()).map_err(|_| too_large())?;
            f.extend_from_slice(&vlen.to_be_bytes());
            f.extend_from_slice(v);
        }
    }
    let digest = tfx_protocol::ids::sha256(&f[HEADER_LEN..]);
    f[8..HEADER_LEN].copy_from_slice(&digest);
    Ok(f)
}

/// A frame's header: `Some(payload length)` if `header` starts a frame, `None` if not (zeros, or
/// bytes that never were a frame: the end of the frames).
pub fn payload_len(header: &[u8; HEADER_LEN]) -> Option<u32> {
    (header[..4] == MAGIC).then(|| u32::from_be_bytes([header[4], header[5], header[6], header[7]]))
}

/// Whether `payload` is the one `header` was written for (a frame cut short by a crash is not).
pub fn intact(header: &[u8; HEADER_LEN], payload: &[u8]) -> bool {
    tfx_protocol::ids::sha256(payload)[..] == header[8..]
}

/// The writes of an intact frame's payload.
pub fn writes(payload: &[u8]) -> Result<Writes, FrameError> {
    let mut r = Reader(payload);
    let bodies = r.u32()? as usize;
    r.take(bodies)?;
    let count = r.u32()? as usize;
    // Each write takes at least 3 bytes: the count cannot promise more than the payload holds.
    if count > r.0.len() / 3 {
        return Err(FrameError::Malformed("write count"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let op = r.take(1)?[0];
        let klen = u16::from_be_bytes([r.take(1)?[0], r.take(1)?[0]]) as usize;
        let key = r.take(klen)?.to_vec();
        let value = match op {
            1 => {
                let vlen = r.u32()? as usize;
                Some(r.take(vlen)?.to_vec())
            }
            0 => None,
            _ => return Err(FrameError::Malformed("write kind")),
        };
        out.push((key, value));
    }
    if !r.0.is_empty() {
        return Err(FrameError::Malformed("trailing bytes"));
    }
    Ok(Writes(out))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.0.len() {
            return Err(FrameError::Malformed("short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(f: &[u8]) -> [u8; HEADER_LEN] {
        f[..HEADER_LEN].try_into().unwrap()
    }

    #[test]
    fn a_frame_round_trips_and_a_torn_one_is_told_apart() {
        let mut w = Writes::default();
        w.insert(b"Ikey", b"value");
        w.remove(b"Zgone");
        w.insert(b"E", []);
        let bodies = vec![b"first".to_vec(), b"second!".to_vec()];
        let f = encode(&bodies, &w).unwrap();
        let h = header_of(&f);
        assert_eq!(payload_len(&h), Some((f.len() - HEADER_LEN) as u32));
        assert!(intact(&h, &f[HEADER_LEN..]));
        assert_eq!(writes(&f[HEADER_LEN..]).unwrap(), w);
        let at = BODIES_AT as usize;
        assert_eq!(&f[at..at + 12], b"firstsecond!");
        // Cut short, or one byte changed: not intact.
        assert!(!intact(&h, &f[HEADER_LEN..f.len() - 1]));
        let mut bent = f.clone();
        bent[at] ^= 1;
        assert!(!intact(&h, &bent[HEADER_LEN..]));
        // Zeros (room grown ahead of the data) are no frame.
        assert_eq!(payload_len(&[0u8; HEADER_LEN]), None);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let w = {
            let mut w = Writes::default();
            w.insert(b"k", b"v");
            w
        };
        let f = encode(&[], &w).unwrap();
        let payload = &f[HEADER_LEN..];
        for cut in 0..payload.len() {
            assert!(writes(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = payload.to_vec();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(writes(&huge).is_err());
        let mut bad_kind = payload.to_vec();
        bad_kind[8] = 7;
        assert!(writes(&bad_kind).is_err());
    }
}
