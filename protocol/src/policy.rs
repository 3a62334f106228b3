//! The data-minimization policy (DESIGN §8, fixed): for each record kind and each role, which
//! fields — derived ones included — a member of that role may receive, for which purpose, and
//! how long it may keep them. People write it as TOML ([`parse_grants`]); `tfx policy sign`
//! compiles it into a CBOR payload signed by the governors exactly like the roster
//! ([`crate::multisig`]): versioned, hash-chained to the previous version, valid when at least
//! `threshold` governors of the roster version it names signed it.
//!
//! A member's **view** of a kind is the union of its roles' grants ([`Policy::view`]); a field
//! granted by several roles is kept for the longest of their retentions. Every holder enforces
//! views: it sends a peer only the disclosures the peer's view admits, drops any it receives
//! beyond its own view, and purges what a newer version or an expired retention takes away.
//! Envelopes are not governed: every member holds every envelope, so logs always verify. With no
//! policy adopted a node discloses nothing (envelopes only).
//!
//! Payload: `{1: consortium, 2: version, ?3: previous (sha256 of the previous payload),
//! 4: issued_at_ms, 5: roster_version, 6: [grant]}`, grant = `{1: kind, 2: role, 3: [field],
//! 4: purpose, ?5: retention_days}`; grants sorted by (kind, role), fields in schema order.

use std::collections::BTreeMap;

use crate::codec::{self, DecodeError, Encoder};
use crate::ids::{sha256, Hash, Timestamp};
use crate::keys::{KeyId, SigningKey};
use crate::limits::{POLICY_BYTES_MAX, POLICY_GRANTS_MAX, POLICY_ITEMS_MAX, TEXT_CHARS_MAX};
use crate::multisig::MultiSigned;
use crate::roster::{Roster, ROLES};
use crate::schema::RecordKind;

pub const CONTENT_TYPE_POLICY: &str = "application/tfx-policy+cbor";

/// Milliseconds in a retention day.
const DAY_MS: u64 = 86_400_000;

/// Longest retention a grant may state: 100 years. Longer is a unit error.
pub const RETENTION_DAYS_MAX: u32 = 36_500;

/// What one role may receive of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: RecordKind,
    pub role: String,
    /// Field names of `kind`, in schema order.
    pub fields: Vec<String>,
    /// Why the role receives them (shown to auditors; recorded with the policy version).
    pub purpose: String,
    /// Days after a record's issue time during which the fields may be kept; `None`: no limit.
    pub retention_days: Option<u32>,
}

/// One policy version (the signed payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub consortium: String,
    pub version: u64,
    /// SHA-256 of the previous version's payload; `None` only for version 1.
    pub previous: Option<Hash>,
    pub issued_at: Timestamp,
    /// The roster version whose governors sign this policy.
    pub roster_version: u64,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("policy: {0}")]
    Invalid(String),
    #[error("policy version {got} does not follow version {previous}")]
    WrongVersion { previous: u64, got: u64 },
    #[error(
        "policy version {version} does not chain to the current policy (previous hash differs)"
    )]
    NotChained { version: u64 },
    #[error("policy version {version} names roster version {roster_version}, which this node does not hold")]
    UnknownRoster { version: u64, roster_version: u64 },
    #[error("policy version {version} names roster v{roster_version}, older than v{previous} its predecessor names")]
    OlderRoster {
        version: u64,
        roster_version: u64,
        previous: u64,
    },
    #[error("policy version {version} is signed under roster v{roster_version}, whose governors are no longer the current roster's (v{current}); have the current governors sign it")]
    StaleGovernors {
        version: u64,
        roster_version: u64,
        current: u64,
    },
    #[error("policy version {version} is for consortium {got:?}, not {expected:?}")]
    WrongConsortium {
        version: u64,
        got: String,
        expected: String,
    },
    #[error("policy version {version}: signed by {valid} of {threshold} required governors of roster v{roster_version}{}", if *.invalid > 0 { format!(" ({} invalid or unknown signatures)", .invalid) } else { String::new() })]
    TooFewSignatures {
        version: u64,
        roster_version: u64,
        valid: usize,
        threshold: u32,
        invalid: usize,
    },
}

fn invalid(rule: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(rule.into())
}

const P_CONSORTIUM: i64 = 1;
const P_VERSION: i64 = 2;
const P_PREVIOUS: i64 = 3;
const P_ISSUED_AT: i64 = 4;
const P_ROSTER: i64 = 5;
const P_GRANTS: i64 = 6;

const G_KIND: i64 = 1;
const G_ROLE: i64 = 2;
const G_FIELDS: i64 = 3;
const G_PURPOSE: i64 = 4;
const G_RETENTION: i64 = 5;

impl Policy {
    /// The payload's SHA-256, which the next version names as `previous`.
    pub fn hash(&self) -> Hash {
        sha256(&self.encode())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(256 + 200 * self.grants.len());
        e.map(if self.previous.is_some() { 6 } else { 5 });
        e.uint(P_CONSORTIUM as u64).text(&self.consortium);
        e.uint(P_VERSION as u64).uint(self.version);
        if let Some(p) = &self.previous {
            e.uint(P_PREVIOUS as u64).bytes(p);
        }
        e.uint(P_ISSUED_AT as u64).uint(self.issued_at.0);
        e.uint(P_ROSTER as u64).uint(self.roster_version);
        e.uint(P_GRANTS as u64).array(self.grants.len());
        for g in &self.grants {
            e.map(if g.retention_days.is_some() { 5 } else { 4 });
            e.uint(G_KIND as u64).text(g.kind.name());
            e.uint(G_ROLE as u64).text(&g.role);
            e.uint(G_FIELDS as u64).array(g.fields.len());
            for f in &g.fields {
                e.text(f);
            }
            e.uint(G_PURPOSE as u64).text(&g.purpose);
            if let Some(d) = g.retention_days {
                e.uint(G_RETENTION as u64).uint(u64::from(d));
            }
        }
        e.finish()
    }

    /// Decodes a payload and checks its rules ([`Policy::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Policy, PolicyError> {
        const W: &str = "policy";
        let v = codec::decode_with_items(W, bytes, POLICY_BYTES_MAX, POLICY_ITEMS_MAX)?;
        let m = codec::as_map(W, &v)?;
        codec::only_keys(
            W,
            m,
            &[
                P_CONSORTIUM,
                P_VERSION,
                P_PREVIOUS,
                P_ISSUED_AT,
                P_ROSTER,
                P_GRANTS,
            ],
        )?;
        let grants = codec::as_array(W, codec::field(W, m, P_GRANTS)?)?;
        if grants.len() > POLICY_GRANTS_MAX {
            return Err(invalid(format!(
                "{} grants (max {POLICY_GRANTS_MAX})",
                grants.len()
            )));
        }
        let policy = Policy {
            consortium: codec::as_text(W, codec::field(W, m, P_CONSORTIUM)?)?.to_owned(),
            version: codec::as_u64(W, codec::field(W, m, P_VERSION)?)?,
            previous: m
                .get(&codec::key(P_PREVIOUS))
                .map(|v| codec::as_hash(W, v))
                .transpose()?,
            issued_at: Timestamp(codec::as_u64(W, codec::field(W, m, P_ISSUED_AT)?)?),
            roster_version: codec::as_u64(W, codec::field(W, m, P_ROSTER)?)?,
            grants: grants.iter().map(decode_grant).collect::<Result<_, _>>()?,
        };
        policy.check()?;
        Ok(policy)
    }

    /// Rules every version meets: version 1 alone has no previous hash; grants sorted by
    /// (kind, role) and unique; known roles; fields of the kind, in schema order, unique;
    /// purposes printable and non-empty; retention within [`RETENTION_DAYS_MAX`].
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.version == 0 {
            return Err(invalid("versions start at 1"));
        }
        if (self.version == 1) != self.previous.is_none() {
            return Err(invalid(
                "version 1 has no previous hash; every later version has one",
            ));
        }
        if self.roster_version == 0 {
            return Err(invalid("roster versions start at 1"));
        }
        for w in self.grants.windows(2) {
            if (w[0].kind, &w[0].role) >= (w[1].kind, &w[1].role) {
                return Err(invalid(format!(
                    "grants are not sorted and unique by kind and role (at {}.{})",
                    w[1].kind, w[1].role
                )));
            }
        }
        for g in &self.grants {
            check_grant(g)?;
        }
        Ok(())
    }

    /// The fields a member holding `roles` may receive, per kind.
    pub fn view<S: AsRef<str>>(&self, roles: &[S]) -> View {
        let mut kinds: BTreeMap<RecordKind, BTreeMap<String, Option<u32>>> = BTreeMap::new();
        for g in &self.grants {
            if !roles.iter().any(|r| r.as_ref() == g.role) {
                continue;
            }
            let fields = kinds.entry(g.kind).or_default();
            for f in &g.fields {
                let kept = fields.entry(f.clone()).or_insert(g.retention_days);
                // The longest retention wins; `None` (no limit) is the longest.
                *kept = match (*kept, g.retention_days) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
            }
        }
        View {
            version: self.version,
            kinds,
        }
    }
}

fn check_grant(g: &Grant) -> Result<(), PolicyError> {
    let at = format!("{}.{}", g.kind, g.role);
    if !ROLES.contains(&g.role.as_str()) {
        return Err(invalid(format!(
            "{at}: unknown role {:?} (roles: {})",
            g.role,
            ROLES.join(", ")
        )));
    }
    let schema: Vec<&str> = g.kind.fields().iter().map(|f| f.name).collect();
    let mut last = None;
    for f in &g.fields {
        let Some(pos) = schema.iter().position(|s| s == f) else {
            return Err(invalid(format!(
                "{at}: unknown field {f:?} in {} records (fields: {})",
                g.kind,
                schema.join(", ")
            )));
        };
        if last.is_some_and(|l| pos <= l) {
            return Err(invalid(format!(
                "{at}: fields must be unique and in schema order ({f:?})"
            )));
        }
        last = Some(pos);
    }
    let chars = g.purpose.chars().count();
    if chars == 0 || chars > TEXT_CHARS_MAX || g.purpose.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{at}: purpose must be 1 to {TEXT_CHARS_MAX} printable characters"
        )));
    }
    if g.retention_days
        .is_some_and(|d| d == 0 || d > RETENTION_DAYS_MAX)
    {
        return Err(invalid(format!(
            "{at}: retention_days must be between 1 and {RETENTION_DAYS_MAX} (omit it for no limit)"
        )));
    }
    Ok(())
}

fn decode_grant(v: &codec::Value) -> Result<Grant, PolicyError> {
    const W: &str = "policy grant";
    let m = codec::as_map(W, v)?;
    codec::only_keys(W, m, &[G_KIND, G_ROLE, G_FIELDS, G_PURPOSE, G_RETENTION])?;
    let kind_name = codec::as_text(W, codec::field(W, m, G_KIND)?)?;
    let kind = RecordKind::parse(kind_name)
        .ok_or_else(|| invalid(format!("unknown record kind {kind_name:?}")))?;
    let fields = codec::as_array(W, codec::field(W, m, G_FIELDS)?)?;
    if fields.len() > kind.fields().len() {
        return Err(invalid(format!(
            "{kind}: {} fields granted, the kind has {}",
            fields.len(),
            kind.fields().len()
        )));
    }
    let retention = m
        .get(&codec::key(G_RETENTION))
        .map(|v| codec::as_u64(W, v))
        .transpose()?;
    Ok(Grant {
        kind,
        role: codec::as_text(W, codec::field(W, m, G_ROLE)?)?.to_owned(),
        fields: fields
            .iter()
            .map(|f| codec::as_text(W, f).map(str::to_owned))
            .collect::<Result<_, _>>()?,
        purpose: codec::as_text(W, codec::field(W, m, G_PURPOSE)?)?.to_owned(),
        retention_days: retention.map(|d| u32::try_from(d).unwrap_or(u32::MAX)),
    })
}

/// The fields one member may hold under one policy version, per kind, each with its
/// retention. A kind absent from the view is held as envelopes only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The policy version this view comes from; 0 when no policy is adopted.
    pub version: u64,
    kinds: BTreeMap<RecordKind, BTreeMap<String, Option<u32>>>,
}

impl View {
    /// The view before any policy is adopted: nothing but envelopes.
    pub fn none() -> View {
        View::default()
    }

    /// Whether a holder with this view may keep field `field` of a `kind` record issued at
    /// `issued_at`, as of `now` (inside its retention).
    pub fn admits(&self, kind: RecordKind, field: &str, issued_at: Timestamp, now: u64) -> bool {
        match self.kinds.get(&kind).and_then(|f| f.get(field)) {
            None => false,
            Some(None) => true,
            Some(Some(days)) => issued_at.0.saturating_add(u64::from(*days) * DAY_MS) > now,
        }
    }

    /// Whether the field is in the view at all, retention aside.
    pub fn grants(&self, kind: RecordKind, field: &str) -> bool {
        self.kinds.get(&kind).is_some_and(|f| f.contains_key(field))
    }

    /// Field names granted for `kind`, in schema order.
    pub fn fields(&self, kind: RecordKind) -> Vec<&'static str> {
        kind.fields()
            .iter()
            .map(|f| f.name)
            .filter(|f| self.grants(kind, f))
            .collect()
    }

    /// Whether this view grants some field that `other` does not (back-fill needed).
    pub fn grants_beyond(&self, other: &View) -> bool {
        self.kinds
            .iter()
            .any(|(k, fields)| fields.keys().any(|f| !other.grants(*k, f)))
    }

    /// Whether some field of `other` is missing here or kept for less time (purge needed).
    pub fn narrows(&self, other: &View) -> bool {
        other.kinds.iter().any(|(k, fields)| {
            fields
                .iter()
                .any(|(f, old)| match self.kinds.get(k).and_then(|m| m.get(f)) {
                    None => true,
                    Some(new) => match (old, new) {
                        (_, None) => false,
                        (None, Some(_)) => true,
                        (Some(o), Some(n)) => n < o,
                    },
                })
        })
    }

    /// Whether any granted field has a retention limit (so a periodic sweep is needed).
    pub fn has_retention(&self) -> bool {
        self.kinds.values().any(|f| f.values().any(Option::is_some))
    }
}

/// A policy payload with the governors' signatures collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    pub policy: Policy,
    signed: MultiSigned,
}

impl SignedPolicy {
    pub fn new(policy: Policy) -> Result<Self, PolicyError> {
        policy.check()?;
        Ok(SignedPolicy {
            signed: MultiSigned::new(CONTENT_TYPE_POLICY, policy.encode()),
            policy,
        })
    }

    pub fn sign(&mut self, key: &SigningKey) {
        self.signed.sign(key);
    }

    pub fn signer_ids(&self) -> Vec<KeyId> {
        self.signed.signer_ids()
    }

    pub fn payload(&self) -> &[u8] {
        &self.signed.payload
    }

    pub fn encode(&self) -> Vec<u8> {
        self.signed.encode()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        let signed = MultiSigned::decode(
            "signed policy",
            CONTENT_TYPE_POLICY,
            bytes,
            POLICY_BYTES_MAX,
            POLICY_ITEMS_MAX,
        )?;
        let policy = Policy::decode(&signed.payload)?;
        Ok(SignedPolicy { policy, signed })
    }

    /// Checks the governors' signatures against `roster`, which must be the roster version the
    /// policy names, and that the policy is this consortium's.
    pub fn verify_signatures(&self, roster: &Roster) -> Result<(), PolicyError> {
        let p = &self.policy;
        if roster.version != p.roster_version {
            return Err(PolicyError::UnknownRoster {
                version: p.version,
                roster_version: p.roster_version,
            });
        }
        if roster.consortium != p.consortium {
            return Err(PolicyError::WrongConsortium {
                version: p.version,
                got: p.consortium.clone(),
                expected: roster.consortium.clone(),
            });
        }
        let (valid, invalid) = self.signed.count_signatures(&roster.governors);
        if valid < roster.threshold as usize {
            return Err(PolicyError::TooFewSignatures {
                version: p.version,
                roster_version: p.roster_version,
                valid,
                threshold: roster.threshold,
                invalid,
            });
        }
        Ok(())
    }

    /// Checks that this version validly follows `current` (`None`: no policy yet, so this must
    /// be version 1): next version, chained by hash, signed by the governors of the roster it
    /// names, found by `roster_at`.
    pub fn verify_successor(
        &self,
        current: Option<&Policy>,
        roster_at: impl Fn(u64) -> Option<Roster>,
    ) -> Result<(), PolicyError> {
        let next = &self.policy;
        let (want_version, want_previous) = match current {
            None => (1, None),
            Some(c) => (c.version.saturating_add(1), Some(c.hash())),
        };
        if next.version != want_version {
            return Err(PolicyError::WrongVersion {
                previous: want_version - 1,
                got: next.version,
            });
        }
        if next.previous != want_previous {
            return Err(PolicyError::NotChained {
                version: next.version,
            });
        }
        if let Some(c) = current.filter(|c| next.roster_version < c.roster_version) {
            return Err(PolicyError::OlderRoster {
                version: next.version,
                roster_version: next.roster_version,
                previous: c.roster_version,
            });
        }
        let roster = roster_at(next.roster_version).ok_or(PolicyError::UnknownRoster {
            version: next.version,
            roster_version: next.roster_version,
        })?;
        self.verify_signatures(&roster)
    }
}

/// Checks that the governors who signed `policy` under the roster version it names still govern
/// `current`: a new policy version is adopted only from the consortium's present governors, so
/// governors since replaced cannot sign one by naming their old roster version. (A stored chain
/// replayed at start is checked without this: its versions were adopted when they were current.)
pub fn check_current_governors(
    policy: &Policy,
    signed_under: &Roster,
    current: &Roster,
) -> Result<(), PolicyError> {
    if signed_under.governors != current.governors || signed_under.threshold != current.threshold {
        return Err(PolicyError::StaleGovernors {
            version: policy.version,
            roster_version: policy.roster_version,
            current: current.version,
        });
    }
    Ok(())
}

/// Verifies a whole policy chain from version 1 and returns the latest policy (`None` for an
/// empty chain).
pub fn verify_policy_chain<B: AsRef<[u8]>>(
    versions: &[B],
    roster_at: impl Fn(u64) -> Option<Roster>,
) -> Result<Option<Policy>, PolicyError> {
    let mut current: Option<Policy> = None;
    for bytes in versions {
        let next = SignedPolicy::decode(bytes.as_ref())?;
        next.verify_successor(current.as_ref(), &roster_at)?;
        current = Some(next.policy);
    }
    Ok(current)
}

/// Parses the people-written TOML form into sorted grants. One table per kind and role:
///
/// ```toml
/// [credit.risk-warning]
/// fields = ["subject_pseudonym", "balance_band", "classification", "overdue_days"]
/// purpose = "regional financial risk warning (policy §十七)"
/// retention_days = 1095        # optional; omitted: kept as long as the log
/// ```
///
/// `fields = ["*"]` grants every field of the kind. Errors name the table, key and rule.
pub fn parse_grants(source: &str) -> Result<Vec<Grant>, PolicyError> {
    let table: toml::Table = source
        .parse()
        .map_err(|e: toml::de::Error| invalid(format!("not valid TOML: {}", e.message())))?;
    let mut grants = Vec::new();
    for (kind_name, roles) in &table {
        let kind = RecordKind::parse(kind_name).ok_or_else(|| {
            let kinds: Vec<&str> = RecordKind::ALL.iter().map(|k| k.name()).collect();
            invalid(format!(
                "unknown record kind [{kind_name}] (kinds: {})",
                kinds.join(", ")
            ))
        })?;
        let roles = roles
            .as_table()
            .ok_or_else(|| invalid(format!("[{kind_name}] must be a table of roles")))?;
        for (role, spec) in roles {
            grants.push(parse_grant(kind, role, spec)?);
        }
    }
    grants.sort_by(|a, b| (a.kind, &a.role).cmp(&(b.kind, &b.role)));
    if grants.len() > POLICY_GRANTS_MAX {
        return Err(invalid(format!(
            "{} grants (max {POLICY_GRANTS_MAX})",
            grants.len()
        )));
    }
    Ok(grants)
}

fn parse_grant(kind: RecordKind, role: &str, spec: &toml::Value) -> Result<Grant, PolicyError> {
    let at = format!("[{kind}.{role}]");
    let t = spec
        .as_table()
        .ok_or_else(|| invalid(format!("{at} must be a table")))?;
    for key in t.keys() {
        if !["fields", "purpose", "retention_days"].contains(&key.as_str()) {
            return Err(invalid(format!(
                "{at}: unknown key {key:?} (keys: fields, purpose, retention_days)"
            )));
        }
    }
    let listed = t
        .get("fields")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| invalid(format!("{at}: fields must be a list of field names")))?;
    let mut names = Vec::with_capacity(listed.len());
    for f in listed {
        let f = f
            .as_str()
            .ok_or_else(|| invalid(format!("{at}: fields must be strings")))?;
        names.push(f);
    }
    let fields: Vec<String> = if names == ["*"] {
        kind.fields().iter().map(|f| f.name.to_owned()).collect()
    } else {
        let schema: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
        for f in &names {
            if !schema.contains(f) {
                return Err(invalid(format!(
                    "{at}: unknown field {f:?} in {kind} records (fields: {})",
                    schema.join(", ")
                )));
            }
        }
        // Schema order, duplicates folded: the compiled form is canonical.
        schema
            .iter()
            .filter(|s| names.contains(s))
            .map(|s| (*s).to_owned())
            .collect()
    };
    let purpose = t
        .get("purpose")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| invalid(format!("{at}: purpose must be given as text")))?
        .to_owned();
    let retention_days = match t.get("retention_days") {
        None => None,
        Some(v) => {
            let d = v.as_integer().ok_or_else(|| {
                invalid(format!(
                    "{at}: retention_days must be a whole number of days"
                ))
            })?;
            Some(u32::try_from(d).unwrap_or(u32::MAX))
        }
    };
    let grant = Grant {
        kind,
        role: role.to_owned(),
        fields,
        purpose,
        retention_days,
    };
    check_grant(&grant)?;
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"
[credit.risk-warning]
fields = ["subject_pseudonym", "overdue_days", "classification", "balance_band"]
purpose = "risk warning"
retention_days = 365

[credit.central-bank]
fields = ["*"]
purpose = "supervision"

[credit.bank]
fields = ["subject_pseudonym", "overdue_days"]
purpose = "lending"
retention_days = 30
"#;

    fn policy() -> Policy {
        Policy {
            consortium: "c".into(),
            version: 1,
            previous: None,
            issued_at: Timestamp(1),
            roster_version: 1,
            grants: parse_grants(SRC).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn toml_compiles_to_sorted_grants_in_schema_order() {
        let p = policy();
        let roles: Vec<&str> = p.grants.iter().map(|g| g.role.as_str()).collect();
        assert_eq!(roles, ["bank", "central-bank", "risk-warning"]);
        assert_eq!(
            p.grants[2].fields,
            [
                "classification",
                "overdue_days",
                "subject_pseudonym",
                "balance_band"
            ]
        );
        assert_eq!(p.grants[1].fields.len(), RecordKind::Credit.fields().len());
        assert_eq!(Policy::decode(&p.encode()).as_ref(), Ok(&p));
    }

    #[test]
    fn views_union_roles_and_keep_the_longest_retention() {
        let p = policy();
        let day = DAY_MS;
        let rw = p.view(&["risk-warning"]);
        assert!(rw.admits(RecordKind::Credit, "overdue_days", Timestamp(0), 364 * day));
        assert!(!rw.admits(RecordKind::Credit, "overdue_days", Timestamp(0), 365 * day));
        assert!(!rw.admits(RecordKind::Credit, "subject_uscc", Timestamp(0), 0));
        assert!(!rw.admits(RecordKind::Monitoring, "subject_pseudonym", Timestamp(0), 0));
        let both = p.view(&["bank", "risk-warning"]);
        assert!(both.admits(RecordKind::Credit, "overdue_days", Timestamp(0), 100 * day));
        let cb = p.view(&["central-bank", "bank"]);
        assert!(cb.admits(RecordKind::Credit, "overdue_days", Timestamp(0), u64::MAX));
        assert!(cb.grants_beyond(&rw));
        assert!(!rw.grants_beyond(&cb));
        assert!(rw.narrows(&cb));
        assert!(!cb.narrows(&rw));
        assert!(View::none().narrows(&rw));
    }

    #[test]
    fn toml_errors_name_the_table_and_the_rule() {
        let cases = [
            (
                "[loans.bank]\nfields=[]\npurpose=\"x\"",
                "unknown record kind [loans]",
            ),
            (
                "[credit.banker]\nfields=[]\npurpose=\"x\"",
                "unknown role \"banker\"",
            ),
            (
                "[credit.bank]\nfields=[\"colour\"]\npurpose=\"x\"",
                "unknown field \"colour\" in credit records",
            ),
            (
                "[credit.bank]\nfields=[]",
                "[credit.bank]: purpose must be given",
            ),
            (
                "[credit.bank]\nfields=[]\npurpose=\"x\"\nretention_days=0",
                "retention_days must be between",
            ),
            (
                "[credit.bank]\nfields=[]\npurpose=\"x\"\nkeep=1",
                "unknown key \"keep\"",
            ),
            ("[credit", "not valid TOML"),
        ];
        for (src, want) in cases {
            let err = parse_grants(src).unwrap_err().to_string();
            assert!(err.contains(want), "{src:?}: {err}");
        }
    }

    #[test]
    fn decoding_refuses_unsorted_grants_and_fields_out_of_schema_order() {
        let mut p = policy();
        p.grants.swap(0, 1);
        assert!(Policy::decode(&p.encode()).is_err());
        let mut p = policy();
        p.grants[2].fields.reverse();
        let err = Policy::decode(&p.encode()).unwrap_err().to_string();
        assert!(err.contains("schema order"), "{err}");
    }
}
