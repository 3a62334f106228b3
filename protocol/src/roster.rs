//! The roster (DESIGN §3, fixed): the versioned, signed list of consortium members — their ids,
//! names, roles, record-signing keys with validity windows, TLS certificate fingerprints and
//! endpoints — plus revocations, the governors and their threshold, and the hash of the previous
//! version. Whoever holds a verified chain of rosters knows, from signed data alone, who is a
//! member, with which keys and roles, and who governs.
//!
//! Encoding: the payload is a CBOR map (keys below); the signed roster is a COSE_Sign
//! (RFC 9052 §4.1, CBOR tag 98) with content type `application/tfx-roster+cbor` and one
//! COSE_Signature per governor (EdDSA, `kid` = the governor key's id). A version is valid when it
//! is version 1 signed by `threshold` of its own governors and matches the trusted genesis hash,
//! or when it is the next version after a valid one, names that one's payload hash as
//! `previous`, and carries valid signatures from at least `threshold` of **that** (the previous)
//! version's governors. Signatures can be added without changing the payload, so governors sign
//! one after another.

use std::collections::BTreeSet;

use crate::codec::{self, DecodeError, Encoder, Value};
use crate::ids::{sha256, Hash, MemberId, Timestamp};
use crate::keys::{KeyId, SigningKey, VerifyingKey};
use crate::limits::{
    MEMBER_KEYS_MAX, MEMBER_ROLES_MAX, ROSTER_BYTES_MAX, ROSTER_GOVERNORS_MAX, ROSTER_ITEMS_MAX,
    ROSTER_MEMBERS_MAX, ROSTER_REVOCATIONS_MAX, TEXT_CHARS_MAX,
};
use crate::multisig::MultiSigned;
use crate::record::KeyResolver;

pub use crate::multisig::COSE_SIGN_TAG;
pub const CONTENT_TYPE_ROSTER: &str = "application/tfx-roster+cbor";

/// The roles a member may hold (DESIGN §3).
pub const ROLES: &[&str] = &[
    "science-dept",
    "local-finance",
    "central-bank",
    "banking-regulator",
    "securities-regulator",
    "finance-dept",
    "ip-center",
    "bank",
    "risk-warning",
    "auditor",
];

const R_CONSORTIUM: i64 = 1;
const R_VERSION: i64 = 2;
const R_PREVIOUS: i64 = 3;
const R_ISSUED_AT: i64 = 4;
const R_GOVERNORS: i64 = 5;
const R_THRESHOLD: i64 = 6;
const R_MEMBERS: i64 = 7;
const R_REVOCATIONS: i64 = 8;
const R_CA: i64 = 9;
const R_WITNESS_QUORUM: i64 = 10;

const M_ID: i64 = 1;
const M_NAME: i64 = 2;
const M_ROLES: i64 = 3;
const M_KEYS: i64 = 4;
const M_TLS: i64 = 5;
const M_ENDPOINT: i64 = 6;

/// A record-signing key and the time window in which it may sign: `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWindow {
    pub key: VerifyingKey,
    pub valid_from: Timestamp,
    /// `None`: valid until rotated out or the member is revoked.
    pub valid_until: Option<Timestamp>,
}

impl KeyWindow {
    pub fn contains(&self, at: Timestamp) -> bool {
        at >= self.valid_from && self.valid_until.is_none_or(|u| at < u)
    }
}

/// One consortium member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    pub roles: Vec<String>,
    pub keys: Vec<KeyWindow>,
    /// SHA-256 of the member's TLS certificate (DER).
    pub tls_fingerprint: Hash,
    /// `host:port` the member's node listens on.
    pub endpoint: String,
}

/// A governor: a member id and the key it signs roster versions with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governor {
    pub id: MemberId,
    pub key: VerifyingKey,
}

/// A member's revocation: from `at` on, none of its keys verify and its node is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub member: MemberId,
    pub at: Timestamp,
    pub reason: String,
}

/// One roster version (the signed payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    pub consortium: String,
    pub version: u64,
    /// SHA-256 of the previous version's payload; `None` only for version 1.
    pub previous: Option<Hash>,
    pub issued_at: Timestamp,
    pub governors: Vec<Governor>,
    pub threshold: u32,
    pub members: Vec<Member>,
    pub revocations: Vec<Revocation>,
    /// SHA-256 of the consortium CA certificate (DER): binds the CA that issues members' TLS
    /// certificates to the governed roster, so a join bundle cannot swap in another CA.
    pub ca_fingerprint: Hash,
    /// How many members other than an origin must cosign its checkpoint for it to be final
    /// (DESIGN §5). `None` (the key absent) means [`WITNESS_QUORUM_DEFAULT`]; kept optional so
    /// rosters made before witnessing existed keep their bytes and hashes.
    pub witness_quorum: Option<u32>,
}

/// The witness quorum of a roster that does not set one: one other member.
pub const WITNESS_QUORUM_DEFAULT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("roster: {0}")]
    Invalid(String),
    #[error("roster version {got} does not follow version {previous}")]
    WrongVersion { previous: u64, got: u64 },
    #[error(
        "roster version {version} does not chain to the current roster (previous hash differs)"
    )]
    NotChained { version: u64 },
    #[error("roster version {version} is not the trusted genesis roster (hash differs)")]
    NotGenesis { version: u64 },
    #[error("roster version {version}: signed by {valid} of {threshold} required governors{}", if *.invalid > 0 { format!(" ({} invalid or unknown signatures)", .invalid) } else { String::new() })]
    TooFewSignatures {
        version: u64,
        valid: usize,
        threshold: u32,
        invalid: usize,
    },
}

fn invalid(rule: impl Into<String>) -> RosterError {
    RosterError::Invalid(rule.into())
}

impl Roster {
    /// The payload's SHA-256: what the next version names as `previous`, and the genesis
    /// fingerprint operators compare out of band.
    pub fn hash(&self) -> Hash {
        sha256(&self.encode())
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    pub fn revocation(&self, id: &MemberId) -> Option<&Revocation> {
        self.revocations.iter().find(|r| &r.member == id)
    }

    /// Whether `id` is a member not revoked as of `at`.
    /// Cosignatures from members other than the origin that make a checkpoint final.
    pub fn witness_quorum(&self) -> u32 {
        self.witness_quorum.unwrap_or(WITNESS_QUORUM_DEFAULT)
    }

    pub fn is_active(&self, id: &MemberId, at: Timestamp) -> bool {
        self.member(id).is_some() && self.revocation(id).is_none_or(|r| at < r.at)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(512 + 320 * self.members.len());
        e.map(
            8 + usize::from(self.previous.is_some()) + usize::from(self.witness_quorum.is_some()),
        );
        e.uint(R_CONSORTIUM as u64).text(&self.consortium);
        e.uint(R_VERSION as u64).uint(self.version);
        if let Some(p) = &self.previous {
            e.uint(R_PREVIOUS as u64).bytes(p);
        }
        e.uint(R_ISSUED_AT as u64).uint(self.issued_at.0);
        e.uint(R_GOVERNORS as u64).array(self.governors.len());
        for g in &self.governors {
            e.array(2).text(g.id.as_str()).bytes(g.key.raw());
        }
        e.uint(R_THRESHOLD as u64).uint(u64::from(self.threshold));
        e.uint(R_MEMBERS as u64).array(self.members.len());
        for m in &self.members {
            encode_member(&mut e, m);
        }
        e.uint(R_REVOCATIONS as u64).array(self.revocations.len());
        for r in &self.revocations {
            e.array(3)
                .text(r.member.as_str())
                .uint(r.at.0)
                .text(&r.reason);
        }
        e.uint(R_CA as u64).bytes(&self.ca_fingerprint);
        if let Some(q) = self.witness_quorum {
            e.uint(R_WITNESS_QUORUM as u64).uint(u64::from(q));
        }
        e.finish()
    }

    /// Decodes a payload and checks its internal rules ([`Roster::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Roster, RosterError> {
        const W: &str = "roster";
        let v = codec::decode_with_items(W, bytes, ROSTER_BYTES_MAX, ROSTER_ITEMS_MAX)?;
        let m = codec::as_map(W, &v)?;
        let allowed = [
            R_CONSORTIUM,
            R_VERSION,
            R_PREVIOUS,
            R_ISSUED_AT,
            R_GOVERNORS,
            R_THRESHOLD,
            R_MEMBERS,
            R_REVOCATIONS,
            R_CA,
            R_WITNESS_QUORUM,
        ];
        codec::only_keys(W, m, &allowed)?;
        let governors = bounded(
            W,
            codec::field(W, m, R_GOVERNORS)?,
            ROSTER_GOVERNORS_MAX,
            "governors",
        )?
        .iter()
        .map(decode_governor)
        .collect::<Result<_, _>>()?;
        let members = bounded(
            W,
            codec::field(W, m, R_MEMBERS)?,
            ROSTER_MEMBERS_MAX,
            "members",
        )?
        .iter()
        .map(decode_member)
        .collect::<Result<_, _>>()?;
        let revocations = bounded(
            W,
            codec::field(W, m, R_REVOCATIONS)?,
            ROSTER_REVOCATIONS_MAX,
            "revocations",
        )?
        .iter()
        .map(decode_revocation)
        .collect::<Result<_, _>>()?;
        let threshold = codec::as_u64(W, codec::field(W, m, R_THRESHOLD)?)?;
        let roster = Roster {
            consortium: codec::as_text(W, codec::field(W, m, R_CONSORTIUM)?)?.to_owned(),
            version: codec::as_u64(W, codec::field(W, m, R_VERSION)?)?,
            previous: m
                .get(&codec::key(R_PREVIOUS))
                .map(|v| codec::as_hash(W, v))
                .transpose()?,
            issued_at: Timestamp(codec::as_u64(W, codec::field(W, m, R_ISSUED_AT)?)?),
            governors,
            threshold: u32::try_from(threshold)
                .map_err(|_| invalid("threshold is out of range"))?,
            members,
            revocations,
            ca_fingerprint: codec::as_hash(W, codec::field(W, m, R_CA)?)?,
            witness_quorum: m
                .get(&codec::key(R_WITNESS_QUORUM))
                .map(|v| codec::as_u64(W, v))
                .transpose()?
                .map(|q| u32::try_from(q).map_err(|_| invalid("witness quorum is out of range")))
                .transpose()?,
        };
        roster.check()?;
        Ok(roster)
    }

    /// Internal rules every version must meet: names and ids well formed and unique, roles known,
    /// key windows ordered, threshold between 1 and the number of governors, the chain field
    /// present exactly from version 2 on, revocations naming members.
    pub fn check(&self) -> Result<(), RosterError> {
        let chars = self.consortium.chars().count();
        if chars == 0 || chars > 64 {
            return Err(invalid("consortium name must be 1 to 64 characters"));
        }
        if self.consortium.chars().any(char::is_control) {
            return Err(invalid(
                "consortium name must not contain control characters",
            ));
        }
        if self.version == 0 {
            return Err(invalid("versions start at 1"));
        }
        if (self.version == 1) != self.previous.is_none() {
            return Err(invalid(
                "version 1 has no previous hash; every later version has one",
            ));
        }
        if self.governors.is_empty()
            || self.threshold == 0
            || self.threshold as usize > self.governors.len()
        {
            let n = self.governors.len();
            return Err(invalid(format!(
                "threshold {} must be between 1 and the {n} governors",
                self.threshold
            )));
        }
        if let Some(q) = self.witness_quorum {
            if q == 0 || q as usize > ROSTER_MEMBERS_MAX {
                return Err(invalid(format!(
                    "witness quorum {q} must be between 1 and {ROSTER_MEMBERS_MAX}"
                )));
            }
        }
        unique(self.governors.iter().map(|g| g.id.as_str()), "governor")?;
        unique(
            self.governors.iter().map(|g| g.key.id().to_string()),
            "governor key",
        )?;
        unique(self.members.iter().map(|m| m.id.as_str()), "member")?;
        for m in &self.members {
            check_member(m)?;
        }
        unique(
            self.revocations.iter().map(|r| r.member.as_str()),
            "revocation of member",
        )?;
        for r in &self.revocations {
            if self.member(&r.member).is_none() {
                return Err(invalid(format!(
                    "revocation names {}, who is not a member",
                    r.member
                )));
            }
            if r.reason.chars().count() > TEXT_CHARS_MAX || r.reason.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "revocation of {}: reason must be at most {TEXT_CHARS_MAX} printable characters",
                    r.member
                )));
            }
        }
        Ok(())
    }
}

fn unique<T: Ord + std::fmt::Display>(
    items: impl Iterator<Item = T>,
    what: &str,
) -> Result<(), RosterError> {
    let mut seen = BTreeSet::new();
    for i in items {
        if let Some(dup) = seen.replace(i) {
            return Err(invalid(format!("{what} {dup} is listed twice")));
        }
    }
    Ok(())
}

fn check_member(m: &Member) -> Result<(), RosterError> {
    let who = &m.id;
    let name_chars = m.name.chars().count();
    if name_chars == 0 || name_chars > TEXT_CHARS_MAX || m.name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "member {who}: display name must be 1 to {TEXT_CHARS_MAX} printable characters"
        )));
    }
    if m.roles.is_empty() || m.roles.len() > MEMBER_ROLES_MAX {
        return Err(invalid(format!(
            "member {who}: needs 1 to {MEMBER_ROLES_MAX} roles"
        )));
    }
    if let Some(r) = m.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Err(invalid(format!(
            "member {who}: unknown role {r:?} (roles: {})",
            ROLES.join(", ")
        )));
    }
    unique(m.roles.iter(), &format!("member {who}: role"))?;
    if m.keys.is_empty() || m.keys.len() > MEMBER_KEYS_MAX {
        return Err(invalid(format!(
            "member {who}: needs 1 to {MEMBER_KEYS_MAX} record-signing keys"
        )));
    }
    unique(
        m.keys.iter().map(|k| k.key.id().to_string()),
        &format!("member {who}: key"),
    )?;
    if let Some(k) = m
        .keys
        .iter()
        .find(|k| k.valid_until.is_some_and(|u| u <= k.valid_from))
    {
        return Err(invalid(format!(
            "member {who}: key {} ends before it starts",
            k.key.id()
        )));
    }
    let endpoint_ok = m.endpoint.rsplit_once(':').is_some_and(|(host, port)| {
        // Hostnames, IPv4 and bracketed IPv6 only: nothing an operator's terminal would interpret.
        let host_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b));
        !host.is_empty() && host.len() <= 253 && host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !endpoint_ok {
        return Err(invalid(format!(
            "member {who}: endpoint {:?} is not host:port",
            m.endpoint
        )));
    }
    Ok(())
}

fn bounded<'a>(
    what: &'static str,
    v: &'a Value,
    max: usize,
    name: &str,
) -> Result<&'a [Value], RosterError> {
    let items = codec::as_array(what, v)?;
    if items.len() > max {
        return Err(invalid(format!("{} {name} (max {max})", items.len())));
    }
    Ok(items)
}

fn member_id(what: &'static str, v: &Value) -> Result<MemberId, RosterError> {
    MemberId::new(codec::as_text(what, v)?).map_err(|e| invalid(e.to_string()))
}

fn key(what: &'static str, v: &Value) -> Result<VerifyingKey, RosterError> {
    VerifyingKey::from_slice(codec::as_bytes(what, v)?).map_err(|e| invalid(e.to_string()))
}

fn decode_governor(v: &Value) -> Result<Governor, RosterError> {
    const W: &str = "roster governor";
    match codec::as_array(W, v)? {
        [id, k] => Ok(Governor {
            id: member_id(W, id)?,
            key: key(W, k)?,
        }),
        _ => Err(invalid("a governor is [member id, key]")),
    }
}

fn decode_revocation(v: &Value) -> Result<Revocation, RosterError> {
    const W: &str = "roster revocation";
    match codec::as_array(W, v)? {
        [id, at, reason] => Ok(Revocation {
            member: member_id(W, id)?,
            at: Timestamp(codec::as_u64(W, at)?),
            reason: codec::as_text(W, reason)?.to_owned(),
        }),
        _ => Err(invalid("a revocation is [member id, time, reason]")),
    }
}

fn encode_member(e: &mut Encoder, m: &Member) {
    e.map(6);
    e.uint(M_ID as u64).text(m.id.as_str());
    e.uint(M_NAME as u64).text(&m.name);
    e.uint(M_ROLES as u64).array(m.roles.len());
    for r in &m.roles {
        e.text(r);
    }
    e.uint(M_KEYS as u64).array(m.keys.len());
    for k in &m.keys {
        e.array(3).bytes(k.key.raw()).uint(k.valid_from.0);
        match k.valid_until {
            Some(u) => e.uint(u.0),
            None => e.null(),
        };
    }
    e.uint(M_TLS as u64).bytes(&m.tls_fingerprint);
    e.uint(M_ENDPOINT as u64).text(&m.endpoint);
}

fn decode_member(v: &Value) -> Result<Member, RosterError> {
    const W: &str = "roster member";
    let m = codec::as_map(W, v)?;
    codec::only_keys(W, m, &[M_ID, M_NAME, M_ROLES, M_KEYS, M_TLS, M_ENDPOINT])?;
    let roles = bounded(W, codec::field(W, m, M_ROLES)?, MEMBER_ROLES_MAX, "roles")?
        .iter()
        .map(|r| Ok(codec::as_text(W, r)?.to_owned()))
        .collect::<Result<_, RosterError>>()?;
    let keys = bounded(W, codec::field(W, m, M_KEYS)?, MEMBER_KEYS_MAX, "keys")?
        .iter()
        .map(|k| match codec::as_array(W, k)? {
            [k, from, until] => Ok(KeyWindow {
                key: key(W, k)?,
                valid_from: Timestamp(codec::as_u64(W, from)?),
                valid_until: match until {
                    Value::Null => None,
                    u => Some(Timestamp(codec::as_u64(W, u)?)),
                },
            }),
            _ => Err(invalid(
                "a member key is [key, valid from, valid until or null]",
            )),
        })
        .collect::<Result<_, RosterError>>()?;
    Ok(Member {
        id: member_id(W, codec::field(W, m, M_ID)?)?,
        name: codec::as_text(W, codec::field(W, m, M_NAME)?)?.to_owned(),
        roles,
        keys,
        tls_fingerprint: codec::as_hash(W, codec::field(W, m, M_TLS)?)?,
        endpoint: codec::as_text(W, codec::field(W, m, M_ENDPOINT)?)?.to_owned(),
    })
}

/// A roster payload with the governors' signatures collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRoster {
    pub roster: Roster,
    /// The payload bytes exactly as signed.
    pub payload: Vec<u8>,
    signed: MultiSigned,
}

impl SignedRoster {
    /// Starts a signed roster with no signatures yet.
    pub fn new(roster: Roster) -> Result<Self, RosterError> {
        roster.check()?;
        let payload = roster.encode();
        Ok(SignedRoster {
            signed: MultiSigned::new(CONTENT_TYPE_ROSTER, payload.clone()),
            payload,
            roster,
        })
    }

    /// Adds (or replaces) the signature of `key`'s holder.
    pub fn sign(&mut self, key: &SigningKey) {
        self.signed.sign(key);
    }

    pub fn signer_ids(&self) -> Vec<KeyId> {
        self.signed.signer_ids()
    }

    pub fn encode(&self) -> Vec<u8> {
        self.signed.encode()
    }

    /// Decodes the COSE_Sign structure and the payload; signatures are checked by
    /// [`SignedRoster::verify_genesis`] / [`SignedRoster::verify_successor`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RosterError> {
        let signed = MultiSigned::decode(
            "signed roster",
            CONTENT_TYPE_ROSTER,
            bytes,
            ROSTER_BYTES_MAX,
            ROSTER_ITEMS_MAX,
        )?;
        let roster = Roster::decode(&signed.payload)?;
        Ok(SignedRoster {
            roster,
            payload: signed.payload.clone(),
            signed,
        })
    }

    /// Checks that at least `threshold` of `governors` signed this version.
    pub fn require(&self, governors: &[Governor], threshold: u32) -> Result<(), RosterError> {
        let (valid, invalid) = self.signed.count_signatures(governors);
        if valid < threshold as usize {
            let version = self.roster.version;
            return Err(RosterError::TooFewSignatures {
                version,
                valid,
                threshold,
                invalid,
            });
        }
        Ok(())
    }

    /// Checks a genesis roster: version 1, the payload hash operators agreed on out of band, and
    /// signatures from `threshold` of its own governors.
    pub fn verify_genesis(&self, trusted_hash: &Hash) -> Result<(), RosterError> {
        if self.roster.version != 1 || &sha256(&self.payload) != trusted_hash {
            return Err(RosterError::NotGenesis {
                version: self.roster.version,
            });
        }
        self.require(&self.roster.governors, self.roster.threshold)
    }

    /// Checks that this version validly succeeds `current`: next version number, chained by
    /// hash, signed by at least `current.threshold` of `current`'s governors.
    pub fn verify_successor(&self, current: &Roster) -> Result<(), RosterError> {
        let next = &self.roster;
        if next.version != current.version.saturating_add(1) {
            return Err(RosterError::WrongVersion {
                previous: current.version,
                got: next.version,
            });
        }
        if next.previous != Some(current.hash()) {
            return Err(RosterError::NotChained {
                version: next.version,
            });
        }
        self.require(&current.governors, current.threshold)
    }
}

/// Verifies a whole chain from the trusted genesis and returns the latest roster.
pub fn verify_chain<B: AsRef<[u8]>>(
    trusted_genesis: &Hash,
    versions: &[B],
) -> Result<Roster, RosterError> {
    let Some((first, rest)) = versions.split_first() else {
        return Err(invalid("no roster versions given"));
    };
    let genesis = SignedRoster::decode(first.as_ref())?;
    genesis.verify_genesis(trusted_genesis)?;
    let mut current = genesis.roster;
    for bytes in rest {
        let next = SignedRoster::decode(bytes.as_ref())?;
        next.verify_successor(&current)?;
        current = next.roster;
    }
    Ok(current)
}

/// Records and checkpoints verify against the roster: the origin must be a member, not revoked
/// at the claimed time, and the key must be one of its keys valid at that time. A record signed
/// with a rotated-out key still verifies for an issue time inside that key's window.
impl KeyResolver for Roster {
    fn resolve(&self, origin: &MemberId, kid: &KeyId, at: Timestamp) -> Option<VerifyingKey> {
        if !self.is_active(origin, at) {
            return None;
        }
        let member = self.member(origin)?;
        member
            .keys
            .iter()
            .find(|k| k.key.id() == *kid && k.contains(at))
            .map(|k| k.key)
    }
}
