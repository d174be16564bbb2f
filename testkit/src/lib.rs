//! The one test kit of the workspace, for the end-to-end tests, the `flyhook` CLI tests, the
//! fault-injection suite and the benchmarks: each deployment they make gets its own database,
//! queue prefix, ports and flyte-sim, runs flyhook in this process or as processes, and is
//! removed again by one explicit call.
//!
//! # Layout
//! - [`services`]: where the shared RabbitMQ and PostgreSQL are; free ports; unique names.
//! - [`database`]: a database of its own, migrated, and dropped afterwards.
//! - [`broker`]: a deployment's queues: how long one is, and deleting them all; [`cluster`]: a
//!   three-node RabbitMQ cluster of the tests' own, its nodes killed, stopped and restarted.
//! - [`vars`]: the environment a deployment reads, and configuration files.
//! - [`sim`]: flyte-sim in process or as a process, and its `/_sim` endpoints.
//! - [`in_process`]: the ingress and worker started inside a test, stopped together.
//! - [`env`]: [`TestEnv`], one e2e test's world, ended by [`TestEnv::finish`].
//! - [`binaries`]: the workspace's binaries, found through cargo, as child processes.
//! - [`stack`]: [`Stack`], a deployment of `flyhook` processes, ended by [`Stack::stop`].
//! - [`proxy`]: a TCP proxy whose connections a test cuts, pauses or refuses.
//! - [`receiver`]: a completion callbacks' receiver that records what it gets and answers by
//!   script.
//! - [`wait`]: polling until something holds.
//! - [`client`]: [`Sender`], signed deliveries, and the answers they get.
//! - [`browser`]: a headless Chromium over WebDriver, for the console's tests.

pub mod binaries;
pub mod broker;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod database;
pub mod env;
pub mod in_process;
pub mod proxy;
pub mod receiver;
pub mod services;
pub mod sim;
pub mod stack;
pub mod vars;
pub mod wait;

pub use binaries::Profile;
pub use client::{Sender, answer};
pub use database::Database;
pub use env::TestEnv;
pub use in_process::{Ingress, RunningWorker};
pub use proxy::Proxy;
pub use receiver::Receiver;
pub use services::free_port;
pub use sim::Sim;
pub use stack::{Flyte, Stack, StackSpec};
pub use wait::{eventually, wait_until};

/// The bootstrap API key (`WEBHOOK_API_KEY`) of every deployment the kit makes.
pub const API_KEY: &str = "flyhook-e2e-key-4f9c2a7d1b3e8f60a5c9d2e7";

/// The stand-in's `hello.main` task, which takes `name` (and `count`).
pub const HELLO_TASK: &str = "flytesnacks/development/hello.main/v1";
