#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Architecture invariants that code review alone would let slip: `tfx-protocol` depends on no
//! I/O crate and calls no clock, RNG, file or network API; serde_cbor is named only in
//! `protocol/src/codec.rs`; no private key is tracked in git.

use std::process::Command;

#[test]
fn protocol_depends_on_no_io_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "tfx-protocol",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(tfx_tests::repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(
        tree.contains("tfx-protocol") && tree.contains("ring"),
        "unexpected tree: {tree}"
    );
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // getrandom is allowed: ring links it for SystemRandom, which protocol never calls (see below).
    for forbidden in ["tokio", "quinn", "rustls", "sled", "mio", "socket2", "rand"] {
        assert!(
            !names.contains(&forbidden),
            "tfx-protocol depends on {forbidden}"
        );
    }
}

fn protocol_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![tfx_tests::repo_root().join("protocol/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    assert!(out.len() > 10);
    out
}

#[test]
fn protocol_calls_no_clock_rng_file_or_network_api() {
    for (path, src) in protocol_sources() {
        for api in [
            "std::fs",
            "std::net",
            "SystemTime",
            "Instant::now",
            "SystemRandom",
            "thread_rng",
            "std::process",
            "std::env",
        ] {
            assert!(!src.contains(api), "{path} uses {api}");
        }
    }
}

#[test]
fn serde_cbor_stays_in_codec() {
    for (path, src) in protocol_sources() {
        if !path.ends_with("codec.rs") {
            assert!(
                !src.contains("serde_cbor"),
                "{path} names serde_cbor; keep it in codec.rs"
            );
        }
    }
}

#[test]
fn no_private_key_is_tracked() {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(tfx_tests::repo_root())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("skipping: not a git checkout");
        return;
    }
    for path in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = tfx_tests::repo_root().join(String::from_utf8_lossy(path).as_ref());
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let text = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains(concat!("BEGIN PRIVATE", " KEY")),
            "{} holds a private key",
            path.display()
        );
    }
}
