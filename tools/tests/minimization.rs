#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is a failed test
//! Data minimization end to end (DESIGN §8), with real `tfx-node` processes and the starting
//! policy `certs/dev-consortium.sh` signs: records of every kind from three issuers about the
//! same enterprises replicate; then
//! - the risk-warning node's data directory (sled's files included) and its log contain none of
//!   the submitted USCCs or enterprise names, yet it links one enterprise's records from every
//!   issuer through the pseudonym, and every field it holds verifies against the issuer's
//!   signature (through the API and offline, from its store);
//! - every node holds, of every other origin's record, exactly its role's view of the fields
//!   the issuer disclosed — checked field by field;
//! - the disclosure ledgers of all nodes account for every field any node received;
//! - a policy version granting risk-warning a field is back-filled within a sync round, and the
//!   next version revoking it is purged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;
use tfx_protocol::policy::{parse_grants, Policy};
use tfx_protocol::record::{verify_record, KeySet};
use tfx_protocol::schema::RecordKind;
use tfx_protocol::store::Store;
use tfx_protocol::{LogIndex, MemberId, Timestamp};

/// Each member's role in the dev consortium.
const ROLES: [(&str, &str); 4] = [
    ("science-dept", "science-dept"),
    ("pbc-chengdu", "central-bank"),
    ("bank-a", "bank"),
    ("risk-warning", "risk-warning"),
];

/// (issuer, kind) of the records submitted about each enterprise.
const SUBMISSIONS: [(&str, &str); 4] = [
    ("bank-a", "credit"),
    ("bank-a", "ip-valuation"),
    ("pbc-chengdu", "credit"),
    ("science-dept", "monitoring"),
];

const ENTERPRISES: usize = 6;

fn enterprises() -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(repo().join("../shared/domain/enterprises.csv")).unwrap();
    csv.lines()
        .skip(1)
        .take(ENTERPRISES)
        .map(|l| {
            let mut c = l.split(',');
            (c.next().unwrap().to_owned(), c.next().unwrap().to_owned())
        })
        .collect()
}

fn record_for(kind: &str, uscc: &str, name: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&example(kind)).unwrap();
    v["subject_uscc"] = uscc.into();
    v["subject_name"] = name.into();
    serde_json::to_vec(&v).unwrap()
}

fn policy_of(toml: &str) -> Policy {
    Policy {
        consortium: "test".into(),
        version: 1,
        previous: None,
        issued_at: Timestamp(0),
        roster_version: 1,
        grants: parse_grants(toml).unwrap(),
    }
}

/// Every record a node can see (id → full API record).
fn held(api: &Api) -> BTreeMap<String, Value> {
    let list = api.get("/v1/records?limit=10000").unwrap();
    list["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap().to_owned();
            let full = api.get(&format!("/v1/records/{id}")).unwrap();
            assert_eq!(full["verified"], true);
            (id, full)
        })
        .collect()
}

fn field_names(r: &Value) -> BTreeSet<String> {
    r["fields"].as_object().unwrap().keys().cloned().collect()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_member_holds_exactly_its_view_and_risk_warning_never_an_identity() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let apis: BTreeMap<&str, Api> = MEMBERS
        .iter()
        .map(|m| (*m, Api::new(&net.member(m))))
        .collect();
    let people = enterprises();
    let mut submitted: BTreeMap<String, (String, String)> = BTreeMap::new(); // id → (issuer, uscc)
    for (uscc, name) in &people {
        for (issuer, kind) in SUBMISSIONS {
            let r = apis[issuer]
                .submit(&record_for(kind, uscc, name))
                .unwrap_or_else(|| panic!("{issuer} refused a {kind} record"));
            submitted.insert(
                r["id"].as_str().unwrap().to_owned(),
                (issuer.into(), uscc.clone()),
            );
        }
    }
    let expected: BTreeMap<String, u64> = [
        ("bank-a".to_string(), 2 * ENTERPRISES as u64),
        ("pbc-chengdu".to_string(), ENTERPRISES as u64),
        ("science-dept".to_string(), ENTERPRISES as u64),
    ]
    .into();
    wait_converged(&net, &MEMBERS, &expected, Duration::from_secs(60));
    // Records relayed by a member with a narrower view are completed from their origin.
    let complete = || {
        MEMBERS.iter().all(|m| {
            apis[m]
                .status()
                .is_some_and(|s| s["backfilling"].as_object().is_some_and(|b| b.is_empty()))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !complete() {
        if Instant::now() > deadline {
            let st: Vec<_> = MEMBERS.iter().map(|m| (m, apis[m].status())).collect();
            panic!(
                "relayed records not completed: {st:?}\n{}",
                net.log("risk-warning")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Field by field: what each member holds is its view of what the issuer disclosed.
    let toml = std::fs::read_to_string(net.member("consortium").join("policy.toml")).unwrap();
    let policy = policy_of(&toml);
    let holdings: BTreeMap<&str, BTreeMap<String, Value>> =
        MEMBERS.iter().map(|m| (*m, held(&apis[m]))).collect();
    for (member, role) in ROLES {
        let view = policy.view(&[role]);
        let mine = &holdings[member];
        assert!(
            submitted.keys().all(|id| mine.contains_key(id)),
            "{member} holds every envelope"
        );
        for (id, (issuer, _)) in &submitted {
            if issuer == member {
                continue;
            }
            let original = field_names(&holdings[issuer.as_str()][id]);
            let kind = RecordKind::parse(mine[id]["kind"].as_str().unwrap()).unwrap();
            let want: BTreeSet<String> = original
                .iter()
                .filter(|f| view.grants(kind, f))
                .cloned()
                .collect();
            assert_eq!(
                field_names(&mine[id]),
                want,
                "{member}'s copy of {issuer}'s {kind} record {id}"
            );
        }
    }

    // Risk-warning links one enterprise across every issuer through the pseudonym alone.
    let own = holdings["bank-a"]
        .values()
        .find(|r| {
            r["kind"] == "credit"
                && r["origin"] == "bank-a"
                && r["fields"]["subject_uscc"] == people[0].0.as_str()
        })
        .unwrap();
    let pseudonym = own["fields"]["subject_pseudonym"].as_str().unwrap();
    let linked = apis["risk-warning"]
        .get(&format!("/v1/records?subject={pseudonym}"))
        .unwrap();
    // (Its own warnings about the enterprise, issued under the same pseudonym, aside.)
    let issued: Vec<&Value> = linked["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "risk-warning")
        .collect();
    let origins: BTreeSet<&str> = issued
        .iter()
        .map(|r| r["origin"].as_str().unwrap())
        .collect();
    assert_eq!(issued.len(), SUBMISSIONS.len(), "{linked}");
    assert_eq!(origins, ["bank-a", "pbc-chengdu", "science-dept"].into());

    // The ledgers account for every field any member received.
    let mut ledger: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for m in MEMBERS {
        let rows = apis[m].get("/v1/ledger?limit=10000").unwrap();
        for row in rows["rows"].as_array().unwrap() {
            let key = (
                row["recipient"].as_str().unwrap().to_owned(),
                row["record"].as_str().unwrap().to_owned(),
            );
            let fields = row["fields"].as_array().unwrap().iter();
            ledger
                .entry(key)
                .or_default()
                .extend(fields.map(|f| f.as_str().unwrap().to_owned()));
        }
    }
    for (member, recs) in &holdings {
        for (id, r) in recs {
            if r["origin"] == *member {
                continue;
            }
            let logged = ledger
                .get(&(member.to_string(), id.clone()))
                .cloned()
                .unwrap_or_default();
            let missing: Vec<_> = field_names(r).difference(&logged).cloned().collect();
            assert!(
                missing.is_empty(),
                "{member} holds {missing:?} of {id}, no ledger shows them sent"
            );
        }
    }

    // Auditors read a node's ledger with the CLI: what bank-a sent risk-warning, names only.
    let out = net.tfx(&[
        "audit",
        "disclosures",
        "--node",
        net.member("bank-a").to_str().unwrap(),
        "--recipient",
        "risk-warning",
    ]);
    let table = common::text(&out);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("subject_pseudonym") && !table.contains("subject_uscc"),
        "{table}"
    );
    let rows: usize = table
        .lines()
        .find_map(|l| l.strip_suffix(" disclosed records"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Each of its own records at least once (a record pushed and fetched again shows twice).
    assert!(rows >= 2 * ENTERPRISES, "{table}");

    // A policy version granting risk-warning the lender of credit records: back-filled.
    let consortium = net.member("consortium");
    let grant = toml.replace(
        "[credit.risk-warning]\nfields = [\"subject_pseudonym\",",
        "[credit.risk-warning]\nfields = [\"lender\", \"subject_pseudonym\",",
    );
    assert_ne!(grant, toml);
    let v2 = install_policy(&net, &consortium, &grant, 2);
    let credit_ids: Vec<&String> = submitted
        .keys()
        .filter(|id| holdings["risk-warning"][*id]["kind"] == "credit")
        .collect();
    let rw = &apis["risk-warning"];
    wait_for(
        "the lender to be back-filled at risk-warning",
        Duration::from_secs(20),
        || {
            credit_ids.iter().all(|id| {
                let r = rw.get(&format!("/v1/records/{id}")).unwrap();
                r["fields"].get("lender").is_some()
            })
        },
    );
    assert!(net
        .log("risk-warning")
        .contains("back-filled fields the policy now grants"));
    // (The status is republished every 200 ms.)
    wait_for(
        "risk-warning to report policy v2",
        Duration::from_secs(5),
        || rw.status().unwrap()["policy_version"] == v2,
    );

    // The next version takes it away again: purged, envelopes and the rest kept.
    let v3 = install_policy(&net, &consortium, &toml, 3);
    wait_for(
        "the lender to be purged at risk-warning",
        Duration::from_secs(20),
        || {
            rw.status().unwrap()["policy_version"] == v3
                && credit_ids.iter().all(|id| {
                    let r = rw.get(&format!("/v1/records/{id}")).unwrap();
                    r["fields"].get("lender").is_none() && r["fields"].get("balance_band").is_some()
                })
        },
    );
    assert!(net
        .log("risk-warning")
        .contains("purged disclosures beyond this member's view"));

    // Stop everything; then the byte search and the offline verification of risk-warning.
    for m in MEMBERS {
        assert!(net.signal(m, 15).success(), "{m}:\n{}", net.log(m));
    }
    let log = net.log("risk-warning");
    let needles: Vec<&str> = people
        .iter()
        .flat_map(|(u, n)| [u.as_str(), n.as_str()])
        .collect();
    let found = files_containing(&net.member("risk-warning"), &needles);
    assert!(
        found.is_empty(),
        "risk-warning's files hold identities: {found:?}"
    );
    assert!(
        needles.iter().all(|n| !log.contains(n)),
        "risk-warning's log names an enterprise"
    );
    assert!(!net
        .member("risk-warning")
        .join("keys/pseudonym.secret")
        .exists());
    let keys = KeySet(
        MEMBERS
            .iter()
            .map(|m| {
                let k = tfx_node::keyfile::load_verifying_key(
                    &net.member(m).join("keys/record-signing.pub"),
                )
                .unwrap();
                (MemberId::new(m).unwrap(), k)
            })
            .collect(),
    );
    let store =
        tfx_node::sled_store::SledStore::open_existing(&net.member("risk-warning").join("data"))
            .unwrap();
    let mut fields = 0;
    for origin in store.origins().unwrap() {
        for r in store.records(&origin, LogIndex(0), usize::MAX).unwrap() {
            let v = verify_record(&r.envelope, &r.disclosures, &keys)
                .unwrap_or_else(|e| panic!("{origin}#{}: {e}", r.seq.0));
            fields += v.disclosures.len();
        }
    }
    assert!(fields > 0, "risk-warning holds fields, all verified");
}

/// Signs `toml` as the consortium's policy `version` and installs it on science-dept's node;
/// returns the version as JSON for status comparisons.
fn install_policy(net: &Net, consortium: &Path, toml: &str, version: u64) -> Value {
    let file = consortium.join(format!("policy-v{version}.toml"));
    std::fs::write(&file, toml).unwrap();
    let out = net.tfx(&[
        "policy",
        "sign",
        "--consortium",
        consortium.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let signed = consortium.join(format!("policy/v{version:06}.tfxpolicy"));
    let out = net.tfx(&[
        "policy",
        "install",
        "--node",
        net.member("science-dept").to_str().unwrap(),
        signed.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(common::text(&out).contains(&format!("node now at policy v{version}")));
    Value::from(version)
}

#[test]
fn a_warning_is_raised_on_its_inputs_reaches_the_regulators_and_resolves_only_there() {
    let mut net = Net::new();
    for m in MEMBERS {
        net.start(m);
    }
    let (uscc, name) = enterprises().remove(5);
    let mut overdue: Value = serde_json::from_slice(&record_for("credit", &uscc, &name)).unwrap();
    overdue["overdue_days"] = 120.into();
    overdue["classification"] = "substandard".into();
    let basis = Api::new(&net.member("bank-a"))
        .submit(&serde_json::to_vec(&overdue).unwrap())
        .expect("bank-a accepts the record");
    let basis = basis["id"].as_str().unwrap().to_owned();
    let warnings = |m: &str| -> Vec<Value> {
        let out = net.tfx(&[
            "warnings",
            "--node",
            net.member(m).to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", common::text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["warnings"].as_array().unwrap().clone()
    };
    // The central bank branch holds the warning's fields and, through its own holdings of the
    // pseudonym, the enterprise.
    wait_for(
        "the warning to reach pbc-chengdu",
        Duration::from_secs(30),
        || !warnings("pbc-chengdu").is_empty(),
    );
    let at_pbc = warnings("pbc-chengdu");
    assert_eq!(at_pbc.len(), 1, "{at_pbc:?}");
    let w = &at_pbc[0];
    assert_eq!(w["origin"], "risk-warning");
    assert_eq!(w["level"], "orange");
    assert_eq!(w["rule_ids"], serde_json::json!(["overdue-any-lender"]));
    assert_eq!(w["basis_record_ids"], serde_json::json!([basis]));
    assert_eq!(w["subject_uscc"], uscc.as_str());
    assert_eq!(w["subject_name"], name.as_str());
    // The risk-warning member issued it knowing the pseudonym only.
    let own = warnings("risk-warning");
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["subject_pseudonym"], w["subject_pseudonym"]);
    assert!(own[0]["subject_uscc"].is_null(), "{own:?}");
    // Members the policy gives no warning fields hold the envelope alone: nothing to resolve.
    for m in ["science-dept", "bank-a"] {
        wait_for(
            "the warning's envelope everywhere",
            Duration::from_secs(30),
            || warnings(m).len() == 1,
        );
        let theirs = warnings(m);
        assert!(
            theirs[0]["subject_pseudonym"].is_null() && theirs[0]["subject_uscc"].is_null(),
            "{m}: {theirs:?}"
        );
    }
    assert!(net.log("risk-warning").contains("risk warning issued"));
}
