//! What sled 0.34 costs per key written, to explain the store layout (node/src/sled_store.rs):
//! batches of 64 or 256 records, flushed after each batch, with the keys an append writes —
//! a 2.4 KB record value per record (`E only`) or one 150 KB chunk per 64 records (`chunk64`),
//! the id index (`I`) and subject index entries (`S`). Release build:
//! `cargo run --release -p tfx-tools --example sled_key_cost`. Cited in BENCHMARKS.md.
#![allow(clippy::unwrap_used)] // a measurement harness: any failure should stop it loudly

use std::time::Instant;

const RECORDS: u64 = 30_000;

fn run(label: &str, batch: u64, keys: &dyn Fn(u64, &mut sled::Batch)) {
    let dir = tempfile::tempdir().unwrap();
    let db = tfx_node::sled_store::sled_config(dir.path())
        .open()
        .unwrap();
    let start = Instant::now();
    for first in (0..RECORDS).step_by(batch as usize) {
        let mut b = sled::Batch::default();
        for j in first..first + batch {
            keys(j, &mut b);
        }
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / RECORDS as f64;
    println!("{label:<24} {us:6.1} µs/record ({:.0}/s)", 1e6 / us);
}

/// A well-spread 32-byte key, like a record id.
fn spread(j: u64) -> Vec<u8> {
    let mut x = vec![0u8; 32];
    x[..8].copy_from_slice(&j.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    x
}

fn main() {
    let record = vec![7u8; 2400];
    let chunk = vec![7u8; 2400 * 64];
    let e = |j: u64, b: &mut sled::Batch| {
        b.insert(
            [b"E".as_slice(), &j.to_be_bytes()].concat(),
            record.as_slice(),
        )
    };
    let c = |j: u64, b: &mut sled::Batch| {
        if j.is_multiple_of(64) {
            b.insert(
                [b"E".as_slice(), &j.to_be_bytes()].concat(),
                chunk.as_slice(),
            );
        }
    };
    let i = |j: u64, b: &mut sled::Batch| {
        b.insert([b"I".as_slice(), &spread(j)].concat(), &j.to_be_bytes()[..])
    };
    let s = |j: u64, b: &mut sled::Batch| {
        b.insert(
            [b"S".as_slice(), &spread(j % 700)[..18], &j.to_be_bytes()].concat(),
            &[0u8][..],
        )
    };
    for batch in [64, 256] {
        println!("-- batches of {batch}, flushed");
        run("E only", batch, &e);
        run("E + I + S + S", batch, &|j, b| {
            e(j, b);
            i(j, b);
            s(j, b);
            s(j + 1_000_000, b);
        });
        run("chunk64", batch, &c);
        run("chunk64 + I", batch, &|j, b| {
            c(j, b);
            i(j, b);
        });
        run("chunk64 + I + S", batch, &|j, b| {
            c(j, b);
            i(j, b);
            s(j, b);
        });
    }
}
