//! Sealing the consortium pseudonym secret to one joining member, so that it can ride inside the
//! join bundle — a file operators pass around by mail or USB stick — and still be readable only
//! by the member it is for.
//!
//! The member makes a static X25519 *delivery key* at `tfx member init` and puts its public half
//! in the join request, which its record-signing key signs. `tfx member approve` seals the secret
//! to that key: a fresh ephemeral X25519 key, HKDF-SHA256 over the shared secret into a one-time
//! ChaCha20-Poly1305 key, and the member id and genesis hash as associated data, so a sealed
//! secret moved into another member's or another consortium's bundle does not open (SPEC §16).
//! The secret is sealed only for members whose roles issue records; risk-warning and auditor
//! members never receive it (DESIGN §4), whatever else they hold.

use anyhow::{bail, Context};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::MemberId;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// File name of the member's X25519 delivery key (64 hex digits, 0600) under `keys/`.
pub const DELIVERY_KEY_FILE: &str = "delivery.key";
/// File name the opened pseudonym secret is installed as under `keys/`.
pub const PSEUDONYM_SECRET_FILE: &str = "pseudonym.secret";

const SEAL_ALG: &str = "x25519-hkdf-sha256-chacha20poly1305";
const HKDF_SALT: &[u8] = b"tfx/seal/v1";
const AAD_LABEL: &[u8] = b"tfx/pseudonym-secret/v1";
/// Largest secret sealed: the pseudonym secret is 32 bytes; this only bounds what is opened.
const SECRET_BYTES_MAX: usize = 1024;

/// Roles that never hold the pseudonym secret: with it they could recompute a pseudonym from a
/// USCC and undo the minimization their view exists for.
pub const NO_SECRET_ROLES: &[&str] = &["risk-warning", "auditor"];

/// Whether a member with `roles` receives the pseudonym secret: one of its roles must issue a
/// kind of record that carries a pseudonym, and it must hold neither of the two roles above.
pub fn receives_secret(roles: &[String]) -> bool {
    let issues = roles.iter().any(|r| {
        RecordKind::ALL
            .iter()
            .filter(|k| **k != RecordKind::RiskWarning)
            .any(|k| k.issuer_roles().contains(&r.as_str()))
    });
    issues && !roles.iter().any(|r| NO_SECRET_ROLES.contains(&r.as_str()))
}

/// The pseudonym secret sealed to one member, as carried in its join bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// Always [`SEAL_ALG`]; anything else is refused.
    pub alg: String,
    /// The sender's ephemeral X25519 public key, hex.
    pub ephemeral: String,
    /// ChaCha20-Poly1305 ciphertext and tag, hex.
    pub ciphertext: String,
    /// The consortium CA's ECDSA P-256 signature (DER, hex) over [`signed_bytes`]: the
    /// bundle's other contents are signed, and so must this be, or whoever carries the bundle
    /// could substitute a secret of their own choosing.
    pub ca_signature: String,
}

/// What the CA signs: the label, member id, genesis, ephemeral key and ciphertext.
pub fn signed_bytes(
    member: &MemberId,
    genesis: &[u8; 32],
    ephemeral: &[u8],
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut m = aad(member, genesis);
    m.extend_from_slice(ephemeral);
    m.extend_from_slice(ciphertext);
    m
}

/// Generates a delivery key pair; returns the private key (for the 0600 file) and the public
/// key (for the join request).
pub fn generate_delivery_key() -> anyhow::Result<(Zeroizing<[u8; 32]>, [u8; 32])> {
    let mut private = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut private[..])
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let public = PublicKey::from(&StaticSecret::from(*private)).to_bytes();
    Ok((private, public))
}

/// Seals `secret` to the member `member` of the consortium with genesis `genesis`, whose
/// delivery public key is `recipient`; `sign` is the CA's signature function.
pub fn seal(
    secret: &[u8],
    recipient: &[u8; 32],
    member: &MemberId,
    genesis: &[u8; 32],
    sign: impl FnOnce(&[u8]) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<SealedSecret> {
    if secret.is_empty() || secret.len() > SECRET_BYTES_MAX {
        bail!(
            "a pseudonym secret of {} bytes cannot be sealed",
            secret.len()
        );
    }
    let (ephemeral_private, ephemeral) = generate_delivery_key()?;
    let ephemeral_private = StaticSecret::from(*ephemeral_private);
    let key = shared_key(&ephemeral_private, recipient, &ephemeral)?;
    let mut buf = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0u8; 12]),
        Aad::from(aad(member, genesis)),
        &mut buf,
    )
    .map_err(|_| anyhow::anyhow!("sealing the pseudonym secret failed"))?;
    let signature = sign(&signed_bytes(member, genesis, &ephemeral, &buf))?;
    Ok(SealedSecret {
        alg: SEAL_ALG.into(),
        ephemeral: hex::encode(ephemeral),
        ciphertext: hex::encode(buf),
        ca_signature: hex::encode(signature),
    })
}

/// Opens a sealed secret with the member's private delivery key, after checking the CA's
/// signature with `verify`. Fails, naming the reason, when it was not sealed by the consortium
/// operator, was sealed to another key, member or consortium, or was altered.
pub fn open(
    sealed: &SealedSecret,
    private: &[u8],
    member: &MemberId,
    genesis: &[u8; 32],
    verify: impl FnOnce(&[u8], &[u8]) -> bool,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if sealed.alg != SEAL_ALG {
        bail!(
            "unsupported sealing algorithm {:?} (expected {SEAL_ALG})",
            sealed.alg
        );
    }
    let mut ephemeral = [0u8; 32];
    hex::decode_to_slice(&sealed.ephemeral, &mut ephemeral)
        .context("the ephemeral key is not 64 hex digits")?;
    let private: [u8; 32] = private
        .try_into()
        .map_err(|_| anyhow::anyhow!("a delivery key is 32 bytes, not {}", private.len()))?;
    let private = StaticSecret::from(private);
    let own_public = PublicKey::from(&private).to_bytes();
    if sealed.ciphertext.len() > 2 * (SECRET_BYTES_MAX + CHACHA20_POLY1305.tag_len()) {
        bail!("the sealed secret is longer than any pseudonym secret");
    }
    let mut buf = Zeroizing::new(hex::decode(&sealed.ciphertext).context("ciphertext is not hex")?);
    let signature = hex::decode(&sealed.ca_signature).context("ca_signature is not hex")?;
    if !verify(&signed_bytes(member, genesis, &ephemeral, &buf), &signature) {
        bail!("the sealed pseudonym secret is not signed by the consortium CA: refused");
    }
    // The recipient derives with its own public key where the sender used the recipient's:
    // the info string binds both public keys either way.
    let key = shared_key_for(&private, &ephemeral, &ephemeral, &own_public)?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; 12]),
            Aad::from(aad(member, genesis)),
            &mut buf[..],
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "the sealed pseudonym secret does not open: it was sealed to another member or \
                 consortium, or altered"
            )
        })?;
    if plain.is_empty() {
        bail!("the sealed pseudonym secret is empty");
    }
    Ok(Zeroizing::new(plain.to_vec()))
}

fn aad(member: &MemberId, genesis: &[u8; 32]) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.push(0);
    aad.extend_from_slice(member.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(genesis);
    aad
}

/// The sender's one-time AEAD key: X25519(ephemeral, recipient), info = ephemeral ‖ recipient.
fn shared_key(
    ephemeral_private: &StaticSecret,
    recipient: &[u8; 32],
    ephemeral_public: &[u8; 32],
) -> anyhow::Result<LessSafeKey> {
    shared_key_for(ephemeral_private, recipient, ephemeral_public, recipient)
}

fn shared_key_for(
    private: &StaticSecret,
    peer: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
) -> anyhow::Result<LessSafeKey> {
    let shared = private.diffie_hellman(&PublicKey::from(*peer));
    // A low-order peer point gives an all-zero secret anyone can compute: refuse it.
    if !shared.was_contributory() {
        bail!("the X25519 public key is a low-order point");
    }
    let info = [&ephemeral_public[..], &recipient_public[..]];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(shared.as_bytes());
    let okm = prk
        .expand(&info, &CHACHA20_POLY1305)
        .map_err(|_| anyhow::anyhow!("HKDF expand failed"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfx_protocol::keys::SigningKey;

    fn member(s: &str) -> MemberId {
        MemberId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stands in for the consortium CA (any signature scheme serves the construction).
    struct Signer(SigningKey);

    impl Signer {
        fn new(seed: u8) -> Signer {
            Signer(SigningKey::from_seed(&[seed; 32]))
        }
        fn sign(&self) -> impl FnOnce(&[u8]) -> anyhow::Result<Vec<u8>> + '_ {
            |m| Ok(self.0.sign(m).to_vec())
        }
        fn verify(&self) -> impl FnOnce(&[u8], &[u8]) -> bool + '_ {
            |m, s| self.0.verifying_key().verify(m, s)
        }
    }

    #[test]
    fn opens_only_for_its_member_key_and_consortium_and_only_from_the_ca() -> anyhow::Result<()> {
        let ca = Signer::new(9);
        let (private, public) = generate_delivery_key()?;
        let id = member("bank-a");
        let genesis = [7u8; 32];
        let secret = [0x5au8; 32];
        let sealed = seal(&secret, &public, &id, &genesis, ca.sign())?;
        let opened = open(&sealed, &private[..], &id, &genesis, ca.verify())?;
        assert_eq!(&opened[..], &secret);

        let (other_private, _) = generate_delivery_key()?;
        let err = open(&sealed, &other_private[..], &id, &genesis, ca.verify()).unwrap_err();
        assert!(err.to_string().contains("does not open"), "{err}");
        // Moved into another member's or another consortium's bundle: the CA did not sign that.
        let err = open(
            &sealed,
            &private[..],
            &member("bank-b"),
            &genesis,
            ca.verify(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
        let err = open(&sealed, &private[..], &id, &[8u8; 32], ca.verify()).unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
        // Whoever carries the bundle cannot substitute a secret of their own.
        let forged = seal(
            &[0x11u8; 32],
            &public,
            &id,
            &genesis,
            Signer::new(10).sign(),
        )?;
        let err = open(&forged, &private[..], &id, &genesis, ca.verify()).unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");

        // Any flipped ciphertext or ephemeral-key bit is caught.
        for field in 0..2 {
            let mut t = sealed.clone();
            let s = if field == 0 {
                &mut t.ciphertext
            } else {
                &mut t.ephemeral
            };
            let mut raw = hex::decode(&*s)?;
            raw[3] ^= 0x10;
            *s = hex::encode(raw);
            assert!(open(&t, &private[..], &id, &genesis, ca.verify()).is_err());
        }
        Ok(())
    }

    #[test]
    fn low_order_keys_and_unknown_algorithms_are_refused() -> anyhow::Result<()> {
        let ca = Signer::new(9);
        let id = member("bank-a");
        let err = seal(&[1u8; 32], &[0u8; 32], &id, &[0u8; 32], ca.sign()).unwrap_err();
        assert!(err.to_string().contains("low-order"), "{err}");
        let (private, public) = generate_delivery_key()?;
        let mut sealed = seal(&[1u8; 32], &public, &id, &[0u8; 32], ca.sign())?;
        sealed.alg = "rsa".into();
        let err = open(&sealed, &private[..], &id, &[0u8; 32], ca.verify()).unwrap_err();
        assert!(err.to_string().contains("unsupported"), "{err}");
        Ok(())
    }

    #[test]
    fn only_issuing_roles_receive_the_secret() {
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(receives_secret(&roles(&["bank"])));
        assert!(receives_secret(&roles(&[
            "central-bank",
            "banking-regulator"
        ])));
        assert!(!receives_secret(&roles(&["risk-warning"])));
        assert!(!receives_secret(&roles(&["auditor"])));
        assert!(!receives_secret(&roles(&["bank", "auditor"])));
        // A role that issues nothing with a pseudonym gets no secret.
        assert!(!receives_secret(&roles(&["finance-dept"])));
        assert!(!receives_secret(&[]));
    }
}
