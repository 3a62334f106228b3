//! The settled mark: how far into the value log sled's state is durable *with an fsync*. The
//! valid length sled keeps (`Mvlog`, [`crate::sled_store`]) is written by sled's own flush, which
//! is only `sync_file_range`: it does not flush a disk's volatile write cache, and gives no order
//! between the pages it writes. After a power loss on such a disk sled may come back holding a
//! later valid length while an earlier write it covers is lost, and replaying frames only past
//! that valid length would miss it. So after each flush of sled that is followed by an fsync of
//! its file, the store records here the valid length that flush covered, and on open it replays
//! every intact frame from the lower of the two (replaying a frame sled already holds changes
//! nothing: its writes set values, and later frames are replayed after it). The record-id index
//! ([`crate::idindex`]) is fsynced in the same settle, before the mark: its entries also come
//! from the frames, and are inserted again from those replayed.
//!
//! The file (`records.settled`, beside the value log, mode 0600) holds two slots of 32 bytes —
//! sequence number u64, settled length u64, the first 16 bytes of SHA-256 over both — written
//! in turn and each `fdatasync`ed: a write torn by a crash spoils one slot only, and the other
//! still holds the previous mark. Reading takes the intact slot with the higher sequence number.
//! A store without the file (made before it existed) falls back to sled's valid length alone.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// File name of the mark inside the store directory.
pub const SETTLED_FILE: &str = "records.settled";

const SLOT_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("settled mark {path}: {source}")]
pub struct SettledError {
    path: String,
    source: std::io::Error,
}

/// The mark of one store. Only ever moves forward.
#[derive(Debug)]
pub struct SettledMark {
    path: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Sequence number of the last slot written (0: none yet).
    seq: u64,
    /// The settled length last recorded.
    len: u64,
}

impl SettledMark {
    /// Opens (or creates, mode 0600) the mark in `dir`. Returns it with the settled length it
    /// holds, `None` when it holds none (a new file, or both slots unreadable).
    pub fn open(dir: &Path) -> Result<(SettledMark, Option<u64>), SettledError> {
        let path = dir.join(SETTLED_FILE);
        let path_s = path.display().to_string();
        let io = |source| SettledError {
            path: path_s.clone(),
            source,
        };
        let file = crate::fsutil::open_private_rw(&path).map_err(io)?;
        let mut bytes = [0u8; 2 * SLOT_LEN];
        let found = file.metadata().map_err(io)?.len();
        let n = (found as usize).min(bytes.len());
        file.read_exact_at(&mut bytes[..n], 0).map_err(io)?;
        let best = bytes
            .chunks_exact(SLOT_LEN)
            .filter_map(decode_slot)
            .max_by_key(|(seq, _)| *seq);
        let (seq, len) = best.unwrap_or((0, 0));
        let mark = SettledMark {
            path: path_s,
            state: Mutex::new(State { file, seq, len }),
        };
        Ok((mark, best.map(|(_, len)| len)))
    }

    /// Records durably that sled's fsynced state accounts for the first `len` bytes of the
    /// value log. A length at or below the one recorded already is ignored: settles that ran
    /// side by side may finish out of order.
    pub fn record(&self, len: u64) -> Result<(), SettledError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.seq > 0 && len <= state.len {
            return Ok(());
        }
        let seq = state.seq + 1;
        let slot = encode_slot(seq, len);
        let at = (seq % 2) * SLOT_LEN as u64;
        let io = |source| SettledError {
            path: self.path.clone(),
            source,
        };
        state.file.write_all_at(&slot, at).map_err(io)?;
        state.file.sync_data().map_err(io)?;
        state.seq = seq;
        state.len = len;
        Ok(())
    }
}

fn encode_slot(seq: u64, len: u64) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..8].copy_from_slice(&seq.to_be_bytes());
    slot[8..16].copy_from_slice(&len.to_be_bytes());
    let digest = tfx_protocol::ids::sha256(&slot[..16]);
    slot[16..].copy_from_slice(&digest[..16]);
    slot
}

/// A slot's (sequence number, length), if it is intact and was ever written.
fn decode_slot(slot: &[u8]) -> Option<(u64, u64)> {
    let digest = tfx_protocol::ids::sha256(slot.get(..16)?);
    if slot.get(16..32)? != &digest[..16] {
        return None;
    }
    let seq = u64::from_be_bytes(slot[..8].try_into().ok()?);
    let len = u64::from_be_bytes(slot[8..16].try_into().ok()?);
    (seq > 0).then_some((seq, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_moves_forward_only_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mark, held) = SettledMark::open(dir.path()).unwrap();
        assert_eq!(held, None, "a new file holds no mark");
        mark.record(0).unwrap();
        mark.record(100).unwrap();
        mark.record(40).unwrap(); // a settle that finished late
        mark.record(250).unwrap();
        drop(mark);
        let (mark, held) = SettledMark::open(dir.path()).unwrap();
        assert_eq!(held, Some(250));
        mark.record(300).unwrap();
        drop(mark);
        assert_eq!(SettledMark::open(dir.path()).unwrap().1, Some(300));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(SETTLED_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (mark, _) = SettledMark::open(dir.path()).unwrap();
        mark.record(100).unwrap(); // seq 1: slot 1
        mark.record(200).unwrap(); // seq 2: slot 0
        drop(mark);
        let path = dir.path().join(SETTLED_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0xff; // slot 0's length: the write of 200 was torn
        std::fs::write(&path, &bytes).unwrap();
        let (mark, held) = SettledMark::open(dir.path()).unwrap();
        assert_eq!(held, Some(100));
        // The next write goes to the slot after the intact one, leaving it in place.
        mark.record(150).unwrap();
        drop(mark);
        assert_eq!(SettledMark::open(dir.path()).unwrap().1, Some(150));
        // Both slots unreadable: no mark.
        std::fs::write(&path, [7u8; 64]).unwrap();
        assert_eq!(SettledMark::open(dir.path()).unwrap().1, None);
    }
}
