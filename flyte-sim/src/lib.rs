//! `flyte-sim`: a local Flyte 2 server for development, tests, demos and benchmarks.
//!
//! It serves the Connect-JSON RPCs flyhook uses at Flyte's own paths, holds every request to
//! the official `flyteidl2` schema (stricter than Flyte itself, which drops unknown fields),
//! simulates a run lifecycle, injects faults on demand and lets tests see what was created.
//!
//! # Layout
//! - [`server`]: [`Simulator`], the RPC handlers, the token endpoint and `/_sim/*`.
//! - [`schema`]: the embedded descriptor set and the strict request check.
//! - [`catalogue`]: the deployed tasks, from a TOML file or the built-in set.
//! - [`runs`]: run records and their clock-driven lifecycle.
//! - [`faults`]: error, latency and broken-proxy injection.

pub mod catalogue;
pub mod faults;
pub mod runs;
pub mod schema;
pub mod server;

pub use catalogue::Catalogue;
pub use faults::Fault;
pub use schema::Schema;
pub use server::{OnDuplicate, SimAuth, SimConfig, Simulator, Stats};
