//! flyhook's worker: consumes dispatches from RabbitMQ, starts each as a Flyte run exactly once
//! (the run name is derived from the dispatch id), and records every step in PostgreSQL.
//!
//! # Layout
//! - [`consumer`]: [`Worker`], the supervised consume loop, acks and shutdown.
//! - [`process`]: [`Processor`], one attempt at one dispatch, returning an [`Outcome`].
//! - [`tracker`]: [`Tracker`], following started runs to their end, shared through leases.
//! - [`batch`]: status writes of many dispatches in one statement.
//! - [`store_gate`]: deliveries held while PostgreSQL is away, with one probe per worker.
//! - [`metrics`]: the worker's Prometheus figures, served with its probes.

pub mod batch;
pub mod consumer;
pub mod metrics;
pub mod process;
pub mod store_gate;
pub mod tracker;

pub use consumer::Worker;
pub use process::{Outcome, Processor};
pub use tracker::Tracker;
