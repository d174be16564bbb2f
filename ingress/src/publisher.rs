//! Durable publishing: a message counts as accepted only when RabbitMQ confirmed it, persistent,
//! routed to the quorum work queue (`mandatory`, so an unroutable message comes back instead of
//! vanishing).
//!
//! One connection with a few confirm-mode channels, used round-robin. A supervisor task keeps
//! the connection up: when the broker goes away, publishes fail fast (the HTTP layer answers
//! 503 with `Retry-After`) while it reconnects with backoff, so intake never hangs on a dead
//! socket and nothing is reported accepted that was not confirmed.
//!
//! Publishes in flight are bounded: past the bound a publish is refused at once instead of
//! queueing behind the broker, so an overloaded ingress answers 503 quickly and its latency
//! stays near bound ÷ confirm rate instead of growing without limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flyhook_contract::DispatchMessage;
use flyhook_contract::broker::{BrokerNodes, ConfirmChannel, ConnectedNode, Published, Topology};
use lapin::Connection;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ refused the message (queue full or unroutable)")]
    Refused,
    #[error("too many publishes awaiting a confirm")]
    Saturated,
    #[error("RabbitMQ channel failed: {0:#}")]
    Broker(anyhow::Error),
}

struct Link {
    connection: Arc<Connection>,
    /// The node it is connected to (`host:port`).
    node: String,
    channels: Vec<ConfirmChannel>,
}

impl Link {
    fn is_healthy(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.is_connected())
    }
}

/// What a publisher reports.
#[derive(Debug)]
pub struct PublisherMetrics {
    /// Publish-to-confirm time of every confirmed publish.
    pub confirm_latency: Histogram,
    pub on_node: ConnectedNode,
}

/// Publishes dispatches; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Publish-to-confirm time of every confirmed publish.
    confirm_latency: Histogram,
    nodes: BrokerNodes,
    /// Which node, for `/readyz` and `/metrics`.
    on_node: ConnectedNode,
    topology: Topology,
    channel_count: usize,
    confirm_timeout: Duration,
    in_flight: Semaphore,
    link: RwLock<Option<Arc<Link>>>,
    /// Wakes the supervisor when a publish saw the link fail.
    broken: Notify,
    /// What the supervisor last saw.
    connected: watch::Sender<bool>,
    next_channel: AtomicUsize,
}

impl Publisher {
    /// Starts the supervisor, which connects in the background; until then publishes fail with
    /// [`PublishError::NotConnected`].
    pub fn start(
        nodes: BrokerNodes,
        topology: Topology,
        channel_count: usize,
        confirm_timeout: Duration,
        max_in_flight: usize,
        metrics: PublisherMetrics,
        shutdown: CancellationToken,
    ) -> Publisher {
        let inner = Arc::new(Inner {
            confirm_latency: metrics.confirm_latency,
            nodes,
            on_node: metrics.on_node,
            topology,
            channel_count: channel_count.max(1),
            confirm_timeout,
            in_flight: Semaphore::new(max_in_flight.max(1)),
            link: RwLock::new(None),
            broken: Notify::new(),
            connected: watch::Sender::new(false),
            next_channel: AtomicUsize::new(0),
        });
        tokio::spawn(supervise(inner.clone(), shutdown));
        Publisher { inner }
    }

    fn current_link(&self) -> Option<Arc<Link>> {
        self.inner
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|link| link.is_healthy())
    }

    pub fn is_connected(&self) -> bool {
        self.current_link().is_some()
    }

    /// The node publishes go to (`host:port`), while connected.
    pub fn node(&self) -> Option<String> {
        self.current_link().map(|link| link.node.clone())
    }

    /// The broker connection while connected, for reads beside publishing (the console's
    /// queue depths and dead letters): one connection per ingress, not one per look.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.current_link().map(|link| link.connection.clone())
    }

    /// Waits until the supervisor has connected, or `within` passes; for start-up and tests.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let mut connected = self.inner.connected.subscribe();
        tokio::time::timeout(within, connected.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes `message` and waits for the broker's confirm.
    pub async fn publish(&self, message: &DispatchMessage) -> Result<(), PublishError> {
        let link = self.current_link().ok_or(PublishError::NotConnected)?;
        let _in_flight = self
            .inner
            .in_flight
            .try_acquire()
            .map_err(|_| PublishError::Saturated)?;
        let index = self.inner.next_channel.fetch_add(1, Ordering::Relaxed) % link.channels.len();
        let exchange = self.inner.topology.exchange();
        let routing_key = self.inner.topology.routing_key(message);
        let confirmed = link.channels[index].publish(&exchange, &routing_key, message);
        let started = Instant::now();
        match tokio::time::timeout(self.inner.confirm_timeout, confirmed).await {
            Err(_) => Err(PublishError::Timeout(self.inner.confirm_timeout)),
            Ok(Err(e)) => {
                self.inner.broken.notify_one();
                Err(PublishError::Broker(e))
            }
            Ok(Ok(Published::Stored)) => {
                self.inner
                    .confirm_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Ok(Ok(Published::Refused | Published::Unroutable)) => Err(PublishError::Refused),
        }
    }

    /// Closes the connection after in-flight publishes finished (call after the HTTP server
    /// stopped).
    pub async fn close(&self) {
        let link = self
            .inner
            .link
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(link) = link {
            let _ = link
                .connection
                .close(200, "flyhook ingress stopping".into())
                .await;
        }
    }
}

async fn connect(inner: &Inner) -> anyhow::Result<Link> {
    let (connection, node) = inner.nodes.connect("flyhook-ingress").await?;
    let connection = Arc::new(connection);
    inner.topology.declare(&connection).await?;
    let mut channels = Vec::with_capacity(inner.channel_count);
    for _ in 0..inner.channel_count {
        channels.push(ConfirmChannel::open(&connection).await?);
    }
    Ok(Link {
        connection,
        node,
        channels,
    })
}

/// Keeps a healthy link in place: connects, watches, reconnects with capped exponential
/// backoff and jitter.
async fn supervise(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let healthy = inner
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| l.is_healthy());
        inner.connected.send_replace(healthy);
        if !healthy {
            inner.on_node.set(None);
            match connect(&inner).await {
                Ok(link) => {
                    tracing::info!(node = %link.node, "connected to RabbitMQ");
                    inner.on_node.set(Some(&link.node));
                    *inner.link.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(link));
                    inner.connected.send_replace(true);
                    backoff = Duration::from_millis(100);
                }
                Err(e) if flyhook_contract::broker::is_topology_mismatch(&e) => {
                    tracing::error!(error = %format!("{e:#}"), "the broker's queues do not match the configuration; intake cannot publish");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "RabbitMQ unreachable");
                    let jitter = backoff.mul_f64(fastrand::f64() / 2.0);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff + jitter) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = inner.broken.notified() => {}
            // The connection can also die while idle; look now and then.
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
