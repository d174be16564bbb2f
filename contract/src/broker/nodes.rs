//! `AMQP_URL`: the RabbitMQ nodes a process may connect to, and connecting to one that answers.
//!
//! A cluster is given as a comma-separated list of node URIs. Each process shuffles the list
//! once, so a fleet spreads its connections over the nodes, and every later connect starts
//! with the node after the one it was last on: when a node goes away, the process moves on to
//! the next instead of knocking first on the door that just closed. Any one node serves every
//! queue of the cluster, so which node a process is on only moves load, never changes meaning.

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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The nodes of `AMQP_URL`, in this process's order; cheap to clone (clones share the order
/// and where the last connection went).
#[derive(Clone)]
pub struct BrokerNodes {
    nodes: Arc<[Node]>,
    /// Index (into `nodes`) of the node the next connect tries first.
    next: Arc<AtomicUsize>,
}

struct Node {
    url: SecretString,
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
    #[error("AMQP_URL: entry {position} is not an amqp:// or amqps:// URI: {reason}")]
    NotAnUri { position: usize, reason: String },
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
                // The parser's message never quotes the URI, so no password reaches a log.
                let uri = AMQPUri::from_str(entry)
                    .map_err(|reason| BadBrokerUrl::NotAnUri { position, reason })?;
                Ok(Node {
                    url: SecretString::from(entry),
                    address: format!("{}:{}", uri.authority.host, uri.authority.port),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BrokerNodes {
            nodes: nodes.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The same nodes in an order of this process's own, so a fleet given one list spreads
    /// over all of its nodes.
    pub fn shuffled(self) -> BrokerNodes {
        let start = fastrand::usize(..self.nodes.len());
        self.next.store(start, Ordering::Relaxed);
        self
    }

    /// The nodes' `host:port`, in the order given.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.address.as_str())
    }

    /// Connects to the first node that answers, starting with the one after the node the last
    /// connection went to. The connection is named for RabbitMQ's management UI
    /// (`flyhook-ingress`, …). Fails only when every node failed, naming each one's cause.
    pub async fn connect(&self, name: &str) -> anyhow::Result<(Connection, String)> {
        let first = self.next.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for offset in 0..self.nodes.len() {
            let index = (first + offset) % self.nodes.len();
            let node = &self.nodes[index];
            let properties = ConnectionProperties::default().with_connection_name(name.into());
            let attempt = Connection::connect(node.url.expose_secret(), properties);
            // lapin's error names the host and the cause, never the password.
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(connection)) => {
                    self.next
                        .store((index + 1) % self.nodes.len(), Ordering::Relaxed);
                    return Ok((connection, node.address.clone()));
                }
                Ok(Err(e)) => failures.push(format!("{}: {e}", node.address)),
                Err(_) => failures.push(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}",
                    node.address
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
            Err(BadBrokerUrl::NotAnUri { position: 2, .. })
        ));
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
        // After the last node, the next connect begins again at the first.
        assert_eq!(nodes.next.load(Ordering::Relaxed), 0);
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
