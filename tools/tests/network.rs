#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is a failed test
//! Real `tfx-node` processes on 127.0.0.1 with a consortium built at test time by
//! `certs/dev-consortium.sh` (the `tfx` CLI): four nodes converge while one is SIGKILLed and
//! restarted mid-replication, nothing is lost or duplicated, every store re-verifies offline,
//! and a revoked member is disconnected and refused; a member offline while 100,000 records are
//! written catches up; `tfx demo` runs end to end. Every process is killed when a test ends.
//! (Refusals and protocol violations from an adversary: `adversary.rs`.)

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::*;

#[test]
fn four_nodes_converge_through_a_sigkill_and_a_revoked_member_is_cut_off() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let bank = Api::new(&net.member("bank-a"));
    let science = Api::new(&net.member("science-dept"));
    let bank_acked = Arc::new(AtomicU64::new(0));
    let science_acked = Arc::new(AtomicU64::new(0));
    let writers = {
        let (bank, science) = (bank.clone(), science.clone());
        let (b, s) = (bank_acked.clone(), science_acked.clone());
        std::thread::spawn(move || {
            let t = std::thread::spawn(move || submit_many(&science, "monitoring", 300, 4, s));
            submit_many(&bank, "credit", 1_500, 8, b);
            t.join().unwrap();
        })
    };
    // Kill the central bank's node mid-replication, with no chance to flush, then restart it.
    while bank_acked.load(Ordering::Relaxed) < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    net.signal("pbc-chengdu", 9);
    std::thread::sleep(Duration::from_millis(300));
    net.start("pbc-chengdu");
    // It dials every peer itself — bank-a too, which used to be the only dialer of the pair and
    // still held the dead connection (until its 30 s idle timeout): it is back with all three
    // within seconds.
    let restarted = Instant::now();
    let pbc_status = Api::new(&net.member("pbc-chengdu"));
    loop {
        let s = pbc_status.status().unwrap();
        let peers = s["peers"].as_array().unwrap();
        if peers.len() == 3 && peers.iter().all(|p| p["connected"] == true) {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "pbc-chengdu not reconnected to every peer: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    writers.join().unwrap();
    let expected: BTreeMap<String, u64> = [
        ("bank-a".to_string(), bank_acked.load(Ordering::Relaxed)),
        (
            "science-dept".to_string(),
            science_acked.load(Ordering::Relaxed),
        ),
    ]
    .into();
    assert_eq!(
        expected["bank-a"], 1_500,
        "every submission is acknowledged"
    );
    // Exactly the acknowledged records everywhere: none lost, none duplicated.
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(90));

    // Clean shutdown, then every store re-verifies offline.
    for m in MEMBERS {
        let status = net.signal(m, 15);
        assert!(
            status.success(),
            "{m} exited with {status} on SIGTERM:\n{}",
            net.log(m)
        );
        assert!(net.log(m).contains("node stopped"), "{m}:\n{}", net.log(m));
    }
    for m in MEMBERS {
        let report = net.check_store(m);
        assert!(report.contains("bank-a: ok — 1500 records"), "{report}");
    }

    // Revoke the risk-warning member; a governor's node learns the new roster and spreads it.
    let out = net.tfx(&[
        "member",
        "revoke",
        "--consortium",
        "consortium",
        "--id",
        "risk-warning",
        "--reason",
        "test",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let files: Vec<String> = std::fs::read_dir(net.dir.path().join("c/consortium/roster"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tfxroster"))
        .map(|p| p.display().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut args = vec!["roster", "install", "--dir", "science-dept"];
    args.extend(files.iter().map(String::as_str));
    let out = net.tfx(&args);
    assert!(out.status.success(), "{}", common::text(&out));
    // pbc-chengdu lets two reads wait at a time, so the limit can be reached below.
    let pbc_toml = net.member("pbc-chengdu").join("node.toml");
    let mut config = std::fs::read_to_string(&pbc_toml).unwrap();
    config.push_str("\n[api]\nwaiting_reads = 2\n");
    std::fs::write(&pbc_toml, config).unwrap();
    for m in MEMBERS {
        net.start(m);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rw = Api::new(&net.member("risk-warning")).status().unwrap();
        let others_dropped = ["pbc-chengdu", "bank-a"].iter().all(|m| {
            let s = Api::new(&net.member(m)).status().unwrap();
            s["roster_version"].as_u64() == Some(6)
                && s["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["member"] != "risk-warning" || p["connected"] == false)
        });
        let rw_alone = rw["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["connected"] == false);
        if others_dropped && rw_alone {
            break;
        }
        assert!(Instant::now() < deadline, "risk-warning not cut off: {rw}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it stays refused: the handshake fails on the members' side, with the reason logged.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        net.log("science-dept")
            .contains("risk-warning is revoked in roster v6"),
        "{}",
        net.log("science-dept")
    );

    // A waiting read: pbc-chengdu answers as soon as a record submitted at bank-a has arrived,
    // runs a wait out before a 404, and refuses a wait over the limit.
    let pbc = Api::new(&net.member("pbc-chengdu"));
    let unknown = "00".repeat(32);
    let asked = Instant::now();
    assert_eq!(
        pbc.get_code(&format!("/v1/records/{unknown}?wait_ms=300")),
        404
    );
    assert!(asked.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        pbc.get_code(&format!("/v1/records/{unknown}?wait_ms=30001")),
        400
    );
    let submitted = bank
        .submit(&example("credit"))
        .expect("bank-a takes a record");
    let id = submitted["id"].as_str().unwrap();
    let asked = Instant::now();
    let got = pbc
        .get(&format!("/v1/records/{id}?wait_ms=20000"))
        .expect("the record reaches pbc-chengdu within the wait");
    assert_eq!(got["verified"], true);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered only after {:?}",
        asked.elapsed()
    );
    // Two reads waiting fill pbc-chengdu's limit: a third is refused at once, while a read of
    // a record it holds is still answered.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (pbc, path) = (pbc.clone(), format!("/v1/records/{unknown}?wait_ms=20000"));
            std::thread::spawn(move || pbc.get_code(&path))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(
        pbc.get_code(&format!("/v1/records/{unknown}?wait_ms=20000")),
        503
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(
        pbc.get_code(&format!("/v1/records/{id}?wait_ms=20000")),
        200
    );
    // A node stopping answers its waiting reads at once rather than making shutdown wait.
    let stopping = Instant::now();
    let status = net.signal("pbc-chengdu", 15);
    assert!(status.success(), "{}", net.log("pbc-chengdu"));
    for w in waiters {
        assert_eq!(w.join().unwrap(), 404);
    }
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown took {:?} with a waiting read open",
        stopping.elapsed()
    );
}

#[test]
fn the_demo_runs_end_to_end_and_keeps_its_directories() {
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("demo");
    let out = Command::new(tfx_bin())
        .args(["demo", "--records", "3", "--base-port"])
        .arg(free_base_port().to_string())
        .arg("--keep")
        .arg(&dir)
        .arg("--enterprises")
        .arg(repo().join("../shared/domain/enterprises.csv"))
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("science-dept 9/9  pbc-chengdu 9/9  bank-a 9/9  risk-warning 9/9"),
        "{text}"
    );
    assert_eq!(
        text.matches("stopped (exit status: 0)").count(),
        4,
        "{text}"
    );
    for m in MEMBERS {
        assert!(dir.join(m).join("node.log").is_file());
        assert!(dir.join(m).join("data").is_dir());
    }
}

#[test]
fn a_member_offline_while_100000_records_are_written_catches_up() {
    let mut net = Net::new();
    // risk-warning is down from the start: it has never held any of what follows.
    for m in ["science-dept", "pbc-chengdu", "bank-a"] {
        net.start(m);
    }
    let bank_acked = Arc::new(AtomicU64::new(0));
    let pbc_acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let pbc_writer = {
        let (api, acked) = (Api::new(&net.member("pbc-chengdu")), pbc_acked.clone());
        std::thread::spawn(move || submit_many(&api, "credit", 40_000, 8, acked))
    };
    submit_many(
        &Api::new(&net.member("bank-a")),
        "credit",
        60_000,
        8,
        bank_acked.clone(),
    );
    pbc_writer.join().unwrap();
    let expected: BTreeMap<String, u64> = [
        ("bank-a".to_string(), bank_acked.load(Ordering::Relaxed)),
        ("pbc-chengdu".to_string(), pbc_acked.load(Ordering::Relaxed)),
    ]
    .into();
    assert_eq!(expected.values().sum::<u64>(), 100_000, "{expected:?}");
    eprintln!("100,000 records written in {:?}", started.elapsed());
    wait_converged(
        &net,
        &["science-dept", "pbc-chengdu", "bank-a"],
        &expected,
        Duration::from_secs(120),
    );

    let started = Instant::now();
    net.start("risk-warning");
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(300));
    eprintln!("risk-warning caught up in {:?}", started.elapsed());
    let log = net.log("risk-warning");
    assert!(!log.contains("disconnecting peer"), "{log}");
    // What it caught up is durable and re-verifies offline.
    let status = net.signal("risk-warning", 15);
    assert!(status.success(), "{status}:\n{}", net.log("risk-warning"));
    let report = net.check_store("risk-warning");
    for (origin, n) in &expected {
        assert!(
            report.contains(&format!("{origin}: ok — {n} records")),
            "{report}"
        );
    }
}

#[test]
fn the_replication_bench_runs_and_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tfx_bin())
        .args([
            "bench",
            "replicate",
            "--records",
            "2000",
            "--probes",
            "20",
            "--load",
            "100",
            "--anti-entropy-ms",
            "300",
            "--json",
            "--base-port",
        ])
        .arg(free_base_port().to_string())
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&text);
    assert_eq!(r["records"], 2000);
    assert!(r["verify_only_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let catch_up = r["catch_up"].as_array().unwrap();
    assert_eq!(
        catch_up
            .iter()
            .map(|c| c["peers"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(catch_up
        .iter()
        .all(|c| c["records_per_s"].as_f64().unwrap() > 0.0));
    // Receiving verifies every record: it cannot be free. (Serving 2,000 records may take less
    // than one 10 ms clock tick, so the senders' figure is only required to be there.)
    assert!(
        catch_up.iter().all(|c| {
            c["cpu_us_per_record"]["receiver"].as_f64().unwrap() > 0.0
                && c["cpu_us_per_record"]["senders"].as_f64().unwrap() >= 0.0
        }),
        "{r}"
    );
    let (p50, p99) = (
        r["latency_ms"]["p50"].as_f64().unwrap(),
        r["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
    assert_eq!(r["latency_ms"]["probes"], 20);
    // In sync, hellos still flow both ways every round, and the wire carries more than they do.
    let sync = r["anti_entropy"]["sync_bytes_per_round_per_peer"]
        .as_f64()
        .unwrap();
    let udp = r["anti_entropy"]["udp_bytes_per_round_per_peer"]
        .as_f64()
        .unwrap();
    assert!(sync > 0.0 && udp > sync, "{r}");
    assert!(r["rss_mib"]["with_all_records"].as_f64().unwrap() > 1.0);
    assert!(r["targets"]["latency_met"].is_boolean());
}
