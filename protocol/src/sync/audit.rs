//! Witnessing and equivocation inside the sync core (DESIGN §5, SPEC §17–18).
//!
//! **Witnessing.** A node cosigns another origin's checkpoint only once its own copy of that
//! log holds the checkpoint's size with the checkpoint's root: the copy is append-only and every
//! record in it verified, so that one comparison checks consistency with everything it cosigned
//! before. At most once per [`SyncConfig::witness_ms`] per origin it cosigns the latest stored
//! checkpoint it has not yet cosigned, persists the cosignature with the checkpoint, and gossips
//! both ([`Message::Witness`]). A node receiving a cosigned checkpoint checks it the same way,
//! keeps the cosignatures, and cosigns it too if it is newer than what it last cosigned, so
//! witnesses converge on one checkpoint per round and it becomes final
//! ([`crate::witness::is_final`]) without extra round trips.
//!
//! **Equivocation.** Every signed checkpoint a peer shows (in `Heads` or `Witness`) is compared
//! with this node's copy of the log; records at an already-held position are compared when
//! back-filled; a chunk's checkpoint is compared when the chunk is applied. A contradiction
//! becomes transferable [`Evidence`], which is verified like a peer's, persisted, freezes the
//! origin (no more of its records are taken), raises [`super::Event::Fork`], and is sent to every
//! peer ahead of other traffic. Evidence from a peer that does not verify is a violation.

use std::collections::BTreeMap;

use super::{store_err, DisconnectCause, Message, SyncCore, SyncError};
use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::evidence::{Evidence, EvidenceError, EVIDENCE_RECORDS_MAX};
use crate::ids::{Hash, LogIndex, MemberId, Timestamp};
use crate::merkle::{self, Frontier};
use crate::record::VerifyError;
use crate::store::{AppendBatch, Store, StoreNodes};
use crate::witness::{is_final, verify_cosignature, Cosignature, CosignatureError, Witnessed};

/// Witnessed checkpoints kept per origin above the latest final one, still gathering
/// cosignatures. Older non-final ones are dropped: a later checkpoint covers their records.
pub const PENDING_WITNESSED_MAX: usize = 4;

/// Checkpoints per origin remembered as already checked against this node's copy, so a peer
/// showing the same one every round costs a lookup, not a signature check and a root.
const CHECKED_MAX: usize = 8;

/// A checkpoint this node checked against its copy of the log, with the verified
/// cosignatures gathered for it (one per witness).
#[derive(Debug, Clone)]
pub(super) struct WitnessEntry {
    pub checkpoint: Checkpoint,
    pub bytes: Vec<u8>,
    pub cosigs: BTreeMap<MemberId, Vec<u8>>,
}

impl WitnessEntry {
    fn witnessed(&self) -> Witnessed {
        Witnessed {
            checkpoint: self.bytes.clone(),
            cosignatures: self.cosigs.values().cloned().collect(),
        }
    }
}

/// What the core loads from the store at start.
#[derive(Debug, Default)]
pub(super) struct AuditState {
    pub witnessed: BTreeMap<MemberId, BTreeMap<u64, WitnessEntry>>,
    /// Size of the latest checkpoint of each origin this node cosigned.
    pub cosigned: BTreeMap<MemberId, u64>,
    /// Verified evidence held, per origin, with its one-line summary.
    pub evidence: BTreeMap<MemberId, (Vec<u8>, String)>,
    /// The checkpoint of this node's own log whose cosignatures grew since the last round.
    pub announce: Option<u64>,
    /// Recently checked checkpoints per origin, newest last (at most [`CHECKED_MAX`]).
    pub checked: BTreeMap<MemberId, std::collections::VecDeque<(Checkpoint, Vec<u8>)>>,
}

impl AuditState {
    /// Reads witnessed checkpoints and evidence (verified before they were stored).
    pub fn load<S: Store>(
        store: &S,
        local: &MemberId,
        roster: &crate::roster::Roster,
    ) -> Result<Self, SyncError> {
        let mut state = AuditState::default();
        for origin in store.origins().map_err(store_err)? {
            let mut entries = BTreeMap::new();
            for (size, bytes) in store.witnessed(&origin).map_err(store_err)? {
                let w = Witnessed::decode(&bytes).map_err(store_err)?;
                let checkpoint = Checkpoint::decode_unverified(&w.checkpoint).map_err(store_err)?;
                let mut cosigs = BTreeMap::new();
                for c in w.cosignatures {
                    let cs = Cosignature::decode_unverified(&c).map_err(store_err)?;
                    if &cs.witness == local {
                        let last = state.cosigned.entry(origin.clone()).or_insert(0);
                        *last = (*last).max(size);
                    }
                    cosigs.insert(cs.witness, c);
                }
                entries.insert(
                    size,
                    WitnessEntry {
                        checkpoint,
                        bytes: w.checkpoint,
                        cosigs,
                    },
                );
            }
            if !entries.is_empty() {
                state.witnessed.insert(origin, entries);
            }
        }
        for (origin, bytes) in store.evidence().map_err(store_err)? {
            // Verified before it was stored; checked again for its summary (a later roster
            // still holds the keys with the windows they had).
            let summary = match Evidence::decode(&bytes).map(|e| e.verify(roster)) {
                Ok(Ok(eq)) => eq.summary,
                Ok(Err(e)) => format!("stored evidence against {origin} no longer verifies: {e}"),
                Err(e) => format!("stored evidence against {origin} does not decode: {e}"),
            };
            state.evidence.insert(origin, (bytes, summary));
        }
        Ok(state)
    }
}

impl SyncCore {
    /// The witnessed checkpoints held of `origin`, oldest first, with whether each is final
    /// under the current roster.
    pub fn witnessed(&self, origin: &MemberId) -> Vec<(Witnessed, bool)> {
        self.audit
            .witnessed
            .get(origin)
            .into_iter()
            .flat_map(|m| m.values())
            .map(|e| (e.witnessed(), is_final(&self.roster, e.cosigs.len())))
            .collect()
    }

    /// The evidence held: (origin, evidence bytes, one-line summary without field values).
    pub fn evidence(&self) -> impl Iterator<Item = (&MemberId, &[u8], &str)> {
        self.audit
            .evidence
            .iter()
            .map(|(o, (b, s))| (o, b.as_slice(), s.as_str()))
    }

    /// The latest final checkpoint held of `origin`: (size, witnesses).
    pub fn latest_final(&self, origin: &MemberId) -> Option<(u64, usize)> {
        self.audit
            .witnessed
            .get(origin)?
            .iter()
            .rev()
            .find(|(_, e)| is_final(&self.roster, e.cosigs.len()))
            .map(|(s, e)| (*s, e.cosigs.len()))
    }

    /// The root of this node's copy of `origin`'s log at `size` (≤ what it holds).
    fn root_at<S: Store>(&mut self, store: &S, origin: &MemberId, size: u64) -> Option<Hash> {
        let (held, root) = if origin == &self.config.local {
            (self.local.size, self.local.root)
        } else {
            let f = self.logs.get(origin)?;
            (f.size(), f.root())
        };
        if size > held {
            return None;
        }
        if size == held {
            return Some(root);
        }
        let nodes = StoreNodes::new(store, origin);
        match merkle::root(&nodes, size) {
            Ok(r) => Some(r),
            Err(e) => {
                let detail = nodes.error.lock().ok().and_then(|mut s| s.take());
                self.store_failed(detail.unwrap_or_else(|| format!("log of {origin}: {e}")));
                None
            }
        }
    }

    /// Checks a signed checkpoint a peer showed against this node's copy of its log. Returns
    /// the verified checkpoint when it agrees (or cannot be checked yet: the copy is shorter);
    /// `None` when the peer was dropped or evidence was raised.
    pub(super) fn check_shown<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        bytes: &[u8],
    ) -> Option<Checkpoint> {
        // The common case costs nothing: the checkpoint this node stores, or one it witnessed
        // (both verified and checked when they were kept).
        if let Some(cp) = self.known_checkpoint(bytes) {
            return Some(cp);
        }
        let cp = match verify_checkpoint(bytes, &self.roster) {
            Ok(c) => c.checkpoint,
            // A key this roster does not know yet (the peer may hold a newer roster, with a
            // rotated key, that is still on its way): nothing to check against, no blame.
            Err(VerifyError::UnknownKey { .. }) => return None,
            Err(e) => {
                self.drop_peer(
                    peer,
                    format!("sent a checkpoint that does not verify: {e}"),
                    DisconnectCause::Violation,
                );
                return None;
            }
        };
        let origin = cp.origin.clone();
        if self.frozen.contains(&origin) || self.roster.member(&origin).is_none() {
            return None;
        }
        let mine = self.root_at(store, &origin, cp.size)?;
        if mine == cp.root {
            let q = self.audit.checked.entry(origin).or_default();
            if q.len() >= CHECKED_MAX {
                q.pop_front();
            }
            q.push_back((cp.clone(), bytes.to_vec()));
            return Some(cp);
        }
        let evidence = self.contradiction(store, &origin, bytes, &cp);
        match evidence {
            Ok(ev) => self.raise(store, ev, peer),
            Err(why) => self.fork(
                &origin,
                peer,
                format!(
                    "{peer} showed a checkpoint of size {} that this node's copy contradicts ({why})",
                    cp.size
                ),
            ),
        }
        None
    }

    /// A checkpoint this node already verified and checked, found by its exact bytes (no
    /// decoding: peers show the same few checkpoints round after round).
    fn known_checkpoint(&self, bytes: &[u8]) -> Option<Checkpoint> {
        let stored = self.checkpoints.values();
        let checked = self.audit.checked.values().flatten();
        stored
            .chain(checked)
            .find(|(_, b)| b == bytes)
            .map(|(c, _)| c.clone())
            .filter(|c| !self.frozen.contains(&c.origin))
    }

    /// Builds evidence that signed checkpoint `theirs` (whose size this node holds) contradicts
    /// this node's copy of the log, from the best anchor it has: a checkpoint of the same size
    /// (kind 2), a larger one (kind 4, a consistency proof from the copy), or a smaller one plus
    /// the records after it (kind 3, bounded by [`EVIDENCE_RECORDS_MAX`]).
    fn contradiction<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
        theirs: &[u8],
        cp: &Checkpoint,
    ) -> Result<Evidence, String> {
        let anchor = self.anchor(store, origin);
        let nodes = StoreNodes::new(store, origin);
        match anchor {
            Some((mine, bytes)) if mine.size == cp.size => Ok(Evidence::Checkpoints {
                origin: origin.clone(),
                a: bytes,
                b: theirs.to_vec(),
            }),
            Some((mine, bytes)) if mine.size > cp.size => {
                let prefix_root = merkle::root(&nodes, cp.size).map_err(|e| e.to_string())?;
                let proof = merkle::consistency_proof(&nodes, cp.size, mine.size)
                    .map_err(|e| e.to_string())?;
                Ok(Evidence::Diverged {
                    origin: origin.clone(),
                    a: theirs.to_vec(),
                    b: bytes,
                    prefix_root,
                    proof,
                })
            }
            anchor => {
                let (size, older) = anchor.map_or((0, None), |(c, b)| (c.size, Some(b)));
                self.inconsistent(store, origin, size, older, Vec::new(), theirs, cp.size)
            }
        }
    }

    /// Kind-3 evidence: the copy's frontier at `size` (where checkpoint `older` is), its
    /// envelopes from there up, then `extra` (verified envelopes not stored), to `newer`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inconsistent<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
        size: u64,
        older: Option<Vec<u8>>,
        extra: Vec<Vec<u8>>,
        newer: &[u8],
        newer_size: u64,
    ) -> Result<Evidence, String> {
        let count = newer_size.saturating_sub(size);
        if count as usize > EVIDENCE_RECORDS_MAX {
            return Err(format!(
                "{count} records since the last checkpoint held, more than evidence carries"
            ));
        }
        let nodes = StoreNodes::new(store, origin);
        let frontier = Frontier::load(&nodes, size).map_err(|e| e.to_string())?;
        let stored = (count as usize).saturating_sub(extra.len());
        let mut envelopes: Vec<Vec<u8>> = store
            .envelopes(origin, LogIndex(size), stored)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        envelopes.extend(extra);
        if envelopes.len() as u64 != count {
            return Err(format!("holds {} of {count} records", envelopes.len()));
        }
        Ok(Evidence::Inconsistent {
            origin: origin.clone(),
            older,
            frontier: frontier.hashes(),
            envelopes,
            newer: newer.to_vec(),
        })
    }

    /// A chunk's checkpoint that its records, appended to this node's copy, do not produce:
    /// nothing of the chunk is stored, and kind-3 evidence is raised from the last checkpoint
    /// the copy agrees with.
    pub(super) fn unproduced<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
        peer: &MemberId,
        batch: AppendBatch,
        cp: &Checkpoint,
        bytes: &[u8],
    ) {
        let (size, older) = self
            .anchor(store, origin)
            .map_or((0, None), |(c, b)| (c.size, Some(b)));
        let extra = batch.records.into_iter().map(|r| r.envelope).collect();
        match self.inconsistent(store, origin, size, older, extra, bytes, cp.size) {
            Ok(ev) => self.raise(store, ev, peer),
            Err(why) => self.fork(
                origin,
                peer,
                format!(
                    "checkpoint of size {} has a root that the signed records do not produce ({why})",
                    cp.size
                ),
            ),
        }
    }

    /// The largest signed checkpoint of `origin` this node knows its copy agrees with.
    pub(super) fn anchor<S: Store>(
        &mut self,
        store: &S,
        origin: &MemberId,
    ) -> Option<(Checkpoint, Vec<u8>)> {
        let stored = if origin == &self.config.local {
            store
                .checkpoint(origin)
                .ok()
                .flatten()
                .and_then(|b| Some((Checkpoint::decode_unverified(&b).ok()?, b)))
                .filter(|(c, _)| c.size <= self.local.size)
        } else {
            self.checkpoints.get(origin).cloned()
        };
        let witnessed = self
            .audit
            .witnessed
            .get(origin)
            .and_then(|m| m.values().next_back())
            .map(|e| (e.checkpoint.clone(), e.bytes.clone()));
        match (stored, witnessed) {
            (Some(a), Some(b)) => Some(if a.0.size >= b.0.size { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Verifies evidence, then persists it, freezes the origin, reports it and sends it to every
    /// other connected peer ahead of anything queued. Evidence that does not verify is a bug
    /// when built here and a violation when `peer` sent it (see [`SyncCore::on_evidence`]).
    pub(super) fn raise<S: Store>(&mut self, store: &S, ev: Evidence, peer: &MemberId) {
        let origin = ev.origin().clone();
        if self.audit.evidence.contains_key(&origin) {
            return;
        }
        let eq = match ev.verify(&self.roster) {
            Ok(eq) => eq,
            Err(e) => {
                return self.fork(
                    &origin,
                    peer,
                    format!("a contradiction that this node could not prove ({e})"),
                )
            }
        };
        let bytes = ev.encode();
        let batch = AppendBatch {
            evidence: vec![(origin.clone(), bytes.clone())],
            ..AppendBatch::default()
        };
        if let Err(e) = store.apply(&batch) {
            return self.store_failed(e);
        }
        self.audit
            .evidence
            .insert(origin.clone(), (bytes.clone(), eq.summary.clone()));
        self.fork(&origin, peer, eq.summary);
        let peers: Vec<MemberId> = self.peers.keys().filter(|p| *p != peer).cloned().collect();
        for p in peers {
            self.transmit
                .push_front((p, Message::Evidence(bytes.clone())));
        }
    }

    /// Evidence from a peer: kept and passed on if it verifies, a violation if not.
    pub(super) fn on_evidence<S: Store>(&mut self, store: &S, peer: &MemberId, bytes: Vec<u8>) {
        let ev = match Evidence::decode(&bytes) {
            Ok(ev) => ev,
            Err(e) => {
                return self.drop_peer(
                    peer,
                    format!("sent evidence that does not decode: {e}"),
                    DisconnectCause::Violation,
                )
            }
        };
        if self.audit.evidence.contains_key(ev.origin()) {
            return;
        }
        if let Err(e) = ev.verify(&self.roster) {
            if matches!(
                e,
                EvidenceError::Signature {
                    error: VerifyError::UnknownKey { .. },
                    ..
                }
            ) {
                // Signed with a key a newer roster brings: checked when it comes again (every
                // peer sends all its evidence on each connection).
                return;
            }
            return self.drop_peer(
                peer,
                format!(
                    "sent evidence against {} that does not hold: {e}",
                    ev.origin()
                ),
                DisconnectCause::Violation,
            );
        }
        self.raise(store, ev, peer);
    }

    /// Sends every piece of evidence held to a newly connected peer.
    pub(super) fn send_evidence(&mut self, peer: &MemberId) {
        let all: Vec<Vec<u8>> = self
            .audit
            .evidence
            .values()
            .map(|(b, _)| b.clone())
            .collect();
        for bytes in all {
            self.send(peer, Message::Evidence(bytes));
        }
    }

    /// Once per witness interval: cosigns the latest stored checkpoint of every origin that
    /// this node has not cosigned yet (each cosignature goes to its origin), and sends the
    /// newest checkpoint of this node's own log that gained cosignatures since the last round,
    /// with all of them, to every peer.
    pub(super) fn witness_due<S: Store>(&mut self, store: &S, now: u64) {
        if now < self.next_witness {
            return;
        }
        self.next_witness = now.saturating_add(self.config.witness_ms);
        if let Some(size) = self.audit.announce.take() {
            let local = self.config.local.clone();
            let w = self
                .audit
                .witnessed
                .get(&local)
                .and_then(|m| m.get(&size))
                .map(WitnessEntry::witnessed);
            if let Some(w) = w {
                let peers: Vec<MemberId> = self.peers.keys().cloned().collect();
                for p in peers {
                    self.send(&p, Message::Witness(w.clone()));
                }
            }
        }
        if self.config.witness_key.is_none() {
            return;
        }
        let due: Vec<(Checkpoint, Vec<u8>)> = self
            .checkpoints
            .iter()
            .filter(|(o, (c, _))| {
                !self.frozen.contains(*o) && self.audit.cosigned.get(*o).is_none_or(|s| *s < c.size)
            })
            .map(|(_, v)| v.clone())
            .collect();
        for (cp, bytes) in due {
            self.cosign(store, cp, bytes, now);
        }
    }

    /// Cosigns a checkpoint this node checked against its copy, keeps the cosignature, and
    /// sends it to the checkpoint's origin, which gathers them and sends them on to everyone
    /// once per round: 2·n messages per origin and round instead of n² with each witness
    /// telling everyone.
    fn cosign<S: Store>(&mut self, store: &S, cp: Checkpoint, bytes: Vec<u8>, now: u64) {
        let Some(key) = self.config.witness_key.clone() else {
            return;
        };
        let local = self.config.local.clone();
        if cp.origin == local {
            return;
        }
        let signed = Cosignature::of(&cp, local.clone(), Timestamp(now)).sign(&key);
        self.audit.cosigned.insert(cp.origin.clone(), cp.size);
        let origin = cp.origin.clone();
        let w = Witnessed {
            checkpoint: bytes.clone(),
            cosignatures: vec![signed.clone()],
        };
        self.merge(store, cp, bytes, vec![(local, signed)]);
        if self.peers.contains_key(&origin) {
            self.send(&origin, Message::Witness(w));
        }
    }

    /// Adds verified cosignatures to the entry of a checked checkpoint, persists it, and drops
    /// entries the retention rule no longer keeps.
    fn merge<S: Store>(
        &mut self,
        store: &S,
        cp: Checkpoint,
        bytes: Vec<u8>,
        cosigs: Vec<(MemberId, Vec<u8>)>,
    ) {
        let origin = cp.origin.clone();
        let size = cp.size;
        let entries = self.audit.witnessed.entry(origin.clone()).or_default();
        let entry = entries.entry(size).or_insert_with(|| WitnessEntry {
            checkpoint: cp,
            bytes,
            cosigs: BTreeMap::new(),
        });
        let before = entry.cosigs.len();
        for (w, c) in cosigs {
            entry.cosigs.entry(w).or_insert(c);
        }
        if entry.cosigs.len() == before {
            return;
        }
        let mut batch = AppendBatch::default();
        batch
            .witnessed
            .push((origin.clone(), size, Some(entry.witnessed().encode())));
        if origin == self.config.local {
            // Gathered for our own log: passed on to everyone in the next round.
            let a = self.audit.announce.get_or_insert(size);
            *a = (*a).max(size);
        }
        // Retention: the latest final checkpoint covers every record before it, so older ones
        // go; above it, the newest few still gathering cosignatures stay.
        let quorum = self.roster.witness_quorum() as usize;
        let latest_final = entries
            .iter()
            .rev()
            .find(|(_, e)| e.cosigs.len() >= quorum)
            .map(|(s, _)| *s);
        let pending: Vec<u64> = entries
            .keys()
            .copied()
            .filter(|s| latest_final.is_none_or(|f| *s > f))
            .collect();
        let drop: Vec<u64> = entries
            .keys()
            .copied()
            .filter(|s| {
                latest_final.is_some_and(|f| *s < f)
                    || (pending.len() > PENDING_WITNESSED_MAX
                        && pending[..pending.len() - PENDING_WITNESSED_MAX].contains(s))
            })
            .collect();
        for s in drop {
            entries.remove(&s);
            batch.witnessed.push((origin.clone(), s, None));
        }
        if let Err(e) = store.apply(&batch) {
            self.store_failed(e);
        }
    }

    /// A checkpoint and cosignatures from a peer: checked against this node's copy, the valid
    /// cosignatures kept, and cosigned here too when it is newer than what this node last
    /// cosigned.
    pub(super) fn on_witness<S: Store>(
        &mut self,
        store: &S,
        peer: &MemberId,
        w: Witnessed,
        now: u64,
    ) {
        let Some(cp) = self.check_shown(store, peer, &w.checkpoint) else {
            return;
        };
        let held = if cp.origin == self.config.local {
            self.local.size
        } else {
            self.size(&cp.origin)
        };
        if cp.size > held {
            // Not checkable yet; later rounds will bring a checkpoint this node can check.
            return;
        }
        let known: Vec<&Vec<u8>> = self
            .audit
            .witnessed
            .get(&cp.origin)
            .and_then(|m| m.get(&cp.size))
            .map(|e| e.cosigs.values().collect())
            .unwrap_or_default();
        let fresh: Vec<Vec<u8>> = w
            .cosignatures
            .into_iter()
            .filter(|c| !known.contains(&c))
            .collect();
        let mut cosigs = Vec::with_capacity(fresh.len());
        for bytes in fresh {
            match verify_cosignature(&bytes, &self.roster) {
                Ok(c) if c.covers(&cp) => cosigs.push((c.witness, bytes)),
                Err(CosignatureError::Verify(VerifyError::UnknownKey { .. })) => {}
                Ok(c) => {
                    return self.drop_peer(
                        peer,
                        format!(
                            "sent a cosignature by {} of another checkpoint with {}'s",
                            c.witness, cp.origin
                        ),
                        DisconnectCause::Violation,
                    )
                }
                Err(e) => {
                    return self.drop_peer(
                        peer,
                        format!("sent a cosignature that does not verify: {e}"),
                        DisconnectCause::Violation,
                    )
                }
            }
        }
        let newer = self
            .audit
            .cosigned
            .get(&cp.origin)
            .is_none_or(|s| *s < cp.size);
        let bytes = w.checkpoint;
        self.merge(store, cp.clone(), bytes.clone(), cosigs);
        if newer && cp.origin != self.config.local {
            self.cosign(store, cp, bytes, now);
        }
    }

    /// The latest stored checkpoint of every origin held, for `Heads`.
    pub(super) fn shown_checkpoints<S: Store>(&mut self, store: &S) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.checkpoints.values().map(|(_, b)| b.clone()).collect();
        let local = self.config.local.clone();
        if let Some((_, b)) = self.anchor(store, &local) {
            out.push(b);
        }
        out
    }
}
