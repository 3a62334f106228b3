//! Record kinds and their fields (DESIGN §4): one table per kind saying each field's name, type
//! and whether the submitter supplies it, may omit it, or the issuer derives it. The same table
//! validates JSON input, checks every disclosure a verifier receives, and names the fields a
//! data-minimization policy grants — so a field exists in exactly one place.
//!
//! Cross-field rules (maturity after start, classification against overdue days, IP number
//! against IP type, event-specific monitoring fields) live in [`crate::validate`].

use crate::codec::Value;

/// The four record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    Credit,
    IpValuation,
    Monitoring,
    RiskWarning,
}

/// Every kind is at schema version 1; the header carries it so later versions can coexist.
pub const SCHEMA_VERSION: u64 = 1;

impl RecordKind {
    pub const ALL: [RecordKind; 4] = [
        RecordKind::Credit,
        RecordKind::IpValuation,
        RecordKind::Monitoring,
        RecordKind::RiskWarning,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Credit => "credit",
            RecordKind::IpValuation => "ip-valuation",
            RecordKind::Monitoring => "monitoring",
            RecordKind::RiskWarning => "risk-warning",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Digests in every header of this kind, real plus decoys: fixed per kind so a recipient can
    /// tell neither how many fields were filled nor which were withheld. At least the number of
    /// fields the kind can have, rounded up for headroom.
    pub fn digest_count(self) -> usize {
        match self {
            RecordKind::Credit => 24,
            RecordKind::IpValuation => 20,
            RecordKind::Monitoring => 16,
            RecordKind::RiskWarning => 8,
        }
    }

    /// Roles allowed to issue this kind. Not enforced yet: enforcement needs the roster (the
    /// PKI issue), where the node will refuse records whose origin lacks one of these roles.
    pub fn issuer_roles(self) -> &'static [&'static str] {
        match self {
            RecordKind::Credit => &["bank", "central-bank", "local-finance"],
            RecordKind::IpValuation => &["ip-center", "bank"],
            RecordKind::Monitoring => &[
                "banking-regulator",
                "securities-regulator",
                "local-finance",
                "central-bank",
                "science-dept",
            ],
            RecordKind::RiskWarning => &["risk-warning"],
        }
    }

    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            RecordKind::Credit => CREDIT,
            RecordKind::IpValuation => IP_VALUATION,
            RecordKind::Monitoring => MONITORING,
            RecordKind::RiskWarning => RISK_WARNING,
        }
    }

    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.fields().iter().find(|f| f.name == name)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a field holds and how its value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// GB 32100-2015 unified social credit code.
    Uscc,
    /// Free text, 1..=`TEXT_CHARS_MAX` characters, no control characters.
    Text,
    /// One of a fixed set of lowercase tokens.
    Enum(&'static [&'static str]),
    /// Money in fen (1/100 yuan), a non-negative integer up to 2^53 − 1.
    AmountFen,
    /// A non-negative integer up to the bound.
    Count(u64),
    Date,
    Period,
    Bool,
    /// Six-digit administrative division code (GB/T 2260).
    RegionCode,
    /// GB/T 4754-2017 industry section letter, A–T.
    Industry,
    /// CN patent application number with check character.
    PatentNumber,
    /// `ps1.<epoch>.<32 hex>`: a keyed, per-epoch pseudonym of the subject.
    Pseudonym,
    /// One of [`crate::derive::AMOUNT_BANDS`].
    Band,
    /// A list of identifiers (`[a-z0-9._-]{1,64}`), no duplicates.
    TokenList,
    /// A list of record ids (64 hex digits), no duplicates.
    RecordIdList,
}

/// Who supplies a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The submitter must supply it.
    Required,
    /// The submitter may supply it; cross-field rules say when it is required or forbidden.
    Optional,
    /// The issuer computes it while sealing (pseudonym, bands, city); submitters may not supply it.
    Derived,
}

/// One field of a record kind.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    pub presence: Presence,
}

const fn req(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        presence: Presence::Required,
    }
}
const fn opt(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        presence: Presence::Optional,
    }
}
const fn derived(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        presence: Presence::Derived,
    }
}

pub const PRODUCTS: &[&str] = &[
    "tianfu-kechuang-dai",
    "points-loan",
    "ip-pledge-loan",
    "supply-chain",
    "working-capital",
    "other",
];
pub const GUARANTEES: &[&str] = &["credit", "guarantee", "mortgage", "pledge", "ip-pledge"];
/// Five-category loan classification, best first (the order matters to the overdue rule).
pub const CLASSIFICATIONS: &[&str] = &[
    "normal",
    "special-mention",
    "substandard",
    "doubtful",
    "loss",
];
pub const IP_TYPES: &[&str] = &[
    "invention-patent",
    "utility-model",
    "design-patent",
    "trademark",
    "copyright",
    "software-copyright",
    "ic-layout",
];
pub const VALUATION_METHODS: &[&str] = &["income", "market", "cost"];
pub const PLEDGE_STATUSES: &[&str] = &["none", "pledged", "released"];
pub const EVENTS: &[&str] = &["loan", "equity-round", "listing-stage", "innovation-points"];
pub const ROUNDS: &[&str] = &[
    "seed",
    "angel",
    "pre-a",
    "a",
    "b",
    "c",
    "d-plus",
    "pre-ipo",
    "strategic",
];
/// Main board, STAR market (科创板), ChiNext (创业板), Beijing SE, NEEQ (新三板), regional equity
/// centre (天府(四川)联合股权交易中心).
pub const BOARDS: &[&str] = &[
    "main-board",
    "star-market",
    "chinext",
    "bse",
    "neeq",
    "regional-equity",
];
pub const LISTING_STAGES: &[&str] = &[
    "tutoring",
    "filed",
    "accepted",
    "approved",
    "registered",
    "listed",
];
pub const WARNING_LEVELS: &[&str] = &["blue", "yellow", "orange", "red"];

/// Longest credit exposure we accept, in days (100 years); anything larger is a unit error.
pub const OVERDUE_DAYS_MAX: u64 = 36_500;
/// Sichuan's innovation-points (创新积分) scores are on a 0–1000 scale.
pub const INNOVATION_POINTS_MAX: u64 = 1000;

use FieldType as T;

static CREDIT: &[FieldSpec] = &[
    req("subject_uscc", T::Uscc),
    req("subject_name", T::Text),
    req("region_code", T::RegionCode),
    req("industry", T::Industry),
    req("lender", T::Text),
    req("product", T::Enum(PRODUCTS)),
    req("contract_amount_fen", T::AmountFen),
    req("balance_fen", T::AmountFen),
    req("start_date", T::Date),
    req("maturity_date", T::Date),
    req("guarantee", T::Enum(GUARANTEES)),
    req("classification", T::Enum(CLASSIFICATIONS)),
    req("overdue_days", T::Count(OVERDUE_DAYS_MAX)),
    req("risk_compensation_pool", T::Bool),
    derived("subject_pseudonym", T::Pseudonym),
    derived("contract_amount_band", T::Band),
    derived("balance_band", T::Band),
    derived("region_city", T::RegionCode),
];

static IP_VALUATION: &[FieldSpec] = &[
    req("subject_uscc", T::Uscc),
    req("subject_name", T::Text),
    req("ip_type", T::Enum(IP_TYPES)),
    opt("patent_number", T::PatentNumber),
    opt("registration_number", T::Text),
    req("valuation_fen", T::AmountFen),
    req("method", T::Enum(VALUATION_METHODS)),
    req("base_date", T::Date),
    req("report_id", T::Text),
    req("appraiser", T::Text),
    req("valid_until", T::Date),
    req("pledge_status", T::Enum(PLEDGE_STATUSES)),
    opt("pledgee", T::Text),
    opt("pledge_registration_number", T::Text),
    derived("subject_pseudonym", T::Pseudonym),
    derived("valuation_band", T::Band),
];

static MONITORING: &[FieldSpec] = &[
    req("subject_uscc", T::Uscc),
    req("subject_name", T::Text),
    req("period", T::Period),
    req("event", T::Enum(EVENTS)),
    opt("round", T::Enum(ROUNDS)),
    opt("amount_fen", T::AmountFen),
    opt("board", T::Enum(BOARDS)),
    opt("listing_stage", T::Enum(LISTING_STAGES)),
    opt("innovation_points_score", T::Count(INNOVATION_POINTS_MAX)),
    derived("subject_pseudonym", T::Pseudonym),
    derived("amount_band", T::Band),
];

static RISK_WARNING: &[FieldSpec] = &[
    req("subject_pseudonym", T::Pseudonym),
    req("period", T::Period),
    req("level", T::Enum(WARNING_LEVELS)),
    req("rule_ids", T::TokenList),
    req("basis_record_ids", T::RecordIdList),
];

/// A field's value, as carried in a disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Int(u64),
    Bool(bool),
    List(Vec<String>),
}

impl FieldValue {
    pub fn to_cbor(&self) -> Value {
        match self {
            FieldValue::Text(s) => Value::Text(s.clone()),
            FieldValue::Int(i) => Value::Integer(i128::from(*i)),
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::List(l) => Value::Array(l.iter().cloned().map(Value::Text).collect()),
        }
    }

    /// Writes the value's CBOR encoding (same bytes as [`FieldValue::to_cbor`] encoded).
    pub fn encode_into(&self, e: &mut crate::codec::Encoder) {
        match self {
            FieldValue::Text(s) => {
                e.text(s);
            }
            FieldValue::Int(i) => {
                e.uint(*i);
            }
            FieldValue::Bool(b) => {
                e.bool(*b);
            }
            FieldValue::List(l) => {
                e.array(l.len());
                for s in l {
                    e.text(s);
                }
            }
        }
    }

    /// Maps a decoded CBOR value back; `None` for shapes no field has.
    pub fn from_cbor(v: &Value) -> Option<FieldValue> {
        match v {
            Value::Text(s) => Some(FieldValue::Text(s.clone())),
            Value::Integer(i) => u64::try_from(*i).ok().map(FieldValue::Int),
            Value::Bool(b) => Some(FieldValue::Bool(*b)),
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(FieldValue::List),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Text(s) => serde_json::Value::from(s.as_str()),
            FieldValue::Int(i) => serde_json::Value::from(*i),
            FieldValue::Bool(b) => serde_json::Value::from(*b),
            FieldValue::List(l) => serde_json::Value::from(l.clone()),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<u64> {
        match self {
            FieldValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_count_covers_every_field() {
        for k in RecordKind::ALL {
            assert!(k.fields().len() <= k.digest_count(), "{k}");
            assert!(k.digest_count() <= crate::limits::DIGESTS_PER_RECORD_MAX);
            assert_eq!(RecordKind::parse(k.name()), Some(k));
            let mut names: Vec<_> = k.fields().iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), k.fields().len(), "duplicate field in {k}");
        }
    }
}
