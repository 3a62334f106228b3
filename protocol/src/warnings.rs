//! Risk-warning rules (DESIGN §9), evaluated by the `risk-warning` member over its minimized
//! view — pseudonyms, bands, classifications, overdue days — never an identity. The node feeds
//! every record it holds to an [`Engine`] ([`Engine::observe`]); for each subject touched, the
//! engine evaluates the rules ([`Engine::evaluate`]) and returns the body of a signed
//! `risk-warning` record to issue, at most once per (subject, period, rules fired).
//!
//! Rules, written as TOML (`deploy/warnings.example.toml`); any may be left out:
//!
//! | rule id                  | fires when (latest record per lender = issuing member)            |
//! |--------------------------|-------------------------------------------------------------------|
//! | `overdue-any-lender`     | some lender reports more than `days` overdue                        |
//! | `ip-valuation-drop`      | the latest IP valuation band's floor is `share_pct`% or more below the highest earlier one |
//! | `pledge-below-balance`   | a pledged IP's latest valuation band is below the balance band of an IP-pledge loan |
//! | `multi-lender-downgrade` | at least `lenders` lenders classify the subject below `normal`     |
//!
//! Amounts are seen only as bands (the view withholds them), so drops are judged on band
//! floors: coarse by design.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::derive::AMOUNT_BANDS;
use crate::disclosure::Disclosure;
use crate::domain::{Date, Period};
use crate::ids::{MemberId, RecordId, Timestamp};
use crate::record::Header;
use crate::schema::{FieldValue, RecordKind, WARNING_LEVELS};
use crate::validate::{validate_record, RecordBody};

/// Subjects an engine tracks at most: far above the province's technology enterprises
/// (~20,000), so a flood of pseudonyms cannot grow the node's memory without bound.
pub const SUBJECTS_MAX: usize = 200_000;

/// Observations kept per subject and kind (the latest per lender for credit; valuations).
pub const OBSERVATIONS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("risk-warning rules: {0}")]
pub struct RulesError(String);

/// One configured rule and the warning level it raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    OverdueAnyLender { days: u64 },
    IpValuationDrop { share_pct: u64 },
    PledgeBelowBalance,
    MultiLenderDowngrade { lenders: usize },
}

impl Rule {
    pub fn id(&self) -> &'static str {
        match self {
            Rule::OverdueAnyLender { .. } => "overdue-any-lender",
            Rule::IpValuationDrop { .. } => "ip-valuation-drop",
            Rule::PledgeBelowBalance => "pledge-below-balance",
            Rule::MultiLenderDowngrade { .. } => "multi-lender-downgrade",
        }
    }
}

/// The configured rules, each with its level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules(pub Vec<(Rule, &'static str)>);

impl Rules {
    /// Parses the TOML form; errors name the table and key.
    pub fn parse(source: &str) -> Result<Rules, RulesError> {
        let table: toml::Table = source
            .parse()
            .map_err(|e: toml::de::Error| RulesError(format!("not valid TOML: {}", e.message())))?;
        let mut rules = Vec::new();
        for (name, spec) in &table {
            let t = spec
                .as_table()
                .ok_or_else(|| RulesError(format!("[{name}] must be a table")))?;
            let int = |key: &str, min: i64, max: i64| -> Result<i64, RulesError> {
                let v = t
                    .get(key)
                    .and_then(toml::Value::as_integer)
                    .ok_or_else(|| RulesError(format!("[{name}] {key} must be a whole number")))?;
                if v < min || v > max {
                    return Err(RulesError(format!(
                        "[{name}] {key} = {v} is outside {min}..={max}"
                    )));
                }
                Ok(v)
            };
            let (rule, keys): (Rule, &[&str]) = match name.as_str() {
                "overdue-any-lender" => (
                    Rule::OverdueAnyLender {
                        days: int("days", 1, 36_500)? as u64,
                    },
                    &["days", "level"],
                ),
                "ip-valuation-drop" => (
                    Rule::IpValuationDrop {
                        share_pct: int("share_pct", 1, 100)? as u64,
                    },
                    &["share_pct", "level"],
                ),
                "pledge-below-balance" => (Rule::PledgeBelowBalance, &["level"]),
                "multi-lender-downgrade" => (
                    Rule::MultiLenderDowngrade {
                        lenders: int("lenders", 1, 64)? as usize,
                    },
                    &["lenders", "level"],
                ),
                other => {
                    return Err(RulesError(format!(
                        "unknown rule [{other}] (rules: overdue-any-lender, ip-valuation-drop, pledge-below-balance, multi-lender-downgrade)"
                    )))
                }
            };
            if let Some(k) = t.keys().find(|k| !keys.contains(&k.as_str())) {
                return Err(RulesError(format!(
                    "[{name}]: unknown key {k:?} (keys: {})",
                    keys.join(", ")
                )));
            }
            let level = t.get("level").and_then(toml::Value::as_str).unwrap_or("");
            let level = WARNING_LEVELS
                .iter()
                .find(|l| **l == level)
                .ok_or_else(|| {
                    RulesError(format!(
                        "[{name}] level must be one of {}",
                        WARNING_LEVELS.join(", ")
                    ))
                })?;
            rules.push((rule, *level));
        }
        Ok(Rules(rules))
    }
}

/// The latest credit observation of one lender about one subject.
#[derive(Debug, Clone)]
struct Credit {
    at: Timestamp,
    id: RecordId,
    overdue_days: Option<u64>,
    classification: Option<String>,
    balance_band: Option<usize>,
    ip_pledge: bool,
}

#[derive(Debug, Clone)]
struct Valuation {
    at: Timestamp,
    id: RecordId,
    band: Option<usize>,
    pledged: bool,
}

#[derive(Debug, Clone, Default)]
struct Subject {
    credits: BTreeMap<MemberId, Credit>,
    valuations: Vec<Valuation>,
}

fn text<'a>(ds: &'a [Disclosure], name: &str) -> Option<&'a str> {
    ds.iter()
        .find(|d| d.name() == name)
        .and_then(|d| d.value().as_text())
}

fn int(ds: &[Disclosure], name: &str) -> Option<u64> {
    ds.iter()
        .find(|d| d.name() == name)
        .and_then(|d| d.value().as_int())
}

fn band(ds: &[Disclosure], name: &str) -> Option<usize> {
    text(ds, name).and_then(|l| AMOUNT_BANDS.iter().position(|b| b.label == l))
}

/// The rules' state over every subject seen.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Rules,
    subjects: HashMap<String, Subject>,
    /// (pseudonym, period, rule ids) already warned about.
    issued: BTreeSet<(String, String, Vec<String>)>,
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        Engine {
            rules,
            ..Engine::default()
        }
    }

    /// Takes in one verified record this member holds (its view of it). Returns the subject's
    /// pseudonym when the record can change a warning. A `risk-warning` record is one this
    /// engine issued earlier: remembered so it is not issued again (after a restart).
    pub fn observe(&mut self, id: RecordId, header: &Header, ds: &[Disclosure]) -> Option<String> {
        let pseudonym = text(ds, "subject_pseudonym")?.to_owned();
        if header.kind == RecordKind::RiskWarning {
            let period = text(ds, "period")?.to_owned();
            let rules =
                ds.iter()
                    .find(|d| d.name() == "rule_ids")
                    .and_then(|d| match d.value() {
                        FieldValue::List(l) => Some(l.clone()),
                        _ => None,
                    })?;
            self.issued.insert((pseudonym, period, rules));
            return None;
        }
        if !self.subjects.contains_key(&pseudonym) && self.subjects.len() >= SUBJECTS_MAX {
            return None;
        }
        let s = self.subjects.entry(pseudonym.clone()).or_default();
        let at = header.issued_at;
        match header.kind {
            RecordKind::Credit => {
                let newer = s.credits.get(&header.origin).is_none_or(|c| c.at <= at);
                if newer
                    && (s.credits.len() < OBSERVATIONS_MAX
                        || s.credits.contains_key(&header.origin))
                {
                    s.credits.insert(
                        header.origin.clone(),
                        Credit {
                            at,
                            id,
                            overdue_days: int(ds, "overdue_days"),
                            classification: text(ds, "classification").map(str::to_owned),
                            balance_band: band(ds, "balance_band"),
                            ip_pledge: text(ds, "guarantee") == Some("ip-pledge"),
                        },
                    );
                }
            }
            RecordKind::IpValuation => {
                if s.valuations.len() >= OBSERVATIONS_MAX {
                    s.valuations.remove(0);
                }
                s.valuations.push(Valuation {
                    at,
                    id,
                    band: band(ds, "valuation_band"),
                    pledged: text(ds, "pledge_status") == Some("pledged"),
                });
                s.valuations.sort_by_key(|v| v.at);
            }
            _ => return None,
        }
        Some(pseudonym)
    }

    /// Evaluates the rules for `pseudonym` as of `now`; the body of a warning to issue, unless
    /// nothing fires or this warning was issued already.
    pub fn evaluate(&mut self, pseudonym: &str, now: Timestamp) -> Option<RecordBody> {
        let s = self.subjects.get(pseudonym)?;
        let mut fired: Vec<(&'static str, &'static str)> = Vec::new();
        let mut basis: BTreeSet<RecordId> = BTreeSet::new();
        for (rule, level) in &self.rules.0 {
            let ids = fires(rule, s);
            if !ids.is_empty() {
                fired.push((rule.id(), level));
                basis.extend(ids);
            }
        }
        if fired.is_empty() {
            return None;
        }
        let level = fired
            .iter()
            .map(|(_, l)| WARNING_LEVELS.iter().position(|w| w == l).unwrap_or(0))
            .max()
            .map_or("blue", |i| WARNING_LEVELS[i]);
        let period =
            Period::of(Date::from_days_since_epoch((now.0 / 86_400_000) as i64)).to_string();
        let mut rule_ids: Vec<String> = fired.iter().map(|(r, _)| (*r).to_owned()).collect();
        rule_ids.sort();
        let key = (pseudonym.to_owned(), period.clone(), rule_ids.clone());
        if self.issued.contains(&key) {
            return None;
        }
        let json = serde_json::json!({
            "kind": "risk-warning",
            "subject_pseudonym": pseudonym,
            "period": period,
            "level": level,
            "rule_ids": rule_ids,
            "basis_record_ids": basis.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        });
        let body = validate_record(&json).ok()?;
        self.issued.insert(key);
        Some(body)
    }
}

/// The records a rule rests on when it fires (empty when it does not).
fn fires(rule: &Rule, s: &Subject) -> Vec<RecordId> {
    match rule {
        Rule::OverdueAnyLender { days } => s
            .credits
            .values()
            .filter(|c| c.overdue_days.is_some_and(|d| d > *days))
            .map(|c| c.id)
            .collect(),
        Rule::IpValuationDrop { share_pct } => {
            let Some((latest, earlier)) = s.valuations.split_last() else {
                return Vec::new();
            };
            let floor = |b: Option<usize>| b.map(|i| AMOUNT_BANDS[i].min_fen);
            let (Some(now), Some((peak, peak_id))) = (
                floor(latest.band),
                earlier
                    .iter()
                    .filter_map(|v| floor(v.band).map(|f| (f, v.id)))
                    .max_by_key(|(f, _)| *f),
            ) else {
                return Vec::new();
            };
            let dropped = peak > 0 && (peak - now.min(peak)) * 100 >= share_pct * peak;
            if dropped {
                vec![peak_id, latest.id]
            } else {
                Vec::new()
            }
        }
        Rule::PledgeBelowBalance => {
            let Some(v) = s.valuations.iter().rev().find(|v| v.pledged) else {
                return Vec::new();
            };
            let below: Vec<RecordId> = s
                .credits
                .values()
                .filter(|c| c.ip_pledge && c.balance_band.zip(v.band).is_some_and(|(b, vb)| vb < b))
                .map(|c| c.id)
                .collect();
            if below.is_empty() {
                below
            } else {
                [vec![v.id], below].concat()
            }
        }
        Rule::MultiLenderDowngrade { lenders } => {
            let below: Vec<RecordId> = s
                .credits
                .values()
                .filter(|c| c.classification.as_deref().is_some_and(|k| k != "normal"))
                .map(|c| c.id)
                .collect();
            if below.len() >= *lenders {
                below
            } else {
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LogIndex;

    const RULES: &str = r#"
[overdue-any-lender]
days = 90
level = "orange"
[multi-lender-downgrade]
lenders = 2
level = "red"
[ip-valuation-drop]
share_pct = 30
level = "yellow"
"#;
    const PS: &str = "ps1.2026.4775d6463ed8f14b2fc2d2c5672e40e8";

    fn observe(
        e: &mut Engine,
        origin: &str,
        kind: RecordKind,
        at: u64,
        fields: &[(&str, FieldValue)],
    ) {
        let header = Header {
            origin: MemberId::new(origin).unwrap_or_else(|e| panic!("{e}")),
            seq: LogIndex(at),
            kind,
            schema: 1,
            issued_at: Timestamp(at),
            supersedes: None,
            digests: vec![],
        };
        let mut ds = vec![Disclosure::new(
            [0; 16],
            "subject_pseudonym",
            &FieldValue::Text(PS.into()),
        )];
        ds.extend(fields.iter().map(|(n, v)| Disclosure::new([0; 16], n, v)));
        e.observe(RecordId([at as u8; 32]), &header, &ds);
    }

    fn credit(overdue: u64, class: &str) -> Vec<(&'static str, FieldValue)> {
        vec![
            ("overdue_days", FieldValue::Int(overdue)),
            ("classification", FieldValue::Text(class.into())),
        ]
    }

    const NOW: Timestamp = Timestamp(1_790_000_000_000); // 2026-09-21, 2026Q3

    #[test]
    fn rules_fire_on_their_inputs_once_per_period() {
        let mut e = Engine::new(Rules::parse(RULES).unwrap_or_else(|e| panic!("{e}")));
        observe(
            &mut e,
            "bank-a",
            RecordKind::Credit,
            1,
            &credit(35, "special-mention"),
        );
        assert!(
            e.evaluate(PS, NOW).is_none(),
            "35 days and one lender: nothing"
        );
        // The same lender's newer record replaces its older one.
        observe(
            &mut e,
            "bank-a",
            RecordKind::Credit,
            2,
            &credit(120, "substandard"),
        );
        let w = e
            .evaluate(PS, NOW)
            .unwrap_or_else(|| panic!("overdue must fire"));
        assert_eq!(w.get("level").and_then(FieldValue::as_text), Some("orange"));
        assert_eq!(
            w.get("period").and_then(FieldValue::as_text),
            Some("2026Q3")
        );
        assert_eq!(
            w.get("basis_record_ids"),
            Some(&FieldValue::List(vec![RecordId([2; 32]).to_hex()]))
        );
        assert!(e.evaluate(PS, NOW).is_none(), "issued once");
        // A second lender below normal adds a rule: a new, red warning.
        observe(
            &mut e,
            "pbc-chengdu",
            RecordKind::Credit,
            3,
            &credit(10, "special-mention"),
        );
        let w = e
            .evaluate(PS, NOW)
            .unwrap_or_else(|| panic!("two lenders must fire"));
        assert_eq!(w.get("level").and_then(FieldValue::as_text), Some("red"));
        assert_eq!(
            w.get("rule_ids"),
            Some(&FieldValue::List(vec![
                "multi-lender-downgrade".into(),
                "overdue-any-lender".into()
            ]))
        );
    }

    #[test]
    fn a_valuation_drop_is_judged_on_band_floors() {
        let mut e = Engine::new(Rules::parse(RULES).unwrap_or_else(|e| panic!("{e}")));
        let v = |b: &str| vec![("valuation_band", FieldValue::Text(b.into()))];
        observe(
            &mut e,
            "ip-center",
            RecordKind::IpValuation,
            1,
            &v("10m-50m-cny"),
        );
        observe(
            &mut e,
            "ip-center",
            RecordKind::IpValuation,
            2,
            &v("10m-50m-cny"),
        );
        assert!(e.evaluate(PS, NOW).is_none());
        observe(
            &mut e,
            "ip-center",
            RecordKind::IpValuation,
            3,
            &v("5m-10m-cny"),
        );
        let w = e
            .evaluate(PS, NOW)
            .unwrap_or_else(|| panic!("a 50% floor drop must fire"));
        assert_eq!(
            w.get("rule_ids"),
            Some(&FieldValue::List(vec!["ip-valuation-drop".into()]))
        );
    }

    #[test]
    fn rule_errors_name_the_table_and_key() {
        for (src, want) in [
            (
                "[overdue]\ndays = 1\nlevel = \"red\"",
                "unknown rule [overdue]",
            ),
            (
                "[overdue-any-lender]\ndays = 0\nlevel = \"red\"",
                "days = 0 is outside",
            ),
            (
                "[overdue-any-lender]\ndays = 9\nlevel = \"pink\"",
                "level must be one of",
            ),
            (
                "[pledge-below-balance]\nlevel = \"red\"\nshare = 1",
                "unknown key \"share\"",
            ),
        ] {
            let err = Rules::parse(src).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
    }
}
