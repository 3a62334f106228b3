//! `tfx record`: offline validation, signing, verification and inspection of record files.
//! Verification needs only `tfx-protocol` — no node, network or database.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;
use tfx_node::keyfile;
use tfx_protocol::cose::{self, CONTENT_TYPE_RECORD};
use tfx_protocol::derive::{PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::disclosure::Disclosure;
use tfx_protocol::domain::Date;
use tfx_protocol::limits::{ENVELOPE_BYTES_MAX, RECORD_FILE_BYTES_MAX, RECORD_JSON_BYTES_MAX};
use tfx_protocol::record::{
    seal, verify_record, Header, KeySet, RecordFile, SealParams, VerifyError,
};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{LogIndex, MemberId, RecordId, Timestamp};

use crate::Outcome;

#[derive(Subcommand)]
pub enum RecordCommand {
    /// Check a JSON record against its kind's fields and rules, without signing it.
    #[command(after_help = "Example:\n  tfx record validate examples/records/credit.json")]
    Validate {
        /// JSON record file.
        file: PathBuf,
    },
    /// Seal a JSON record into a signed record file (envelope + disclosures).
    #[command(
        after_help = "Example:\n  tfx record sign --key keys/record-signing.key --origin bank-a --seq 0 \\\n      \
        --in examples/records/credit.json --out credit.tfxr\n\n\
        Normally the node assigns sequence numbers as it appends; signing by hand is for tests,\n\
        test vectors and offline exchanges."
    )]
    Sign(SignArgs),
    /// Verify a record file: the origin's signature, then every disclosure against the header.
    #[command(
        after_help = "Example:\n  tfx record verify --pub keys/record-signing.pub credit.tfxr\n\n\
        Exit status: 0 verified, 1 verification failed, 2 error (e.g. unreadable file)."
    )]
    Verify {
        /// The origin's record-signing public key (SPKI PEM).
        #[arg(long = "pub")]
        public: PathBuf,
        /// The member the key belongs to. Without it the key is trusted for whatever origin the
        /// record claims; with it, a record claiming another origin fails.
        #[arg(long)]
        origin: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Record file.
        file: PathBuf,
    },
    /// Submit a JSON record to a running node, which validates, signs and appends it; returns
    /// once the append is durable.
    #[command(
        after_help = "Example:\n  tfx record submit --node members/bank-a examples/records/credit.json"
    )]
    Submit {
        /// The node's member directory (holding node.toml).
        #[arg(long)]
        node: PathBuf,
        /// JSON record file.
        file: PathBuf,
    },
    /// Fetch one record from a running node by id: its fields as this node holds them, after
    /// re-verifying the origin's signature.
    #[command(
        after_help = "Examples:\n  tfx record get --node members/bank-a 3f2a…\n  tfx record get --node members/pbc-chengdu --wait 10 3f2a…   # until it has arrived"
    )]
    Get {
        #[arg(long)]
        node: PathBuf,
        #[arg(long)]
        json: bool,
        /// Wait up to this many seconds for the record to arrive (from a peer, or the node's
        /// own durable append) instead of failing at once when the node does not hold it yet.
        #[arg(long, value_name = "SECONDS", default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=86_400))]
        wait: u64,
        /// Record id (64 hex digits).
        id: String,
    },
    /// List records a running node holds, by subject, kind and issue time.
    #[command(
        after_help = "Example:\n  tfx record query --node members/pbc-chengdu --kind credit --since 2026-01-01T00:00:00Z"
    )]
    Query(crate::client::QueryArgs),
    /// Show a record file's header and disclosures, with hex for checking by any COSE library.
    /// Does not verify the signature (use `tfx record verify`).
    #[command(after_help = "Example:\n  tfx record show --json credit.tfxr")]
    Show {
        #[arg(long)]
        json: bool,
        /// Record file.
        file: PathBuf,
    },
}

pub fn run(cmd: RecordCommand) -> anyhow::Result<Outcome> {
    match cmd {
        RecordCommand::Validate { file } => validate(&file),
        RecordCommand::Sign(args) => sign(args),
        RecordCommand::Verify {
            public,
            origin,
            json,
            file,
        } => verify(&public, origin.as_deref(), json, &file),
        RecordCommand::Show { json, file } => show(json, &file),
        RecordCommand::Submit { node, file } => crate::client::submit(&node, &file),
        RecordCommand::Get {
            node,
            json,
            wait,
            id,
        } => crate::client::get(&node, &id, json, Duration::from_secs(wait)),
        RecordCommand::Query(a) => crate::client::query(&a),
    }
}

/// Reads at most `max` bytes of `path`, failing clearly beyond that.
pub fn read_limited(path: &Path, max: usize) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() > max {
        bail!("{}: larger than {max} bytes", path.display());
    }
    Ok(buf)
}

fn validate(file: &Path) -> anyhow::Result<Outcome> {
    let bytes = read_limited(file, RECORD_JSON_BYTES_MAX)?;
    match parse_record_json(&bytes) {
        Ok(body) => {
            println!(
                "{}: valid {} record ({} fields)",
                file.display(),
                body.kind,
                body.fields.len()
            );
            Ok(Outcome::Ok)
        }
        Err(errors) => {
            println!("{}: invalid record", file.display());
            for e in &errors.0 {
                println!("  {e}");
            }
            Ok(Outcome::CheckFailed)
        }
    }
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The origin's record-signing private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// The origin member id (the log this record belongs to).
    #[arg(long)]
    origin: String,
    /// The record's sequence number in the origin's log.
    #[arg(long)]
    seq: u64,
    /// JSON record to seal.
    #[arg(long = "in")]
    input: PathBuf,
    /// Record file to write (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Issue time, RFC 3339 UTC (`2026-11-26T09:30:00Z`); default now.
    #[arg(long)]
    issued_at: Option<String>,
    /// Consortium pseudonym secret; without it no subject pseudonym is signed.
    #[arg(long)]
    pseudonym_secret: Option<PathBuf>,
    /// Pseudonym epoch; default the issue year.
    #[arg(long)]
    epoch: Option<u32>,
}

fn sign(o: SignArgs) -> anyhow::Result<Outcome> {
    let origin = MemberId::new(&o.origin).context("--origin")?;
    let json = read_limited(&o.input, RECORD_JSON_BYTES_MAX)?;
    let body =
        parse_record_json(&json).with_context(|| format!("validating {}", o.input.display()))?;
    let key = keyfile::load_signing_key(&o.key).context("loading record-signing key")?;
    let issued_at = match &o.issued_at {
        Some(t) => Timestamp::parse_rfc3339(t)
            .map_err(anyhow::Error::msg)
            .context("--issued-at")?,
        None => tfx_node::clock::now(),
    };
    let pseudonym = match &o.pseudonym_secret {
        Some(path) => {
            let secret = keyfile::load_secret(path).context("loading pseudonym secret")?;
            let year = Date::from_days_since_epoch((issued_at.0 / 86_400_000) as i64).year();
            let epoch = o.epoch.unwrap_or(u32::from(year));
            Some(
                PseudonymKey::derive(&secret, PURPOSE_RISK_WARNING, epoch)
                    .context("deriving pseudonym key")?,
            )
        }
        None => None,
    };
    let params = SealParams {
        origin: &origin,
        seq: LogIndex(o.seq),
        issued_at,
        pseudonym: pseudonym.as_ref(),
    };
    let sealed = seal(
        &body,
        params,
        &key,
        &mut tfx_node::entropy::SystemEntropy::new(),
    )?;
    write_new(&o.out, &RecordFile::from_sealed(&sealed).encode())?;
    println!("wrote {} (record {})", o.out.display(), sealed.id);
    println!(
        "  {} {} seq {} with {} disclosures",
        origin,
        body.kind,
        o.seq,
        sealed.disclosures.len()
    );
    if pseudonym.is_none() && body.kind != tfx_protocol::schema::RecordKind::RiskWarning {
        println!("  note: no --pseudonym-secret given, so the record carries no subject pseudonym");
    }
    Ok(Outcome::Ok)
}

/// Writes a new file, refusing to replace an existing one, via a temporary file and rename so
/// a crash never leaves half a file.
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    tfx_node::fsutil::write_new(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` atomically (temporary file, fsync, rename): readers see the old or the new
/// content, never a mix, and a crash loses nothing.
pub fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    tfx_node::fsutil::replace_file(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Names the verification step that failed, for scripts.
fn failed_check(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Decode(_) => "structure",
        VerifyError::UnknownKey { .. } => "key",
        VerifyError::BadSignature { .. } => "signature",
        VerifyError::TooManyDisclosures { .. } | VerifyError::DisclosureDecode { .. } => {
            "disclosure-structure"
        }
        VerifyError::DigestNotInHeader { .. } => "disclosure-digest",
        VerifyError::UnknownField { .. }
        | VerifyError::FieldValue { .. }
        | VerifyError::DuplicateField { .. } => "disclosure-field",
    }
}

fn verify(
    public: &Path,
    origin: Option<&str>,
    as_json: bool,
    file: &Path,
) -> anyhow::Result<Outcome> {
    let key = keyfile::load_verifying_key(public).context("loading public key")?;
    let bytes = read_limited(file, RECORD_FILE_BYTES_MAX)?;
    let result = match origin {
        // Bound to one origin: the key resolves only for records claiming it.
        Some(o) => {
            let keys = KeySet(vec![(MemberId::new(o).context("--origin")?, key)]);
            RecordFile::decode(&bytes)
                .map_err(VerifyError::from)
                .and_then(|rf| verify_record(&rf.envelope, &rf.disclosures, &keys).map(|v| (rf, v)))
        }
        None => RecordFile::decode(&bytes)
            .map_err(VerifyError::from)
            .and_then(|rf| verify_record(&rf.envelope, &rf.disclosures, &key).map(|v| (rf, v))),
    };
    match result {
        Ok((rf, v)) => {
            let h = &v.envelope.header;
            if as_json {
                let out = json!({
                    "verified": true, "file": file.display().to_string(), "record_id": v.envelope.id.to_hex(),
                    "origin": h.origin.as_str(), "seq": h.seq.0, "kind": h.kind.name(),
                    "issued_at": h.issued_at.to_rfc3339(), "kid": v.envelope.kid.to_string(),
                    "disclosures_verified": v.disclosures.len(), "digests": h.digests.len(),
                    "envelope_bytes": rf.envelope.len(),
                });
                println!("{out}");
            } else {
                println!("{}: verified record {}", file.display(), v.envelope.id);
                println!(
                    "  origin {}  seq {}  kind {}  issued {}",
                    h.origin,
                    h.seq,
                    h.kind,
                    h.issued_at.to_rfc3339()
                );
                println!("  signature   ok (EdDSA, key {})", v.envelope.kid);
                println!(
                    "  disclosures {} ok, each digest in the signed header of {}",
                    v.disclosures.len(),
                    h.digests.len()
                );
            }
            Ok(Outcome::Ok)
        }
        Err(e) => {
            if as_json {
                let out = json!({"verified": false, "file": file.display().to_string(), "check": failed_check(&e), "error": e.to_string()});
                println!("{out}");
            } else {
                println!(
                    "{}: NOT verified ({} check): {e}",
                    file.display(),
                    failed_check(&e)
                );
            }
            Ok(Outcome::CheckFailed)
        }
    }
}

fn show(as_json: bool, file: &Path) -> anyhow::Result<Outcome> {
    let bytes = read_limited(file, RECORD_FILE_BYTES_MAX)?;
    let rf = RecordFile::decode(&bytes).with_context(|| format!("reading {}", file.display()))?;
    let sign1 = cose::open(
        "envelope",
        &rf.envelope,
        ENVELOPE_BYTES_MAX,
        CONTENT_TYPE_RECORD,
    )?;
    let header = Header::decode(sign1.payload)?;
    let disclosures: Vec<serde_json::Value> = rf
        .disclosures
        .iter()
        .enumerate()
        .map(|(i, d)| disclosure_json(i, d, &header))
        .collect();
    let out = json!({
        "record_id": RecordId::of_envelope(&rf.envelope).to_hex(),
        "signature_verified": false,
        "origin": header.origin.as_str(), "seq": header.seq.0, "kind": header.kind.name(), "schema": header.schema,
        "issued_at": header.issued_at.to_rfc3339(), "issued_at_ms": header.issued_at.0,
        "supersedes": header.supersedes.map(|s| s.to_hex()),
        "alg": sign1.alg, "kid": sign1.kid.to_string(),
        "digests": header.digests.iter().map(hex::encode).collect::<Vec<_>>(),
        "envelope_hex": hex::encode(&rf.envelope),
        "disclosures": disclosures,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "record {}  (signature not checked; use tfx record verify)",
        out["record_id"].as_str().unwrap_or_default()
    );
    println!(
        "  origin {}  seq {}  kind {}  schema {}",
        header.origin, header.seq, header.kind, header.schema
    );
    println!(
        "  issued {}  key {}",
        header.issued_at.to_rfc3339(),
        sign1.kid
    );
    if let Some(s) = header.supersedes {
        println!("  supersedes {s}");
    }
    println!(
        "  {} digests, {} disclosures:",
        header.digests.len(),
        rf.disclosures.len()
    );
    for d in &disclosures {
        println!(
            "    {:<28} {}",
            d["field"].as_str().unwrap_or("?"),
            d["value"]
        );
    }
    Ok(Outcome::Ok)
}

fn disclosure_json(index: usize, bytes: &[u8], header: &Header) -> serde_json::Value {
    match Disclosure::decode(bytes) {
        Ok(d) => json!({
            "field": d.name(), "value": d.value().to_json(), "salt_hex": hex::encode(d.salt()),
            "digest_hex": hex::encode(d.digest()), "digest_in_header": header.digests.binary_search(d.digest()).is_ok(),
            "hex": hex::encode(bytes),
        }),
        Err(e) => json!({"index": index, "error": e.to_string(), "hex": hex::encode(bytes)}),
    }
}
