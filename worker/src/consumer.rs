//! The consume loop: prefetch-bounded deliveries processed concurrently, acked only after their
//! outcome is recorded, and held (not requeued) while the status store is away. The connection
//! is rebuilt with backoff whenever it breaks (unacked deliveries go back to the queue by
//! themselves), and shutdown stops consuming, lets in-flight dispatches finish within a bound,
//! then closes. A queue declared with other arguments than configured stops the worker with an
//! error that says how to mend it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use anyhow::{Context, bail};
use flyhook_contract::broker::{self, BrokerNodes, ConfirmChannel, ConnectedNode, Topology};
use flyhook_contract::deployment::Deployment;
use flyhook_store::DispatchStore;
use flyte_client::FlyteClient;
use futures_util::StreamExt;
use futures_util::future::ready;
use futures_util::stream::{self, select_all};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::callbacks::Callbacks;
use crate::metrics::{QueueLabels, Readiness, WorkerMetrics};
use crate::process::Processor;
use crate::settings::Settings;
use crate::settle::{Hold, Retrier, handle};
use crate::store_gate::StoreGate;
use crate::tracker::Tracker;

/// A queue's deliveries, ending with `None` when the broker ends its consumer.
type Deliveries = futures_util::stream::BoxStream<
    'static,
    Option<Result<lapin::message::Delivery, lapin::Error>>,
>;

/// How long shutdown waits for in-flight dispatches before closing (they are then redelivered).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Worker {
    processor: Arc<Processor>,
    callbacks: Arc<Callbacks>,
    gate: StoreGate,
    tracker: Tracker,
    nodes: BrokerNodes,
    topology: Topology,
    /// The partitions this worker consumes (`[worker] partitions`; all by default).
    partitions: Vec<u16>,
    prefetch: u16,
    concurrency: usize,
    /// Callback deliveries at once, apart from the dispatches' share.
    callback_concurrency: usize,
    metrics: WorkerMetrics,
    /// The node consumed from, while attached to the work queues (for `/readyz`, `/metrics`).
    consuming: ConnectedNode,
    ops_port: u16,
    /// Taken and spawned when the worker runs (in a mutex because a server is not `Sync`).
    ops_server: std::sync::Mutex<Option<Server>>,
    ops_shutdown: CancellationToken,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("topology", &self.topology)
            .field("prefetch", &self.prefetch)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Wires a worker from the deployment and its own section, and binds its `/metrics` and
    /// probes (`[worker] listen`). Nothing is connected yet; PostgreSQL is connected on use.
    /// Call within a Tokio runtime.
    pub fn build(deployment: &Deployment, settings: &Settings) -> anyhow::Result<Worker> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(deployment.database_url.expose_secret())
            .context("DATABASE_URL")?;
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        let flyte =
            FlyteClient::observed(deployment.flyte.clone(), Arc::new(metrics.flyte.clone()))
                .context("Flyte client")?;
        let store = DispatchStore::new(pool);
        let consuming = ConnectedNode::register(&mut registry, &deployment.broker);
        let topology = deployment.topology();
        let partitions = chosen_partitions(settings.partitions.as_deref(), &topology)?;
        let ops_shutdown = CancellationToken::new();
        let (ops_port, ops_server) = crate::metrics::serve(
            &settings.listen,
            registry,
            Readiness {
                consuming: consuming.clone(),
                store: store.clone(),
            },
            ops_shutdown.clone(),
        )?;
        Ok(Worker {
            gate: StoreGate::new(store.clone()),
            metrics: metrics.clone(),
            consuming,
            ops_port,
            ops_server: std::sync::Mutex::new(Some(ops_server)),
            ops_shutdown,
            tracker: Tracker::new(store.clone(), flyte.clone(), settings.tracking.clone()),
            callbacks: Arc::new(
                Callbacks::new(
                    deployment.callbacks.clone(),
                    store.clone(),
                    flyte.clone(),
                    metrics.clone(),
                )
                .context("callback client")?,
            ),
            processor: Arc::new(Processor::new(
                store,
                flyte,
                settings.max_attempts,
                settings.max_runs_per_second_per_project,
                metrics,
            )),
            nodes: deployment.broker.clone(),
            topology,
            partitions,
            prefetch: settings.prefetch,
            concurrency: settings.concurrency,
            callback_concurrency: settings.callback_concurrency,
        })
    }

    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// Consumes and tracks runs until `shutdown` is cancelled, reconnecting whenever the broker
    /// goes away.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ops_server = self
            .ops_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|server| AbortOnDropHandle::new(tokio::spawn(server)));
        // Bound to this future: a worker dropped mid-run (a test's `kill -9`) leaves no
        // tracker behind.
        let tracking = AbortOnDropHandle::new(tokio::spawn(
            self.tracker.clone().run_until_stopped(shutdown.clone()),
        ));
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut backoff).await {
                Ok(()) => break,
                // A configuration mistake: retrying would only hide it.
                Err(e) if broker::is_topology_mismatch(&e) => {
                    shutdown.cancel();
                    let _ = tracking.await;
                    self.ops_shutdown.cancel();
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "consumer stopped; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = tracking.await;
        self.ops_shutdown.cancel();
        if let Some(server) = ops_server {
            let _ = server.await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    async fn consume(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> anyhow::Result<()> {
        let (connection, node) = self.nodes.connect("flyhook-worker").await?;
        let connection = Arc::new(connection);
        self.topology.declare(&connection).await?;
        let queues = self.queues(&connection).await?;
        let channel = connection.create_channel().await?;
        // The prefetch is the worker's; each queue's consumer holds its share.
        let per_queue = self.prefetch.div_ceil(queues.len() as u16);
        // QoS applies to consumers declared after it.
        channel
            .basic_qos(per_queue, BasicQosOptions::default())
            .await?;
        let mut tags = Vec::with_capacity(queues.len());
        let mut consumers = Vec::with_capacity(queues.len());
        let worker = fastrand::u32(..);
        for queue in &queues {
            let (tag, consumer) = consume_from(&channel, queue, worker).await?;
            tags.push(tag);
            consumers.push(consumer);
        }
        // One stream of every queue's deliveries, in which a consumer the broker ended (its
        // queue deleted, say) shows as `None`: the worker then settles what it holds and
        // reconnects, instead of going on without that partition.
        let mut deliveries = select_all(
            consumers
                .into_iter()
                .map(|consumer| consumer.map(Some).chain(stream::once(ready(None)))),
        );
        tracing::info!(%node, ?queues, prefetch = self.prefetch, "consuming");
        *backoff = Duration::from_millis(100);
        let _consuming = Consuming::mark(&self.consuming, &node);
        // Aborted when dropped, that is whenever this connection's consumption ends.
        // On a channel of its own: a queue gone makes its passive declare close the channel.
        let mut sampler = JoinSet::new();
        sampler.spawn(sample_depths(
            connection.create_channel().await?,
            queues
                .iter()
                .cloned()
                .chain([self.topology.dead_queue()])
                .chain(
                    self.topology
                        .has_callbacks()
                        .then(|| self.topology.callback_queue()),
                )
                .collect(),
            self.processor.store().clone(),
            self.metrics.clone(),
        ));

        let retrier = Arc::new(Retrier::open(&connection, &self.topology).await?);
        let (callback_channel, mut callback_deliveries) =
            self.consume_callbacks(&connection, worker).await?;
        sampler.spawn({
            let (callbacks, topology) = (self.callbacks.clone(), self.topology.clone());
            let channel = ConfirmChannel::open(&connection).await?;
            let shutdown = shutdown.clone();
            async move { callbacks.relay(channel, topology, shutdown).await }
        });
        // Each kind of work has its own slots, and a kind whose slots are all taken is not
        // read from: a slow callback receiver never holds up a dispatch, nor the reverse.
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let callback_slots = Arc::new(Semaphore::new(self.callback_concurrency));
        let mut in_flight = JoinSet::new();
        let cancelled = loop {
            let (delivery, slot) = tokio::select! {
                _ = shutdown.cancelled() => break false,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                next = deliveries.next(), if slots.available_permits() > 0 => (next, &slots),
                next = callback_deliveries.next(), if callback_slots.available_permits() > 0 => {
                    (next, &callback_slots)
                }
            };
            match delivery {
                Some(Some(Ok(delivery))) => {
                    let slot = slot.clone().try_acquire_owned()?;
                    let processor = self.processor.clone();
                    let callbacks = self.callbacks.clone();
                    let retrier = retrier.clone();
                    let hold = Hold {
                        gate: self.gate.clone(),
                        shutdown: shutdown.clone(),
                        held_now: self.metrics.held.clone(),
                    };
                    let in_progress = self.metrics.in_progress.clone();
                    in_progress.inc();
                    in_flight.spawn(async move {
                        handle(&processor, &callbacks, &retrier, &hold, delivery).await;
                        in_progress.dec();
                        drop(slot);
                    });
                }
                Some(Some(Err(e))) => bail!("consumer failed: {e}"),
                Some(None) | None => break true,
            }
        };

        // Shutdown, or a consumer ended: take no more, finish what we hold, then close (the
        // rest is requeued).
        for tag in tags {
            let _ = channel
                .basic_cancel(tag.into(), BasicCancelOptions::default())
                .await;
        }
        if let Some((channel, tag)) = callback_channel {
            let _ = channel
                .basic_cancel(tag.into(), BasicCancelOptions::default())
                .await;
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = in_flight.len(),
                "shutdown bound reached; the rest will be redelivered"
            );
        }
        let _ = connection
            .close(200, "flyhook worker stopping".into())
            .await;
        if cancelled {
            bail!("the broker cancelled a consumer (its queue deleted?)");
        }
        Ok(())
    }

    /// The callback queue's deliveries, on a channel of their own with their own prefetch
    /// (none, and a stream that never yields, when no callbacks are configured); the channel
    /// and consumer tag, to cancel at shutdown.
    async fn consume_callbacks(
        &self,
        connection: &lapin::Connection,
        worker: u32,
    ) -> anyhow::Result<(Option<(lapin::Channel, String)>, Deliveries)> {
        if !self.topology.has_callbacks() {
            return Ok((None, stream::pending().boxed()));
        }
        let queue = self.topology.callback_queue();
        let channel = connection.create_channel().await?;
        let prefetch = u16::try_from(self.callback_concurrency).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let (tag, consumer) = consume_from(&channel, &queue, worker).await?;
        let deliveries = consumer.map(Some).chain(stream::once(ready(None))).boxed();
        Ok((Some((channel, tag)), deliveries))
    }

    /// This worker's partitions' queues, and those of partitions beyond the configured count
    /// still left from a larger one, so that lowering `[broker] partitions` loses nothing.
    async fn queues(&self, connection: &lapin::Connection) -> anyhow::Result<Vec<String>> {
        let leftover = self.topology.leftover_partitions(connection).await?;
        if !leftover.is_empty() {
            tracing::info!(
                ?leftover,
                "draining partitions beyond [broker] partitions; delete their queues once empty"
            );
        }
        Ok(self
            .partitions
            .iter()
            .chain(&leftover)
            .map(|p| self.topology.work_queue(*p))
            .collect())
    }
}

/// Consumes `queue` on `channel` under a tag naming the worker and the queue; the tag and
/// the consumer.
async fn consume_from(
    channel: &lapin::Channel,
    queue: &str,
    worker: u32,
) -> anyhow::Result<(String, lapin::Consumer)> {
    let tag = format!("flyhook-worker-{worker:08x}-{queue}");
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.clone().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    Ok((tag, consumer))
}

/// The partitions `[worker] partitions` names (all when absent), refused when it names none,
/// one twice, or one beyond `[broker] partitions`.
fn chosen_partitions(chosen: Option<&[u16]>, topology: &Topology) -> anyhow::Result<Vec<u16>> {
    let Some(chosen) = chosen else {
        return Ok((0..topology.partitions()).collect());
    };
    if chosen.is_empty() {
        bail!("[worker] partitions is empty: name at least one, or leave it out to consume all");
    }
    if let Some(beyond) = chosen.iter().find(|p| **p >= topology.partitions()) {
        bail!(
            "[worker] partitions names partition {beyond}, but [broker] partitions is {} (they are numbered from 0)",
            topology.partitions()
        );
    }
    let mut distinct = chosen.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != chosen.len() {
        bail!("[worker] partitions names a partition twice: {chosen:?}");
    }
    if !chosen.contains(&0) {
        tracing::warn!(
            ?chosen,
            "this worker leaves out partition 0, where every retry comes back: some worker must consume it"
        );
    }
    Ok(chosen.to_vec())
}

/// Marks the worker consuming from a node for as long as it lives.
struct Consuming<'a>(&'a ConnectedNode);

impl<'a> Consuming<'a> {
    fn mark(consuming: &'a ConnectedNode, node: &str) -> Consuming<'a> {
        consuming.set(Some(node));
        Consuming(consuming)
    }
}

impl Drop for Consuming<'_> {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

/// How often queue depths and runs in flight are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples the queues' depths (a passive declare), the runs in flight (one indexed count) and
/// the concurrency slots in use.
async fn sample_depths(
    channel: lapin::Channel,
    queues: Vec<String>,
    store: DispatchStore,
    metrics: WorkerMetrics,
) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        every.tick().await;
        for queue in queues.iter().cloned() {
            let ready = broker::ready_messages(&channel, &queue).await;
            if let Ok(ready) = ready {
                metrics
                    .queue_depth
                    .get_or_create(&QueueLabels { queue })
                    .set(i64::from(ready));
            }
        }
        if let Ok(count) = store.count_in_flight().await {
            metrics.runs_in_flight.set(count);
        }
        if let Ok((held, awaited)) = store.slots_in_use().await {
            metrics.slots_held.set(held);
            metrics.slots_awaited.set(awaited);
        }
    }
}
