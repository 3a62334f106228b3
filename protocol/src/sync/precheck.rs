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
//! The price: a precheck also verifies records the core then drops unverified (a range already
//! applied, a duplicated push), so a peer resending old ranges costs us verification. That is
//! bounded by the node's readers — one message at a time per stream, two streams per peer.

use crate::checkpoint::{verify_checkpoint, SignedCheckpoint};
use crate::record::{verify_record_owned, VerifiedRecord, VerifyError};
use crate::roster::Roster;

use super::wire::{Records, WireRecord};

/// A record's verification with, on failure, its disclosure bytes back.
type Taken = Result<VerifiedRecord, (VerifyError, Vec<Vec<u8>>)>;

/// `verify_record_owned` of every record on every core, moving each record's disclosure bytes
/// out of `records` into the result (on failure, back with the error).
pub(super) fn verify_taking_disclosures(records: &mut [WireRecord], roster: &Roster) -> Vec<Taken> {
    let inputs: Vec<(&[u8], Vec<Vec<u8>>)> = records
        .iter_mut()
        .map(|w| (w.envelope.as_slice(), std::mem::take(&mut w.disclosures)))
        .collect();
    crate::par::map_owned(inputs, |(envelope, disclosures)| {
        verify_record_owned(envelope, disclosures, roster)
    })
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
    /// checkpoint under `roster`. Nothing here decides whether the records are wanted or fit
    /// the log; the core still does that, and every check that depends on its state.
    pub fn check(mut records: Records, roster: &Roster) -> Self {
        // A verified record keeps its disclosures' bytes (moved, not copied), so a queued
        // message holds them once; those of a record that failed are put back, and
        // `into_records` puts back the others.
        let results = verify_taking_disclosures(&mut records.records, roster);
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
