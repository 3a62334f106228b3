//! Backup and restore of a node's store (DESIGN §10).
//!
//! A backup is **logical**: every log as its signed records (envelope and the disclosures held),
//! each origin's signed checkpoint, pending back-fills and the disclosure ledger — not sled's
//! files. It is taken while the node runs, and is consistent without pausing writes because
//! logs only grow: each origin is copied up to a size read at the start, and the local log only
//! up to a size that is both durable and covered by its latest checkpoint (a record the node
//! might still lose in a crash must never be in a backup: restoring it and then re-signing that
//! sequence number would be equivocation). A restore rebuilds the store through the ordinary
//! append path — Merkle nodes, heads and indexes recomputed — after verifying every record and
//! checkpoint against the roster, so a backup is also readable by a newer binary whose sled
//! layout changed, and a corrupted or tampered file is refused with nothing installed.
//!
//! A restored node may have issued records after the backup was taken that peers hold. It
//! therefore starts in recovery (the store's mark, [`SledStore::set_recovering`]): sync fetches
//! its own log back from peers and the appender issues again only once they have reported.
//!
//! # File format `tfx-backup/1`
//!
//! ```text
//! magic   "TFXBACKUP\n"                                      10 bytes
//! frame*  kind u8, length u32 (big-endian), payload           length ≤ FRAME_BYTES_MAX
//!   'H'   header, JSON: {"format":"tfx-backup/1","member":ID,"created_at_ms":N,"store_format":N}
//!   'R'   record: origin, seq u64, envelope (u32 len + bytes), count u16, count × (u32 len + bytes)
//!   'C'   checkpoint: origin, signed checkpoint bytes (rest); follows the record that ends it
//!   'B'   back-fill: origin, next u64, end u64
//!   'L'   ledger entry: key (u32 len + bytes), value (rest)
//!   'E'   end: records u64, frames u64, SHA-256 of every byte before this frame, and the
//!         member's Ed25519 signature (64 bytes, its record-signing key) over
//!         "tfx-backup/1" ‖ 0x00 ‖ member id ‖ 0x00 ‖ that SHA-256; must be last
//! origin = u8 length + member id bytes
//! ```
//!
//! Records of one origin are contiguous and in sequence order from 0.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use ring::digest::{Context as Digest, SHA256};
use serde::{Deserialize, Serialize};
use tfx_protocol::checkpoint::{verify_checkpoint, Checkpoint};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::log::verify_log;
use tfx_protocol::merkle::{leaf_hash, Frontier};
use tfx_protocol::record::verify_record;
use tfx_protocol::roster::Roster;
use tfx_protocol::store::{AppendBatch, LogHead, Store, StoredRecord, STORED_LEVEL_MIN};
use tfx_protocol::{LogIndex, MemberId, Timestamp};

use crate::ledger::Ledger;
use crate::sled_store::{SledStore, STORE_FORMAT};

pub const BACKUP_FORMAT: &str = "tfx-backup/1";
/// Directory under the data directory where a running node writes backups (`POST /v1/backup`).
pub const BACKUP_DIR: &str = "backups";
const MAGIC: &[u8; 10] = b"TFXBACKUP\n";
/// Largest frame: a record's envelope and disclosures are far smaller (protocol limits).
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Marks a staging directory as made by [`restore`], so a rerun may remove it.
const STAGING_MARKER: &str = "tfx-restore-in-progress";
/// Records read from the store, and applied on restore, per step.
const PAGE: usize = 256;
/// How long a backup waits for the local log's latest batch to become durable.
const DURABLE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    member: String,
    created_at_ms: u64,
    store_format: u32,
}

/// What a backup or restore covered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub member: String,
    pub created_at_ms: u64,
    pub origins: u64,
    pub records: u64,
    pub ledger_entries: u64,
    pub bytes: u64,
}

struct FrameWriter<W: Write> {
    out: W,
    digest: Digest,
    bytes: u64,
    frames: u64,
}

impl<W: Write> FrameWriter<W> {
    fn raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.digest.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> anyhow::Result<()> {
        ensure!(
            payload.len() <= FRAME_BYTES_MAX,
            "a {} frame of {} bytes exceeds the {FRAME_BYTES_MAX}-byte limit",
            kind as char,
            payload.len()
        );
        self.raw(&[kind])?;
        self.raw(&(payload.len() as u32).to_be_bytes())?;
        self.raw(payload)?;
        self.frames += 1;
        Ok(())
    }
}

fn push_origin(v: &mut Vec<u8>, origin: &MemberId) {
    v.push(origin.as_str().len() as u8);
    v.extend_from_slice(origin.as_str().as_bytes());
}

fn push_bytes(v: &mut Vec<u8>, b: &[u8]) {
    v.extend_from_slice(&(b.len() as u32).to_be_bytes());
    v.extend_from_slice(b);
}

/// The size up to which the local log may be backed up: its latest checkpoint's, once the
/// batch that wrote it is durable. The checkpoint is read once; every group commit writes a
/// checkpoint of its new head and flushes right after, so waiting for the durable head to reach
/// it takes at most one flush, however busy the node.
fn local_size(
    store: &SledStore,
    member: &MemberId,
    durable: Option<&tokio::sync::watch::Receiver<LogHead>>,
) -> anyhow::Result<(u64, Option<Vec<u8>>)> {
    let checkpoint = store.checkpoint(member)?;
    let size = match &checkpoint {
        Some(b) => {
            Checkpoint::decode_unverified(b)
                .map_err(|e| anyhow::anyhow!("stored checkpoint of {member}: {e}"))?
                .size
        }
        None => 0,
    };
    let deadline = std::time::Instant::now() + DURABLE_WAIT;
    while durable.is_some_and(|d| d.borrow().size < size) {
        ensure!(
            std::time::Instant::now() < deadline,
            "the local log's latest batch did not become durable within {} s",
            DURABLE_WAIT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((size, checkpoint))
}

/// Writes a backup of `store`, the store of `member`, to `out`. `durable` is the running
/// node's durable local head (`None` for a stopped node's store, where everything is durable).
pub fn write<W: Write>(
    store: &SledStore,
    ledger: &Ledger,
    member: &MemberId,
    key: &SigningKey,
    durable: Option<&tokio::sync::watch::Receiver<LogHead>>,
    out: W,
) -> anyhow::Result<Summary> {
    let created_at_ms = crate::clock::now().0;
    let mut w = FrameWriter {
        out,
        digest: Digest::new(&SHA256),
        bytes: 0,
        frames: 0,
    };
    w.raw(MAGIC)?;
    let header = Header {
        format: BACKUP_FORMAT.into(),
        member: member.to_string(),
        created_at_ms,
        store_format: STORE_FORMAT,
    };
    w.frame(b'H', &serde_json::to_vec(&header)?)?;
    let mut summary = Summary {
        member: member.to_string(),
        created_at_ms,
        ..Summary::default()
    };
    // Pending back-fills are read before the records they cover: one finishing meanwhile then
    // costs a harmless re-fetch, never a record left short of fields for good.
    let backfills = store.backfills()?;
    for origin in store.origins()? {
        // The checkpoint is read before the records, so it never ends beyond them.
        let (size, checkpoint) = if &origin == member {
            local_size(store, member, durable)?
        } else {
            let checkpoint = store.checkpoint(&origin)?;
            (store.head(&origin)?.map_or(0, |h| h.size), checkpoint)
        };
        let cp_size = match &checkpoint {
            Some(b) => Some(
                Checkpoint::decode_unverified(b)
                    .map_err(|e| anyhow::anyhow!("stored checkpoint of {origin}: {e}"))?
                    .size,
            ),
            None => None,
        };
        summary.origins += 1;
        let mut next = 0;
        while next < size {
            let page = store.records(&origin, LogIndex(next), PAGE.min((size - next) as usize))?;
            ensure!(
                !page.is_empty(),
                "the store holds {origin}'s log only up to {next} of {size}"
            );
            for r in page {
                ensure!(
                    r.seq.0 == next,
                    "{origin}'s log skips from {next} to {}",
                    r.seq.0
                );
                let mut v = Vec::with_capacity(r.envelope.len() + 512);
                push_origin(&mut v, &origin);
                v.extend_from_slice(&r.seq.0.to_be_bytes());
                push_bytes(&mut v, &r.envelope);
                v.extend_from_slice(&(r.disclosures.len() as u16).to_be_bytes());
                for d in &r.disclosures {
                    push_bytes(&mut v, d);
                }
                w.frame(b'R', &v)?;
                summary.records += 1;
                next += 1;
                if Some(next) == cp_size {
                    if let Some(b) = &checkpoint {
                        let mut v = Vec::with_capacity(b.len() + 65);
                        push_origin(&mut v, &origin);
                        v.extend_from_slice(b);
                        w.frame(b'C', &v)?;
                    }
                }
            }
        }
    }
    for (origin, next, end) in backfills {
        let mut v = Vec::new();
        push_origin(&mut v, &origin);
        v.extend_from_slice(&next.to_be_bytes());
        v.extend_from_slice(&end.to_be_bytes());
        w.frame(b'B', &v)?;
    }
    for entry in ledger.raw_entries() {
        let (k, value) = entry?;
        let mut v = Vec::with_capacity(k.len() + value.len() + 4);
        push_bytes(&mut v, &k);
        v.extend_from_slice(&value);
        w.frame(b'L', &v)?;
        summary.ledger_entries += 1;
    }
    let digest = w.digest.clone().finish();
    let mut end = Vec::with_capacity(112);
    end.extend_from_slice(&summary.records.to_be_bytes());
    end.extend_from_slice(&w.frames.to_be_bytes());
    end.extend_from_slice(digest.as_ref());
    end.extend_from_slice(&key.sign(&signed_digest(member, digest.as_ref())));
    w.frame(b'E', &end)?;
    w.out.flush()?;
    summary.bytes = w.bytes;
    Ok(summary)
}

/// Writes a backup to a new file `path` (through a temporary file beside it, then renamed, so
/// a failed backup never leaves a partial file under the final name). Refuses to overwrite.
pub fn write_file(
    store: &SledStore,
    ledger: &Ledger,
    member: &MemberId,
    key: &SigningKey,
    durable: Option<&tokio::sync::watch::Receiver<LogHead>>,
    path: &Path,
) -> anyhow::Result<Summary> {
    ensure!(
        !path.exists(),
        "{} exists; a backup never overwrites a file",
        path.display()
    );
    let tmp = tmp_path(path);
    let result = (|| {
        // It holds field values: readable by the node's user alone, whatever the umask.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
        let summary = write(store, ledger, member, key, durable, &mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What the member's key signs: the backup's SHA-256, bound to the format and the member, so a
/// backup relabelled as another member's (its checksum recomputed) is refused.
fn signed_digest(member: &MemberId, digest: &[u8]) -> Vec<u8> {
    let mut m = BACKUP_FORMAT.as_bytes().to_vec();
    m.push(0);
    m.extend_from_slice(member.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(digest);
    m
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Reads frames, hashing every byte for the end frame's check.
struct FrameReader<R: Read> {
    input: R,
    digest: Digest,
    frames: u64,
}

impl<R: Read> FrameReader<R> {
    fn exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.input
            .read_exact(&mut b)
            .context("the backup is truncated")?;
        self.digest.update(&b);
        Ok(b)
    }

    /// The next frame; the digest before it is returned for the end frame's check.
    fn next(&mut self) -> anyhow::Result<(u8, Vec<u8>, [u8; 32])> {
        let before: [u8; 32] = self
            .digest
            .clone()
            .finish()
            .as_ref()
            .try_into()
            .map_err(|_| anyhow::anyhow!("digest length"))?;
        let head = self.exact(5)?;
        let kind = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        ensure!(
            len <= FRAME_BYTES_MAX,
            "frame {} claims {len} bytes, over the {FRAME_BYTES_MAX}-byte limit",
            self.frames + 1
        );
        let payload = self.exact(len)?;
        self.frames += 1;
        Ok((kind, payload, before))
    }
}

/// A cursor over one frame's payload; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "a frame ends early");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn u16(&mut self) -> anyhow::Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn origin(&mut self) -> anyhow::Result<MemberId> {
        let n = usize::from(self.take(1)?[0]);
        let s = std::str::from_utf8(self.take(n)?).context("member id is not UTF-8")?;
        Ok(MemberId::new(s)?)
    }
}

/// One origin's log being rebuilt.
struct Rebuild {
    origin: MemberId,
    frontier: Frontier,
    batch: AppendBatch,
}

impl Rebuild {
    fn apply(&mut self, store: &SledStore) -> anyhow::Result<()> {
        if self.batch.records.is_empty() && self.batch.checkpoints.is_empty() {
            return Ok(());
        }
        let head = LogHead {
            size: self.frontier.size(),
            root: self.frontier.root(),
        };
        self.batch.heads = vec![(self.origin.clone(), head)];
        store
            .apply(&std::mem::take(&mut self.batch))
            .with_context(|| format!("writing {}'s log", self.origin))?;
        Ok(())
    }
}

/// Restores a backup read from `input` into `store` (a new, empty store), verifying every
/// record and checkpoint against `roster`. `member` is the node restoring: a backup of another
/// member is refused.
pub fn restore_into<R: Read>(
    input: R,
    store: &SledStore,
    member: &MemberId,
    roster: &Roster,
) -> anyhow::Result<Summary> {
    let mut r = FrameReader {
        input,
        digest: Digest::new(&SHA256),
        frames: 0,
    };
    let magic = r.exact(MAGIC.len()).context("not a tfx backup")?;
    ensure!(magic == MAGIC, "not a tfx backup (no TFXBACKUP header)");
    let (kind, payload, _) = r.next()?;
    ensure!(kind == b'H', "the backup does not start with its header");
    let header: Header = serde_json::from_slice(&payload).context("the backup header")?;
    ensure!(
        header.format == BACKUP_FORMAT,
        "backup format {:?} is not {BACKUP_FORMAT}; use a tfx-node that reads it",
        header.format
    );
    ensure!(
        header.member == member.as_str(),
        "this is a backup of {}, not of {member}",
        header.member
    );
    let ledger = Ledger::open(store)?;
    let mut summary = Summary {
        member: header.member.clone(),
        created_at_ms: header.created_at_ms,
        ..Summary::default()
    };
    let mut done: std::collections::BTreeSet<MemberId> = Default::default();
    let mut log: Option<Rebuild> = None;
    loop {
        let (kind, payload, before) = r.next()?;
        let mut c = Cursor(&payload);
        match kind {
            b'R' => {
                let origin = c.origin()?;
                let seq = c.u64()?;
                let envelope = c.bytes()?.to_vec();
                let n = c.u16()?;
                let mut disclosures = Vec::with_capacity(usize::from(n).min(64));
                for _ in 0..n {
                    disclosures.push(c.bytes()?.to_vec());
                }
                ensure!(c.0.is_empty(), "record frame has trailing bytes");
                if log.as_ref().is_none_or(|l| l.origin != origin) {
                    if let Some(mut l) = log.take() {
                        l.apply(store)?;
                        done.insert(l.origin);
                    }
                    ensure!(
                        !done.contains(&origin),
                        "{origin}'s records are split in two parts of the backup"
                    );
                    log = Some(Rebuild {
                        origin: origin.clone(),
                        frontier: Frontier::default(),
                        batch: AppendBatch::default(),
                    });
                }
                let Some(l) = log.as_mut() else {
                    bail!("internal: no log being rebuilt");
                };
                ensure!(
                    seq == l.frontier.size(),
                    "{origin}'s record {seq} is out of order (expected {})",
                    l.frontier.size()
                );
                let v = verify_record(&envelope, &disclosures, roster).map_err(|e| {
                    anyhow::anyhow!("record {origin}#{seq} does not verify: {}", e.redacted())
                })?;
                let h = &v.envelope.header;
                ensure!(
                    h.origin == origin && h.seq.0 == seq,
                    "record {origin}#{seq} is signed as {}#{}",
                    h.origin,
                    h.seq.0
                );
                for (id, hash) in l.frontier.push(leaf_hash(&envelope)) {
                    if id.level >= STORED_LEVEL_MIN {
                        l.batch.nodes.push((origin.clone(), id, hash));
                    }
                }
                l.batch
                    .records
                    .push(StoredRecord::new(v.envelope.id, h, envelope, v.disclosures));
                summary.records += 1;
                if l.batch.records.len() >= PAGE {
                    l.apply(store)?;
                }
            }
            b'C' => {
                let origin = c.origin()?;
                let bytes = c.0.to_vec();
                let Some(l) = log.as_mut().filter(|l| l.origin == origin) else {
                    bail!("a checkpoint of {origin} does not follow its records");
                };
                let cp = verify_checkpoint(&bytes, roster)
                    .map_err(|e| anyhow::anyhow!("checkpoint of {origin} does not verify: {e}"))?;
                ensure!(
                    cp.checkpoint.origin == origin
                        && cp.checkpoint.size == l.frontier.size()
                        && cp.checkpoint.root == l.frontier.root(),
                    "checkpoint of {origin} (size {}) does not match its records",
                    cp.checkpoint.size
                );
                l.batch.checkpoints.push((origin, bytes));
                l.apply(store)?;
            }
            b'B' | b'L' | b'E' => {
                if let Some(mut l) = log.take() {
                    l.apply(store)?;
                    done.insert(l.origin);
                }
                match kind {
                    b'B' => {
                        let origin = c.origin()?;
                        let (next, end) = (c.u64()?, c.u64()?);
                        ensure!(c.0.is_empty(), "back-fill frame has trailing bytes");
                        ensure!(
                            &origin != member,
                            "a back-fill of the node's own log makes no sense"
                        );
                        let size = store.head(&origin)?.map_or(0, |h| h.size);
                        if next < end.min(size) {
                            store.apply(&AppendBatch {
                                backfill: vec![(origin, Some((next, end.min(size))))],
                                ..AppendBatch::default()
                            })?;
                        }
                    }
                    b'L' => {
                        let key = c.bytes()?.to_vec();
                        ledger.import_raw(&key, c.0)?;
                        summary.ledger_entries += 1;
                    }
                    _ => {
                        let records = c.u64()?;
                        let frames = c.u64()?;
                        let digest = c.take(32)?;
                        let signature = c.take(64)?;
                        ensure!(c.0.is_empty(), "end frame has trailing bytes");
                        ensure!(
                            digest == before,
                            "the backup's checksum does not match: it was altered or damaged"
                        );
                        let at = Timestamp(header.created_at_ms);
                        let signed = signed_digest(member, digest);
                        let by_member = roster.member(member).is_some_and(|m| {
                            m.keys
                                .iter()
                                .any(|w| w.contains(at) && w.key.verify(&signed, signature))
                        });
                        ensure!(
                            by_member,
                            "the backup is not signed by {member}'s record-signing key valid when it was taken"
                        );
                        ensure!(
                            records == summary.records && frames + 1 == r.frames,
                            "the backup's end frame counts {records} records in {frames} frames; read {} in {}",
                            summary.records,
                            r.frames - 1
                        );
                        let mut rest = [0u8; 1];
                        ensure!(
                            r.input.read(&mut rest)? == 0,
                            "bytes follow the backup's end frame"
                        );
                        break;
                    }
                }
            }
            other => bail!("unknown frame kind {other:#04x}"),
        }
    }
    summary.origins = store.origins()?.len() as u64;
    store.flush()?;
    Ok(summary)
}

/// `tfx-node restore`: restores the backup at `from` into the node's data directory `data`,
/// which must hold no store. Everything is written to a sibling directory first and verified
/// (every log re-verified as `check-store` would), then moved into place with the recovery
/// mark set; on any error nothing is installed.
pub fn restore(
    from: &Path,
    data: &Path,
    member: &MemberId,
    roster: &Roster,
) -> anyhow::Result<Summary> {
    if data.join("db").exists() {
        bail!(
            "{} already holds a store; restore never overwrites one: move it aside first",
            data.display()
        );
    }
    if data.exists() && std::fs::read_dir(data)?.next().is_some() {
        bail!(
            "{} is not empty; restore into an empty or absent data directory",
            data.display()
        );
    }
    let staging = tmp_path(data);
    if staging.exists() {
        // Removed only if an interrupted restore left it (it carries the marker).
        ensure!(
            staging.join(STAGING_MARKER).exists(),
            "{} exists and was not left by a restore; move it aside",
            staging.display()
        );
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let result = (|| {
        let file =
            std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
        let bytes = file.metadata()?.len();
        std::fs::create_dir_all(&staging)?;
        std::fs::write(staging.join(STAGING_MARKER), b"")?;
        let store = SledStore::open(&staging)?;
        let mut summary = restore_into(
            std::io::BufReader::with_capacity(1 << 20, file),
            &store,
            member,
            roster,
        )?;
        summary.bytes = bytes;
        for origin in store.origins()? {
            verify_log(&store, &origin, roster, &mut |_| {})
                .with_context(|| format!("re-verifying {origin}'s restored log"))?;
        }
        store.set_recovering(true)?;
        drop(store);
        Ok(summary)
    })();
    let installed = result.and_then(|summary| {
        std::fs::remove_file(staging.join(STAGING_MARKER))?;
        // `data` is absent or an empty directory (checked above); rename replaces the latter.
        std::fs::rename(&staging, data)
            .with_context(|| format!("moving the restored store to {}", data.display()))?;
        Ok(summary)
    });
    if installed.is_err() {
        // Nothing half-installed, and no copy of field values left beside the data directory.
        let _ = std::fs::remove_dir_all(&staging);
    }
    installed
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfx_protocol::roster::{KeyWindow, Member};

    fn roster_with(member: &str, key: &SigningKey) -> Roster {
        Roster {
            consortium: "backup test".into(),
            version: 1,
            previous: None,
            issued_at: Timestamp(0),
            governors: Vec::new(),
            threshold: 1,
            members: vec![Member {
                id: MemberId::new(member).unwrap_or_else(|e| panic!("{e}")),
                name: member.into(),
                roles: vec!["bank".into()],
                keys: vec![KeyWindow {
                    key: *key.verifying_key(),
                    valid_from: Timestamp(0),
                    valid_until: None,
                }],
                tls_fingerprint: [0; 32],
                endpoint: "127.0.0.1:1".into(),
            }],
            revocations: Vec::new(),
            ca_fingerprint: [0; 32],
            witness_quorum: None,
        }
    }

    /// A backup of an empty store, as `member` signed by `key`.
    fn backup_of(member: &MemberId, key: &SigningKey) -> anyhow::Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(dir.path())?;
        let ledger = Ledger::open(&store)?;
        let mut out = Vec::new();
        write(&store, &ledger, member, key, None, &mut out)?;
        Ok(out)
    }

    fn restore_bytes(bytes: &[u8], member: &MemberId, roster: &Roster) -> anyhow::Result<Summary> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(dir.path())?;
        restore_into(bytes, &store, member, roster)
    }

    #[test]
    fn only_the_members_own_signed_backup_restores() -> anyhow::Result<()> {
        let bank_a = MemberId::new("bank-a")?;
        let bank_b = MemberId::new("bank-b")?;
        let key_a = SigningKey::from_seed(&[1; 32]);
        let key_b = SigningKey::from_seed(&[2; 32]);
        let good = backup_of(&bank_a, &key_a)?;
        restore_bytes(&good, &bank_a, &roster_with("bank-a", &key_a))?;
        // Another member's backup, or one relabelled (checksum recomputed) as bank-b's, signed
        // by a key the roster does not list for bank-b.
        let err = restore_bytes(&good, &bank_b, &roster_with("bank-b", &key_b)).unwrap_err();
        assert!(err.to_string().contains("not of bank-b"), "{err}");
        let forged = backup_of(&bank_b, &key_a)?;
        let err = restore_bytes(&forged, &bank_b, &roster_with("bank-b", &key_b)).unwrap_err();
        assert!(err.to_string().contains("not signed by bank-b"), "{err}");
        // Every flipped byte is refused; bytes after the end frame too.
        for at in [3, 12, good.len() / 2, good.len() - 70, good.len() - 1] {
            let mut t = good.clone();
            t[at] ^= 0x40;
            assert!(
                restore_bytes(&t, &bank_a, &roster_with("bank-a", &key_a)).is_err(),
                "byte {at} flipped"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        let err = restore_bytes(&longer, &bank_a, &roster_with("bank-a", &key_a)).unwrap_err();
        assert!(err.to_string().contains("follow"), "{err}");
        Ok(())
    }
}
