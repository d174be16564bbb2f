//! `AMQP_URL`: the RabbitMQ nodes a process may connect to, and connecting to one that answers.
//!
//! A cluster is given as a comma-separated list of node URIs. Each process first connects to a
//! node of its own chance, so a fleet spreads its connections over the nodes, and every later
//! connect starts at a random node other than the one it was last on: when a node goes away,
//! its processes spread over the others instead of knocking first on the door that just
//! closed. Any one node serves every queue of the cluster, so which node a process is on only
//! moves load, never changes meaning.
//!
//! A node that goes silent instead of away (a cut network) is noticed by heartbeats: unless a
//! URI says otherwise (`?heartbeat=`, `?connection_timeout=`), connections negotiate a 10 s
//! heartbeat instead of RabbitMQ's 60 s, and a TCP connect waits 5 s at most.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use secrecy::{ExposeSecret, SecretString};

/// How long one node may take to accept a connection before the next is tried: a node that is
/// unreachable (not refusing, just silent) must not hold a failover up for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds between heartbeats, unless the URI sets its own: RabbitMQ's default (60) would
/// leave a process on a silent node for two minutes.
const HEARTBEAT_SECS: u16 = 10;

/// No node connected yet.
const NEVER: usize = usize::MAX;

/// The nodes of `AMQP_URL`, in this process's order; cheap to clone (clones share the order
/// and where the last connection went).
#[derive(Clone)]
pub struct BrokerNodes {
    nodes: Arc<[Node]>,
    /// Index (into `nodes`) of the node the first connect tries first.
    first: usize,
    /// Index of the node the last connection went to, or [`NEVER`].
    last: Arc<AtomicUsize>,
}

struct Node {
    /// With the password: never printed.
    uri: AMQPUri,
    /// `host:port`: what logs, metrics and `/readyz` name the node by (no credentials).
    address: String,
}

impl std::fmt::Debug for BrokerNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.nodes.iter().map(|n| &n.address))
            .finish()
    }
}

/// An `AMQP_URL` that is not a list of AMQP URIs.
#[derive(Debug, thiserror::Error)]
pub enum BadBrokerUrl {
    #[error("AMQP_URL names no broker")]
    Empty,
    #[error("AMQP_URL: entry {position} is empty (two commas, or a trailing comma)")]
    EmptyEntry { position: usize },
    /// The entry itself is not quoted: it may hold a password.
    #[error(
        "AMQP_URL: entry {position} is not an amqp:// or amqps:// URI \
         (amqp://user:password@host:port/vhost; a comma in a password is written %2C)"
    )]
    NotAnUri { position: usize },
}

impl BrokerNodes {
    /// Parses a comma-separated list of `amqp://` / `amqps://` URIs, in the order given (see
    /// [`BrokerNodes::shuffled`]).
    pub fn parse(text: &SecretString) -> Result<BrokerNodes, BadBrokerUrl> {
        let text = text.expose_secret();
        if text.trim().is_empty() {
            return Err(BadBrokerUrl::Empty);
        }
        let nodes = text
            .split(',')
            .enumerate()
            .map(|(index, entry)| {
                let position = index + 1;
                let entry = entry.trim();
                if entry.is_empty() {
                    return Err(BadBrokerUrl::EmptyEntry { position });
                }
                // The parser's message quotes the entry, password and all: not passed on.
                let mut uri =
                    AMQPUri::from_str(entry).map_err(|_| BadBrokerUrl::NotAnUri { position })?;
                uri.query.heartbeat.get_or_insert(HEARTBEAT_SECS);
                uri.query
                    .connection_timeout
                    .get_or_insert(CONNECT_TIMEOUT.as_millis() as u64);
                Ok(Node {
                    address: format!("{}:{}", uri.authority.host, uri.authority.port),
                    uri,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BrokerNodes {
            nodes: nodes.into(),
            first: 0,
            last: Arc::new(AtomicUsize::new(NEVER)),
        })
    }

    /// The same nodes, the first connect going to a random one, so a fleet given one list
    /// spreads over all of its nodes.
    pub fn starting_at_random(self) -> BrokerNodes {
        BrokerNodes {
            first: fastrand::usize(..self.nodes.len()),
            ..self
        }
    }

    /// The nodes' `host:port`, in the order given.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.address.as_str())
    }

    /// Connects to the first node that answers, trying them all in turn from a random one
    /// other than the node the last connection went to (from the first, the first time). The
    /// connection is named for RabbitMQ's management UI (`flyhook-ingress`, …). Fails only when
    /// every node failed, naming each one's cause. Returns the node's `host:port`.
    pub async fn connect(&self, name: &str) -> anyhow::Result<(Connection, String)> {
        let count = self.nodes.len();
        let first = match self.last.load(Ordering::Relaxed) {
            NEVER => self.first,
            last if count > 1 => (last + 1 + fastrand::usize(..count - 1)) % count,
            _ => 0,
        };
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (first + offset) % count;
            let node = &self.nodes[index];
            let properties = ConnectionProperties::default().with_connection_name(name.into());
            let attempt = Connection::connect_uri(node.uri.clone(), properties);
            // lapin's error names the host and the cause, never the password.
            match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
                Ok(Ok(connection)) => {
                    self.last.store(index, Ordering::Relaxed);
                    return Ok((connection, node.address.clone()));
                }
                Ok(Err(e)) => failures.push(format!("{}: {e}", node.address)),
                Err(_) => failures.push(format!(
                    "{}: no answer within {:?}",
                    node.address,
                    CONNECT_TIMEOUT * 2
                )),
            }
        }
        Err(anyhow::anyhow!(failures.join("; "))).context("connecting to RabbitMQ")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Which node a process is connected to, for `/readyz` (`broker_node`) and `/metrics`
/// (`flyhook_broker_node{node}`: 1 for the node in use, 0 for the others).
#[derive(Clone, Default)]
pub struct ConnectedNode {
    current: Arc<Mutex<Option<String>>>,
    family: Family<NodeLabels, Gauge>,
}

impl std::fmt::Debug for ConnectedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConnectedNode")
            .field(&self.current())
            .finish()
    }
}

impl ConnectedNode {
    /// Registers the gauge, with a 0 for every node of `nodes`.
    pub fn register(registry: &mut Registry, nodes: &BrokerNodes) -> ConnectedNode {
        let connected = ConnectedNode::default();
        for node in nodes.addresses() {
            connected.gauge(node).set(0);
        }
        registry.register(
            "flyhook_broker_node",
            "RabbitMQ node this process is connected to (1), of the nodes of AMQP_URL",
            connected.family.clone(),
        );
        connected
    }

    fn gauge(&self, node: &str) -> Gauge {
        self.family
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .clone()
    }

    /// Now on `node` (`host:port`), or on none.
    pub fn set(&self, node: Option<&str>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = current.as_deref() {
            self.gauge(previous).set(0);
        }
        if let Some(node) = node {
            self.gauge(node).set(1);
        }
        *current = node.map(str::to_string);
    }

    pub fn current(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BrokerNodes, BadBrokerUrl> {
        BrokerNodes::parse(&SecretString::from(text))
    }

    #[test]
    fn a_list_of_uris_is_read_in_order_and_named_without_credentials() {
        let nodes = parse(
            "amqp://u:secret@10.0.0.1:5672/%2f, amqp://u:secret@b.example/%2f,amqps://c.example",
        )
        .unwrap();
        let addresses: Vec<&str> = nodes.addresses().collect();
        assert_eq!(
            addresses,
            ["10.0.0.1:5672", "b.example:5672", "c.example:5671"]
        );
        assert!(!format!("{nodes:?}").contains("secret"));
    }

    #[test]
    fn an_empty_entry_or_a_non_amqp_uri_is_refused_naming_its_place() {
        assert!(matches!(parse(" "), Err(BadBrokerUrl::Empty)));
        assert!(matches!(
            parse("amqp://a,,amqp://b"),
            Err(BadBrokerUrl::EmptyEntry { position: 2 })
        ));
        assert!(matches!(
            parse("amqp://a,http://b"),
            Err(BadBrokerUrl::NotAnUri { position: 2 })
        ));
        // A URI that lost its scheme still holds its password: never in the message.
        let error = parse("amqp://a,guest:hunter2@rmq:5672").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn a_connect_skips_nodes_that_refuse_and_the_next_starts_after_the_one_used() {
        // Two closed ports, then the machine's broker.
        let closed = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let (a, b) = (closed(), closed());
        let nodes = parse(&format!(
            "amqp://guest:guest@127.0.0.1:{a},amqp://guest:guest@127.0.0.1:{b},{}",
            super::super::test_broker_url()
        ))
        .unwrap();
        let (connection, node) = nodes.connect("flyhook-test").await.unwrap();
        assert_eq!(node, "127.0.0.1:5672");
        let _ = connection.close(200, "".into()).await;
        assert_eq!(nodes.last.load(Ordering::Relaxed), 2);
        // The next connect starts at another node; the refusing ones send it on to the same.
        let (connection, node) = nodes.connect("flyhook-test").await.unwrap();
        assert_eq!(node, "127.0.0.1:5672");
        let _ = connection.close(200, "".into()).await;
        let error = parse(&format!("amqp://guest:guest@127.0.0.1:{a}"))
            .unwrap()
            .connect("flyhook-test")
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains(&format!("127.0.0.1:{a}")),
            "{error:#}"
        );
    }
}
