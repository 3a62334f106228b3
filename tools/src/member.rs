//! The new member's side: `tfx member init` makes the keys on the member's own machine (they
//! never leave it) and a join request holding only public material; `tfx member join` checks the
//! bundle the consortium sends back — CA, roster chain and signatures from the trusted genesis,
//! the certificate against the member's own TLS key, the roster entry against its own keys — and
//! only then installs it with a node config.
//!
//! ```text
//! NODE_DIR/keys/record-signing.key, .pub, tls.key    generated here, 0600
//! NODE_DIR/keys/delivery.key                         X25519 key the pseudonym secret is sealed to
//! NODE_DIR/keys/pseudonym.secret                     issuing members only, unsealed by join
//! NODE_DIR/join-request.json                         to send to the consortium operator
//! NODE_DIR/ca.crt, tls.crt, genesis.sha256           installed by join
//! NODE_DIR/roster/v000001.tfxroster …                the verified roster chain
//! NODE_DIR/node.toml                                 node configuration
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tfx_node::keyfile;
use tfx_node::node::{read_genesis, read_roster_chain, roster_file};
use tfx_node::pki::{self, MemberCert};
use tfx_protocol::ids::sha256;
use tfx_protocol::roster::{verify_chain, Roster};
use tfx_protocol::MemberId;

use crate::onboarding::{
    check_roles, parse_hash, JoinBundle, JoinRequest, RenewalRequest, RotationRequest,
    ONBOARDING_FILE_BYTES_MAX,
};
use crate::record::{read_limited, write_new};
use crate::sealed;

pub struct InitArgs {
    pub dir: PathBuf,
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub endpoint: String,
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
    let id = MemberId::new(&a.id).context("--id")?;
    check_roles(&a.roles)?;
    let endpoint_ok = a
        .endpoint
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !endpoint_ok {
        bail!(
            "--endpoint {:?} must be HOST:PORT (the address other members dial)",
            a.endpoint
        );
    }
    let request_path = a.dir.join("join-request.json");
    if request_path.exists() {
        bail!(
            "{} already exists; this node directory was initialised before",
            request_path.display()
        );
    }
    let keys = a.dir.join("keys");
    crate::key::create_private_dir(&a.dir)?;
    crate::key::create_private_dir(&keys)?;
    keyfile::generate_signing_key(&keys).context("generating record-signing key")?;
    let csr = pki::create_tls_key_and_csr(&keys, &id).context("generating TLS key")?;
    let key = keyfile::load_signing_key(&keys.join(keyfile::SIGNING_KEY_FILE))?;
    // Made for every member: whether the consortium seals the pseudonym secret to it depends
    // on the roles it is admitted with, decided on the operator's side.
    let (delivery_private, delivery_public) = sealed::generate_delivery_key()?;
    keyfile::write_secret(&keys.join(sealed::DELIVERY_KEY_FILE), &delivery_private[..])
        .context("writing the delivery key")?;
    let request = JoinRequest::new(
        &id,
        &a.name,
        a.roles,
        &a.endpoint,
        &key,
        &delivery_public,
        csr,
    );
    write_new(
        &request_path,
        serde_json::to_string_pretty(&request)?.as_bytes(),
    )?;
    println!(
        "member {id}: keys generated in {} (private keys 0600; they never leave this machine)",
        keys.display()
    );
    println!("  record-signing key id {}", key.key_id());
    println!(
        "  join request {} — send it to the consortium operator",
        request_path.display()
    );
    println!(
        "next: install the bundle you receive with `tfx member join --dir {} BUNDLE`",
        a.dir.display()
    );
    Ok(())
}

pub struct JoinArgs {
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub genesis: Option<String>,
}

pub fn join(a: JoinArgs) -> anyhow::Result<()> {
    let request_path = a.dir.join("join-request.json");
    let request = read_limited(&request_path, ONBOARDING_FILE_BYTES_MAX)
        .context("this node directory has no join request; run tfx member init first")?;
    let (request, id, _) = JoinRequest::parse(&request)?;
    let bundle = JoinBundle::parse(&read_limited(&a.bundle, ONBOARDING_FILE_BYTES_MAX)?)
        .with_context(|| format!("reading {}", a.bundle.display()))?;
    let check = |what: &str| format!("checking bundle {}: {what}", a.bundle.display());
    let genesis = parse_hash(&bundle.genesis).with_context(|| check("genesis"))?;
    // The trust anchor never comes from the bundle: on first join it is the genesis the
    // consortium published (--genesis), afterwards the one installed then.
    let installed = a.dir.join("node.toml").exists();
    let anchor = if installed {
        read_genesis(&a.dir.join("genesis.sha256"))?
    } else {
        let published = a.genesis.as_deref().context(
            "--genesis HASH is required on first join: the consortium's published genesis hash",
        )?;
        parse_hash(published)?
    };
    if let Some(expected) = &a.genesis {
        if parse_hash(expected)? != anchor {
            bail!("--genesis {expected} is not the genesis this node joined with");
        }
    }
    if genesis != anchor {
        bail!(
            "{}: genesis {} is not the consortium's genesis {}",
            check("trust anchor"),
            bundle.genesis,
            hex::encode(anchor)
        );
    }
    let versions = bundle.roster_bytes()?;
    let roster = verify_chain(&genesis, &versions).with_context(|| check("roster chain"))?;
    // Exactly one certificate, re-encoded from its DER when installed: nothing unsigned rides along.
    let ca = MemberCert::ca_der_from_pem(&bundle.ca_cert_pem)
        .with_context(|| check("CA certificate"))?;
    if installed {
        check_extends_installed(&a.dir, &versions, &ca).with_context(|| check("update"))?;
    }
    if sha256(&ca) != roster.ca_fingerprint {
        bail!(
            "{}: the CA certificate is not the one the roster names",
            check("CA")
        );
    }
    let cert = MemberCert::parse_pem(&bundle.member_cert_pem)
        .with_context(|| check("member certificate"))?;
    cert.verify(&ca, tfx_node::clock::now())
        .with_context(|| check("member certificate"))?;
    if cert.member != id || bundle.member != id.as_str() {
        bail!(
            "{}: the bundle is for {}, this node is {id}",
            check("member"),
            cert.member
        );
    }
    let keys = a.dir.join("keys");
    if !pki::tls_key_matches(&keys, &cert)? {
        bail!(
            "{}: the certificate's key is not this node's TLS key ({})",
            check("certificate"),
            keys.join(pki::TLS_KEY_FILE).display()
        );
    }
    let entry = roster
        .member(&id)
        .with_context(|| check(&format!("{id} is not in roster v{}", roster.version)))?;
    if entry.tls_fingerprint != cert.fingerprint {
        bail!(
            "{}: the roster lists another certificate for {id}",
            check("roster entry")
        );
    }
    // This node's keys: the current one, and the next one while a rotation is pending.
    let keys = a.dir.join("keys");
    let current_key = keyfile::load_verifying_key(&keys.join(keyfile::VERIFYING_KEY_FILE))?;
    let next_path = keys.join(keyfile::NEXT_VERIFYING_KEY_FILE);
    let next_key = next_path
        .exists()
        .then(|| keyfile::load_verifying_key(&next_path))
        .transpose()?;
    let lists = |k: &tfx_protocol::keys::VerifyingKey| entry.keys.iter().any(|w| w.key == *k);
    let rotating = next_key.as_ref().is_some_and(&lists);
    if !lists(&current_key) && !rotating {
        bail!(
            "{}: the roster does not list this node's record-signing key for {id}",
            check("roster entry")
        );
    }
    if entry.roles != request.roles || entry.endpoint != request.endpoint {
        bail!(
            "{}: roles or endpoint differ from this node's join request",
            check("roster entry")
        );
    }
    let secret = open_secret(&a.dir, &bundle, &request, &id, &genesis)
        .with_context(|| check("pseudonym secret"))?;
    if a.dir.join("node.toml").exists() {
        return update(
            &a.dir,
            &versions,
            &cert,
            rotating,
            &roster,
            secret.as_ref().map(|s| &s[..]),
        );
    }
    let port = request.endpoint.rsplit_once(':').map_or("", |(_, p)| p);
    install(
        &a.dir,
        &bundle,
        &versions,
        &cert,
        &id,
        port,
        secret.as_ref().map(|s| &s[..]),
    )?;
    println!(
        "{id} joined {:?}: roster v{} verified from genesis, certificate valid {} more days",
        roster.consortium,
        roster.version,
        cert.days_left(tfx_node::clock::now())
    );
    if secret.is_some() {
        println!(
            "  pseudonym secret unsealed to {} (0600)",
            a.dir
                .join("keys")
                .join(sealed::PSEUDONYM_SECRET_FILE)
                .display()
        );
    } else if sealed::receives_secret(&request.roles) {
        println!("  note: the bundle carries no pseudonym secret, so this node's records will carry no subject pseudonym; ask the consortium operator for a bundle with one");
    }
    println!("  node config {}", a.dir.join("node.toml").display());
    Ok(())
}

/// Opens the bundle's sealed pseudonym secret, if any, with this node's delivery key, and
/// checks it may be held here and agrees with one already installed. Nothing is written.
fn open_secret(
    dir: &Path,
    bundle: &JoinBundle,
    request: &JoinRequest,
    id: &MemberId,
    genesis: &[u8; 32],
) -> anyhow::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    let Some(sealed_secret) = &bundle.pseudonym_secret else {
        return Ok(None);
    };
    // Defence in depth: the operator's side never seals it to these roles; if a bundle does,
    // refuse it rather than hold what the role must not.
    if !sealed::receives_secret(&request.roles) {
        bail!(
            "the bundle carries the pseudonym secret, which a member with roles {} must never hold; ask the consortium operator for a bundle without it",
            request.roles.join(", ")
        );
    }
    let keys = dir.join("keys");
    let private = keyfile::load_secret(&keys.join(sealed::DELIVERY_KEY_FILE))
        .context("loading this node's delivery key")?;
    // The CA certificate was checked against the roster's fingerprint before this is called.
    let ca = MemberCert::ca_der_from_pem(&bundle.ca_cert_pem)?;
    let secret = sealed::open(sealed_secret, &private, id, genesis, |m, s| {
        pki::verify_ca_signature(&ca, m, s)
    })?;
    if secret.len() < tfx_protocol::limits::PSEUDONYM_SECRET_BYTES_MIN {
        bail!(
            "the pseudonym secret is {} bytes, shorter than the {} required",
            secret.len(),
            tfx_protocol::limits::PSEUDONYM_SECRET_BYTES_MIN
        );
    }
    let installed = keys.join(sealed::PSEUDONYM_SECRET_FILE);
    if installed.exists() && keyfile::load_secret(&installed)?[..] != secret[..] {
        bail!(
            "{} holds another pseudonym secret; records pseudonymised under two secrets would not link, so nothing was changed",
            installed.display()
        );
    }
    Ok(Some(secret))
}

/// Installs the pseudonym secret as keys/pseudonym.secret (0600) unless it is there already,
/// through a temporary file so a crash never leaves half a secret.
fn install_secret(dir: &Path, secret: &[u8]) -> anyhow::Result<()> {
    let keys = dir.join("keys");
    let path = keys.join(sealed::PSEUDONYM_SECRET_FILE);
    if path.exists() {
        return Ok(());
    }
    let tmp = keys.join(format!("{}.tmp", sealed::PSEUDONYM_SECRET_FILE));
    let _ = std::fs::remove_file(&tmp);
    keyfile::write_secret(&tmp, secret).context("writing the pseudonym secret")?;
    std::fs::rename(&tmp, &path).context("installing the pseudonym secret")?;
    Ok(())
}

/// Installs an update bundle on a node that has joined: the key switch when the roster now
/// lists the pending next key (the old private key is kept under keys/retired/, 0600, for the
/// operator to destroy once its overlap window has passed), a renewed certificate, and the new
/// roster versions — in that order, each step idempotent, roster files last. Whether a bundle is
/// "newer" is judged by the installed roster files, so if anything fails halfway, running the
/// same `tfx member join` again completes the update.
fn update(
    dir: &Path,
    versions: &[Vec<u8>],
    cert: &MemberCert,
    rotating: bool,
    roster: &Roster,
    secret: Option<&[u8]>,
) -> anyhow::Result<()> {
    if rotating {
        switch_keys(&dir.join("keys"))?;
    }
    if let Some(secret) = secret {
        install_secret(dir, secret)?;
        let config = dir.join("node.toml");
        let text = std::fs::read_to_string(&config).context("reading node.toml")?;
        if !text.contains("pseudonym_secret") {
            println!(
                "installed the pseudonym secret; add `pseudonym_secret = \"keys/{}\"` under [paths] in {} and restart the node",
                sealed::PSEUDONYM_SECRET_FILE,
                config.display()
            );
        }
    }
    let tls = dir.join(pki::TLS_CERT_FILE);
    if std::fs::read_to_string(&tls).ok().as_deref() != Some(cert.pem.as_str()) {
        crate::record::replace_file(&tls, cert.pem.as_bytes())?;
        println!(
            "installed the renewed certificate ({} days left)",
            cert.days_left(tfx_node::clock::now())
        );
    }
    write_missing_versions(&dir.join("roster"), versions)?;
    println!(
        "updated to roster v{} of {:?}",
        roster.version, roster.consortium
    );
    Ok(())
}

/// Makes the pending next record-signing key the current one. Steps, each skipped when already
/// done, so an interrupted switch resumes: hard-link the current pair into retired/ (the old key
/// is never deleted here), move the next private key over the current one, then the next public
/// key over the current one. The public key moves last: until it does, `join` still sees a
/// rotation in progress.
fn switch_keys(keys: &Path) -> anyhow::Result<()> {
    let old = keyfile::load_verifying_key(&keys.join(keyfile::VERIFYING_KEY_FILE))?;
    let retired = keys.join("retired");
    crate::key::create_private_dir(&retired)?;
    let retired_key = retired.join(format!("record-signing.{}.key", old.id()));
    let retired_pub = retired.join(format!("record-signing.{}.pub", old.id()));
    let next_key = keys.join(keyfile::NEXT_SIGNING_KEY_FILE);
    // Before the private key moves, the current file still holds the old key: keep a link.
    if next_key.exists() && !retired_key.exists() {
        std::fs::hard_link(keys.join(keyfile::SIGNING_KEY_FILE), &retired_key)
            .with_context(|| format!("keeping the old key as {}", retired_key.display()))?;
    }
    if !retired_pub.exists() {
        std::fs::hard_link(keys.join(keyfile::VERIFYING_KEY_FILE), &retired_pub)
            .with_context(|| format!("keeping the old public key as {}", retired_pub.display()))?;
    }
    if next_key.exists() {
        std::fs::rename(&next_key, keys.join(keyfile::SIGNING_KEY_FILE))
            .context("installing the new private key")?;
    }
    std::fs::rename(
        keys.join(keyfile::NEXT_VERIFYING_KEY_FILE),
        keys.join(keyfile::VERIFYING_KEY_FILE),
    )
    .context("installing the new public key")?;
    let new = keyfile::load_verifying_key(&keys.join(keyfile::VERIFYING_KEY_FILE))?;
    println!(
        "record-signing key rotated: now {}; the old key {} is in {}",
        new.id(),
        old.id(),
        retired.display()
    );
    Ok(())
}

/// The id of the member whose node directory `dir` is, once it has joined (rotation and
/// renewal make sense only then).
fn joined_member(dir: &Path) -> anyhow::Result<MemberId> {
    if !dir.join("node.toml").exists() {
        bail!(
            "{} has not joined a consortium yet (no node.toml); run tfx member join first",
            dir.display()
        );
    }
    let bytes = read_limited(&dir.join("join-request.json"), ONBOARDING_FILE_BYTES_MAX)?;
    Ok(JoinRequest::parse(&bytes)?.1)
}

/// `tfx member renew`: a CSR for this node's existing TLS key, signed off by its record-signing
/// key, for the consortium operator's `tfx member approve`. Renew well before expiry
/// (`tfx roster show` on the operator's side warns 30 days ahead).
pub fn renew(dir: &Path) -> anyhow::Result<()> {
    let id = joined_member(dir)?;
    let keys = dir.join("keys");
    let csr = pki::renewal_csr(&keys, &id).context("making the renewal CSR")?;
    let key = keyfile::load_signing_key(&keys.join(keyfile::SIGNING_KEY_FILE))?;
    let request = RenewalRequest::new(&id, csr, &key);
    let path = dir.join("renew-request.json");
    crate::record::replace_file(&path, serde_json::to_string_pretty(&request)?.as_bytes())?;
    let current = MemberCert::parse_pem(&std::fs::read_to_string(dir.join(pki::TLS_CERT_FILE))?)?;
    println!(
        "{id}: renewal request {} for the same TLS key (current certificate: {} days left)",
        path.display(),
        current.days_left(tfx_node::clock::now())
    );
    println!("  send it to the consortium operator, then install the bundle with tfx member join --dir {} BUNDLE", dir.display());
    Ok(())
}

/// `tfx member rotate-key`: a new record-signing key beside the current one and a rotation
/// request signed by both, for the consortium operator's `tfx member approve`.
pub fn rotate_key(dir: &Path) -> anyhow::Result<()> {
    let id = joined_member(dir)?;
    let keys = dir.join("keys");
    let request_path = dir.join("rotate-request.json");
    if keys.join(keyfile::NEXT_SIGNING_KEY_FILE).exists() {
        bail!("a key rotation is already pending: send {} to the consortium operator, then install the bundle", request_path.display());
    }
    let old = keyfile::load_signing_key(&keys.join(keyfile::SIGNING_KEY_FILE))?;
    keyfile::generate_signing_key_as(
        &keys,
        keyfile::NEXT_SIGNING_KEY_FILE,
        keyfile::NEXT_VERIFYING_KEY_FILE,
    )?;
    let new = keyfile::load_signing_key(&keys.join(keyfile::NEXT_SIGNING_KEY_FILE))?;
    let request = RotationRequest::new(&id, &old, &new);
    crate::record::replace_file(
        &request_path,
        serde_json::to_string_pretty(&request)?.as_bytes(),
    )?;
    println!(
        "{id}: new record-signing key {} generated beside the current {}",
        new.key_id(),
        old.key_id()
    );
    println!(
        "  rotation request {} — send it to the consortium operator",
        request_path.display()
    );
    println!("  keep signing with the current key until `tfx member join --dir {} BUNDLE` installs the result", dir.display());
    Ok(())
}

/// Writes the verified material. Everything was checked before the first write; files are
/// replaced atomically and node.toml — the mark of an installed node — comes last, so a first
/// join that failed halfway (disk full, say) is simply run again.
fn install(
    dir: &Path,
    bundle: &JoinBundle,
    versions: &[Vec<u8>],
    cert: &MemberCert,
    id: &MemberId,
    port: &str,
    secret: Option<&[u8]>,
) -> anyhow::Result<()> {
    let roster_dir = dir.join("roster");
    std::fs::create_dir_all(&roster_dir).context("creating roster/")?;
    let ca_der = MemberCert::ca_der_from_pem(&bundle.ca_cert_pem)?;
    crate::record::replace_file(
        &dir.join(pki::CA_CERT_FILE),
        keyfile::pem_encode("CERTIFICATE", &ca_der).as_bytes(),
    )?;
    crate::record::replace_file(&dir.join(pki::TLS_CERT_FILE), cert.pem.as_bytes())?;
    crate::record::replace_file(
        &dir.join("genesis.sha256"),
        format!("{}\n", bundle.genesis).as_bytes(),
    )?;
    for (i, v) in versions.iter().enumerate() {
        crate::record::replace_file(&roster_file(&roster_dir, i as u64 + 1), v)?;
    }
    let secret_line = match secret {
        Some(secret) => {
            install_secret(dir, secret)?;
            format!(
                "pseudonym_secret = \"keys/{}\"\n",
                sealed::PSEUDONYM_SECRET_FILE
            )
        }
        None => String::new(),
    };
    let config = format!(
        "# tfx-node configuration for {id}, written by `tfx member join`.\n\
         # Paths are relative to this file. Every setting, its default and its bounds:\n\
         # deploy/node.example.toml. Run with `tfx-node --config node.toml`.\n\n\
         [member]\nid = \"{id}\"\n\n\
         [paths]\ndata = \"data\"\nrecord_signing_key = \"keys/{}\"\ntls_key = \"keys/{}\"\n\
         tls_cert = \"{}\"\nca_cert = \"{}\"\nroster = \"roster\"\ngenesis = \"genesis.sha256\"\n{secret_line}\n\
         [network]\nlisten = \"0.0.0.0:{port}\"\n",
        keyfile::SIGNING_KEY_FILE,
        pki::TLS_KEY_FILE,
        pki::TLS_CERT_FILE,
        pki::CA_CERT_FILE,
    );
    write_new(&dir.join("node.toml"), config.as_bytes())
}

/// An update bundle must extend exactly what this node installed: the same CA, every installed
/// roster version byte for byte, and at least one newer version. An older or foreign bundle is
/// refused before anything is written.
fn check_extends_installed(dir: &Path, versions: &[Vec<u8>], ca_der: &[u8]) -> anyhow::Result<()> {
    let installed_ca =
        MemberCert::ca_der_from_pem(&std::fs::read_to_string(dir.join(pki::CA_CERT_FILE))?)?;
    if installed_ca != ca_der {
        bail!("the bundle's CA is not the CA this node joined with");
    }
    check_extends_installed_roster(dir, versions)
}

/// `tfx roster install`: gives a joined node (stopped or not: a running node reads its roster
/// directory only at start, and otherwise learns newer versions from peers) roster versions a
/// governor signed, after verifying the whole chain from the node's genesis and that it extends
/// what is installed. This is how a newly approved roster enters the network: once one node
/// has it, every peer adopts it through sync.
pub fn install_roster(dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    joined_member(dir)?;
    let genesis = read_genesis(&dir.join("genesis.sha256"))?;
    let versions = files
        .iter()
        .map(|f| read_limited(f, tfx_protocol::limits::ROSTER_BYTES_MAX))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let roster = verify_chain(&genesis, &versions)
        .context("verifying the roster chain from this node's genesis")?;
    check_extends_installed_roster(dir, &versions)?;
    let roster_dir = dir.join("roster");
    write_missing_versions(&roster_dir, &versions)?;
    println!(
        "installed roster up to v{} in {}",
        roster.version,
        roster_dir.display()
    );
    Ok(())
}

fn check_extends_installed_roster(dir: &Path, versions: &[Vec<u8>]) -> anyhow::Result<()> {
    let installed = read_roster_chain(&dir.join("roster"))?;
    if versions.len() <= installed.len() {
        bail!(
            "the bundle's roster v{} is not newer than the installed v{}",
            versions.len(),
            installed.len()
        );
    }
    if let Some(i) = installed.iter().zip(versions).position(|(a, b)| a != b) {
        bail!(
            "the bundle's roster v{} differs from the installed one",
            i + 1
        );
    }
    Ok(())
}

/// Writes the versions not yet in `roster_dir` (versions[i] is v(i+1)); existing files, which
/// the caller checked are identical, are left alone.
fn write_missing_versions(roster_dir: &Path, versions: &[Vec<u8>]) -> anyhow::Result<()> {
    for (i, v) in versions.iter().enumerate() {
        let path = roster_file(roster_dir, i as u64 + 1);
        if !path.exists() {
            write_new(&path, v)?;
        }
    }
    Ok(())
}
