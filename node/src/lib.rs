//! `tfx-node`: the only tfx crate that does I/O. Today it holds the durable side of a member —
//! the sled [`sled_store::SledStore`], the group-commit [`appender::Appender`] that makes local
//! appends durable before acknowledging them, key files, the consortium PKI
//! ([`pki`]: CA, member TLS keys and certificates), the clock and the OS random generator.
//! The QUIC transport, sync driver and local API (DESIGN §7, §10) will live here too.

pub mod api;
pub mod appender;
pub mod clock;
pub mod config;
pub mod connection;
pub mod driver;
pub mod entropy;
pub mod fsutil;
pub mod keyfile;
pub mod limits;
pub mod node;
pub mod pki;
pub mod sled_store;
pub mod synthetic;
pub mod transport;
