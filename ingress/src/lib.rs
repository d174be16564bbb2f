//! flyhook's ingress: authenticates, rate-limits and validates webhooks, enqueues them durably
//! on RabbitMQ (answering `202` only after the broker confirmed), and answers status lookups.
//!
//! # Layout
//! - [`startup`]: [`Application`], built from settings by `main` and tests alike.
//! - [`routes`]: thin HTTP handlers.
//! - [`intake`]: the accept path: ids, input checks, publishing.
//! - [`control`]: waiting for, cancelling and listing dispatches.
//! - [`waiters`]: one shared `LISTEN` that wakes waiting requests.
//! - [`publisher`]: confirmed, persistent publishes over a supervised connection.
//! - [`auth`]: API keys and per-key rate limits.
//! - [`error`]: [`ApiError`] and its problem+json form.

pub mod auth;
pub mod control;
pub mod error;
pub mod intake;
pub mod publisher;
pub mod routes;
pub mod startup;
pub mod waiters;

pub use error::ApiError;
pub use startup::Application;
