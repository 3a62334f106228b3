//! Validation of record input (JSON from an institution's systems) and of field values received
//! in disclosures. Errors name the field, the offending value and the rule, and all of them are
//! reported at once so an operator fixes a file in one pass.
//!
//! Values are normalised on the way in (USCC upper-cased, patent prefix dropped, text trimmed);
//! [`check_value`] on a received disclosure insists the value is already in normal form, so one
//! field value has one signed spelling.

use std::borrow::Cow;
use std::fmt;

use crate::derive::AMOUNT_BANDS;
use crate::domain::{Date, PatentKind, PatentNumber, Period, Uscc};
use crate::ids::RecordId;
use crate::limits::{LIST_ITEMS_MAX, RECORD_JSON_BYTES_MAX, TEXT_CHARS_MAX};
use crate::schema::{FieldSpec, FieldType, FieldValue, Presence, RecordKind, CLASSIFICATIONS};

/// JSON integers above 2^53 − 1 lose precision in many consumers (JavaScript, some BI tools).
pub const AMOUNT_FEN_MAX: u64 = (1 << 53) - 1;

/// One rule one input broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field (`contract_amount_fen`), or `record` for the document as a whole.
    pub field: String,
    /// The offending value as the submitter wrote it (truncated), when there is one.
    pub value: Option<String>,
    pub rule: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} = {}: {}", self.field, v, self.rule),
            None => write!(f, "{}: {}", self.field, self.rule),
        }
    }
}

/// Every rule a record input broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "record is invalid ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// A validated record before sealing: its kind, what it corrects, and its submitted fields
/// (normalised, in schema order). Derived fields are added by the issuer when sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBody {
    pub kind: RecordKind,
    pub supersedes: Option<RecordId>,
    pub fields: Vec<(&'static FieldSpec, FieldValue)>,
}

impl RecordBody {
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.fields
            .iter()
            .find(|(s, _)| s.name == name)
            .map(|(_, v)| v)
    }
}

fn show(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn error(field: &str, value: Option<String>, rule: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.to_string(),
        value,
        rule: rule.into(),
    }
}

/// Parses and validates a JSON record: `{"kind": "...", "supersedes"?: "<record id>", <fields>}`.
pub fn parse_record_json(bytes: &[u8]) -> Result<RecordBody, ValidationErrors> {
    let one = |rule: String| ValidationErrors(vec![error("record", None, rule)]);
    if bytes.len() > RECORD_JSON_BYTES_MAX {
        return Err(one(format!(
            "too large: {} bytes (max {RECORD_JSON_BYTES_MAX})",
            bytes.len()
        )));
    }
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| one(format!("not valid JSON: {e}")))?;
    validate_record(&json)
}

/// Validates a parsed JSON record.
pub fn validate_record(json: &serde_json::Value) -> Result<RecordBody, ValidationErrors> {
    let obj = json
        .as_object()
        .ok_or_else(|| ValidationErrors(vec![error("record", None, "must be a JSON object")]))?;
    let kind = match obj.get("kind") {
        None => return Err(ValidationErrors(vec![error("kind", None, "is required")])),
        Some(v) => v.as_str().and_then(RecordKind::parse).ok_or_else(|| {
            let rule = "must be one of credit, ip-valuation, monitoring, risk-warning";
            ValidationErrors(vec![error("kind", Some(show(v)), rule)])
        })?,
    };
    let mut errors = Vec::new();
    let supersedes = obj.get("supersedes").and_then(|v| {
        let id = v.as_str().and_then(RecordId::from_hex);
        if id.is_none() {
            errors.push(error(
                "supersedes",
                Some(show(v)),
                "must be a record id (64 hex digits)",
            ));
        }
        id
    });
    for (key, value) in obj {
        if key == "kind" || key == "supersedes" {
            continue;
        }
        match kind.field(key) {
            None => errors.push(error(key, None, format!("unknown field for kind {kind}"))),
            Some(spec) if spec.presence == Presence::Derived => errors.push(error(
                key,
                Some(show(value)),
                "is derived by the issuer; do not supply it",
            )),
            Some(_) => {}
        }
    }
    let mut fields = Vec::new();
    for spec in kind
        .fields()
        .iter()
        .filter(|s| s.presence != Presence::Derived)
    {
        match obj.get(spec.name) {
            None | Some(serde_json::Value::Null) if spec.presence == Presence::Required => {
                errors.push(error(spec.name, None, "is required"))
            }
            None | Some(serde_json::Value::Null) => {}
            Some(v) => match from_json(spec, v) {
                Ok(value) => fields.push((spec, value)),
                Err(rule) => errors.push(error(spec.name, Some(show(v)), rule)),
            },
        }
    }
    let body = RecordBody {
        kind,
        supersedes,
        fields,
    };
    if errors.is_empty() {
        cross_field_rules(&body, &mut errors);
    }
    if errors.is_empty() {
        Ok(body)
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Converts one JSON value to a field value of the spec's type and validates it.
fn from_json(spec: &FieldSpec, v: &serde_json::Value) -> Result<FieldValue, String> {
    let raw = match spec.ty {
        FieldType::AmountFen | FieldType::Count(_) => match (v.as_u64(), v.as_i64(), v.as_f64()) {
            (Some(n), _, _) => FieldValue::Int(n),
            (None, Some(_), _) => return Err("must not be negative".into()),
            (None, None, Some(_)) => {
                return Err("must be a whole number (amounts are in fen)".into())
            }
            _ => return Err("must be a JSON integer".into()),
        },
        FieldType::Bool => FieldValue::Bool(v.as_bool().ok_or("must be true or false")?),
        FieldType::TokenList | FieldType::RecordIdList => {
            let items = v.as_array().ok_or("must be a JSON array of strings")?;
            if items.len() > LIST_ITEMS_MAX {
                return Err(format!("has {} items (max {LIST_ITEMS_MAX})", items.len()));
            }
            let strings = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>();
            FieldValue::List(strings.ok_or("must be a JSON array of strings")?)
        }
        _ => FieldValue::Text(v.as_str().ok_or("must be a JSON string")?.to_owned()),
    };
    normalise(spec.ty, raw).map_err(|r| r.to_string())
}

/// Checks a value received in a disclosure: valid for the field's type **and** already in normal
/// form. The error is the rule broken.
pub fn check_value(spec: &FieldSpec, value: &FieldValue) -> Result<(), String> {
    match normal_form(spec.ty, value)? {
        // A normal form equal to the value but built anew (a date's text, say) counts as normal.
        Cow::Owned(normal) if &normal != value => Err("value is not in normal form".into()),
        _ => Ok(()),
    }
}

fn text_rule(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 || n > TEXT_CHARS_MAX {
        return Err(format!("must be 1 to {TEXT_CHARS_MAX} characters, got {n}"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn token_rule(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Returns the normal form of `value` for type `ty`, or the rule it breaks.
fn normalise(ty: FieldType, value: FieldValue) -> Result<FieldValue, String> {
    Ok(match normal_form(ty, &value)? {
        Cow::Borrowed(_) => value,
        Cow::Owned(normal) => normal,
    })
}

/// The normal form of `value` for type `ty` — borrowed when `value` is already in it, the
/// common case, so checking a received value allocates nothing — or the rule it breaks.
fn normal_form(ty: FieldType, value: &FieldValue) -> Result<Cow<'_, FieldValue>, String> {
    use FieldValue::{Int, List, Text};
    let same = Cow::Borrowed(value);
    // `s` itself when it is `normal`, else `normal`.
    let text = |s: &str, normal: &str| {
        if s == normal {
            Cow::Borrowed(value)
        } else {
            Cow::Owned(Text(normal.to_owned()))
        }
    };
    let out = match (ty, value) {
        (FieldType::Uscc, Text(s)) => text(s, Uscc::parse(s)?.as_str()),
        (FieldType::Text, Text(s)) => {
            let t = s.trim();
            text_rule(t)?;
            text(s, t)
        }
        (FieldType::Enum(allowed), Text(s)) if allowed.contains(&s.as_str()) => same,
        (FieldType::Enum(allowed), Text(_)) => {
            return Err(format!("must be one of {}", allowed.join(", ")))
        }
        (FieldType::AmountFen, Int(n)) if *n <= AMOUNT_FEN_MAX => same,
        (FieldType::AmountFen, Int(_)) => return Err(format!("exceeds {AMOUNT_FEN_MAX} fen")),
        (FieldType::Count(max), Int(n)) if *n <= max => same,
        (FieldType::Count(max), Int(_)) => return Err(format!("must be at most {max}")),
        (FieldType::Date, Text(s)) => text(s, &Date::parse(s)?.to_string()),
        (FieldType::Period, Text(s)) => text(s, &Period::parse(s)?.to_string()),
        (FieldType::Bool, FieldValue::Bool(_)) => same,
        (FieldType::RegionCode, Text(s))
            if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            same
        }
        (FieldType::RegionCode, Text(_)) => {
            return Err("must be a six-digit region code (GB/T 2260)".into())
        }
        (FieldType::Industry, Text(s))
            if s.len() == 1 && (b'A'..=b'T').contains(&s.as_bytes()[0]) =>
        {
            same
        }
        (FieldType::Industry, Text(_)) => {
            return Err("must be a GB/T 4754 section letter A-T".into())
        }
        (FieldType::PatentNumber, Text(s)) => text(s, PatentNumber::parse(s)?.as_str()),
        (FieldType::Pseudonym, Text(s)) if crate::derive::is_pseudonym(s) => same,
        (FieldType::Pseudonym, Text(_)) => {
            return Err("must be a pseudonym ps1.<epoch>.<32 hex digits>".into())
        }
        (FieldType::Band, Text(s)) if AMOUNT_BANDS.iter().any(|b| b.label == s) => same,
        (FieldType::Band, Text(_)) => return Err("must be one of the amount bands".into()),
        (FieldType::TokenList, List(items)) => {
            check_list(items, token_rule, "[a-z0-9._-]{1,64}")?;
            same
        }
        (FieldType::RecordIdList, List(items)) => {
            let is_id = |s: &str| s.len() == 64 && RecordId::from_hex(s).is_some();
            const WHAT: &str = "a 64-hex-digit record id";
            if items
                .iter()
                .any(|s| s.bytes().any(|b| b.is_ascii_uppercase()))
            {
                let lower: Vec<String> = items.iter().map(|s| s.to_ascii_lowercase()).collect();
                check_list(&lower, is_id, WHAT)?;
                Cow::Owned(List(lower))
            } else {
                check_list(items, is_id, WHAT)?;
                same
            }
        }
        _ => return Err("has the wrong type for this field".into()),
    };
    Ok(out)
}

fn check_list(items: &[String], ok: impl Fn(&str) -> bool, what: &str) -> Result<(), String> {
    if items.is_empty() || items.len() > LIST_ITEMS_MAX {
        return Err(format!("must have 1 to {LIST_ITEMS_MAX} items"));
    }
    if let Some(bad) = items.iter().position(|s| !ok(s)) {
        return Err(format!("item {bad} is not {what}"));
    }
    let mut sorted: Vec<&str> = items.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != items.len() {
        return Err("must not repeat an item".into());
    }
    Ok(())
}

/// Rules between fields of one record. Runs only once every field is individually valid.
fn cross_field_rules(body: &RecordBody, errors: &mut Vec<ValidationError>) {
    match body.kind {
        RecordKind::Credit => credit_rules(body, errors),
        RecordKind::IpValuation => ip_rules(body, errors),
        RecordKind::Monitoring => monitoring_rules(body, errors),
        RecordKind::RiskWarning => {}
    }
}

fn text<'a>(body: &'a RecordBody, name: &str) -> &'a str {
    body.get(name)
        .and_then(FieldValue::as_text)
        .unwrap_or_default()
}

fn date_order(body: &RecordBody, first: &str, second: &str, errors: &mut Vec<ValidationError>) {
    let (a, b) = (text(body, first), text(body, second));
    // Normalised dates are YYYY-MM-DD, so text order is date order.
    if b < a {
        errors.push(error(
            second,
            Some(format!("\"{b}\"")),
            format!("is before {first} {a}"),
        ));
    }
}

/// The least-severe classification a loan overdue by `days` may carry (China's five-category
/// guidance): any arrears → special-mention; over 90 days → substandard; over 270 → doubtful;
/// over 360 → loss.
pub fn minimum_classification(days: u64) -> &'static str {
    match days {
        0 => "normal",
        1..=90 => "special-mention",
        91..=270 => "substandard",
        271..=360 => "doubtful",
        _ => "loss",
    }
}

fn credit_rules(body: &RecordBody, errors: &mut Vec<ValidationError>) {
    date_order(body, "start_date", "maturity_date", errors);
    let days = body
        .get("overdue_days")
        .and_then(FieldValue::as_int)
        .unwrap_or(0);
    let class = text(body, "classification");
    let floor = minimum_classification(days);
    let rank = |c: &str| CLASSIFICATIONS.iter().position(|x| *x == c).unwrap_or(0);
    if rank(class) < rank(floor) {
        let rule = format!("a loan {days} days overdue must be classified at least {floor}");
        errors.push(error("classification", Some(format!("\"{class}\"")), rule));
    }
}

fn require(body: &RecordBody, name: &str, when: &str, errors: &mut Vec<ValidationError>) {
    if body.get(name).is_none() {
        errors.push(error(name, None, format!("is required when {when}")));
    }
}

fn forbid(body: &RecordBody, name: &str, when: &str, errors: &mut Vec<ValidationError>) {
    if let Some(v) = body.get(name) {
        errors.push(error(
            name,
            Some(v.to_json().to_string()),
            format!("must be absent when {when}"),
        ));
    }
}

fn ip_rules(body: &RecordBody, errors: &mut Vec<ValidationError>) {
    date_order(body, "base_date", "valid_until", errors);
    let ip_type = text(body, "ip_type");
    let expected = match ip_type {
        "invention-patent" => Some(PatentKind::Invention),
        "utility-model" => Some(PatentKind::UtilityModel),
        "design-patent" => Some(PatentKind::Design),
        _ => None,
    };
    let when = format!("ip_type is {ip_type}");
    if let Some(kind) = expected {
        require(body, "patent_number", &when, errors);
        forbid(body, "registration_number", &when, errors);
        let number = body
            .get("patent_number")
            .and_then(FieldValue::as_text)
            .and_then(|n| PatentNumber::parse(n).ok());
        if let Some(n) = number.filter(|n| n.kind() != kind) {
            let rule = format!(
                "its type digit says {:?}, but ip_type is {ip_type}",
                n.kind()
            );
            errors.push(error("patent_number", Some(format!("\"{n}\"")), rule));
        }
    } else {
        require(body, "registration_number", &when, errors);
        forbid(body, "patent_number", &when, errors);
    }
    match text(body, "pledge_status") {
        "pledged" => {
            require(body, "pledgee", "pledge_status is pledged", errors);
            require(
                body,
                "pledge_registration_number",
                "pledge_status is pledged",
                errors,
            );
        }
        "none" => {
            forbid(body, "pledgee", "pledge_status is none", errors);
            forbid(
                body,
                "pledge_registration_number",
                "pledge_status is none",
                errors,
            );
        }
        _ => {}
    }
}

fn monitoring_rules(body: &RecordBody, errors: &mut Vec<ValidationError>) {
    let event = text(body, "event");
    let needs: &[&str] = match event {
        "loan" => &["amount_fen"],
        "equity-round" => &["round", "amount_fen"],
        "listing-stage" => &["board", "listing_stage"],
        _ => &["innovation_points_score"],
    };
    let when = format!("event is {event}");
    for name in [
        "round",
        "amount_fen",
        "board",
        "listing_stage",
        "innovation_points_score",
    ] {
        if needs.contains(&name) {
            require(body, name, &when, errors);
        } else {
            forbid(body, name, &when, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check_value` (which borrows) accepts exactly the values `normalise` (which builds the
    /// normal form sealing stores) leaves unchanged: every field of every kind, against values
    /// in and out of normal form and of the wrong type.
    #[test]
    fn a_value_checks_exactly_when_it_is_its_own_normal_form() {
        let texts = [
            "91511500MA3M0C777N",
            "91511500ma3m0c777n",
            " 91511500MA3M0C777N",
            "91511500MA3M0C777X",
            "宜宾测试科技有限公司",
            " padded ",
            "",
            "2026-01-15",
            "2026-1-15",
            "2026-02-30",
            "2026-Q1",
            "2026q1",
            "2026-01",
            "511502",
            "51150",
            "C",
            "c",
            "U",
            "normal",
            "Normal",
            "credit",
            "points-loan",
            "CN202310123456.7",
            "cn202310123456.7",
            "ZL202310123456.7",
            "ps1.2026.0123456789abcdef0123456789abcdef",
            "ps1.2026.0123456789ABCDEF0123456789abcdef",
            "1m-10m",
            "<1m",
            "line\nbreak",
        ];
        let id = "ab".repeat(32);
        let upper = id.to_uppercase();
        let mut values: Vec<FieldValue> = texts
            .iter()
            .map(|t| FieldValue::Text((*t).into()))
            .collect();
        values.extend([0, 1, 30, 10_000, u64::MAX].map(FieldValue::Int));
        values.extend([true, false].map(FieldValue::Bool));
        for list in [
            vec!["a.b", "c-d"],
            vec!["a.b", "a.b"],
            vec!["A"],
            vec![],
            vec![id.as_str()],
            vec![upper.as_str()],
            vec![id.as_str(), id.as_str()],
        ] {
            values.push(FieldValue::List(
                list.into_iter().map(str::to_owned).collect(),
            ));
        }
        let (mut accepted, mut refused) = (0, 0);
        for kind in RecordKind::ALL {
            for spec in kind.fields() {
                for v in &values {
                    let old = normalise(spec.ty, v.clone()).is_ok_and(|n| &n == v);
                    let new = check_value(spec, v).is_ok();
                    assert_eq!(new, old, "{kind} {} {v:?}", spec.name);
                    if new {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        assert!(
            accepted >= 40 && refused >= 400,
            "{accepted} accepted, {refused} refused"
        );
    }

    fn credit() -> serde_json::Value {
        serde_json::json!({
            "kind": "credit", "subject_uscc": "91511500MA3M0C777N", "subject_name": "宜宾测试科技有限公司",
            "region_code": "511502", "industry": "C", "lender": "Bank A", "product": "points-loan",
            "contract_amount_fen": 500_000_000u64, "balance_fen": 300_000_000u64,
            "start_date": "2026-01-15", "maturity_date": "2027-01-14", "guarantee": "credit",
            "classification": "normal", "overdue_days": 0, "risk_compensation_pool": true
        })
    }

    fn errors_of(v: serde_json::Value) -> Vec<String> {
        match validate_record(&v) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn valid_credit_record() {
        let body = validate_record(&credit()).map_err(|e| e.to_string());
        assert_eq!(body.map(|b| b.fields.len()), Ok(14));
    }

    #[test]
    fn errors_name_field_value_and_rule() {
        let mut v = credit();
        v["contract_amount_fen"] = serde_json::json!(-5);
        v["colour"] = serde_json::json!("red");
        v["subject_uscc"] = serde_json::json!("91511500MA3M0C777P");
        let errs = errors_of(v);
        assert!(
            errs.contains(&"colour: unknown field for kind credit".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"contract_amount_fen = -5: must not be negative".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("subject_uscc = \"91511500MA3M0C777P\": check character")),
            "{errs:?}"
        );
    }

    #[test]
    fn overdue_classification_floor() {
        for (days, class, ok) in [
            (0, "normal", true),
            (1, "normal", false),
            (1, "special-mention", true),
            (90, "special-mention", true),
            (91, "special-mention", false),
            (91, "substandard", true),
            (270, "substandard", true),
            (271, "substandard", false),
            (271, "doubtful", true),
            (360, "doubtful", true),
            (361, "doubtful", false),
            (361, "loss", true),
            (0, "loss", true),
        ] {
            let mut v = credit();
            v["overdue_days"] = serde_json::json!(days);
            v["classification"] = serde_json::json!(class);
            assert_eq!(errors_of(v).is_empty(), ok, "{days} days, {class}");
        }
    }

    #[test]
    fn maturity_before_start() {
        let mut v = credit();
        v["maturity_date"] = serde_json::json!("2025-12-31");
        assert_eq!(
            errors_of(v),
            vec!["maturity_date = \"2025-12-31\": is before start_date 2026-01-15".to_string()]
        );
    }

    #[test]
    fn derived_fields_cannot_be_supplied() {
        let mut v = credit();
        v["balance_band"] = serde_json::json!("lt-1m-cny");
        assert_eq!(errors_of(v).len(), 1);
    }

    #[test]
    fn monitoring_event_fields() {
        let v = serde_json::json!({"kind": "monitoring", "subject_uscc": "91511500MA3M0C777N",
            "subject_name": "x", "period": "2026Q3", "event": "loan", "board": "star-market"});
        let errs = errors_of(v);
        assert!(
            errs.contains(&"amount_fen: is required when event is loan".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"board = \"star-market\": must be absent when event is loan".to_string()
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn text_limit_at_n_and_n_plus_1() {
        let mut v = credit();
        v["lender"] = serde_json::json!("银".repeat(TEXT_CHARS_MAX));
        assert!(errors_of(v.clone()).is_empty());
        v["lender"] = serde_json::json!("银".repeat(TEXT_CHARS_MAX + 1));
        assert_eq!(errors_of(v).len(), 1);
    }

    #[test]
    fn list_limit_at_n_and_n_plus_1() {
        let warning = |n: usize| {
            let ids: Vec<String> = (0..n).map(|i| format!("{i:064x}")).collect();
            serde_json::json!({"kind": "risk-warning", "subject_pseudonym": "ps1.2026.0123456789abcdef0123456789abcdef",
                "period": "2026Q3", "level": "red", "rule_ids": ["r1"], "basis_record_ids": ids})
        };
        assert!(errors_of(warning(LIST_ITEMS_MAX)).is_empty());
        assert_eq!(errors_of(warning(LIST_ITEMS_MAX + 1)).len(), 1);
        assert_eq!(
            errors_of(warning(0)).len(),
            1,
            "an empty list is refused too"
        );
    }

    #[test]
    fn json_size_limit_at_n_and_n_plus_1() {
        // Pad a valid record with trailing whitespace (valid JSON) to exactly the limit.
        let mut doc = credit().to_string().into_bytes();
        doc.resize(RECORD_JSON_BYTES_MAX, b' ');
        assert!(parse_record_json(&doc).is_ok());
        doc.push(b' ');
        let e = parse_record_json(&doc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains(&format!("too large: {} bytes", RECORD_JSON_BYTES_MAX + 1)),
            "{e}"
        );
    }

    #[test]
    fn amount_limit_at_n_and_n_plus_1() {
        let mut v = credit();
        v["contract_amount_fen"] = serde_json::json!(AMOUNT_FEN_MAX);
        v["balance_fen"] = serde_json::json!(AMOUNT_FEN_MAX);
        assert!(errors_of(v.clone()).is_empty());
        v["balance_fen"] = serde_json::json!(AMOUNT_FEN_MAX + 1);
        assert_eq!(errors_of(v).len(), 1);
    }
}
