#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Backup and restore on real nodes (DESIGN §10): a backup taken through a running node's API
//! under write load, records issued after it, the node's store lost; a tampered copy of the
//! backup is refused with nothing installed; the genuine one restores, every log verifies, and
//! the restarted node first recovers its own newer records from peers, then issues again at
//! the right sequence number — no fork anywhere.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::*;

fn tfx_node(args: &[&str]) -> std::process::Output {
    Command::new(tfx_node_bin()).args(args).output().unwrap()
}

/// `tfx-node backup|restore --config CONFIG --out|--from FILE`.
fn run(command: &str, config: &str, file: &std::path::Path) -> std::process::Output {
    let flag = if command == "backup" {
        "--out"
    } else {
        "--from"
    };
    tfx_node(&[command, "--config", config, flag, file.to_str().unwrap()])
}

#[test]
fn a_backup_under_write_load_restores_and_the_node_recovers_before_issuing() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let config = net.member("bank-a").join("node.toml");
    let config = config.to_str().unwrap();
    let bank = Api::new(&net.member("bank-a"));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (bank, acked) = (bank.clone(), acked.clone());
        std::thread::spawn(move || submit_many(&bank, "credit", 1_000, 4, acked))
    };
    while acked.load(Ordering::Relaxed) < 150 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let backup = net.dir.path().join("bank-a.tfxbackup");
    let out = run("backup", config, &backup);
    let report = common::text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("(node running)"), "{report}");
    writer.join().unwrap();
    // And certainly some after it, which only the peers will hold once bank-a's store is lost.
    submit_many(&bank, "credit", 50, 1, acked.clone());
    let total = acked.load(Ordering::Relaxed);
    assert_eq!(total, 1_050, "every submission acknowledged");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a backup holds field values");
    // A backup never overwrites.
    let again = run("backup", config, &backup);
    assert_eq!(again.status.code(), Some(2));
    assert!(common::text(&again).contains("never overwrites"));
    let expected = BTreeMap::from([("bank-a".to_string(), total)]);
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(90));

    // bank-a loses its store.
    assert!(net.signal("bank-a", 15).success());
    let data = net.member("bank-a").join("data");
    std::fs::rename(&data, net.member("bank-a").join("data.lost")).unwrap();

    // Any altered byte is refused, and nothing is installed.
    let bytes = std::fs::read(&backup).unwrap();
    for at in [bytes.len() / 3, bytes.len() - 40] {
        let mut t = bytes.clone();
        t[at] ^= 0x01;
        let tampered = net.dir.path().join("tampered.tfxbackup");
        std::fs::write(&tampered, &t).unwrap();
        let out = run("restore", config, &tampered);
        assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
        assert!(!data.exists(), "nothing installed after a refused restore");
        eprintln!("tampered at {at}: {}", common::text(&out).trim());
    }
    // A truncated copy too.
    let cut = net.dir.path().join("cut.tfxbackup");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run("restore", config, &cut);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::text(&out).contains("truncated"),
        "{}",
        common::text(&out)
    );
    assert!(!data.exists());

    let out = run("restore", config, &backup);
    let report = common::text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("every log verified"), "{report}");
    // Restoring over a store is refused.
    let out = run("restore", config, &backup);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::text(&out).contains("already holds a store"));
    net.check_store("bank-a");

    // Restarted, it recovers its own newer records from peers, then issues at seq `total`.
    // (A new store has a new API token.)
    net.start("bank-a");
    let bank = Api::new(&net.member("bank-a"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let receipt = loop {
        if let Some(r) = bank.submit(&example("credit")) {
            break r;
        }
        if Instant::now() > deadline {
            let log = net.log("bank-a");
            let status = Api::new(&net.member("bank-a")).status();
            panic!(
                "bank-a never issued again: {status:?}\n{}",
                &log[log.len().saturating_sub(4000)..]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(receipt["seq"].as_u64(), Some(total), "{receipt}");
    assert!(
        net.log("bank-a").contains("own log recovered from peers"),
        "{}",
        net.log("bank-a")
    );
    let expected = BTreeMap::from([("bank-a".to_string(), total + 1)]);
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(60));
    for m in MEMBERS {
        let status = Api::new(&net.member(m)).status().unwrap();
        assert_eq!(status["frozen"], serde_json::json!([]), "{m}: {status}");
        assert_eq!(status["forks"], 0, "{m}: {status}");
        assert!(status["recovering"].is_null(), "{m}: {status}");
    }
}
