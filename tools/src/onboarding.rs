//! The two documents that carry a new member into the consortium, so that no secret crosses
//! between institutions:
//!
//! - the **join request** (`tfx member init` → the consortium operator): the member's id, name,
//!   roles, endpoint, record-signing public key, X25519 delivery public key and a CSR for its TLS
//!   key, with a proof of possession — an Ed25519 signature by the record-signing key over all
//!   of it;
//! - the **join bundle** (`tfx member approve` → the member): the CA certificate, the member's
//!   TLS certificate, the roster chain from genesis to the version that admits it and, for
//!   issuing members only, the consortium pseudonym secret sealed to the delivery key.
//!
//! Both are JSON, so operators can read what they pass on; everything in them that matters is
//! covered by a signature the receiver checks (CSR, proof, certificate, roster chain).

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tfx_protocol::codec::Encoder;
use tfx_protocol::keys::{SigningKey, VerifyingKey};
use tfx_protocol::roster::ROLES;
use tfx_protocol::MemberId;

use crate::sealed::SealedSecret;

pub const JOIN_REQUEST_FORMAT: &str = "tfx-join-request/2";
/// The first format, without a delivery key: still read (a member that joined with it must be
/// able to parse its own request for rotations and renewals), but nothing can be sealed to it.
pub const JOIN_REQUEST_FORMAT_V1: &str = "tfx-join-request/1";
pub const JOIN_BUNDLE_FORMAT: &str = "tfx-join-bundle/1";
/// Largest request or bundle file read (a bundle holds a few PEM certificates and rosters).
pub const ONBOARDING_FILE_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub format: String,
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub endpoint: String,
    /// Raw Ed25519 public key, hex.
    pub record_signing_key: String,
    /// Raw X25519 public key, hex: what the pseudonym secret is sealed to ([`crate::sealed`]).
    /// Absent only in the first format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_key: Option<String>,
    pub tls_csr_pem: String,
    /// Ed25519 signature (hex) by the record-signing key over [`JoinRequest::signed_bytes`].
    pub proof: String,
}

impl JoinRequest {
    /// CBOR array of every field but the proof, in order: what the proof signs (seven items in
    /// the first format, which has no delivery key).
    fn signed_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(512 + self.tls_csr_pem.len());
        e.array(if self.delivery_key.is_some() { 8 } else { 7 })
            .text(&self.format)
            .text(&self.id)
            .text(&self.name)
            .array(self.roles.len());
        for r in &self.roles {
            e.text(r);
        }
        e.text(&self.endpoint).text(&self.record_signing_key);
        if let Some(k) = &self.delivery_key {
            e.text(k);
        }
        e.text(&self.tls_csr_pem);
        e.finish()
    }

    pub fn new(
        id: &MemberId,
        name: &str,
        roles: Vec<String>,
        endpoint: &str,
        key: &SigningKey,
        delivery_key: &[u8; 32],
        csr_pem: String,
    ) -> Self {
        let mut r = JoinRequest {
            format: JOIN_REQUEST_FORMAT.into(),
            id: id.to_string(),
            name: name.into(),
            roles,
            endpoint: endpoint.into(),
            record_signing_key: hex::encode(key.verifying_key().raw()),
            delivery_key: Some(hex::encode(delivery_key)),
            tls_csr_pem: csr_pem,
            proof: String::new(),
        };
        r.proof = hex::encode(key.sign(&r.signed_bytes()));
        r
    }

    /// Parses and checks a request: format, id, known roles, key, proof of possession.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<(JoinRequest, MemberId, VerifyingKey)> {
        let r: JoinRequest = serde_json::from_slice(bytes).context("not a join request (JSON)")?;
        // Each format with exactly its fields: a delivery key in /2 only, and always there.
        let known = match r.format.as_str() {
            JOIN_REQUEST_FORMAT => r.delivery_key.is_some(),
            JOIN_REQUEST_FORMAT_V1 => r.delivery_key.is_none(),
            _ => false,
        };
        if !known {
            bail!(
                "unsupported join request format {:?} (expected {JOIN_REQUEST_FORMAT} with a delivery_key, or {JOIN_REQUEST_FORMAT_V1} without one)",
                r.format
            );
        }
        let id = MemberId::new(&r.id)?;
        check_roles(&r.roles)?;
        let raw = hex::decode(&r.record_signing_key).context("record_signing_key is not hex")?;
        let key = VerifyingKey::from_slice(&raw)?;
        if r.delivery_key.is_some() {
            r.delivery_public()?;
        }
        let proof = hex::decode(&r.proof).context("proof is not hex")?;
        if !key.verify(&r.signed_bytes(), &proof) {
            bail!("proof of possession does not verify: the request was altered or not signed by its record-signing key");
        }
        Ok((r, id, key))
    }

    /// The X25519 delivery public key.
    pub fn delivery_public(&self) -> anyhow::Result<[u8; 32]> {
        let Some(key) = &self.delivery_key else {
            bail!(
                "this join request ({JOIN_REQUEST_FORMAT_V1}) has no delivery key, so the pseudonym secret cannot be sealed to it; the member must make a new request with a current tfx"
            );
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(key, &mut out)
            .context("delivery_key is not an X25519 public key (64 hex digits)")?;
        Ok(out)
    }
}

/// Refuses unknown or repeated roles, naming the bad one and the known set.
pub fn check_roles(roles: &[String]) -> anyhow::Result<()> {
    if roles.is_empty() {
        bail!(
            "at least one --role is required (roles: {})",
            ROLES.join(", ")
        );
    }
    for (i, r) in roles.iter().enumerate() {
        if !ROLES.contains(&r.as_str()) {
            bail!("unknown role {r:?} (roles: {})", ROLES.join(", "));
        }
        if roles[..i].contains(r) {
            bail!("role {r:?} given twice");
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinBundle {
    pub format: String,
    pub member: String,
    /// SHA-256 (hex) of the genesis roster payload: compare with what the consortium published.
    pub genesis: String,
    pub ca_cert_pem: String,
    pub member_cert_pem: String,
    /// Signed roster versions, genesis first, as hex.
    pub rosters: Vec<String>,
    /// The consortium pseudonym secret sealed to the member's delivery key: present for
    /// issuing members only ([`crate::sealed::receives_secret`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym_secret: Option<SealedSecret>,
}

impl JoinBundle {
    pub fn parse(bytes: &[u8]) -> anyhow::Result<JoinBundle> {
        let b: JoinBundle = serde_json::from_slice(bytes).context("not a join bundle (JSON)")?;
        if b.format != JOIN_BUNDLE_FORMAT {
            bail!(
                "unsupported join bundle format {:?} (expected {JOIN_BUNDLE_FORMAT})",
                b.format
            );
        }
        Ok(b)
    }

    pub fn roster_bytes(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        self.rosters
            .iter()
            .enumerate()
            .map(|(i, h)| hex::decode(h).with_context(|| format!("roster {} is not hex", i + 1)))
            .collect()
    }
}

/// Parses 64 hex digits into a hash.
pub fn parse_hash(s: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .with_context(|| format!("{s:?} is not a SHA-256 hash (64 hex digits)"))?;
    Ok(out)
}

pub const ROTATION_REQUEST_FORMAT: &str = "tfx-key-rotation/1";

/// A member's request to replace its record-signing key (`tfx member rotate-key`). Signed by
/// both keys: the old one proves the request comes from the member, the new one that the member
/// holds the key it asks to have listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    pub format: String,
    pub id: String,
    /// Raw Ed25519 public keys, hex.
    pub old_key: String,
    pub new_key: String,
    /// Signatures (hex) over [`RotationRequest::signed_bytes`] by the old and the new key.
    pub proof_old: String,
    pub proof_new: String,
}

impl RotationRequest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(256);
        e.array(4)
            .text(&self.format)
            .text(&self.id)
            .text(&self.old_key)
            .text(&self.new_key);
        e.finish()
    }

    pub fn new(id: &MemberId, old: &SigningKey, new: &SigningKey) -> Self {
        let mut r = RotationRequest {
            format: ROTATION_REQUEST_FORMAT.into(),
            id: id.to_string(),
            old_key: hex::encode(old.verifying_key().raw()),
            new_key: hex::encode(new.verifying_key().raw()),
            proof_old: String::new(),
            proof_new: String::new(),
        };
        let msg = r.signed_bytes();
        r.proof_old = hex::encode(old.sign(&msg));
        r.proof_new = hex::encode(new.sign(&msg));
        r
    }

    /// Parses and checks both proofs; returns the member and its old and new keys.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<(MemberId, VerifyingKey, VerifyingKey)> {
        let r: RotationRequest =
            serde_json::from_slice(bytes).context("not a key rotation request (JSON)")?;
        if r.format != ROTATION_REQUEST_FORMAT {
            bail!("unsupported rotation request format {:?}", r.format);
        }
        let id = MemberId::new(&r.id)?;
        let key = |h: &str, what: &str| -> anyhow::Result<VerifyingKey> {
            Ok(VerifyingKey::from_slice(
                &hex::decode(h).with_context(|| format!("{what} is not hex"))?,
            )?)
        };
        let (old, new) = (key(&r.old_key, "old_key")?, key(&r.new_key, "new_key")?);
        if old == new {
            bail!("the new key is the old key");
        }
        let msg = r.signed_bytes();
        for (k, proof, which) in [(&old, &r.proof_old, "old"), (&new, &r.proof_new, "new")] {
            if !k.verify(
                &msg,
                &hex::decode(proof).with_context(|| format!("proof_{which} is not hex"))?,
            ) {
                bail!("the {which} key's proof does not verify: the request was altered or not signed by it");
            }
        }
        Ok((id, old, new))
    }
}

/// What kind of request a file holds, by its `format` field.
pub fn request_format(bytes: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("not a request (JSON)")?;
    Ok(v.get("format")
        .and_then(|f| f.as_str())
        .unwrap_or_default()
        .to_string())
}

pub const RENEWAL_REQUEST_FORMAT: &str = "tfx-cert-renewal/1";

/// A member's request for a new TLS certificate for the same key (`tfx member renew`): a CSR for
/// its existing TLS key, with a proof by its current record-signing key that the member asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RenewalRequest {
    pub format: String,
    pub id: String,
    pub tls_csr_pem: String,
    /// The record-signing key (hex) that signed `proof`.
    pub record_signing_key: String,
    pub proof: String,
}

impl RenewalRequest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(256 + self.tls_csr_pem.len());
        e.array(4)
            .text(&self.format)
            .text(&self.id)
            .text(&self.tls_csr_pem)
            .text(&self.record_signing_key);
        e.finish()
    }

    pub fn new(id: &MemberId, csr_pem: String, key: &SigningKey) -> Self {
        let mut r = RenewalRequest {
            format: RENEWAL_REQUEST_FORMAT.into(),
            id: id.to_string(),
            tls_csr_pem: csr_pem,
            record_signing_key: hex::encode(key.verifying_key().raw()),
            proof: String::new(),
        };
        r.proof = hex::encode(key.sign(&r.signed_bytes()));
        r
    }

    /// Parses and checks the proof; returns the request, the member and the signing key (which
    /// the operator must find among the member's current roster keys).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<(RenewalRequest, MemberId, VerifyingKey)> {
        let r: RenewalRequest =
            serde_json::from_slice(bytes).context("not a renewal request (JSON)")?;
        if r.format != RENEWAL_REQUEST_FORMAT {
            bail!("unsupported renewal request format {:?}", r.format);
        }
        let id = MemberId::new(&r.id)?;
        let key = VerifyingKey::from_slice(
            &hex::decode(&r.record_signing_key).context("record_signing_key is not hex")?,
        )?;
        if !key.verify(
            &r.signed_bytes(),
            &hex::decode(&r.proof).context("proof is not hex")?,
        ) {
            bail!("the renewal request's proof does not verify: altered, or not signed by its record-signing key");
        }
        Ok((r, id, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(format: &str, delivery: Option<String>) -> (JoinRequest, Vec<u8>) {
        let key = SigningKey::from_seed(&[3; 32]);
        let mut r = JoinRequest {
            format: format.into(),
            id: "bank-a".into(),
            name: "Bank A".into(),
            roles: vec!["bank".into()],
            endpoint: "127.0.0.1:7403".into(),
            record_signing_key: hex::encode(key.verifying_key().raw()),
            delivery_key: delivery,
            tls_csr_pem: "csr".into(),
            proof: String::new(),
        };
        r.proof = hex::encode(key.sign(&r.signed_bytes()));
        let bytes = serde_json::to_vec(&r).unwrap_or_default();
        (r, bytes)
    }

    #[test]
    fn the_first_format_still_parses_but_takes_no_sealed_secret() -> anyhow::Result<()> {
        let (_, v1) = request(JOIN_REQUEST_FORMAT_V1, None);
        let (parsed, _, _) = JoinRequest::parse(&v1)?;
        let err = parsed.delivery_public().unwrap_err();
        assert!(err.to_string().contains("no delivery key"), "{err}");
        let (_, v2) = request(JOIN_REQUEST_FORMAT, Some(hex::encode([9u8; 32])));
        assert_eq!(JoinRequest::parse(&v2)?.0.delivery_public()?, [9u8; 32]);
        // Each format with exactly its fields.
        for (format, key) in [
            (JOIN_REQUEST_FORMAT, None),
            (JOIN_REQUEST_FORMAT_V1, Some(hex::encode([9u8; 32]))),
        ] {
            let (_, bytes) = request(format, key);
            let err = JoinRequest::parse(&bytes).unwrap_err();
            assert!(err.to_string().contains("unsupported"), "{err}");
        }
        // The delivery key is covered by the proof.
        let (mut r, _) = request(JOIN_REQUEST_FORMAT, Some(hex::encode([9u8; 32])));
        r.delivery_key = Some(hex::encode([8u8; 32]));
        let err = JoinRequest::parse(&serde_json::to_vec(&r)?).unwrap_err();
        assert!(err.to_string().contains("proof of possession"), "{err}");
        Ok(())
    }
}
