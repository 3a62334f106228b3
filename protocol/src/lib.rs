//! `tfx-protocol`: the formats and rules every tfx member shares, with no I/O — no network, files,
//! clocks or randomness (time and entropy come in as arguments). Auditors' offline verification
//! depends on this crate alone.
//!
//! Map: [`schema`] and [`validate`] define record kinds and check input; [`derive`] computes the
//! signed derived fields; [`record`] seals and verifies envelopes with [`disclosure`]s over
//! [`cose`]; [`merkle`] and [`checkpoint`] make origin logs verifiable; [`store`] is the
//! persistence contract and [`log`] plans appends against it. [`roster`] says who the members
//! are, with which keys and roles, and who governs. [`sync`] is the replication state machine
//! and its wire messages. [`codec`] is the only place CBOR bytes are read or written; [`limits`]
//! names every bound; [`par`] spreads pure work (signature checks) over the cores.

pub mod bundle;
pub mod checkpoint;
pub mod codec;
pub mod cose;
#[cfg(test)]
mod decode_oracle;
pub mod derive;
pub mod disclosure;
pub mod domain;
pub mod entropy;
pub mod evidence;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod log;
pub mod merkle;
pub mod minimize;
pub mod multisig;
pub mod par;
pub mod policy;
pub mod record;
pub mod roster;
pub mod schema;
pub mod store;
pub mod sync;
pub mod validate;
pub mod warnings;
pub mod witness;

pub use ids::{Hash, LogIndex, MemberId, RecordId, Timestamp};
