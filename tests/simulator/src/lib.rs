//! The simulated Shotgun site: a faithful stand-in for a real site in every test, the demo and the
//! benchmarks (protocol §6). It serves REST API v1 on 127.0.0.1, keeps an event log exactly as a real
//! site writes it, and can be made as hostile as production (latency, errors, dropped connections,
//! out-of-order and missing events, event-less scripts, archived logs, schema edits).
//!
//! # Layout
//! - [`site`]: the site's state and its public Rust API (reads, writes with their events, schema
//!   edits, knobs, truth). Every HTTP surface is a thin adapter over it.
//! - [`generate`]: the deterministic dataset generator (`--scale`, `--seed`).
//! - [`rest`]: REST API v1 (auth, entity reads and writes, schema) with the real response shapes.
//! - [`api3`]: the `/api3/json` JSON-RPC endpoint (owned by another engineer; a placeholder here).
//! - [`control`]: the `/_sim` JSON control API for Python tests and the demo.
//! - [`faults`]: request-level fault injection on the API routes.
//! - [`auth`]: access/refresh tokens.
//! - [`workload`]: the random-edit driver.
//! - [`server`]: [`Simulator::start`] and the one place the HTTP app is assembled.
//!
//! # Starting one in a test
//! ```text
//! let sim = shotgun_sim::Simulator::start(shotgun_sim::SimConfig { scale: 1000, ..Default::default() }).await?;
//! let (script, key) = sim.credentials();
//! // ... point the syncer at sim.base_url() ...
//! let truth = sim.site().truth(None);
//! sim.shutdown().await;
//! ```

pub mod api3;
pub mod auth;
pub mod config;
pub mod control;
pub mod faults;
pub mod generate;
pub mod rest;
pub mod schema_data;
pub mod server;
pub mod site;
pub mod workload;

pub use config::{SchemaSource, ScriptCredential, SimConfig};
pub use faults::{FaultKind, Faults};
pub use server::{AppState, RunningSim, Simulator};
pub use site::{Actor, EventKnobs, Site, SiteError};
