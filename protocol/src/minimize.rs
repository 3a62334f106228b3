//! Applying a [`View`] to held disclosures (DESIGN §8): what a holder may send a peer, keep from a
//! peer, or must purge from its store when a newer policy or an expired retention takes fields
//! away. The sync core filters with [`filter`]; the node runs [`purge`] over its store.
//!
//! Disclosed fields are named by a bit mask over the kind's schema order (at most 32 fields per
//! kind; the schema test checks that), which keeps disclosure-ledger entries small.

use std::collections::BTreeSet;

use crate::codec::DecodeError;
use crate::cose;
use crate::disclosure::Disclosure;
use crate::ids::{MemberId, RecordId, Timestamp};
use crate::limits::ENVELOPE_BYTES_MAX;
use crate::policy::View;
use crate::record::Header;
use crate::schema::RecordKind;
use crate::store::{subjects_of_bytes, Store, StoredRecord};

/// Records read and rewritten per store batch while purging: bounds one batch's size.
pub const PURGE_BATCH_RECORDS: usize = 256;

/// A stored (already verified) envelope's header, decoded without checking the signature again.
pub fn envelope_header(envelope: &[u8]) -> Result<Header, DecodeError> {
    let sign1 = cose::open(
        "envelope",
        envelope,
        ENVELOPE_BYTES_MAX,
        cose::CONTENT_TYPE_RECORD,
    )?;
    Header::decode(sign1.payload)
}

/// The position of `field` in `kind`'s schema, as a mask bit.
pub fn field_bit(kind: RecordKind, field: &str) -> u32 {
    kind.fields()
        .iter()
        .position(|f| f.name == field)
        .map_or(0, |i| 1u32 << i)
}

/// The field names a mask stands for, in schema order.
pub fn mask_fields(kind: RecordKind, mask: u32) -> Vec<&'static str> {
    kind.fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u32 << i) != 0)
        .map(|(_, f)| f.name)
        .collect()
}

/// What a view lets through of one record's disclosures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub kept: Vec<Vec<u8>>,
    /// Mask of the kept fields ([`field_bit`]).
    pub mask: u32,
    /// Names of the fields withheld (or `"?"` for bytes that are not a disclosure).
    pub dropped: Vec<String>,
}

/// Splits `disclosures` of a `kind` record issued at `issued_at` into those `view` admits at
/// `now` and the rest.
pub fn filter<B: AsRef<[u8]>>(
    view: &View,
    kind: RecordKind,
    issued_at: Timestamp,
    now: u64,
    disclosures: &[B],
) -> Filtered {
    split(kind, disclosures, |name| {
        view.admits(kind, name, issued_at, now)
    })
}

/// Every disclosure held, for the record's own origin: an issuer is entitled to all the fields
/// it signed (a node restored from a backup takes its own newer records back, SPEC §14).
pub fn for_origin<B: AsRef<[u8]>>(kind: RecordKind, disclosures: &[B]) -> Filtered {
    split(kind, disclosures, |_| true)
}

fn split<B: AsRef<[u8]>>(
    kind: RecordKind,
    disclosures: &[B],
    admits: impl Fn(&str) -> bool,
) -> Filtered {
    let mut out = Filtered::default();
    for bytes in disclosures {
        let bytes = bytes.as_ref();
        match Disclosure::field_name(bytes) {
            Some(name) if admits(name) => {
                out.mask |= field_bit(kind, name);
                out.kept.push(bytes.to_vec());
            }
            Some(name) => out.dropped.push(name.to_owned()),
            None => out.dropped.push("?".to_owned()),
        }
    }
    out
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Records examined (every record of every other origin).
    pub records: u64,
    /// Records whose held disclosures shrank.
    pub changed: u64,
    /// Disclosures removed.
    pub disclosures: u64,
    /// Field names removed, for the log line.
    pub fields: BTreeSet<String>,
}

/// Removes from `store` every disclosure of another origin's record that `view` does not admit
/// at `now` (a narrower policy version, or a retention that ran out). Envelopes stay, so every
/// log still verifies; the node's own records are the originals and are never purged.
pub fn purge<S: Store>(
    store: &S,
    view: &View,
    local: &MemberId,
    now: u64,
) -> Result<PurgeReport, String> {
    let mut report = PurgeReport::default();
    for origin in store.origins().map_err(|e| e.to_string())? {
        if &origin == local {
            continue;
        }
        let mut from = 0u64;
        loop {
            let page = store
                .records(&origin, crate::ids::LogIndex(from), PURGE_BATCH_RECORDS)
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else {
                break;
            };
            from = last.seq.0 + 1;
            let mut updates = Vec::new();
            for held in page {
                report.records += 1;
                if held.disclosures.is_empty() {
                    continue;
                }
                let header = envelope_header(&held.envelope)
                    .map_err(|e| format!("stored envelope {origin}#{}: {e}", held.seq.0))?;
                let f = filter(view, header.kind, header.issued_at, now, &held.disclosures);
                if f.dropped.is_empty() {
                    continue;
                }
                report.changed += 1;
                report.disclosures += f.dropped.len() as u64;
                report.fields.extend(f.dropped);
                updates.push(StoredRecord {
                    origin: origin.clone(),
                    seq: held.seq,
                    id: RecordId::of_envelope(&held.envelope),
                    kind: header.kind,
                    issued_at: header.issued_at,
                    subjects: subjects_of_bytes(&f.kept),
                    envelope: Vec::new(),
                    disclosures: f.kept,
                });
            }
            if !updates.is_empty() {
                store
                    .replace_disclosures(&updates)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(report)
}
