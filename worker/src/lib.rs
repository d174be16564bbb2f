//! flyhook's worker: consumes dispatches from RabbitMQ, starts each as a Flyte run exactly once
//! (the run name is derived from the dispatch id), and records every step in PostgreSQL.
//!
//! # Layout
//! - [`consumer`]: [`Worker`], the supervised consume loop, acks and shutdown.
//! - [`settle`]: one delivery processed and settled with the broker (ack, retry, split,
//!   dead letter).
//! - [`process`]: `Processor`, one attempt at one dispatch, returning an `Outcome`.
//! - [`callbacks`]: completion callbacks, from the outbox to the queue to the receiver.
//! - [`debounce`] and [`concurrency`]: one run per burst, and slots per key, decided before
//!   a run starts.
//! - [`tracker`]: `Tracker`, following started runs to their end, shared through leases.
//! - [`batch`]: status writes of many dispatches in one statement.
//! - [`store_gate`]: deliveries held while PostgreSQL is away, with one probe per worker.
//! - [`settings`]: the `[worker]` section.
//! - [`metrics`]: the worker's Prometheus figures, served with its probes.

mod batch;
mod callbacks;
mod concurrency;
mod consumer;
mod debounce;
mod metrics;
mod process;
pub mod settings;
mod settle;
mod store_gate;
mod tracker;

pub use consumer::Worker;
pub use process::{MAX_REDELIVERIES, Outcome, Processor};
pub use settings::Settings;
