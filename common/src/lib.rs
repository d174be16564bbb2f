//! What flyhook's ingress and workers share, so both sides of the queue agree by construction.
//!
//! # Layout
//! - [`config`]: settings from the environment and the TOML file.
//! - [`dispatch`]: dispatch ids (self-verifying, so status works before anything is recorded),
//!   task references and the queue message.
//! - [`api_keys`]: bearer API keys, stored hashed and compared in constant time, and their scopes.
//! - [`key_store`]: keys managed at run time (`flyhook keys`), in PostgreSQL.
//! - [`audit`]: the append-only log of invocations.
//! - [`metrics`]: Prometheus exposition shared by the ingress and the worker.
//! - [`broker`]: RabbitMQ connection and the exchange/queue topology; [`dead_letters`]: the
//!   dead-letter queue listed and replayed from the broker.
//! - [`signatures`]: provider signature schemes, verified and signed.
//! - [`sources`]: configured webhook sources, their routes and input mappings.
//! - [`store`]: the PostgreSQL status store and its migrations; [`store_fault`]: outage or
//!   refused data; [`storable`]: what the store cannot hold (NUL) and how it is kept out.
//! - [`telemetry`], [`shutdown`]: logging and the one shutdown signal.

pub mod api_keys;
pub mod audit;
pub mod broker;
pub mod config;
pub mod dead_letters;
pub mod dispatch;
pub mod key_store;
pub mod metrics;
pub mod shutdown;
pub use webhook_signatures as signatures;
pub mod sources;
pub mod storable;
pub mod store;
pub mod store_fault;
pub mod telemetry;

pub use config::Settings;
pub use dispatch::{DispatchId, DispatchMessage, IdIssuer, TaskRef};
pub use store::{DispatchStatus, DispatchStore, MIGRATOR};
pub use store_fault::StoreFault;
