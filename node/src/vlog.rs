//! The value log: the bodies of stored records (the `E` chunks of [`crate::sled_store`]),
//! appended to one file beside sled, which keeps only where each chunk lies. sled 0.34 keeps
//! large pages it has read in memory — its LRU counts accesses per shard in blocks of 64 before
//! it evicts anything, and each of its 256 shards keeps a page however large — so a member that
//! served a catch-up out of 64 KiB chunk values grew to the size of its data (BENCHMARKS.md).
//! Bodies read from this file go through the kernel's page cache, which the kernel reclaims.
//!
//! The value log is also the store's write-ahead log. Every batch is written as one **frame**
//! ([`crate::frame`]): its chunk bodies and all the sled writes that go with them (pointers to the
//! bodies, indexes, heads, checkpoints), and its record-id index entries, which applying the
//! frame sends to [`crate::idindex`] rather than sled. [`ValueLog::append`] writes the frame at the valid
//! length, `fdatasync`s it, and only then applies the writes to sled, the new valid length
//! (`Mvlog`) last. The batch is durable from that fsync, and sled flushes in its own time: on
//! open every intact frame from the settled mark ([`crate::settled`]: how far sled's state was
//! last fsynced) is applied again (whole: writes set values), and the rest of the file is
//! overwritten with zeros. So the rule that matters still holds — **bytes are durable
//! before sled can point at them** — and an acknowledgement waits for one `fdatasync` instead of
//! the value log's and then sled's flush (which is only `sync_file_range`: it does not flush a
//! disk's volatile write cache, so it was also the weaker of the two).
//!
//! The file is grown ahead of its valid length by writing zeros ([`GROW_BYTES`] at a time, in the
//! same write and fsync as the batch that needed the room), so that the `fdatasync` of most
//! appends overwrites blocks the file already has: it then flushes data only, with no journal
//! commit for a new file size or newly allocated blocks, which halved its cost on the benchmark
//! host (ext4; 0.37 → 0.18 ms for 5 KB, 0.98 → 0.51 ms for 200 KB). `fallocate` would not do:
//! its blocks are "unwritten" until written, and converting them is a journal commit again.
//! Rewritten chunks (a back-fill or a purge) are appended anew and the old bytes overwritten with
//! zeros once sled's switch to the new pointer is durable — flushed, and its file fsynced, so no
//! frame holding zeroed bytes is ever replayed ([`ValueLog::zero`]) — and a removed field does not
//! linger in the file; the space is not reused. A purge also zeroes the sled writes of the frames
//! sled holds durably ([`ValueLog::scrub_writes`]): they repeat index keys, which can hold a USCC.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use crate::frame::{self, Writes};

/// File name of the value log inside the store directory.
pub const VLOG_FILE: &str = "records.vlog";

/// First byte of an `E` value that points into the value log. A chunk stored inline (store
/// format 1) starts with the big-endian u32 length of its first record, whose first byte is 0
/// for any record under 16 MiB — far above the protocol's limits.
const POINTER_TAG: u8 = 1;
const POINTER_LEN: usize = 1 + 8 + 4;

/// Zeros written past the end of the data whenever an append needs more room. Each growth costs
/// one extra write of this size, made durable by the fsync the append does anyway; between
/// growths (~1,500 records of 2.8 KB) fsyncs need no journal commit. Small enough that writing
/// it adds a few milliseconds to one commit, and that the bench's bytes on disk per record barely
/// notice it.
pub const GROW_BYTES: u64 = 4 * 1024 * 1024;

/// Zeros written at a time when clearing the tail on open.
const ZERO_STEP: usize = 1024 * 1024;

/// The zeros a growth writes, [`GROW_BYTES`] in steps of this: one static buffer rather than a
/// fresh 4 MiB allocation per growth, whose page faults and clearing were ~5% of the writer
/// thread's time in `tfx bench append` (perf, 2026-12-02).
static ZEROS: [u8; ZERO_STEP] = [0u8; ZERO_STEP];
const _: () = assert!(GROW_BYTES.is_multiple_of(ZERO_STEP as u64));

/// Where one chunk body lies in the value log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub offset: u64,
    pub len: u32,
}

impl Pointer {
    /// The `E` value that stands for this chunk in sled.
    pub fn encode(self) -> [u8; POINTER_LEN] {
        let mut v = [0u8; POINTER_LEN];
        v[0] = POINTER_TAG;
        v[1..9].copy_from_slice(&self.offset.to_be_bytes());
        v[9..].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// `Some` if `value` is a pointer, `None` if it is an inline chunk (store format 1).
    pub fn decode(value: &[u8]) -> Result<Option<Pointer>, ValueLogError> {
        match value.first() {
            Some(&POINTER_TAG) if value.len() == POINTER_LEN => Ok(Some(Pointer {
                offset: u64::from_be_bytes(value[1..9].try_into().unwrap_or_default()),
                len: u32::from_be_bytes(value[9..].try_into().unwrap_or_default()),
            })),
            Some(&POINTER_TAG) => Err(ValueLogError::BadPointer),
            _ => Ok(None),
        }
    }

    fn end(self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ValueLogError {
    #[error("value log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("value log is {found} bytes but the store says {valid} were written: the file was truncated or replaced")]
    Short { found: u64, valid: u64 },
    #[error("chunk at {offset}+{len} lies past the value log's valid end {valid}")]
    PastEnd { offset: u64, len: u32, valid: u64 },
    #[error("malformed chunk pointer")]
    BadPointer,
    #[error("chunk of {0} bytes is over the 4 GiB a pointer can address")]
    TooLarge(usize),
    #[error("value log frame at {offset}: {source}")]
    Frame {
        offset: u64,
        source: crate::frame::FrameError,
    },
    #[error("an earlier write to the value log failed; reopen the store (restart tfx-node)")]
    Failed,
}

/// The value log of one store. Appends are serialised (each one's valid length must reach sled in
/// order); reads take a shared lock that [`ValueLog::zero`] takes exclusively, so a reader that
/// looked up an old pointer never reads bytes being zeroed.
#[derive(Debug)]
pub struct ValueLog {
    file: File,
    path: String,
    /// Held by an append from its write until its commit, so frames reach sled in order.
    appending: Mutex<Appending>,
    /// Valid length: the end of the last frame whose writes sled holds (or is about to: an
    /// append publishes it just before its sled batch, and takes it back if that fails).
    /// Readers check pointers against it without waiting for an append's fsync.
    len: AtomicU64,
    zeroing: RwLock<()>,
}

#[derive(Debug)]
struct Appending {
    /// The file's length: bytes up to it exist on disk (frames and zeros), so writing below it
    /// allocates nothing.
    allocated: u64,
    /// An append failed: what lies past the valid length is unknown (a frame that may be
    /// durable, half a frame), so nothing more is written until the store is reopened, which
    /// replays or clears it.
    failed: bool,
}

/// A frame found past the valid length on open: sled may not hold its writes yet.
#[derive(Debug)]
pub struct Replay {
    pub writes: Writes,
    /// The valid length once it is applied.
    pub end: u64,
}

impl ValueLog {
    /// Opens (or creates, mode 0600) the value log in `dir`, whose first `valid` bytes sled's
    /// state accounts for, and of which the first `from` (≤ `valid`) sled holds with an fsync
    /// ([`crate::settled`]). Returns the intact frames written from `from` on, for the caller to
    /// apply to sled in order; everything past the last one (a torn frame, zeros grown ahead)
    /// is overwritten with zeros, so that no byte a peer supplied, such as the inside of a torn
    /// frame, is ever read as a frame by a later open.
    ///
    /// If the frames from `from` end before `valid` — which an fsync kept in order cannot
    /// cause — nothing below `valid` is touched: it logs that and replays from `valid` only.
    pub fn open(dir: &Path, from: u64, valid: u64) -> Result<(Self, Vec<Replay>), ValueLogError> {
        let path = dir.join(VLOG_FILE);
        let path_s = path.display().to_string();
        let io = |source| ValueLogError::Io {
            path: path_s.clone(),
            source,
        };
        let file = crate::fsutil::open_private_rw(&path).map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found < valid {
            return Err(ValueLogError::Short { found, valid });
        }
        let mut start = from.min(valid);
        let (mut replay, mut end) = intact_frames(&file, start, found, &io)?;
        if end < valid {
            tracing::warn!(
                from,
                frames_end = end,
                valid,
                "value-log frames from the settled mark stop short of sled's valid length; applying frames past the valid length only"
            );
            start = valid;
            (replay, end) = intact_frames(&file, start, found, &io)?;
        }
        if end < found {
            let zeros = vec![0u8; ZERO_STEP];
            let mut at = end;
            while at < found {
                let n = (found - at).min(ZERO_STEP as u64) as usize;
                file.write_all_at(&zeros[..n], at).map_err(io)?;
                at += n as u64;
            }
            file.sync_data().map_err(io)?;
        }
        let log = ValueLog {
            file,
            path: path_s,
            appending: Mutex::new(Appending {
                allocated: found,
                failed: false,
            }),
            len: AtomicU64::new(start),
            zeroing: RwLock::new(()),
        };
        Ok((log, replay))
    }

    fn io(&self, source: std::io::Error) -> ValueLogError {
        ValueLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Bytes in the file (valid length).
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the valid length after the frames [`ValueLog::open`] returned are applied to sled.
    pub fn replayed(&self, end: u64) {
        self.len.store(end, Ordering::Release);
    }

    /// Writes one frame — `bodies`, then the sled writes `writes_for` returns given the bodies'
    /// pointers — at the valid length and makes it durable; then runs `apply` with the writes and
    /// the new valid length, which `apply` must record after every other write of the frame (or
    /// in the same sled batch). `apply` runs under the append lock, so frames reach sled in the
    /// order they were written. From the `fdatasync` on the batch survives a crash: sled need not
    /// flush. A failure anywhere stops further appends until the store is reopened.
    pub fn append<T, E: From<ValueLogError>>(
        &self,
        bodies: &[Vec<u8>],
        writes_for: impl FnOnce(&[Pointer]) -> Writes,
        apply: impl FnOnce(&Writes, u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut state = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        if state.failed {
            return Err(ValueLogError::Failed.into());
        }
        let start = self.len();
        let mut pointers = Vec::with_capacity(bodies.len());
        let mut at = start + frame::BODIES_AT;
        for body in bodies {
            let n = u32::try_from(body.len()).map_err(|_| ValueLogError::TooLarge(body.len()))?;
            pointers.push(Pointer { offset: at, len: n });
            at += u64::from(n);
        }
        let writes = writes_for(&pointers);
        let written = frame::encode(bodies, &writes)
            .map_err(|e| ValueLogError::Frame {
                offset: start,
                source: e,
            })
            .and_then(|f| {
                // One write for the frame; when it reaches past the room grown so far, zeros
                // after it in the same fsync.
                let end = start + f.len() as u64;
                self.file.write_all_at(&f, start).map_err(|e| self.io(e))?;
                if end > state.allocated {
                    let mut at = end;
                    while at < end + GROW_BYTES {
                        self.file.write_all_at(&ZEROS, at).map_err(|e| self.io(e))?;
                        at += ZEROS.len() as u64;
                    }
                    state.allocated = end + GROW_BYTES;
                }
                self.file.sync_data().map_err(|e| self.io(e))?;
                Ok(end)
            });
        let end = match written {
            Ok(end) => end,
            Err(e) => {
                state.failed = true;
                return Err(e.into());
            }
        };
        // Published before the sled batch: once sled holds the pointers, a reader may follow
        // them at once, and must find the bytes inside the valid length.
        self.len.store(end, Ordering::Release);
        let out = apply(&writes, end);
        if out.is_err() {
            // The frame is durable and a reopen applies it; until then nothing is written after it.
            self.len.store(start, Ordering::Release);
            state.failed = true;
        }
        out
    }

    /// The valid length at a moment no append is between its frame's write and its sled batch:
    /// every frame below it has been applied to sled (not necessarily flushed).
    pub fn settled_len(&self) -> u64 {
        let _appending = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        self.len()
    }

    /// Overwrites with zeros the sled writes of every frame in `from..to` (both frame
    /// boundaries), keeping headers and bodies. Only for frames sled holds durably, which no open
    /// reads again: their writes repeat index keys — a subject index key holds a USCC — that a
    /// purge must not leave behind.
    pub fn scrub_writes(&self, from: u64, to: u64) -> Result<(), ValueLogError> {
        let mut at = from;
        let zeros = vec![0u8; ZERO_STEP];
        while at < to {
            let malformed = |what| ValueLogError::Frame {
                offset: at,
                source: frame::FrameError::Malformed(what),
            };
            let mut head = [0u8; frame::HEADER_LEN + 4];
            self.file
                .read_exact_at(&mut head, at)
                .map_err(|e| self.io(e))?;
            let header: &[u8; frame::HEADER_LEN] = head[..frame::HEADER_LEN]
                .try_into()
                .map_err(|_| malformed("header"))?;
            let len = frame::payload_len(header).ok_or_else(|| malformed("no frame here"))?;
            let bodies = u32::from_be_bytes([head[40], head[41], head[42], head[43]]);
            let end = at + frame::HEADER_LEN as u64 + u64::from(len);
            let mut w = at + frame::BODIES_AT + u64::from(bodies);
            if w > end || end > to {
                return Err(malformed("frame runs past the range"));
            }
            while w < end {
                let n = (end - w).min(ZERO_STEP as u64) as usize;
                self.file
                    .write_all_at(&zeros[..n], w)
                    .map_err(|e| self.io(e))?;
                w += n as u64;
            }
            at = end;
        }
        if to > from {
            self.file.sync_data().map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    /// A shared hold on the file's contents: take it before looking a pointer up in sled and
    /// keep it until the bytes are read.
    pub fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.zeroing.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk body at `p`. The caller holds [`ValueLog::reading`].
    pub fn read(&self, p: Pointer) -> Result<Vec<u8>, ValueLogError> {
        let valid = self.len();
        if p.end() > valid {
            return Err(ValueLogError::PastEnd {
                offset: p.offset,
                len: p.len,
                valid,
            });
        }
        let mut body = vec![0u8; p.len as usize];
        self.file
            .read_exact_at(&mut body, p.offset)
            .map_err(|e| self.io(e))?;
        Ok(body)
    }

    /// Overwrites the bodies at `pointers` with zeros and makes that durable. Only for chunks no
    /// durable pointer refers to any more. Waits for readers in flight.
    pub fn zero(&self, pointers: &[Pointer]) -> Result<(), ValueLogError> {
        if pointers.is_empty() {
            return Ok(());
        }
        let _exclusive = self.zeroing.write().unwrap_or_else(|p| p.into_inner());
        let valid = self.len();
        for p in pointers {
            // A pending zeroing recorded before a crash may name bytes past the valid length.
            let end = p.end().min(valid);
            if end > p.offset {
                let zeros = vec![0u8; (end - p.offset) as usize];
                self.file
                    .write_all_at(&zeros, p.offset)
                    .map_err(|e| self.io(e))?;
            }
        }
        self.file.sync_data().map_err(|e| self.io(e))
    }
}

/// The intact frames of `file` from `from` on (which must be a frame boundary), each with its
/// writes, and where the last one ends (`from` if there is none).
fn intact_frames(
    file: &File,
    from: u64,
    found: u64,
    io: &dyn Fn(std::io::Error) -> ValueLogError,
) -> Result<(Vec<Replay>, u64), ValueLogError> {
    let mut replay = Vec::new();
    let mut end = from;
    loop {
        let mut header = [0u8; frame::HEADER_LEN];
        if end + frame::HEADER_LEN as u64 > found {
            break;
        }
        file.read_exact_at(&mut header, end).map_err(io)?;
        let Some(len) = frame::payload_len(&header) else {
            break;
        };
        let frame_end = end + frame::HEADER_LEN as u64 + u64::from(len);
        if frame_end > found {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        file.read_exact_at(&mut payload, end + frame::HEADER_LEN as u64)
            .map_err(io)?;
        if !frame::intact(&header, &payload) {
            break;
        }
        let writes = frame::writes(&payload).map_err(|e| ValueLogError::Frame {
            offset: end,
            source: e,
        })?;
        replay.push(Replay {
            writes,
            end: frame_end,
        });
        end = frame_end;
    }
    Ok((replay, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_inline_chunks_are_told_apart() {
        let p = Pointer {
            offset: 0x0102_0304_0506_0708,
            len: 65_536,
        };
        assert_eq!(Pointer::decode(&p.encode()).unwrap(), Some(p));
        // An inline chunk starts with a u32 record length: first byte 0.
        assert_eq!(Pointer::decode(&[0, 0, 3, 200, 1, 2, 3]).unwrap(), None);
        assert!(matches!(
            Pointer::decode(&[POINTER_TAG, 1, 2]),
            Err(ValueLogError::BadPointer)
        ));
    }

    /// Appends one frame of `bodies` with a single sled write under `key`; returns the
    /// bodies' pointers and the new valid length.
    fn put(
        log: &ValueLog,
        bodies: &[&[u8]],
        key: &[u8],
    ) -> Result<(Vec<Pointer>, u64), ValueLogError> {
        let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
        let mut pointers = Vec::new();
        let end = log.append(
            &bodies,
            |p| {
                pointers = p.to_vec();
                let mut w = Writes::default();
                w.insert(key, b"v");
                w
            },
            |_, end| Ok::<_, ValueLogError>(end),
        )?;
        Ok((pointers, end))
    }

    /// A new value log in a temporary directory holding `bodies` in one frame, and their
    /// pointers.
    fn log_of(bodies: &[&[u8]]) -> (tempfile::TempDir, ValueLog, Vec<Pointer>) {
        let dir = tempfile::tempdir().unwrap();
        let (log, replay) = ValueLog::open(dir.path(), 0, 0).unwrap();
        assert!(replay.is_empty());
        let (p, _) = put(&log, bodies, b"k").unwrap();
        (dir, log, p)
    }

    fn file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join(VLOG_FILE)).unwrap().len()
    }

    #[test]
    fn frames_past_the_valid_length_are_replayed_and_the_rest_zeroed() {
        let (dir, log, a) = log_of(&[b"hello", b"world!"]);
        let e1 = log.len();
        assert_eq!(a[0].offset, frame::BODIES_AT);
        // The file grew ahead of the data, by zeros.
        assert_eq!(file_len(&dir), e1 + GROW_BYTES);
        let (b, e2) = put(&log, &[b"second"], b"b").unwrap();
        drop(log);
        // A crash while a third frame was being written: its first 60 bytes made it.
        let path = dir.path().join(VLOG_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let torn = bytes[e1 as usize..e1 as usize + 60].to_vec();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&torn, e2)
            .unwrap();
        // sled recorded only the first frame: the second is handed back, the torn one is not.
        let (log, replay) = ValueLog::open(dir.path(), e1, e1).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].end, e2);
        let mut w = Writes::default();
        w.insert(b"b", b"v");
        assert_eq!(replay[0].writes, w);
        assert_eq!(log.len(), e1, "valid once sled holds the writes");
        log.replayed(e2);
        assert_eq!(log.read(b[0]).unwrap(), b"second");
        assert_eq!(log.read(a[1]).unwrap(), b"world!");
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[e2 as usize..].iter().all(|b| *b == 0), "tail zeroed");
        drop(log);
        let (_log, replay) = ValueLog::open(dir.path(), e2, e2).unwrap();
        assert!(replay.is_empty());
        // A value log shorter than sled says is refused.
        let found = file_len(&dir);
        assert!(matches!(
            ValueLog::open(dir.path(), found + 1, found + 1),
            Err(ValueLogError::Short { found: f, valid: v }) if f == found && v == found + 1
        ));
    }

    #[test]
    fn a_failed_apply_stops_appends_until_the_log_is_reopened() {
        let (dir, log, p) = log_of(&[b"hello"]);
        let e1 = log.len();
        let failed: Result<(), ValueLogError> = log.append(
            &[b"lost".to_vec()],
            |_| Writes::default(),
            |_, _| Err(ValueLogError::BadPointer),
        );
        assert!(failed.is_err());
        assert_eq!(log.len(), e1);
        assert_eq!(log.read(p[0]).unwrap(), b"hello");
        assert!(matches!(
            put(&log, &[b"more"], b"m"),
            Err(ValueLogError::Failed)
        ));
        drop(log);
        // Its frame was durable before sled refused it: the reopen hands it back to apply.
        let (log, replay) = ValueLog::open(dir.path(), e1, e1).unwrap();
        assert_eq!(replay.len(), 1);
        log.replayed(replay[0].end);
        assert!(put(&log, &[b"more"], b"m").is_ok());
    }

    #[test]
    fn frames_from_the_settled_mark_are_replayed_and_nothing_below_the_valid_length_is_lost() {
        let (dir, log, _) = log_of(&[b"one"]);
        let e1 = log.len();
        let (_, e2) = put(&log, &[b"two"], b"b").unwrap();
        let (c, e3) = put(&log, &[b"three"], b"c").unwrap();
        drop(log);
        // sled says all three frames are in, but only the first with an fsync: the second and
        // third come back to be applied again.
        let (log, replay) = ValueLog::open(dir.path(), e1, e3).unwrap();
        assert_eq!(
            replay.iter().map(|r| r.end).collect::<Vec<_>>(),
            vec![e2, e3]
        );
        assert_eq!(log.len(), e1, "valid as the frames are applied again");
        log.replayed(e3);
        assert_eq!(log.read(c[0]).unwrap(), b"three");
        // A frame between the mark and the valid length no longer intact (cannot happen while
        // scrubs stay below the mark): frames are applied from the valid length only, and
        // nothing below it is zeroed.
        log.scrub_writes(e1, e2).unwrap();
        drop(log);
        let (log, replay) = ValueLog::open(dir.path(), e1, e3).unwrap();
        assert!(replay.is_empty());
        assert_eq!(log.len(), e3);
        assert_eq!(log.read(c[0]).unwrap(), b"three");
    }

    #[test]
    fn an_append_past_the_room_grows_the_file_again() {
        let (dir, log, _) = log_of(&[b"x"]);
        let big = vec![7u8; GROW_BYTES as usize + 10];
        let (p, end) = put(&log, &[&big], b"big").unwrap();
        assert!(end > GROW_BYTES);
        assert_eq!(file_len(&dir), end + GROW_BYTES);
        assert_eq!(log.read(p[0]).unwrap(), big);
    }

    #[test]
    fn scrubbing_zeroes_the_writes_of_whole_frames_only() {
        let (dir, log, a) = log_of(&[b"first body"]);
        let (b, end) = put(&log, &[b"second body"], b"Sa-subject-key").unwrap();
        let file = std::fs::read(dir.path().join(VLOG_FILE)).unwrap();
        let has = |f: &[u8], n: &[u8]| f.windows(n.len()).any(|w| w == n);
        assert!(has(&file, b"Sa-subject-key"));
        log.scrub_writes(0, end).unwrap();
        let file = std::fs::read(dir.path().join(VLOG_FILE)).unwrap();
        assert!(!has(&file, b"Sa-subject-key"));
        // Bodies stay readable, and headers stay: the frames can be walked again.
        assert_eq!(log.read(a[0]).unwrap(), b"first body");
        assert_eq!(log.read(b[0]).unwrap(), b"second body");
        log.scrub_writes(0, end).unwrap();
        // A range that does not start or end at a frame boundary is refused.
        assert!(matches!(
            log.scrub_writes(1, end),
            Err(ValueLogError::Frame { offset: 1, .. })
        ));
        assert!(log.scrub_writes(0, end - 1).is_err());
    }

    #[test]
    fn zeroing_overwrites_only_the_named_bytes() {
        let (dir, log, p) = log_of(&[b"secret", b"kept"]);
        log.zero(&p[..1]).unwrap();
        let file = std::fs::read(dir.path().join(VLOG_FILE)).unwrap();
        let at = |q: Pointer| &file[q.offset as usize..(q.offset + u64::from(q.len)) as usize];
        assert_eq!(at(p[0]), [0u8; 6]);
        assert_eq!(at(p[1]), b"kept");
        assert!(!file.windows(6).any(|w| w == b"secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(VLOG_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
