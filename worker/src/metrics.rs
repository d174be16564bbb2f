//! The worker's Prometheus figures, in its own registry, and the small HTTP server that serves
//! them with the worker's probes.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use flyhook_contract::broker::ConnectedNode;
use flyhook_contract::metrics::{CONTENT_TYPE, FlyteCallMetrics, latency_histogram, render};
use flyhook_store::DispatchStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    pub destination: String,
    /// delivered, retried, gave_up, gone.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Deliveries by what became of them: started, already_handled, retried, failed,
    /// dead_lettered, poisoned, refused, ignored, unreadable, split, waiting_for_slot,
    /// skipped, superseded, coalesced.
    pub dispatches: Family<OutcomeLabels, Counter>,
    /// Deliveries being processed by this worker now.
    pub in_progress: Gauge,
    /// Deliveries held unsettled until the status store is reachable again.
    pub held: Gauge,
    /// Dispatches starting or running across the fleet (every worker reports the same figure).
    pub runs_in_flight: Gauge,
    /// Concurrency slots held, and dispatches waiting for one, across the fleet.
    pub slots_held: Gauge,
    pub slots_awaited: Gauge,
    /// Messages ready in the work and dead-letter queues.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// From the ingress accepting a dispatch to its run being created.
    pub accept_to_run_started: Histogram,
    /// Callback deliveries, by destination and outcome.
    pub callbacks: Family<CallbackLabels, Counter>,
    /// From a dispatch's end to its callback's delivery, by destination.
    pub end_to_callback: Family<DestinationLabels, Histogram>,
    pub flyte: FlyteCallMetrics,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> WorkerMetrics {
        let metrics = WorkerMetrics {
            dispatches: Family::default(),
            in_progress: Gauge::default(),
            held: Gauge::default(),
            runs_in_flight: Gauge::default(),
            slots_held: Gauge::default(),
            slots_awaited: Gauge::default(),
            queue_depth: Family::default(),
            accept_to_run_started: latency_histogram(),
            callbacks: Family::default(),
            end_to_callback: Family::new_with_constructor(latency_histogram),
            flyte: FlyteCallMetrics::register(registry),
        };
        registry.register(
            "flyhook_dispatches",
            "Deliveries processed, by outcome",
            metrics.dispatches.clone(),
        );
        registry.register(
            "flyhook_dispatches_in_progress",
            "Deliveries this worker is processing now",
            metrics.in_progress.clone(),
        );
        registry.register(
            "flyhook_deliveries_held",
            "Deliveries this worker holds until the status store is reachable again",
            metrics.held.clone(),
        );
        registry.register(
            "flyhook_runs_in_flight",
            "Dispatches starting or running, fleet-wide (the same from every worker: use max)",
            metrics.runs_in_flight.clone(),
        );
        registry.register(
            "flyhook_concurrency_slots_held",
            "Concurrency key slots held by runs in flight, fleet-wide (use max)",
            metrics.slots_held.clone(),
        );
        registry.register(
            "flyhook_concurrency_slots_awaited",
            "Dispatches waiting for a concurrency key slot, fleet-wide (use max)",
            metrics.slots_awaited.clone(),
        );
        registry.register(
            "flyhook_queue_depth",
            "Messages ready in a queue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "flyhook_accept_to_run_started_seconds",
            "Time from the ingress accepting a dispatch to its Flyte run being created",
            metrics.accept_to_run_started.clone(),
        );
        registry.register(
            "flyhook_callbacks",
            "Completion callback deliveries, by destination and outcome (delivered, retried, gave_up, gone)",
            metrics.callbacks.clone(),
        );
        registry.register(
            "flyhook_end_to_callback_seconds",
            "Time from a dispatch's end to its callback's delivery, by destination",
            metrics.end_to_callback.clone(),
        );
        metrics
    }

    pub fn callback_delivered(&self, destination: &str, since_end: Duration) {
        self.count_callback(destination, "delivered");
        self.end_to_callback
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .observe(since_end.as_secs_f64());
    }

    /// Counts one callback delivery by its outcome.
    pub fn count_callback(&self, destination: &str, outcome: &'static str) {
        self.callbacks
            .get_or_create(&CallbackLabels {
                destination: destination.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn count(&self, outcome: &'static str) {
        self.dispatches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// What `/readyz` looks at.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The node consumed from, while the consumer is attached to the work queues.
    pub consuming: ConnectedNode,
    pub store: DispatchStore,
}

/// `/metrics`, `/livez` and `/readyz` on `listen`; returns the bound port and the server.
pub fn serve(
    listen: &str,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(u16, Server)> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let port = listener.local_addr()?.port();
    let registry = web::Data::new(registry);
    let readiness = web::Data::new(readiness);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .app_data(readiness.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .shutdown_signal(shutdown.cancelled_owned())
    .run();
    Ok((port, server))
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(render(&registry))
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready while consuming with a reachable status store (without one it cannot record, so it
/// takes nothing).
async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let node = readiness.consuming.current();
    let consuming = node.is_some();
    let database = tokio::time::timeout(Duration::from_secs(2), readiness.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let body = json!({
        "status": if consuming && database { "ready" } else { "not_ready" },
        "broker": if consuming { "up" } else { "down" },
        "broker_node": node,
        "database": if database { "up" } else { "down" },
    });
    if consuming && database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
