//! Deterministic synthetic records for benchmarks and crash tests: valid, varied, and reproducible
//! from an index, with no dependence on files outside the repository. (The demo draws on
//! `shared/domain/enterprises.csv` instead.)

use tfx_protocol::domain::Uscc;
use tfx_protocol::validate::{validate_record, RecordBody, ValidationErrors};

const BASE31: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Sichuan prefecture-level region codes (Chengdu, Mianyang, Deyang, Yibin, Leshan, Luzhou).
const REGIONS: [&str; 6] = ["510104", "510703", "510603", "511502", "511102", "510502"];
const PRODUCTS: [&str; 5] = [
    "tianfu-kechuang-dai",
    "points-loan",
    "ip-pledge-loan",
    "supply-chain",
    "working-capital",
];

/// A valid synthetic USCC for enterprise `n` in `region`.
pub fn uscc(n: u64, region: &str) -> Uscc {
    let mut serial = [b'0'; 9];
    let mut v = n;
    for c in serial.iter_mut().rev() {
        *c = BASE31[(v % 31) as usize];
        v /= 31;
    }
    let first17 = format!("91{region}{}", String::from_utf8_lossy(&serial));
    // The construction only uses alphabet characters and a six-digit region, so it always parses.
    Uscc::with_check_character(&first17).unwrap_or_else(|e| unreachable!("synthetic USCC: {e}"))
}

/// The JSON of synthetic credit record `n`.
pub fn credit_json(n: u64) -> serde_json::Value {
    let region = REGIONS[(n % REGIONS.len() as u64) as usize];
    let overdue = [0u64, 0, 0, 15, 120][(n % 5) as usize];
    let class = tfx_protocol::validate::minimum_classification(overdue);
    let amount = 10_000_000 * (1 + n % 300);
    let industry = ["C", "I", "M", "D"][(n % 4) as usize];
    let lender = ["天府银行科技支行", "成都银行科技支行", "绵阳商业银行"][(n % 3) as usize];
    let product = PRODUCTS[(n % PRODUCTS.len() as u64) as usize];
    let guarantee = ["credit", "guarantee", "ip-pledge"][(n % 3) as usize];
    serde_json::json!({
        "kind": "credit",
        "subject_uscc": uscc(n / 3, region).as_str(),
        "subject_name": format!("四川合成科技有限公司{:06}", n / 3),
        "region_code": region,
        "industry": industry,
        "lender": lender,
        "product": product,
        "contract_amount_fen": amount,
        "balance_fen": amount / 2,
        "start_date": "2026-01-15",
        "maturity_date": "2027-01-14",
        "guarantee": guarantee,
        "classification": class,
        "overdue_days": overdue,
        "risk_compensation_pool": n.is_multiple_of(2)
    })
}

/// Synthetic credit record `n`, validated.
pub fn credit(n: u64) -> Result<RecordBody, ValidationErrors> {
    validate_record(&credit_json(n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthetic_records_validate() {
        for n in 0..500 {
            assert!(
                super::credit(n).is_ok(),
                "record {n}: {:?}",
                super::credit(n).err()
            );
        }
    }
}
