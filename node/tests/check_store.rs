#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! `tfx-node check-store` re-verifies a data directory written by the appender: exit 0 when every
//! log verifies, 1 when one does not (here: checked against the wrong key), 2 on errors.

use std::process::Command;
use std::sync::Arc;

use tfx_node::appender::{Appender, AppenderConfig};
use tfx_node::keyfile;
use tfx_node::sled_store::SledStore;
use tfx_protocol::MemberId;

#[test]
fn check_store_verifies_and_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys, other) = (
        dir.path().join("data"),
        dir.path().join("keys"),
        dir.path().join("other"),
    );
    keyfile::generate_signing_key(&keys).unwrap();
    keyfile::generate_signing_key(&other).unwrap();
    {
        let store = Arc::new(SledStore::open(&data).unwrap());
        let key = keyfile::load_signing_key(&keys.join(keyfile::SIGNING_KEY_FILE)).unwrap();
        let config = AppenderConfig {
            origin: MemberId::new("bank-a").unwrap(),
            key,
            previous_keys: Vec::new(),
            pseudonym: None,
        };
        let appender = Appender::start(store, config).unwrap();
        for n in 0..300 {
            appender
                .append_blocking(tfx_node::synthetic::credit(n).unwrap())
                .unwrap();
        }
        appender.shutdown();
    }
    let run = |key_dir: &std::path::Path, data: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_tfx-node"))
            .args(["check-store", "--data"])
            .arg(data)
            .arg("--pub")
            .arg(format!(
                "bank-a={}",
                key_dir.join(keyfile::VERIFYING_KEY_FILE).display()
            ))
            .output()
            .unwrap()
    };
    let ok = run(&keys, &data);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    // 14 submitted fields + 3 derived (two bands, city); no pseudonym key, so no pseudonym.
    assert!(
        out.contains("bank-a: ok — 300 records, 5100 disclosures verified, checkpoint at 300"),
        "{out}"
    );
    let bad = run(&other, &data);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("bank-a: FAILED"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let missing = run(&keys, &dir.path().join("nope"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such data directory"));
    // An existing directory that is not a store is refused, and left untouched.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let not_store = run(&keys, &empty);
    assert_eq!(not_store.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_store.stderr).contains("not a tfx data directory"));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // A key bound to another origin does not verify bank-a's log, even though it is bank-a's key.
    let out = Command::new(env!("CARGO_BIN_EXE_tfx-node"))
        .args(["check-store", "--data"])
        .arg(&data)
        .arg("--pub")
        .arg(format!(
            "ip-center={}",
            keys.join(keyfile::VERIFYING_KEY_FILE).display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is not known"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
