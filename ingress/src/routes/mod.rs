//! HTTP handlers: each translates a request into one domain call and its result into a
//! response, nothing more.

pub mod dispatches;
pub mod health;
pub mod run_task;
