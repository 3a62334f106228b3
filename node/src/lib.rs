//! `tfx-node`: the only tfx crate that does I/O. It holds the durable side of a member — the
//! sled [`sled_store::SledStore`], the group-commit [`appender::Appender`] that makes local
//! appends durable before acknowledging them, key files, the consortium PKI ([`pki`]: CA,
//! member TLS keys and certificates), the clock and the OS random generator — and the running
//! node: the QUIC [`transport`], peer [`connection`]s, the sync [`driver`] around the sans-IO
//! core, the [`node`] that wires them together and the loopback [`api`] (DESIGN §7, §10) — and
//! the [`ledger`] of every disclosure sent (DESIGN §8), the risk-warning member's rule
//! runner, [`warner`] (DESIGN §9), and the operators' [`metrics`] and health check.

pub mod api;
pub mod appender;
pub mod backup;
pub mod clock;
pub mod config;
pub mod connection;
pub mod driver;
pub mod entropy;
pub mod frame;
pub mod fsutil;
pub mod idindex;
pub mod keyfile;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod settled;
pub mod settler;
pub mod sled_store;
pub mod subject_index;
pub mod synthetic;
pub mod transport;
pub mod vlog;
pub mod warner;
