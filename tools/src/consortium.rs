//! The consortium operator's side: `tfx consortium init`, `tfx member approve` and the
//! `tfx roster` commands, over a consortium directory:
//!
//! ```text
//! DIR/ca.key, ca.crt                the consortium CA (key 0600, stays here)
//! DIR/genesis.sha256                the trust anchor: hash of roster version 1
//! DIR/governors/<id>/               governor keys generated here (dev and single-operator setups)
//! DIR/roster/v000001.tfxroster …    adopted roster versions (each valid on its predecessor)
//! DIR/roster/pending/v…​.tfxroster   a proposed next version still collecting signatures
//! DIR/issued/<id>.crt               certificates issued to members
//! DIR/pseudonym.secret              the consortium pseudonym secret (0600), sealed into the
//!                                    join bundles of issuing members only
//! DIR/policy.toml                    the starting data-minimization policy (edit, then
//!                                    `tfx policy sign`); DIR/policy/ holds signed versions
//! ```
//!
//! A proposal becomes the current roster only once it verifies: threshold signatures from the
//! current version's governors. Nothing is adopted half-signed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tfx_node::keyfile;
use tfx_node::pki::{self, Ca, MemberCert};
use tfx_protocol::ids::sha256;
use tfx_protocol::keys::{SigningKey, VerifyingKey};
use tfx_protocol::roster::{
    verify_chain, Governor, KeyWindow, Member, Revocation, Roster, SignedRoster,
};
use tfx_protocol::{MemberId, Timestamp};

use crate::onboarding::{
    parse_hash, request_format, JoinBundle, JoinRequest, RenewalRequest, RotationRequest,
    JOIN_BUNDLE_FORMAT, ONBOARDING_FILE_BYTES_MAX, RENEWAL_REQUEST_FORMAT, ROTATION_REQUEST_FORMAT,
};
use crate::record::{read_limited, write_new};
use crate::sealed::{self, SealedSecret};

/// A consortium directory on the operator's machine.
pub struct ConsortiumDir {
    pub root: PathBuf,
}

impl ConsortiumDir {
    pub fn new(root: &Path) -> Self {
        ConsortiumDir {
            root: root.to_path_buf(),
        }
    }
    fn roster_dir(&self) -> PathBuf {
        self.root.join("roster")
    }
    fn pending_dir(&self) -> PathBuf {
        self.root.join("roster/pending")
    }
    pub fn governor_dir(&self, id: &MemberId) -> PathBuf {
        self.root.join("governors").join(id.as_str())
    }
    fn genesis(&self) -> anyhow::Result<[u8; 32]> {
        let path = self.root.join("genesis.sha256");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        parse_hash(&text)
    }

    /// Every adopted version, in order, verified from the genesis; returns their bytes and the
    /// current roster. A pending proposal for the next version that has meanwhile collected
    /// enough signatures is adopted first.
    pub fn chain(&self) -> anyhow::Result<(Vec<Vec<u8>>, Roster)> {
        let genesis = self.genesis()?;
        let mut versions = Vec::new();
        for v in 1.. {
            let path = tfx_node::node::roster_file(&self.roster_dir(), v);
            if !path.exists() {
                break;
            }
            versions.push(read_limited(&path, tfx_protocol::limits::ROSTER_BYTES_MAX)?);
        }
        let current = match versions.is_empty() {
            true => None,
            false => Some(
                verify_chain(&genesis, &versions)
                    .context("verifying the consortium's roster chain")?,
            ),
        };
        let next = current.as_ref().map_or(1, |r| r.version + 1);
        let pending = tfx_node::node::roster_file(&self.pending_dir(), next);
        if pending.exists() {
            let bytes = read_limited(&pending, tfx_protocol::limits::ROSTER_BYTES_MAX)?;
            let proposal = SignedRoster::decode(&bytes)?;
            let valid = match &current {
                None => proposal.verify_genesis(&genesis),
                Some(c) => proposal.verify_successor(c),
            };
            if valid.is_ok() {
                let adopted = tfx_node::node::roster_file(&self.roster_dir(), next);
                std::fs::rename(&pending, &adopted)
                    .with_context(|| format!("adopting {}", adopted.display()))?;
                println!("adopted roster v{next} (signed by enough governors)");
                versions.push(bytes);
                return Ok((versions, proposal.roster));
            }
        }
        match current {
            Some(r) => Ok((versions, r)),
            None if pending.exists() => {
                bail!("roster v1 is not signed by enough governors yet: tfx roster sign --key GOVERNOR_KEY {}", pending.display())
            }
            None => bail!(
                "{}: no roster (is this a consortium directory? run tfx consortium init)",
                self.root.display()
            ),
        }
    }

    /// Proposes the next roster version (made by `make` unless a matching proposal is pending —
    /// `is_this` recognises it), adds the local governors' signatures, and adopts it if that
    /// reaches the threshold. Returns whether it was adopted; otherwise says who must sign.
    fn propose(
        &self,
        current: &Roster,
        change: &str,
        is_this: impl Fn(&Roster) -> bool,
        make: impl FnOnce() -> anyhow::Result<Roster>,
    ) -> anyhow::Result<bool> {
        let next_version = current.version + 1;
        let pending_path = tfx_node::node::roster_file(&self.pending_dir(), next_version);
        let built_hash_path = pending_path.with_extension("built.sha256");
        let mut proposal = if pending_path.exists() {
            let p = SignedRoster::decode(&read_limited(
                &pending_path,
                tfx_protocol::limits::ROSTER_BYTES_MAX,
            )?)?;
            if !is_this(&p.roster) || p.roster.previous != Some(current.hash()) {
                bail!("{} is a pending proposal for another change; have it signed or remove it first", pending_path.display());
            }
            // Sign only the payload this tool built: other governors add signatures, never edits.
            let built = std::fs::read_to_string(&built_hash_path)
                .ok()
                .and_then(|h| parse_hash(&h).ok());
            if built != Some(sha256(&p.payload)) {
                bail!(
                    "{} is not the proposal this consortium directory built (its payload changed); \
                     refusing to sign it. Remove it to propose afresh",
                    pending_path.display()
                );
            }
            p
        } else {
            let p = SignedRoster::new(make()?)?;
            write_new(&pending_path, &p.encode())?;
            crate::record::replace_file(
                &built_hash_path,
                format!("{}\n", hex::encode(sha256(&p.payload))).as_bytes(),
            )?;
            p
        };
        for key in self.local_governor_keys(current)? {
            proposal.sign(&key);
        }
        crate::record::replace_file(&pending_path, &proposal.encode())?;
        if let Err(e) = proposal.verify_successor(current) {
            println!("roster v{next_version} ({change}) proposed: {e}");
            println!(
                "  each further governor runs: tfx roster sign --key GOVERNOR_KEY {}",
                pending_path.display()
            );
            return Ok(false);
        }
        self.chain()?; // adopts it
        let _ = std::fs::remove_file(&built_hash_path);
        Ok(true)
    }

    /// The pseudonym secret sealed to the member that sent `request`, if its roles issue
    /// records; `None` for risk-warning and auditor members.
    fn seal_secret(
        &self,
        request: &JoinRequest,
        id: &MemberId,
    ) -> anyhow::Result<Option<SealedSecret>> {
        if !sealed::receives_secret(&request.roles) {
            return Ok(None);
        }
        let path = self.root.join(sealed::PSEUDONYM_SECRET_FILE);
        if !path.exists() {
            bail!(
                "{id} issues records and needs the consortium pseudonym secret, but {} does not exist; create it once with `tfx key pseudonym-secret --out {}`",
                path.display(),
                path.display()
            );
        }
        let secret = keyfile::load_secret(&path).context("loading the pseudonym secret")?;
        let ca = Ca::load(&self.root).context("loading the consortium CA, which signs the seal")?;
        let sealed = sealed::seal(
            &secret,
            &request.delivery_public()?,
            id,
            &self.genesis()?,
            |m| Ok(ca.sign(m)?),
        )?;
        Ok(Some(sealed))
    }

    /// Writes the bundle for `id`, a member of the current roster; `secret` is the sealed
    /// pseudonym secret for join bundles of issuing members.
    fn write_bundle(
        &self,
        versions: &[Vec<u8>],
        id: &MemberId,
        out: &Path,
        secret: Option<SealedSecret>,
    ) -> anyhow::Result<()> {
        let cert_path = self.root.join("issued").join(format!("{id}.crt"));
        let bundle = JoinBundle {
            format: JOIN_BUNDLE_FORMAT.into(),
            member: id.to_string(),
            genesis: hex::encode(self.genesis()?),
            ca_cert_pem: std::fs::read_to_string(self.root.join(pki::CA_CERT_FILE))
                .context("reading ca.crt")?,
            member_cert_pem: std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?,
            rosters: versions.iter().map(hex::encode).collect(),
            pseudonym_secret: secret,
        };
        write_new(out, serde_json::to_string_pretty(&bundle)?.as_bytes())?;
        println!("bundle for {id} written to {}", out.display());
        println!(
            "  send it to {id}; it runs: tfx member join --dir NODE_DIR --genesis {} {}",
            bundle.genesis,
            out.display()
        );
        Ok(())
    }

    /// The governor keys held in this directory that govern `roster`.
    pub fn local_governor_keys(&self, roster: &Roster) -> anyhow::Result<Vec<SigningKey>> {
        let mut keys = Vec::new();
        for g in &roster.governors {
            let path = self.governor_dir(&g.id).join(keyfile::SIGNING_KEY_FILE);
            if path.exists() {
                let key = keyfile::load_signing_key(&path)
                    .with_context(|| format!("loading governor key of {}", g.id))?;
                if key.verifying_key() == &g.key {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }
}

/// The data-minimization policy a new consortium starts from (DESIGN §8): the regulators see
/// full records, the risk-warning member pseudonyms and bands only, auditors envelopes only.
pub const STARTING_POLICY: &str = include_str!("../../deploy/policy.example.toml");

/// `--governor ID` or `--governor ID=PUBLIC_KEY_FILE`.
pub fn parse_governor(s: &str) -> Result<(MemberId, Option<PathBuf>), String> {
    let (id, file) = match s.split_once('=') {
        Some((id, f)) => (id, Some(PathBuf::from(f))),
        None => (s, None),
    };
    Ok((MemberId::new(id).map_err(|e| e.to_string())?, file))
}

pub struct InitArgs {
    pub dir: PathBuf,
    pub name: String,
    pub governors: Vec<(MemberId, Option<PathBuf>)>,
    pub threshold: Option<u32>,
    pub witness_quorum: Option<u32>,
}

pub fn init(a: InitArgs) -> anyhow::Result<()> {
    if a.dir.exists()
        && std::fs::read_dir(&a.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; choose a new directory",
            a.dir.display()
        );
    }
    if a.governors.is_empty() {
        bail!("at least one --governor ID is required (the members whose keys approve roster changes)");
    }
    let n = a.governors.len() as u32;
    let threshold = a.threshold.unwrap_or(n / 2 + 1);
    if threshold == 0 || threshold > n {
        bail!("--threshold {threshold} must be between 1 and the {n} governors");
    }
    if let Some(q) = a.witness_quorum {
        if !(1..=tfx_protocol::limits::ROSTER_MEMBERS_MAX as u32).contains(&q) {
            bail!(
                "--witness-quorum {q} must be between 1 and {}",
                tfx_protocol::limits::ROSTER_MEMBERS_MAX
            );
        }
    }
    crate::key::create_private_dir(&a.dir)?;
    let cd = ConsortiumDir::new(&a.dir);
    let ca = Ca::create(&a.dir, &a.name).context("creating the consortium CA")?;
    let mut governors = Vec::new();
    for (id, public) in &a.governors {
        let key = match public {
            Some(file) => {
                keyfile::load_verifying_key(file).with_context(|| format!("governor {id}"))?
            }
            None => {
                let dir = cd.governor_dir(id);
                crate::key::create_private_dir(&dir)?;
                keyfile::generate_signing_key(&dir)
                    .with_context(|| format!("generating governor key of {id}"))?
            }
        };
        governors.push(Governor {
            id: id.clone(),
            key,
        });
    }
    let roster = Roster {
        consortium: a.name.clone(),
        version: 1,
        previous: None,
        issued_at: tfx_node::clock::now(),
        governors,
        threshold,
        members: Vec::new(),
        revocations: Vec::new(),
        ca_fingerprint: sha256(ca.cert_der()),
        witness_quorum: a.witness_quorum,
    };
    let genesis = roster.hash();
    let mut signed = SignedRoster::new(roster)?;
    for key in cd.local_governor_keys(&signed.roster)? {
        signed.sign(&key);
    }
    std::fs::create_dir_all(cd.pending_dir()).context("creating roster directory")?;
    write_new(
        &a.dir.join("genesis.sha256"),
        format!("{}\n", hex::encode(genesis)).as_bytes(),
    )?;
    let adopted = signed.verify_genesis(&genesis).is_ok();
    let target = if adopted {
        cd.roster_dir()
    } else {
        cd.pending_dir()
    };
    write_new(&tfx_node::node::roster_file(&target, 1), &signed.encode())?;
    write_new(&a.dir.join("policy.toml"), STARTING_POLICY.as_bytes())?;
    keyfile::generate_secret(&a.dir.join(sealed::PSEUDONYM_SECRET_FILE))
        .context("generating the consortium pseudonym secret")?;
    println!("consortium {:?} created in {}", a.name, a.dir.display());
    println!(
        "  CA certificate   {}",
        a.dir.join(pki::CA_CERT_FILE).display()
    );
    println!(
        "  genesis roster   v1, {} governors, threshold {threshold}",
        n
    );
    println!(
        "  genesis hash     {}   (publish this: members check their bundle against it)",
        hex::encode(genesis)
    );
    println!(
        "  pseudonym secret {}   (0600; sealed into issuing members' join bundles, never to risk-warning or auditor members)",
        a.dir.join(sealed::PSEUDONYM_SECRET_FILE).display()
    );
    if !adopted {
        println!("  roster v1 needs {threshold} governor signatures: tfx roster sign --key GOVERNOR_KEY {}", tfx_node::node::roster_file(&cd.pending_dir(), 1).display());
    }
    println!(
        "  starting policy  {}   (who sees which fields; review, then: tfx policy sign --consortium {} {})",
        a.dir.join("policy.toml").display(),
        a.dir.display(),
        a.dir.join("policy.toml").display()
    );
    println!("next: each new member runs `tfx member init`, then you run `tfx member approve --consortium {} REQUEST --out BUNDLE`", a.dir.display());
    Ok(())
}

pub struct ApproveArgs {
    pub consortium: PathBuf,
    pub request: PathBuf,
    pub out: PathBuf,
    pub valid_days: u32,
    /// For key rotations: how long the old key keeps signing after the new one is listed.
    pub overlap_hours: u32,
}

/// Issues the certificate and proposes the next roster version with the new member; writes the
/// bundle once the proposal carries enough governor signatures. Idempotent: run again after
/// other governors have signed (`tfx roster sign`), it adopts the proposal and writes the bundle.
pub fn approve(a: ApproveArgs) -> anyhow::Result<bool> {
    let cd = ConsortiumDir::new(&a.consortium);
    let (versions, current) = cd.chain()?;
    let bytes = read_limited(&a.request, ONBOARDING_FILE_BYTES_MAX)?;
    match request_format(&bytes)?.as_str() {
        ROTATION_REQUEST_FORMAT => return rotate(&cd, &current, &bytes, &a),
        RENEWAL_REQUEST_FORMAT => return renew(&cd, &current, &bytes, &a),
        _ => {}
    }
    let (request, id, record_key) =
        JoinRequest::parse(&bytes).with_context(|| format!("checking {}", a.request.display()))?;
    let cert_path = a.consortium.join("issued").join(format!("{id}.crt"));
    if let Some(entry) = current.member(&id) {
        // Admitted already (this is the re-run after signing): hand out the bundle, but only
        // for exactly the keys this request carries.
        if !admitted_as_requested(entry, &request, &record_key, &cert_path) {
            bail!(
                "{id} is already a member (roster v{}) with other keys or settings",
                current.version
            );
        }
        let secret = cd.seal_secret(&request, &id)?;
        cd.write_bundle(&versions, &id, &a.out, secret)?;
        return Ok(true);
    }
    // Checked before anything is proposed: an issuer cannot be admitted without its secret.
    let secret = cd.seal_secret(&request, &id)?;
    let change = format!("admitting {id}");
    let proposed = cd.propose(
        &current,
        &change,
        |p| p.member(&id).is_some(),
        || {
            let ca = Ca::load(&a.consortium).context("loading the consortium CA")?;
            let cert = ca
                .issue(&request.tls_csr_pem, &id, a.valid_days)
                .context("issuing the member certificate")?;
            std::fs::create_dir_all(a.consortium.join("issued")).context("creating issued/")?;
            crate::record::replace_file(&cert_path, cert.pem.as_bytes())?;
            Ok(admit(&current, &request, &id, record_key, &cert))
        },
    )?;
    if !proposed {
        println!("  then run this command again to write the bundle");
        return Ok(false);
    }
    let (versions, adopted) = cd.chain()?; // adopts the now fully signed proposal
                                           // The proposal may have been built from an earlier request for this id: the secret goes
                                           // only to the keys and roles the adopted roster actually lists.
    let entry = adopted
        .member(&id)
        .with_context(|| format!("roster v{} does not list {id}", adopted.version))?;
    if !admitted_as_requested(entry, &request, &record_key, &cert_path) {
        bail!(
            "roster v{} admits {id} with other keys or settings than {}: no bundle written for it",
            adopted.version,
            a.request.display()
        );
    }
    println!("{id} admitted in roster v{}", adopted.version);
    cd.write_bundle(&versions, &id, &a.out, secret)?;
    Ok(true)
}

/// Whether the roster entry is exactly what `request` asked for: its record-signing key, the
/// certificate issued for its CSR, its roles and endpoint.
fn admitted_as_requested(
    entry: &Member,
    request: &JoinRequest,
    record_key: &VerifyingKey,
    cert_path: &Path,
) -> bool {
    let issued = std::fs::read_to_string(cert_path)
        .ok()
        .and_then(|p| MemberCert::parse_pem(&p).ok());
    entry.keys.iter().any(|k| k.key == *record_key)
        && issued.is_some_and(|c| c.fingerprint == entry.tls_fingerprint)
        && entry.roles == request.roles
        && entry.endpoint == request.endpoint
}

/// A key rotation: the next roster version closes the old key's window `overlap_hours` from
/// now and lists the new key from now. Records signed with the old key inside its window keep
/// verifying for good. Idempotent like the rest of `approve`.
fn rotate(
    cd: &ConsortiumDir,
    current: &Roster,
    bytes: &[u8],
    a: &ApproveArgs,
) -> anyhow::Result<bool> {
    let (id, old, new) = RotationRequest::parse(bytes)
        .with_context(|| format!("checking {}", a.request.display()))?;
    let now = tfx_node::clock::now();
    let member = active_member(current, &id, now)?;
    if member.keys.iter().any(|k| k.key == new) {
        let (versions, _) = cd.chain()?;
        println!(
            "{id}'s new key {} is listed (roster v{})",
            new.id(),
            current.version
        );
        cd.write_bundle(&versions, &id, &a.out, None)?;
        return Ok(true);
    }
    // Only the member's current, open-ended key may ask: a key already rotated out (still inside
    // its overlap window) must not be able to rotate in a key of its holder's choosing.
    if !member
        .keys
        .iter()
        .any(|k| k.key == old && k.valid_until.is_none() && k.contains(now))
    {
        bail!(
            "{id}'s key {} is not its current record-signing key (rotated out, or not yet valid)",
            old.id()
        );
    }
    if member.keys.len() >= tfx_protocol::limits::MEMBER_KEYS_MAX {
        bail!(
            "{id} already lists {} keys (max {}); drop expired ones first",
            member.keys.len(),
            tfx_protocol::limits::MEMBER_KEYS_MAX
        );
    }
    let until = Timestamp(now.0.saturating_add(u64::from(a.overlap_hours) * 3_600_000));
    let change = format!("rotating {id}'s record-signing key");
    let adopted = cd.propose(
        current,
        &change,
        |p| {
            p.member(&id)
                .is_some_and(|m| m.keys.iter().any(|k| k.key == new))
        },
        || {
            let mut next = successor(current, now);
            let m = next
                .members
                .iter_mut()
                .find(|m| m.id == id)
                .context("member vanished")?;
            for k in m.keys.iter_mut().filter(|k| k.key == old) {
                k.valid_until = Some(k.valid_until.map_or(until, |u| u.min(until)));
            }
            m.keys.push(KeyWindow {
                key: new,
                valid_from: next.issued_at,
                valid_until: None,
            });
            Ok(next)
        },
    )?;
    if !adopted {
        println!("  then run this command again to write the bundle");
        return Ok(false);
    }
    let (versions, _) = cd.chain()?;
    println!(
        "{id}'s key rotated in roster v{}: old key {} signs until {}",
        current.version + 1,
        old.id(),
        until.to_rfc3339()
    );
    cd.write_bundle(&versions, &id, &a.out, None)?;
    Ok(true)
}

/// A certificate renewal: a new certificate for the member's **same** TLS key (checked against
/// the certificate issued before), and a roster version listing its fingerprint. Idempotent.
fn renew(
    cd: &ConsortiumDir,
    current: &Roster,
    bytes: &[u8],
    a: &ApproveArgs,
) -> anyhow::Result<bool> {
    let (request, id, key) = RenewalRequest::parse(bytes)
        .with_context(|| format!("checking {}", a.request.display()))?;
    let now = tfx_node::clock::now();
    let member = active_member(current, &id, now)?;
    if !member
        .keys
        .iter()
        .any(|k| k.key == key && k.valid_until.is_none() && k.contains(now))
    {
        bail!("the renewal request is not signed by {id}'s current record-signing key");
    }
    let cert_path = a.consortium.join("issued").join(format!("{id}.crt"));
    let issued = MemberCert::parse_pem(
        &std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?,
    )?;
    // Pending renewals live apart from issued certificates, so no member id can collide with them.
    let pending_dir = a.consortium.join("issued/pending");
    std::fs::create_dir_all(&pending_dir).context("creating issued/pending/")?;
    let pending_cert = pending_dir.join(format!("{id}.crt"));
    if pending_cert.exists() {
        let renewed = MemberCert::parse_pem(&std::fs::read_to_string(&pending_cert)?)?;
        if renewed.fingerprint == member.tls_fingerprint {
            // The re-run after the other governors signed: the roster now lists the new one.
            return finish_renewal(cd, &pending_cert, &cert_path, &id, &a.out);
        }
    }
    if issued.fingerprint != member.tls_fingerprint {
        bail!(
            "{} does not match {id}'s roster entry; the consortium directory is inconsistent",
            cert_path.display()
        );
    }
    let change = format!("renewing {id}'s certificate");
    let adopted = cd.propose(current, &change, |p| p.member(&id).is_some_and(|m| m.tls_fingerprint != member.tls_fingerprint), || {
        let ca = Ca::load(&a.consortium).context("loading the consortium CA")?;
        let cert = ca.issue(&request.tls_csr_pem, &id, a.valid_days).context("issuing the renewed certificate")?;
        if cert.public_key_der != issued.public_key_der {
            bail!("the renewal CSR is for a different TLS key; renewal keeps the key (a new key means a new join)");
        }
        crate::record::replace_file(&pending_cert, cert.pem.as_bytes())?;
        let mut next = successor(current, now);
        let m = next.members.iter_mut().find(|m| m.id == id).context("member vanished")?;
        m.tls_fingerprint = cert.fingerprint;
        Ok(next)
    })?;
    if !adopted {
        println!("  then run this command again to write the bundle");
        return Ok(false);
    }
    finish_renewal(cd, &pending_cert, &cert_path, &id, &a.out)
}

/// Makes the renewed certificate the issued one and writes the update bundle.
fn finish_renewal(
    cd: &ConsortiumDir,
    renewed: &Path,
    issued: &Path,
    id: &MemberId,
    out: &Path,
) -> anyhow::Result<bool> {
    std::fs::rename(renewed, issued).with_context(|| format!("installing {}", issued.display()))?;
    let (versions, roster) = cd.chain()?;
    let days =
        MemberCert::parse_pem(&std::fs::read_to_string(issued)?)?.days_left(tfx_node::clock::now());
    println!(
        "{id}'s certificate renewed in roster v{} ({days} days left)",
        roster.version
    );
    cd.write_bundle(&versions, id, out, None)?;
    Ok(true)
}

/// The skeleton of the version after `current`: same content, next number, chained by hash,
/// issued at `now` (never before `current`). Every roster change starts from it.
fn successor(current: &Roster, now: Timestamp) -> Roster {
    let mut next = current.clone();
    next.version += 1;
    next.previous = Some(current.hash());
    next.issued_at = Timestamp(now.0.max(current.issued_at.0));
    next
}

/// A member of `current` that is not revoked at `now` (rotations and renewals need one).
fn active_member<'a>(
    current: &'a Roster,
    id: &MemberId,
    now: Timestamp,
) -> anyhow::Result<&'a Member> {
    let member = current
        .member(id)
        .with_context(|| format!("{id} is not a member"))?;
    if !current.is_active(id, now) {
        bail!("{id} is revoked");
    }
    Ok(member)
}

/// The next roster version: `current` plus the requested member.
fn admit(
    current: &Roster,
    request: &JoinRequest,
    id: &MemberId,
    key: VerifyingKey,
    cert: &MemberCert,
) -> Roster {
    let mut next = successor(current, tfx_node::clock::now());
    next.members.push(Member {
        id: id.clone(),
        name: request.name.clone(),
        roles: request.roles.clone(),
        keys: vec![KeyWindow {
            key,
            valid_from: next.issued_at,
            valid_until: None,
        }],
        tls_fingerprint: cert.fingerprint,
        endpoint: request.endpoint.clone(),
    });
    next
}

pub struct RevokeArgs {
    pub consortium: PathBuf,
    pub id: MemberId,
    pub reason: String,
    pub at: Option<Timestamp>,
}

/// `tfx member revoke`: proposes the next roster version revoking `id` from `at` (default now).
/// Its records issued before then keep verifying; from then on its keys verify nothing and its
/// node is refused. Idempotent like `approve`: run again after the other governors have signed.
pub fn revoke(a: RevokeArgs) -> anyhow::Result<bool> {
    let cd = ConsortiumDir::new(&a.consortium);
    let (_, current) = cd.chain()?;
    if current.member(&a.id).is_none() {
        bail!("{} is not a member (roster v{})", a.id, current.version);
    }
    if let Some(r) = current.revocation(&a.id) {
        println!(
            "{} is revoked as of {} (roster v{}): {}",
            a.id,
            r.at.to_rfc3339(),
            current.version,
            r.reason
        );
        return Ok(true);
    }
    let now = tfx_node::clock::now();
    let at = a.at.unwrap_or(now);
    let change = format!("revoking {}", a.id);
    let adopted = cd.propose(
        &current,
        &change,
        |p| p.revocation(&a.id).is_some(),
        || {
            let mut next = successor(&current, now);
            next.revocations.push(Revocation {
                member: a.id.clone(),
                at,
                reason: a.reason.clone(),
            });
            Ok(next)
        },
    )?;
    if adopted {
        println!(
            "{} revoked as of {} in roster v{}",
            a.id,
            at.to_rfc3339(),
            current.version + 1
        );
    } else {
        println!("  then run this command again to confirm");
    }
    Ok(adopted)
}

/// `tfx roster sign`: adds one governor's signature to a roster file in place.
pub fn sign_roster(key: &Path, file: &Path) -> anyhow::Result<()> {
    let key = keyfile::load_signing_key(key).context("loading governor key")?;
    let mut roster =
        SignedRoster::decode(&read_limited(file, tfx_protocol::limits::ROSTER_BYTES_MAX)?)
            .with_context(|| format!("reading {}", file.display()))?;
    if !roster
        .roster
        .governors
        .iter()
        .any(|g| g.key == *key.verifying_key())
        && roster.roster.version == 1
    {
        bail!("key {} is not a governor of this roster", key.key_id());
    }
    let r = &roster.roster;
    println!(
        "signing roster v{} of {:?} (payload {}, previous {})",
        r.version,
        r.consortium,
        hex::encode(sha256(&roster.payload)),
        r.previous.map_or("none".to_string(), hex::encode)
    );
    let govs: Vec<&str> = r.governors.iter().map(|g| g.id.as_str()).collect();
    println!("  governors {} (threshold {}), {} members, {} revocations; review it with: tfx roster show {}",
        govs.join(", "), r.threshold, r.members.len(), r.revocations.len(), file.display());
    roster.sign(&key);
    crate::record::replace_file(file, &roster.encode())?;
    println!(
        "signed roster v{} with key {} ({} signatures now)",
        roster.roster.version,
        key.key_id(),
        roster.signer_ids().len()
    );
    Ok(())
}

/// `tfx roster show`: a readable summary (or JSON) of one roster file or a consortium's current
/// roster, with certificate expiry warnings where the issued certificates are at hand.
pub fn show(path: &Path, as_json: bool) -> anyhow::Result<()> {
    let (roster, issued) = if path.is_dir() {
        (
            ConsortiumDir::new(path).chain()?.1,
            Some(path.join("issued")),
        )
    } else {
        (
            SignedRoster::decode(&read_limited(path, tfx_protocol::limits::ROSTER_BYTES_MAX)?)?
                .roster,
            None,
        )
    };
    let now = tfx_node::clock::now();
    let expiry = |id: &MemberId| -> Option<i64> {
        let pem = std::fs::read_to_string(issued.as_ref()?.join(format!("{id}.crt"))).ok()?;
        MemberCert::parse_pem(&pem).ok().map(|c| c.days_left(now))
    };
    if as_json {
        let members: Vec<_> = roster.members.iter().map(|m| serde_json::json!({
            "id": m.id.as_str(), "name": m.name, "roles": m.roles, "endpoint": m.endpoint,
            "tls_fingerprint": hex::encode(m.tls_fingerprint),
            "keys": m.keys.iter().map(|k| serde_json::json!({"kid": k.key.id().to_string(), "valid_from": k.valid_from.to_rfc3339(), "valid_until": k.valid_until.map(|u| u.to_rfc3339())})).collect::<Vec<_>>(),
            "revoked_at": roster.revocation(&m.id).map(|r| r.at.to_rfc3339()),
            "certificate_days_left": expiry(&m.id),
        })).collect();
        let out = serde_json::json!({
            "consortium": roster.consortium, "version": roster.version, "hash": hex::encode(roster.hash()),
            "issued_at": roster.issued_at.to_rfc3339(), "threshold": roster.threshold,
            "witness_quorum": roster.witness_quorum(),
            "governors": roster.governors.iter().map(|g| serde_json::json!({"id": g.id.as_str(), "kid": g.key.id().to_string()})).collect::<Vec<_>>(),
            "members": members, "ca_fingerprint": hex::encode(roster.ca_fingerprint),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "roster v{} of {:?}  (hash {}, issued {})",
        roster.version,
        roster.consortium,
        hex::encode(roster.hash()),
        roster.issued_at.to_rfc3339()
    );
    let govs: Vec<&str> = roster.governors.iter().map(|g| g.id.as_str()).collect();
    println!(
        "  governors: {} (threshold {}); checkpoints final with {} cosignatures",
        govs.join(", "),
        roster.threshold,
        roster.witness_quorum()
    );
    println!("  {} members:", roster.members.len());
    for m in &roster.members {
        let revoked = roster
            .revocation(&m.id)
            .map(|r| format!("  REVOKED {} ({})", r.at.to_rfc3339(), r.reason))
            .unwrap_or_default();
        let cert = match expiry(&m.id) {
            Some(d) if d < 0 => format!("  certificate EXPIRED {} days ago", -d),
            Some(d) if d <= i64::from(pki::EXPIRY_WARNING_DAYS) => {
                format!("  certificate expires in {d} days: renew now")
            }
            Some(d) => format!("  certificate {d} days left"),
            None => String::new(),
        };
        println!(
            "    {:<20} {:<28} {:<24} {}{revoked}{cert}",
            m.id.as_str(),
            m.roles.join(","),
            m.endpoint,
            m.name
        );
    }
    Ok(())
}

/// `tfx roster verify`: checks a chain of roster files from a trusted genesis hash.
pub fn verify(genesis: &str, files: &[PathBuf]) -> anyhow::Result<bool> {
    let genesis = parse_hash(genesis)?;
    let versions = files
        .iter()
        .map(|f| read_limited(f, tfx_protocol::limits::ROSTER_BYTES_MAX))
        .collect::<anyhow::Result<Vec<_>>>()?;
    match verify_chain(&genesis, &versions) {
        Ok(r) => {
            println!(
                "roster chain verified: {} versions, current v{} with {} members",
                versions.len(),
                r.version,
                r.members.len()
            );
            Ok(true)
        }
        Err(e) => {
            println!("roster chain NOT verified: {e}");
            Ok(false)
        }
    }
}
