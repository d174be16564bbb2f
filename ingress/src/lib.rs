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
//! - [`auth`]: API keys (configured and managed), scopes and per-key rate limits.
//! - [`observe`]: request ids, access log, metrics and audit entries for every request.
//! - [`audit`]: the audit log's batched writer and retention.
//! - [`metrics`]: the ingress's Prometheus figures.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers.
//! - [`pg_listen`]: the `LISTEN` connection waiters and key reloads follow.
//! - [`error`]: [`ApiError`] and its problem+json form.

pub mod audit;
pub mod auth;
pub mod control;
pub mod error;
pub mod intake;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod pg_listen;
pub mod publisher;
pub mod routes;
pub mod startup;
pub mod waiters;

pub use error::ApiError;
pub use startup::Application;
