//! What sealing one record costs, split out: the Ed25519 signature alone, a whole seal (derive,
//! salt, encode, hash, sign), derived fields alone. Single thread, release build:
//! `cargo run --release -p tfx-tools --example seal_cost`. Cited in BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // a measurement harness: any failure should stop it loudly

use std::time::Instant;

use tfx_protocol::derive::{derived_fields, PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::keys::SigningKey;
use tfx_protocol::record::{seal, SealParams};
use tfx_protocol::{LogIndex, MemberId, Timestamp};

const RECORDS: u64 = 20_000;

fn per_record(label: &str, start: Instant) {
    println!(
        "{label:<34} {:6.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / RECORDS as f64
    );
}

fn main() {
    let bodies: Vec<_> = (0..RECORDS)
        .map(|i| tfx_node::synthetic::credit(i).unwrap())
        .collect();
    let key = SigningKey::from_seed(&[1; 32]);
    let pk = PseudonymKey::derive(&[2; 32], PURPOSE_RISK_WARNING, 2026).unwrap();
    let origin = MemberId::new("bank-a").unwrap();
    let t = Instant::now();
    for i in 0..RECORDS {
        std::hint::black_box(key.sign(&[i as u8; 900]));
    }
    per_record("Ed25519 sign of 900 bytes", t);
    let mut entropy = tfx_node::entropy::SystemEntropy::new();
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let p = SealParams {
            origin: &origin,
            seq: LogIndex(i as u64),
            issued_at: Timestamp(1),
            pseudonym: Some(&pk),
        };
        std::hint::black_box(seal(b, p, &key, &mut entropy).unwrap());
    }
    per_record("seal (credit record, OS entropy)", t);
    let t = Instant::now();
    for b in &bodies {
        std::hint::black_box(derived_fields(b, Some(&pk)));
    }
    per_record("derived fields only", t);
}
