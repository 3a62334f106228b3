#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is a failed test
//! Auditing with real `tfx-node` processes (issue 6): witnesses cosign each other's checkpoints
//! until they are final; a bundle exported from a running node verifies offline with `tfx audit
//! verify` and with the independent Python verifier written from SPEC.md alone, and any changed
//! byte makes both fail; `tfx audit log` re-verifies a stopped node's store. A member whose
//! directory is copied and run twice — each twin against different peers — is caught: the
//! honest nodes exchange signed checkpoints, prove the fork, freeze the origin, raise an alert,
//! and pass the evidence to a member that never saw either branch; the evidence verifies offline.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;

fn genesis(net: &Net) -> String {
    std::fs::read_to_string(net.dir.path().join("c/consortium/genesis.sha256"))
        .unwrap()
        .trim()
        .to_string()
}

fn submit(api: &Api, kind: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = api.submit(&example(kind)).expect("submit");
            r["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Polls `m`'s status until `done` holds, or fails with the status after `within`.
fn wait_status(net: &Net, m: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let api = Api::new(&net.member(m));
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = api.status() {
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{m}: gave up waiting: {s}");
        }
        assert!(Instant::now() < deadline, "{m}: no status");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn final_size(status: &Value, origin: &str) -> u64 {
    status["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["origin"] == origin)
        .and_then(|h| h["final_size"].as_u64())
        .unwrap_or(0)
}

/// `tfx audit export --node NODE --record ID… EXTRA… --out FILE`, which must succeed.
fn export(net: &Net, node: &str, ids: &[&str], extra: &[&str], file: &Path) {
    let mut args = vec!["audit", "export", "--node", node];
    for id in ids {
        args.extend(["--record", id]);
    }
    args.extend(extra);
    args.extend(["--out", file.to_str().unwrap()]);
    let out = net.tfx(&args);
    assert!(out.status.success(), "{}", common::text(&out));
}

/// `tfx audit verify FILE [--genesis G] --json`: its exit code and its report.
fn verify_json(net: &Net, file: &Path, genesis: Option<&str>) -> (Option<i32>, Value) {
    let mut args = vec!["audit", "verify", file.to_str().unwrap(), "--json"];
    if let Some(g) = genesis {
        args.extend(["--genesis", g]);
    }
    let out = net.tfx(&args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    (out.status.code(), json)
}

fn python_verify(file: &Path, genesis: &str) -> std::process::Output {
    Command::new("python3")
        .arg(repo().join("tools/verify_bundle.py"))
        .arg(file)
        .args(["--genesis", genesis])
        .output()
        .unwrap()
}

#[test]
fn bundles_from_a_running_node_verify_offline_and_any_changed_byte_fails() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let bank = submit(&Api::new(&net.member("bank-a")), "credit", 3);
    let science = submit(&Api::new(&net.member("science-dept")), "monitoring", 2);
    let expected: BTreeMap<String, u64> =
        [("bank-a".to_string(), 3), ("science-dept".to_string(), 2)].into();
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(30));
    // Witnesses cosign within a round or two (300 ms here): both logs become final.
    let status = wait_status(&net, "pbc-chengdu", Duration::from_secs(30), |s| {
        final_size(s, "bank-a") == 3 && final_size(s, "science-dept") == 2
    });
    let table = common::text(&net.tfx(&["status", "--node", "pbc-chengdu"]));
    assert!(table.contains("final to 3"), "{table}\n{status}");

    let file = net.dir.path().join("audit.tfxbundle");
    let mut args = vec!["audit", "export", "--node", "pbc-chengdu", "--out"];
    let out_path = file.display().to_string();
    args.push(&out_path);
    for id in bank.iter().chain(&science) {
        args.extend(["--record", id.as_str()]);
    }
    let out = net.tfx(&args);
    assert!(out.status.success(), "{}", common::text(&out));
    let again = net.tfx(&args);
    assert_eq!(again.status.code(), Some(2), "an existing --out is refused");

    let g = genesis(&net);
    let f = file.to_str().unwrap();
    let out = net.tfx(&["audit", "verify", f, "--genesis", &g]);
    let report = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("VERIFIED: all 5 records"), "{report}");
    let (_, json) = verify_json(&net, &file, Some(&g));
    assert_eq!(json["verified"], true);
    for r in json["records"].as_array().unwrap() {
        let fin = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "final")
            .unwrap();
        assert_eq!(fin["ok"], true, "{r}");
    }

    // The independent verifier, written from SPEC.md alone.
    let py = python_verify(&file, &g);
    assert_eq!(py.status.code(), Some(0), "{}", common::text(&py));

    // Every changed byte fails `tfx audit verify`'s checks (in-process: the same function the
    // command runs), naming a check; the command and the Python verifier on a spread of them.
    let bytes = std::fs::read(&file).unwrap();
    let g_bytes: [u8; 32] = hex::decode(&g).unwrap().try_into().unwrap();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        let r = tfx_protocol::bundle::verify_bundle(&t, Some(g_bytes));
        assert!(
            !r.passed(),
            "byte {i} changed and the bundle still verifies"
        );
    }
    let tampered = net.dir.path().join("tampered.tfxbundle");
    for i in [
        3,
        60,
        bytes.len() / 4,
        bytes.len() / 2,
        bytes.len() * 3 / 4,
        bytes.len() - 2,
    ] {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        std::fs::write(&tampered, &t).unwrap();
        let out = net.tfx(&[
            "audit",
            "verify",
            tampered.to_str().unwrap(),
            "--genesis",
            &g,
        ]);
        let text = common::text(&out);
        assert_ne!(out.status.code(), Some(0), "byte {i}: {text}");
        assert!(text.contains("FAILED"), "byte {i}: {text}");
        let py = python_verify(&tampered, &g);
        assert_ne!(
            py.status.code(),
            Some(0),
            "python, byte {i}: {}",
            common::text(&py)
        );
    }

    // Only the fields chosen travel; the bundle still verifies.
    let lean = net.dir.path().join("lean.tfxbundle");
    export(
        &net,
        "pbc-chengdu",
        &[&bank[0]],
        &["--field", "lender"],
        &lean,
    );
    let (_, json) = verify_json(&net, &lean, None);
    assert_eq!(json["verified"], true, "{json}");
    assert_eq!(json["genesis_pinned"], false);
    assert_eq!(json["records"][0]["fields"], serde_json::json!(["lender"]));

    // `tfx audit log` needs the store to itself.
    let out = net.tfx(&["audit", "log", "--node", "pbc-chengdu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::text(&out).contains("the node is running"),
        "{}",
        common::text(&out)
    );
    let stopped = net.signal("pbc-chengdu", 15);
    assert!(stopped.success());
    let out = net.tfx(&["audit", "log", "--node", "pbc-chengdu", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["verified"], true);
    let logs = json["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{json}");
    assert!(logs
        .iter()
        .all(|l| l["witnessed_checkpoints"].as_u64() >= Some(1)
            && l["cosignatures"].as_u64() >= Some(1)));
}

#[test]
fn a_member_run_twice_is_caught_by_honest_nodes_and_the_evidence_verifies_offline() {
    let mut net = Net::new();
    // Members joined one by one, each with the roster of its day: run everyone once so all
    // adopt the latest roster (the honest nodes must know bank-a to hear from either twin).
    for m in MEMBERS {
        net.start(m);
    }
    let latest = MEMBERS
        .iter()
        .filter_map(|m| Api::new(&net.member(m)).status())
        .filter_map(|s| s["roster_version"].as_u64())
        .max()
        .unwrap();
    for m in MEMBERS {
        wait_status(&net, m, Duration::from_secs(30), |s| {
            s["roster_version"].as_u64() == Some(latest)
        });
    }
    for m in MEMBERS {
        assert!(net.signal(m, 15).success());
    }
    let c = net.dir.path().join("c");
    // The twin: bank-a's whole directory — keys, identity, data — copied before it issues.
    let cp = Command::new("cp")
        .args(["-a"])
        .arg(c.join("bank-a"))
        .arg(c.join("bank-a-twin"))
        .status()
        .unwrap();
    assert!(cp.success());

    // Branch A reaches science-dept only.
    net.start("science-dept");
    net.start("bank-a");
    submit(&Api::new(&net.member("bank-a")), "credit", 3);
    wait_status(&net, "science-dept", Duration::from_secs(30), |s| {
        heads(s).get("bank-a").map(|h| h.0) == Some(3)
    });
    assert!(net.signal("bank-a", 15).success());
    assert!(net.signal("science-dept", 15).success());

    // Branch B — the same positions and more — reaches pbc-chengdu only.
    net.start("pbc-chengdu");
    net.start("bank-a-twin");
    submit(&Api::new(&net.member("bank-a-twin")), "credit", 5);
    wait_status(&net, "pbc-chengdu", Duration::from_secs(30), |s| {
        heads(s).get("bank-a").map(|h| h.0) == Some(5)
    });
    assert!(net.signal("bank-a-twin", 15).success());
    let clean = Api::new(&net.member("pbc-chengdu")).status().unwrap();
    assert!(clean["equivocations"].as_array().unwrap().is_empty());

    // The two honest nodes meet: each shows the other its signed checkpoints.
    let met = Instant::now();
    net.start("science-dept");
    for m in ["science-dept", "pbc-chengdu"] {
        let s = wait_status(&net, m, Duration::from_secs(10), |s| {
            s["equivocations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["origin"] == "bank-a")
        });
        assert_eq!(s["frozen"], serde_json::json!(["bank-a"]), "{m}: {s}");
    }
    let detected = met.elapsed();
    eprintln!("fork detected by both honest nodes {detected:?} after the second one started (anti-entropy 300 ms)");
    assert!(net.log("pbc-chengdu").contains("origin forked its log"));
    let table = common::text(&net.tfx(&["status", "--node", "science-dept"]));
    assert!(
        table.contains("ALERT: bank-a SIGNED TWO HISTORIES"),
        "{table}"
    );

    // A member that saw neither branch is sent the evidence when it connects.
    net.start("risk-warning");
    wait_status(&net, "risk-warning", Duration::from_secs(10), |s| {
        s["frozen"] == serde_json::json!(["bank-a"])
    });

    // The evidence verifies offline: in a bundle, where it marks bank-a's records from the fork
    // on, and in the stopped node's store.
    let science = Api::new(&net.member("science-dept"));
    let held = science
        .get("/v1/records?kind=credit&limit=10")
        .expect("query");
    let first = held["records"][0]["id"].as_str().unwrap().to_string();
    let file = net.dir.path().join("fork.tfxbundle");
    export(&net, "science-dept", &[&first], &[], &file);
    let (code, json) = verify_json(&net, &file, Some(&genesis(&net)));
    assert_eq!(code, Some(1), "{json}");
    let eq = &json["equivocations"][0];
    assert_eq!(eq["origin"], "bank-a", "{json}");
    let evidence_check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "equivocation evidence")
        .unwrap();
    assert_eq!(evidence_check["ok"], true, "{json}");
    let record = &json["records"][0];
    let disputed = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "no equivocation")
        .unwrap();
    assert_eq!(disputed["ok"], false, "{record}");
    assert_eq!(
        record["checks"][0]["ok"], true,
        "the record itself is bank-a's: {record}"
    );

    assert!(net.signal("science-dept", 15).success());
    let out = net.tfx(&["audit", "log", "--node", "science-dept"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ALERT: evidence verifies that bank-a signed two histories"),
        "{text}"
    );
}

#[test]
fn records_signed_before_a_key_rotation_verify_from_a_bundle_exported_after_it() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let old = submit(&Api::new(&net.member("bank-a")), "credit", 2);
    let two: BTreeMap<String, u64> = [("bank-a".to_string(), 2)].into();
    wait_converged(&net, &MEMBERS, &two, Duration::from_secs(30));

    // bank-a rotates its record-signing key through the governors, as an operator would.
    assert!(net.signal("bank-a", 15).success());
    let c = net.dir.path().join("c");
    let run = |args: &[&str]| {
        let out = net.tfx(args);
        assert!(out.status.success(), "{args:?}: {}", common::text(&out));
    };
    run(&["member", "rotate-key", "--dir", "bank-a"]);
    run(&[
        "member",
        "approve",
        "--consortium",
        "consortium",
        "bank-a/rotate-request.json",
        "--out",
        "bank-a.rotation",
    ]);
    run(&[
        "member",
        "join",
        "--dir",
        "bank-a",
        "--genesis",
        &genesis(&net),
        "bank-a.rotation",
    ]);
    assert!(c.join("bank-a/keys/retired").exists());
    net.start("bank-a");
    let new = submit(&Api::new(&net.member("bank-a")), "credit", 2);
    let four: BTreeMap<String, u64> = [("bank-a".to_string(), 4)].into();
    wait_converged(&net, &MEMBERS, &four, Duration::from_secs(30));
    wait_status(&net, "pbc-chengdu", Duration::from_secs(30), |s| {
        final_size(s, "bank-a") == 4
    });

    let file = net.dir.path().join("rotated.tfxbundle");
    export(&net, "pbc-chengdu", &[&old[0], &new[1]], &[], &file);
    let g = genesis(&net);
    let (_, json) = verify_json(&net, &file, Some(&g));
    assert_eq!(json["verified"], true, "{json}");
    // Two different keys signed the two records, each valid at its issue time.
    let signer = |i: usize| {
        json["records"][i]["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .split(" key ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(signer(0), signer(1), "{json}");
    let py = python_verify(&file, &g);
    assert_eq!(py.status.code(), Some(0), "{}", common::text(&py));
}
