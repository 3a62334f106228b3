//! Sync messages as they travel between members (DESIGN §7, SPEC §14): a CBOR map whose key 0 is
//! the message type, framed on the stream by a 4-byte big-endian length. Decoding goes through
//! the shared codec's profile checks and then enforces every per-message count limit, so a peer
//! cannot make the node allocate or loop beyond [`FRAME_BYTES_MAX`] and the counts below.

use crate::codec::{self, DecodeError, Encoder, Head, Value};
use crate::ids::{Hash, MemberId};
use crate::limits::{
    CHECKPOINT_BYTES_MAX, DISCLOSURES_PER_RECORD_MAX, DISCLOSURE_BYTES_MAX, ENVELOPE_BYTES_MAX,
    POLICIES_PER_MESSAGE_MAX, POLICY_BYTES_MAX, ROSTER_BYTES_MAX, ROSTER_MEMBERS_MAX,
};
use crate::store::LogHead;

/// Largest frame either side sends or accepts. A full `Records` message is at most
/// [`RECORDS_PER_MESSAGE_MAX`] typical records (~4.5 KiB each with disclosures, ~1.2 MiB), and
/// the server stops adding records before this bound; `Rosters` carries at most
/// [`ROSTERS_PER_MESSAGE_MAX`] rosters of up to 256 KiB. 4 MiB bounds one read's allocation.
pub const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Records in one `Records` message (and in one `Fetch`). 256 records amortise the per-message
/// cost (one stream write, one store batch) while keeping a single message's verification work
/// (~256 signature checks, ~10 ms) short enough not to stall a connection.
pub const RECORDS_PER_MESSAGE_MAX: usize = 256;

/// Roster versions in one `Rosters` message: 8 × [`ROSTER_BYTES_MAX`] = 2 MiB < [`FRAME_BYTES_MAX`].
pub const ROSTERS_PER_MESSAGE_MAX: usize = 8;

/// Log heads in one `Heads` message: one per roster member.
pub const HEADS_PER_MESSAGE_MAX: usize = ROSTER_MEMBERS_MAX;

/// CBOR items the pre-scanner admits in one frame: the largest message is `Records` with every
/// record carrying the most disclosures (array + 2 items per record, one per disclosure).
const FRAME_ITEMS_MAX: usize = RECORDS_PER_MESSAGE_MAX * (4 + DISCLOSURES_PER_RECORD_MAX) + 64;

const T: i64 = 0;
const TYPE_HELLO: u64 = 1;
const TYPE_HEADS: u64 = 2;
const TYPE_FETCH: u64 = 3;
const TYPE_RECORDS: u64 = 4;
const TYPE_ROSTER_REQUEST: u64 = 5;
const TYPE_ROSTERS: u64 = 6;
const TYPE_POLICY_REQUEST: u64 = 7;
const TYPE_POLICIES: u64 = 8;
const TYPE_WITNESS: u64 = 9;
const TYPE_EVIDENCE: u64 = 10;

/// "This is what I hold": sent on connect and every anti-entropy round (by the side that starts
/// the pair's rounds; the other side only every few rounds). When both digests match, this is the
/// whole round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub roster_version: u64,
    pub policy_version: u64,
    /// [`heads_digest`] of every log the sender holds.
    pub digest: Hash,
}

/// Every log head the sender holds. `reply` is set on the answer to a peer's `Heads`, which is
/// not answered again (so one mismatch costs one exchange each way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heads {
    pub reply: bool,
    pub heads: Vec<(MemberId, LogHead)>,
    /// The latest signed checkpoint the sender holds of each origin (at most one per head).
    /// The receiver checks each against its own copy of that log: two honest holders of one
    /// origin's checkpoints can then prove a fork, where unsigned heads could only hint at one.
    pub checkpoints: Vec<Vec<u8>>,
}

/// "Send me records `from .. from + count` of `origin`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub origin: MemberId,
    pub from: u64,
    pub count: u32,
}

/// One record on the wire: the envelope verbatim and the disclosures the receiver is entitled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    pub envelope: Vec<u8>,
    pub disclosures: Vec<Vec<u8>>,
}

/// Consecutive records of one origin starting at `from`: the answer to a `Fetch`, or pushed
/// unasked right after the origin made them durable. `checkpoint`, when present, is the origin's
/// signed checkpoint of size exactly `from + records.len()`. `partial`: the sender may hold
/// fewer fields of these records than the receiver's view grants (it is a relay with a narrower
/// view, or is itself still completing them), so the receiver completes them from the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    pub origin: MemberId,
    pub from: u64,
    pub records: Vec<WireRecord>,
    pub checkpoint: Option<Vec<u8>>,
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Heads(Heads),
    Fetch(Fetch),
    Records(Records),
    /// "Send me the roster versions after `have`."
    RosterRequest {
        have: u64,
    },
    /// Consecutive signed roster versions (the exact bytes the governors signed), oldest first.
    Rosters(Vec<Vec<u8>>),
    /// "Send me the policy versions after `have`."
    PolicyRequest {
        have: u64,
    },
    /// Consecutive signed policy versions, oldest first.
    Policies(Vec<Vec<u8>>),
    /// A checkpoint and cosignatures of it (SPEC §17): gossiped by each witness when it
    /// cosigns.
    Witness(crate::witness::Witnessed),
    /// Equivocation evidence (SPEC §18), sent ahead of other traffic.
    Evidence(Vec<u8>),
}

impl Message {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Heads(_) => "heads",
            Message::Fetch(_) => "fetch",
            Message::Records(_) => "records",
            Message::RosterRequest { .. } => "roster-request",
            Message::Rosters(_) => "rosters",
            Message::PolicyRequest { .. } => "policy-request",
            Message::Policies(_) => "policies",
            Message::Witness(_) => "witness",
            Message::Evidence(_) => "evidence",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(match self {
            Message::Records(r) => 64 + r.records.iter().map(record_len).sum::<usize>(),
            Message::Rosters(v) | Message::Policies(v) => {
                16 + v.iter().map(|b| b.len() + 8).sum::<usize>()
            }
            Message::Evidence(b) => 16 + b.len(),
            Message::Heads(h) => 64 + h.heads.len() * 80 + h.checkpoints.len() * 200,
            _ => 64,
        });
        match self {
            Message::Hello(h) => {
                e.map(4).uint(0).uint(TYPE_HELLO);
                e.uint(1).uint(h.roster_version);
                e.uint(2).uint(h.policy_version);
                e.uint(3).bytes(&h.digest);
            }
            Message::Heads(h) => {
                e.map(3 + usize::from(!h.checkpoints.is_empty()))
                    .uint(0)
                    .uint(TYPE_HEADS);
                e.uint(1).bool(h.reply);
                e.uint(2).array(h.heads.len());
                for (origin, head) in &h.heads {
                    e.array(3)
                        .text(origin.as_str())
                        .uint(head.size)
                        .bytes(&head.root);
                }
                if !h.checkpoints.is_empty() {
                    e.uint(3).array(h.checkpoints.len());
                    for c in &h.checkpoints {
                        e.bytes(c);
                    }
                }
            }
            Message::Fetch(f) => {
                e.map(4).uint(0).uint(TYPE_FETCH);
                e.uint(1).text(f.origin.as_str());
                e.uint(2).uint(f.from);
                e.uint(3).uint(u64::from(f.count));
            }
            Message::Records(r) => {
                e.map(4 + usize::from(r.checkpoint.is_some()) + usize::from(r.partial));
                e.uint(0).uint(TYPE_RECORDS);
                e.uint(1).text(r.origin.as_str());
                e.uint(2).uint(r.from);
                e.uint(3).array(r.records.len());
                for rec in &r.records {
                    e.array(2).bytes(&rec.envelope).array(rec.disclosures.len());
                    for d in &rec.disclosures {
                        e.bytes(d);
                    }
                }
                if let Some(c) = &r.checkpoint {
                    e.uint(4).bytes(c);
                }
                if r.partial {
                    e.uint(5).bool(true);
                }
            }
            Message::RosterRequest { have } => {
                e.map(2).uint(0).uint(TYPE_ROSTER_REQUEST);
                e.uint(1).uint(*have);
            }
            Message::PolicyRequest { have } => {
                e.map(2).uint(0).uint(TYPE_POLICY_REQUEST);
                e.uint(1).uint(*have);
            }
            Message::Rosters(versions) | Message::Policies(versions) => {
                let ty = match self {
                    Message::Rosters(_) => TYPE_ROSTERS,
                    _ => TYPE_POLICIES,
                };
                e.map(2).uint(0).uint(ty);
                e.uint(1).array(versions.len());
                for v in versions {
                    e.bytes(v);
                }
            }
            Message::Witness(w) => {
                e.map(3).uint(0).uint(TYPE_WITNESS);
                e.uint(1).bytes(&w.checkpoint);
                e.uint(2).array(w.cosignatures.len());
                for c in &w.cosignatures {
                    e.bytes(c);
                }
            }
            Message::Evidence(b) => {
                e.map(2).uint(0).uint(TYPE_EVIDENCE);
                e.uint(1).bytes(b);
            }
        }
        e.finish()
    }

    /// Decodes one frame's payload, enforcing the profile and every count limit.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        const W: &str = "sync message";
        codec::scan_bounded(W, bytes, FRAME_BYTES_MAX, FRAME_ITEMS_MAX)?;
        match records_direct(bytes) {
            Some(records) => Ok(Message::Records(records)),
            None => Self::decode_tree(bytes),
        }
    }

    /// The reference decoder, through a [`Value`] tree, of bytes that passed the frame's scan.
    fn decode_tree(bytes: &[u8]) -> Result<Message, DecodeError> {
        const W: &str = "sync message";
        let v = codec::value_of_scanned(W, bytes)?;
        let m = codec::as_map(W, &v)?;
        let ty = codec::as_u64(W, codec::field(W, m, T)?)?;
        match ty {
            TYPE_HELLO => {
                codec::only_keys(W, m, &[T, 1, 2, 3])?;
                Ok(Message::Hello(Hello {
                    roster_version: codec::as_u64(W, codec::field(W, m, 1)?)?,
                    policy_version: codec::as_u64(W, codec::field(W, m, 2)?)?,
                    digest: codec::as_hash(W, codec::field(W, m, 3)?)?,
                }))
            }
            TYPE_HEADS => {
                codec::only_keys(W, m, &[T, 1, 2, 3])?;
                let reply = match codec::field(W, m, 1)? {
                    Value::Bool(b) => *b,
                    _ => return Err(DecodeError::structure(W, "heads: reply is not a bool")),
                };
                let list = bounded(W, codec::field(W, m, 2)?, HEADS_PER_MESSAGE_MAX, "heads")?;
                let mut heads = Vec::with_capacity(list.len());
                for h in list {
                    let h = codec::as_array(W, h)?;
                    let [origin, size, root] = h else {
                        return Err(DecodeError::structure(W, "a head is [origin, size, root]"));
                    };
                    heads.push((
                        member(W, origin)?,
                        LogHead {
                            size: codec::as_u64(W, size)?,
                            root: codec::as_hash(W, root)?,
                        },
                    ));
                }
                let checkpoints = match m.get(&codec::key(3)) {
                    None => Vec::new(),
                    Some(v) => bounded(W, v, HEADS_PER_MESSAGE_MAX, "checkpoints")?
                        .iter()
                        .map(|c| sized(W, c, CHECKPOINT_BYTES_MAX, "checkpoint"))
                        .collect::<Result<_, _>>()?,
                };
                Ok(Message::Heads(Heads {
                    reply,
                    heads,
                    checkpoints,
                }))
            }
            TYPE_FETCH => {
                codec::only_keys(W, m, &[T, 1, 2, 3])?;
                let count = codec::as_u64(W, codec::field(W, m, 3)?)?;
                if count == 0 || count > RECORDS_PER_MESSAGE_MAX as u64 {
                    return Err(DecodeError::structure(
                        W,
                        format!("fetch count {count} outside 1..={RECORDS_PER_MESSAGE_MAX}"),
                    ));
                }
                Ok(Message::Fetch(Fetch {
                    origin: member(W, codec::field(W, m, 1)?)?,
                    from: codec::as_u64(W, codec::field(W, m, 2)?)?,
                    count: count as u32,
                }))
            }
            TYPE_RECORDS => {
                codec::only_keys(W, m, &[T, 1, 2, 3, 4, 5])?;
                let from = codec::as_u64(W, codec::field(W, m, 2)?)?;
                let list = bounded(
                    W,
                    codec::field(W, m, 3)?,
                    RECORDS_PER_MESSAGE_MAX,
                    "records",
                )?;
                if from.checked_add(list.len() as u64).is_none() {
                    return Err(DecodeError::structure(W, "records: range overflows"));
                }
                let mut records = Vec::with_capacity(list.len());
                for r in list {
                    let r = codec::as_array(W, r)?;
                    let [envelope, disclosures] = r else {
                        return Err(DecodeError::structure(
                            W,
                            "a record is [envelope, [disclosure]]",
                        ));
                    };
                    let envelope = sized(W, envelope, ENVELOPE_BYTES_MAX, "envelope")?;
                    let ds = bounded(W, disclosures, DISCLOSURES_PER_RECORD_MAX, "disclosures")?;
                    let disclosures = ds
                        .iter()
                        .map(|d| sized(W, d, DISCLOSURE_BYTES_MAX, "disclosure"))
                        .collect::<Result<_, _>>()?;
                    records.push(WireRecord {
                        envelope,
                        disclosures,
                    });
                }
                let checkpoint = match m.get(&codec::key(4)) {
                    None => None,
                    Some(c) => Some(sized(W, c, CHECKPOINT_BYTES_MAX, "checkpoint")?),
                };
                let partial = match m.get(&codec::key(5)) {
                    None => false,
                    Some(Value::Bool(true)) => true,
                    Some(_) => {
                        return Err(DecodeError::structure(
                            W,
                            "records: partial is present only as true",
                        ))
                    }
                };
                Ok(Message::Records(Records {
                    origin: member(W, codec::field(W, m, 1)?)?,
                    from,
                    records,
                    checkpoint,
                    partial,
                }))
            }
            TYPE_ROSTER_REQUEST | TYPE_POLICY_REQUEST => {
                codec::only_keys(W, m, &[T, 1])?;
                let have = codec::as_u64(W, codec::field(W, m, 1)?)?;
                Ok(if ty == TYPE_ROSTER_REQUEST {
                    Message::RosterRequest { have }
                } else {
                    Message::PolicyRequest { have }
                })
            }
            TYPE_ROSTERS | TYPE_POLICIES => {
                codec::only_keys(W, m, &[T, 1])?;
                let (max, bytes_max, what) = if ty == TYPE_ROSTERS {
                    (ROSTERS_PER_MESSAGE_MAX, ROSTER_BYTES_MAX, "roster")
                } else {
                    (POLICIES_PER_MESSAGE_MAX, POLICY_BYTES_MAX, "policy")
                };
                let list = bounded(W, codec::field(W, m, 1)?, max, what)?;
                let versions = list
                    .iter()
                    .map(|v| sized(W, v, bytes_max, what))
                    .collect::<Result<_, _>>()?;
                Ok(if ty == TYPE_ROSTERS {
                    Message::Rosters(versions)
                } else {
                    Message::Policies(versions)
                })
            }
            TYPE_WITNESS => {
                codec::only_keys(W, m, &[T, 1, 2])?;
                let list = bounded(
                    W,
                    codec::field(W, m, 2)?,
                    crate::witness::COSIGNATURES_MAX,
                    "cosignatures",
                )?;
                Ok(Message::Witness(crate::witness::Witnessed {
                    checkpoint: sized(
                        W,
                        codec::field(W, m, 1)?,
                        CHECKPOINT_BYTES_MAX,
                        "checkpoint",
                    )?,
                    cosignatures: list
                        .iter()
                        .map(|c| sized(W, c, crate::witness::COSIGNATURE_BYTES_MAX, "cosignature"))
                        .collect::<Result<_, _>>()?,
                }))
            }
            TYPE_EVIDENCE => {
                codec::only_keys(W, m, &[T, 1])?;
                Ok(Message::Evidence(sized(
                    W,
                    codec::field(W, m, 1)?,
                    crate::evidence::EVIDENCE_BYTES_MAX,
                    "evidence",
                )?))
            }
            other => Err(DecodeError::structure(
                W,
                format!("unknown message type {other}"),
            )),
        }
    }
}

/// A well-formed `Records` message read straight from bytes that passed the frame's `scan`,
/// without a [`Value`] tree: a catch-up is mostly these, and the tree cost every envelope and
/// disclosure an allocation and a copy more. `None` for anything else — another message type,
/// a key or type out of place, a limit exceeded — and [`Message::decode`] then decodes it the
/// reference way, errors included, so this never accepts what that would refuse (property
/// test `records_are_decoded_directly_as_the_value_tree_decodes_them`).
fn records_direct(bytes: &[u8]) -> Option<Records> {
    let mut r = codec::Reader::new(bytes);
    let Some(Head::Map(entries)) = r.head() else {
        return None;
    };
    let (mut ty, mut origin, mut from, mut records) = (None, None, None, None);
    let (mut checkpoint, mut partial) = (None, false);
    for _ in 0..entries {
        let Some(Head::Uint(key)) = r.head() else {
            return None;
        };
        match (key, r.head()?) {
            (0, Head::Uint(t)) if t == TYPE_RECORDS => ty = Some(t), // key 0: `T`
            (1, Head::Text(t)) => origin = Some(MemberId::new(t).ok()?),
            (2, Head::Uint(f)) => from = Some(f),
            (3, Head::Array(n)) if n <= RECORDS_PER_MESSAGE_MAX as u64 => {
                let mut list = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    list.push(wire_record_direct(&mut r)?);
                }
                records = Some(list);
            }
            (4, Head::Bytes(c)) if c.len() <= CHECKPOINT_BYTES_MAX => checkpoint = Some(c.to_vec()),
            (5, Head::Bool(true)) => partial = true,
            _ => return None,
        }
    }
    let (_, origin, from, records) = (ty?, origin?, from?, records?);
    if !r.at_end() || from.checked_add(records.len() as u64).is_none() {
        return None;
    }
    Some(Records {
        origin,
        from,
        records,
        checkpoint,
        partial,
    })
}

/// One `[envelope, [disclosure, ...]]` for [`records_direct`], within the same limits as the
/// reference decoder.
fn wire_record_direct(r: &mut codec::Reader<'_>) -> Option<WireRecord> {
    let (Head::Array(2), Head::Bytes(envelope)) = (r.head()?, r.head()?) else {
        return None;
    };
    if envelope.len() > ENVELOPE_BYTES_MAX {
        return None;
    }
    let Head::Array(n) = r.head()? else {
        return None;
    };
    if n > DISCLOSURES_PER_RECORD_MAX as u64 {
        return None;
    }
    let mut disclosures = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match r.head()? {
            Head::Bytes(d) if d.len() <= DISCLOSURE_BYTES_MAX => disclosures.push(d.to_vec()),
            _ => return None,
        }
    }
    Some(WireRecord {
        envelope: envelope.to_vec(),
        disclosures,
    })
}

/// Encoded size (an upper bound) of a record inside a `Records` message, for servers filling a
/// frame.
pub fn record_len(r: &WireRecord) -> usize {
    r.envelope.len() + 8 + r.disclosures.iter().map(|d| d.len() + 4).sum::<usize>()
}

fn bounded<'a>(
    w: &'static str,
    v: &'a Value,
    max: usize,
    what: &str,
) -> Result<&'a [Value], DecodeError> {
    let list = codec::as_array(w, v)?;
    if list.len() > max {
        return Err(DecodeError::structure(
            w,
            format!("{} {what} (max {max})", list.len()),
        ));
    }
    Ok(list)
}

fn sized(w: &'static str, v: &Value, max: usize, what: &str) -> Result<Vec<u8>, DecodeError> {
    let b = codec::as_bytes(w, v)?;
    if b.len() > max {
        return Err(DecodeError::structure(
            w,
            format!("{what} of {} bytes (max {max})", b.len()),
        ));
    }
    Ok(b.to_vec())
}

fn member(w: &'static str, v: &Value) -> Result<MemberId, DecodeError> {
    MemberId::new(codec::as_text(w, v)?).map_err(|e| DecodeError::structure(w, e.to_string()))
}

/// The digest a `Hello` carries: SHA-256 over every non-empty head sorted by origin, each as
/// `len(origin) ‖ origin ‖ size (u64 BE) ‖ root`. Two members holding the same logs compute the
/// same digest; any difference in any log changes it.
pub fn heads_digest<'a>(heads: impl IntoIterator<Item = (&'a MemberId, &'a LogHead)>) -> Hash {
    let mut sorted: Vec<_> = heads.into_iter().filter(|(_, h)| h.size > 0).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (origin, head) in sorted {
        let id = origin.as_str().as_bytes();
        ctx.update(&[id.len() as u8]);
        ctx.update(id);
        ctx.update(&head.size.to_be_bytes());
        ctx.update(&head.root);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn samples() -> Vec<Message> {
        let head = LogHead {
            size: 7,
            root: [9; 32],
        };
        vec![
            Message::Hello(Hello {
                roster_version: 3,
                policy_version: 0,
                digest: [1; 32],
            }),
            Message::Heads(Heads {
                reply: true,
                heads: vec![(id("bank-a"), head), (id("science-dept"), head)],
                checkpoints: vec![],
            }),
            Message::Heads(Heads {
                reply: false,
                heads: vec![(id("bank-a"), head)],
                checkpoints: vec![vec![8; 150]],
            }),
            Message::Fetch(Fetch {
                origin: id("bank-a"),
                from: 1 << 40,
                count: 256,
            }),
            Message::Records(Records {
                origin: id("bank-a"),
                from: 5,
                records: vec![WireRecord {
                    envelope: vec![1, 2, 3],
                    disclosures: vec![vec![4], vec![5, 6]],
                }],
                checkpoint: Some(vec![7; 100]),
                partial: true,
            }),
            Message::Records(Records {
                origin: id("bank-a"),
                from: 0,
                records: vec![],
                checkpoint: None,
                partial: false,
            }),
            Message::RosterRequest { have: 2 },
            Message::Rosters(vec![vec![1; 10], vec![2; 20]]),
            Message::PolicyRequest { have: 1 },
            Message::Policies(vec![vec![3; 12]]),
            Message::Witness(crate::witness::Witnessed {
                checkpoint: vec![4; 140],
                cosignatures: vec![vec![5; 200], vec![6; 210]],
            }),
            Message::Evidence(vec![7; 3000]),
        ]
    }

    #[test]
    fn every_message_round_trips_and_matches_the_reference_encoder() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes).as_ref(), Ok(&m), "{}", m.name());
            // The direct encoder must produce what the reference serialiser would.
            let value = codec::decode_with_items("t", &bytes, FRAME_BYTES_MAX, FRAME_ITEMS_MAX)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(codec::encode(&value), bytes, "{}", m.name());
        }
    }

    /// Values shaped like a `Records` message, mostly valid, with a few parts at a time at
    /// the edges the direct decoder must treat as the reference does: a key absent or extra, a
    /// value of another type, a length or count at its limit or one over.
    fn records_like() -> impl Strategy<Value = Vec<(Value, Value)>> {
        use proptest::collection::vec;
        let bytes_near = |max: usize| {
            prop_oneof![
                40 => (0usize..40).prop_map(|n| Value::Bytes(vec![7; n])),
                1 => Just(Value::Bytes(vec![7; max])),
                1 => Just(Value::Bytes(vec![7; max + 1])),
                1 => Just(Value::Text("x".into())),
            ]
        };
        let count_near =
            |max: usize| prop_oneof![60 => 0usize..4, 1 => Just(max), 1 => Just(max + 1)];
        let disclosures = count_near(DISCLOSURES_PER_RECORD_MAX).prop_flat_map(move |n| {
            vec(bytes_near(DISCLOSURE_BYTES_MAX), n).prop_map(Value::Array)
        });
        let record = prop_oneof![
            60 => (bytes_near(ENVELOPE_BYTES_MAX), disclosures)
                .prop_map(|(e, d)| Value::Array(vec![e, d])),
            1 => Just(Value::Array(vec![Value::Bytes(vec![1])])),
            1 => Just(Value::Bytes(vec![1])),
            1 => Just(codec::tagged(
                24,
                Value::Array(vec![Value::Bytes(vec![1]), Value::Array(vec![])])
            )),
        ];
        // At the count limit, with records valid but for the count.
        let many = |n: usize| {
            let valid = Value::Array(vec![Value::Bytes(vec![1]), Value::Array(vec![])]);
            Value::Array(vec![valid; n])
        };
        let records = prop_oneof![
            60 => (0usize..4).prop_flat_map(move |n| vec(record.clone(), n).prop_map(Value::Array)),
            1 => Just(many(RECORDS_PER_MESSAGE_MAX)),
            1 => Just(many(RECORDS_PER_MESSAGE_MAX + 1)),
            1 => Just(Value::Integer(3)),
        ];
        let uint = prop_oneof![
            20 => (0u64..10).prop_map(|n| Value::Integer(n.into())),
            2 => (u64::MAX - 3..=u64::MAX).prop_map(|n| Value::Integer(n.into())),
            1 => Just(Value::Integer(-1)),
            1 => Just(Value::Text("4".into())),
        ];
        // Present with the strategy's value, or (seldom) absent or tagged.
        let entry = |k: i64, v: BoxedStrategy<Value>| {
            prop_oneof![
                30 => v.clone().prop_map(Some),
                1 => Just(None),
                1 => v.prop_map(|v| Some(codec::tagged(24, v))),
            ]
            .prop_map(move |v| v.map(|v| (codec::key(k), v)))
        };
        // Absent mostly, or present with the strategy's value.
        let optional = |k: i64, v: BoxedStrategy<Value>| prop_oneof![2 => Just(None), 1 => v.prop_map(move |v| Some((codec::key(k), v)))];
        (
            entry(
                0,
                prop_oneof![30 => Just(Value::Integer(4)), 1 => uint.clone()].boxed(),
            ),
            entry(
                1,
                prop_oneof![
                    30 => Just(Value::Text("bank-a".into())),
                    1 => Just(Value::Text("Bank A".into())),
                    1 => Just(Value::Bytes(b"bank-a".to_vec())),
                ]
                .boxed(),
            ),
            entry(2, uint.boxed()),
            entry(3, records.boxed()),
            optional(4, bytes_near(CHECKPOINT_BYTES_MAX).boxed()),
            optional(
                5,
                prop_oneof![
                    10 => Just(Value::Bool(true)),
                    1 => Just(Value::Bool(false)),
                    1 => Just(Value::Null)
                ]
                .boxed(),
            ),
            prop_oneof![
                30 => Just(None),
                1 => Just(Some((codec::key(6), Value::Integer(0)))),
                1 => Just(Some((Value::Text("t".into()), Value::Integer(4)))),
                1 => Just(Some((Value::Integer(-1), Value::Integer(4)))),
            ],
        )
            .prop_map(|(a, b, c, d, e, f, g)| [a, b, c, d, e, f, g].into_iter().flatten().collect())
            .prop_shuffle()
    }

    /// A map of `entries` in their order (which `codec::encode` would sort).
    fn encode_map(entries: &[(Value, Value)]) -> Vec<u8> {
        let mut bytes = vec![0xa0 | entries.len() as u8]; // fewer than 24 entries
        for (k, v) in entries {
            bytes.extend(codec::encode(k));
            bytes.extend(codec::encode(v));
        }
        bytes
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn records_are_decoded_directly_as_the_value_tree_decodes_them(v in records_like()) {
            let bytes = encode_map(&v);
            if codec::scan_bounded("t", &bytes, FRAME_BYTES_MAX, FRAME_ITEMS_MAX).is_ok() {
                // The direct decoder answers exactly when the reference decodes `Records`,
                // with the same message; everything else is left to the reference.
                let reference = match Message::decode_tree(&bytes) {
                    Ok(Message::Records(r)) => Some(r),
                    _ => None,
                };
                proptest::prop_assert_eq!(records_direct(&bytes), reference);
            }
        }

        #[test]
        fn every_records_message_takes_the_direct_path(
            from in any::<u32>(),
            records in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 0..19),
                ),
                0..8,
            ),
            checkpoint in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
            partial in any::<bool>(),
        ) {
            let r = Records {
                origin: id("pbc-chengdu"),
                from: u64::from(from),
                records: records
                    .into_iter()
                    .map(|(envelope, disclosures)| WireRecord { envelope, disclosures })
                    .collect(),
                checkpoint,
                partial,
            };
            let bytes = Message::Records(r.clone()).encode();
            proptest::prop_assert_eq!(records_direct(&bytes), Some(r));
        }
    }

    #[test]
    fn hello_in_sync_is_small() {
        let hello = Message::Hello(Hello {
            roster_version: 1000,
            policy_version: 1000,
            digest: [0; 32],
        });
        // A round between peers in sync is one Hello plus its 4-byte frame header, QUIC's packet
        // overhead and the acknowledgement (DESIGN §12: ≤ 200 bytes per round).
        assert!(hello.encode().len() + 4 <= 60, "{}", hello.encode().len());
    }

    #[test]
    fn partial_is_present_only_as_true() {
        // Each message has one encoding: `partial: false` spelled out is refused.
        let mut e = Encoder::with_capacity(64);
        e.map(5).uint(0).uint(TYPE_RECORDS);
        e.uint(1).text("o").uint(2).uint(0).uint(3).array(0);
        e.uint(5).bool(false);
        let err = Message::decode(&e.finish()).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("partial is present only as true")),
            "{err:?}"
        );
    }

    #[test]
    fn counts_are_limited_at_n_and_n_plus_1() {
        let rec = WireRecord {
            envelope: vec![0],
            disclosures: vec![],
        };
        let records = |n: usize| {
            Message::Records(Records {
                origin: id("o"),
                from: 0,
                records: vec![rec.clone(); n],
                checkpoint: None,
                partial: false,
            })
            .encode()
        };
        assert!(Message::decode(&records(RECORDS_PER_MESSAGE_MAX)).is_ok());
        assert!(Message::decode(&records(RECORDS_PER_MESSAGE_MAX + 1)).is_err());

        let disclosures = |n: usize| {
            Message::Records(Records {
                origin: id("o"),
                from: 0,
                records: vec![WireRecord {
                    envelope: vec![0],
                    disclosures: vec![vec![1]; n],
                }],
                checkpoint: None,
                partial: false,
            })
            .encode()
        };
        assert!(Message::decode(&disclosures(DISCLOSURES_PER_RECORD_MAX)).is_ok());
        assert!(Message::decode(&disclosures(DISCLOSURES_PER_RECORD_MAX + 1)).is_err());

        let envelope = |n: usize| {
            Message::Records(Records {
                origin: id("o"),
                from: 0,
                records: vec![WireRecord {
                    envelope: vec![0; n],
                    disclosures: vec![],
                }],
                checkpoint: None,
                partial: false,
            })
            .encode()
        };
        assert!(Message::decode(&envelope(ENVELOPE_BYTES_MAX)).is_ok());
        assert!(Message::decode(&envelope(ENVELOPE_BYTES_MAX + 1)).is_err());

        let fetch = |count: u32| {
            Message::Fetch(Fetch {
                origin: id("o"),
                from: 0,
                count,
            })
            .encode()
        };
        assert!(Message::decode(&fetch(RECORDS_PER_MESSAGE_MAX as u32)).is_ok());
        assert!(Message::decode(&fetch(RECORDS_PER_MESSAGE_MAX as u32 + 1)).is_err());
        assert!(Message::decode(&fetch(0)).is_err());

        let rosters = |n: usize| Message::Rosters(vec![vec![1]; n]).encode();
        assert!(Message::decode(&rosters(ROSTERS_PER_MESSAGE_MAX)).is_ok());
        assert!(Message::decode(&rosters(ROSTERS_PER_MESSAGE_MAX + 1)).is_err());
        let policies = |n: usize| Message::Policies(vec![vec![1]; n]).encode();
        assert!(Message::decode(&policies(POLICIES_PER_MESSAGE_MAX)).is_ok());
        assert!(Message::decode(&policies(POLICIES_PER_MESSAGE_MAX + 1)).is_err());
        let big = |n: usize| Message::Policies(vec![vec![0; n]]).encode();
        assert!(Message::decode(&big(POLICY_BYTES_MAX)).is_ok());
        assert!(Message::decode(&big(POLICY_BYTES_MAX + 1)).is_err());

        let heads = |n: usize| {
            Message::Heads(Heads {
                reply: false,
                heads: (0..n)
                    .map(|i| {
                        (
                            id(&format!("m{i}")),
                            LogHead {
                                size: 1,
                                root: [0; 32],
                            },
                        )
                    })
                    .collect(),
                checkpoints: vec![vec![0; 100]; n],
            })
            .encode()
        };
        assert!(Message::decode(&heads(HEADS_PER_MESSAGE_MAX)).is_ok());
        assert!(Message::decode(&heads(HEADS_PER_MESSAGE_MAX + 1)).is_err());
        let witness = |n: usize| {
            Message::Witness(crate::witness::Witnessed {
                checkpoint: vec![0; 100],
                cosignatures: vec![vec![0; 200]; n],
            })
            .encode()
        };
        let cosigs_max = crate::witness::COSIGNATURES_MAX;
        assert!(Message::decode(&witness(cosigs_max)).is_ok());
        assert!(Message::decode(&witness(cosigs_max + 1)).is_err());
    }

    #[test]
    fn garbage_and_unknown_types_are_errors_not_panics() {
        for bytes in [
            &[][..],
            &[0xff],
            &[0xa1, 0x00, 0x18, 0x63],       // {0: 99}
            &[0xa2, 0x00, 0x01, 0x01, 0x02], // hello missing fields
            &[0x9f, 0xff],                   // indefinite array
        ] {
            assert!(Message::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn digest_ignores_empty_logs_and_order() {
        let h = LogHead {
            size: 1,
            root: [3; 32],
        };
        let empty = LogHead {
            size: 0,
            root: [0; 32],
        };
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let d1 = heads_digest([(&a, &h), (&b, &h)]);
        let d2 = heads_digest([(&b, &h), (&c, &empty), (&a, &h)]);
        assert_eq!(d1, d2);
        let h2 = LogHead { size: 2, ..h };
        assert_ne!(d1, heads_digest([(&a, &h), (&b, &h2)]));
    }
}
