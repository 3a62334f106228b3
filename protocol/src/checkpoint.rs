//! Signed checkpoints (DESIGN §5): an origin's statement "my log has `size` records with `root`,
//! as of `time`", a COSE_Sign1 with content type `application/tfx-checkpoint+cbor` over
//! `{1: origin, 2: size, 3: root, 4: time_ms}`. Auditors and witnesses check inclusion and
//! consistency proofs against these.

use crate::codec::{self, DecodeError};
use crate::cose::{self, CONTENT_TYPE_CHECKPOINT};
use crate::ids::{Hash, MemberId, Timestamp};
use crate::keys::{KeyId, SigningKey};
use crate::limits::CHECKPOINT_BYTES_MAX;
use crate::record::{check_signature, KeyResolver, VerifyError};

const C_ORIGIN: i64 = 1;
const C_SIZE: i64 = 2;
const C_ROOT: i64 = 3;
const C_TIME: i64 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: MemberId,
    pub size: u64,
    pub root: Hash,
    pub time: Timestamp,
}

/// A checkpoint with the exact bytes that were signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub kid: KeyId,
    pub bytes: Vec<u8>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut e = codec::Encoder::with_capacity(128);
        e.map(4);
        e.uint(C_ORIGIN as u64).text(self.origin.as_str());
        e.uint(C_SIZE as u64).uint(self.size);
        e.uint(C_ROOT as u64).bytes(&self.root);
        e.uint(C_TIME as u64).uint(self.time.0);
        e.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        const W: &str = "checkpoint";
        let v = codec::decode(W, bytes, CHECKPOINT_BYTES_MAX)?;
        let m = codec::as_map(W, &v)?;
        codec::only_keys(W, m, &[C_ORIGIN, C_SIZE, C_ROOT, C_TIME])?;
        Ok(Checkpoint {
            origin: MemberId::new(codec::as_text(W, codec::field(W, m, C_ORIGIN)?)?)
                .map_err(|e| DecodeError::structure(W, e.to_string()))?,
            size: codec::as_u64(W, codec::field(W, m, C_SIZE)?)?,
            root: codec::as_hash(W, codec::field(W, m, C_ROOT)?)?,
            time: Timestamp(codec::as_u64(W, codec::field(W, m, C_TIME)?)?),
        })
    }

    /// Reads a checkpoint's fields **without checking its signature**: only for bytes this
    /// holder verified before storing them (e.g. to learn a stored checkpoint's size).
    pub fn decode_unverified(signed: &[u8]) -> Result<Self, DecodeError> {
        let sign1 = cose::open(
            "checkpoint",
            signed,
            CHECKPOINT_BYTES_MAX,
            CONTENT_TYPE_CHECKPOINT,
        )?;
        Checkpoint::decode(sign1.payload)
    }

    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let bytes = cose::sign(key, CONTENT_TYPE_CHECKPOINT, self.encode());
        SignedCheckpoint {
            checkpoint: self,
            kid: key.key_id(),
            bytes,
        }
    }
}

/// Verifies a signed checkpoint's structure and signature.
pub fn verify_checkpoint(
    bytes: &[u8],
    keys: &dyn KeyResolver,
) -> Result<SignedCheckpoint, VerifyError> {
    let sign1 = cose::open(
        "checkpoint",
        bytes,
        CHECKPOINT_BYTES_MAX,
        CONTENT_TYPE_CHECKPOINT,
    )?;
    let checkpoint = Checkpoint::decode(sign1.payload)?;
    check_signature(
        &sign1,
        "checkpoint",
        &checkpoint.origin,
        checkpoint.time,
        keys,
    )?;
    Ok(SignedCheckpoint {
        checkpoint,
        kid: sign1.kid,
        bytes: bytes.to_vec(),
    })
}
