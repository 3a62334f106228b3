#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! Every vector in `shared/domain/vectors.json` is accepted or rejected as listed — for the rule
//! listed — and every enterprise in `shared/domain/enterprises.csv` has a valid USCC.

use tfx_protocol::domain::{PatentNumber, Uscc};

fn vectors() -> serde_json::Value {
    let path = tfx_tests::shared_dir().join("domain/vectors.json");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must sit beside the repo)", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn uscc_vectors() {
    let v = vectors();
    let valid = strings(&v["uscc_valid"]);
    assert!(valid.len() >= 20);
    for code in valid {
        assert_eq!(
            Uscc::parse(code).map(|u| u.as_str().to_string()),
            Ok(code.to_string())
        );
    }
    for case in v["uscc_invalid"].as_array().unwrap() {
        let code = case["code"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let result = Uscc::parse(code);
        if case["normalised_valid"].as_bool() == Some(true) {
            assert_eq!(
                result.map(|u| u.as_str().to_string()),
                Ok(code.to_ascii_uppercase()),
                "{code}"
            );
            continue;
        }
        let rule = result.expect_err(code);
        let expected = match why {
            "check character" => "check character",
            "character outside the USCC alphabet" => "outside the USCC alphabet",
            "length" => "18 characters",
            "region code is not six digits" => "region code",
            other => panic!("unknown vector reason {other:?}"),
        };
        assert!(
            rule.contains(expected),
            "{code}: rejected for {rule:?}, vectors say {why:?}"
        );
    }
}

#[test]
fn patent_vectors() {
    let v = vectors();
    for n in strings(&v["patent_valid"]) {
        assert_eq!(
            PatentNumber::parse(n).map(|p| p.as_str().to_string()),
            Ok(n.to_string())
        );
    }
    for n in strings(&v["patent_invalid"]) {
        assert_eq!(
            PatentNumber::parse(n),
            Err("check character does not match"),
            "{n}"
        );
    }
}

#[test]
fn every_synthetic_enterprise_has_a_valid_uscc() {
    let csv =
        std::fs::read_to_string(tfx_tests::shared_dir().join("domain/enterprises.csv")).unwrap();
    let mut n = 0;
    for line in csv.lines().skip(1) {
        let code = line.split(',').next().unwrap();
        assert!(Uscc::parse(code).is_ok(), "{code}");
        n += 1;
    }
    assert_eq!(n, 2000);
}
