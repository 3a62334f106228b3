//! Wire and format limits. Every number a peer, a file or an operator can push against is named
//! here with the reason for its value; decoders check these *before* allocating or recursing.
//! Limits are tested at N and N+1 where an input can reach them (size limits through the shared
//! `codec::decode` check).

/// Largest COSE_Sign1 record envelope. A header holds at most [`DIGESTS_PER_RECORD_MAX`] 32-byte
/// digests (~1.1 KiB) plus a member id, kind and a few integers; 4 KiB leaves room for schema
/// growth while keeping a million envelopes well inside memory and disk targets.
pub const ENVELOPE_BYTES_MAX: usize = 4096;

/// Largest single disclosure (`[salt, value, name]`). The largest value is a list of up to
/// [`LIST_ITEMS_MAX`] record ids as hex text (64 × 66 bytes ≈ 4.2 KiB); 8 KiB covers it.
pub const DISCLOSURE_BYTES_MAX: usize = 8192;

/// Digests in one header (real plus decoys). The largest kind pads to 24; 32 allows growth
/// without letting a forged header make a verifier hash-compare thousands of entries.
pub const DIGESTS_PER_RECORD_MAX: usize = 32;

/// Disclosures carried with one record: never more than it has digests.
pub const DISCLOSURES_PER_RECORD_MAX: usize = DIGESTS_PER_RECORD_MAX;

/// Largest signed checkpoint: a member id, two integers and one hash, signed. 512 bytes is ~2×.
pub const CHECKPOINT_BYTES_MAX: usize = 512;

/// Largest record file (`tfx record sign` output): one envelope plus every disclosure at its
/// maximum, plus framing.
pub const RECORD_FILE_BYTES_MAX: usize =
    ENVELOPE_BYTES_MAX + DISCLOSURES_PER_RECORD_MAX * (DISCLOSURE_BYTES_MAX + 8) + 64;

/// Largest record input document (JSON). A record has ~16 fields of at most
/// [`TEXT_CHARS_MAX`] characters; 64 KiB is far above any honest input.
pub const RECORD_JSON_BYTES_MAX: usize = 64 * 1024;

/// Nesting depth of any CBOR item we decode. Our deepest structure (record file → disclosure
/// list → bstr) is 3 levels; 8 refuses stack-exhaustion payloads with margin.
pub const CBOR_DEPTH_MAX: usize = 8;

/// Data items in one decoded CBOR document (counted before decoding). A header with 32 digests is
/// ~50 items, a disclosure holding a 64-entry list ~70; 256 bounds the work per document.
pub const CBOR_ITEMS_MAX: usize = 256;

/// Entries in any one CBOR map (duplicate-key detection is quadratic in this).
pub const CBOR_MAP_ENTRIES_MAX: usize = 16;

/// Characters in a free-text field (names, lender, report ids). The longest registered Chinese
/// enterprise names are under 100 characters.
pub const TEXT_CHARS_MAX: usize = 200;

/// Items in a list-valued field (rule ids, basis record ids of a warning).
pub const LIST_ITEMS_MAX: usize = 64;

/// Bytes in a member id (`[a-z0-9][a-z0-9.-]*`); ids appear in every key and header.
pub const MEMBER_ID_BYTES_MAX: usize = 64;

/// Records returned by one store query; callers page with a cursor beyond this.
pub const QUERY_RESULTS_MAX: usize = 10_000;

/// Smallest consortium pseudonym secret: 256 bits, the HMAC-SHA256 key strength.
pub const PSEUDONYM_SECRET_BYTES_MIN: usize = 32;

/// Largest signed roster. DESIGN sizes a consortium at 5–50 members; a member entry is ~300
/// bytes with a few keys, so 256 KiB holds [`ROSTER_MEMBERS_MAX`] members with room for history
/// of keys and revocations.
pub const ROSTER_BYTES_MAX: usize = 256 * 1024;

/// Members in one roster: five times the largest consortium DESIGN foresees.
pub const ROSTER_MEMBERS_MAX: usize = 256;

/// Governors in one roster, and so signatures on one roster version.
pub const ROSTER_GOVERNORS_MAX: usize = 16;

/// Record-signing keys a member lists (current, rotated-out ones still verifying old records).
pub const MEMBER_KEYS_MAX: usize = 8;

/// Roles one member may hold: all ten.
pub const MEMBER_ROLES_MAX: usize = 10;

/// Revocations kept in a roster (they are never dropped, so they accumulate slowly).
pub const ROSTER_REVOCATIONS_MAX: usize = 1024;

/// CBOR items in one roster document: ~60 per member at the limits above, plus revocations.
pub const ROSTER_ITEMS_MAX: usize = ROSTER_MEMBERS_MAX * 60 + ROSTER_REVOCATIONS_MAX * 4 + 256;

/// Largest signed policy. A grant is ~40 bytes plus its field names (~25 bytes each); every
/// kind × role with every field is ~10 KiB, so 64 KiB leaves room for purposes and signatures.
pub const POLICY_BYTES_MAX: usize = 64 * 1024;

/// Grants in one policy: one per record kind and role at most (4 kinds × 10 roles).
pub const POLICY_GRANTS_MAX: usize = 64;

/// CBOR items in one policy document: per grant a map of 5 entries and up to 24 field names.
pub const POLICY_ITEMS_MAX: usize = POLICY_GRANTS_MAX * 40 + 256;

/// Policy versions in one `Policies` sync message: 8 × [`POLICY_BYTES_MAX`] = 512 KiB.
pub const POLICIES_PER_MESSAGE_MAX: usize = 8;
