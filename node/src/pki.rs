//! The consortium's X.509 PKI: the consortium CA, member TLS keys and their certificate requests,
//! issuing member certificates, and parsing and checking them. The profile is written down in
//! `certs/README.md`; this module is its only implementation.
//!
//! A member's identity in a certificate is the one SAN URI `tfx:member:<id>`; the roster ties a
//! member to its certificate by the SHA-256 fingerprint of the certificate's DER. All keys here
//! are ECDSA P-256 (ring through rcgen) in PKCS#8 PEM files written 0600, never overwritten
//! (`keyfile` conventions). The CA ignores everything a request asks for except its public key
//! and SAN: the profile is decided here, not by whoever wrote the request.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivatePkcs8KeyDer};
use tfx_protocol::ids::sha256;
use tfx_protocol::{MemberId, Timestamp};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::clock;
use crate::keyfile::{self, KeyFileError};

/// CA validity: ten years. Replacing the CA means every member installs a new trust anchor and
/// gets a new certificate, so it should be rare; ten years also bounds how long a leaked but
/// unnoticed CA key stays useful. Member certificates cannot outlive it (`Ca::issue` refuses).
pub const CA_VALID_DAYS: u32 = 3650;
/// Member certificate validity: one year. Short enough that a forgotten member's certificate
/// lapses on its own and that renewals stay a practised yearly routine; long enough not to
/// need automation that a consortium of agencies would have to run. Revocation is the roster's
/// job (members are refused at the next handshake), so validity is not the only kill switch.
pub const MEMBER_CERT_VALID_DAYS: u32 = 365;
/// Warn this long before a certificate expires (Fabric operators' top outage cause is expiry).
/// Thirty days leaves several working weeks for a governor to issue the renewal.
pub const EXPIRY_WARNING_DAYS: u32 = 30;

pub const CA_KEY_FILE: &str = "ca.key";
pub const CA_CERT_FILE: &str = "ca.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const TLS_CERT_FILE: &str = "tls.crt";

/// The prefix of the SAN URI carrying a member id.
const MEMBER_URI_PREFIX: &str = "tfx:member:";

/// Largest certificate or request we parse, PEM or DER. A P-256 certificate in this profile is
/// about 700 bytes of PEM; 16 KiB leaves room for certificates made by other tools (long names,
/// more extensions) while bounding what one input can cost. Same bound as key files.
const PEM_BYTES_MAX: usize = 16 * 1024;

/// X.509 `ub-common-name` (RFC 5280 appendix A): a CN is at most 64 characters.
const COMMON_NAME_CHARS_MAX: usize = 64;
const CA_CN_SUFFIX: &str = " tfx CA";

const DAY_MS: u64 = 86_400_000;

/// Serial numbers are 16 random bytes with the top bit cleared (a positive INTEGER well under
/// RFC 5280's 20-octet limit). A serial derived from the key, rcgen's default, would repeat when
/// a certificate is renewed for the same key.
const SERIAL_BYTES: usize = 16;

/// How many SAN entries an error message lists, and how many characters of each.
const SAN_LISTED_MAX: usize = 8;
const SAN_CHARS_MAX: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a key or certificate file (permissions, existence, size, I/O).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A file whose content breaks the profile (wrong key type, not a CA, key/cert mismatch).
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid {field} {value:?}: {rule}")]
    Argument {
        field: &'static str,
        value: String,
        rule: String,
    },
    #[error("certificate: {0}")]
    Cert(String),
    #[error("certificate signing request: {0}")]
    Csr(String),
    #[error("certificate signing request: its SAN must be exactly URI:{expected}; found {found}")]
    CsrSan { expected: String, found: String },
    #[error("certificate for {member}: {reason}")]
    Verify { member: MemberId, reason: String },
    #[error(
        "certificate for {member} expired at {} (now {}); issue a new certificate for the same key",
        .not_after.to_rfc3339(), .now.to_rfc3339()
    )]
    Expired {
        member: MemberId,
        not_after: Timestamp,
        now: Timestamp,
    },
    #[error(
        "certificate for {member} is not valid before {} (now {}); check both clocks",
        .not_before.to_rfc3339(), .now.to_rfc3339()
    )]
    NotYetValid {
        member: MemberId,
        not_before: Timestamp,
        now: Timestamp,
    },
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("random number generator unavailable")]
    Rng,
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

fn file_err(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The SAN URI that carries the member id: "tfx:member:<id>".
pub fn member_uri(id: &MemberId) -> String {
    format!("{MEMBER_URI_PREFIX}{id}")
}

/// The consortium CA: its private key and its self-signed certificate.
pub struct Ca {
    key: Zeroizing<KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: Timestamp,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &hex::encode(sha256(&self.cert_der)))
            .field("not_after", &self.not_after.to_rfc3339())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Ca {
    /// Creates a new CA in `dir` (ca.key 0600, ca.crt), subject CN "<consortium> tfx CA", basic
    /// constraints CA (pathlen 0), key usage keyCertSign+cRLSign. Refuses if files exist.
    /// Creates `dir` (0700) if needed.
    pub fn create(dir: &Path, consortium: &str) -> Result<Ca, PkiError> {
        let cn = ca_common_name(consortium)?;
        keyfile::create_key_dir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        for path in [&key_path, &cert_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(KeyFileError::Exists { path: path.clone() }.into());
            }
        }
        let key = new_p256_key()?;
        let now = clock::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, now, CA_VALID_DAYS)?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&*key)
            .map_err(generate("CA certificate"))?;
        keyfile::write_private_pem(&key_path, "PRIVATE KEY", key.serialized_der())?;
        if let Err(e) = keyfile::write_public(&cert_path, cert.pem().as_bytes()) {
            // Leave nothing half-made: the key was created by us a moment ago, so removing it
            // cannot destroy anything else.
            let _ = fs::remove_file(&key_path);
            return Err(e.into());
        }
        let ca = Ca::from_parts(key, cert.der().to_vec(), &cert_path)?;
        tracing::info!(dir = %dir.display(), "created consortium CA");
        Ok(ca)
    }

    /// Loads ca.key + ca.crt from `dir` (permission-checked). The key must be ECDSA P-256 and
    /// match the certificate, which must be a CA certificate.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key = load_p256_key(&key_path)?;
        let bytes = keyfile::read_bounded(&cert_path)?;
        let der = single_pem_cert(&bytes).map_err(|reason| file_err(&cert_path, reason))?;
        Ca::from_parts(key, der, &cert_path)
    }

    /// Checks the CA certificate against its key and the CA profile and assembles the `Ca`.
    fn from_parts(key: Zeroizing<KeyPair>, der: Vec<u8>, path: &Path) -> Result<Ca, PkiError> {
        let cert = parse_ca_cert(&der).map_err(|reason| file_err(path, reason))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            let reason = format!("its public key is not the one in {CA_KEY_FILE}");
            return Err(file_err(path, reason));
        }
        let not_after = asn1_time(cert.validity().not_after.timestamp())
            .map_err(|reason| file_err(path, format!("notAfter: {reason}")))?;
        let cert_pem = keyfile::pem_encode("CERTIFICATE", &der);
        Ok(Ca {
            key,
            cert_der: der,
            cert_pem,
            not_after,
        })
    }

    /// Signs `msg` with the CA key (ECDSA P-256, SHA-256, ASN.1 DER signature): the consortium
    /// operator vouching for something outside a certificate, such as a sealed pseudonym secret.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = SystemRandom::new();
        let pkcs8 = Zeroizing::new(self.key.serialize_der());
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|e| PkiError::Cert(format!("CA key: {e}")))?;
        let sig = pair
            .sign(&rng, msg)
            .map_err(|e| PkiError::Cert(format!("signing with the CA key: {e}")))?;
        Ok(sig.as_ref().to_vec())
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues a member TLS certificate from a PEM CSR. The CSR must carry exactly the SAN URI
    /// member_uri(id) (rejected otherwise, naming what it carried) and an ECDSA P-256 key, and
    /// its signature must verify. The issued cert has: subject CN = id, SAN URI
    /// tfx:member:<id>, EKU serverAuth+clientAuth, key usage digitalSignature, not CA, validity
    /// now..now+valid_days (1..=CA_VALID_DAYS, and not past the CA's own notAfter), random
    /// serial. Nothing else from the request is copied.
    pub fn issue(
        &self,
        csr_pem: &str,
        id: &MemberId,
        valid_days: u32,
    ) -> Result<MemberCert, PkiError> {
        if !(1..=CA_VALID_DAYS).contains(&valid_days) {
            return Err(PkiError::Argument {
                field: "valid_days",
                value: valid_days.to_string(),
                rule: format!("must be 1 to {CA_VALID_DAYS}"),
            });
        }
        let spki = checked_csr_key(csr_pem, id)?;
        let now = clock::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(id.as_str());
        params.subject_alt_names = vec![member_san(id)?];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let not_after = set_validity(&mut params, now, valid_days)?;
        if not_after > self.not_after {
            return Err(PkiError::Argument {
                field: "valid_days",
                value: valid_days.to_string(),
                rule: format!(
                    "the certificate would outlive the CA, which expires at {}",
                    self.not_after.to_rfc3339()
                ),
            });
        }
        params.serial_number = Some(random_serial()?);
        let ca_der = CertificateDer::from(self.cert_der.as_slice());
        let issuer =
            Issuer::from_ca_cert_der(&ca_der, &*self.key).map_err(generate("CA issuer"))?;
        let cert = params
            .signed_by(&spki, &issuer)
            .map_err(generate("member certificate"))?;
        let cert = MemberCert::parse_der(cert.der())?;
        tracing::info!(member = %id, valid_days, "issued member certificate");
        Ok(cert)
    }
}

/// Generates the member's TLS key into `keys_dir/tls.key` (0600, refuses to overwrite) and
/// returns a PEM CSR for it with SAN URI member_uri(id) and CN id. Creates `keys_dir` (0700)
/// if needed.
pub fn create_tls_key_and_csr(keys_dir: &Path, id: &MemberId) -> Result<String, PkiError> {
    keyfile::create_key_dir(keys_dir)?;
    let key = new_p256_key()?;
    let pem = csr_pem(&key, id)?;
    keyfile::write_private_pem(
        &keys_dir.join(TLS_KEY_FILE),
        "PRIVATE KEY",
        key.serialized_der(),
    )?;
    Ok(pem)
}

/// A PEM CSR for the existing key in `keys_dir/tls.key` (permission-checked), with SAN URI
/// member_uri(id) and CN id: what a member sends to renew its certificate for the same key.
pub fn renewal_csr(keys_dir: &Path, id: &MemberId) -> Result<String, PkiError> {
    let key = load_p256_key(&keys_dir.join(TLS_KEY_FILE))?;
    csr_pem(&key, id)
}

fn csr_pem(key: &KeyPair, id: &MemberId) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(id.as_str());
    params.subject_alt_names = vec![member_san(id)?];
    let csr = params
        .serialize_request(key)
        .map_err(generate("certificate signing request"))?;
    csr.pem().map_err(generate("certificate signing request"))
}

/// Whether the TLS private key in `keys_dir/tls.key` matches this cert's public key (compare
/// SPKI). The key file is permission-checked like every private key.
pub fn tls_key_matches(keys_dir: &Path, cert: &MemberCert) -> Result<bool, PkiError> {
    let key = load_p256_key(&keys_dir.join(TLS_KEY_FILE))?;
    Ok(key.subject_public_key_info() == cert.public_key_der)
}

/// A parsed member certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCert {
    /// The certificate in PEM, re-encoded from `der` (so parsing PEM or DER gives equal values).
    pub pem: String,
    pub der: Vec<u8>,
    /// From the SAN URI (exactly one `tfx:member:` URI required).
    pub member: MemberId,
    /// Milliseconds since the epoch (X.509 times have whole seconds).
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// SHA-256 of the DER: what the roster entry names.
    pub fingerprint: [u8; 32],
    /// SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
}

impl MemberCert {
    /// Parses a PEM text holding exactly one CERTIFICATE block.
    pub fn parse_pem(pem: &str) -> Result<MemberCert, PkiError> {
        let der = single_pem_cert(pem.as_bytes()).map_err(PkiError::Cert)?;
        MemberCert::parse_der(&der)
    }

    pub fn parse_der(der: &[u8]) -> Result<MemberCert, PkiError> {
        let cert = parse_x509(der).map_err(PkiError::Cert)?;
        let member = member_from_san(&cert)?;
        let validity = cert.validity();
        let time = |field: &str, secs: i64| {
            asn1_time(secs).map_err(|reason| PkiError::Cert(format!("{field}: {reason}")))
        };
        Ok(MemberCert {
            pem: keyfile::pem_encode("CERTIFICATE", der),
            der: der.to_vec(),
            member,
            not_before: time("notBefore", validity.not_before.timestamp())?,
            not_after: time("notAfter", validity.not_after.timestamp())?,
            fingerprint: sha256(der),
            public_key_der: cert.public_key().raw.to_vec(),
        })
    }

    /// Parses a PEM text holding exactly one CERTIFICATE block that is a CA certificate (basic
    /// constraints CA, keyCertSign if key usage is present) and returns its DER, ready for
    /// [`MemberCert::verify`].
    pub fn ca_der_from_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
        let der = single_pem_cert(pem.as_bytes()).map_err(PkiError::Cert)?;
        parse_ca_cert(&der).map_err(|reason| PkiError::Cert(format!("CA: {reason}")))?;
        Ok(der)
    }

    /// Checks the signature chains to `ca_der` (issuer matches, signature verifies) and that
    /// `now` is within validity — this certificate's and the CA's.
    pub fn verify(&self, ca_der: &[u8], now: Timestamp) -> Result<(), PkiError> {
        let fail = |reason: String| PkiError::Verify {
            member: self.member.clone(),
            reason,
        };
        let ca = parse_ca_cert(ca_der).map_err(|r| fail(format!("CA certificate: {r}")))?;
        let cert = parse_x509(&self.der).map_err(fail)?;
        if cert.is_ca() {
            return Err(fail("is a CA certificate, not a member certificate".into()));
        }
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(fail(format!(
                "issued by \"{}\", not by this CA (\"{}\")",
                cert.issuer(),
                ca.subject()
            )));
        }
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(fail("its two signature algorithm fields differ".into()));
        }
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Err(fail(format!(
                "signature does not verify with the key of CA \"{}\" (fingerprint {})",
                ca.subject(),
                hex::encode(sha256(ca_der))
            )));
        }
        let ca_not_after = asn1_time(ca.validity().not_after.timestamp()).map_err(fail)?;
        if now > ca_not_after {
            return Err(fail(format!(
                "the CA certificate expired at {}",
                ca_not_after.to_rfc3339()
            )));
        }
        if now < self.not_before {
            return Err(PkiError::NotYetValid {
                member: self.member.clone(),
                not_before: self.not_before,
                now,
            });
        }
        if now > self.not_after {
            return Err(PkiError::Expired {
                member: self.member.clone(),
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }

    /// Days until not_after from `now`, in whole days rounded down (negative if expired).
    pub fn days_left(&self, now: Timestamp) -> i64 {
        let ms = i128::from(self.not_after.0) - i128::from(now.0);
        // |ms| < 2^64, so the day count fits an i64 with room to spare.
        i64::try_from(ms.div_euclid(i128::from(DAY_MS))).unwrap_or(i64::MIN)
    }
}

/// Validates the consortium name and returns the CA's common name.
fn ca_common_name(consortium: &str) -> Result<String, PkiError> {
    let max = COMMON_NAME_CHARS_MAX - CA_CN_SUFFIX.len();
    let err = |rule: String| PkiError::Argument {
        field: "consortium name",
        value: consortium.chars().take(80).collect(),
        rule,
    };
    if consortium.trim().is_empty() || consortium.chars().count() > max {
        return Err(err(format!("must be 1 to {max} characters")));
    }
    if consortium.chars().any(char::is_control) || consortium.trim() != consortium {
        return Err(err(
            "must not contain control characters or start or end with spaces".into(),
        ));
    }
    Ok(format!("{consortium}{CA_CN_SUFFIX}"))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn member_san(id: &MemberId) -> Result<SanType, PkiError> {
    // A member id is ASCII by construction, so this conversion cannot fail in practice.
    let uri = member_uri(id)
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Argument {
            field: "member id",
            value: id.to_string(),
            rule: e.to_string(),
        })?;
    Ok(SanType::URI(uri))
}

fn new_p256_key() -> Result<Zeroizing<KeyPair>, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map(Zeroizing::new)
        .map_err(generate("ECDSA P-256 key"))
}

/// Loads an ECDSA P-256 PKCS#8 PEM private key, refusing files readable by group or others.
/// The member's TLS private key as PKCS#8 DER, for the transport: permission-checked (0600)
/// and checked to be an ECDSA P-256 key like every member TLS key.
pub fn load_tls_key_pkcs8(path: &Path) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let key = load_p256_key(path)?;
    Ok(Zeroizing::new(key.serialize_der()))
}

fn load_p256_key(path: &Path) -> Result<Zeroizing<KeyPair>, PkiError> {
    let bytes = keyfile::read_private(path)?;
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&bytes).map_err(|e| {
        file_err(
            path,
            format!(
                "not a PKCS#8 PEM private key ({e}); an OpenSSL \"EC PRIVATE KEY\" converts with: \
                 openssl pkcs8 -topk8 -nocrypt"
            ),
        )
    })?;
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &PKCS_ECDSA_P256_SHA256)
        .map(Zeroizing::new)
        .map_err(|e| file_err(path, format!("not an ECDSA P-256 private key: {e}")))
}

/// How far notBefore is backdated: a peer whose clock runs a little slow must not see a freshly
/// issued certificate as not yet valid (an hour covers any NTP-disciplined server with room).
pub const NOT_BEFORE_BACKDATE_SECS: u64 = 3600;

/// Sets notBefore = `now` − [`NOT_BEFORE_BACKDATE_SECS`] (whole seconds) and notAfter =
/// `now` + `days`; returns notAfter.
fn set_validity(
    params: &mut CertificateParams,
    now: Timestamp,
    days: u32,
) -> Result<Timestamp, PkiError> {
    let now_secs = now.0 / 1000;
    let not_before = now_secs.saturating_sub(NOT_BEFORE_BACKDATE_SECS);
    let not_after = now_secs + u64::from(days) * 86_400;
    let time = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or(PkiError::Generate {
                what: "validity",
                source: rcgen::Error::Time,
            })
    };
    params.not_before = time(not_before)?;
    params.not_after = time(not_after)?;
    Ok(Timestamp(not_after.saturating_mul(1000)))
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Rng)?;
    // Positive, and never a leading zero octet, so the encoding is always 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// X.509 seconds since the epoch → `Timestamp`; times before 1970 are refused.
fn asn1_time(secs: i64) -> Result<Timestamp, String> {
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .map(Timestamp)
        .ok_or_else(|| "times before 1970 are not supported".to_string())
}

/// The DER of the one CERTIFICATE block in `pem` (other kinds of block are ignored).
fn single_pem_cert(pem: &[u8]) -> Result<Vec<u8>, String> {
    if pem.len() > PEM_BYTES_MAX {
        return Err(format!(
            "PEM too large: {} bytes (max {PEM_BYTES_MAX})",
            pem.len()
        ));
    }
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        certs.push(item.map_err(|e| format!("not valid PEM: {e}"))?);
    }
    match certs.as_slice() {
        [one] => Ok(one.to_vec()),
        [] => Err("no CERTIFICATE PEM block".into()),
        many => Err(format!(
            "{} CERTIFICATE PEM blocks (exactly one allowed)",
            many.len()
        )),
    }
}

/// Parses DER as one X.509 certificate with nothing after it.
fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    if der.len() > PEM_BYTES_MAX {
        return Err(format!(
            "DER too large: {} bytes (max {PEM_BYTES_MAX})",
            der.len()
        ));
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a DER X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    check_envelope(der, cert.tbs_certificate.as_ref())?;
    Ok(cert)
}

/// `AlgorithmIdentifier { ecdsa-with-SHA256 }` (RFC 5758: no parameters), DER.
const ECDSA_WITH_SHA256_ALG_ID: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// Checks the unsigned envelope of a certificate byte for byte: `SEQUENCE { tbsCertificate,
/// ecdsa-with-SHA256, BIT STRING with no unused bits }` with minimal lengths. x509-parser
/// ignores the class and constructed bits of these outer tags and the tag of the signature
/// algorithm's OID, so without this check such bit flips — outside the signed bytes — would
/// give a second, differently fingerprinted encoding of a certificate that still verifies.
/// Every certificate in the profile is signed by a P-256 CA key with SHA-256.
fn check_envelope(der: &[u8], tbs: &[u8]) -> Result<(), String> {
    let malformed = |what: &str| format!("malformed certificate envelope: {what}");
    let (body, rest) = der_tlv(der, 0x30).ok_or_else(|| malformed("outer SEQUENCE"))?;
    if !rest.is_empty() {
        return Err(malformed("bytes after the outer SEQUENCE"));
    }
    let rest = body
        .strip_prefix(tbs)
        .ok_or_else(|| malformed("tbsCertificate"))?;
    let rest = rest
        .strip_prefix(ECDSA_WITH_SHA256_ALG_ID)
        .ok_or("signature algorithm must be ecdsa-with-SHA256 (the profile's only one)")?;
    let (signature, rest) = der_tlv(rest, 0x03).ok_or_else(|| malformed("signature BIT STRING"))?;
    if !rest.is_empty() || signature.first() != Some(&0) {
        return Err(malformed("signature BIT STRING"));
    }
    Ok(())
}

/// Splits one DER TLV with tag `tag` off `input`: (its content, the rest). Lengths must be
/// minimal and at most two bytes (certificates here are far below 64 KiB).
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = match len_byte {
        0..=0x7f => (usize::from(len_byte), rest),
        0x81 => match rest.split_first()? {
            (&n, rest) if n >= 0x80 => (usize::from(n), rest),
            _ => return None,
        },
        0x82 => {
            let (n, rest) = rest.split_at_checked(2)?;
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            if n < 0x100 {
                return None;
            }
            (n, rest)
        }
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// Parses a CA certificate: basic constraints CA, and keyCertSign if key usage is present.
/// Whether `sig` is the CA's signature over `msg` ([`Ca::sign`]), the CA given as its
/// certificate (DER), which the caller has checked against the roster's fingerprint.
pub fn verify_ca_signature(ca_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
    let Ok(ca) = parse_ca_cert(ca_der) else {
        return false;
    };
    let key = &ca.public_key().subject_public_key.data;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.as_ref())
        .verify(msg, sig)
        .is_ok()
}

fn parse_ca_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let cert = parse_x509(der)?;
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("basic constraints: {e}"))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err("not a CA certificate (basic constraints CA is not set)".into());
    }
    let ku = cert.key_usage().map_err(|e| format!("key usage: {e}"))?;
    if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err("its key usage does not include keyCertSign".into());
    }
    Ok(cert)
}

/// The member id from the certificate's single `tfx:member:` SAN URI.
fn member_from_san(cert: &X509Certificate<'_>) -> Result<MemberId, PkiError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Cert(format!("subject alternative name: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(MEMBER_URI_PREFIX) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] => MemberId::new(&uri[MEMBER_URI_PREFIX.len()..])
            .map_err(|e| PkiError::Cert(format!("SAN URI: {e}"))),
        [] => Err(PkiError::Cert(format!(
            "no SAN URI {MEMBER_URI_PREFIX}<id>; not a tfx member certificate"
        ))),
        many => Err(PkiError::Cert(format!(
            "{} SAN URIs {MEMBER_URI_PREFIX}<id> (exactly one allowed): {}",
            many.len(),
            list_names(many.iter().map(|u| format!("URI:{u}")))
        ))),
    }
}

/// Parses and checks a PEM CSR for `id` and returns its public key: the request's signature
/// verifies, its key is ECDSA P-256, and its only SAN is URI member_uri(id).
fn checked_csr_key(csr_pem: &str, id: &MemberId) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    if csr_pem.len() > PEM_BYTES_MAX {
        return Err(PkiError::Csr(format!(
            "PEM too large: {} bytes (max {PEM_BYTES_MAX})",
            csr_pem.len()
        )));
    }
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Csr(format!("no CERTIFICATE REQUEST PEM block: {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::Csr(format!("not a DER certificate request: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Csr(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|e| {
        PkiError::Csr(format!(
            "its signature does not verify with its own key ({e})"
        ))
    })?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        return Err(PkiError::Csr(format!(
            "its key must be ECDSA P-256; found algorithm {} with parameters {}",
            spki.algorithm.algorithm,
            curve.map_or_else(|| "(none)".into(), |c| c.to_string())
        )));
    }
    let names: Vec<&GeneralName<'_>> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san.general_names.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let expected = member_uri(id);
    if !matches!(names.as_slice(), [GeneralName::URI(uri)] if *uri == expected) {
        let found = if names.is_empty() {
            "no SAN".to_string()
        } else {
            list_names(names.into_iter().map(describe_name))
        };
        return Err(PkiError::CsrSan { expected, found });
    }
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| PkiError::Csr(format!("public key: {e}")))
}

/// A SAN entry as OpenSSL prints it (`URI:…`, `DNS:…`), control characters escaped (`\n`), cut
/// to a readable length.
fn describe_name(name: &GeneralName<'_>) -> String {
    let text = match name {
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::IPAddress(ip) => format!("IP:{}", hex::encode(ip)),
        other => format!("{other:?}"),
    };
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SAN_CHARS_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

fn list_names(names: impl ExactSizeIterator<Item = String>) -> String {
    let total = names.len();
    let mut listed: Vec<String> = names.take(SAN_LISTED_MAX).collect();
    if total > SAN_LISTED_MAX {
        listed.push(format!("and {} more", total - SAN_LISTED_MAX));
    }
    listed.join(", ")
}
