//! The record-id index: record id → (origin, seq), kept in a file of its own (`records.idx`)
//! beside sled instead of as one sled key per record (store format ≤ 3). Record ids are
//! SHA-256 hashes, so their sled keys landed at random places in the tree: each cost a sled
//! insert (~12–15 µs whatever its size) that grew to 15–23 µs as a store outgrew sled's cache
//! (`tools/examples/sled_growth.rs`), and it was one of the two sled keys every record costs.
//! Here an insert is a `pread` and a `pwrite` of one slot, and the file lives in the kernel's
//! page cache, not in the node's heap.
//!
//! The file is a header page and then **levels** of open-addressed slots (linear probing): level
//! k holds 2^(16+k) slots, and a new level is added when the newest one is 7/10 full. Inserts go
//! to the newest level only, lookups try the levels newest first. A level is never rehashed, so
//! growing never rewrites or buffers what is there (rehashing 1M entries in memory would have
//! cost the node 64 MiB at a time, and in place, seconds of stalled appends); at 1M records there
//! are five levels and 65 bytes of file per record (`tools/examples/id_index.rs`: 2.0–2.9 µs per
//! insert over the first million, against 7.3–17.6 for the sled keys it replaces).
//!
//! A slot is 32 bytes: the first 24 bytes of the record id, the origin's number (u16, 1 for the
//! first origin the store saw; 0 marks an empty slot) and the sequence number (u48), big-endian.
//! 24 bytes of a SHA-256 make two records sharing them a 2^96 search. The slot for an id is
//! chosen by SipHash-2-4 under a random key in the header, so that a member cannot grind record
//! ids that pile up in one run of slots. The origin numbers themselves live in sled (`O` keys of
//! [`crate::sled_store`]) and are registered here as they are read or written.
//!
//! Durability rides on the value log ([`crate::vlog`]): each insert is a write of the frame it
//! came from, the file is fsynced when the store settles, and opening the store inserts again
//! the entries of every frame it applies again (an insert finding its entry already there does
//! nothing). Entries are only ever added, each in an aligned 32-byte slot that was zero, so a
//! page torn by a power loss holds every entry that was fsynced. A file that is missing or
//! malformed is rebuilt from the records themselves ([`crate::sled_store`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

use tfx_protocol::ids::{LogIndex, MemberId, RecordId};

/// File name of the index inside the store directory.
pub const INDEX_FILE: &str = "records.idx";

const MAGIC: [u8; 8] = *b"TFXIDX\x00\x01";
/// The header: magic, the 16-byte hash key, zeros. A whole page, so that slots never straddle one.
const HEADER_LEN: u64 = 4096;
const SLOT_LEN: usize = 32;
/// Bytes of the record id a slot keeps.
const ID_PREFIX_LEN: usize = 24;
/// Level 0 has 2^16 slots (2 MiB of file).
const FIRST_LEVEL_BITS: u32 = 16;
/// Levels a file may have: 2^(16+40) slots is past any disk, so more means a corrupt length.
const LEVELS_MAX: u32 = 40;
/// Slots read at a time while probing: a run of linear probes rarely passes 16 at 7/10 load.
const PROBE_SLOTS: usize = 16;
/// Sequence numbers a slot can hold (u48).
pub const SEQ_MAX: u64 = (1 << 48) - 1;

#[derive(Debug, thiserror::Error)]
pub enum IdIndexError {
    #[error("record-id index {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("record-id index: sequence number {0} is past the index's limit of 2^48 - 1")]
    SeqTooLarge(u64),
    #[error("record-id index: a slot names origin number {0}, which the store never assigned")]
    UnknownOrigin(u16),
    #[error("record-id index: origin number {0} is assigned twice")]
    OriginTwice(u16),
    #[error(
        "record-id index: the store holds records of 65,535 origins, as many as it can number"
    )]
    TooManyOrigins,
}

/// The record-id index of one store.
#[derive(Debug)]
pub struct IdIndex {
    file: File,
    path: String,
    key: (u64, u64),
    /// Write-locked while inserting, so a lookup never reads a slot half-written.
    levels: RwLock<Levels>,
    origins: RwLock<Origins>,
    /// In `records.idx.new`, not yet put in place ([`IdIndex::finish`]).
    building: bool,
}

fn building_path(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("{INDEX_FILE}.new"))
}

#[derive(Debug, Clone, Copy)]
struct Levels {
    count: u32,
    /// Entries in the newest level.
    newest_entries: u64,
}

#[derive(Debug, Default)]
struct Origins {
    numbers: HashMap<MemberId, u16>,
    /// `names[n - 1]` is origin number n.
    names: Vec<Option<MemberId>>,
}

/// One entry to insert: the record id, its origin's number and its sequence number.
pub type Entry = (RecordId, u16, u64);

fn level_slots(level: u32) -> u64 {
    1 << (FIRST_LEVEL_BITS + level)
}

/// Where level `level` starts; also the file length with `level` levels.
fn level_offset(level: u32) -> u64 {
    HEADER_LEN + SLOT_LEN as u64 * (level_slots(level) - level_slots(0))
}

impl IdIndex {
    /// Opens the index in `dir`. When `records.idx` is missing or not a valid index, the index
    /// returned is a fresh, empty one **being built** (in `records.idx.new`) and the second value
    /// says why: the caller fills it from the records and then calls [`IdIndex::finish`], which
    /// puts it in place. Until then a crash leaves the old file (or none), so the next open
    /// builds it again rather than trusting a half-filled index.
    pub fn open(dir: &Path) -> Result<(IdIndex, Option<String>), IdIndexError> {
        let path = dir.join(INDEX_FILE);
        let path_s = path.display().to_string();
        let io = |source| IdIndexError::Io {
            path: path_s.clone(),
            source,
        };
        let why = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_string()),
            Err(e) => return Err(io(e)),
            Ok(_) => None,
        };
        if let Some(why) = why {
            return Ok((Self::create(dir)?, Some(why)));
        }
        let file = crate::fsutil::open_private_rw(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = [0u8; 24];
        let levels = (1..=LEVELS_MAX).find(|&l| level_offset(l) == len);
        let read = match file.read_exact_at(&mut header, 0) {
            Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(io(e)),
            r => r,
        };
        let why = match (levels, read) {
            (_, Err(_)) => Some(format!("{len} bytes, too short for its header")),
            (_, Ok(())) if header[..8] != MAGIC => Some("not a record-id index".to_string()),
            (None, Ok(())) => Some(format!("{len} bytes, not a whole number of levels")),
            (Some(_), Ok(())) => None,
        };
        if let Some(why) = why {
            drop(file);
            return Ok((Self::create(dir)?, Some(why)));
        }
        let count = levels.unwrap_or(1);
        let index = IdIndex {
            file,
            path: path_s,
            key: hash_key(&header[8..24]),
            levels: RwLock::new(Levels {
                count,
                newest_entries: 0,
            }),
            origins: RwLock::default(),
            building: false,
        };
        let entries = index.occupied(count - 1)?;
        index.write_levels().newest_entries = entries;
        Ok((index, None))
    }

    /// An empty index of one level and a fresh key in `records.idx.new`, being built: see
    /// [`IdIndex::finish`].
    fn create(dir: &Path) -> Result<IdIndex, IdIndexError> {
        use ring::rand::SecureRandom;
        let tmp = building_path(dir);
        let path_s = tmp.display().to_string();
        let io = |source| IdIndexError::Io {
            path: path_s.clone(),
            source,
        };
        let mut key = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| {
                io(std::io::Error::other(
                    "the system random generator is unavailable",
                ))
            })?;
        let mut header = vec![0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(&MAGIC);
        header[8..24].copy_from_slice(&key);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let file = crate::fsutil::open_private_rw(&tmp).map_err(io)?;
        file.write_all_at(&header, 0).map_err(io)?;
        // The slots are zeros the file system need not store until they are written.
        file.set_len(level_offset(1)).map_err(io)?;
        Ok(IdIndex {
            file,
            path: path_s,
            key: hash_key(&key),
            levels: RwLock::new(Levels {
                count: 1,
                newest_entries: 0,
            }),
            origins: RwLock::default(),
            building: true,
        })
    }

    /// Starts building the index afresh (a new file, a new key) in `records.idx.new`, keeping
    /// the origins registered: for a rebuild from the records, finished by [`IdIndex::finish`].
    pub fn reset(&mut self, dir: &Path) -> Result<(), IdIndexError> {
        let fresh = Self::create(dir)?;
        self.file = fresh.file;
        self.key = fresh.key;
        self.path = fresh.path;
        self.building = true;
        *self.write_levels() = *fresh.levels.read().unwrap_or_else(|p| p.into_inner());
        Ok(())
    }

    /// Puts an index being built in place as `records.idx`, durably: its contents, then the
    /// rename, then the directory. Does nothing for an index opened in place.
    pub fn finish(&mut self, dir: &Path) -> Result<(), IdIndexError> {
        if !self.building {
            return Ok(());
        }
        let path = dir.join(INDEX_FILE);
        self.file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(building_path(dir), &path).map_err(|e| self.io(e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        self.path = path.display().to_string();
        self.building = false;
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> IdIndexError {
        IdIndexError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_levels(&self) -> std::sync::RwLockWriteGuard<'_, Levels> {
        self.levels.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that origin number `n` is `origin` (read from, or just written to, sled).
    pub fn register(&self, n: u16, origin: MemberId) -> Result<(), IdIndexError> {
        let mut o = self.origins.write().unwrap_or_else(|p| p.into_inner());
        let at = usize::from(n)
            .checked_sub(1)
            .ok_or(IdIndexError::UnknownOrigin(0))?;
        if o.names.len() <= at {
            o.names.resize(at + 1, None);
        }
        match &o.names[at] {
            Some(m) if *m == origin => return Ok(()),
            Some(_) => return Err(IdIndexError::OriginTwice(n)),
            None => {}
        }
        o.names[at] = Some(origin.clone());
        o.numbers.insert(origin, n);
        Ok(())
    }

    /// Origin `origin`'s number, if it has one.
    pub fn origin_number(&self, origin: &MemberId) -> Option<u16> {
        let o = self.origins.read().unwrap_or_else(|p| p.into_inner());
        o.numbers.get(origin).copied()
    }

    /// The number the next new origin gets, or `None` once all 65,535 are taken.
    pub fn next_origin_number(&self) -> Option<u16> {
        let o = self.origins.read().unwrap_or_else(|p| p.into_inner());
        u16::try_from(o.names.len() + 1).ok()
    }

    /// The slot hash of `id`.
    fn hash(&self, id: &RecordId) -> u64 {
        #[allow(deprecated)] // SipHasher is SipHash-2-4, stable across Rust versions.
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0, self.key.1);
        std::hash::Hasher::write(&mut h, &id.0);
        std::hash::Hasher::finish(&h)
    }

    /// Visits the slots of `level` from `hash`'s home on, in probe order, until `f` returns
    /// `Some` or an empty slot is reached (then `f` sees it last). Returns `f`'s answer and the
    /// slot it gave it for.
    fn probe<T>(
        &self,
        level: u32,
        hash: u64,
        mut f: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<Option<(T, u64)>, IdIndexError> {
        let slots = level_slots(level);
        let mut at = hash >> (64 - (FIRST_LEVEL_BITS + level));
        let mut buf = [0u8; PROBE_SLOTS * SLOT_LEN];
        let mut seen = 0u64;
        while seen < slots {
            let n = (slots - at).min(PROBE_SLOTS as u64) as usize;
            let bytes = &mut buf[..n * SLOT_LEN];
            self.file
                .read_exact_at(bytes, level_offset(level) + at * SLOT_LEN as u64)
                .map_err(|e| self.io(e))?;
            for (i, slot) in bytes.chunks_exact(SLOT_LEN).enumerate() {
                if let Some(t) = f(slot) {
                    return Ok(Some((t, at + i as u64)));
                }
                if slot_empty(slot) {
                    return Ok(None);
                }
            }
            seen += n as u64;
            at = (at + n as u64) % slots;
        }
        Ok(None)
    }

    /// The (origin number, seq) stored for `id` (whose slot hash is `hash`) in `level`.
    fn find_in(
        &self,
        level: u32,
        hash: u64,
        id: &RecordId,
    ) -> Result<Option<(u16, u64)>, IdIndexError> {
        let prefix = &id.0[..ID_PREFIX_LEN];
        Ok(self
            .probe(level, hash, |slot| {
                (!slot_empty(slot) && &slot[..ID_PREFIX_LEN] == prefix).then(|| decode(slot))
            })?
            .map(|(found, _)| found))
    }

    /// Whether `id` is in a level below the newest of `count`.
    fn in_older(&self, count: u32, hash: u64, id: &RecordId) -> Result<bool, IdIndexError> {
        for level in 0..count - 1 {
            if self.find_in(level, hash, id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Where record `id` is: its origin and sequence number.
    pub fn get(&self, id: &RecordId) -> Result<Option<(MemberId, LogIndex)>, IdIndexError> {
        // Held through the probes: an insert's `pwrite` is not atomic against a `pread`.
        let levels = self.levels.read().unwrap_or_else(|p| p.into_inner());
        let hash = self.hash(id);
        for level in (0..levels.count).rev() {
            if let Some((n, seq)) = self.find_in(level, hash, id)? {
                let o = self.origins.read().unwrap_or_else(|p| p.into_inner());
                let origin = o
                    .names
                    .get(usize::from(n).wrapping_sub(1))
                    .cloned()
                    .flatten()
                    .ok_or(IdIndexError::UnknownOrigin(n))?;
                return Ok(Some((origin, LogIndex(seq))));
            }
        }
        Ok(None)
    }

    /// Inserts `entries`. An entry already in the newest level is skipped; with `check_older`
    /// (applying frames again on open) so is one already in an older level. Not yet durable:
    /// see [`IdIndex::sync`].
    pub fn insert(&self, entries: &[Entry], check_older: bool) -> Result<(), IdIndexError> {
        let mut levels = self.write_levels();
        for (id, origin, seq) in entries {
            if *seq > SEQ_MAX {
                return Err(IdIndexError::SeqTooLarge(*seq));
            }
            if *origin == 0 {
                // 0 marks an empty slot: the entry would be lost.
                return Err(IdIndexError::UnknownOrigin(0));
            }
            let hash = self.hash(id);
            if check_older && self.in_older(levels.count, hash, id)? {
                continue;
            }
            if (levels.newest_entries + 1) * 10 > level_slots(levels.count - 1) * 7 {
                self.add_level(&mut levels)?;
            }
            let newest = levels.count - 1;
            let prefix = &id.0[..ID_PREFIX_LEN];
            let found = self.probe(newest, hash, |slot| {
                if slot_empty(slot) {
                    Some(false)
                } else if &slot[..ID_PREFIX_LEN] == prefix {
                    Some(true)
                } else {
                    None
                }
            })?;
            match found {
                Some((true, _)) => continue, // already there: a frame applied again
                Some((false, at)) => {
                    let mut slot = [0u8; SLOT_LEN];
                    slot[..ID_PREFIX_LEN].copy_from_slice(prefix);
                    slot[24..26].copy_from_slice(&origin.to_be_bytes());
                    slot[26..].copy_from_slice(&seq.to_be_bytes()[2..]);
                    self.file
                        .write_all_at(&slot, level_offset(newest) + at * SLOT_LEN as u64)
                        .map_err(|e| self.io(e))?;
                    levels.newest_entries += 1;
                }
                // Cannot happen below 7/10 load: a full level has no empty slot to stop at.
                None => return Err(self.io(std::io::Error::other("level full"))),
            }
        }
        Ok(())
    }

    /// Adds an empty level twice the size of the newest, durably (the file's new length).
    fn add_level(&self, levels: &mut Levels) -> Result<(), IdIndexError> {
        if levels.count >= LEVELS_MAX {
            return Err(self.io(std::io::Error::other("too many levels")));
        }
        self.file
            .set_len(level_offset(levels.count + 1))
            .map_err(|e| self.io(e))?;
        self.file.sync_all().map_err(|e| self.io(e))?;
        levels.count += 1;
        levels.newest_entries = 0;
        Ok(())
    }

    /// Entries in `level`, counted by reading it.
    fn occupied(&self, level: u32) -> Result<u64, IdIndexError> {
        let mut buf = vec![0u8; 1 << 20];
        let end = level_offset(level + 1);
        let mut at = level_offset(level);
        let mut n = 0u64;
        while at < end {
            let len = ((end - at) as usize).min(buf.len());
            self.file
                .read_exact_at(&mut buf[..len], at)
                .map_err(|e| self.io(e))?;
            n += buf[..len]
                .chunks_exact(SLOT_LEN)
                .filter(|s| !slot_empty(s))
                .count() as u64;
            at += len as u64;
        }
        Ok(n)
    }

    /// Makes every insert so far durable.
    pub fn sync(&self) -> Result<(), IdIndexError> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    /// The file's length (its slots are written sparsely as records arrive).
    pub fn len_on_disk(&self) -> u64 {
        level_offset(self.levels.read().unwrap_or_else(|p| p.into_inner()).count)
    }
}

/// The SipHash key from 16 key bytes (this index's header; the subject index's `Mslots`).
pub(crate) fn hash_key(bytes: &[u8]) -> (u64, u64) {
    let half = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    (half(&bytes[..8]), half(&bytes[8..16]))
}

fn slot_empty(slot: &[u8]) -> bool {
    slot[24..26] == [0, 0]
}

fn decode(slot: &[u8]) -> (u16, u64) {
    let origin = u16::from_be_bytes([slot[24], slot[25]]);
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&slot[26..32]);
    (origin, u64::from_be_bytes(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RecordId {
        RecordId(tfx_protocol::ids::sha256(&n.to_be_bytes()))
    }

    fn member(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    fn opened(dir: &Path) -> IdIndex {
        let (mut index, _) = IdIndex::open(dir).unwrap();
        index.finish(dir).unwrap();
        index.register(1, member("bank-a")).unwrap();
        index.register(2, member("pbc-chengdu")).unwrap();
        index
    }

    #[test]
    fn finds_what_it_holds_across_levels_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let index = opened(dir.path());
        // Past level 0's 7/10 of 65,536 slots, so a second level is made.
        let n = 60_000u64;
        let entries: Vec<Entry> = (0..n).map(|i| (id(i), 1 + (i % 2) as u16, i)).collect();
        index.insert(&entries, false).unwrap();
        assert_eq!(index.levels.read().unwrap().count, 2);
        assert_eq!(index.len_on_disk(), level_offset(2));
        for i in (0..n).step_by(97) {
            let origin = if i % 2 == 0 { "bank-a" } else { "pbc-chengdu" };
            assert_eq!(
                index.get(&id(i)).unwrap(),
                Some((member(origin), LogIndex(i)))
            );
        }
        assert_eq!(index.get(&id(n)).unwrap(), None);
        index.sync().unwrap();
        drop(index);

        let index = opened(dir.path());
        assert_eq!(
            index.get(&id(12_345)).unwrap(),
            Some((member("pbc-chengdu"), LogIndex(12_345)))
        );
        // Applying the same entries again (frames replayed on open) adds nothing.
        let before = index.levels.read().unwrap().newest_entries;
        index.insert(&entries[..1_000], true).unwrap();
        index.insert(&entries[59_000..], false).unwrap();
        assert_eq!(index.levels.read().unwrap().newest_entries, before);
    }

    #[test]
    fn a_malformed_file_is_replaced_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (index, why) = IdIndex::open(dir.path()).unwrap();
        assert_eq!(why.as_deref(), Some("missing"));
        index.register(1, member("bank-a")).unwrap();
        index.insert(&[(id(1), 1, 1)], false).unwrap();
        drop(index);
        // Never finished (a crash while building): not trusted, built again.
        let (mut index, why) = IdIndex::open(dir.path()).unwrap();
        assert_eq!(why.as_deref(), Some("missing"));
        index.register(1, member("bank-a")).unwrap();
        index.insert(&[(id(1), 1, 1)], false).unwrap();
        index.finish(dir.path()).unwrap();
        drop(index);
        let (index, why) = IdIndex::open(dir.path()).unwrap();
        assert_eq!(why, None);
        index.register(1, member("bank-a")).unwrap();
        assert_eq!(
            index.get(&id(1)).unwrap(),
            Some((member("bank-a"), LogIndex(1)))
        );
        drop(index);

        let path = dir.path().join(INDEX_FILE);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(level_offset(1) - 1).unwrap();
        drop(f);
        let (index, why) = IdIndex::open(dir.path()).unwrap();
        assert!(why.unwrap().contains("not a whole number of levels"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            level_offset(1) - 1,
            "the damaged file stays until a rebuilt one replaces it"
        );
        index.register(1, member("bank-a")).unwrap();
        assert_eq!(index.get(&id(1)).unwrap(), None, "a fresh, empty index");

        std::fs::write(&path, vec![7u8; level_offset(1) as usize]).unwrap();
        let (mut index, why) = IdIndex::open(dir.path()).unwrap();
        assert_eq!(why.as_deref(), Some("not a record-id index"));
        index.finish(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_what_a_slot_cannot_hold_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let index = opened(dir.path());
        assert!(matches!(
            index.insert(&[(id(1), 1, SEQ_MAX + 1)], false),
            Err(IdIndexError::SeqTooLarge(_))
        ));
        assert!(matches!(
            index.insert(&[(id(1), 0, 1)], false),
            Err(IdIndexError::UnknownOrigin(0))
        ));
        index.insert(&[(id(2), 3, 5)], false).unwrap();
        assert!(matches!(
            index.get(&id(2)),
            Err(IdIndexError::UnknownOrigin(3))
        ));
        assert!(matches!(
            index.register(1, member("bank-b")),
            Err(IdIndexError::OriginTwice(1))
        ));
        index.register(1, member("bank-a")).unwrap();
        assert_eq!(index.next_origin_number(), Some(3));
    }
}
