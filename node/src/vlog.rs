//! The value log: the bodies of stored records (the `E` chunks of [`crate::sled_store`]),
//! appended to one file beside sled, which keeps only where each chunk lies. sled 0.34 keeps
//! large pages it has read in memory — its LRU counts accesses per shard in blocks of 64 before
//! it evicts anything, and each of its 256 shards keeps a page however large — so a member that
//! served a catch-up out of 64 KiB chunk values grew to the size of its data (BENCHMARKS.md).
//! Bodies read from this file go through the kernel's page cache, which the kernel reclaims.
//!
//! Crash safety rests on one rule: **bytes are durable before sled can point at them.**
//! [`ValueLog::append_then`] writes bodies at the end of the file, `fdatasync`s it, and only then
//! runs the caller's sled batch, which records both the pointers and the log's new valid length.
//! On open, anything past the valid length sled holds — bodies written for a batch that never
//! became durable — is ignored and later overwritten.
//!
//! The file is grown ahead of its valid length by writing zeros ([`GROW_BYTES`] at a time, in the
//! same write and fsync as the batch that needed the room), so that the `fdatasync` of most
//! appends overwrites blocks the file already has: it then flushes data only, with no journal
//! commit for a new file size or newly allocated blocks, which halved its cost on the benchmark
//! host (ext4; 0.37 → 0.18 ms for 5 KB, 0.98 → 0.51 ms for 200 KB). `fallocate` would not do:
//! its blocks are "unwritten" until written, and converting them is a journal commit again.
//! Rewritten chunks (a back-fill or a purge) are appended anew and
//! the old bytes overwritten with zeros once sled's switch to the new pointer is durable
//! ([`ValueLog::zero`]), so a removed field does not linger in the file; the space is not reused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

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
}

/// The value log of one store. Appends are serialised (each one's valid length must reach sled in
/// order); reads take a shared lock that [`ValueLog::zero`] takes exclusively, so a reader that
/// looked up an old pointer never reads bytes being zeroed.
#[derive(Debug)]
pub struct ValueLog {
    file: File,
    path: String,
    /// Held by an append from its write until its commit, so valid lengths reach sled in order.
    /// Holds the file's length: bytes up to it exist on disk (data, zeros, or the tail of a batch
    /// that never became durable), so writing below it allocates nothing.
    appending: Mutex<u64>,
    /// Valid length: every byte below it is durable and was written for a pointer sled holds,
    /// held before a rewrite, or is about to hold (an append publishes it just before its
    /// commit, and takes it back if the commit fails). Readers check against it without waiting
    /// for an append's fsync.
    len: AtomicU64,
    zeroing: RwLock<()>,
}

impl ValueLog {
    /// Opens (or creates, mode 0600) the value log in `dir`, cutting it back to `valid` bytes —
    /// the length sled last recorded durably.
    pub fn open(dir: &Path, valid: u64) -> Result<Self, ValueLogError> {
        let path = dir.join(VLOG_FILE);
        let path_s = path.display().to_string();
        let io = |source| ValueLogError::Io {
            path: path_s.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found < valid {
            return Err(ValueLogError::Short { found, valid });
        }
        // Past `valid` lie zeros written ahead and perhaps the bodies of a batch sled never made
        // durable: no pointer reaches them, and the next append overwrites them.
        Ok(ValueLog {
            file,
            path: path_s,
            appending: Mutex::new(found),
            len: AtomicU64::new(valid),
            zeroing: RwLock::new(()),
        })
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

    /// Appends `bodies`, makes them durable, then runs `commit` with their pointers and the new
    /// valid length (which `commit` must record in the same sled batch as the pointers). The
    /// valid length stays advanced only if `commit` succeeds; bytes of a failed commit are
    /// overwritten by the next append (also after a reopen: no pointer reaches them).
    pub fn append_then<T, E: From<ValueLogError>>(
        &self,
        bodies: &[Vec<u8>],
        commit: impl FnOnce(&[Pointer], u64) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut allocated = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        let start = self.len();
        let mut pointers = Vec::with_capacity(bodies.len());
        let mut end = start;
        for body in bodies {
            let n = u32::try_from(body.len()).map_err(|_| ValueLogError::TooLarge(body.len()))?;
            pointers.push(Pointer {
                offset: end,
                len: n,
            });
            end += u64::from(n);
        }
        if end > start {
            // One write for the lot: bodies are chunk-sized, a batch's are contiguous.
            let all: Vec<u8> = bodies.concat();
            self.file
                .write_all_at(&all, start)
                .map_err(|e| self.io(e))?;
            if end > *allocated {
                let zeros = vec![0u8; GROW_BYTES as usize];
                self.file
                    .write_all_at(&zeros, end)
                    .map_err(|e| self.io(e))?;
                *allocated = end + GROW_BYTES;
            }
            self.file.sync_data().map_err(|e| self.io(e))?;
        }
        // Published before the commit: once sled holds the pointers, a reader may follow them
        // at once, and must find the bytes inside the valid length.
        self.len.store(end, Ordering::Release);
        let out = commit(&pointers, end);
        if out.is_err() {
            self.len.store(start, Ordering::Release);
        }
        out
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

    /// A new value log in a temporary directory holding `bodies`, and their pointers.
    fn log_of(bodies: &[&[u8]]) -> (tempfile::TempDir, ValueLog, Vec<Pointer>) {
        let dir = tempfile::tempdir().unwrap();
        let log = ValueLog::open(dir.path(), 0).unwrap();
        let bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
        let p = log
            .append_then(&bodies, |p, _| Ok::<_, ValueLogError>(p.to_vec()))
            .unwrap();
        (dir, log, p)
    }

    fn file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join(VLOG_FILE)).unwrap().len()
    }

    #[test]
    fn a_tail_no_commit_reached_is_overwritten_and_a_short_file_refused() {
        let (dir, log, p) = log_of(&[b"hello", b"world!"]);
        assert_eq!(log.len(), 11);
        // The file grew ahead of the data, by zeros.
        assert_eq!(file_len(&dir), 11 + GROW_BYTES);
        // A failed commit leaves the valid length where it was.
        let failed: Result<(), ValueLogError> =
            log.append_then(&[b"lost".to_vec()], |_, _| Err(ValueLogError::BadPointer));
        assert!(failed.is_err());
        assert_eq!(log.len(), 11);
        assert_eq!(log.read(p[1]).unwrap(), b"world!");
        drop(log);
        let log = ValueLog::open(dir.path(), 11).unwrap();
        assert_eq!(log.read(p[0]).unwrap(), b"hello");
        // The failed batch's bytes are on disk but past the valid length: never served.
        assert!(matches!(
            log.read(Pointer { offset: 11, len: 4 }),
            Err(ValueLogError::PastEnd { .. })
        ));
        assert!(matches!(
            log.read(Pointer { offset: 8, len: 4 }),
            Err(ValueLogError::PastEnd { .. })
        ));
        // The next append takes their place, inside the room already there.
        let again = log
            .append_then(&[b"again".to_vec()], |p, _| {
                Ok::<_, ValueLogError>(p.to_vec())
            })
            .unwrap();
        assert_eq!(again[0], Pointer { offset: 11, len: 5 });
        assert_eq!(log.read(again[0]).unwrap(), b"again");
        assert_eq!(file_len(&dir), 11 + GROW_BYTES);
        drop(log);
        let found = file_len(&dir);
        assert!(matches!(
            ValueLog::open(dir.path(), found + 1),
            Err(ValueLogError::Short { found: f, valid: v }) if f == found && v == found + 1
        ));
    }

    #[test]
    fn an_append_past_the_room_grows_the_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = ValueLog::open(dir.path(), 0).unwrap();
        let big = vec![7u8; GROW_BYTES as usize + 10];
        let p = log
            .append_then(&[b"x".to_vec(), big.clone()], |p, _| {
                Ok::<_, ValueLogError>(p.to_vec())
            })
            .unwrap();
        assert_eq!(log.len(), GROW_BYTES + 11);
        assert_eq!(file_len(&dir), 2 * GROW_BYTES + 11);
        assert_eq!(log.read(p[1]).unwrap(), big);
    }

    #[test]
    fn zeroing_overwrites_only_the_named_bytes() {
        let (dir, log, p) = log_of(&[b"secret", b"kept"]);
        log.zero(&p[..1]).unwrap();
        let file = std::fs::read(dir.path().join(VLOG_FILE)).unwrap();
        assert_eq!(&file[..10], b"\0\0\0\0\0\0kept");
        assert!(file[10..].iter().all(|b| *b == 0));
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
