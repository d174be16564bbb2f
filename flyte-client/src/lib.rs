//! A Flyte 2 client over Connect-JSON: plain HTTP POSTs with proto3 JSON bodies, no generated
//! gRPC stack.
//!
//! flyhook's workers use it to fetch task interfaces, start runs idempotently, follow them,
//! abort them and read their outputs. Requests are built from hand-written serde types for
//! exactly the messages used; `flyte-sim` checks every one of them against the official
//! `flyteidl2` schema.
//!
//! # Layout
//! - [`client`]: [`FlyteClient`], the RPCs, deadlines and the task-interface cache.
//! - [`error`]: [`FlyteError`] and its retry/permanent classification.
//! - [`auth`]: no auth, static bearer tokens, API keys with OAuth2 client credentials.
//! - [`inputs`]: JSON payload → `task.Inputs`, directed by the task's interface.
//! - [`run_name`]: valid run names, derived from dispatch ids.
//! - [`outputs`]: literals → plain JSON.
//! - [`literal`], [`messages`]: the wire types.

pub mod auth;
pub mod client;
pub mod error;
pub mod inputs;
pub mod literal;
pub mod messages;
pub mod outputs;
mod proto_json;
pub mod run_name;

pub use auth::{ApiKey, ApiKeyError, FlyteAuth};
pub use client::{CallObserver, FlyteClient, FlyteConfig, Rpc, StartedRun};
pub use error::{Code, Disposition, FlyteError};
pub use inputs::{InputError, convert_inputs, parse_duration};
pub use literal::{Literal, LiteralKind, LiteralType, SimpleType};
pub use messages::{ActionPhase, RunId, TaskId, TaskSpec};
pub use run_name::RunName;
