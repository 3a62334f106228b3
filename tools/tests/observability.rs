#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! What an operator watches on a running node (DESIGN §10): the Prometheus metrics, parsed as a
//! scraper would, moving as records replicate; the health check turning unhealthy when no peer
//! is reachable; and JSON log lines from `--log-format json`. (Handshake-failure counters are
//! checked in `adversary.rs`, where the handshakes are refused.)

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::net::*;

/// The families DESIGN §10 and issue 7 name, each present on every scrape.
const FAMILIES: [&str; 10] = [
    "tfx_records_appended_total",
    "tfx_records_received_total",
    "tfx_replication_lag_records",
    "tfx_handshake_failures_total",
    "tfx_refused_disclosures_total",
    "tfx_equivocation_evidence_total",
    "tfx_store_size_bytes",
    "tfx_flush_seconds_bucket",
    "tfx_flush_seconds_sum",
    "tfx_flush_seconds_count",
];

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_with_replication_and_health_follows_the_peers() {
    let mut net = Net::new();
    for m in ["science-dept", "bank-a"] {
        let path = net.member(m).join("node.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str("\n[health]\nno_peer_ms = 1000\n");
        std::fs::write(&path, config).unwrap();
    }
    net.start_with("science-dept", &["--log-format", "json"]);
    net.start("bank-a");
    // bank-a issues credit records; science-dept receives them.
    let issuer = Metrics::new(&net.member("bank-a"));
    let receiver = Metrics::new(&net.member("science-dept"));
    let before = receiver.scrape();
    let text = |m: &BTreeMap<String, f64>| format!("{m:#?}");
    // Families without series yet (no records received, no failures) still declare themselves;
    // the rest must have samples.
    for family in [
        "tfx_refused_disclosures_total",
        "tfx_equivocation_evidence_total",
        "tfx_store_size_bytes",
        "tfx_flush_seconds_count{path=\"append\"}",
        "tfx_flush_seconds_count{path=\"sync\"}",
        "tfx_records_appended_total{origin=\"science-dept\"}",
    ] {
        assert!(before.contains_key(family), "{family}: {}", text(&before));
    }
    assert!(value(&before, "tfx_store_size_bytes") > 0.0);

    let api = Api::new(&net.member("bank-a"));
    let n = 25u64;
    for _ in 0..n {
        api.submit(&example("credit")).expect("submitted");
    }
    let expected = BTreeMap::from([("bank-a".to_string(), n)]);
    wait_converged(
        &net,
        &["science-dept", "bank-a"],
        &expected,
        Duration::from_secs(60),
    );
    let at_issuer = issuer.scrape();
    let after = receiver.scrape();
    assert_eq!(
        value(&at_issuer, "tfx_records_appended_total{origin=\"bank-a\"}"),
        n as f64
    );
    assert!(value(&at_issuer, "tfx_flush_seconds_count{path=\"append\"}") >= 1.0);
    assert_eq!(
        value(&after, "tfx_records_received_total{origin=\"bank-a\"}"),
        n as f64,
        "{}",
        text(&after)
    );
    assert!(value(&after, "tfx_flush_seconds_count{path=\"sync\"}") >= 1.0);
    assert_eq!(
        value(&after, "tfx_log_size_records{origin=\"bank-a\"}"),
        n as f64
    );
    assert_eq!(value(&after, "tfx_peer_connected{peer=\"bank-a\"}"), 1.0);
    // Every family the issue names is declared on the wire.
    let raw = ureq::get(format!(
        "http://{}/metrics",
        tfx_node::config::NodeConfig::load(&net.member("science-dept").join("node.toml"))
            .unwrap()
            .metrics_listen
    ))
    .call()
    .unwrap()
    .body_mut()
    .read_to_string()
    .unwrap();
    for family in FAMILIES {
        let declared = family
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            raw.contains(&format!("# TYPE {declared} ")),
            "{declared} not declared:\n{raw}"
        );
    }

    // Healthy while connected; on the local API too.
    let (code, body) = receiver.health();
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")), "{body}");
    let api_health = Api::new(&net.member("science-dept")).get("/v1/health");
    assert_eq!(api_health.unwrap()["status"], "ok");

    // With its only peer gone, science-dept turns unhealthy once no_peer_ms (1 s) has passed.
    net.signal("bank-a", 15);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = receiver.health();
        if code == 503 {
            assert_eq!(body["status"], "unhealthy");
            let reasons = body["reasons"].to_string();
            assert!(reasons.contains("no peer reachable"), "{reasons}");
            break;
        }
        assert!(Instant::now() < deadline, "still healthy: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // --log-format json: every line science-dept logged is one JSON object with a level.
    let log = net.log("science-dept");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
}
