#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! End-to-end tests of the `tfx` binary: key generation, validation, sign → verify → show, exit
//! codes (0 verified, 1 check failed, 2 error) and the messages an operator sees.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{p, text, tfx};

fn example(kind: &str) -> String {
    format!(
        "{}/../examples/records/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let out = tfx(&["key", "generate", "--out", p(&root.join("keys"))]);
        assert!(out.status.success(), "{}", text(&out));
        let out = tfx(&[
            "key",
            "pseudonym-secret",
            "--out",
            p(&root.join("ps.secret")),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        Fixture { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn sign(&self, kind: &str, seq: &str, out: &str) -> Output {
        tfx(&[
            "record",
            "sign",
            "--key",
            p(&self.path("keys/record-signing.key")),
            "--origin",
            "bank-a",
            "--seq",
            seq,
            "--in",
            &example(kind),
            "--out",
            p(&self.path(out)),
            "--issued-at",
            "2026-09-21T14:13:20Z",
            "--pseudonym-secret",
            p(&self.path("ps.secret")),
        ])
    }

    fn verify(&self, file: &str, json: bool) -> Output {
        let public = self.path("keys/record-signing.pub");
        let mut args = vec!["record", "verify", "--pub", p(&public)];
        if json {
            args.push("--json");
        }
        let f = self.path(file);
        args.push(p(&f));
        tfx(&args)
    }
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let f = Fixture::new();
    let mode = std::fs::metadata(f.path("keys/record-signing.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(f.path("ps.secret"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let again = tfx(&["key", "generate", "--out", p(&f.path("keys"))]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
}

#[test]
fn sign_verify_show_every_kind() {
    let f = Fixture::new();
    for (seq, kind) in ["credit", "ip-valuation", "monitoring", "risk-warning"]
        .iter()
        .enumerate()
    {
        let file = format!("{kind}.tfxr");
        let out = f.sign(kind, &seq.to_string(), &file);
        assert!(out.status.success(), "{}", text(&out));
        let out = f.verify(&file, true);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verified"], true);
        assert_eq!(v["kind"], *kind);
        assert_eq!(v["seq"], seq);
        assert_eq!(v["issued_at"], "2026-09-21T14:13:20.000Z");
        let out = tfx(&["record", "show", "--json", p(&f.path(&file))]);
        assert!(out.status.success(), "{}", text(&out));
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown["record_id"], v["record_id"]);
        let envelope = hex::decode(shown["envelope_hex"].as_str().unwrap()).unwrap();
        assert_eq!(envelope.first(), Some(&0xd2), "tag 18 COSE_Sign1");
        for d in shown["disclosures"].as_array().unwrap() {
            assert_eq!(d["digest_in_header"], true);
            assert_eq!(d["salt_hex"].as_str().unwrap().len(), 32);
        }
    }
    // The credit record carries derived fields, including the pseudonym.
    let out = tfx(&["record", "show", p(&f.path("credit.tfxr"))]);
    let shown = text(&out);
    assert!(
        shown.contains("subject_pseudonym")
            && shown.contains("contract_amount_band")
            && shown.contains("region_city"),
        "{shown}"
    );
}

#[test]
fn tampering_and_wrong_keys_fail_with_exit_1_and_name_the_check() {
    let f = Fixture::new();
    assert!(f.sign("credit", "0", "c.tfxr").status.success());
    let original = std::fs::read(f.path("c.tfxr")).unwrap();
    // Flip a byte inside the envelope's signed payload.
    let mut bytes = original.clone();
    bytes[120] ^= 0x01;
    std::fs::write(f.path("bad.tfxr"), &bytes).unwrap();
    let out = f.verify("bad.tfxr", true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert!(
        ["signature", "structure"].contains(&v["check"].as_str().unwrap()),
        "{v}"
    );
    // Flip a byte in the last disclosure (the file ends with it).
    let mut bytes = original.clone();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    std::fs::write(f.path("bad2.tfxr"), &bytes).unwrap();
    let out = f.verify("bad2.tfxr", false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("NOT verified (disclosure"),
        "{}",
        text(&out)
    );
    // A different member's key.
    let other = f.path("other");
    assert!(tfx(&["key", "generate", "--out", p(&other)])
        .status
        .success());
    let out = tfx(&[
        "record",
        "verify",
        "--pub",
        p(&other.join("record-signing.pub")),
        p(&f.path("c.tfxr")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("(key check)"), "{}", text(&out));
    // --origin binds the key to a member: the record claims bank-a, so ip-center fails.
    let public = f.path("keys/record-signing.pub");
    let out = tfx(&[
        "record",
        "verify",
        "--pub",
        p(&public),
        "--origin",
        "ip-center",
        p(&f.path("c.tfxr")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = tfx(&[
        "record",
        "verify",
        "--pub",
        p(&public),
        "--origin",
        "bank-a",
        p(&f.path("c.tfxr")),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn errors_exit_2_with_a_clear_chain() {
    let f = Fixture::new();
    let out = f.verify("missing.tfxr", false);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).starts_with("tfx: reading ") && text(&out).contains("missing.tfxr"),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(
        f.path("keys/record-signing.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = f.sign("credit", "0", "c.tfxr");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    assert!(!f.path("c.tfxr").exists(), "nothing written on error");
}

#[test]
fn invalid_records_are_explained_field_by_field() {
    let f = Fixture::new();
    let bad = f.path("bad.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example("credit")).unwrap()).unwrap();
    v["overdue_days"] = serde_json::json!(120);
    v["balance_fen"] = serde_json::json!(-1);
    v["maturity_date"] = serde_json::json!("2025-01-01");
    v["colour"] = serde_json::json!("red");
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = tfx(&["record", "validate", p(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("colour: unknown field for kind credit"), "{t}");
    assert!(t.contains("balance_fen = -1: must not be negative"), "{t}");
    // Cross-field rules run once fields are individually valid: fix the field errors and retry.
    v.as_object_mut().unwrap().remove("colour");
    v["balance_fen"] = serde_json::json!(1);
    std::fs::write(&bad, v.to_string()).unwrap();
    let t = text(&tfx(&["record", "validate", p(&bad)]));
    assert!(
        t.contains("maturity_date = \"2025-01-01\": is before start_date 2026-03-18"),
        "{t}"
    );
    assert!(
        t.contains("a loan 120 days overdue must be classified at least substandard"),
        "{t}"
    );
    let out = f.sign("credit", "0", "ok.tfxr");
    assert!(out.status.success());
    let out = tfx(&[
        "record",
        "sign",
        "--key",
        p(&f.path("keys/record-signing.key")),
        "--origin",
        "bank-a",
        "--seq",
        "1",
        "--in",
        p(&bad),
        "--out",
        p(&f.path("bad.tfxr")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("validating"), "{}", text(&out));
    assert!(!f.path("bad.tfxr").exists());
}

#[test]
fn bench_append_reports_same_run_ratios_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = tfx(&[
        "bench",
        "append",
        "--records",
        "200",
        "--runs",
        "1",
        "--concurrency",
        "1,4",
        "--json",
        "--dir",
        p(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bench"], "append");
    assert_eq!(v["records"], 200);
    let rows = v["append"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["concurrency"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 4]
    );
    for r in rows {
        let rate = r["appends_per_s"].as_f64().unwrap();
        let seal = v["seal_only_per_s"].as_f64().unwrap();
        assert!(rate > 0.0 && seal > 0.0);
        // Ratios are computed within the run, so they must agree with the rates to rounding.
        assert!(
            (r["vs_seal_only"].as_f64().unwrap() - rate / seal).abs() < 0.05 * rate / seal + 0.01,
            "{r}"
        );
    }
    assert!(
        v["disk_bytes_per_record"].as_f64().unwrap() > 500.0,
        "an envelope alone is ~1 KB"
    );
    // The temporary stores are removed afterwards.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
