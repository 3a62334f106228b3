//! What receiving or serving one record costs in decoding and verification, split out: decoding
//! the header of a stored envelope (what a member does for every record it serves, to filter it
//! for the peer's view), opening the COSE envelope, verifying the envelope (structure, header,
//! Ed25519 signature) and verifying the whole record (envelope plus each disclosure); then
//! Ed25519 alone, signing and verifying, with tfx's keys (ed25519-dalek) against ring's, passes
//! alternating, with the median of the per-pass ratios. Single thread, release build; medians of
//! `ROUNDS` passes over 20,000 synthetic credit records:
//! `cargo run --release -p tfx-tools --example verify_cost`. Cited in BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // a measurement harness: any failure should stop it loudly

use std::time::Instant;

use tfx_protocol::cose::{self, CONTENT_TYPE_RECORD};
use tfx_protocol::derive::{PseudonymKey, PURPOSE_RISK_WARNING};
use tfx_protocol::keys::{finish_checks, SigningKey};
use tfx_protocol::limits::ENVELOPE_BYTES_MAX;
use tfx_protocol::minimize::envelope_header;
use tfx_protocol::record::{
    seal, verify_envelope, verify_record, verify_records_owned_held, SealParams,
};
use tfx_protocol::{LogIndex, MemberId, Timestamp};

const RECORDS: u64 = 20_000;
const ROUNDS: usize = 5;
/// Records per batch where checks are finished together, about what one thread gets of a
/// catch-up message.
const BATCH: usize = 64;

/// µs per record of one pass of `f` over every record.
fn pass(f: &mut impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..RECORDS as usize {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / RECORDS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median µs per record of `f` applied to every record, over [`ROUNDS`] passes.
fn per_record(label: &str, mut f: impl FnMut(usize)) {
    let times = (0..ROUNDS).map(|_| pass(&mut f)).collect();
    println!("{label:<44} {:7.2} µs", median(times));
}

/// [`per_record`] for work done [`BATCH`] records at a time: `f(from, to)` handles records
/// `from..to`.
fn batched(label: &str, mut f: impl FnMut(usize, usize)) {
    let times = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for from in (0..RECORDS as usize).step_by(BATCH) {
                f(from, (from + BATCH).min(RECORDS as usize));
            }
            t.elapsed().as_secs_f64() * 1e6 / RECORDS as f64
        })
        .collect();
    println!("{label:<44} {:7.2} µs", median(times));
}

/// [`per_record`] for two ways of doing one thing, passes alternating so drift hits both alike;
/// also prints the median of the per-pass ratios. As each is used: ring's `UnparsedPublicKey`
/// decodes the key on every check, tfx's `VerifyingKey` once.
fn compare(what: &str, mut ring: impl FnMut(usize), mut tfx: impl FnMut(usize)) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Each goes first in turn, so a warm-up or a drift does not land on one side.
        if round % 2 == 0 {
            a.push(pass(&mut ring));
            b.push(pass(&mut tfx));
        } else {
            b.push(pass(&mut tfx));
            a.push(pass(&mut ring));
        }
    }
    let ratio = median(a.iter().zip(&b).map(|(x, y)| x / y).collect());
    println!("{:<44} {:7.2} µs", format!("{what}, ring"), median(a));
    println!(
        "{:<44} {:7.2} µs   ring/tfx {ratio:.2}",
        format!("{what}, tfx (ed25519-dalek)"),
        median(b)
    );
}

fn main() {
    let key = SigningKey::from_seed(&[1; 32]);
    let pk = PseudonymKey::derive(&[2; 32], PURPOSE_RISK_WARNING, 2026).unwrap();
    let origin = MemberId::new("bank-a").unwrap();
    let mut entropy = tfx_protocol::entropy::DeterministicEntropy::new(b"verify_cost");
    let records: Vec<_> = (0..RECORDS)
        .map(|i| {
            let body = tfx_node::synthetic::credit(i).unwrap();
            let p = SealParams {
                origin: &origin,
                seq: LogIndex(i),
                issued_at: Timestamp(1_764_000_000_000 + i),
                pseudonym: Some(&pk),
            };
            let r = seal(&body, p, &key, &mut entropy).unwrap();
            let disclosures: Vec<Vec<u8>> =
                r.disclosures.iter().map(|d| d.bytes().to_vec()).collect();
            (r.envelope, disclosures)
        })
        .collect();
    let vk = *key.verifying_key();
    per_record("header of a stored envelope (serving)", |i| {
        std::hint::black_box(envelope_header(&records[i].0).unwrap());
    });
    per_record("COSE_Sign1 open", |i| {
        let env = &records[i].0;
        std::hint::black_box(
            cose::open("envelope", env, ENVELOPE_BYTES_MAX, CONTENT_TYPE_RECORD).unwrap(),
        );
    });
    per_record("verify envelope (open, header, Ed25519)", |i| {
        std::hint::black_box(verify_envelope(&records[i].0, &vk).unwrap());
    });
    per_record("verify record (envelope + 18 disclosures)", |i| {
        let (env, ds) = &records[i];
        std::hint::black_box(verify_record(env, ds, &vk).unwrap());
    });
    batched(
        "verify records, 64 at a time (owned, batched)",
        |from, to| {
            let inputs = records[from..to]
                .iter()
                .map(|(env, ds)| (env.as_slice(), None, ds.clone()))
                .collect();
            for r in verify_records_owned_held(inputs, &vk) {
                assert!(r.is_ok());
            }
        },
    );

    // The signed bytes and signature of each envelope, for Ed25519 alone.
    let signed: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|(env, _)| {
            let s = cose::open("envelope", env, ENVELOPE_BYTES_MAX, CONTENT_TYPE_RECORD).unwrap();
            (s.to_be_signed(), s.signature.to_vec())
        })
        .collect();
    let ring_pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let ring_public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, vk.raw());
    compare(
        "Ed25519 sign",
        |i| {
            std::hint::black_box(ring_pair.sign(&signed[i].0));
        },
        |i| {
            std::hint::black_box(key.sign(&signed[i].0));
        },
    );
    compare(
        "Ed25519 verify",
        |i| ring_public.verify(&signed[i].0, &signed[i].1).unwrap(),
        |i| assert!(vk.verify(&signed[i].0, &signed[i].1)),
    );
    batched("Ed25519 verify, tfx, 64 finished together", |from, to| {
        let checks: Vec<_> = signed[from..to]
            .iter()
            .map(|(msg, sig)| vk.begin_verify(&[msg], sig))
            .collect();
        assert!(finish_checks(&checks).into_iter().all(|ok| ok));
    });
}
