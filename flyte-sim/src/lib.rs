//! `flyte-sim`: a local Flyte 2 server for development, tests, demos and benchmarks.
//!
//! It serves the Connect-JSON RPCs flyhook uses at Flyte's own paths, holds every request to
//! the official `flyteidl2` schema (stricter than Flyte itself, which drops unknown fields),
//! simulates a run lifecycle, injects faults on demand and lets tests see what was created.
//!
//! # Layout
//! - `config`: [`SimConfig`], what a stand-in is started with.
//! - `server`: [`Simulator`], the route table and the dispatcher every RPC goes through.
//! - `connect`: the Connect protocol's framing and error bodies.
//! - `services`: what TaskService, RunService and DataProxyService answer.
//! - `inputs`: defaults and the runtime type check of a run's inputs.
//! - `oauth`: the token endpoint, AuthMetadataService and the credentials check.
//! - `control`: `/_sim/*` and the console page.
//! - `state`: what the handlers share, and the [`Stats`] they count.
//! - `runs`: run records and their clock-driven lifecycle.
//! - `faults`: error, latency and broken-proxy injection.
//! - [`schema`]: the embedded descriptor set and the strict request check.
//! - [`catalogue`]: the deployed tasks, from a TOML file or the built-in set.

pub mod catalogue;
mod config;
mod connect;
mod control;
mod faults;
mod inputs;
mod oauth;
mod runs;
pub mod schema;
mod server;
mod services;
mod state;

pub use catalogue::Catalogue;
pub use config::{OnDuplicate, SimAuth, SimConfig};
pub use faults::Fault;
pub use schema::Schema;
pub use server::Simulator;
pub use state::Stats;
