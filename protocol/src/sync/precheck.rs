//! Checking a peer's records before the core sees them. A catch-up is mostly Ed25519
//! verification, and the core is one thread that also applies batches to the store; while it
//! applies one message, nothing verifies the next. [`Prechecked::check`] runs the part of
//! verification that depends only on the roster — each record's signature and disclosure
//! digests, and the message's checkpoint signature — wherever the caller likes (the node: the
//! connection's reader, off the driver), and [`super::SyncCore::handle_records`] uses the
//! results if the roster they were checked under is still the core's. Otherwise, or for a plain
//! [`super::wire::Message::Records`], the core verifies itself, so a stale or skipped precheck
//! costs time, never a check: the results are exactly what the core would compute.
//!
//! Records whose envelopes the store already holds byte for byte — a back-fill answer (the same
//! records again, with the fields a narrower relay could not send), a push resent because the
//! sender's knowledge of us lagged — are not checked for their signature again ([`Held`],
//! [`crate::record::verify_envelope_held`]): it was checked before they were stored, and the
//! Ed25519 check is most of what a record costs. Their disclosures are checked in full.
//! Verifying a resent range therefore costs digests, not signatures; it is still bounded by the
//! node's readers — one message at a time per stream, two streams per peer.

use std::collections::BTreeMap;

use crate::checkpoint::{verify_checkpoint, SignedCheckpoint};
use crate::ids::{LogIndex, MemberId};
use crate::record::{verify_records_owned_held, OwnedVerification, VerifiedRecord, VerifyError};
use crate::roster::Roster;
use crate::store::Store;

use super::wire::{Records, WireRecord};

/// The envelopes a store holds in a range of one origin's log, by sequence number: those
/// whose signature need not be checked again when a peer sends them byte for byte.
#[derive(Debug, Default)]
pub(super) struct Held(BTreeMap<u64, Vec<u8>>);

impl Held {
    /// What `store` holds of `origin` in `from..from + count`. A failed read holds nothing,
    /// which costs verification, never a check.
    pub(super) fn read<S: Store>(store: &S, origin: &MemberId, from: u64, count: usize) -> Self {
        if count == 0 {
            return Held::default();
        }
        // Records past the head — every push, most of a catch-up — are not held: no need to
        // read (and decode) the chunk before them to find that out.
        if store
            .head(origin)
            .is_ok_and(|h| h.map_or(0, |h| h.size) <= from)
        {
            return Held::default();
        }
        let end = from.saturating_add(count as u64);
        match store.envelopes(origin, LogIndex(from), count) {
            Ok(envelopes) => Held(
                envelopes
                    .into_iter()
                    .filter(|(seq, _)| (from..end).contains(&seq.0))
                    .map(|(seq, envelope)| (seq.0, envelope))
                    .collect(),
            ),
            Err(_) => Held::default(),
        }
    }

    fn get(&self, seq: u64) -> Option<&[u8]> {
        self.0.get(&seq).map(Vec::as_slice)
    }
}

/// `verify_record_owned` of every record (records `from`, `from + 1`, …) on every core (a batch
/// per core, whose signature checks finish together: `verify_records_owned_held`), moving
/// each record's disclosure bytes out of `records` into the result (on failure, back with the
/// error). A record whose envelope is `held` byte for byte skips its signature check.
pub(super) fn verify_taking_disclosures(
    records: &mut [WireRecord],
    from: u64,
    held: &Held,
    roster: &Roster,
) -> Vec<OwnedVerification> {
    let inputs: Vec<_> = records
        .iter_mut()
        .enumerate()
        .map(|(i, w)| {
            let seq = from.saturating_add(i as u64);
            (
                w.envelope.as_slice(),
                held.get(seq),
                std::mem::take(&mut w.disclosures),
            )
        })
        .collect();
    crate::par::map_batches_owned(inputs, |batch| verify_records_owned_held(batch, roster))
}

/// A `Records` message with its roster-dependent checks done.
#[derive(Debug)]
pub struct Prechecked {
    pub(super) records: Records,
    /// The roster version the results hold for.
    pub(super) roster_version: u64,
    /// `verify_record_owned` of each record, in order; a failed record's disclosure bytes are
    /// back in `records`.
    pub(super) verified: Vec<Result<VerifiedRecord, VerifyError>>,
    /// `verify_checkpoint` of the message's checkpoint, if it has one.
    pub(super) checkpoint: Option<Result<SignedCheckpoint, VerifyError>>,
}

impl Prechecked {
    /// Verifies every record of `records` (on every core, like the core does) and the
    /// checkpoint under `roster`; records whose envelopes `store` already holds byte for byte
    /// skip their signature check ([`Held`]). Nothing here decides whether the records are
    /// wanted or fit the log; the core still does that, and every check that depends on its
    /// state.
    pub fn check<S: Store>(mut records: Records, roster: &Roster, store: &S) -> Self {
        let held = Held::read(store, &records.origin, records.from, records.records.len());
        // A verified record keeps its disclosures' bytes (moved, not copied), so a queued
        // message holds them once; those of a record that failed are put back, and
        // `into_records` puts back the others.
        let results = verify_taking_disclosures(&mut records.records, records.from, &held, roster);
        let verified = records
            .records
            .iter_mut()
            .zip(results)
            .map(|(w, r)| {
                r.map_err(|(e, disclosures)| {
                    w.disclosures = disclosures;
                    e
                })
            })
            .collect();
        let checkpoint = records
            .checkpoint
            .as_ref()
            .map(|bytes| verify_checkpoint(bytes, roster));
        Prechecked {
            records,
            roster_version: roster.version,
            verified,
            checkpoint,
        }
    }

    /// The message as received, for verifying again from scratch.
    pub fn into_records(self) -> Records {
        let mut records = self.records;
        for (w, v) in records.records.iter_mut().zip(self.verified) {
            if let Ok(v) = v {
                w.disclosures = v.disclosures.into_iter().map(|d| d.into_bytes()).collect();
            }
        }
        records
    }
}
