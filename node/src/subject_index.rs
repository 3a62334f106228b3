//! The subject index: the records under each subject (a USCC, or a pseudonym where this holder
//! was not disclosed the USCC), in `issued_at, origin, seq` order, for queries by subject
//! ([`crate::sled_store`]). It lives in sled, but not as one sled key per record, which is how
//! store format 4 kept it (`S‖len‖subject‖tail` → kind byte): such a key landed at one of as
//! many places as there are subjects, and at a million records leaving that insert out saved a
//! catching-up member 16–34 µs of CPU per record, a third to a half of what it spent
//! (BENCHMARKS.md, "The subject index in buckets").
//!
//! Subjects are hashed (SipHash-2-4 under a random per-store key, kept at `Mslots`) to one of
//! [`SLOTS`] **slots**, and a slot's entries are kept in time order in **buckets**: the sled key
//! is `s‖slot u16‖` the bucket's first entry, and the value is up to [`BUCKET_ENTRIES_MAX`]
//! entries, sorted, each `issued_at u64, origin len u8 + bytes, seq u64` (the **tail**), then
//! `subject len u8 + bytes` and a kind byte. New records are the newest, so they land at the end
//! of their slot: one bucket rewrite takes every new entry of a slot at once. A query reads its
//! subject's slot from `since` on and skips the other subjects in it (about a 2,048th of the
//! records; a keyed hash, so no member can pile subjects into one slot).
//!
//! A bucket holds the entries from its key up to the next bucket's key; entries outside that
//! range are leftovers of a merge a crash interrupted and are ignored. A merge's writes are
//! planned in two phases, made durable in between when the second relies on the first
//! ([`Plan`]), so that whatever part of them sled keeps through a crash or a power loss, every
//! entry merged before stays in range of a bucket that holds it.
//!
//! Applied entries are **staged** in memory first — a frame still carries each record's entry as
//! a format-4 write (`S‖len‖subject‖tail`), which applying the frame sends here, not to sled —
//! and merged into their buckets when the store settles, or sooner past
//! [`STAGED_ENTRIES_MAX`]. Staged entries need no durability of their own: the value-log frames
//! they came from are applied again on open from the settled mark, which a settle records only
//! after merging ([`crate::settled`]), and merging an entry twice changes nothing. Scans read
//! the buckets and the staged entries together, and a merge holds them off, so a query never
//! sees a bucket half rewritten.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

/// sled key prefix of the buckets.
pub const PREFIX: u8 = b's';

/// Prefix of store format 4's keys, and of the index writes frames carry.
pub const FRAME_PREFIX: u8 = b'S';

/// sled key of the slot hash's key.
const SLOT_KEY: &[u8] = b"Mslots";

/// Slots subjects hash to. More slots put fewer entries into one bucket rewrite when the store
/// settles (a catch-up settles every second, ~25,000 records); fewer make a query skip more
/// entries of other subjects: ~500 per query at a million records.
pub const SLOTS: u16 = 2048;

/// Entries per bucket at most: rewriting a bucket (~3 KiB at this size) is one sled write, and a
/// query reads at most one bucket's worth of entries before its `since`.
pub const BUCKET_ENTRIES_MAX: usize = 64;

/// Bytes of entries per bucket at most (origin ids and subjects may be up to 255 bytes each).
pub const BUCKET_BYTES_MAX: usize = 4096;

/// Staged entries that make the next apply merge at once rather than wait for the store to
/// settle: ~150 bytes of memory each.
pub const STAGED_ENTRIES_MAX: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum SubjectIndexError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("subject index: {0}")]
    Corrupt(&'static str),
    #[error("subject index: the system random generator is unavailable")]
    NoRandom,
}

/// Staged changes: bucket entry key (`s‖slot‖tail‖subject`) → kind, or `None` for removed.
type Staged = BTreeMap<Vec<u8>, Option<u8>>;

/// One entry: its key (tail and subject) and kind byte.
type Entry = (Vec<u8>, u8);

/// The subject index of one store: the slot hash's key, the staged entries and the lock
/// between merges and scans.
#[derive(Debug)]
pub struct SubjectIndex {
    key: (u64, u64),
    slots: u16,
    staged: Mutex<Staged>,
    /// Written by a merge for as long as it rewrites buckets, read by scans.
    buckets: RwLock<()>,
}

/// Length of the tail at the start of `b`: `issued_at u64, origin len u8 + bytes, seq u64`.
fn tail_len(b: &[u8]) -> Result<usize, SubjectIndexError> {
    let origin = *b.get(8).ok_or(SubjectIndexError::Corrupt("short entry"))?;
    let len = 8 + 1 + usize::from(origin) + 8;
    if b.len() < len {
        return Err(SubjectIndexError::Corrupt("short entry"));
    }
    Ok(len)
}

/// An entry key's tail and subject.
fn split_entry(b: &[u8]) -> Result<(&[u8], &[u8]), SubjectIndexError> {
    let tail = tail_len(b)?;
    let len = usize::from(
        *b.get(tail)
            .ok_or(SubjectIndexError::Corrupt("short entry"))?,
    );
    let subject = b
        .get(tail + 1..tail + 1 + len)
        .ok_or(SubjectIndexError::Corrupt("short entry"))?;
    Ok((&b[..tail], subject))
}

/// The entries of a bucket's value.
fn decode(value: &[u8]) -> Result<Vec<Entry>, SubjectIndexError> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (tail, subject) = split_entry(rest)?;
        let len = tail.len() + 1 + subject.len();
        let kind = *rest
            .get(len)
            .ok_or(SubjectIndexError::Corrupt("entry without a kind"))?;
        out.push((rest[..len].to_vec(), kind));
        rest = &rest[len + 1..];
    }
    Ok(out)
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.iter().map(|(e, _)| e.len() + 1).sum());
    for (entry, kind) in entries {
        v.extend_from_slice(entry);
        v.push(*kind);
    }
    v
}

/// The first key at or after `from` that starts with `prefix`, with its value.
fn first_from(
    db: &sled::Db,
    from: Bound<&[u8]>,
    prefix: &[u8],
) -> Result<Option<(sled::IVec, sled::IVec)>, SubjectIndexError> {
    Ok(db
        .range::<&[u8], _>((from, Bound::Unbounded))
        .next()
        .transpose()?
        .filter(|(k, _)| k.starts_with(prefix)))
}

/// The bucket whose range holds `key` (of the slot `prefix`): the last bucket at or before it,
/// else the slot's first bucket (which then takes entries before its key).
fn covering(
    db: &sled::Db,
    prefix: &[u8],
    key: &[u8],
) -> Result<Option<(sled::IVec, sled::IVec)>, SubjectIndexError> {
    // Every key between `prefix` and `key` starts with `prefix`, as `key` does.
    match db.range(prefix..=key).next_back().transpose()? {
        Some(kv) => Ok(Some(kv)),
        None => first_from(db, Bound::Included(prefix), prefix),
    }
}

impl SubjectIndex {
    /// The index of the store `db`, with its slot hash key (made the first time).
    pub fn open(db: &sled::Db) -> Result<SubjectIndex, SubjectIndexError> {
        let key = match db.get(SLOT_KEY)? {
            Some(k) => <[u8; 16]>::try_from(k.as_ref())
                .map_err(|_| SubjectIndexError::Corrupt("malformed slot key"))?,
            None => {
                use ring::rand::SecureRandom;
                let mut k = [0u8; 16];
                ring::rand::SystemRandom::new()
                    .fill(&mut k)
                    .map_err(|_| SubjectIndexError::NoRandom)?;
                // Written before any bucket, so sled (which keeps a prefix of its writes)
                // never holds buckets without it.
                db.insert(SLOT_KEY, &k[..])?;
                k
            }
        };
        Ok(Self::with_key(key, SLOTS))
    }

    fn with_key(key: [u8; 16], slots: u16) -> SubjectIndex {
        SubjectIndex {
            key: crate::idindex::hash_key(&key),
            slots,
            staged: Mutex::default(),
            buckets: RwLock::default(),
        }
    }

    /// `s‖slot`: the key prefix of `subject`'s slot.
    fn slot_prefix(&self, subject: &[u8]) -> [u8; 3] {
        #[allow(deprecated)] // SipHasher is SipHash-2-4, stable across Rust versions.
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0, self.key.1);
        std::hash::Hasher::write(&mut h, subject);
        let slot = (std::hash::Hasher::finish(&h) % u64::from(self.slots)) as u16;
        let [a, b] = slot.to_be_bytes();
        [PREFIX, a, b]
    }

    /// Stages a frame's write to the index: `key` as format 4 held it in sled
    /// (`S‖len‖subject‖tail`), and the kind byte, or `None` for a removal.
    pub fn stage(&self, key: &[u8], kind: Option<&[u8]>) -> Result<(), SubjectIndexError> {
        let (subject, tail) = match key {
            [FRAME_PREFIX, len, rest @ ..] if rest.len() > usize::from(*len) => {
                rest.split_at(usize::from(*len))
            }
            _ => return Err(SubjectIndexError::Corrupt("malformed key")),
        };
        if tail_len(tail)? != tail.len() {
            return Err(SubjectIndexError::Corrupt("malformed key"));
        }
        let kind = match kind {
            Some([k]) => Some(*k),
            Some(_) => return Err(SubjectIndexError::Corrupt("entry value is not a kind byte")),
            None => None,
        };
        let mut k = Vec::with_capacity(3 + key.len());
        k.extend_from_slice(&self.slot_prefix(subject));
        k.extend_from_slice(tail);
        k.push(subject.len() as u8);
        k.extend_from_slice(subject);
        self.lock_staged().insert(k, kind);
        Ok(())
    }

    /// Entries staged and not yet merged.
    pub fn staged_len(&self) -> usize {
        self.lock_staged().len()
    }

    fn lock_staged(&self) -> std::sync::MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges every staged entry into its bucket in `db` (not flushed: the caller settles).
    /// `durable` makes sled's writes so far durable (flush and fsync); it is called between the
    /// merge's two phases when the second relies on the first ([`Plan`]). Returns the entries
    /// merged.
    pub fn merge<E: From<SubjectIndexError>>(
        &self,
        db: &sled::Db,
        mut durable: impl FnMut() -> Result<(), E>,
    ) -> Result<usize, E> {
        self.merge_showing(db, &mut durable, &mut |_| {})
    }

    /// [`SubjectIndex::merge`], showing each step to `seen` before taking it.
    fn merge_showing<E: From<SubjectIndexError>>(
        &self,
        db: &sled::Db,
        durable: &mut dyn FnMut() -> Result<(), E>,
        seen: Seen,
    ) -> Result<usize, E> {
        let _writing = self.buckets.write().unwrap_or_else(|p| p.into_inner());
        let staged = std::mem::take(&mut *self.lock_staged());
        let merged = staged.len();
        let result = (|| {
            let mut plan = Plan::default();
            let mut changes = Vec::new();
            let mut iter = staged.iter().peekable();
            while let Some((key, kind)) = iter.next() {
                let prefix = &key[..3];
                changes.clear();
                changes.push((&key[3..], *kind));
                while let Some((k, kind)) = iter.next_if(|(k, _)| k.starts_with(prefix)) {
                    changes.push((&k[3..], *kind));
                }
                plan_slot(db, prefix, &changes, &mut plan)?;
            }
            for (i, phase) in plan.phases.into_iter().enumerate() {
                if i > 0 {
                    seen(None);
                    durable()?;
                }
                for w in phase {
                    put(db, w, seen)?;
                }
            }
            if plan.last_relies {
                seen(None);
                durable()?;
            }
            for w in plan.last {
                put(db, w, seen)?;
            }
            Ok(())
        })();
        if result.is_err() {
            // Kept for the next merge (the frames would bring them back on open anyway); later
            // stages win over these.
            let mut now = self.lock_staged();
            for (k, v) in staged {
                now.entry(k).or_insert(v);
            }
        }
        result.map(|()| merged)
    }

    /// Visits the entries of `subject` issued at or after `since`, in order, as their tail and
    /// kind byte, until `visit` returns `false` or `examined_max` entries of the slot (of any
    /// subject) have been read.
    pub fn scan<E: From<SubjectIndexError>>(
        &self,
        db: &sled::Db,
        subject: &str,
        since: u64,
        examined_max: usize,
        mut visit: impl FnMut(&[u8], u8) -> Result<bool, E>,
    ) -> Result<(), E> {
        let prefix = self.slot_prefix(subject.as_bytes());
        let mut examined = 0;
        self.scan_slot(db, &prefix, &since.to_be_bytes(), |entry, kind| {
            examined += 1;
            if examined > examined_max {
                return Ok(false);
            }
            let (tail, s) = split_entry(entry)?;
            if s != subject.as_bytes() {
                return Ok(true);
            }
            visit(tail, kind)
        })
    }

    /// Visits the entries of the slot `prefix` whose key is at or after `from`, in order, until
    /// `visit` returns `false`.
    fn scan_slot<E: From<SubjectIndexError>>(
        &self,
        db: &sled::Db,
        prefix: &[u8],
        from: &[u8],
        mut visit: impl FnMut(&[u8], u8) -> Result<bool, E>,
    ) -> Result<(), E> {
        let _reading = self.buckets.read().unwrap_or_else(|p| p.into_inner());
        let plen = prefix.len();
        let start = [prefix, from].concat();
        let staged: Vec<(Vec<u8>, Option<u8>)> = self
            .lock_staged()
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k[plen..].to_vec(), *v))
            .collect();
        let mut staged = staged.into_iter().peekable();
        let first = match db.range(prefix..=start.as_slice()).next_back() {
            Some(kv) => kv.map_err(SubjectIndexError::from)?.0,
            None => sled::IVec::from(prefix),
        };
        let mut buckets = db
            .range(first..)
            .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)));
        let mut current = buckets
            .next()
            .transpose()
            .map_err(SubjectIndexError::from)?;
        while let Some((key, value)) = current {
            let next = buckets
                .next()
                .transpose()
                .map_err(SubjectIndexError::from)?;
            let below = next.as_ref().map(|(k, _)| &k[plen..]);
            for (entry, kind) in decode(&value)? {
                let in_range = entry.as_slice() >= &key[plen..]
                    && below.is_none_or(|b| entry.as_slice() < b)
                    && entry.as_slice() >= from;
                if !in_range {
                    continue;
                }
                while let Some((e, k)) = staged.next_if(|(e, _)| *e < entry) {
                    if let Some(k) = k {
                        if !visit(&e, k)? {
                            return Ok(());
                        }
                    }
                }
                // A staged change to this very entry wins over the bucket's.
                let kind = match staged.next_if(|(e, _)| *e == entry) {
                    Some((_, staged)) => staged,
                    None => Some(kind),
                };
                if let Some(kind) = kind {
                    if !visit(&entry, kind)? {
                        return Ok(());
                    }
                }
            }
            current = next;
        }
        for (e, k) in staged {
            if let Some(k) = k {
                if !visit(&e, k)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A sled write: key, and the value for an insert.
type Write = (Vec<u8>, Option<Vec<u8>>);

/// Sees each step of a merge before it is taken (tests record them): a write, or `None` when
/// sled's writes so far are made durable.
type Seen<'a> = &'a mut dyn FnMut(Option<&Write>);

/// Makes `w` in `db`, after showing it to `seen`.
fn put(db: &sled::Db, w: Write, seen: Seen) -> Result<(), SubjectIndexError> {
    seen(Some(&w));
    match w {
        (k, Some(v)) => db.insert(k, v)?,
        (k, None) => db.remove(k)?,
    };
    Ok(())
}

/// The sled writes of one merge, planned from the buckets as they were before it, in phases
/// made durable one after the other. sled keeps only a prefix of its writes through a crash,
/// and after a power loss possibly less: any subset of those since its last fsync (a disk may
/// keep a later segment of sled's log and lose an earlier one). Changes lost either way come
/// back (their frames are past the settled mark, applied again on open); entries a bucket held
/// before must not be lost, since their frames are not. So:
/// - `phases` write only keys that did not hold those entries' ranges before: a bucket's new
///   pieces, and buckets cleared of leftovers. A new piece holds its range from its key to the
///   next key there is, except for new entries, whatever else of its phase sled keeps: pieces
///   holding only new entries go in the first phase; of those holding entries held before, the
///   highest goes in the first phase, the next in the second, and so on, so that each finds the
///   ones above it durable.
/// - `last` rewrites or removes the buckets themselves: shrinking one to its own piece, or
///   removing it (its range then passes to the bucket before it, cleared of leftovers in the
///   first phase). `last_relies`: it relies on the phases, made durable before it.
#[derive(Debug, Default)]
struct Plan {
    phases: Vec<Vec<Write>>,
    last: Vec<Write>,
    last_relies: bool,
}

impl Plan {
    fn phase(&mut self, n: usize) -> &mut Vec<Write> {
        if self.phases.len() <= n {
            self.phases.resize_with(n + 1, Vec::new);
        }
        &mut self.phases[n]
    }
}

/// Plans merging one slot's `changes` (sorted entry keys, kind or removed) into its buckets,
/// bucket by bucket.
fn plan_slot(
    db: &sled::Db,
    prefix: &[u8],
    changes: &[(&[u8], Option<u8>)],
    plan: &mut Plan,
) -> Result<(), SubjectIndexError> {
    let plen = prefix.len();
    let mut i = 0;
    while i < changes.len() {
        let probe = [prefix, changes[i].0].concat();
        let bucket = covering(db, prefix, &probe)?;
        let next = match &bucket {
            Some((k, _)) => first_from(db, Bound::Excluded(k), prefix)?.map(|(k, _)| k),
            None => None,
        };
        let below = next.as_ref().map(|k| &k[plen..]);
        let mut j = i;
        while j < changes.len() && below.is_none_or(|b| changes[j].0 < b) {
            j += 1;
        }
        let old: Vec<Entry> = match &bucket {
            Some((k, v)) => in_range(decode(v)?, &k[plen..], below),
            None => Vec::new(),
        };
        let new = apply_changes(&old, &changes[i..j]);
        let bucket = bucket.as_ref().map(|(k, v)| (k.as_ref(), v.as_ref()));
        plan_bucket(db, prefix, bucket, &old, &new, plan)?;
        i = j;
    }
    Ok(())
}

/// The `entries` of a bucket keyed `from` that lie in its range: from its key to the next
/// bucket's (`below`). Others are leftovers of an interrupted rewrite, held by another bucket.
fn in_range(entries: Vec<Entry>, from: &[u8], below: Option<&[u8]>) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|(t, _)| t.as_slice() >= from && below.is_none_or(|b| t.as_slice() < b))
        .collect()
}

/// `entries` with the sorted `changes` applied.
fn apply_changes(entries: &[Entry], changes: &[(&[u8], Option<u8>)]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(entries.len() + changes.len());
    let mut e = entries.iter().peekable();
    for (tail, kind) in changes {
        while let Some(entry) = e.next_if(|(t, _)| t.as_slice() < *tail) {
            out.push(entry.clone());
        }
        e.next_if(|(t, _)| t.as_slice() == *tail);
        if let Some(kind) = kind {
            out.push((tail.to_vec(), *kind));
        }
    }
    out.extend(e.cloned());
    out
}

/// Where `entries` (a bucket's new contents) split into pieces, as index ranges: at most
/// [`BUCKET_ENTRIES_MAX`] entries and [`BUCKET_BYTES_MAX`] bytes each (a single larger entry
/// still gets a piece of its own).
fn layout(entries: &[Entry]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut bytes = 0;
        let mut end = start;
        while end < entries.len()
            && end - start < BUCKET_ENTRIES_MAX
            && (end == start || bytes + entries[end].0.len() < BUCKET_BYTES_MAX)
        {
            bytes += entries[end].0.len() + 1;
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// Plans replacing `bucket` (its key and value, or none; holding `old`) with `new`, in pieces
/// each under its first entry ([`layout`], [`Plan`]).
fn plan_bucket(
    db: &sled::Db,
    prefix: &[u8],
    bucket: Option<(&[u8], &[u8])>,
    old: &[Entry],
    new: &[Entry],
    plan: &mut Plan,
) -> Result<(), SubjectIndexError> {
    let plen = prefix.len();
    let keyed_here = bucket.is_some_and(|(k, _)| new.first().is_some_and(|e| e.0 == k[plen..]));
    // Just past the last entry held before.
    let old_end = new
        .iter()
        .rposition(|e| old.binary_search_by(|o| o.0.cmp(&e.0)).is_ok())
        .map_or(0, |i| i + 1);
    let pieces = layout(new);
    let mut holding = Vec::new();
    for (n, &(start, end)) in pieces.iter().enumerate() {
        if keyed_here && n == 0 {
            continue;
        }
        let w = (
            [prefix, new[start].0.as_slice()].concat(),
            Some(encode(&new[start..end])),
        );
        if start < old_end {
            holding.push(w);
        } else {
            plan.phase(0).push(w);
        }
    }
    for (n, w) in holding.into_iter().rev().enumerate() {
        plan.phase(n).push(w);
        plan.last_relies = true;
    }
    let Some((key, value)) = bucket else {
        return Ok(());
    };
    if keyed_here {
        let (start, end) = pieces[0];
        let own = encode(&new[start..end]);
        if own != value {
            plan.last.push((key.to_vec(), Some(own)));
        }
        return Ok(());
    }
    // The bucket goes; the one before it takes its range over, cleared of leftovers there.
    if let Some((before, v)) = db.range(prefix..key).next_back().transpose()? {
        let entries = decode(&v)?;
        let kept = in_range(entries.clone(), &before[plen..], Some(&key[plen..]));
        if kept.len() < entries.len() {
            plan.phase(0).push((before.to_vec(), Some(encode(&kept))));
            plan.last_relies = true;
        }
    }
    plan.last.push((key.to_vec(), None));
    Ok(())
}

/// Moves store format 4's index — one `S‖len‖subject‖tail` key per entry, its value the kind
/// byte — into buckets, for the upgrade to format 5: [`STAGED_ENTRIES_MAX`] keys at a time
/// staged, merged, made durable (`durable`: no frame carries them any more), then removed in
/// one sled batch. A crash part way leaves the format at 4 and the keys not yet removed, which
/// the next open moves again (merging twice changes nothing). Returns the keys moved.
pub fn migrate_format_4<E: From<SubjectIndexError>>(
    db: &sled::Db,
    index: &SubjectIndex,
    mut durable: impl FnMut() -> Result<(), E>,
) -> Result<u64, E> {
    let mut moved = 0;
    loop {
        let mut done = sled::Batch::default();
        let mut n = 0;
        for kv in db.scan_prefix([FRAME_PREFIX]).take(STAGED_ENTRIES_MAX) {
            let (k, v) = kv.map_err(SubjectIndexError::from)?;
            index.stage(&k, Some(&v))?;
            done.remove(k);
            n += 1;
        }
        if n == 0 {
            return Ok(moved);
        }
        index.merge(db, &mut durable)?;
        durable()?;
        db.apply_batch(done).map_err(SubjectIndexError::from)?;
        moved += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (subject, tail) → kind.
    type Model = BTreeMap<(String, Vec<u8>), u8>;

    fn temp_db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    /// An index with few slots, so that subjects share them.
    fn index(slots: u16) -> SubjectIndex {
        SubjectIndex::with_key([7; 16], slots)
    }

    fn tail(at: u64, origin: &str, seq: u64) -> Vec<u8> {
        let mut t = at.to_be_bytes().to_vec();
        t.push(origin.len() as u8);
        t.extend_from_slice(origin.as_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t
    }

    /// The write a frame carries for `subject`'s entry `tail` (format 4's key).
    fn key(subject: &str, tail: &[u8]) -> Vec<u8> {
        let mut k = vec![FRAME_PREFIX, subject.len() as u8];
        k.extend_from_slice(subject.as_bytes());
        k.extend_from_slice(tail);
        k
    }

    fn entry(subject: &str, tail: &[u8]) -> Vec<u8> {
        [tail, &[subject.len() as u8], subject.as_bytes()].concat()
    }

    /// What a scan of `subject` from `since` visits.
    fn scanned(ix: &SubjectIndex, db: &sled::Db, subject: &str, since: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        ix.scan(db, subject, since, usize::MAX, |t, k| {
            out.push((t.to_vec(), k));
            Ok::<_, SubjectIndexError>(true)
        })
        .unwrap();
        out
    }

    fn expected(model: &Model, subject: &str, since: u64) -> Vec<Entry> {
        model
            .iter()
            .filter(|((s, t), _)| s == subject && t.as_slice() >= &since.to_be_bytes()[..])
            .map(|((_, t), k)| (t.clone(), *k))
            .collect()
    }

    /// splitmix64: reproducible without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const SUBJECTS: [&str; 5] = [
        "91510100MA61R8XQ2A",
        "p:7f3a",
        "91510107MA6CJ2W63B",
        "p:0c21",
        "91510104000000004L",
    ];

    /// Every bucket of `db` is within the size caps, keyed by its first entry, sorted, and —
    /// unless a crash may have left leftovers — holds only entries of its own range.
    fn assert_well_formed(db: &sled::Db, leftovers: bool) {
        let keys: Vec<_> = db.scan_prefix([PREFIX]).map(|kv| kv.unwrap()).collect();
        for (i, (k, v)) in keys.iter().enumerate() {
            let entries = decode(v).unwrap();
            assert!(!entries.is_empty() && entries.len() <= BUCKET_ENTRIES_MAX);
            assert!(v.len() <= BUCKET_BYTES_MAX, "bucket of {} bytes", v.len());
            assert_eq!(
                entries[0].0,
                &k[3..],
                "a bucket is keyed by its first entry"
            );
            assert!(
                entries.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted, no repeats"
            );
            let next = keys.get(i + 1).filter(|(n, _)| n[..3] == k[..3]);
            if let Some((next, _)) = next.filter(|_| !leftovers) {
                assert!(entries.iter().all(|(e, _)| e.as_slice() < &next[3..]));
            }
        }
    }

    #[test]
    fn scans_match_a_model_through_random_stages_and_merges() {
        model_test(false);
    }

    #[test]
    fn scans_match_a_model_through_merges_cut_short_by_crashes() {
        model_test(true);
    }

    /// Random stages (entries landing before, between and after others, removals, subjects
    /// sharing slots) and merges against a map; with `crashes`, some merges are cut short by a
    /// power loss ([`power_loss`]), and their entries are staged again, as the frames bring
    /// them back.
    fn model_test(crashes: bool) {
        for seed in 0..12 {
            let mut rng = Rng(seed);
            let (mut db, ix, mut model) = (temp_db(), index(2), Model::new());
            for step in 0..3_000 {
                let subject = SUBJECTS[rng.below(SUBJECTS.len() as u64) as usize];
                // A small time range and two origins, so entries land between others too.
                let t = tail(
                    rng.below(400),
                    ["bank-a", "science-dept"][rng.below(2) as usize],
                    rng.below(50),
                );
                if rng.below(5) == 0 {
                    ix.stage(&key(subject, &t), None).unwrap();
                    model.remove(&(subject.to_string(), t));
                } else {
                    let kind = rng.below(6) as u8;
                    ix.stage(&key(subject, &t), Some(&[kind])).unwrap();
                    model.insert((subject.to_string(), t), kind);
                }
                if rng.below(150) == 0 {
                    if crashes && rng.below(2) == 0 {
                        let staged = ix.lock_staged().clone();
                        let base = copy_with(&db, &[]);
                        let steps = merge_steps(&ix, &db);
                        let cut = rng.below(steps.len() as u64 + 1) as usize;
                        let kept = power_loss(&steps, cut, || rng.below(2) == 0);
                        db = copy_with(&base, &kept);
                        // The same changes, as the frames stage them again.
                        ix.lock_staged().extend(staged);
                    } else {
                        ix.merge(&db, no_fsync).unwrap();
                        assert_eq!(ix.staged_len(), 0);
                    }
                }
                if step % 97 == 0 {
                    let since = rng.below(450);
                    for s in SUBJECTS {
                        assert_eq!(
                            scanned(&ix, &db, s, since),
                            expected(&model, s, since),
                            "seed {seed} step {step} subject {s}"
                        );
                    }
                }
            }
            ix.merge(&db, no_fsync).unwrap();
            assert_well_formed(&db, crashes);
            for s in SUBJECTS {
                assert_eq!(scanned(&ix, &db, s, 0), expected(&model, s, 0));
            }
        }
    }

    #[test]
    fn a_scan_stops_when_told_or_past_its_examined_entries() {
        let (db, ix) = (temp_db(), index(1));
        for seq in 0..200 {
            let subject = SUBJECTS[usize::from(seq % 4 == 0)];
            ix.stage(&key(subject, &tail(seq, "bank-a", seq)), Some(&[1]))
                .unwrap();
            if seq == 150 {
                ix.merge(&db, no_fsync).unwrap();
            }
        }
        for limit in [1, 64, 140, 150] {
            let mut seen = 0;
            ix.scan(&db, SUBJECTS[0], 0, usize::MAX, |_, _| {
                seen += 1;
                Ok::<_, SubjectIndexError>(seen < limit)
            })
            .unwrap();
            assert_eq!(seen, limit);
        }
        // Both subjects share the one slot: examining 100 entries finds 25 of the other one's.
        let mut seen = 0;
        ix.scan(&db, SUBJECTS[1], 0, 100, |_, _| {
            seen += 1;
            Ok::<_, SubjectIndexError>(true)
        })
        .unwrap();
        assert_eq!(seen, 25);
    }

    fn no_fsync() -> Result<(), SubjectIndexError> {
        Ok(())
    }

    /// A step of a merge: a write, or sled's writes so far made durable.
    #[derive(Debug, Clone)]
    enum Step {
        Write(Write),
        Durable,
    }

    /// The steps of merging what `ix` has staged into `db`.
    fn merge_steps(ix: &SubjectIndex, db: &sled::Db) -> Vec<Step> {
        let mut steps = Vec::new();
        ix.merge_showing(db, &mut no_fsync, &mut |w| {
            steps.push(w.map_or(Step::Durable, |w| Step::Write(w.clone())))
        })
        .unwrap();
        steps
    }

    /// What sled may hold after a power loss at step `cut` of a merge: every write before the
    /// last durable step before it, and any subset (`keep`) of the writes since.
    fn power_loss(steps: &[Step], cut: usize, mut keep: impl FnMut() -> bool) -> Vec<Write> {
        let durable = steps[..cut]
            .iter()
            .rposition(|s| matches!(s, Step::Durable))
            .map_or(0, |i| i + 1);
        let mut kept = Vec::new();
        for (i, step) in steps[..cut].iter().enumerate() {
            if let Step::Write(w) = step {
                if i < durable || keep() {
                    kept.push(w.clone());
                }
            }
        }
        kept
    }

    /// A copy of `db`'s contents in a new database, with `writes` made.
    fn copy_with(db: &sled::Db, writes: &[Write]) -> sled::Db {
        let copy = temp_db();
        for kv in db.iter() {
            let (k, v) = kv.unwrap();
            copy.insert(k, v).unwrap();
        }
        for (k, v) in writes {
            match v {
                Some(v) => copy.insert(k.as_slice(), v.as_slice()).unwrap(),
                None => copy.remove(k.as_slice()).unwrap(),
            };
        }
        copy
    }

    #[test]
    fn a_power_loss_anywhere_in_a_merge_keeps_the_old_entries_and_merging_again_finishes_it() {
        // Frames stage the same changes again on open; entries merged before must survive
        // whatever sled kept. One merge here re-keys the first bucket (entries below it), splits
        // a full one in the middle, removes a bucket's first entry and appends; each cut is tried
        // with several subsets of the writes since the last durable step.
        let subject = SUBJECTS[0];
        let (db, ix) = (temp_db(), index(1));
        let mut model = Model::new();
        for at in (100..400).step_by(2) {
            let t = tail(at, "bank-a", at);
            ix.stage(&key(subject, &t), Some(&[2])).unwrap();
            model.insert((subject.to_string(), t), 2);
        }
        ix.merge(&db, no_fsync).unwrap();
        let old = expected(&model, subject, 0);
        let second_bucket = db.scan_prefix([PREFIX]).nth(1).unwrap().unwrap().0;
        let (second_first, _) = split_entry(&second_bucket[3..]).unwrap();
        let mut changes: Vec<(Vec<u8>, Option<u8>)> = vec![
            (tail(1, "bank-a", 1), Some(3)),
            (tail(50, "bank-a", 50), Some(3)),
            (second_first.to_vec(), None),
            (tail(301, "bank-a", 301), Some(4)),
            (tail(500, "bank-a", 500), Some(5)),
        ];
        changes.extend((0..70).map(|i| (tail(201, "bank-b", i), Some(1))));
        changes.sort();
        let base = copy_with(&db, &[]);
        for (t, k) in &changes {
            ix.stage(&key(subject, t), k.as_ref().map(std::slice::from_ref))
                .unwrap();
        }
        let steps = merge_steps(&ix, &db);
        assert!(
            steps.iter().any(|s| matches!(s, Step::Durable)),
            "this merge moves entries held before to new keys"
        );
        let mut done = model.clone();
        for (t, k) in &changes {
            match k {
                Some(k) => done.insert((subject.to_string(), t.clone()), *k),
                None => done.remove(&(subject.to_string(), t.clone())),
            };
        }
        let done = expected(&done, subject, 0);
        assert_eq!(scanned(&ix, &db, subject, 0), done);
        let changed: std::collections::HashSet<&[u8]> =
            changes.iter().map(|(t, _)| t.as_slice()).collect();
        let mut rng = Rng(7);
        for cut in 0..=steps.len() {
            for subset in 0..4 {
                let kept = power_loss(&steps, cut, || subset == 0 || rng.below(2) == 0);
                let copy = copy_with(&base, &kept);
                let fresh = index(1);
                let seen = scanned(&fresh, &copy, subject, 0);
                for e in &old {
                    if !changed.contains(e.0.as_slice()) {
                        assert!(seen.contains(e), "cut at {cut}: an old entry is missing");
                    }
                }
                for e in &seen {
                    assert!(old.contains(e) || done.contains(e), "cut at {cut}: {e:?}");
                }
                for (t, k) in &changes {
                    fresh
                        .stage(&key(subject, t), k.as_ref().map(std::slice::from_ref))
                        .unwrap();
                }
                fresh.merge(&copy, no_fsync).unwrap();
                assert_eq!(scanned(&fresh, &copy, subject, 0), done, "cut at {cut}");
                assert_well_formed(&copy, true);
            }
        }
    }

    #[test]
    fn leftovers_never_come_back_when_the_bucket_holding_their_range_goes() {
        // A bucket holding entries past the next bucket's key (leftovers of a split a crash cut
        // short, made here by hand); removing every entry of that next bucket must not make
        // them visible again.
        let subject = SUBJECTS[0];
        let (db, ix) = (temp_db(), index(1));
        let prefix = ix.slot_prefix(subject.as_bytes());
        let all: Vec<Entry> = (0..20)
            .map(|at| (entry(subject, &tail(at, "bank-a", at)), 1))
            .collect();
        db.insert([&prefix[..], &all[0].0].concat(), encode(&all))
            .unwrap();
        db.insert([&prefix[..], &all[10].0].concat(), encode(&all[10..]))
            .unwrap();
        let tails = |entries: &[Entry]| -> Vec<Entry> {
            entries
                .iter()
                .map(|(e, k)| (split_entry(e).unwrap().0.to_vec(), *k))
                .collect()
        };
        assert_eq!(scanned(&ix, &db, subject, 0), tails(&all));
        for (e, _) in &all[10..] {
            let (t, _) = split_entry(e).unwrap();
            ix.stage(&key(subject, t), None).unwrap();
        }
        ix.merge(&db, no_fsync).unwrap();
        assert_eq!(scanned(&ix, &db, subject, 0), tails(&all[..10]));
        assert_well_formed(&db, false);
    }

    #[test]
    fn format_4_keys_are_moved_into_buckets() {
        let db = temp_db();
        let mut model = Model::new();
        for (s, n) in [(SUBJECTS[0], 150), (SUBJECTS[1], 3), (SUBJECTS[2], 1)] {
            for seq in 0..n {
                let t = tail(1_000 + seq, "bank-a", seq);
                db.insert(key(s, &t), &[4u8][..]).unwrap();
                model.insert((s.to_string(), t), 4);
            }
        }
        let ix = SubjectIndex::open(&db).unwrap();
        assert_eq!(migrate_format_4(&db, &ix, no_fsync).unwrap(), 154);
        assert_eq!(db.scan_prefix([FRAME_PREFIX]).count(), 0);
        assert!(db.scan_prefix([PREFIX]).count() <= 3 + 1 + 1);
        assert_well_formed(&db, false);
        // Reopened: the same slot key, the same slots.
        let ix = SubjectIndex::open(&db).unwrap();
        for s in SUBJECTS {
            assert_eq!(scanned(&ix, &db, s, 0), expected(&model, s, 0));
            assert_eq!(scanned(&ix, &db, s, 1_070), expected(&model, s, 1_070));
        }
        assert_eq!(
            migrate_format_4(&db, &ix, no_fsync).unwrap(),
            0,
            "nothing left to move"
        );
    }

    #[test]
    fn malformed_entries_are_errors() {
        let (db, ix) = (temp_db(), index(1));
        assert!(ix.stage(b"S\x05ab", Some(&[1])).is_err(), "short subject");
        assert!(
            ix.stage(&key("a", b"short"), Some(&[1])).is_err(),
            "short tail"
        );
        let t = tail(1, "bank-a", 1);
        assert!(
            ix.stage(&key("a", &t), Some(&[1, 2])).is_err(),
            "not a kind byte"
        );
        let e = entry("a", &t);
        let prefix = ix.slot_prefix(b"a");
        db.insert([&prefix[..], &e].concat(), &e[..5]).unwrap();
        let r = ix.scan(&db, "a", 0, usize::MAX, |_, _| {
            Ok::<_, SubjectIndexError>(true)
        });
        assert!(matches!(r, Err(SubjectIndexError::Corrupt(_))), "{r:?}");
        db.insert(SLOT_KEY, &b"short"[..]).unwrap();
        assert!(SubjectIndex::open(&db).is_err());
    }
}
