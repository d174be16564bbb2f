//! The facts every process of one deployment must agree on, whatever its role: where
//! PostgreSQL and RabbitMQ are, the names and bounds of the queues, and which Flyte to talk to.
//! The ingress and the worker are each built from this plus their own section.

use std::time::Duration;

use anyhow::{Context, bail};
use flyte_client::{FlyteAuth, FlyteConfig};
use secrecy::SecretString;
use serde::Deserialize;

use crate::broker::{BrokerNodes, MAX_PARTITIONS, Topology};
use crate::callbacks::Destinations;
use crate::config::Env;

#[derive(Debug, Clone)]
pub struct Deployment {
    /// `DATABASE_URL`.
    pub database_url: SecretString,
    /// `AMQP_URL`: one node, or a cluster's nodes, comma-separated.
    pub broker: BrokerNodes,
    /// Prefix of every exchange and queue name (`FLYHOOK_QUEUE_PREFIX`).
    pub queue_prefix: String,
    /// Bound on the work queue's length (`[ingress] max_queue_length`); publishes beyond it are
    /// refused (503). Part of the queue's declaration, so every process must use the same.
    pub max_queue_length: u32,
    pub queues: BrokerSection,
    pub flyte: FlyteConfig,
    /// `[[callbacks]]`: the ingress picks them by name, the worker delivers to them.
    pub callbacks: Destinations,
}

/// The `[broker]` section: how the queues are spread over a RabbitMQ cluster. Every process
/// must use the same `partitions`; `replicas` matters only where a queue is created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Work queues (1 to 256). One queue is served by one core of one node; raise this on a
    /// cluster, or when one queue's core is the bound (see docs/operations.md).
    #[serde(deserialize_with = "partitions")]
    pub partitions: u16,
    /// Nodes each new queue is replicated to (as many as the cluster has, up to this). Odd
    /// counts: a fourth replica survives no more losses than three.
    #[serde(deserialize_with = "replicas")]
    pub replicas: u16,
}

impl Default for BrokerSection {
    fn default() -> BrokerSection {
        BrokerSection {
            partitions: 1,
            replicas: 3,
        }
    }
}

fn replicas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match u16::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "replicas must be at least 1 (3 on a cluster of 3 or more nodes)",
        )),
        replicas => Ok(replicas),
    }
}

fn partitions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let partitions = u16::deserialize(d)?;
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        Ok(partitions)
    } else {
        Err(serde::de::Error::custom(format!(
            "partitions must be from 1 to {MAX_PARTITIONS}"
        )))
    }
}

/// The `[flyte]` section; the endpoint and credentials come from the environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlyteSection {
    /// Absent: the client's own default (see `FlyteConfig`).
    timeout_ms: Option<u64>,
    task_cache_ttl_secs: Option<u64>,
}

impl Deployment {
    /// From the environment (unset variables point at local services), the `[flyte]` and
    /// `[broker]` sections and the work queues' bound.
    pub fn load(
        env: &impl Env,
        flyte: &FlyteSection,
        queues: BrokerSection,
        max_queue_length: u32,
    ) -> anyhow::Result<Deployment> {
        let secret = |name: &str| env(name).map(SecretString::from);
        Ok(Deployment {
            database_url: secret("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/flyhook".into()),
            broker: BrokerNodes::parse(
                &secret("AMQP_URL")
                    .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            )?
            .starting_at_random(),
            queue_prefix: env("FLYHOOK_QUEUE_PREFIX").unwrap_or_else(|| "flyhook".into()),
            max_queue_length,
            queues,
            flyte: flyte_config(env, flyte)?,
            callbacks: Destinations::default(),
        })
    }

    /// The exchanges and queues every process of this deployment declares alike.
    pub fn topology(&self) -> Topology {
        Topology::new(
            &self.queue_prefix,
            self.max_queue_length,
            self.queues.partitions,
            self.queues.replicas,
        )
        .with_callbacks(!self.callbacks.is_empty())
    }
}

fn flyte_config(env: &impl Env, section: &FlyteSection) -> anyhow::Result<FlyteConfig> {
    let mut config = match env("FLYTE_API_KEY") {
        Some(key) => FlyteConfig::from_api_key(&key).context("FLYTE_API_KEY")?,
        None => FlyteConfig::new("http://127.0.0.1:8090"),
    };
    if let Some(endpoint) = env("FLYTE_ENDPOINT") {
        config.endpoint = endpoint;
    }
    if let Some(org) = env("FLYTE_ORG") {
        config.org = org;
    }
    if let Some(token) = env("FLYTE_TOKEN") {
        if !matches!(config.auth, FlyteAuth::None) {
            bail!("set FLYTE_API_KEY or FLYTE_TOKEN, not both");
        }
        config.auth = FlyteAuth::Bearer(SecretString::from(token));
    }
    config.console_url = env("FLYTE_CONSOLE_URL");
    if let Some(ms) = section.timeout_ms {
        config.timeout = Duration::from_millis(ms);
    }
    if let Some(secs) = section.task_cache_ttl_secs {
        config.task_cache_ttl = Duration::from_secs(secs);
    }
    Ok(config)
}
