//! Audit bundles (DESIGN §5, SPEC §19): one file an auditor checks years later with no node,
//! network or database. It holds the roster chain from genesis (whose keys and validity windows
//! decide which signature was valid when), and for each chosen record its envelope, the
//! disclosures the exporter holds and chose to include, the exporter's latest checkpoint of the
//! origin's log that covers it with the cosignatures gathered for that checkpoint, and an RFC
//! 9162 inclusion proof; plus any equivocation evidence the exporter holds. The exporter signs
//! the whole as a COSE_Sign1, so a changed byte anywhere fails verification and names itself.
//!
//! [`verify_bundle`] checks everything and returns a [`Report`] that says, check by check, what
//! held and what did not; it never stops at the first failure, so an auditor sees the extent.

use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::codec::{self, DecodeError, Encoder};
use crate::cose;
use crate::evidence::{Equivocation, Evidence, EVIDENCE_BYTES_MAX};
use crate::ids::{sha256, Hash, MemberId, RecordId, Timestamp};
use crate::keys::SigningKey;
use crate::limits::{
    CHECKPOINT_BYTES_MAX, DISCLOSURES_PER_RECORD_MAX, DISCLOSURE_BYTES_MAX, ENVELOPE_BYTES_MAX,
    ROSTER_BYTES_MAX,
};
use crate::merkle::{self, leaf_hash};
use crate::record::{check_signature, verify_record};
use crate::roster::{verify_chain, Roster, SignedRoster};
use crate::store::{Store, StoreNodes};
use crate::witness::{count_witnesses, Witnessed, COSIGNATURES_MAX, COSIGNATURE_BYTES_MAX};

pub const CONTENT_TYPE_BUNDLE: &str = "application/tfx-audit-bundle+cbor";

/// The payload format this code writes and reads.
pub const BUNDLE_FORMAT: u64 = 1;

/// Records in one bundle. An audit asks about specific records; a whole log is re-verified
/// with `tfx audit log` instead.
pub const BUNDLE_RECORDS_MAX: usize = 10_000;

/// Roster versions in one bundle (the chain from genesis).
pub const BUNDLE_ROSTERS_MAX: usize = 1_000;

/// Evidence pieces in one bundle: one per member at most.
pub const BUNDLE_EVIDENCE_MAX: usize = crate::limits::ROSTER_MEMBERS_MAX;

/// Bytes of a bundle: 256 MiB bounds what `tfx audit verify` reads into memory.
pub const BUNDLE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Hashes in one inclusion proof: one per tree level.
pub const PROOF_HASHES_MAX: usize = merkle::LEVELS_MAX as usize;

/// CBOR items one record map can hold: the map, 5 keys, 5 values, and the entries of its
/// disclosure, cosignature and proof arrays at their limits.
const RECORD_ITEMS_MAX: usize =
    11 + DISCLOSURES_PER_RECORD_MAX + COSIGNATURES_MAX + PROOF_HASHES_MAX;

/// CBOR items in one bundle payload (3 631 320): every record at its limit, the roster and
/// evidence arrays, and the payload map.
pub const BUNDLE_ITEMS_MAX: usize =
    BUNDLE_RECORDS_MAX * RECORD_ITEMS_MAX + BUNDLE_ROSTERS_MAX + BUNDLE_EVIDENCE_MAX + 64;

// Payload keys.
const B_FORMAT: i64 = 1;
const B_CONSORTIUM: i64 = 2;
const B_CREATED: i64 = 3;
const B_EXPORTER: i64 = 4;
const B_ROSTERS: i64 = 5;
const B_ITEMS: i64 = 6;
const B_EVIDENCE: i64 = 7;
// Item keys.
const I_ENVELOPE: i64 = 1;
const I_DISCLOSURES: i64 = 2;
const I_CHECKPOINT: i64 = 3;
const I_COSIGNATURES: i64 = 4;
const I_PROOF: i64 = 5;

/// One record with what proves it sits in its origin's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Vec<u8>>,
    /// The origin's signed checkpoint covering the record.
    pub checkpoint: Vec<u8>,
    /// Cosignatures of that checkpoint by other members.
    pub cosignatures: Vec<Vec<u8>>,
    /// Inclusion proof of the record's leaf in the checkpoint's tree.
    pub proof: Vec<Hash>,
}

/// A bundle's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub consortium: String,
    pub created: Timestamp,
    pub exporter: MemberId,
    /// Signed roster versions from genesis, in order.
    pub rosters: Vec<Vec<u8>>,
    pub items: Vec<Item>,
    /// Equivocation evidence ([`crate::evidence`]) the exporter holds.
    pub evidence: Vec<Vec<u8>>,
}

impl Bundle {
    fn encode_payload(&self) -> Vec<u8> {
        let size: usize = self
            .items
            .iter()
            .map(|i| {
                i.envelope.len()
                    + i.checkpoint.len()
                    + i.disclosures.iter().map(Vec::len).sum::<usize>()
                    + i.cosignatures.iter().map(Vec::len).sum::<usize>()
                    + 40 * i.proof.len()
                    + 64
            })
            .sum::<usize>()
            + self.rosters.iter().map(Vec::len).sum::<usize>()
            + self.evidence.iter().map(Vec::len).sum::<usize>()
            + 256;
        let mut e = Encoder::with_capacity(size);
        e.map(7);
        e.uint(B_FORMAT as u64).uint(BUNDLE_FORMAT);
        e.uint(B_CONSORTIUM as u64).text(&self.consortium);
        e.uint(B_CREATED as u64).uint(self.created.0);
        e.uint(B_EXPORTER as u64).text(self.exporter.as_str());
        e.uint(B_ROSTERS as u64).array(self.rosters.len());
        for r in &self.rosters {
            e.bytes(r);
        }
        e.uint(B_ITEMS as u64).array(self.items.len());
        for i in &self.items {
            e.map(5);
            e.uint(I_ENVELOPE as u64).bytes(&i.envelope);
            e.uint(I_DISCLOSURES as u64).array(i.disclosures.len());
            for d in &i.disclosures {
                e.bytes(d);
            }
            e.uint(I_CHECKPOINT as u64).bytes(&i.checkpoint);
            e.uint(I_COSIGNATURES as u64).array(i.cosignatures.len());
            for c in &i.cosignatures {
                e.bytes(c);
            }
            e.uint(I_PROOF as u64).array(i.proof.len());
            for h in &i.proof {
                e.bytes(h);
            }
        }
        e.uint(B_EVIDENCE as u64).array(self.evidence.len());
        for ev in &self.evidence {
            e.bytes(ev);
        }
        e.finish()
    }

    /// Signs the bundle with the exporter's record-signing key: the file's bytes.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        cose::sign(key, CONTENT_TYPE_BUNDLE, self.encode_payload())
    }

    fn decode_payload(bytes: &[u8]) -> Result<Bundle, DecodeError> {
        const W: &str = "bundle";
        let v = codec::decode_with_items(W, bytes, BUNDLE_BYTES_MAX, BUNDLE_ITEMS_MAX)?;
        let m = codec::as_map(W, &v)?;
        codec::only_keys(
            W,
            m,
            &[
                B_FORMAT,
                B_CONSORTIUM,
                B_CREATED,
                B_EXPORTER,
                B_ROSTERS,
                B_ITEMS,
                B_EVIDENCE,
            ],
        )?;
        let format = codec::as_u64(W, codec::field(W, m, B_FORMAT)?)?;
        if format != BUNDLE_FORMAT {
            return Err(DecodeError::structure(
                W,
                format!("format {format}; this tfx reads format {BUNDLE_FORMAT}"),
            ));
        }
        let list = |k: i64, max: usize, what: &str| -> Result<&[codec::Value], DecodeError> {
            let l = codec::as_array(W, codec::field(W, m, k)?)?;
            if l.len() > max {
                return Err(DecodeError::structure(
                    W,
                    format!("{} {what} (max {max})", l.len()),
                ));
            }
            Ok(l)
        };
        let rosters = list(B_ROSTERS, BUNDLE_ROSTERS_MAX, "roster versions")?
            .iter()
            .map(|r| sized(r, ROSTER_BYTES_MAX, "roster"))
            .collect::<Result<_, _>>()?;
        let evidence = list(B_EVIDENCE, BUNDLE_EVIDENCE_MAX, "pieces of evidence")?
            .iter()
            .map(|r| sized(r, EVIDENCE_BYTES_MAX, "evidence"))
            .collect::<Result<_, _>>()?;
        let mut items = Vec::new();
        for (n, v) in list(B_ITEMS, BUNDLE_RECORDS_MAX, "records")?
            .iter()
            .enumerate()
        {
            items.push(
                decode_item(v)
                    .map_err(|e| DecodeError::structure(W, format!("record {}: {e}", n + 1)))?,
            );
        }
        Ok(Bundle {
            consortium: codec::as_text(W, codec::field(W, m, B_CONSORTIUM)?)?.to_owned(),
            created: Timestamp(codec::as_u64(W, codec::field(W, m, B_CREATED)?)?),
            exporter: MemberId::new(codec::as_text(W, codec::field(W, m, B_EXPORTER)?)?)
                .map_err(|e| DecodeError::structure(W, e.to_string()))?,
            rosters,
            items,
            evidence,
        })
    }
}

fn sized(v: &codec::Value, max: usize, what: &str) -> Result<Vec<u8>, DecodeError> {
    let b = codec::as_bytes("bundle", v)?;
    if b.len() > max {
        return Err(DecodeError::structure(
            "bundle",
            format!("{what} of {} bytes (max {max})", b.len()),
        ));
    }
    Ok(b.to_vec())
}

fn decode_item(v: &codec::Value) -> Result<Item, DecodeError> {
    const W: &str = "bundle record";
    let m = codec::as_map(W, v)?;
    codec::only_keys(
        W,
        m,
        &[
            I_ENVELOPE,
            I_DISCLOSURES,
            I_CHECKPOINT,
            I_COSIGNATURES,
            I_PROOF,
        ],
    )?;
    let list = |k: i64, max: usize| -> Result<&[codec::Value], DecodeError> {
        let l = codec::as_array(W, codec::field(W, m, k)?)?;
        if l.len() > max {
            return Err(DecodeError::structure(
                W,
                format!("{} entries under key {k} (max {max})", l.len()),
            ));
        }
        Ok(l)
    };
    Ok(Item {
        envelope: sized(
            codec::field(W, m, I_ENVELOPE)?,
            ENVELOPE_BYTES_MAX,
            "envelope",
        )?,
        disclosures: list(I_DISCLOSURES, DISCLOSURES_PER_RECORD_MAX)?
            .iter()
            .map(|d| sized(d, DISCLOSURE_BYTES_MAX, "disclosure"))
            .collect::<Result<_, _>>()?,
        checkpoint: sized(
            codec::field(W, m, I_CHECKPOINT)?,
            CHECKPOINT_BYTES_MAX,
            "checkpoint",
        )?,
        cosignatures: list(I_COSIGNATURES, COSIGNATURES_MAX)?
            .iter()
            .map(|c| sized(c, COSIGNATURE_BYTES_MAX, "cosignature"))
            .collect::<Result<_, _>>()?,
        proof: list(I_PROOF, PROOF_HASHES_MAX)?
            .iter()
            .map(|h| codec::as_hash(W, h))
            .collect::<Result<_, _>>()?,
    })
}

/// Why a bundle could not be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("no record {0} in this node's store")]
    NotHeld(RecordId),
    #[error("record {id} ({origin}#{seq}) is not covered by any checkpoint this node holds yet; try again after the next sync round")]
    NotCovered {
        id: RecordId,
        origin: MemberId,
        seq: u64,
    },
    #[error("{count} records (at most {BUNDLE_RECORDS_MAX} per bundle)")]
    TooMany { count: usize },
    #[error("no records asked for")]
    Empty,
    #[error("store: {0}")]
    Store(String),
}

/// What the exporter puts in.
#[derive(Debug)]
pub struct ExportRequest<'a> {
    pub exporter: MemberId,
    pub created: Timestamp,
    /// The roster chain from genesis, as signed.
    pub rosters: Vec<Vec<u8>>,
    /// The latest roster (verified from `rosters`): decides which checkpoints are final.
    pub roster: &'a Roster,
    pub records: Vec<RecordId>,
    /// Only these fields' disclosures are included; `None`: every one held.
    pub fields: Option<Vec<String>>,
    /// The local log is served only up to its durable size (a record not yet durable could be
    /// lost in a crash and its position reused).
    pub local_durable: u64,
    pub evidence: Vec<Vec<u8>>,
}

/// Builds a bundle from a holder's store: for each record the latest final checkpoint of its
/// origin covering it (else the latest covering checkpoint held, which the verifier will report
/// as not final), with an inclusion proof from the holder's copy of the log.
pub fn export<S: Store>(store: &S, req: ExportRequest<'_>) -> Result<Bundle, ExportError> {
    if req.records.is_empty() {
        return Err(ExportError::Empty);
    }
    if req.records.len() > BUNDLE_RECORDS_MAX {
        return Err(ExportError::TooMany {
            count: req.records.len(),
        });
    }
    let err = |e: S::Error| ExportError::Store(e.to_string());
    let mut items = Vec::with_capacity(req.records.len());
    for id in &req.records {
        let (origin, seq) = store
            .locate(id)
            .map_err(err)?
            .ok_or(ExportError::NotHeld(*id))?;
        if origin == req.exporter && seq.0 >= req.local_durable {
            return Err(ExportError::NotHeld(*id));
        }
        let envelope = store
            .envelope(&origin, seq)
            .map_err(err)?
            .ok_or(ExportError::NotHeld(*id))?;
        let mut disclosures = store.disclosures(id).map_err(err)?;
        if let Some(fields) = &req.fields {
            disclosures.retain(|d| {
                crate::disclosure::Disclosure::field_name(d)
                    .is_some_and(|n| fields.iter().any(|f| f == n))
            });
        }
        let (checkpoint, cosignatures, size) = covering(store, &origin, seq.0, req.roster, &req)?
            .ok_or_else(|| ExportError::NotCovered {
            id: *id,
            origin: origin.clone(),
            seq: seq.0,
        })?;
        let nodes = StoreNodes::new(store, &origin);
        let proof = merkle::inclusion_proof(&nodes, seq.0, size).map_err(|e| {
            let detail = nodes.error.lock().ok().and_then(|mut s| s.take());
            ExportError::Store(detail.unwrap_or_else(|| format!("log of {origin}: {e}")))
        })?;
        items.push(Item {
            envelope,
            disclosures,
            checkpoint,
            cosignatures,
            proof,
        });
    }
    Ok(Bundle {
        consortium: req.roster.consortium.clone(),
        created: req.created,
        exporter: req.exporter.clone(),
        rosters: req.rosters.clone(),
        items,
        evidence: req.evidence.clone(),
    })
}

type Covering = (Vec<u8>, Vec<Vec<u8>>, u64);

/// The checkpoint to prove record `seq` of `origin` against: the latest final one covering
/// it, else the latest covering one held.
fn covering<S: Store>(
    store: &S,
    origin: &MemberId,
    seq: u64,
    roster: &Roster,
    req: &ExportRequest<'_>,
) -> Result<Option<Covering>, ExportError> {
    let err = |e: S::Error| ExportError::Store(e.to_string());
    let held = store.head(origin).map_err(err)?.map_or(0, |h| h.size);
    let limit = if origin == &req.exporter {
        req.local_durable.min(held)
    } else {
        held
    };
    let mut best: Option<(bool, Covering)> = None;
    for (size, bytes) in store.witnessed(origin).map_err(err)? {
        if size <= seq || size > limit {
            continue;
        }
        let Ok(w) = Witnessed::decode(&bytes) else {
            continue;
        };
        let Ok(cp) = Checkpoint::decode_unverified(&w.checkpoint) else {
            continue;
        };
        let (witnesses, _) = count_witnesses(&cp, &w.cosignatures, roster);
        let fin = crate::witness::is_final(roster, witnesses.len());
        let better = match &best {
            None => true,
            Some((f, (_, _, s))) => (fin && !f) || (fin == *f && size > *s),
        };
        if better {
            best = Some((fin, (w.checkpoint, w.cosignatures, size)));
        }
    }
    if let Some((_, c)) = best {
        return Ok(Some(c));
    }
    // No witnessed checkpoint covers it yet: the latest stored one, without cosignatures.
    let stored = store.checkpoint(origin).map_err(err)?;
    Ok(stored.and_then(|bytes| {
        let cp = Checkpoint::decode_unverified(&bytes).ok()?;
        (cp.size > seq && cp.size <= limit).then_some((bytes, Vec::new(), cp.size))
    }))
}

/// One check and how it came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. "signature" or "inclusion in checkpoint".
    pub what: &'static str,
    /// `Ok(detail)` when it held, `Err(reason)` when not. Never a field value.
    pub outcome: Result<String, String>,
}

impl Check {
    fn ok(what: &'static str, detail: impl Into<String>) -> Self {
        Check {
            what,
            outcome: Ok(detail.into()),
        }
    }
    fn failed(what: &'static str, reason: impl Into<String>) -> Self {
        Check {
            what,
            outcome: Err(reason.into()),
        }
    }
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What was found about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    /// 1-based position in the bundle.
    pub index: usize,
    pub id: RecordId,
    /// From the envelope (`None` when it does not decode).
    pub origin: Option<MemberId>,
    pub seq: Option<u64>,
    pub kind: Option<String>,
    pub issued_at: Option<Timestamp>,
    /// Names of the fields disclosed in the bundle (values are in the bundle, not here).
    pub fields: Vec<String>,
    pub checks: Vec<Check>,
}

impl RecordReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }
}

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Checks of the bundle as a whole: structure, roster chain, exporter signature, evidence.
    pub checks: Vec<Check>,
    pub records: Vec<RecordReport>,
    /// Hash of the genesis roster the chain starts from (compare it with the consortium's).
    pub genesis: Option<Hash>,
    /// Whether the genesis was pinned by the caller (else taken from the bundle itself).
    pub genesis_pinned: bool,
    pub consortium: Option<String>,
    pub exporter: Option<MemberId>,
    pub created: Option<Timestamp>,
    pub roster_version: Option<u64>,
    pub witness_quorum: Option<u32>,
    /// Origins the bundle's evidence shows signed two histories.
    pub equivocations: Vec<Equivocation>,
    /// Whether the file is a COSE_Sign1 with the bundle content type at all (else nothing in
    /// it could be checked: `tfx audit verify` exits 2).
    pub readable: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed) && self.records.iter().all(RecordReport::passed)
    }

    fn unreadable(genesis_pinned: bool, check: Check) -> Report {
        Report {
            checks: vec![check],
            records: Vec::new(),
            genesis: None,
            genesis_pinned,
            consortium: None,
            exporter: None,
            created: None,
            roster_version: None,
            witness_quorum: None,
            equivocations: Vec::new(),
            readable: false,
        }
    }
}

/// Verifies a bundle offline. `genesis`: the hash of the consortium's genesis roster payload,
/// as operators published it; without it the bundle's own first roster is taken (and the report
/// says so, with the hash to compare).
pub fn verify_bundle(bytes: &[u8], genesis: Option<Hash>) -> Report {
    let pinned = genesis.is_some();
    let sign1 = match cose::open("bundle", bytes, BUNDLE_BYTES_MAX, CONTENT_TYPE_BUNDLE) {
        Ok(s) => s,
        Err(e) => {
            return Report::unreadable(pinned, Check::failed("bundle structure", e.to_string()))
        }
    };
    let bundle = match Bundle::decode_payload(sign1.payload) {
        Ok(b) => b,
        Err(e) => {
            let mut r =
                Report::unreadable(pinned, Check::failed("bundle structure", e.to_string()));
            r.readable = true;
            return r;
        }
    };
    let mut report = Report::unreadable(pinned, Check::ok("bundle structure", "format 1"));
    report.readable = true;
    report.consortium = Some(bundle.consortium.clone());
    report.exporter = Some(bundle.exporter.clone());
    report.created = Some(bundle.created);

    // The roster chain: every key and window below comes from it.
    let first = bundle
        .rosters
        .first()
        .and_then(|r| SignedRoster::decode(r).ok());
    let genesis = genesis.or_else(|| first.as_ref().map(|g| sha256(&g.payload)));
    report.genesis = genesis;
    let roster = match genesis.map(|g| verify_chain(&g, &bundle.rosters)) {
        Some(Ok(r)) => {
            let how = if pinned {
                "from the pinned genesis"
            } else {
                "from the bundle's own genesis (not pinned: compare its hash with the consortium's)"
            };
            report.checks.push(Check::ok(
                "roster chain",
                format!("{} versions verify {how}", bundle.rosters.len()),
            ));
            r
        }
        Some(Err(e)) => {
            report
                .checks
                .push(Check::failed("roster chain", e.to_string()));
            return report;
        }
        None => {
            report
                .checks
                .push(Check::failed("roster chain", "the bundle holds no roster"));
            return report;
        }
    };
    report.roster_version = Some(roster.version);
    report.witness_quorum = Some(roster.witness_quorum());
    if roster.consortium != bundle.consortium {
        report.checks.push(Check::failed(
            "consortium",
            format!(
                "the bundle names consortium {:?}, its roster {:?}",
                bundle.consortium, roster.consortium
            ),
        ));
    }
    report.checks.push(
        match check_signature(&sign1, "bundle", &bundle.exporter, bundle.created, &roster) {
            Ok(()) => Check::ok(
                "exporter signature",
                format!("signed by {} with key {}", bundle.exporter, sign1.kid),
            ),
            Err(e) => Check::failed("exporter signature", e.to_string()),
        },
    );
    for (n, bytes) in bundle.evidence.iter().enumerate() {
        match Evidence::decode(bytes).map(|e| e.verify(&roster)) {
            Ok(Ok(eq)) => {
                report.checks.push(Check::ok(
                    "equivocation evidence",
                    format!("{} (fork at or before position {})", eq.summary, eq.fork_at),
                ));
                report.equivocations.push(eq);
            }
            Ok(Err(e)) => report.checks.push(Check::failed(
                "equivocation evidence",
                format!("piece {}: {e}", n + 1),
            )),
            Err(e) => report.checks.push(Check::failed(
                "equivocation evidence",
                format!("piece {}: {e}", n + 1),
            )),
        }
    }
    for (n, item) in bundle.items.iter().enumerate() {
        let r = verify_item(n + 1, item, &roster, &report.equivocations);
        report.records.push(r);
    }
    if bundle.items.is_empty() {
        report
            .checks
            .push(Check::failed("records", "the bundle holds no records"));
    }
    // Two verified records at one position are themselves evidence of a fork (kind 1).
    let mut seen = std::collections::BTreeMap::new();
    for r in &report.records {
        if let (Some(o), Some(s), true) = (
            &r.origin,
            r.seq,
            r.checks.first().is_some_and(Check::passed),
        ) {
            if let Some(other) = seen.insert((o.clone(), s), (r.index, r.id)) {
                if other.1 != r.id {
                    report.checks.push(Check::failed(
                        "one record per position",
                        format!(
                            "records {} and {} are two different records of {o} at position {s}: {o} signed two histories",
                            other.0, r.index
                        ),
                    ));
                }
            }
        }
    }
    report
}

fn verify_item(index: usize, item: &Item, roster: &Roster, forks: &[Equivocation]) -> RecordReport {
    let mut r = RecordReport {
        index,
        id: RecordId::of_envelope(&item.envelope),
        origin: None,
        seq: None,
        kind: None,
        issued_at: None,
        fields: Vec::new(),
        checks: Vec::new(),
    };
    let verified = match verify_record(&item.envelope, &item.disclosures, roster) {
        Ok(v) => v,
        Err(e) => {
            // Say which half failed: the envelope's signature, or a disclosure.
            let what = match crate::record::verify_envelope(&item.envelope, roster) {
                Ok(v) => {
                    r.origin = Some(v.header.origin.clone());
                    r.seq = Some(v.header.seq.0);
                    r.kind = Some(v.header.kind.name().to_owned());
                    r.issued_at = Some(v.header.issued_at);
                    r.checks.push(Check::ok("record signature", key_detail(&v)));
                    "disclosures"
                }
                Err(_) => "record signature",
            };
            r.checks.push(Check::failed(what, e.redacted()));
            return r;
        }
    };
    let h = &verified.envelope.header;
    r.origin = Some(h.origin.clone());
    r.seq = Some(h.seq.0);
    r.kind = Some(h.kind.name().to_owned());
    r.issued_at = Some(h.issued_at);
    r.fields = verified
        .disclosures
        .iter()
        .map(|d| d.name().to_owned())
        .collect();
    r.checks.push(Check::ok(
        "record signature",
        key_detail(&verified.envelope),
    ));
    r.checks.push(Check::ok(
        "disclosures",
        format!(
            "{} disclosed fields match digests in the signed header",
            verified.disclosures.len()
        ),
    ));
    let cp = match verify_checkpoint(&item.checkpoint, roster) {
        Ok(c) => c.checkpoint,
        Err(e) => {
            r.checks.push(Check::failed("checkpoint", e.to_string()));
            return r;
        }
    };
    if cp.origin != h.origin || cp.size <= h.seq.0 {
        r.checks.push(Check::failed(
            "checkpoint",
            format!(
                "the checkpoint ({} size {}) does not cover {}#{}",
                cp.origin, cp.size, h.origin, h.seq.0
            ),
        ));
        return r;
    }
    r.checks.push(Check::ok(
        "checkpoint",
        format!("signed by {} for size {}", cp.origin, cp.size),
    ));
    r.checks.push(
        match merkle::verify_inclusion(
            &leaf_hash(&item.envelope),
            h.seq.0,
            cp.size,
            &item.proof,
            &cp.root,
        ) {
            Ok(()) => Check::ok(
                "inclusion",
                format!(
                    "position {} of {} in the checkpoint's tree",
                    h.seq.0, cp.size
                ),
            ),
            Err(e) => Check::failed("inclusion", e.to_string()),
        },
    );
    let (witnesses, errors) = count_witnesses(&cp, &item.cosignatures, roster);
    if let Some(e) = errors.first() {
        r.checks.push(Check::failed("cosignatures", e.to_string()));
    }
    let quorum = roster.witness_quorum() as usize;
    let names: Vec<&str> = witnesses.iter().map(MemberId::as_str).collect();
    r.checks.push(if witnesses.len() >= quorum {
        Check::ok(
            "final",
            format!(
                "checkpoint cosigned by {} of the {quorum} witnesses required: {}",
                witnesses.len(),
                names.join(", ")
            ),
        )
    } else {
        Check::failed(
            "final",
            format!(
                "checkpoint cosigned by {} witnesses, {quorum} required",
                witnesses.len()
            ),
        )
    });
    if let Some(eq) = forks.iter().find(|e| e.origin == h.origin) {
        // Evidence bounds where the histories part, not where they agree: any record of the
        // origin may sit on only one of them.
        r.checks.push(Check::failed(
            "no equivocation",
            format!(
                "{} signed two histories that part at or before position {}: no record of it \
                 is proven to be in its only history",
                h.origin, eq.fork_at
            ),
        ));
    }
    r
}

fn key_detail(v: &crate::record::VerifiedEnvelope) -> String {
    format!(
        "{} key {} valid at {} (issue time)",
        v.header.origin, v.kid, v.header.issued_at.0
    )
}
