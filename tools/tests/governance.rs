#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! End-to-end onboarding through the `tfx` binary with a 2-of-3 governor threshold where only one
//! governor key is held by the consortium operator: init, member init, approve (stops for
//! signatures), roster sign, approve (bundle), join — and the refusals, each leaving nothing
//! written.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{p as s, text, tfx};

fn ok(args: &[&str]) -> String {
    let o = tfx(args);
    assert_eq!(o.status.code(), Some(0), "tfx {args:?}: {}", text(&o));
    text(&o)
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A consortium governed 2-of-3; the operator holds only science-dept's key.
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let w = World {
            root: tmp.path().to_path_buf(),
            _tmp: tmp,
        };
        ok(&["key", "generate", "--out", s(&w.p("lf"))]);
        ok(&["key", "generate", "--out", s(&w.p("cb"))]);
        let lf = format!("local-finance={}", s(&w.p("lf/record-signing.pub")));
        let cb = format!("central-bank={}", s(&w.p("cb/record-signing.pub")));
        let out = ok(&[
            "consortium",
            "init",
            "--dir",
            s(&w.p("cons")),
            "--name",
            "Sichuan test",
            "--governor",
            "science-dept",
            "--governor",
            &lf,
            "--governor",
            &cb,
            "--threshold",
            "2",
        ]);
        assert!(
            out.contains("roster v1 needs 2 governor signatures"),
            "{out}"
        );
        ok(&[
            "roster",
            "sign",
            "--key",
            s(&w.p("lf/record-signing.key")),
            s(&w.p("cons/roster/pending/v000001.tfxroster")),
        ]);
        w
    }

    fn genesis(&self) -> String {
        std::fs::read_to_string(self.p("cons/genesis.sha256"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn member_init(&self, id: &str, role: &str, port: u16) {
        let endpoint = format!("127.0.0.1:{port}");
        ok(&[
            "member",
            "init",
            "--dir",
            s(&self.p(id)),
            "--id",
            id,
            "--name",
            &format!("{id} test"),
            "--role",
            role,
            "--endpoint",
            &endpoint,
        ]);
    }

    /// `tfx member approve` of `id`'s join request, writing `id.bundle`.
    fn approve(&self, id: &str) -> std::process::Output {
        tfx(&[
            "member",
            "approve",
            "--consortium",
            s(&self.p("cons")),
            s(&self.p(&format!("{id}/join-request.json"))),
            "--out",
            s(&self.p(&format!("{id}.bundle"))),
        ])
    }

    /// Approves `id` with the second signature from central-bank; returns the bundle path.
    fn admit(&self, id: &str, version: u64) -> PathBuf {
        let bundle = self.p(&format!("{id}.bundle"));
        let first = self.approve(id);
        assert_eq!(first.status.code(), Some(1), "{}", text(&first));
        assert!(
            text(&first).contains(&format!(
                "roster version {version}: signed by 1 of 2 required governors"
            )),
            "{}",
            text(&first)
        );
        assert!(!bundle.exists(), "no bundle before the threshold is met");
        let pending = self.p(&format!("cons/roster/pending/v{version:06}.tfxroster"));
        ok(&[
            "roster",
            "sign",
            "--key",
            s(&self.p("cb/record-signing.key")),
            s(&pending),
        ]);
        let again = self.approve(id);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
        let out = text(&again);
        assert!(out.contains(&format!("adopted roster v{version}")), "{out}");
        bundle
    }
}

#[test]
fn onboarding_with_a_two_of_three_threshold() {
    let w = World::new();
    w.member_init("bank-a", "bank", 7401);
    w.member_init("ip-center", "ip-center", 7402);
    let a = w.admit("bank-a", 2);
    let b = w.admit("ip-center", 3);
    // Leftovers of a first join that failed halfway (say, disk full) do not block a re-run.
    std::fs::write(w.p("bank-a/ca.crt"), "partial").unwrap();
    let out = ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &w.genesis(),
        s(&a),
    ]);
    assert!(std::fs::read_to_string(w.p("bank-a/ca.crt"))
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        out.contains("bank-a joined \"Sichuan test\": roster v2 verified from genesis"),
        "{out}"
    );
    // ip-center joins from a bundle carrying v1..v3.
    let out = ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("ip-center")),
        "--genesis",
        &w.genesis(),
        s(&b),
    ]);
    assert!(out.contains("roster v3 verified"), "{out}");
    for f in ["node.toml", "ca.crt", "tls.crt", "roster/v000003.tfxroster"] {
        assert!(w.p("ip-center").join(f).exists(), "{f}");
    }
    let show = ok(&["roster", "show", s(&w.p("cons"))]);
    assert!(
        show.contains("roster v3")
            && show.contains("bank-a")
            && show.contains("ip-center")
            && show.contains("days left"),
        "{show}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["roster", "show", "--json", s(&w.p("cons"))])).unwrap();
    assert_eq!(json["members"].as_array().unwrap().len(), 2);
    assert_eq!(json["threshold"], 2);
    let files: Vec<String> = (1..=3)
        .map(|v| s(&w.p(&format!("cons/roster/v{v:06}.tfxroster"))).to_string())
        .collect();
    let mut args = vec!["roster", "verify", "--genesis"];
    let g = w.genesis();
    args.push(&g);
    args.extend(files.iter().map(String::as_str));
    assert!(ok(&args).contains("current v3 with 2 members"));

    // Rotate bank-a's record-signing key: a request signed by both keys, the usual 2-of-3
    // approval, and an update bundle that switches the node's key files.
    let old_pub = std::fs::read(w.p("bank-a/keys/record-signing.pub")).unwrap();
    ok(&["member", "rotate-key", "--dir", s(&w.p("bank-a"))]);
    let again = tfx(&["member", "rotate-key", "--dir", s(&w.p("bank-a"))]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a second rotation while one is pending is refused"
    );
    let rotation = w.p("bank-a.rotation");
    let approve = |expect: i32| {
        let o = tfx(&[
            "member",
            "approve",
            "--consortium",
            s(&w.p("cons")),
            s(&w.p("bank-a/rotate-request.json")),
            "--out",
            s(&rotation),
        ]);
        assert_eq!(o.status.code(), Some(expect), "{}", text(&o));
        text(&o)
    };
    assert!(approve(1).contains("rotating bank-a's record-signing key"));
    ok(&[
        "roster",
        "sign",
        "--key",
        s(&w.p("cb/record-signing.key")),
        s(&w.p("cons/roster/pending/v000004.tfxroster")),
    ]);
    approve(0);
    // Simulate a switch interrupted halfway: the old key already linked into retired/ and the
    // new private key moved in, the public key not yet. Running join again must finish it.
    let keys = w.p("bank-a/keys");
    let old_key_bytes = std::fs::read(keys.join("record-signing.key")).unwrap();
    let old_id = tfx_node::keyfile::load_verifying_key(&keys.join("record-signing.pub"))
        .unwrap()
        .id();
    std::fs::create_dir(keys.join("retired")).unwrap();
    let retired_key = keys.join(format!("retired/record-signing.{old_id}.key"));
    std::fs::hard_link(keys.join("record-signing.key"), &retired_key).unwrap();
    std::fs::rename(
        keys.join("record-signing.next.key"),
        keys.join("record-signing.key"),
    )
    .unwrap();
    let out = ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &w.genesis(),
        s(&rotation),
    ]);
    assert_eq!(
        std::fs::read(&retired_key).unwrap(),
        old_key_bytes,
        "the old key survives, retired"
    );
    let new_pub = tfx_node::keyfile::load_verifying_key(&keys.join("record-signing.pub")).unwrap();
    let new_key = tfx_node::keyfile::load_signing_key(&keys.join("record-signing.key")).unwrap();
    assert_eq!(
        new_key.verifying_key(),
        &new_pub,
        "private and public key files agree"
    );
    assert!(
        out.contains("record-signing key rotated") && out.contains("updated to roster v4"),
        "{out}"
    );
    assert_ne!(
        std::fs::read(w.p("bank-a/keys/record-signing.pub")).unwrap(),
        old_pub
    );
    assert!(!w.p("bank-a/keys/record-signing.next.key").exists());
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["roster", "show", "--json", s(&w.p("cons"))])).unwrap();
    let keys = json["members"][0]["keys"].as_array().unwrap().clone();
    assert_eq!(
        keys.len(),
        2,
        "old key kept (closed window) beside the new one: {keys:?}"
    );
    assert!(keys[0]["valid_until"].is_string() && keys[1]["valid_until"].is_null());

    // Renew bank-a's certificate for the same TLS key.
    let old_cert = std::fs::read_to_string(w.p("bank-a/tls.crt")).unwrap();
    ok(&["member", "renew", "--dir", s(&w.p("bank-a"))]);
    let renewal = w.p("bank-a.renewal");
    let renew = |expect: i32| {
        let o = tfx(&[
            "member",
            "approve",
            "--consortium",
            s(&w.p("cons")),
            s(&w.p("bank-a/renew-request.json")),
            "--out",
            s(&renewal),
        ]);
        assert_eq!(o.status.code(), Some(expect), "{}", text(&o));
        text(&o)
    };
    assert!(renew(1).contains("renewing bank-a's certificate"));
    ok(&[
        "roster",
        "sign",
        "--key",
        s(&w.p("cb/record-signing.key")),
        s(&w.p("cons/roster/pending/v000005.tfxroster")),
    ]);
    assert!(renew(0).contains("bank-a's certificate renewed in roster v5"));
    let out = ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &w.genesis(),
        s(&renewal),
    ]);
    assert!(
        out.contains("installed the renewed certificate") && out.contains("updated to roster v5"),
        "{out}"
    );
    let new_cert = std::fs::read_to_string(w.p("bank-a/tls.crt")).unwrap();
    assert_ne!(new_cert, old_cert);
    assert_eq!(
        std::fs::read_to_string(w.p("cons/issued/bank-a.crt")).unwrap(),
        new_cert
    );

    // Revoke bank-a: proposed with the operator's signature, adopted after central-bank's.
    let cons = w.p("cons");
    let revoke = [
        "member",
        "revoke",
        "--consortium",
        s(&cons),
        "--id",
        "bank-a",
        "--reason",
        "left the programme",
    ];
    let o = tfx(&revoke);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("roster v6 (revoking bank-a) proposed: roster version 6: signed by 1 of 2 required governors"), "{}", text(&o));
    ok(&[
        "roster",
        "sign",
        "--key",
        s(&w.p("cb/record-signing.key")),
        s(&w.p("cons/roster/pending/v000006.tfxroster")),
    ]);
    let out = ok(&revoke);
    assert!(
        out.contains("adopted roster v6") && out.contains("bank-a is revoked as of"),
        "{out}"
    );
    assert!(
        ok(&revoke).contains("bank-a is revoked as of"),
        "idempotent"
    );
    let show = ok(&["roster", "show", s(&w.p("cons"))]);
    assert!(
        show.contains("REVOKED") && show.contains("left the programme"),
        "{show}"
    );
    let o = tfx(&[
        "member",
        "revoke",
        "--consortium",
        s(&w.p("cons")),
        "--id",
        "nobody",
        "--reason",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("nobody is not a member"), "{}", text(&o));
}

#[test]
fn refusals_write_nothing() {
    let w = World::new();
    // A join request with an unknown role.
    let o = tfx(&[
        "member",
        "init",
        "--dir",
        s(&w.p("x")),
        "--id",
        "x",
        "--name",
        "X",
        "--role",
        "banker",
        "--endpoint",
        "h:1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown role \"banker\""), "{}", text(&o));
    assert!(!w.p("x").exists());
    // A witness quorum outside 1..=256.
    for q in ["0", "257"] {
        let o = tfx(&[
            "consortium",
            "init",
            "--dir",
            s(&w.p("q")),
            "--name",
            "Q",
            "--governor",
            "g",
            "--witness-quorum",
            q,
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains("--witness-quorum"), "{}", text(&o));
        assert!(!w.p("q").exists());
    }
    let o = ok(&[
        "consortium",
        "init",
        "--dir",
        s(&w.p("q")),
        "--name",
        "Q",
        "--governor",
        "g",
        "--witness-quorum",
        "2",
    ]);
    assert!(o.contains("roster"), "{o}");
    let shown = ok(&["roster", "show", "--json", s(&w.p("q"))]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["witness_quorum"], 2, "{shown}");
    w.member_init("bank-a", "bank", 7401);
    w.member_init("bank-b", "bank", 7403);
    let bundle = w.admit("bank-a", 2);
    let dir_b = w.p("bank-b");
    let before: Vec<_> = std::fs::read_dir(&dir_b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // A bundle whose certificate does not match the member's key (bank-a's bundle at bank-b).
    let g0 = w.genesis();
    let o = tfx(&[
        "member",
        "join",
        "--dir",
        s(&dir_b),
        "--genesis",
        &g0,
        s(&bundle),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("the bundle is for bank-a, this node is bank-b"),
        "{}",
        text(&o)
    );
    // A tampered bundle: one hex digit of the newest roster changed.
    let mut b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let last = b["rosters"].as_array().unwrap().len() - 1;
    let mut hexed = b["rosters"][last].as_str().unwrap().to_string();
    let i = hexed.len() / 2;
    let flipped = if &hexed[i..=i] == "0" { "1" } else { "0" };
    hexed.replace_range(i..=i, flipped);
    b["rosters"][last] = serde_json::json!(hexed);
    let tampered = w.p("tampered.bundle");
    std::fs::write(&tampered, b.to_string()).unwrap();
    let o = tfx(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &g0,
        s(&tampered),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("checking bundle"), "{}", text(&o));
    // The wrong trust anchor.
    let o = tfx(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &"ab".repeat(32),
        s(&bundle),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("is not the consortium's genesis"),
        "{}",
        text(&o)
    );
    for dir in [w.p("bank-a"), dir_b.clone()] {
        assert!(
            !dir.join("node.toml").exists() && !dir.join("roster").exists(),
            "nothing installed in {}",
            dir.display()
        );
    }
    let after: Vec<_> = std::fs::read_dir(&dir_b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    // A roster signed by too few governors does not verify: bank-b's proposal (v3) holds only
    // the operator's signature so far.
    let g = w.genesis();
    let o = tfx(&[
        "member",
        "approve",
        "--consortium",
        s(&w.p("cons")),
        s(&w.p("bank-b/join-request.json")),
        "--out",
        s(&w.p("b.bundle")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v1 = w.p("cons/roster/v000001.tfxroster");
    let v2 = w.p("cons/roster/v000002.tfxroster");
    let v3 = w.p("cons/roster/pending/v000003.tfxroster");
    let o = tfx(&["roster", "verify", "--genesis", &g, s(&v1), s(&v2), s(&v3)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("roster version 3: signed by 1 of 2 required governors"),
        "{}",
        text(&o)
    );
    // A roster that does not chain to the current one: v2 twice, or v2 without v1.
    let o = tfx(&["roster", "verify", "--genesis", &g, s(&v1), s(&v1)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("does not follow version 1"),
        "{}",
        text(&o)
    );
    let o = tfx(&["roster", "verify", "--genesis", &g, s(&v2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not the trusted genesis"), "{}", text(&o));
    // Governor keys with loose permissions are refused, naming the fix.
    use std::os::unix::fs::PermissionsExt;
    let key = w.p("cb/record-signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(&v3).unwrap();
    let o = tfx(&["roster", "sign", "--key", s(&key), s(&v3)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&v3).unwrap(),
        before,
        "the proposal is untouched"
    );
}

#[test]
fn dev_consortium_script_builds_four_members() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../certs/dev-consortium.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .env("TFX", env!("CARGO_BIN_EXE_tfx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("roster v5") && t.contains("4 members"), "{t}");
    let secret = std::fs::read(dir.join("consortium/pseudonym.secret")).unwrap();
    for m in ["science-dept", "pbc-chengdu", "bank-a", "risk-warning"] {
        assert!(dir.join(m).join("node.toml").exists(), "{m}");
        assert!(t.contains(&format!("{m} joined")), "{t}");
        // The secret reached the issuers through their bundles, and never risk-warning.
        let installed = std::fs::read(dir.join(m).join("keys/pseudonym.secret")).ok();
        if m == "risk-warning" {
            assert_eq!(installed, None);
        } else {
            assert_eq!(installed.as_ref(), Some(&secret), "{m}");
        }
    }
    // Running it again on the same directory refuses rather than overwriting keys.
    let again = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .env("TFX", env!("CARGO_BIN_EXE_tfx"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}

/// The attacks a security review of onboarding reproduced, each now refused.
#[test]
fn review_attacks_are_refused() {
    let w = World::new();
    w.member_init("bank-a", "bank", 7401);
    let a_bundle = w.admit("bank-a", 2);
    // First join needs the published genesis: the bundle's own claim is not a trust anchor.
    let o = tfx(&["member", "join", "--dir", s(&w.p("bank-a")), s(&a_bundle)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--genesis HASH is required on first join"),
        "{}",
        text(&o)
    );
    ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        "--genesis",
        &w.genesis(),
        s(&a_bundle),
    ]);

    // A foreign consortium approves bank-a's own (public) join request: its bundle is refused.
    ok(&[
        "consortium",
        "init",
        "--dir",
        s(&w.p("evil")),
        "--name",
        "Evil",
        "--governor",
        "mallory",
        "--threshold",
        "1",
    ]);
    let evil = w.p("evil.bundle");
    ok(&[
        "member",
        "approve",
        "--consortium",
        s(&w.p("evil")),
        s(&w.p("bank-a/join-request.json")),
        "--out",
        s(&evil),
    ]);
    let o = tfx(&["member", "join", "--dir", s(&w.p("bank-a")), s(&evil)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not the consortium's genesis"),
        "{}",
        text(&o)
    );

    // Snapshot bank-a's keys before rotating (the copy a thief would keep).
    let thief = w.p("thief");
    let cp = Command::new("cp")
        .args(["-a", s(&w.p("bank-a")), s(&thief)])
        .status()
        .unwrap();
    assert!(cp.success());
    ok(&["member", "rotate-key", "--dir", s(&w.p("bank-a"))]);
    let approve = |req: &str, out: &str| {
        tfx(&[
            "member",
            "approve",
            "--consortium",
            s(&w.p("cons")),
            s(&w.p(req)),
            "--out",
            s(&w.p(out)),
        ])
    };
    assert_eq!(
        approve("bank-a/rotate-request.json", "rot.bundle")
            .status
            .code(),
        Some(1)
    );
    ok(&[
        "roster",
        "sign",
        "--key",
        s(&w.p("cb/record-signing.key")),
        s(&w.p("cons/roster/pending/v000003.tfxroster")),
    ]);
    assert_eq!(
        approve("bank-a/rotate-request.json", "rot.bundle")
            .status
            .code(),
        Some(0)
    );
    ok(&[
        "member",
        "join",
        "--dir",
        s(&w.p("bank-a")),
        s(&w.p("rot.bundle")),
    ]);
    // An older bundle cannot roll the node back.
    let o = tfx(&["member", "join", "--dir", s(&w.p("bank-a")), s(&a_bundle)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("is not newer than the installed v3"),
        "{}",
        text(&o)
    );
    // The rotated-out key (inside its overlap window) cannot rotate in a key of its choosing.
    ok(&["member", "rotate-key", "--dir", s(&thief)]);
    let o = approve("thief/rotate-request.json", "thief.bundle");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not its current record-signing key"),
        "{}",
        text(&o)
    );

    // A governor rewrites a pending proposal to govern alone: the operator refuses to sign it.
    let cons_dir = w.p("cons");
    let revoke = [
        "member",
        "revoke",
        "--consortium",
        s(&cons_dir),
        "--id",
        "bank-a",
        "--reason",
        "test",
    ];
    assert_eq!(tfx(&revoke).status.code(), Some(1));
    let pending = w.p("cons/roster/pending/v000004.tfxroster");
    let proposal =
        tfx_protocol::roster::SignedRoster::decode(&std::fs::read(&pending).unwrap()).unwrap();
    let mut forged = proposal.roster.clone();
    let cb_key = tfx_node::keyfile::load_signing_key(&w.p("cb/record-signing.key")).unwrap();
    forged
        .governors
        .retain(|g| g.key == *cb_key.verifying_key());
    forged.threshold = 1;
    let mut forged = tfx_protocol::roster::SignedRoster::new(forged).unwrap();
    forged.sign(&cb_key);
    std::fs::write(&pending, forged.encode()).unwrap();
    let o = tfx(&revoke);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is not the proposal this consortium directory built"),
        "{}",
        text(&o)
    );
    assert!(
        !w.p("cons/roster/v000004.tfxroster").exists(),
        "nothing adopted"
    );
}

/// The consortium pseudonym secret travels sealed inside join bundles: issuers get it (0600,
/// wired into node.toml), risk-warning and auditor members never do, and a bundle whose sealed
/// secret was altered, or that offers it to a role that must not hold it, installs nothing.
#[test]
fn pseudonym_secret_is_sealed_to_issuers_only() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let secret_path = w.p("cons/pseudonym.secret");
    let mode = std::fs::metadata(&secret_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the consortium's copy is private");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    let secret = secret.trim();
    w.member_init("bank-a", "bank", 7401);
    w.member_init("risk", "risk-warning", 7402);
    w.member_init("aud", "auditor", 7403);
    let bank_bundle = w.admit("bank-a", 2);
    let risk_bundle = w.admit("risk", 3);
    let aud_bundle = w.admit("aud", 4);
    let read = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let bank = read(&bank_bundle);
    assert!(bank["pseudonym_secret"].is_object(), "{bank}");
    assert!(read(&risk_bundle).get("pseudonym_secret").is_none());
    assert!(read(&aud_bundle).get("pseudonym_secret").is_none());
    for b in [&bank_bundle, &risk_bundle, &aud_bundle] {
        let text = std::fs::read_to_string(b).unwrap();
        assert!(!text.contains(secret), "the secret is never in the clear");
    }
    let g = w.genesis();
    let join = |id: &str, bundle: &PathBuf| {
        tfx(&[
            "member",
            "join",
            "--dir",
            s(&w.p(id)),
            "--genesis",
            &g,
            s(bundle),
        ])
    };
    let nothing_installed = |id: &str| {
        let dir = w.p(id);
        assert!(!dir.join("node.toml").exists(), "{id}: no node.toml");
        assert!(!dir.join("roster").exists(), "{id}: no roster");
        assert!(
            !dir.join("keys/pseudonym.secret").exists(),
            "{id}: no secret"
        );
    };

    // One flipped hex digit of the sealed secret: refused, nothing written.
    let mut tampered = bank.clone();
    let mut ct = tampered["pseudonym_secret"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = if ct.starts_with('0') { "1" } else { "0" };
    ct.replace_range(0..1, flipped);
    tampered["pseudonym_secret"]["ciphertext"] = serde_json::json!(ct);
    let tampered_path = w.p("tampered.bundle");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    let o = join("bank-a", &tampered_path);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not signed by the consortium CA"),
        "{}",
        text(&o)
    );
    nothing_installed("bank-a");

    // bank-a's sealed secret copied into risk's bundle: risk must never hold it.
    let mut offered = read(&risk_bundle);
    offered["pseudonym_secret"] = bank["pseudonym_secret"].clone();
    let offered_path = w.p("offered.bundle");
    std::fs::write(&offered_path, offered.to_string()).unwrap();
    let o = join("risk", &offered_path);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("must never hold"), "{}", text(&o));
    nothing_installed("risk");

    // The genuine bundles.
    let o = join("bank-a", &bank_bundle);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("pseudonym secret unsealed"),
        "{}",
        text(&o)
    );
    let installed = w.p("bank-a/keys/pseudonym.secret");
    assert_eq!(std::fs::read_to_string(&installed).unwrap().trim(), secret);
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = std::fs::read_to_string(w.p("bank-a/node.toml")).unwrap();
    assert!(
        config.contains("pseudonym_secret = \"keys/pseudonym.secret\""),
        "{config}"
    );
    for id in ["risk", "aud"] {
        let o = join(id, &w.p(&format!("{id}.bundle")));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(!w.p(id).join("keys/pseudonym.secret").exists(), "{id}");
        let config = std::fs::read_to_string(w.p(id).join("node.toml")).unwrap();
        assert!(!config.contains("pseudonym_secret"), "{id}: {config}");
    }

    // A consortium without its secret refuses to admit an issuer, before proposing anything.
    std::fs::remove_file(&secret_path).unwrap();
    w.member_init("bank-b", "bank", 7404);
    let o = w.approve("bank-b");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("tfx key pseudonym-secret"),
        "{}",
        text(&o)
    );
    assert!(!w.p("cons/roster/pending/v000005.tfxroster").exists());
    assert!(!w.p("bank-b.bundle").exists());
}
