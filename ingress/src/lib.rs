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
//! - [`settings`]: the ingress's sections of the configuration, its keys and sources.
//! - [`auth`]: API keys (configured and managed), scopes and per-key rate limits; [`key_ring`]:
//!   the keys in memory, by digest.
//! - [`sources`]: configured webhook sources, their routes and input mappings.
//! - [`policies`]: what a `[[tasks]]` policy gives a dispatch: its callback destination and
//!   its concurrency key.
//! - [`observe`]: request ids, access log, metrics and audit entries for every request.
//! - [`audit`]: the audit log's batched writer and retention.
//! - [`metrics`]: the ingress's Prometheus figures.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers.
//! - [`console`]: the figures the operator console (`/ui/`) shows beyond one dispatch;
//!   [`sessions`]: its sign-ins, a cookie standing for an API key.
//! - [`replayer`]: `flyhook replay`'s way into the intake path.
//! - [`pg_listen`]: the `LISTEN` connection waiters and key reloads follow.
//! - [`error`]: [`ApiError`] and its problem+json form.

mod audit;
mod auth;
mod console;
mod control;
mod error;
mod intake;
mod key_ring;
mod metrics;
mod observe;
mod openapi;
mod pg_listen;
mod policies;
mod publisher;
mod replayer;
mod routes;
mod sessions;
pub mod settings;
pub mod sources;
mod startup;
mod waiters;

pub use error::ApiError;
pub use replayer::Replayer;
pub use settings::Settings;
pub use startup::Application;

/// The OpenAPI 3.1 document of the HTTP API, as JSON (`flyhook openapi`).
pub fn openapi_json() -> Result<String, serde_json::Error> {
    use utoipa::OpenApi;
    openapi::ApiDoc::openapi().to_pretty_json()
}
