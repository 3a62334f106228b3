#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is a failed test
//! A running `tfx-node` against peers that should not get in, and against a member that breaks
//! the protocol once in. The adversary is this test, dialling with hand-built rustls client
//! configurations (so it can present no certificate, or any certificate it likes) and writing
//! raw frames. Every refusal is checked on the wire (the connection is closed before any sync
//! stream reaches the client, or with the protocol-violation code) and in the node's log (the
//! reason is named); a legitimate member is served on the same node, before and after, so a
//! refusal cannot pass by the node simply being unreachable.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tfx_node::entropy::SystemEntropy;
use tfx_node::pki::{self, Ca};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::record::{seal, SealParams};
use tfx_protocol::sync::wire::{Message, Records, WireRecord, FRAME_BYTES_MAX};
use tfx_protocol::{LogIndex, MemberId};

/// Accepts any server certificate: the adversary is testing the node's verification of *it*.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client identity: certificate DER and PKCS#8 key DER.
type Identity = (Vec<u8>, Vec<u8>);

/// A QUIC client endpoint presenting `identity` (or no certificate at all).
fn client(identity: Option<&Identity>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![tfx_node::transport::ALPN.to_vec()];
    let config = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(config)));
    endpoint
}

/// A member's own TLS identity, read from its node directory.
fn member_identity(member_dir: &Path) -> Identity {
    let cert = pki::MemberCert::parse_pem(
        &std::fs::read_to_string(member_dir.join(pki::TLS_CERT_FILE)).unwrap(),
    )
    .unwrap();
    let key = pki::load_tls_key_pkcs8(&member_dir.join("keys").join(pki::TLS_KEY_FILE)).unwrap();
    (cert.der, key.to_vec())
}

/// A key and CSR made the CLI's way in `dir`, certified by `ca` for `id`.
fn issued_by(ca: &Ca, dir: &Path, id: &str) -> Identity {
    let id = MemberId::new(id).unwrap();
    let csr = pki::create_tls_key_and_csr(dir, &id).unwrap();
    let cert = ca.issue(&csr, &id, 30).unwrap();
    let key = pki::load_tls_key_pkcs8(&dir.join(pki::TLS_KEY_FILE)).unwrap();
    (cert.der, key.to_vec())
}

/// A certificate for `id` signed by the consortium CA in `consortium`, valid only in 2020:
/// everything right except the dates. (The CLI refuses to issue such a thing, so rcgen does.)
fn expired(consortium: &Path, id: &str) -> Identity {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(consortium.join("ca.key")).unwrap())
            .unwrap();
    let ca_pem = std::fs::read_to_string(consortium.join("ca.crt")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        pki::member_uri(&MemberId::new(id).unwrap())
            .try_into()
            .unwrap(),
    )];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// Dials the node and waits for its first sync stream: `Ok(tag)` when it serves us,
/// `Err(why)` when the connection is refused or closed first.
async fn first_exchange(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<u8, String> {
    let conn = endpoint
        .connect(addr, "science-dept")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    // A refused client may see the handshake complete (TLS 1.3 sends the client's certificate
    // last); the refusal arrives as the close of the connection, before any stream.
    let exchange = async {
        let mut stream = conn.accept_uni().await.map_err(|e| e.to_string())?;
        let mut tag = [0u8; 1];
        stream
            .read_exact(&mut tag)
            .await
            .map_err(|e| e.to_string())?;
        Ok(tag[0])
    };
    let result = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("no stream and no close within 10 s".into()));
    conn.close(0u32.into(), b"done");
    result
}

/// Connects as a member, opens a control stream, writes `bytes` after its tag, and returns how
/// the node closed the connection.
/// Connects as a member and opens a sync stream with `tag`.
async fn open_stream(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    tag: u8,
) -> (quinn::Connection, quinn::SendStream) {
    let conn = endpoint
        .connect(addr, "science-dept")
        .unwrap()
        .await
        .unwrap();
    let mut stream = conn.open_uni().await.unwrap();
    stream.write_all(&[tag]).await.unwrap();
    (conn, stream)
}

async fn send_raw(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    bytes: &[u8],
) -> quinn::ConnectionError {
    let (conn, mut stream) = open_stream(endpoint, addr, tfx_node::transport::STREAM_CONTROL).await;
    // The node may close while we are still writing (an oversized length is refused before its
    // body arrives): that is the outcome under test, not a failure.
    let _ = stream.write_all(bytes).await;
    tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("the node did not close the connection within 10 s")
}

/// Synthetic credit record `n` signed with `key` as `origin`'s seq 0, every field disclosed.
fn sealed_credit(key: &SigningKey, origin: &MemberId, n: u64) -> WireRecord {
    let body = tfx_node::synthetic::credit(n).unwrap();
    let params = SealParams {
        origin,
        seq: LogIndex(0),
        issued_at: tfx_node::clock::now(),
        pseudonym: None,
    };
    let r = seal(&body, params, key, &mut SystemEntropy::new()).unwrap();
    WireRecord {
        envelope: r.envelope,
        disclosures: r.disclosures.into_iter().map(|d| d.into_bytes()).collect(),
    }
}

/// A framed `Records` message carrying `r` as `origin`'s record 0.
fn records_frame(origin: &MemberId, r: WireRecord) -> Vec<u8> {
    frame(&Message::Records(Records {
        origin: origin.clone(),
        from: 0,
        records: vec![r],
        checkpoint: None,
        partial: false,
    }))
}

fn frame(message: &Message) -> Vec<u8> {
    let payload = message.encode();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// Waits until `log()` has grown past `from` with a line containing `needle`.
fn wait_log(net: &Net, member: &str, from: usize, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = net.log(member);
        if log.get(from..).is_some_and(|new| new.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{member}'s log never said {needle:?}; it holds:\n{}",
            log.get(from..).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn quic_addr(member_dir: &Path) -> SocketAddr {
    let listen = tfx_node::config::NodeConfig::load(&member_dir.join("node.toml"))
        .unwrap()
        .listen;
    SocketAddr::from(([127, 0, 0, 1], listen.port()))
}

fn revoke(net: &Net, member: &str) {
    let out = net.tfx(&[
        "member",
        "revoke",
        "--consortium",
        "consortium",
        "--id",
        member,
        "--reason",
        "test",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let mut files: Vec<String> = std::fs::read_dir(net.dir.path().join("c/consortium/roster"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".tfxroster"))
        .collect();
    files.sort();
    let mut args = vec!["roster", "install", "--dir", "science-dept"];
    args.extend(files.iter().map(String::as_str));
    let out = net.tfx(&args);
    assert!(out.status.success(), "{}", common::text(&out));
}

#[test]
fn refused_at_the_handshake() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _quinn_needs_a_runtime = rt.enter();
    let mut net = Net::new();
    revoke(&net, "risk-warning");
    net.start("science-dept");
    let addr = quic_addr(&net.member("science-dept"));
    let consortium = net.dir.path().join("c/consortium");
    let scratch = tempfile::tempdir().unwrap();
    let other_ca = Ca::create(&scratch.path().join("other-ca"), "Elsewhere").unwrap();
    let home_ca = Ca::load(&consortium).unwrap();

    let dial = |identity: Option<&Identity>| rt.block_on(first_exchange(&client(identity), addr));

    // A current member with its own certificate is served: the node opens its streams to it.
    // (Control or bulk first: the node opens each from its own writer task, so either can win.)
    let served = |outcome: Result<u8, String>| {
        use tfx_node::transport::{STREAM_BULK, STREAM_CONTROL};
        assert!(
            matches!(outcome, Ok(STREAM_CONTROL | STREAM_BULK)),
            "a current member was not served: {outcome:?}"
        );
    };
    let bank = member_identity(&net.member("bank-a"));
    served(dial(Some(&bank)));

    let cases: Vec<(&str, Option<Identity>, &str)> = vec![
        ("no client certificate", None, "peer sent no certificates"),
        (
            "a certificate from another CA",
            Some(issued_by(
                &other_ca,
                &scratch.path().join("other"),
                "bank-a",
            )),
            "certificate for bank-a: issued by \"CN=Elsewhere tfx CA\", not by this CA",
        ),
        (
            "an expired certificate",
            Some(expired(&consortium, "bank-a")),
            "certificate for bank-a expired at 2020-12-31",
        ),
        (
            "a revoked member",
            Some(member_identity(&net.member("risk-warning"))),
            "risk-warning is revoked in roster v6",
        ),
        (
            "a valid certificate whose member is not in the roster",
            Some(issued_by(
                &home_ca,
                &scratch.path().join("intruder"),
                "intruder",
            )),
            "intruder is not a member in roster v6",
        ),
        (
            "a member presenting a certificate other than the roster's",
            Some(issued_by(
                &home_ca,
                &scratch.path().join("bank-a-2"),
                "bank-a",
            )),
            "bank-a presented a certificate other than the one roster v6 lists",
        ),
    ];
    let metrics = Metrics::new(&net.member("science-dept"));
    let failures = |m: &std::collections::BTreeMap<String, f64>, reason: &str| {
        m.get(&format!(
            "tfx_handshake_failures_total{{reason=\"{reason}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    let reasons = [
        "no-certificate",
        "unknown-ca",
        "certificate-expired",
        "revoked",
        "not-a-member",
        "other-certificate",
    ];
    let before = metrics.scrape();
    for (case, identity, logged) in &cases {
        let from = net.log("science-dept").len();
        let outcome = dial(identity.as_ref());
        assert!(outcome.is_err(), "{case}: served ({outcome:?})");
        wait_log(&net, "science-dept", from, logged);
        eprintln!("{case}: refused ({})", outcome.unwrap_err());
    }
    // Still serving members after all that.
    served(dial(Some(&bank)));
    // Each refusal moved its own handshake-failure counter, by one.
    let after = metrics.scrape();
    for reason in reasons {
        assert_eq!(
            failures(&after, reason) - failures(&before, reason),
            1.0,
            "{reason}: {after:?}"
        );
    }
}

#[test]
fn a_misbehaving_member_is_disconnected_and_nothing_it_sent_is_stored() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _quinn_needs_a_runtime = rt.enter();
    let mut net = Net::new();
    net.start("science-dept");
    net.start("pbc-chengdu");
    let addr = quic_addr(&net.member("science-dept"));
    let science = Api::new(&net.member("science-dept"));
    let pbc = Api::new(&net.member("pbc-chengdu"));

    // The adversary holds bank-a's real TLS and record-signing keys: a member gone bad.
    let bank_dir = net.member("bank-a");
    let endpoint = client(Some(&member_identity(&bank_dir)));
    let bank_key =
        tfx_node::keyfile::load_signing_key(&bank_dir.join("keys/record-signing.key")).unwrap();
    let bank = MemberId::new("bank-a").unwrap();
    let pbc_id = MemberId::new("pbc-chengdu").unwrap();
    let sealed = |origin: &MemberId, n: u64| sealed_credit(&bank_key, origin, n);
    let mut bad_signature = sealed(&bank, 1);
    let last = bad_signature.envelope.len() - 1;
    bad_signature.envelope[last] ^= 1;
    let mut oversized = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0; 64]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an oversized frame",
            oversized,
            "exceeds the 4194304-byte limit",
        ),
        (
            "a malformed frame",
            vec![0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb],
            "malformed frame",
        ),
        (
            "a record with a bad signature",
            records_frame(&bank, bad_signature),
            "record bank-a#0 does not verify",
        ),
        (
            "a record forged in another member's name",
            records_frame(&pbc_id, sealed(&pbc_id, 2)),
            "record pbc-chengdu#0 does not verify",
        ),
        (
            "a record sent as another origin's",
            records_frame(&pbc_id, sealed(&bank, 3)),
            "record sent as pbc-chengdu#0 claims origin bank-a",
        ),
    ];
    for (case, bytes, logged) in &cases {
        let from = net.log("science-dept").len();
        let closed = rt.block_on(send_raw(&endpoint, addr, bytes));
        match &closed {
            quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(tfx_node::connection::CLOSE_PROTOCOL),
                "{case}: {closed}"
            ),
            other => panic!("{case}: closed with {other}, not a protocol-violation close"),
        }
        wait_log(&net, "science-dept", from, logged);
        wait_log(
            &net,
            "science-dept",
            from,
            "disconnecting peer: protocol violation",
        );
        let heads = heads(&science.status().unwrap());
        assert!(
            heads.get("bank-a").is_none_or(|h| h.0 == 0)
                && heads.get("pbc-chengdu").is_none_or(|h| h.0 == 0),
            "{case}: something was stored: {heads:?}"
        );
    }

    // The node kept serving its other peer throughout: a record pbc-chengdu writes now arrives.
    assert!(pbc.submit(&example("credit")).is_some());
    let expected = [("pbc-chengdu".to_string(), 1)].into();
    wait_converged(
        &net,
        &["science-dept", "pbc-chengdu"],
        &expected,
        Duration::from_secs(20),
    );
    // And the same channel accepts a well-formed push: what was refused above was refused for
    // what it was, not because this adversary cannot reach the store.
    let conn = rt.block_on(async {
        let (conn, mut stream) =
            open_stream(&endpoint, addr, tfx_node::transport::STREAM_BULK).await;
        stream
            .write_all(&records_frame(&bank, sealed(&bank, 4)))
            .await
            .unwrap();
        conn
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while heads(&science.status().unwrap()).get("bank-a").map(|h| h.0) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the valid push was not stored:\n{}",
            net.log("science-dept")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    conn.close(0u32.into(), b"done");
}

#[test]
fn a_push_beyond_the_receivers_view_is_dropped_recorded_and_the_sender_flagged() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _quinn_needs_a_runtime = rt.enter();
    let mut net = Net::new();
    net.start("risk-warning");
    let addr = quic_addr(&net.member("risk-warning"));
    let rw = Api::new(&net.member("risk-warning"));
    // bank-a, gone bad or simply misconfigured, pushes a record with every field — the USCC
    // and the enterprise's name included — to the risk-warning member.
    let bank_dir = net.member("bank-a");
    let endpoint = client(Some(&member_identity(&bank_dir)));
    let key =
        tfx_node::keyfile::load_signing_key(&bank_dir.join("keys/record-signing.key")).unwrap();
    let bank = MemberId::new("bank-a").unwrap();
    let n = 7;
    let identity = tfx_node::synthetic::credit_json(n);
    let from = net.log("risk-warning").len();
    let conn = rt.block_on(async {
        let (conn, mut stream) =
            open_stream(&endpoint, addr, tfx_node::transport::STREAM_BULK).await;
        let push = records_frame(&bank, sealed_credit(&key, &bank, n));
        stream.write_all(&push).await.unwrap();
        conn
    });
    // The record is kept (every member holds every envelope) with the fields of the view only.
    let deadline = Instant::now() + Duration::from_secs(10);
    while heads(&rw.status().unwrap()).get("bank-a").map(|h| h.0) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "not stored:\n{}",
            net.log("risk-warning")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_log(
        &net,
        "risk-warning",
        from,
        "peer sent disclosures beyond this member's view: dropped, peer flagged",
    );
    let status = rw.status().unwrap();
    let refused = status["refused_disclosures"].as_u64().unwrap();
    assert!(refused >= 2, "{status}");
    assert_eq!(
        status["flagged"]["bank-a"].as_u64(),
        Some(refused),
        "{status}"
    );
    // Flagged, not disconnected: a member one policy version behind is not an attacker.
    assert!(conn.close_reason().is_none(), "the sender was disconnected");
    let list = rw.get("/v1/records?limit=10").unwrap();
    let id = list["records"][0]["id"].as_str().unwrap().to_owned();
    let held = rw.get(&format!("/v1/records/{id}")).unwrap();
    assert!(
        held["fields"].get("subject_uscc").is_none()
            && held["fields"].get("subject_name").is_none(),
        "{held}"
    );
    assert!(held["fields"].get("overdue_days").is_some(), "{held}");
    conn.close(0u32.into(), b"done");
    // Nothing of the identity reached the disk or the log.
    assert!(net.signal("risk-warning", 15).success());
    let needles = [
        identity["subject_uscc"].as_str().unwrap(),
        identity["subject_name"].as_str().unwrap(),
    ];
    let found = files_containing(&net.member("risk-warning"), &needles);
    assert!(found.is_empty(), "identities on disk: {found:?}");
    let log = net.log("risk-warning");
    assert!(
        needles.iter().all(|n| !log.contains(n)),
        "the log names the enterprise"
    );
}
