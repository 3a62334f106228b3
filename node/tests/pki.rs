#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The consortium PKI (`tfx_node::pki`): CA creation and loading, member key + CSR, issuance,
//! parsing, chain and validity checks, and the refusals that matter — wrong member in a request,
//! another CA, expiry, loose key permissions, garbage input. Every key is generated at test time
//! in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use sha2::{Digest, Sha256};
use tfx_node::clock;
use tfx_node::keyfile::{self, KeyFileError};
use tfx_node::pki::{
    self, Ca, MemberCert, PkiError, CA_CERT_FILE, CA_KEY_FILE, CA_VALID_DAYS,
    MEMBER_CERT_VALID_DAYS, TLS_KEY_FILE,
};
use tfx_protocol::{MemberId, Timestamp};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

const DAY_MS: u64 = 86_400_000;

fn id(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn err_text<T: std::fmt::Debug>(r: Result<T, PkiError>) -> String {
    r.expect_err("expected an error").to_string()
}

/// A CA in `dir/ca` and a member key + certificate for `member` in `dir/<member>`.
fn ca_and_member(dir: &Path, member: &str) -> (Ca, MemberCert) {
    let ca = Ca::create(&dir.join("ca"), "Tianfu").unwrap();
    let csr = pki::create_tls_key_and_csr(&dir.join(member), &id(member)).unwrap();
    let cert = ca.issue(&csr, &id(member), MEMBER_CERT_VALID_DAYS).unwrap();
    (ca, cert)
}

/// A PEM CSR made directly with rcgen, for requests our own code would never produce.
fn custom_csr(alg: &'static rcgen::SignatureAlgorithm, sans: Vec<SanType>) -> String {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "bank-a");
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.to_string().try_into().unwrap())
}

fn subject_key_id<'a>(x: &'a X509Certificate<'_>) -> &'a [u8] {
    x.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
        .unwrap()
}

#[test]
fn ca_create_then_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let before = clock::now();
    let ca = Ca::create(dir.path(), "Tianfu consortium").unwrap();
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(
        fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap(),
        ca.cert_pem()
    );
    // `Debug` never shows the key.
    let debug = format!("{loaded:?}");
    assert!(
        debug.contains("[redacted]") && !debug.contains("PRIVATE"),
        "{debug}"
    );

    // The CA profile.
    let (_, x) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert_eq!(x.subject().to_string(), "CN=Tianfu consortium tfx CA");
    assert_eq!(x.issuer().as_raw(), x.subject().as_raw(), "self-signed");
    x.verify_signature(None).unwrap();
    let bc = x.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let days = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, i64::from(CA_VALID_DAYS));
    let not_before_ms = u64::try_from(x.validity().not_before.timestamp()).unwrap() * 1000;
    // notBefore is backdated so peers with slightly slow clocks accept the certificate at once.
    let issued_ms = not_before_ms + pki::NOT_BEFORE_BACKDATE_SECS * 1000;
    assert!(issued_ms <= clock::now().0 && issued_ms + 1000 > before.0);
    assert_eq!(
        x.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );
    assert_eq!(subject_key_id(&x).len(), 20);
    // Both ways of loading a CA certificate agree.
    assert_eq!(
        MemberCert::ca_der_from_pem(ca.cert_pem()).unwrap(),
        ca.cert_der()
    );
}

#[test]
fn consortium_name_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "  ", " padded", "tab\there", &"x".repeat(58)] {
        let e = err_text(Ca::create(dir.path(), bad));
        assert!(e.starts_with("invalid consortium name"), "{e}");
    }
    // 57 characters + " tfx CA" is the 64-character limit of a common name.
    Ca::create(dir.path(), &"四".repeat(57)).unwrap();
}

#[test]
fn key_files_are_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("consortium");
    Ca::create(&ca_dir, "Tianfu").unwrap();
    let (key_path, cert_path) = (ca_dir.join(CA_KEY_FILE), ca_dir.join(CA_CERT_FILE));
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&cert_path), 0o644);
    assert_eq!(mode(&ca_dir), 0o700);
    let (key, cert) = (fs::read(&key_path).unwrap(), fs::read(&cert_path).unwrap());
    assert!(String::from_utf8_lossy(&key).starts_with(concat!("-----BEGIN PRIVATE", " KEY-----\n")));
    let again = Ca::create(&ca_dir, "Tianfu");
    assert!(
        matches!(&again, Err(PkiError::KeyFile(KeyFileError::Exists { path })) if *path == key_path),
        "{again:?}"
    );
    assert!(err_text(again).contains("refusing to overwrite"));
    // Only the certificate left behind still blocks a new CA.
    fs::remove_file(&key_path).unwrap();
    assert!(matches!(
        Ca::create(&ca_dir, "Tianfu"),
        Err(PkiError::KeyFile(KeyFileError::Exists { path })) if path == cert_path
    ));
    assert!(!key_path.exists(), "a refused create leaves no key behind");
    fs::write(&key_path, &key).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::read(&cert_path).unwrap(), cert);

    let keys = dir.path().join("bank-a").join("keys");
    pki::create_tls_key_and_csr(&keys, &id("bank-a")).unwrap();
    let tls_key = keys.join(TLS_KEY_FILE);
    assert_eq!(mode(&tls_key), 0o600);
    assert_eq!(mode(&keys), 0o700);
    let tls = fs::read(&tls_key).unwrap();
    assert!(matches!(
        pki::create_tls_key_and_csr(&keys, &id("bank-a")),
        Err(PkiError::KeyFile(KeyFileError::Exists { .. }))
    ));
    assert_eq!(fs::read(&tls_key).unwrap(), tls);
}

#[test]
fn issued_certificate_for_bank_a() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = ca_and_member(dir.path(), "bank-a");
    let now = clock::now();
    assert_eq!(cert.member, id("bank-a"));
    assert_eq!(
        cert.fingerprint.as_slice(),
        Sha256::digest(&cert.der).as_slice()
    );
    assert_eq!(
        cert.not_after.0 - cert.not_before.0,
        u64::from(MEMBER_CERT_VALID_DAYS) * DAY_MS + pki::NOT_BEFORE_BACKDATE_SECS * 1000
    );
    assert!(
        cert.not_before.0 <= now.0
            && now.0 - cert.not_before.0 < 60_000 + pki::NOT_BEFORE_BACKDATE_SECS * 1000
    );
    assert!(
        (364..=365).contains(&cert.days_left(now)),
        "{}",
        cert.days_left(now)
    );
    cert.verify(ca.cert_der(), now).unwrap();
    assert_eq!(MemberCert::parse_pem(&cert.pem).unwrap(), cert);
    assert_eq!(MemberCert::parse_der(&cert.der).unwrap(), cert);
    assert_eq!(cert.member.to_string(), "bank-a");
    assert_eq!(pki::member_uri(&cert.member), "tfx:member:bank-a");

    // The member certificate profile.
    let (_, x) = X509Certificate::from_der(&cert.der).unwrap();
    assert_eq!(x.subject().to_string(), "CN=bank-a");
    let ca_x = X509Certificate::from_der(ca.cert_der()).unwrap().1;
    assert_eq!(x.issuer().as_raw(), ca_x.subject().as_raw());
    let san = x.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI("tfx:member:bank-a")]
    );
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any && eku.other.is_empty());
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
    assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
    assert!(!x.is_ca());
    let aki = x
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki.0, subject_key_id(&ca_x));
    assert_eq!(x.raw_serial().len(), 16);
    assert_eq!(x.public_key().raw, cert.public_key_der.as_slice());

    // Renewal: a new certificate for the same key has a new serial and fingerprint.
    let csr = pki::renewal_csr(&dir.path().join("bank-a"), &id("bank-a")).unwrap();
    let renewed = ca.issue(&csr, &id("bank-a"), 30).unwrap();
    assert_eq!(renewed.public_key_der, cert.public_key_der);
    assert_ne!(renewed.fingerprint, cert.fingerprint);
    let renewed_x = X509Certificate::from_der(&renewed.der).unwrap().1;
    assert_ne!(renewed_x.raw_serial(), x.raw_serial());
    assert_eq!(
        renewed.not_after.0 - renewed.not_before.0,
        30 * DAY_MS + pki::NOT_BEFORE_BACKDATE_SECS * 1000
    );
    renewed.verify(ca.cert_der(), now).unwrap();
    assert!(pki::tls_key_matches(&dir.path().join("bank-a"), &renewed).unwrap());
}

#[test]
fn verify_against_another_ca_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert) = ca_and_member(dir.path(), "bank-a");
    let now = clock::now();
    // Same consortium name, so the issuer name matches; only the signature can tell.
    let twin = Ca::create(&dir.path().join("twin"), "Tianfu").unwrap();
    let e = err_text(cert.verify(twin.cert_der(), now));
    assert!(
        e.starts_with("certificate for bank-a: signature does not verify with the key of CA \"CN=Tianfu tfx CA\""),
        "{e}"
    );
    let other = Ca::create(&dir.path().join("other"), "Other").unwrap();
    let e = err_text(cert.verify(other.cert_der(), now));
    assert_eq!(
        e,
        "certificate for bank-a: issued by \"CN=Tianfu tfx CA\", not by this CA (\"CN=Other tfx CA\")"
    );
    // A member certificate is no trust anchor, not even its own.
    let e = err_text(cert.verify(&cert.der, now));
    assert!(e.contains("not a CA certificate"), "{e}");
    let e = err_text(MemberCert::ca_der_from_pem(&cert.pem));
    assert!(e.contains("not a CA certificate"), "{e}");
    // A CA certificate is no member certificate.
    let e = err_text(MemberCert::parse_der(twin.cert_der()));
    assert!(e.contains("no SAN URI tfx:member:<id>"), "{e}");
}

#[test]
fn issue_refuses_a_request_for_another_member() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(&dir.path().join("ca"), "Tianfu").unwrap();
    let bank_b = pki::create_tls_key_and_csr(&dir.path().join("bank-b"), &id("bank-b")).unwrap();
    let e = ca.issue(&bank_b, &id("bank-a"), 365);
    assert!(
        matches!(&e, Err(PkiError::CsrSan { expected, found })
            if expected == "tfx:member:bank-a" && found == "URI:tfx:member:bank-b"),
        "{e:?}"
    );
    assert_eq!(
        err_text(e),
        "certificate signing request: its SAN must be exactly URI:tfx:member:bank-a; \
         found URI:tfx:member:bank-b"
    );

    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let no_tfx = custom_csr(
        p256,
        vec![SanType::DnsName("bank-a.example".try_into().unwrap())],
    );
    let e = err_text(ca.issue(&no_tfx, &id("bank-a"), 365));
    assert!(e.ends_with("found DNS:bank-a.example"), "{e}");
    let e = err_text(ca.issue(&custom_csr(p256, vec![]), &id("bank-a"), 365));
    assert!(e.ends_with("found no SAN"), "{e}");
    let extra = custom_csr(
        p256,
        vec![
            uri("tfx:member:bank-a"),
            SanType::DnsName("evil.example".try_into().unwrap()),
        ],
    );
    let e = err_text(ca.issue(&extra, &id("bank-a"), 365));
    assert!(
        e.ends_with("found URI:tfx:member:bank-a, DNS:evil.example"),
        "{e}"
    );
    let two = custom_csr(
        p256,
        vec![uri("tfx:member:bank-a"), uri("tfx:member:bank-b")],
    );
    assert!(matches!(
        ca.issue(&two, &id("bank-a"), 365),
        Err(PkiError::CsrSan { .. })
    ));
    // Near misses are refused, and shown so that the difference is visible.
    let newline = custom_csr(p256, vec![uri("tfx:member:bank-a\n")]);
    let e = err_text(ca.issue(&newline, &id("bank-a"), 365));
    assert!(e.ends_with("found URI:tfx:member:bank-a\\n"), "{e}");
    let upper = custom_csr(p256, vec![uri("TFX:MEMBER:bank-a")]);
    assert!(matches!(
        ca.issue(&upper, &id("bank-a"), 365),
        Err(PkiError::CsrSan { .. })
    ));
    // The right SAN alone is accepted even from a request made by another tool.
    let ok = custom_csr(p256, vec![uri("tfx:member:bank-a")]);
    assert_eq!(
        ca.issue(&ok, &id("bank-a"), 365).unwrap().member,
        id("bank-a")
    );
}

#[test]
fn issue_refuses_bad_requests_and_validity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(&dir.path().join("ca"), "Tianfu").unwrap();
    let bank_a = id("bank-a");
    let csr = pki::create_tls_key_and_csr(&dir.path().join("bank-a"), &bank_a).unwrap();
    for days in [0, CA_VALID_DAYS + 1] {
        let e = err_text(ca.issue(&csr, &bank_a, days));
        assert_eq!(
            e,
            format!("invalid valid_days \"{days}\": must be 1 to 3650")
        );
    }

    let p384 = custom_csr(
        &rcgen::PKCS_ECDSA_P384_SHA384,
        vec![uri("tfx:member:bank-a")],
    );
    let e = err_text(ca.issue(&p384, &bank_a, 365));
    assert!(e.contains("its key must be ECDSA P-256"), "{e}");
    let ed = custom_csr(&rcgen::PKCS_ED25519, vec![uri("tfx:member:bank-a")]);
    assert!(err_text(ca.issue(&ed, &bank_a, 365)).contains("must be ECDSA P-256"));

    // A request altered after signing: its signature no longer verifies.
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let at = der.windows(6).position(|w| w == b"bank-a").unwrap();
    der[at + 5] = b'b';
    let tampered = keyfile_pem("CERTIFICATE REQUEST", &der);
    let e = err_text(ca.issue(&tampered, &bank_a, 365));
    assert!(e.contains("signature does not verify"), "{e}");

    let cert_pem = ca.cert_pem().to_string();
    let e = err_text(ca.issue(&cert_pem, &bank_a, 365));
    assert!(e.contains("no CERTIFICATE REQUEST PEM block"), "{e}");
}

fn keyfile_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn expired_and_not_yet_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = ca_and_member(dir.path(), "bank-a");
    let last = cert.not_after;
    cert.verify(ca.cert_der(), last).unwrap();
    assert_eq!(cert.days_left(last), 0);
    let after = Timestamp(last.0 + 1);
    let e = cert.verify(ca.cert_der(), after);
    assert!(matches!(e, Err(PkiError::Expired { .. })), "{e:?}");
    let e = err_text(e);
    assert!(
        e.starts_with("certificate for bank-a expired at ")
            && e.ends_with("issue a new certificate for the same key"),
        "{e}"
    );
    assert!(e.contains(&last.to_rfc3339()), "{e}");
    assert_eq!(cert.days_left(after), -1);
    assert_eq!(cert.days_left(Timestamp(last.0 + 10 * DAY_MS)), -10);
    assert_eq!(cert.days_left(Timestamp(last.0 - 30 * DAY_MS)), 30);

    let early = Timestamp(cert.not_before.0 - 1);
    let e = cert.verify(ca.cert_der(), early);
    assert!(matches!(e, Err(PkiError::NotYetValid { .. })), "{e:?}");
    assert!(err_text(e).contains("check both clocks"));

    // Past the CA's own expiry the chain fails first, naming the CA.
    let ca_x = X509Certificate::from_der(ca.cert_der()).unwrap().1;
    let ca_end = u64::try_from(ca_x.validity().not_after.timestamp()).unwrap() * 1000;
    let e = err_text(cert.verify(ca.cert_der(), Timestamp(ca_end + 1)));
    assert!(e.contains("the CA certificate expired at"), "{e}");
}

#[test]
fn tls_key_matches_its_own_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert_a) = ca_and_member(dir.path(), "bank-a");
    let csr_b = pki::create_tls_key_and_csr(&dir.path().join("bank-b"), &id("bank-b")).unwrap();
    let cert_b = ca.issue(&csr_b, &id("bank-b"), 365).unwrap();
    assert!(pki::tls_key_matches(&dir.path().join("bank-a"), &cert_a).unwrap());
    assert!(pki::tls_key_matches(&dir.path().join("bank-b"), &cert_b).unwrap());
    assert!(!pki::tls_key_matches(&dir.path().join("bank-a"), &cert_b).unwrap());
    assert!(!pki::tls_key_matches(&dir.path().join("bank-b"), &cert_a).unwrap());
    // A missing key is an error naming the file, not a `false`.
    let e = err_text(pki::tls_key_matches(&dir.path().join("nobody"), &cert_a));
    assert!(e.contains("nobody/tls.key"), "{e}");
}

#[test]
fn loose_permissions_on_private_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert) = ca_and_member(dir.path(), "bank-a");
    let ca_key = dir.path().join("ca").join(CA_KEY_FILE);
    fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o640)).unwrap();
    let e = Ca::load(&dir.path().join("ca"));
    assert!(
        matches!(
            &e,
            Err(PkiError::KeyFile(KeyFileError::LoosePermissions {
                mode: 0o640,
                ..
            }))
        ),
        "{e:?}"
    );
    let e = err_text(e);
    assert_eq!(
        e,
        format!(
            "private key file {p} is readable by group or others (mode 0640); run: chmod 600 {p}",
            p = ca_key.display()
        )
    );
    fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o600)).unwrap();
    Ca::load(&dir.path().join("ca")).unwrap();

    let tls_key = dir.path().join("bank-a").join(TLS_KEY_FILE);
    fs::set_permissions(&tls_key, fs::Permissions::from_mode(0o604)).unwrap();
    let e = err_text(pki::tls_key_matches(&dir.path().join("bank-a"), &cert));
    assert!(e.contains("mode 0604") && e.contains("chmod 600"), "{e}");
}

#[test]
fn ca_load_checks_key_type_and_match() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    Ca::create(&ca_dir, "Tianfu").unwrap();
    let key_path = ca_dir.join(CA_KEY_FILE);

    // An Ed25519 record-signing key where the CA key should be.
    let ed = dir.path().join("ed");
    keyfile::generate_signing_key(&ed).unwrap();
    fs::remove_file(&key_path).unwrap();
    fs::copy(ed.join(keyfile::SIGNING_KEY_FILE), &key_path).unwrap();
    let e = err_text(Ca::load(&ca_dir));
    assert!(
        e.starts_with(&format!(
            "{}: not an ECDSA P-256 private key",
            key_path.display()
        )),
        "{e}"
    );

    // Another CA's key.
    let other = dir.path().join("other");
    Ca::create(&other, "Tianfu").unwrap();
    fs::remove_file(&key_path).unwrap();
    fs::copy(other.join(CA_KEY_FILE), &key_path).unwrap();
    let e = err_text(Ca::load(&ca_dir));
    assert_eq!(
        e,
        format!(
            "{}: its public key is not the one in ca.key",
            ca_dir.join(CA_CERT_FILE).display()
        )
    );

    // A member certificate where the CA certificate should be.
    let member = dir.path().join("member");
    let ca = Ca::load(&other).unwrap();
    let csr = pki::create_tls_key_and_csr(&member, &id("bank-a")).unwrap();
    let cert = ca.issue(&csr, &id("bank-a"), 365).unwrap();
    fs::remove_file(ca_dir.join(CA_CERT_FILE)).unwrap();
    fs::write(ca_dir.join(CA_CERT_FILE), &cert.pem).unwrap();
    let e = err_text(Ca::load(&ca_dir));
    assert!(e.contains("not a CA certificate"), "{e}");
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = ca_and_member(dir.path(), "bank-a");
    for pem in [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    ] {
        assert!(MemberCert::parse_pem(pem).is_err(), "{pem:?}");
        assert!(MemberCert::ca_der_from_pem(pem).is_err(), "{pem:?}");
        assert!(ca.issue(pem, &id("bank-a"), 365).is_err(), "{pem:?}");
    }
    for der in [&[][..], &[0x30], &[0x30, 0x82, 0xff, 0xff], &[0u8; 64]] {
        assert!(MemberCert::parse_der(der).is_err(), "{der:?}");
        assert!(cert.verify(der, clock::now()).is_err());
    }
    // Two certificates where one is expected, trailing bytes, and a truncation.
    let two = format!("{}{}", cert.pem, cert.pem);
    assert!(err_text(MemberCert::parse_pem(&two)).contains("2 CERTIFICATE PEM blocks"));
    let mut trailing = cert.der.clone();
    trailing.push(0);
    assert!(err_text(MemberCert::parse_der(&trailing)).contains("1 bytes after the certificate"));
    for len in 0..cert.der.len() {
        assert!(MemberCert::parse_der(&cert.der[..len]).is_err());
    }
    let huge = "A".repeat(20_000);
    assert!(err_text(MemberCert::parse_pem(&huge)).contains("PEM too large"));
}

#[test]
fn every_bit_flip_of_a_certificate_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = ca_and_member(dir.path(), "bank-a");
    let now = clock::now();
    let mut accepted = Vec::new();
    for bit in 0..cert.der.len() * 8 {
        let mut der = cert.der.clone();
        der[bit / 8] ^= 1 << (bit % 8);
        if let Ok(c) = MemberCert::parse_der(&der) {
            if c.verify(ca.cert_der(), now).is_ok() {
                accepted.push(bit);
            }
        }
    }
    assert!(accepted.is_empty(), "bit flips accepted: {accepted:?}");
    // x509-parser alone accepts a flipped class bit in the outer tag; the envelope check does not.
    let mut der = cert.der.clone();
    der[0] ^= 0x80;
    let e = err_text(MemberCert::parse_der(&der));
    assert_eq!(
        e,
        "certificate: malformed certificate envelope: outer SEQUENCE"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = MemberCert::parse_der(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = MemberCert::parse_pem(&text);
        let _ = MemberCert::ca_der_from_pem(&text);
        let wrapped = keyfile_pem("CERTIFICATE", &bytes);
        let _ = MemberCert::parse_pem(&wrapped);
        let _ = MemberCert::ca_der_from_pem(&wrapped);
    }

    #[test]
    fn arbitrary_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let ca = ca_for_proptest();
        let _ = ca.issue(&keyfile_pem("CERTIFICATE REQUEST", &bytes), &id("bank-a"), 365);
    }
}

/// One CA shared by the proptest cases (creating one per case would dominate the run).
fn ca_for_proptest() -> &'static Ca {
    static CA: std::sync::OnceLock<(tempfile::TempDir, Ca)> = std::sync::OnceLock::new();
    let (_, ca) = CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "Tianfu").unwrap();
        (dir, ca)
    });
    ca
}
