//! The Shotgun Cache core: what a cached entity is, what a Shotgun filter means, and how entities are stored.
//!
//! Both services (syncer and query-server), the site simulator and the tests build on this crate.
//! It performs no network I/O towards Shotgun; the only I/O here is the store backends.
//!
//! # Layout
//! - [`model`]: typed values for every Shotgun data type, the site schema, cached entities.
//! - [`filter`]: one typed filter tree, parsers for every wire form, validation against the schema,
//!   and the pure in-memory reference evaluator that *defines* the semantics.
//! - [`query`]: a find/count request in domain terms (filter, return fields, sorts, paging).
//! - [`store`]: the `Store` trait every backend implements, the write batch, the change journal,
//!   and the backends (`sqlite`, `rethinkdb`).
//! - [`summarize`]: Shotgun's `summarize` summary types and groupings over result records.
//! - [`config`]: the TOML configuration shared by both services (`docs/config-contract.md`).

pub mod config;
pub mod filter;
pub mod model;
pub mod query;
pub mod store;
pub mod summarize;
