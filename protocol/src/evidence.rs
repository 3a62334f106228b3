//! Equivocation evidence (DESIGN §5, SPEC §18): proof, checkable by anyone holding the roster
//! chain, that an origin signed two histories. It carries only things the origin signed, so it
//! is *transferable*: a node that receives it does not have to trust the sender, and an auditor
//! can check it years later, offline.
//!
//! Four kinds — DESIGN §5 names three; the fourth is the third made compact:
//! - **records**: two different envelopes the origin signed for one sequence number;
//! - **checkpoints**: two checkpoints of one size with different roots;
//! - **inconsistent**: an older checkpoint (or none: the empty log), the frontier of the tree
//!   it commits to (which must fold to its root), and the origin-signed envelopes from its size
//!   up to a newer checkpoint's size, which appended to that frontier do **not** produce the
//!   newer root. An honest origin's records at each position are unique, so the newer root
//!   must be that tree's: a mismatch proves the origin signed records or a checkpoint of a
//!   history that is not an extension of the one it committed to.
//! - **diverged**: a checkpoint `a` of size m, a checkpoint `b` of size n > m, and an RFC 9162
//!   consistency proof that the tree `b` commits to has a different root `r` at size m. The
//!   holder of the longer log builds this from its own copy however far back the fork lies
//!   (kind 3 needs the records and is bounded by [`EVIDENCE_RECORDS_MAX`]).
//!
//! Encoding: a CBOR map `{1: kind, 2: origin, 3: a, 4: b, 5: [frontier hash…], 6: [envelope…]}`
//! where `a`/`b` are the two envelopes (kind 1), the two checkpoints (kind 2), or the older
//! checkpoint (absent for the empty log) and the newer checkpoint (kind 3); keys 5 and 6 appear
//! only in kind 3. Kind 4 is `{1: 4, 2: origin, 3: a, 4: b, 5: [proof hash…], 7: r}`.

use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::codec::{self, DecodeError, Encoder};
use crate::ids::{Hash, MemberId, RecordId};
use crate::merkle::{leaf_hash, Frontier};
use crate::record::{verify_envelope, KeyResolver, VerifyError};

/// Envelopes in one piece of "inconsistent" evidence. 512 × [`crate::limits::ENVELOPE_BYTES_MAX`]
/// = 2 MiB, half a sync frame, so evidence always travels in one message. A detector whose
/// anchor checkpoint lies further back than this cannot build it (it still freezes the origin
/// locally, and reports why).
pub const EVIDENCE_RECORDS_MAX: usize = 512;

/// Bytes of one piece of evidence.
pub const EVIDENCE_BYTES_MAX: usize = 2 * 1024 * 1024 + 4096;

const E_KIND: i64 = 1;
const E_ORIGIN: i64 = 2;
const E_A: i64 = 3;
const E_B: i64 = 4;
const E_FRONTIER: i64 = 5;
const E_ENVELOPES: i64 = 6;
const E_PREFIX_ROOT: i64 = 7;

const KIND_RECORDS: u64 = 1;
const KIND_CHECKPOINTS: u64 = 2;
const KIND_INCONSISTENT: u64 = 3;
const KIND_DIVERGED: u64 = 4;

/// One piece of equivocation evidence, as signed parts (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two envelopes at one (origin, seq).
    Records {
        origin: MemberId,
        a: Vec<u8>,
        b: Vec<u8>,
    },
    /// Two checkpoints of one size with different roots.
    Checkpoints {
        origin: MemberId,
        a: Vec<u8>,
        b: Vec<u8>,
    },
    /// Records after an older checkpoint that do not lead to a newer one.
    Inconsistent {
        origin: MemberId,
        /// `None`: the empty log (size 0).
        older: Option<Vec<u8>>,
        /// The older tree's subtree roots, largest first ([`Frontier::hashes`]).
        frontier: Vec<Hash>,
        /// Envelopes at `older.size .. newer.size`, in order.
        envelopes: Vec<Vec<u8>>,
        newer: Vec<u8>,
    },
    /// A consistency proof that checkpoint `b`'s tree has root `prefix_root` at checkpoint
    /// `a`'s (smaller) size, where `a` says otherwise.
    Diverged {
        origin: MemberId,
        a: Vec<u8>,
        b: Vec<u8>,
        prefix_root: Hash,
        proof: Vec<Hash>,
    },
}

/// What verified evidence shows: the origin and the first position where its histories part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    pub origin: MemberId,
    /// The log size up to which both histories can still agree (the fork point's upper bound).
    pub fork_at: u64,
    /// One line for operators: which kind, at which positions. Never a field value.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("evidence part {part}: {error}")]
    Signature {
        part: &'static str,
        error: VerifyError,
    },
    #[error("evidence does not show equivocation: {0}")]
    NotEquivocation(String),
}

impl Evidence {
    pub fn origin(&self) -> &MemberId {
        match self {
            Evidence::Records { origin, .. }
            | Evidence::Checkpoints { origin, .. }
            | Evidence::Inconsistent { origin, .. }
            | Evidence::Diverged { origin, .. } => origin,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(1024);
        match self {
            Evidence::Records { origin, a, b } | Evidence::Checkpoints { origin, a, b } => {
                let kind = if matches!(self, Evidence::Records { .. }) {
                    KIND_RECORDS
                } else {
                    KIND_CHECKPOINTS
                };
                e.map(4);
                e.uint(E_KIND as u64).uint(kind);
                e.uint(E_ORIGIN as u64).text(origin.as_str());
                e.uint(E_A as u64).bytes(a);
                e.uint(E_B as u64).bytes(b);
            }
            Evidence::Inconsistent {
                origin,
                older,
                frontier,
                envelopes,
                newer,
            } => {
                e.map(5 + usize::from(older.is_some()));
                e.uint(E_KIND as u64).uint(KIND_INCONSISTENT);
                e.uint(E_ORIGIN as u64).text(origin.as_str());
                if let Some(older) = older {
                    e.uint(E_A as u64).bytes(older);
                }
                e.uint(E_B as u64).bytes(newer);
                e.uint(E_FRONTIER as u64).array(frontier.len());
                for h in frontier {
                    e.bytes(h);
                }
                e.uint(E_ENVELOPES as u64).array(envelopes.len());
                for env in envelopes {
                    e.bytes(env);
                }
            }
            Evidence::Diverged {
                origin,
                a,
                b,
                prefix_root,
                proof,
            } => {
                e.map(6);
                e.uint(E_KIND as u64).uint(KIND_DIVERGED);
                e.uint(E_ORIGIN as u64).text(origin.as_str());
                e.uint(E_A as u64).bytes(a);
                e.uint(E_B as u64).bytes(b);
                e.uint(E_FRONTIER as u64).array(proof.len());
                for h in proof {
                    e.bytes(h);
                }
                e.uint(E_PREFIX_ROOT as u64).bytes(prefix_root);
            }
        }
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const W: &str = "evidence";
        let v = codec::decode_with_items(W, bytes, EVIDENCE_BYTES_MAX, EVIDENCE_RECORDS_MAX + 96)?;
        let m = codec::as_map(W, &v)?;
        let kind = codec::as_u64(W, codec::field(W, m, E_KIND)?)?;
        let origin = MemberId::new(codec::as_text(W, codec::field(W, m, E_ORIGIN)?)?)
            .map_err(|e| DecodeError::structure(W, e.to_string()))?;
        let bytes_of = |k| -> Result<Vec<u8>, DecodeError> {
            Ok(codec::as_bytes(W, codec::field(W, m, k)?)?.to_vec())
        };
        match kind {
            KIND_RECORDS | KIND_CHECKPOINTS => {
                codec::only_keys(W, m, &[E_KIND, E_ORIGIN, E_A, E_B])?;
                let (a, b) = (bytes_of(E_A)?, bytes_of(E_B)?);
                Ok(if kind == KIND_RECORDS {
                    Evidence::Records { origin, a, b }
                } else {
                    Evidence::Checkpoints { origin, a, b }
                })
            }
            KIND_INCONSISTENT => {
                codec::only_keys(W, m, &[E_KIND, E_ORIGIN, E_A, E_B, E_FRONTIER, E_ENVELOPES])?;
                let older = m
                    .get(&codec::key(E_A))
                    .map(|v| codec::as_bytes(W, v).map(<[u8]>::to_vec))
                    .transpose()?;
                let frontier = codec::as_array(W, codec::field(W, m, E_FRONTIER)?)?
                    .iter()
                    .map(|h| codec::as_hash(W, h))
                    .collect::<Result<Vec<_>, _>>()?;
                let envelopes = codec::as_array(W, codec::field(W, m, E_ENVELOPES)?)?;
                if envelopes.len() > EVIDENCE_RECORDS_MAX {
                    return Err(DecodeError::structure(
                        W,
                        format!("{} envelopes (max {EVIDENCE_RECORDS_MAX})", envelopes.len()),
                    ));
                }
                let envelopes = envelopes
                    .iter()
                    .map(|e| codec::as_bytes(W, e).map(<[u8]>::to_vec))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Evidence::Inconsistent {
                    origin,
                    older,
                    frontier,
                    envelopes,
                    newer: bytes_of(E_B)?,
                })
            }
            KIND_DIVERGED => {
                codec::only_keys(
                    W,
                    m,
                    &[E_KIND, E_ORIGIN, E_A, E_B, E_FRONTIER, E_PREFIX_ROOT],
                )?;
                let proof = codec::as_array(W, codec::field(W, m, E_FRONTIER)?)?;
                if proof.len() > 2 * usize::from(crate::merkle::LEVELS_MAX) {
                    return Err(DecodeError::structure(
                        W,
                        format!("{} proof hashes", proof.len()),
                    ));
                }
                Ok(Evidence::Diverged {
                    origin,
                    a: bytes_of(E_A)?,
                    b: bytes_of(E_B)?,
                    prefix_root: codec::as_hash(W, codec::field(W, m, E_PREFIX_ROOT)?)?,
                    proof: proof
                        .iter()
                        .map(|h| codec::as_hash(W, h))
                        .collect::<Result<Vec<_>, _>>()?,
                })
            }
            other => Err(DecodeError::structure(
                W,
                format!("unknown evidence kind {other} (expected 1 to 4)"),
            )),
        }
    }

    /// Checks every signature under `keys` (each part's key valid at its own time) and that
    /// the parts really contradict each other.
    pub fn verify(&self, keys: &dyn KeyResolver) -> Result<Equivocation, EvidenceError> {
        let origin = self.origin().clone();
        let not = |s: String| EvidenceError::NotEquivocation(s);
        let checkpoint = |part: &'static str, bytes: &[u8]| -> Result<Checkpoint, EvidenceError> {
            let cp = verify_checkpoint(bytes, keys)
                .map_err(|error| EvidenceError::Signature { part, error })?
                .checkpoint;
            if cp.origin != origin {
                return Err(not(format!("{part} is a checkpoint of {}", cp.origin)));
            }
            Ok(cp)
        };
        let envelope = |part: &'static str, bytes: &[u8]| {
            let v = verify_envelope(bytes, keys)
                .map_err(|error| EvidenceError::Signature { part, error })?;
            if v.header.origin != origin {
                return Err(not(format!("{part} is a record of {}", v.header.origin)));
            }
            Ok(v)
        };
        match self {
            Evidence::Records { a, b, .. } => {
                let (va, vb) = (envelope("record a", a)?, envelope("record b", b)?);
                if va.header.seq != vb.header.seq {
                    return Err(not(format!(
                        "the records are at different positions ({} and {})",
                        va.header.seq.0, vb.header.seq.0
                    )));
                }
                if va.id == vb.id {
                    return Err(not("the two records are the same record".into()));
                }
                let seq = va.header.seq.0;
                Ok(Equivocation {
                    fork_at: seq,
                    summary: format!(
                        "{origin} signed two records at position {seq}: {} and {}",
                        short(&va.id),
                        short(&vb.id)
                    ),
                    origin,
                })
            }
            Evidence::Checkpoints { a, b, .. } => {
                let (ca, cb) = (
                    checkpoint("checkpoint a", a)?,
                    checkpoint("checkpoint b", b)?,
                );
                if ca.size != cb.size {
                    return Err(not(format!(
                        "the checkpoints have different sizes ({} and {})",
                        ca.size, cb.size
                    )));
                }
                if ca.root == cb.root {
                    return Err(not("the checkpoints have the same root".into()));
                }
                Ok(Equivocation {
                    fork_at: ca.size.saturating_sub(1),
                    summary: format!(
                        "{origin} signed two checkpoints of size {} with different roots",
                        ca.size
                    ),
                    origin,
                })
            }
            Evidence::Inconsistent {
                older,
                frontier,
                envelopes,
                newer,
                ..
            } => {
                let old = older
                    .as_deref()
                    .map(|b| checkpoint("older checkpoint", b))
                    .transpose()?;
                let new = checkpoint("newer checkpoint", newer)?;
                let (size, root) = old
                    .as_ref()
                    .map_or((0, crate::merkle::empty_root()), |c| (c.size, c.root));
                let mut tree = Frontier::from_hashes(size, frontier).ok_or_else(|| {
                    not(format!(
                        "{} frontier hashes for a tree of size {size}",
                        frontier.len()
                    ))
                })?;
                if tree.root() != root {
                    return Err(not(
                        "the frontier does not produce the older checkpoint's root".into(),
                    ));
                }
                if new.size != size + envelopes.len() as u64 {
                    return Err(not(format!(
                        "{} records do not lead from size {size} to size {}",
                        envelopes.len(),
                        new.size
                    )));
                }
                for (i, env) in envelopes.iter().enumerate() {
                    let v = envelope("record", env)?;
                    let seq = size + i as u64;
                    if v.header.seq.0 != seq {
                        return Err(not(format!(
                            "record {i} is at position {} (expected {seq})",
                            v.header.seq.0
                        )));
                    }
                    tree.push(leaf_hash(env));
                }
                if tree.root() == new.root {
                    return Err(not(format!(
                        "the records lead from size {size} to the newer checkpoint's root: consistent"
                    )));
                }
                Ok(Equivocation {
                    fork_at: new.size.saturating_sub(1),
                    summary: format!(
                        "{origin} signed a checkpoint of size {} that does not extend its checkpoint of size {size} with the records it signed",
                        new.size
                    ),
                    origin,
                })
            }
            Evidence::Diverged {
                a,
                b,
                prefix_root,
                proof,
                ..
            } => {
                let (ca, cb) = (
                    checkpoint("checkpoint a", a)?,
                    checkpoint("checkpoint b", b)?,
                );
                if ca.size >= cb.size {
                    return Err(not(format!(
                        "checkpoint a (size {}) is not smaller than checkpoint b (size {})",
                        ca.size, cb.size
                    )));
                }
                // The empty log is a prefix of every log: a "root at size 0" other than the
                // empty root proves nothing, and RFC 9162 verification would not constrain it.
                if ca.size == 0 {
                    return Err(not(
                        "checkpoint a is of the empty log, which every log extends".into(),
                    ));
                }
                crate::merkle::verify_consistency(ca.size, cb.size, prefix_root, &cb.root, proof)
                    .map_err(|e| not(format!("the consistency proof does not verify: {e}")))?;
                if *prefix_root == ca.root {
                    return Err(not(format!(
                        "checkpoint b extends checkpoint a (size {} to {}): consistent",
                        ca.size, cb.size
                    )));
                }
                Ok(Equivocation {
                    fork_at: ca.size.saturating_sub(1),
                    summary: format!(
                        "{origin} signed a checkpoint of size {} whose tree does not extend its checkpoint of size {}",
                        cb.size, ca.size
                    ),
                    origin,
                })
            }
        }
    }
}

fn short(id: &RecordId) -> String {
    id.to_hex()[..16].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::ids::Timestamp;
    use crate::keys::SigningKey;
    use crate::record::KeySet;

    fn m(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    fn cp(key: &SigningKey, size: u64, root: Hash) -> Vec<u8> {
        Checkpoint {
            origin: m("bank-a"),
            size,
            root,
            time: Timestamp(5),
        }
        .sign(key)
        .bytes
    }

    #[test]
    fn checkpoints_of_one_size_with_two_roots_verify_and_round_trip() {
        let key = SigningKey::from_seed(&[1; 32]);
        let keys = KeySet(vec![(m("bank-a"), *key.verifying_key())]);
        let ev = Evidence::Checkpoints {
            origin: m("bank-a"),
            a: cp(&key, 3, [1; 32]),
            b: cp(&key, 3, [2; 32]),
        };
        let eq = ev.verify(&keys).unwrap();
        assert_eq!(eq.origin, m("bank-a"));
        assert_eq!(Evidence::decode(&ev.encode()).unwrap(), ev);
        // The same checkpoint twice, or another key's signature, is not evidence.
        let same = Evidence::Checkpoints {
            origin: m("bank-a"),
            a: cp(&key, 3, [1; 32]),
            b: cp(&key, 3, [1; 32]),
        };
        assert!(matches!(
            same.verify(&keys),
            Err(EvidenceError::NotEquivocation(_))
        ));
        let other = SigningKey::from_seed(&[2; 32]);
        let forged = Evidence::Checkpoints {
            origin: m("bank-a"),
            a: cp(&key, 3, [1; 32]),
            b: cp(&other, 3, [2; 32]),
        };
        assert!(matches!(
            forged.verify(&keys),
            Err(EvidenceError::Signature { .. })
        ));
    }

    #[test]
    fn a_frontier_must_fold_to_the_older_root() {
        let key = SigningKey::from_seed(&[1; 32]);
        let keys = KeySet(vec![(m("bank-a"), *key.verifying_key())]);
        let mut f = Frontier::default();
        for i in 0..5u8 {
            f.push([i; 32]);
        }
        let ev = Evidence::Inconsistent {
            origin: m("bank-a"),
            older: Some(cp(&key, 5, [0xee; 32])),
            frontier: f.hashes(),
            envelopes: vec![],
            newer: cp(&key, 5, [0xee; 32]),
        };
        let err = ev.verify(&keys).unwrap_err();
        assert!(err.to_string().contains("frontier"), "{err}");
        assert_eq!(Frontier::from_hashes(5, &f.hashes()), Some(f.clone()));
        assert_eq!(Frontier::from_hashes(7, &f.hashes()), None);
    }
}
