//! End to end: the real ingress and worker, real RabbitMQ and PostgreSQL, flyte-sim for Flyte.

mod callbacks;
mod console;
mod flow;
mod hooks;
mod hostile;
mod intake;
mod operations;
mod overload;
mod partitions;
mod pipeline;
mod resilience;
mod tracking;
