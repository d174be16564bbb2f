//! What the operator console shows beyond one dispatch: the fleet's figures for the overview,
//! each source's recent deliveries, and the broker's queues (depths and dead letters). Served
//! as JSON to any key the same way (`GET /overview`, `/sources`, `/dead-letters`), so the
//! console is just one client of the API and holds no power a key does not.
//!
//! Figures come from the shared record (`dispatches` written by every worker, `audit_log` by
//! every ingress) rather than this replica's Prometheus counters, which start at zero with
//! each process and see only its own share of the traffic.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use flyhook_contract::broker::{Topology, ready_messages};
use flyhook_contract::dead_letters::{self, DeadLetter, Replayed};
use flyhook_contract::principal::Principal;
use flyhook_contract::scopes::Scopes;
use flyhook_store::DispatchStore;
use flyhook_store::audit::{AuditEntry, AuditFilter, AuditStore, Refusals};
use flyhook_store::overview::{Activity, Series, Tally};
use serde::Serialize;

use crate::error::ApiError;
use crate::publisher::Publisher;
use crate::sources::Sources;

/// Reads for the console's pages.
#[derive(Debug, Clone)]
pub struct Console {
    store: DispatchStore,
    audit: AuditStore,
    publisher: Publisher,
    topology: Topology,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    generated_at: DateTime<Utc>,
    /// The last hour in 5-minute buckets.
    hour: Series,
    /// The last day in 1-hour buckets.
    day: Series,
    totals: Totals,
    in_flight: InFlight,
    /// The broker's queues; absent for a restricted key, or while the broker is away.
    queue: Option<QueueDepth>,
    /// Refused requests by reason; absent for a restricted key (they name no task).
    rejections: Option<Vec<Refusals>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Totals {
    hour: Tally,
    day: Tally,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InFlight {
    starting: i64,
    running: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct QueueDepth {
    /// Messages waiting in the work queues (every partition).
    ready: u64,
    dead_letters: u64,
}

/// A configured source and what came of its deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    name: String,
    /// The signature scheme.
    provider: String,
    routes: Vec<RouteView>,
    last_day: SourceDay,
    /// The last requests to this source, newest first.
    recent: Vec<AuditEntry>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RouteView {
    name: String,
    task: String,
    /// Every condition must hold for the route to take a delivery.
    when: Vec<String>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
struct SourceDay {
    /// Requests to the source.
    deliveries: i64,
    /// Dispatches its routed deliveries became.
    dispatches: i64,
    /// Authentic deliveries no route wanted.
    ignored: i64,
    /// Requests refused (bad or missing signatures, stale timestamps, oversized bodies, …).
    refused: i64,
    refusals: Vec<ReasonCount>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReasonCount {
    reason: String,
    count: i64,
}

/// How many recent requests a source card lists.
const RECENT_DELIVERIES: i64 = 20;

impl Console {
    pub fn new(
        store: DispatchStore,
        audit: AuditStore,
        publisher: Publisher,
        topology: Topology,
    ) -> Console {
        Console {
            store,
            audit,
            publisher,
            topology,
        }
    }

    /// The overview, within `scopes`: a restricted key sees its tasks' dispatches only, and
    /// neither the queues nor the refusals (which are everyone's).
    pub async fn overview(&self, scopes: &Scopes) -> Result<Overview, ApiError> {
        let now = Utc::now();
        let unrestricted = scopes.is_unrestricted();
        // Each read on a connection of its own, at once: the page waits for the slowest, not
        // for their sum.
        let (activity, in_flight, refusals, queue) = tokio::join!(
            self.store.activity(now, scopes),
            self.store.in_flight(scopes),
            async {
                match unrestricted {
                    true => self.audit.refusals(now).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match unrestricted {
                    true => self.queue_depth().await,
                    false => None,
                }
            },
        );
        let unreachable = ApiError::store_unavailable;
        let Activity { hour, day } = activity.map_err(unreachable)?;
        let (starting, running) = in_flight.map_err(unreachable)?;
        let rejections = refusals.map_err(ApiError::unreachable("audit log"))?;
        Ok(Overview {
            generated_at: now,
            totals: Totals {
                hour: hour.total(),
                day: day.total(),
            },
            hour,
            day,
            in_flight: InFlight { starting, running },
            queue,
            rejections,
        })
    }

    /// Messages ready in the work queues and the dead-letter queue.
    async fn queue_depth(&self) -> Option<QueueDepth> {
        Some(QueueDepth {
            ready: self.ready_in(self.topology.work_queues()).await?,
            dead_letters: self.ready_in([self.topology.dead_queue()]).await?,
        })
    }

    /// Messages ready in `queues`, summed, on a channel of its own (a passive declare of a
    /// missing queue closes its channel); `None` while the broker cannot say.
    async fn ready_in(&self, queues: impl IntoIterator<Item = String>) -> Option<u64> {
        let connection = self.publisher.connection()?;
        let channel = connection.create_channel().await.ok()?;
        let mut ready = 0u64;
        for queue in queues {
            ready += u64::from(ready_messages(&channel, &queue).await.ok()?);
        }
        let _ = channel.close(200, "counted".into()).await;
        Some(ready)
    }

    /// Every configured source, its routes and its last day of deliveries.
    pub async fn sources(&self, sources: &Sources) -> Result<Vec<SourceView>, ApiError> {
        let since = Utc::now() - Duration::days(1);
        let unreachable = || ApiError::unreachable("audit log");
        let mut views = Vec::new();
        for source in sources.all() {
            let principal = Principal::Source(source.name.clone()).to_string();
            let mut last_day = SourceDay::default();
            for outcome in self
                .audit
                .outcomes(&principal, since)
                .await
                .map_err(unreachable())?
            {
                last_day.deliveries += outcome.requests;
                match outcome.outcome.as_str() {
                    "accepted" => last_day.dispatches += outcome.dispatches,
                    // A 200 that names a dispatch is an ignored delivery (a handshake names none).
                    "ok" => last_day.ignored += outcome.dispatches,
                    _ => {
                        last_day.refused += outcome.requests;
                        last_day.refusals.push(ReasonCount {
                            reason: outcome.outcome,
                            count: outcome.requests,
                        });
                    }
                }
            }
            let recent_filter = AuditFilter {
                principal: Some(principal),
                ..AuditFilter::default()
            };
            let recent = self
                .audit
                .list(&recent_filter, RECENT_DELIVERIES)
                .await
                .map_err(unreachable())?;
            views.push(SourceView {
                name: source.name.clone(),
                provider: source.scheme_name.clone(),
                routes: source
                    .routes
                    .iter()
                    .map(|route| RouteView {
                        name: route.name.clone(),
                        task: route.task.to_string(),
                        when: route.conditions(),
                    })
                    .collect(),
                last_day,
                recent,
            });
        }
        Ok(views)
    }

    fn broker(&self) -> Result<Arc<lapin::Connection>, ApiError> {
        self.publisher
            .connection()
            .ok_or(ApiError::BrokerUnavailable)
    }

    /// Up to `limit` dead letters, oldest first, and how many wait in all; the queue is left
    /// as it was.
    pub async fn dead_letters(&self, limit: usize) -> Result<(Vec<DeadLetter>, u64), ApiError> {
        let connection = self.broker()?;
        let listed = dead_letters::list(&connection, &self.topology, limit)
            .await
            .map_err(broker_failed)?;
        let ready = self.ready_in([self.topology.dead_queue()]).await;
        let ready = ready.unwrap_or(0).max(listed.len() as u64);
        Ok((listed, ready))
    }

    /// Sends dead letters back to the work queue: those with one of `ids`, or all when `None`.
    pub async fn replay_dead_letters(&self, ids: Option<&[String]>) -> Result<Replayed, ApiError> {
        let connection = self.broker()?;
        // A body may name thousands; each dead letter looks its id up once.
        let chosen: Option<HashSet<&str>> = ids.map(|ids| ids.iter().map(String::as_str).collect());
        dead_letters::replay(&connection, &self.topology, |letter| match &chosen {
            None => true,
            Some(chosen) => letter.id.as_deref().is_some_and(|id| chosen.contains(id)),
        })
        .await
        .map_err(broker_failed)
    }
}

fn broker_failed(error: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{error:#}"), "dead-letter queue unreachable");
    ApiError::BrokerUnavailable
}
