//! Signed records (DESIGN §4, fixed): sealing a validated body into an envelope plus disclosures,
//! verifying them, and the record file that carries both between tools.
//!
//! The envelope is a COSE_Sign1 whose payload is the **header**:
//! `{1: origin, 2: seq, 3: kind, 4: schema, 5: issued_at_ms, ?6: supersedes, 7: [digests]}`,
//! digests sorted bytewise and padded with decoys to the kind's fixed count. Verification order is
//! COSE structure → header structure and rules (kind, schema, digest count and order; the origin
//! and time are needed to find the key) → key → signature → each disclosure's digest, field and
//! value. Nothing from the header is trusted until the signature checks; the error says which
//! step failed.

use crate::codec::{self, DecodeError};
use crate::cose::{self, CONTENT_TYPE_RECORD};
use crate::derive::{derived_fields, PseudonymKey};
use crate::disclosure::{Disclosure, SALT_BYTES};
use crate::entropy::{Entropy, EntropyUnavailable};
use crate::ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
use crate::keys::{KeyId, SigningKey, VerifyingKey};
use crate::limits::{
    DISCLOSURES_PER_RECORD_MAX, DISCLOSURE_BYTES_MAX, ENVELOPE_BYTES_MAX, RECORD_FILE_BYTES_MAX,
};
use crate::schema::{RecordKind, SCHEMA_VERSION};
use crate::validate::{check_value, RecordBody};

pub(crate) const H_ORIGIN: i64 = 1;
pub(crate) const H_SEQ: i64 = 2;
pub(crate) const H_KIND: i64 = 3;
pub(crate) const H_SCHEMA: i64 = 4;
pub(crate) const H_ISSUED_AT: i64 = 5;
pub(crate) const H_SUPERSEDES: i64 = 6;
pub(crate) const H_DIGESTS: i64 = 7;

/// The signed payload of a record envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub origin: MemberId,
    pub seq: LogIndex,
    pub kind: RecordKind,
    pub schema: u64,
    pub issued_at: Timestamp,
    pub supersedes: Option<RecordId>,
    /// Sorted, unique, exactly `kind.digest_count()` entries.
    pub digests: Vec<Hash>,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = codec::Encoder::with_capacity(96 + 34 * self.digests.len());
        e.map(if self.supersedes.is_some() { 7 } else { 6 });
        e.uint(H_ORIGIN as u64).text(self.origin.as_str());
        e.uint(H_SEQ as u64).uint(self.seq.0);
        e.uint(H_KIND as u64).text(self.kind.name());
        e.uint(H_SCHEMA as u64).uint(self.schema);
        e.uint(H_ISSUED_AT as u64).uint(self.issued_at.0);
        if let Some(s) = &self.supersedes {
            e.uint(H_SUPERSEDES as u64).bytes(&s.0);
        }
        e.uint(H_DIGESTS as u64).array(self.digests.len());
        for d in &self.digests {
            e.bytes(d);
        }
        e.finish()
    }

    /// Decodes and checks a header: known kind and schema, digest count and order.
    ///
    /// Read with [`codec::int_map`] after the profile scan, not through a [`codec::Value`] tree:
    /// every record a member receives, serves or audits has its header decoded, and the tree's
    /// allocations (a map and one buffer per digest) were a tenth of a catch-up's CPU. The checks
    /// run in the same order as before, so the same input gets the same error.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        const W: &str = "record header";
        const KEYS: [i64; 7] = [
            H_ORIGIN,
            H_SEQ,
            H_KIND,
            H_SCHEMA,
            H_ISSUED_AT,
            H_SUPERSEDES,
            H_DIGESTS,
        ];
        codec::scan_within(W, bytes, ENVELOPE_BYTES_MAX)?;
        let [origin, seq, kind, schema, issued_at, supersedes, digests] =
            codec::int_map(W, bytes, KEYS)?;
        let field = |v, key| codec::required(W, v, key);
        let origin = MemberId::new(codec::item_text(W, field(origin, H_ORIGIN)?)?)
            .map_err(|e| DecodeError::structure(W, e.to_string()))?;
        let kind_name = codec::item_text(W, field(kind, H_KIND)?)?;
        let kind = RecordKind::parse(kind_name).ok_or_else(|| {
            DecodeError::structure(W, format!("unknown record kind {kind_name:?}"))
        })?;
        let schema = codec::item_u64(W, field(schema, H_SCHEMA)?)?;
        if schema != SCHEMA_VERSION {
            return Err(DecodeError::structure(
                W,
                format!("unsupported schema version {schema} for {kind}"),
            ));
        }
        let supersedes = match supersedes {
            Some(v) => Some(RecordId(codec::item_hash(W, v)?)),
            None => None,
        };
        let list = codec::item_array(W, field(digests, H_DIGESTS)?)?;
        if list.len() != kind.digest_count() {
            let detail = format!(
                "{} digests (a {kind} header has {})",
                list.len(),
                kind.digest_count()
            );
            return Err(DecodeError::structure(W, detail));
        }
        let digests = list
            .iter()
            .map(|d| codec::item_hash(W, d))
            .collect::<Result<Vec<_>, _>>()?;
        if !digests.windows(2).all(|w| w[0] < w[1]) {
            return Err(DecodeError::structure(
                W,
                "digests are not sorted and unique",
            ));
        }
        Ok(Header {
            origin,
            seq: LogIndex(codec::item_u64(W, field(seq, H_SEQ)?)?),
            kind,
            schema,
            issued_at: Timestamp(codec::item_u64(W, field(issued_at, H_ISSUED_AT)?)?),
            supersedes,
            digests,
        })
    }
}

/// A sealed record: the envelope bytes and every disclosure the issuer holds.
#[derive(Debug, Clone)]
pub struct SealedRecord {
    pub id: RecordId,
    pub header: Header,
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Disclosure>,
}

/// Where and when a record is sealed.
#[derive(Debug, Clone, Copy)]
pub struct SealParams<'a> {
    pub origin: &'a MemberId,
    pub seq: LogIndex,
    pub issued_at: Timestamp,
    /// The consortium pseudonym key, if this issuer holds one; without it the pseudonym is left
    /// out (its slot becomes a decoy).
    pub pseudonym: Option<&'a PseudonymKey>,
}

/// Seals a validated record: derives fields, salts every field, pads with decoys, signs.
pub fn seal(
    body: &RecordBody,
    params: SealParams<'_>,
    key: &SigningKey,
    entropy: &mut dyn Entropy,
) -> Result<SealedRecord, EntropyUnavailable> {
    let count = body.kind.digest_count();
    // One draw for every salt and decoy: a single syscall per record in the node.
    let mut random = [0u8; SALT_BYTES * crate::limits::DIGESTS_PER_RECORD_MAX];
    let random = &mut random[..SALT_BYTES * count];
    entropy.fill(random)?;
    let mut salts = random.chunks_exact(SALT_BYTES);
    let mut next_salt = || {
        let mut s = [0u8; SALT_BYTES];
        s.copy_from_slice(salts.next().unwrap_or(&[0; SALT_BYTES]));
        s
    };
    let derived = derived_fields(body, params.pseudonym);
    let all = body.fields.iter().chain(derived.iter());
    let disclosures: Vec<Disclosure> = all
        .map(|(spec, value)| Disclosure::new(next_salt(), spec.name, value))
        .collect();
    // Architecture invariant: a kind's digest_count covers all of its fields (schema test).
    assert!(
        disclosures.len() <= count,
        "{} fields exceed {count} digests",
        disclosures.len()
    );
    let mut digests: Vec<Hash> = disclosures.iter().map(|d| *d.digest()).collect();
    while digests.len() < count {
        // A decoy is the hash of fresh randomness: indistinguishable from a real digest.
        digests.push(crate::ids::sha256(&next_salt()));
    }
    digests.sort_unstable();
    let header = Header {
        origin: params.origin.clone(),
        seq: params.seq,
        kind: body.kind,
        schema: SCHEMA_VERSION,
        issued_at: params.issued_at,
        supersedes: body.supersedes,
        digests,
    };
    let envelope = cose::sign(key, CONTENT_TYPE_RECORD, header.encode());
    Ok(SealedRecord {
        id: RecordId::of_envelope(&envelope),
        header,
        envelope,
        disclosures,
    })
}

/// Finds the public key a record or checkpoint names, as of the time it claims.
pub trait KeyResolver {
    fn resolve(&self, origin: &MemberId, kid: &KeyId, at: Timestamp) -> Option<VerifyingKey>;
}

/// A single key trusted for **whatever origin the record claims** (`tfx record verify --pub
/// FILE`, tests). Callers that know the origin must check `header.origin` themselves or use
/// [`KeySet`], which binds keys to origins.
impl KeyResolver for VerifyingKey {
    fn resolve(&self, _origin: &MemberId, kid: &KeyId, _at: Timestamp) -> Option<VerifyingKey> {
        (*kid == self.id()).then_some(*self)
    }
}

/// Known keys, each bound to the origin it belongs to (until the roster provides members' keys
/// with validity windows). A key resolves only for its own origin: a member's key must never
/// verify a record or checkpoint that claims another origin.
#[derive(Debug, Clone, Default)]
pub struct KeySet(pub Vec<(MemberId, VerifyingKey)>);

impl KeyResolver for KeySet {
    fn resolve(&self, origin: &MemberId, kid: &KeyId, _at: Timestamp) -> Option<VerifyingKey> {
        self.0
            .iter()
            .find(|(o, k)| o == origin && k.id() == *kid)
            .map(|(_, k)| *k)
    }
}

/// Which check a record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("signing key {kid} of {origin} is not known (or not valid at the issue time)")]
    UnknownKey { origin: MemberId, kid: KeyId },
    #[error("signature check failed: {what} was not signed by key {kid}")]
    BadSignature { what: &'static str, kid: KeyId },
    #[error("{count} disclosures (max {max})")]
    TooManyDisclosures { count: usize, max: usize },
    #[error("disclosure {index}: {error}")]
    DisclosureDecode { index: usize, error: DecodeError },
    #[error("disclosure {index} (field {field}): digest is not in the signed header")]
    DigestNotInHeader { index: usize, field: String },
    #[error("disclosure {index}: field {field:?} does not exist in {kind} records")]
    UnknownField {
        index: usize,
        field: String,
        kind: RecordKind,
    },
    #[error("disclosure {index} (field {field}): {rule}")]
    FieldValue {
        index: usize,
        field: String,
        rule: String,
    },
    #[error("disclosure {index}: field {field} is disclosed twice")]
    DuplicateField { index: usize, field: String },
}

impl VerifyError {
    /// The error without any field value, for logs and for reasons sent over the network (a
    /// value-rule message may quote the value; DESIGN §8: no field value in a log line).
    pub fn redacted(&self) -> String {
        match self {
            VerifyError::FieldValue { index, field, .. } => {
                format!("disclosure {index} (field {field}): the value breaks the field's rule")
            }
            other => other.to_string(),
        }
    }
}

/// An envelope whose signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedEnvelope {
    pub id: RecordId,
    pub header: Header,
    pub kid: KeyId,
}

/// Resolves the key a COSE_Sign1 names for `origin` at time `at` and checks its signature:
/// the signature step shared by records and checkpoints.
pub(crate) fn check_signature(
    sign1: &cose::Sign1,
    what: &'static str,
    origin: &MemberId,
    at: Timestamp,
    keys: &dyn KeyResolver,
) -> Result<(), VerifyError> {
    let key = resolve_key(sign1, origin, at, keys)?;
    if !key.verify(&sign1.to_be_signed(), sign1.signature) {
        return Err(VerifyError::BadSignature {
            what,
            kid: sign1.kid,
        });
    }
    Ok(())
}

/// The key a COSE_Sign1 names for `origin` at time `at`.
fn resolve_key(
    sign1: &cose::Sign1,
    origin: &MemberId,
    at: Timestamp,
    keys: &dyn KeyResolver,
) -> Result<VerifyingKey, VerifyError> {
    keys.resolve(origin, &sign1.kid, at)
        .ok_or_else(|| VerifyError::UnknownKey {
            origin: origin.clone(),
            kid: sign1.kid,
        })
}

/// What [`verify_envelope`] calls the signed part of a record in its errors.
const RECORD_SIGNED: &str = "record header";

/// Verifies an envelope's structure and signature, returning its header.
pub fn verify_envelope(
    envelope: &[u8],
    keys: &dyn KeyResolver,
) -> Result<VerifiedEnvelope, VerifyError> {
    let (sign1, header) = open_envelope(envelope)?;
    check_signature(
        &sign1,
        RECORD_SIGNED,
        &header.origin,
        header.issued_at,
        keys,
    )?;
    Ok(VerifiedEnvelope {
        id: RecordId::of_envelope(envelope),
        header,
        kid: sign1.kid,
    })
}

/// An envelope's COSE structure and header, signature unchecked.
fn open_envelope(envelope: &[u8]) -> Result<(cose::Sign1<'_>, Header), VerifyError> {
    let sign1 = cose::open(
        "envelope",
        envelope,
        ENVELOPE_BYTES_MAX,
        CONTENT_TYPE_RECORD,
    )?;
    let header = Header::decode(sign1.payload)?;
    Ok((sign1, header))
}

/// [`verify_envelope`] for an envelope this node may already hold. If `envelope` is byte for
/// byte `held` — bytes this node verified before it stored them (DESIGN §7: nothing is stored
/// unverified) — its signature is not checked again: the same bytes under the same key give
/// the same answer, and the Ed25519 check is most of what verifying a record costs. Its
/// structure is still read, so the result is exactly what [`verify_envelope`] returned when
/// the record was stored. Any other envelope, or none held, is verified in full.
///
/// This is what makes a back-fill (the same records again, with more fields) and a resent
/// push cheap. One difference from verifying afresh: a key revoked since the record was
/// stored does not fail it here — the record is held either way, and what is added to it are
/// disclosures its signed header commits to.
pub fn verify_envelope_held(
    envelope: &[u8],
    held: Option<&[u8]>,
    keys: &dyn KeyResolver,
) -> Result<VerifiedEnvelope, VerifyError> {
    if held != Some(envelope) {
        return verify_envelope(envelope, keys);
    }
    let (sign1, header) = open_envelope(envelope)?;
    Ok(VerifiedEnvelope {
        id: RecordId::of_envelope(envelope),
        header,
        kid: sign1.kid,
    })
}

/// Checks disclosures against a verified header: each decodes, its digest is signed, its field
/// belongs to the kind, its value is valid and normal, and no field is disclosed twice.
pub fn verify_disclosures<B: AsRef<[u8]>>(
    header: &Header,
    disclosures: &[B],
) -> Result<Vec<Disclosure>, VerifyError> {
    check_disclosure_count(disclosures.len())?;
    let mut out: Vec<Disclosure> = Vec::with_capacity(disclosures.len());
    for (index, bytes) in disclosures.iter().enumerate() {
        let d = Disclosure::decode(bytes.as_ref())
            .map_err(|error| VerifyError::DisclosureDecode { index, error })?;
        check_disclosure(header, index, &d, &out)?;
        out.push(d);
    }
    Ok(out)
}

/// [`verify_disclosures`] keeping the given bytes in the [`Disclosure`]s rather than copies
/// (a catch-up verifies millions). On failure every byte string comes back, in order, with the
/// error.
pub fn verify_disclosures_owned(
    header: &Header,
    disclosures: Vec<Vec<u8>>,
) -> Result<Vec<Disclosure>, (VerifyError, Vec<Vec<u8>>)> {
    if let Err(e) = check_disclosure_count(disclosures.len()) {
        return Err((e, disclosures));
    }
    let mut out: Vec<Disclosure> = Vec::with_capacity(disclosures.len());
    let mut rest = disclosures.into_iter();
    while let Some(bytes) = rest.next() {
        let index = out.len();
        let (error, bytes) = match Disclosure::decode_owned(bytes) {
            Ok(d) => match check_disclosure(header, index, &d, &out) {
                Ok(()) => {
                    out.push(d);
                    continue;
                }
                Err(e) => (e, d.into_bytes()),
            },
            Err((error, bytes)) => (VerifyError::DisclosureDecode { index, error }, bytes),
        };
        let back = out
            .into_iter()
            .map(Disclosure::into_bytes)
            .chain(std::iter::once(bytes))
            .chain(rest)
            .collect();
        return Err((error, back));
    }
    Ok(out)
}

fn check_disclosure_count(count: usize) -> Result<(), VerifyError> {
    if count > DISCLOSURES_PER_RECORD_MAX {
        return Err(VerifyError::TooManyDisclosures {
            count,
            max: DISCLOSURES_PER_RECORD_MAX,
        });
    }
    Ok(())
}

/// The checks of one decoded disclosure, the `index`th, given those before it (`earlier`).
fn check_disclosure(
    header: &Header,
    index: usize,
    d: &Disclosure,
    earlier: &[Disclosure],
) -> Result<(), VerifyError> {
    // Field names are copied into errors only: a verified record is most of a catch-up.
    let field = d.name();
    if header.digests.binary_search(d.digest()).is_err() {
        return Err(VerifyError::DigestNotInHeader {
            index,
            field: field.to_owned(),
        });
    }
    let kind = header.kind;
    let spec = kind.field(field).ok_or_else(|| VerifyError::UnknownField {
        index,
        field: field.to_owned(),
        kind,
    })?;
    check_value(spec, d.value()).map_err(|rule| VerifyError::FieldValue {
        index,
        field: field.to_owned(),
        rule,
    })?;
    if earlier.iter().any(|o| o.name() == field) {
        return Err(VerifyError::DuplicateField {
            index,
            field: field.to_owned(),
        });
    }
    Ok(())
}

/// A record whose envelope and disclosures all verified.
#[derive(Debug, Clone)]
pub struct VerifiedRecord {
    pub envelope: VerifiedEnvelope,
    pub disclosures: Vec<Disclosure>,
}

pub fn verify_record<B: AsRef<[u8]>>(
    envelope: &[u8],
    disclosures: &[B],
    keys: &dyn KeyResolver,
) -> Result<VerifiedRecord, VerifyError> {
    let envelope = verify_envelope(envelope, keys)?;
    let disclosures = verify_disclosures(&envelope.header, disclosures)?;
    Ok(VerifiedRecord {
        envelope,
        disclosures,
    })
}

/// [`verify_record`] keeping the disclosure bytes given rather than copies; on failure they
/// come back with the error (see [`verify_disclosures_owned`]).
pub fn verify_record_owned(
    envelope: &[u8],
    disclosures: Vec<Vec<u8>>,
    keys: &dyn KeyResolver,
) -> Result<VerifiedRecord, (VerifyError, Vec<Vec<u8>>)> {
    verify_record_owned_held(envelope, None, disclosures, keys)
}

/// [`verify_record_owned`] with the envelope checked by [`verify_envelope_held`]: the
/// disclosures are always checked in full.
pub fn verify_record_owned_held(
    envelope: &[u8],
    held: Option<&[u8]>,
    disclosures: Vec<Vec<u8>>,
    keys: &dyn KeyResolver,
) -> Result<VerifiedRecord, (VerifyError, Vec<Vec<u8>>)> {
    let envelope = match verify_envelope_held(envelope, held, keys) {
        Ok(e) => e,
        Err(e) => return Err((e, disclosures)),
    };
    let disclosures = verify_disclosures_owned(&envelope.header, disclosures)?;
    Ok(VerifiedRecord {
        envelope,
        disclosures,
    })
}

/// A record verified, or why not with its disclosure bytes back.
pub type OwnedVerification = Result<VerifiedRecord, (VerifyError, Vec<Vec<u8>>)>;

/// A record to verify by [`verify_records_owned_held`]: its envelope, the envelope this node
/// holds at its place if any, and its disclosures (kept by the result).
pub type OwnedRecordInput<'a> = (&'a [u8], Option<&'a [u8]>, Vec<Vec<u8>>);

/// [`verify_record_owned_held`] of each `(envelope, held, disclosures)`, in order, with the
/// records' Ed25519 checks finished together ([`crate::keys::finish_checks`]: one field
/// inversion for the batch instead of one per record, a fifth of a check). Each result is
/// exactly what `verify_record_owned_held` returns for that record, errors included: a bad
/// signature is reported before anything wrong with the disclosures.
pub fn verify_records_owned_held(
    inputs: Vec<OwnedRecordInput<'_>>,
    keys: &dyn KeyResolver,
) -> Vec<OwnedVerification> {
    /// One record's verification, its signature check still pending (`check`, an index into
    /// `checks`) unless `None`.
    struct Step {
        check: Option<(usize, KeyId)>,
        result: OwnedVerification,
    }
    let mut checks = Vec::with_capacity(inputs.len());
    let steps: Vec<Step> = inputs
        .into_iter()
        .map(|(envelope, held, disclosures)| {
            if held == Some(envelope) {
                // No signature to check (`verify_envelope_held`).
                let result = verify_record_owned_held(envelope, held, disclosures, keys);
                return Step {
                    check: None,
                    result,
                };
            }
            let opened = open_envelope(envelope).and_then(|(sign1, header)| {
                let key = resolve_key(&sign1, &header.origin, header.issued_at, keys)?;
                Ok((sign1, header, key))
            });
            let (sign1, header, key) = match opened {
                Ok(o) => o,
                Err(e) => {
                    return Step {
                        check: None,
                        result: Err((e, disclosures)),
                    }
                }
            };
            checks.push(key.begin_verify(&sign1.to_be_signed_parts().parts(), sign1.signature));
            let envelope = VerifiedEnvelope {
                id: RecordId::of_envelope(envelope),
                header,
                kid: sign1.kid,
            };
            let result =
                verify_disclosures_owned(&envelope.header, disclosures).map(|disclosures| {
                    VerifiedRecord {
                        envelope,
                        disclosures,
                    }
                });
            Step {
                check: Some((checks.len() - 1, sign1.kid)),
                result,
            }
        })
        .collect();
    let valid = crate::keys::finish_checks(&checks);
    steps
        .into_iter()
        .map(|step| match step.check {
            Some((i, kid)) if !valid.get(i).copied().unwrap_or(false) => {
                let bytes = match step.result {
                    Ok(r) => r
                        .disclosures
                        .into_iter()
                        .map(Disclosure::into_bytes)
                        .collect(),
                    Err((_, bytes)) => bytes,
                };
                Err((
                    VerifyError::BadSignature {
                        what: RECORD_SIGNED,
                        kid,
                    },
                    bytes,
                ))
            }
            _ => step.result,
        })
        .collect()
}

/// The record file: `["tfx-record", 1, envelope: bstr, [disclosure: bstr, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFile {
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Vec<u8>>,
}

const RECORD_FILE_MAGIC: &str = "tfx-record";
const RECORD_FILE_VERSION: u64 = 1;

impl RecordFile {
    pub fn from_sealed(r: &SealedRecord) -> Self {
        RecordFile {
            envelope: r.envelope.clone(),
            disclosures: r.disclosures.iter().map(|d| d.bytes().to_vec()).collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let size: usize =
            self.envelope.len() + self.disclosures.iter().map(|d| d.len() + 3).sum::<usize>();
        let mut e = codec::Encoder::with_capacity(size + 32);
        e.array(4)
            .text(RECORD_FILE_MAGIC)
            .uint(RECORD_FILE_VERSION)
            .bytes(&self.envelope);
        e.array(self.disclosures.len());
        for d in &self.disclosures {
            e.bytes(d);
        }
        e.finish()
    }

    /// Decodes the container; contents are checked by [`verify_record`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const W: &str = "record file";
        let v = codec::decode(W, bytes, RECORD_FILE_BYTES_MAX)?;
        let items = codec::as_array(W, &v)?;
        let [magic, version, envelope, disclosures] = items else {
            return Err(DecodeError::structure(
                W,
                "expected [\"tfx-record\", 1, envelope, disclosures]",
            ));
        };
        if codec::as_text(W, magic)? != RECORD_FILE_MAGIC {
            return Err(DecodeError::structure(W, "not a tfx record file"));
        }
        let version = codec::as_u64(W, version)?;
        if version != RECORD_FILE_VERSION {
            return Err(DecodeError::structure(
                W,
                format!("unsupported version {version}"),
            ));
        }
        let envelope = codec::as_bytes(W, envelope)?.to_vec();
        if envelope.len() > ENVELOPE_BYTES_MAX {
            return Err(DecodeError::TooLarge {
                what: "envelope",
                len: envelope.len(),
                max: ENVELOPE_BYTES_MAX,
            });
        }
        let list = codec::as_array(W, disclosures)?;
        if list.len() > DISCLOSURES_PER_RECORD_MAX {
            let detail = format!(
                "{} disclosures (max {DISCLOSURES_PER_RECORD_MAX})",
                list.len()
            );
            return Err(DecodeError::structure(W, detail));
        }
        let disclosures = list
            .iter()
            .map(|d| {
                let b = codec::as_bytes(W, d)?;
                if b.len() > DISCLOSURE_BYTES_MAX {
                    return Err(DecodeError::TooLarge {
                        what: "disclosure",
                        len: b.len(),
                        max: DISCLOSURE_BYTES_MAX,
                    });
                }
                Ok(b.to_vec())
            })
            .collect::<Result<_, _>>()?;
        Ok(RecordFile {
            envelope,
            disclosures,
        })
    }
}
