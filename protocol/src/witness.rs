//! Witness cosignatures (DESIGN §5, SPEC §17). A member that holds a copy of another origin's
//! log, and has checked the origin's checkpoint against that copy, signs the statement "I saw
//! `origin`'s log at `size` records with `root`, consistent with everything of it I saw
//! before". A checkpoint with cosignatures from [`Roster::witness_quorum`] members other than
//! its origin is *final*: the origin cannot later show anyone a different history of that size
//! without the witnesses holding proof of it.
//!
//! A cosignature is a COSE_Sign1 with content type `application/tfx-cosignature+cbor` over
//! `{1: witness, 2: origin, 3: size, 4: root, 5: time_ms}`, signed with the witness's
//! record-signing key valid at `time_ms`. It names the checkpoint by what it states, not by its
//! bytes, so it is checked against any signed checkpoint of the same origin, size and root.

use crate::checkpoint::Checkpoint;
use crate::codec::{self, DecodeError};
use crate::cose;
use crate::ids::{Hash, MemberId, Timestamp};
use crate::keys::SigningKey;
use crate::record::{check_signature, KeyResolver, VerifyError};
use crate::roster::Roster;

pub const CONTENT_TYPE_COSIGNATURE: &str = "application/tfx-cosignature+cbor";

/// A cosignature's encoded size is about 230 bytes; this leaves room for long member ids.
pub const COSIGNATURE_BYTES_MAX: usize = 512;

/// Cosignatures carried with one checkpoint (in a message, a store entry or a bundle): one per
/// roster member at most.
pub const COSIGNATURES_MAX: usize = crate::limits::ROSTER_MEMBERS_MAX;

const W_WITNESS: i64 = 1;
const W_ORIGIN: i64 = 2;
const W_SIZE: i64 = 3;
const W_ROOT: i64 = 4;
const W_TIME: i64 = 5;

/// What a witness states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    pub witness: MemberId,
    pub origin: MemberId,
    pub size: u64,
    pub root: Hash,
    pub time: Timestamp,
}

impl Cosignature {
    /// The statement that cosigns `checkpoint`, made by `witness` at `time`.
    pub fn of(checkpoint: &Checkpoint, witness: MemberId, time: Timestamp) -> Self {
        Cosignature {
            witness,
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: checkpoint.root,
            time,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = codec::Encoder::with_capacity(160);
        e.map(5);
        e.uint(W_WITNESS as u64).text(self.witness.as_str());
        e.uint(W_ORIGIN as u64).text(self.origin.as_str());
        e.uint(W_SIZE as u64).uint(self.size);
        e.uint(W_ROOT as u64).bytes(&self.root);
        e.uint(W_TIME as u64).uint(self.time.0);
        e.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const W: &str = "cosignature";
        let v = codec::decode(W, bytes, COSIGNATURE_BYTES_MAX)?;
        let m = codec::as_map(W, &v)?;
        codec::only_keys(W, m, &[W_WITNESS, W_ORIGIN, W_SIZE, W_ROOT, W_TIME])?;
        let member = |k| {
            MemberId::new(codec::as_text(W, codec::field(W, m, k)?)?)
                .map_err(|e| DecodeError::structure(W, e.to_string()))
        };
        Ok(Cosignature {
            witness: member(W_WITNESS)?,
            origin: member(W_ORIGIN)?,
            size: codec::as_u64(W, codec::field(W, m, W_SIZE)?)?,
            root: codec::as_hash(W, codec::field(W, m, W_ROOT)?)?,
            time: Timestamp(codec::as_u64(W, codec::field(W, m, W_TIME)?)?),
        })
    }

    /// Signs the statement with the witness's record-signing key: the COSE_Sign1 bytes.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        cose::sign(key, CONTENT_TYPE_COSIGNATURE, self.encode())
    }

    /// Whether this cosigns exactly `checkpoint` (same origin, size and root).
    pub fn covers(&self, checkpoint: &Checkpoint) -> bool {
        self.origin == checkpoint.origin
            && self.size == checkpoint.size
            && self.root == checkpoint.root
    }

    /// Reads a cosignature **without checking its signature** (for bytes verified before they
    /// were stored).
    pub fn decode_unverified(signed: &[u8]) -> Result<Self, DecodeError> {
        let sign1 = cose::open(
            "cosignature",
            signed,
            COSIGNATURE_BYTES_MAX,
            CONTENT_TYPE_COSIGNATURE,
        )?;
        Cosignature::decode(sign1.payload)
    }
}

/// A checkpoint kept with the cosignatures gathered for it: the unit a holder stores per
/// (origin, size), gossips, and puts in audit bundles. CBOR `{1: checkpoint, 2: [cosignature…]}`
/// (each the signed bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub checkpoint: Vec<u8>,
    pub cosignatures: Vec<Vec<u8>>,
}

/// Bytes of one [`Witnessed`] encoding: a checkpoint and [`COSIGNATURES_MAX`] cosignatures.
pub const WITNESSED_BYTES_MAX: usize =
    crate::limits::CHECKPOINT_BYTES_MAX + COSIGNATURES_MAX * (COSIGNATURE_BYTES_MAX + 3) + 16;

impl Witnessed {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = codec::Encoder::with_capacity(256 + 240 * self.cosignatures.len());
        e.map(2);
        e.uint(1).bytes(&self.checkpoint);
        e.uint(2).array(self.cosignatures.len());
        for c in &self.cosignatures {
            e.bytes(c);
        }
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const W: &str = "witnessed checkpoint";
        let v = codec::decode_with_items(W, bytes, WITNESSED_BYTES_MAX, COSIGNATURES_MAX + 8)?;
        Self::from_value(&v)
    }

    pub(crate) fn from_value(v: &codec::Value) -> Result<Self, DecodeError> {
        const W: &str = "witnessed checkpoint";
        let m = codec::as_map(W, v)?;
        codec::only_keys(W, m, &[1, 2])?;
        let cosigs = codec::as_array(W, codec::field(W, m, 2)?)?;
        if cosigs.len() > COSIGNATURES_MAX {
            return Err(DecodeError::structure(
                W,
                format!("{} cosignatures (max {COSIGNATURES_MAX})", cosigs.len()),
            ));
        }
        Ok(Witnessed {
            checkpoint: codec::as_bytes(W, codec::field(W, m, 1)?)?.to_vec(),
            cosignatures: cosigs
                .iter()
                .map(|c| codec::as_bytes(W, c).map(<[u8]>::to_vec))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Why a cosignature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("{0}")]
    Verify(#[from] VerifyError),
    #[error("cosignature by {0} of its own log: an origin cannot witness itself")]
    OwnLog(MemberId),
    #[error(
        "cosignature by {witness} is for {origin} size {size}, not the checkpoint it comes with"
    )]
    OtherCheckpoint {
        witness: MemberId,
        origin: MemberId,
        size: u64,
    },
}

/// Verifies a cosignature's structure, that the witness is not the origin, and its signature
/// under the witness's key valid at the cosignature's time.
pub fn verify_cosignature(
    bytes: &[u8],
    keys: &dyn KeyResolver,
) -> Result<Cosignature, CosignatureError> {
    let sign1 = cose::open(
        "cosignature",
        bytes,
        COSIGNATURE_BYTES_MAX,
        CONTENT_TYPE_COSIGNATURE,
    )
    .map_err(VerifyError::from)?;
    let c = Cosignature::decode(sign1.payload).map_err(VerifyError::from)?;
    if c.witness == c.origin {
        return Err(CosignatureError::OwnLog(c.witness));
    }
    check_signature(&sign1, "cosignature", &c.witness, c.time, keys)?;
    Ok(c)
}

/// Verifies cosignatures of `checkpoint` and returns the distinct witnesses whose cosignature
/// checks out, with the first reason each failing one does not count.
pub fn count_witnesses(
    checkpoint: &Checkpoint,
    cosignatures: &[Vec<u8>],
    keys: &dyn KeyResolver,
) -> (Vec<MemberId>, Vec<CosignatureError>) {
    let mut witnesses: Vec<MemberId> = Vec::new();
    let mut errors = Vec::new();
    for bytes in cosignatures.iter().take(COSIGNATURES_MAX) {
        match verify_cosignature(bytes, keys) {
            Ok(c) if !c.covers(checkpoint) => errors.push(CosignatureError::OtherCheckpoint {
                witness: c.witness,
                origin: c.origin,
                size: c.size,
            }),
            Ok(c) => {
                if !witnesses.contains(&c.witness) {
                    witnesses.push(c.witness);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (witnesses, errors)
}

/// Whether `witnesses` (distinct, verified) make a checkpoint final under `roster`.
pub fn is_final(roster: &Roster, witnesses: usize) -> bool {
    witnesses >= roster.witness_quorum() as usize
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::KeySet;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32])
    }

    fn m(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: m("bank-a"),
            size: 42,
            root: [7; 32],
            time: Timestamp(1_000),
        }
    }

    #[test]
    fn cosignatures_verify_and_count_distinct_witnesses() {
        let keys = KeySet(vec![
            (m("pboc"), *key(2).verifying_key()),
            (m("cbirc"), *key(3).verifying_key()),
        ]);
        let cp = checkpoint();
        let a = Cosignature::of(&cp, m("pboc"), Timestamp(2_000)).sign(&key(2));
        let a2 = Cosignature::of(&cp, m("pboc"), Timestamp(3_000)).sign(&key(2));
        let b = Cosignature::of(&cp, m("cbirc"), Timestamp(2_000)).sign(&key(3));
        let (w, e) = count_witnesses(&cp, &[a.clone(), a2, b], &keys);
        assert_eq!(w, vec![m("pboc"), m("cbirc")]);
        assert!(e.is_empty());
        assert_eq!(
            Cosignature::decode_unverified(&a).unwrap(),
            Cosignature::of(&cp, m("pboc"), Timestamp(2_000))
        );
    }

    #[test]
    fn wrong_checkpoint_own_log_and_flipped_bits_are_refused() {
        let keys = KeySet(vec![
            (m("pboc"), *key(2).verifying_key()),
            (m("bank-a"), *key(1).verifying_key()),
        ]);
        let cp = checkpoint();
        let mut other = cp.clone();
        other.root = [8; 32];
        let c = Cosignature::of(&other, m("pboc"), Timestamp(2_000)).sign(&key(2));
        let (w, e) = count_witnesses(&cp, std::slice::from_ref(&c), &keys);
        assert!(w.is_empty());
        assert!(matches!(e[0], CosignatureError::OtherCheckpoint { .. }));
        let own = Cosignature::of(&cp, m("bank-a"), Timestamp(2_000)).sign(&key(1));
        assert_eq!(
            verify_cosignature(&own, &keys).unwrap_err(),
            CosignatureError::OwnLog(m("bank-a"))
        );
        let good = Cosignature::of(&cp, m("pboc"), Timestamp(2_000)).sign(&key(2));
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let (w, _) = count_witnesses(&cp, &[bad], &keys);
            assert!(w.is_empty(), "bit {i} flipped still counts");
        }
    }
}
