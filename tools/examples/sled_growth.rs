//! How sled 0.34's cost per insert grows with the tree, for sequential keys (the shape of the
//! store's chunk, time and Merkle keys) and for random ones (the record-id index: `I` and 16
//! bytes of SHA-256), with the store's own configuration (`sled_store::sled_config`, 8 MiB
//! cache) and a flush every 1,000 inserts; and random keys held back and inserted sorted, 32,768
//! at a time (a deferred, merged index). Prints µs per insert over each fifth of a million.
//! Release build: `cargo run --release -p tfx-tools --example sled_growth`. Cited in
//! BENCHMARKS.md ("1,000,000 records at `f794be3` and `32c7ab7`").
#![allow(clippy::unwrap_used)] // a measurement harness: any failure should stop it loudly

use std::time::Instant;

const INSERTS: u64 = 1_000_000;
const STEP: u64 = 200_000;

/// Inserts `key(i)` for every i, flushing every 1,000; with `sorted_batch`, keys wait in memory
/// and go in sorted, that many at a time.
fn run(label: &str, sorted_batch: Option<usize>, key: impl Fn(u64) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let db = tfx_node::sled_store::sled_config(dir.path())
        .open()
        .unwrap();
    let mut line = format!("{label:<20}");
    let mut t = Instant::now();
    let mut waiting = Vec::new();
    for i in 0..INSERTS {
        match sorted_batch {
            None => {
                db.insert(key(i), &i.to_be_bytes()[..]).unwrap();
            }
            Some(n) => {
                waiting.push((key(i), i));
                if waiting.len() == n {
                    waiting.sort_unstable();
                    for (k, v) in waiting.drain(..) {
                        db.insert(k, &v.to_be_bytes()[..]).unwrap();
                    }
                }
            }
        }
        if i % 1000 == 999 {
            db.flush().unwrap();
        }
        if i % STEP == STEP - 1 {
            let us = t.elapsed().as_secs_f64() * 1e6 / STEP as f64;
            line.push_str(&format!(" {us:6.2}"));
            t = Instant::now();
        }
    }
    println!("{line}   µs per insert, each {}k inserts", STEP / 1000);
}

fn random(i: u64) -> Vec<u8> {
    let h = ring::digest::digest(&ring::digest::SHA256, &i.to_be_bytes());
    [&b"I"[..], &h.as_ref()[..16]].concat()
}

fn main() {
    run("sequential", None, |i| {
        [&b"S"[..], &i.to_be_bytes()].concat()
    });
    run("random", None, random);
    run("random, 32k sorted", Some(32_768), random);
}
