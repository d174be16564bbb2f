//! What the ingress, the workers, the store and the CLI must agree on, kept in one small place
//! so every side agrees by construction.
//!
//! # Layout
//! - [`dispatch`]: dispatch ids (self-verifying, so status works before anything is recorded),
//!   task references and the queue message; [`status`]: where a dispatch is in its life.
//! - [`broker`]: RabbitMQ connection and the exchange/queue topology; [`dead_letters`]: the
//!   dead-letter queue listed and replayed from the broker.
//! - [`callbacks`]: the destinations completion callbacks go to, and the message that
//!   carries one event there.
//! - [`flow`]: concurrency keys, read by the ingress and enforced by the worker.
//! - [`principal`]: who sent a request, as recorded and filtered on.
//! - [`scopes`] and [`keys`]: which tasks an API key covers, and what a key is.
//! - [`storable`]: what the store cannot hold (NUL, deep nesting) and how it is kept out.
//! - [`deployment`]: the facts every process of a deployment shares; [`config`]: how every
//!   role's settings are read.
//! - [`metrics`]: Prometheus exposition shared by the ingress and the worker.

pub mod broker;
pub mod callbacks;
pub mod config;
pub mod dead_letters;
pub mod deployment;
pub mod dispatch;
pub mod flow;
pub mod keys;
pub mod metrics;
pub mod principal;
pub mod scopes;
pub mod status;
pub mod storable;

pub use deployment::Deployment;
pub use dispatch::{DispatchId, DispatchMessage, IdIssuer, TaskRef};
pub use status::DispatchStatus;
