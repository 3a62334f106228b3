#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Test vectors (protocol/SPEC.md §Test vectors): records of every kind sealed with a fixed key,
//! fixed salts (DeterministicEntropy), a fixed time and a fixed pseudonym secret; a checkpoint; and
//! Merkle proofs over the four envelopes. This test reproduces `vectors.json` byte for byte and
//! checks that SPEC.md quotes every hex value in it.
//!
//! Regenerate after an intentional format change with
//! `TFX_REGENERATE_VECTORS=1 cargo test -p tfx-protocol --test vectors`, then rewrite SPEC.md's
//! vector section with `python3 protocol/tests/gen_spec_vectors.py`.

use serde_json::{json, Value};
use tfx_protocol::checkpoint::Checkpoint;
use tfx_protocol::derive::{PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::entropy::DeterministicEntropy;
use tfx_protocol::keys::SigningKey;
use tfx_protocol::merkle::{consistency_proof, inclusion_proof, leaf_hash, Frontier, MemoryNodes};
use tfx_protocol::record::{seal, verify_record, RecordFile, SealParams};
use tfx_protocol::validate::parse_record_json;
use tfx_protocol::{LogIndex, MemberId, Timestamp};

const KEY_SEED: [u8; 32] = [0x01; 32];
const PSEUDONYM_SECRET: [u8; 32] = [0x02; 32];
const ENTROPY_SEED: &[u8] = b"tfx test vectors v1";
const ISSUED_AT: Timestamp = Timestamp(1_790_000_000_000); // 2026-09-21T14:13:20.000Z
const EPOCH: u32 = 2026;
const EXAMPLES: [&str; 4] = ["credit", "ip-valuation", "monitoring", "risk-warning"];

fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn generate() -> Value {
    let key = SigningKey::from_seed(&KEY_SEED);
    let pseudonym = PseudonymKey::derive(&PSEUDONYM_SECRET, PURPOSE_RISK_WARNING, EPOCH)
        .expect("pseudonym key");
    let origin = MemberId::new("bank-a").expect("member id");
    let mut entropy = DeterministicEntropy::new(ENTROPY_SEED);
    let mut records = Vec::new();
    let mut frontier = Frontier::default();
    let mut nodes = MemoryNodes::default();
    for (seq, name) in EXAMPLES.iter().enumerate() {
        let path = repo_path(&format!("examples/records/{name}.json"));
        let body = parse_record_json(&std::fs::read(&path).expect("example record"))
            .expect("valid example");
        let params = SealParams {
            origin: &origin,
            seq: LogIndex(seq as u64),
            issued_at: ISSUED_AT,
            pseudonym: Some(&pseudonym),
        };
        let sealed = seal(&body, params, &key, &mut entropy).expect("seal");
        verify_record(
            &sealed.envelope,
            &RecordFile::from_sealed(&sealed).disclosures,
            key.verifying_key(),
        )
        .expect("verifies");
        nodes.0.extend(frontier.push(leaf_hash(&sealed.envelope)));
        let disclosures: Vec<Value> = sealed
            .disclosures
            .iter()
            .map(|d| json!({"field": d.name(), "hex": hex::encode(d.bytes()), "sha256": hex::encode(d.digest())}))
            .collect();
        records.push(json!({
            "example": format!("examples/records/{name}.json"),
            "origin": origin.as_str(), "seq": seq, "issued_at_ms": ISSUED_AT.0,
            "record_id": sealed.id.to_hex(),
            "header_hex": hex::encode(sealed.header.encode()),
            "envelope_hex": hex::encode(&sealed.envelope),
            "leaf_hash": hex::encode(leaf_hash(&sealed.envelope)),
            "disclosures": disclosures,
            "record_file_hex": hex::encode(RecordFile::from_sealed(&sealed).encode()),
        }));
    }
    let root = frontier.root();
    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size: 4,
        root,
        time: ISSUED_AT,
    }
    .sign(&key);
    let hexes = |v: Vec<[u8; 32]>| v.iter().map(hex::encode).collect::<Vec<_>>();
    json!({
        "signing_key_seed": hex::encode(KEY_SEED),
        "public_key": hex::encode(key.verifying_key().raw()),
        "public_key_spki_der": hex::encode(key.verifying_key().to_spki_der()),
        "kid": key.key_id().to_string(),
        "pseudonym_secret": hex::encode(PSEUDONYM_SECRET),
        "pseudonym_purpose": PURPOSE_RISK_WARNING, "pseudonym_epoch": EPOCH,
        "entropy": "DeterministicEntropy(\"tfx test vectors v1\"): SHA-256(SHA-256(seed) || counter_be64) blocks",
        "records": records,
        "merkle": {
            "size": 4, "root": hex::encode(root),
            "inclusion_proof_seq_2": hexes(inclusion_proof(&nodes, 2, 4).expect("proof")),
            "consistency_proof_3_to_4": hexes(consistency_proof(&nodes, 3, 4).expect("proof")),
            "root_size_3": hex::encode(tfx_protocol::merkle::root(&nodes, 3).expect("root")),
        },
        "checkpoint": {"origin": "bank-a", "size": 4, "time_ms": ISSUED_AT.0, "signed_hex": hex::encode(&checkpoint.bytes)},
    })
}

#[test]
fn vectors_reproduce_byte_for_byte() {
    let path = repo_path("protocol/tests/vectors.json");
    let generated = generate();
    if std::env::var_os("TFX_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vectors");
    }
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("vectors.json")).expect("vectors json");
    assert_eq!(
        generated, stored,
        "generated vectors differ from protocol/tests/vectors.json"
    );
}

fn hex_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            out.push(s.clone())
        }
        Value::Array(a) => a.iter().for_each(|x| hex_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| hex_strings(x, out)),
        _ => {}
    }
}

#[test]
fn spec_quotes_every_vector() {
    let spec = std::fs::read_to_string(repo_path("protocol/SPEC.md")).expect("SPEC.md");
    let mut all = Vec::new();
    hex_strings(&generate(), &mut all);
    assert!(
        all.len() > 50,
        "expected many hex values, got {}",
        all.len()
    );
    let missing: Vec<_> = all.iter().filter(|h| !spec.contains(h.as_str())).collect();
    assert!(
        missing.is_empty(),
        "SPEC.md lacks {} vector values, first: {}",
        missing.len(),
        missing[0]
    );
}
