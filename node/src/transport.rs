//! The QUIC transport (DESIGN §7): quinn over rustls TLS 1.3 with the ring provider, ALPN
//! `tfx/1`, mutual TLS. Both directions run the same [`MemberVerifier`]: the certificate must
//! chain to the consortium CA (the one the roster names), be within its validity, belong to a
//! member of the *current* roster who is not revoked, and be exactly the certificate the roster
//! lists for that member. Anything else fails the handshake, with the reason logged.
//!
//! Framing: each side opens two unidirectional streams — control (small messages) and bulk
//! (records, rosters) — each starting with one tag byte, then frames of a 4-byte big-endian
//! length and a sync message of at most [`FRAME_BYTES_MAX`] bytes. Separate streams keep a large
//! catch-up transfer from delaying hellos; per-stream flow control is the backpressure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quinn::{TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tfx_protocol::ids::sha256;
use tfx_protocol::roster::Roster;
use tfx_protocol::sync::wire::FRAME_BYTES_MAX;
use tfx_protocol::{MemberId, Timestamp};

use crate::pki::{MemberCert, PkiError};

/// ALPN protocol id: a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"tfx/1";

/// A handshake that has not completed in this long is abandoned (a peer that stalls
/// mid-handshake must not hold a connection slot).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection with no traffic for this long is closed. Keep-alives (below) keep healthy
/// connections well inside it; a peer that vanishes is noticed within this bound.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive interval: a third of the idle timeout, so two lost keep-alives are tolerated.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Unidirectional streams a peer may open: control and bulk. Bidirectional streams: none.
pub const UNI_STREAMS_MAX: u32 = 2;

/// Per-stream receive window: two maximum frames, so a sender can always finish one frame
/// while we process the previous.
pub const STREAM_WINDOW: u32 = 2 * FRAME_BYTES_MAX as u32;

/// Per-connection receive window: both streams' windows.
pub const CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;

/// Handshakes in progress at once. A consortium has at most a few hundred members; more
/// concurrent handshakes than this is a flood, and quinn refuses the excess.
pub const INCOMING_MAX: usize = 64;

/// Stream tags.
pub const STREAM_CONTROL: u8 = 1;
pub const STREAM_BULK: u8 = 2;

/// The consortium as the transport sees it: the CA and the current roster, swapped when the
/// sync core adopts a newer version.
#[derive(Debug)]
pub struct Membership {
    ca_der: Vec<u8>,
    ca_fingerprint: tfx_protocol::Hash,
    roster: RwLock<Arc<Roster>>,
    /// Peer certificates refused in handshakes since start, by [`Refusal::reason`] (metrics).
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Membership {
    pub fn new(ca_der: Vec<u8>, roster: Roster) -> Arc<Self> {
        Arc::new(Membership {
            ca_fingerprint: sha256(&ca_der),
            ca_der,
            roster: RwLock::new(Arc::new(roster)),
            refusals: Mutex::new(BTreeMap::new()),
        })
    }

    /// Refused peer certificates since start, by reason.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        self.refusals.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn count_refusal(&self, refusal: &Refusal) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry(refusal.reason()).or_insert(0) += 1;
        }
    }

    pub fn roster(&self) -> Arc<Roster> {
        match self.roster.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_roster(&self, roster: Roster) {
        let mut guard = match self.roster.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(roster);
    }

    /// Checks a presented certificate: CA chain and validity, then the roster. Returns the
    /// member it authenticates.
    pub fn check(&self, der: &[u8], now: Timestamp) -> Result<MemberId, Refusal> {
        let cert = MemberCert::parse_der(der).map_err(Refusal::Certificate)?;
        let roster = self.roster();
        if self.ca_fingerprint != roster.ca_fingerprint {
            return Err(Refusal::Config(
                "the installed CA is not the one the roster names".into(),
            ));
        }
        cert.verify(&self.ca_der, now)
            .map_err(Refusal::Certificate)?;
        let Some(entry) = roster.member(&cert.member) else {
            return Err(Refusal::NotMember(cert.member, roster.version));
        };
        if !roster.is_active(&cert.member, now) {
            return Err(Refusal::Revoked(cert.member, roster.version));
        }
        if entry.tls_fingerprint != cert.fingerprint {
            return Err(Refusal::OtherCertificate(cert.member, roster.version));
        }
        Ok(cert.member)
    }
}

/// Why a peer's certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Certificate(PkiError),
    #[error("{0} is not a member in roster v{1}")]
    NotMember(MemberId, u64),
    #[error("{0} is revoked in roster v{1}")]
    Revoked(MemberId, u64),
    #[error("{0} presented a certificate other than the one roster v{1} lists")]
    OtherCertificate(MemberId, u64),
    #[error("presented certificate for {got}, but {expected} was dialled")]
    WrongMember { expected: String, got: MemberId },
    #[error("intermediate certificates are not part of the consortium profile")]
    Intermediates,
    #[error("{0}")]
    Config(String),
}

impl Refusal {
    /// A fixed word for metrics labels: never a member id or certificate content.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Certificate(PkiError::Expired { .. }) => "certificate-expired",
            Refusal::Certificate(PkiError::NotYetValid { .. }) => "certificate-not-yet-valid",
            Refusal::Certificate(PkiError::Cert(_)) => "bad-certificate",
            Refusal::Certificate(_) => "unknown-ca",
            Refusal::NotMember(..) => "not-a-member",
            Refusal::Revoked(..) => "revoked",
            Refusal::OtherCertificate(..) => "other-certificate",
            Refusal::WrongMember { .. } => "wrong-member",
            Refusal::Intermediates => "intermediates",
            Refusal::Config(_) => "config",
        }
    }

    fn into_rustls(self) -> rustls::Error {
        let e = match &self {
            Refusal::Certificate(PkiError::Expired { .. }) => CertificateError::Expired,
            Refusal::Certificate(PkiError::NotYetValid { .. }) => CertificateError::NotValidYet,
            Refusal::Revoked(..) => CertificateError::Revoked,
            Refusal::Certificate(_) => CertificateError::UnknownIssuer,
            _ => CertificateError::ApplicationVerificationFailure,
        };
        rustls::Error::InvalidCertificate(e)
    }
}

/// The verification time. rustls passes whole seconds; a revocation takes effect at a
/// millisecond, so take the later of the two: a member revoked at 12:00:00.700 must be refused
/// at 12:00:00.900 too.
fn timestamp(now: UnixTime) -> Timestamp {
    Timestamp(now.as_secs().saturating_mul(1000)).max(crate::clock::now())
}

/// Verifies peers in both directions (see the module docs).
#[derive(Debug)]
pub struct MemberVerifier {
    membership: Arc<Membership>,
    provider: Arc<CryptoProvider>,
}

impl MemberVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: &str,
    ) -> Result<MemberId, rustls::Error> {
        let result = if intermediates.is_empty() {
            self.membership.check(end_entity, timestamp(now))
        } else {
            Err(Refusal::Intermediates)
        };
        result.map_err(|refusal| {
            self.membership.count_refusal(&refusal);
            tracing::warn!(%refusal, side, "peer certificate refused in the handshake");
            refusal.into_rustls()
        })
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let member = self.check(end_entity, intermediates, now, "server")?;
        // We dial a member by its id as the TLS server name: the answer must be that member.
        let expected = server_name.to_str();
        if member.as_str() != expected {
            let refusal = Refusal::WrongMember {
                expected: expected.to_string(),
                got: member,
            };
            self.membership.count_refusal(&refusal);
            tracing::warn!(%refusal, "peer certificate refused in the handshake");
            return Err(refusal.into_rustls());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for MemberVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, "client")?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// This node's TLS identity: its certificate and private key.
pub struct Identity {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn transport_config() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.max_concurrent_uni_streams(VarInt::from_u32(UNI_STREAMS_MAX));
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
    t.send_window(u64::from(CONNECTION_WINDOW));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // 30 s fits a VarInt of milliseconds.
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(VarInt::from_u32(
        IDLE_TIMEOUT.as_millis() as u32,
    ))));
    Arc::new(t)
}

/// Builds the QUIC endpoint: a server for members dialling in and the default client config
/// for dialling out, both verifying peers with [`MemberVerifier`].
pub fn endpoint(
    listen: SocketAddr,
    identity: &Identity,
    membership: Arc<Membership>,
) -> Result<quinn::Endpoint, TransportError> {
    let (server, client) = configs(identity, membership)?;
    let mut endpoint =
        quinn::Endpoint::server(server, listen).map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// A client-only endpoint (tests that dial with arbitrary certificates, the replication bench).
pub fn client_endpoint(
    identity: &Identity,
    membership: Arc<Membership>,
) -> Result<quinn::Endpoint, TransportError> {
    let (_, client) = configs(identity, membership)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut endpoint =
        quinn::Endpoint::client(addr).map_err(|source| TransportError::Bind { addr, source })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

fn configs(
    identity: &Identity,
    membership: Arc<Membership>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(MemberVerifier {
        membership,
        provider: provider.clone(),
    });
    let cert = CertificateDer::from(identity.cert_der.clone());
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.to_vec()));

    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport_config());
    server.max_incoming(INCOMING_MAX);

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key())?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport_config());
    Ok((server, client))
}

/// The member a connection authenticated (its certificate passed [`MemberVerifier`]).
pub fn peer_member(conn: &quinn::Connection) -> Option<MemberId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    MemberCert::parse_der(certs.first()?).ok().map(|c| c.member)
}

/// Why a stream was closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {FRAME_BYTES_MAX}-byte limit")]
    Oversized(usize),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("stream: {0}")]
    Read(String),
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Read(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::Oversized(len));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    })?;
    Ok(Some(buf))
}

/// Writes one frame.
pub async fn write_frame(send: &mut quinn::SendStream, payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l as usize <= FRAME_BYTES_MAX)
        .ok_or(FrameError::Oversized(payload.len()))?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(|e| FrameError::Read(e.to_string()))?;
    send.write_all(payload)
        .await
        .map_err(|e| FrameError::Read(e.to_string()))
}
