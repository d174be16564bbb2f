//! The start path's writes: a worker claims a delivery (`starting`, counted attempts), records
//! the run it started (`running`), or ends the dispatch before any run (failed, dead-lettered,
//! refused, unreadable, ignored). Every write is conditional on the current status, so a
//! redelivered or duplicated message never moves a dispatch backwards.

use flyhook_contract::DispatchStatus;
use flyhook_contract::dispatch::{Dispatch, DispatchId, Ignored};
use flyhook_contract::storable::{recordable_delivery_id, storable_text};
use flyte_client::ActionPhase;
use serde_json::Value;

use crate::DispatchStore;
use crate::record::parse_status;

/// A delivery of a dispatch, to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub dispatch: Dispatch,
    /// RabbitMQ delivered this message before and it was never settled (a worker died
    /// holding it): counted, so a message that kills its workers is stopped.
    pub redelivered: bool,
}

/// What a worker may do with a delivery, decided by the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Go ahead: this is attempt number `attempt` (1 for the first delivery), and the message
    /// came back unsettled `redeliveries` times so far.
    Proceed { attempt: i32, redeliveries: i32 },
    /// Another delivery already took it past starting, it was cancelled, or it is the same
    /// id with other inputs than recorded (a reused idempotency key; the inputs claimed first
    /// win): drop this one.
    Settled(DispatchStatus),
}

/// Where a dispatch came from, as recorded: its route, the provider's delivery id (unless too
/// long to index) and the request that brought it.
fn origin_columns(dispatch: &Dispatch) -> (Option<String>, Option<String>, Option<String>) {
    let origin = dispatch.delivery.as_ref();
    (
        origin.map(|o| storable_text(&o.route).into_owned()),
        origin.and_then(|o| recordable_delivery_id(&o.delivery_id)),
        dispatch
            .request_id
            .as_deref()
            .map(|id| storable_text(id).into_owned()),
    )
}

impl DispatchStore {
    /// Claims dispatches for a start attempt, in one statement: each is recorded `starting`
    /// with its attempt count, unless another delivery already took it further (or recorded
    /// other inputs under the same id). The ids must be distinct; the claims come back in the
    /// order of `requests`.
    pub async fn claim_all(&self, requests: &[ClaimRequest]) -> Result<Vec<Claim>, sqlx::Error> {
        let dispatches: Vec<&Dispatch> = requests.iter().map(|r| &r.dispatch).collect();
        let column =
            |f: fn(&Dispatch) -> String| dispatches.iter().map(|d| f(d)).collect::<Vec<_>>();
        let (routes, delivery_ids, request_ids): (Vec<_>, Vec<_>, Vec<_>) =
            dispatches.iter().map(|d| origin_columns(d)).collect();
        let proceeding: Vec<(String, i32, i32)> = sqlx::query_as(
            "INSERT INTO dispatches (id, status, project, domain, task_name, task_version, api_key, \
                                     run_name, attempts, received_at, inputs, redeliveries, \
                                     route, delivery_id, request_id, callback, concurrency_key) \
             SELECT id, 'starting', project, domain, task_name, task_version, api_key, run_name, 1, \
                    received_at, inputs, redelivered::int, route, delivery_id, request_id, callback, \
                    concurrency_key \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::text[], $8::timestamptz[], $9::jsonb[], $10::bool[], $11::text[], \
                         $12::text[], $13::text[], $14::text[], $15::jsonb[]) \
                  AS t(id, project, domain, task_name, task_version, api_key, run_name, received_at, \
                       inputs, redelivered, route, delivery_id, request_id, callback, concurrency_key) \
             ORDER BY id \
             ON CONFLICT (id) DO UPDATE \
                SET status = 'starting', attempts = dispatches.attempts + 1, updated_at = now(), \
                    redeliveries = dispatches.redeliveries + EXCLUDED.redeliveries, \
                    project = EXCLUDED.project, domain = EXCLUDED.domain, \
                    task_name = EXCLUDED.task_name, task_version = EXCLUDED.task_version, \
                    api_key = EXCLUDED.api_key, inputs = EXCLUDED.inputs, \
                    route = coalesce(dispatches.route, EXCLUDED.route), \
                    delivery_id = coalesce(dispatches.delivery_id, EXCLUDED.delivery_id), \
                    request_id = coalesce(dispatches.request_id, EXCLUDED.request_id), \
                    callback = coalesce(dispatches.callback, EXCLUDED.callback), \
                    concurrency_key = coalesce(dispatches.concurrency_key, EXCLUDED.concurrency_key) \
                WHERE dispatches.status IN ('queued', 'starting') \
                  AND (dispatches.inputs IS NULL OR dispatches.inputs = EXCLUDED.inputs) \
             RETURNING id, attempts, redeliveries",
        )
        .bind(column(|d| d.id.to_string()))
        .bind(column(|d| d.task.project().to_string()))
        .bind(column(|d| d.task.domain().to_string()))
        .bind(column(|d| d.task.name().to_string()))
        .bind(column(|d| d.task.version().to_string()))
        .bind(column(|d| d.api_key.clone()))
        .bind(column(|d| d.id.run_name().as_ref().to_string()))
        .bind(dispatches.iter().map(|d| d.received_at).collect::<Vec<_>>())
        .bind(
            dispatches
                .iter()
                .map(|d| Value::Object(d.inputs.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(requests.iter().map(|r| r.redelivered).collect::<Vec<_>>())
        .bind(routes)
        .bind(delivery_ids)
        .bind(request_ids)
        .bind(
            dispatches
                .iter()
                .map(|d| d.callback.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            dispatches
                .iter()
                .map(|d| {
                    d.concurrency
                        .as_ref()
                        .and_then(|key| serde_json::to_value(key).ok())
                })
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.pool)
        .await?;
        let proceeding: std::collections::HashMap<String, (i32, i32)> = proceeding
            .into_iter()
            .map(|(id, attempt, redeliveries)| (id, (attempt, redeliveries)))
            .collect();
        let mut claims = Vec::with_capacity(dispatches.len());
        for dispatch in dispatches {
            let claim = match proceeding.get(&dispatch.id.to_string()) {
                Some(&(attempt, redeliveries)) => Claim::Proceed {
                    attempt,
                    redeliveries,
                },
                None => Claim::Settled(self.settled(dispatch).await?),
            };
            claims.push(claim);
        }
        Ok(claims)
    }

    /// A dispatch another delivery took past starting (or that was cancelled): its status. If
    /// it was cancelled before any worker saw it, this delivery is the first to know its task:
    /// fill that in.
    async fn settled(&self, dispatch: &Dispatch) -> Result<DispatchStatus, sqlx::Error> {
        let (route, delivery_id, request_id) = origin_columns(dispatch);
        let status: String = sqlx::query_scalar(
            "UPDATE dispatches SET project = COALESCE(project, $2), domain = COALESCE(domain, $3), \
                    task_name = COALESCE(task_name, $4), task_version = COALESCE(task_version, $5), \
                    api_key = COALESCE(api_key, $6), inputs = COALESCE(inputs, $7), \
                    route = COALESCE(route, $8), delivery_id = COALESCE(delivery_id, $9), \
                    request_id = COALESCE(request_id, $10), callback = COALESCE(callback, $11) \
             WHERE id = $1 RETURNING status",
        )
        .bind(dispatch.id.to_string())
        .bind(dispatch.task.project())
        .bind(dispatch.task.domain())
        .bind(dispatch.task.name())
        .bind(dispatch.task.version())
        .bind(&dispatch.api_key)
        .bind(Value::Object(dispatch.inputs.clone()))
        .bind(route)
        .bind(delivery_id)
        .bind(request_id)
        .bind(&dispatch.callback)
        .fetch_one(&self.pool)
        .await?;
        parse_status(status)
    }

    /// A dispatch whose claim the store refused (data it cannot hold): recorded `failed` with
    /// the reason and without its inputs, so it ends visibly instead of stalling.
    pub async fn record_refused(
        &self,
        dispatch: &Dispatch,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        self.record_ended_unstarted(dispatch, DispatchStatus::Failed, reason, None)
            .await
    }

    /// A dispatch whose concurrency key was full, with a policy that skips: recorded `skipped`
    /// (without its inputs) with the reason.
    pub async fn record_skipped(
        &self,
        dispatch: &Dispatch,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        self.record_ended_unstarted(dispatch, DispatchStatus::Skipped, reason, None)
            .await
    }

    /// A member of a debounced burst that another member ran for: recorded `coalesced`.
    pub async fn record_coalesced(
        &self,
        dispatch: &Dispatch,
        ran: &str,
    ) -> Result<(), sqlx::Error> {
        let reason = format!("coalesced: its burst ran as dispatch {ran}");
        self.record_ended_unstarted(dispatch, DispatchStatus::Coalesced, &reason, Some(ran))
            .await
    }

    /// Ends a dispatch no run was started for, whether or not a worker recorded it before.
    async fn record_ended_unstarted(
        &self,
        dispatch: &Dispatch,
        status: DispatchStatus,
        reason: &str,
        coalesced_into: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let (route, delivery_id, request_id) = origin_columns(dispatch);
        sqlx::query(
            "INSERT INTO dispatches (id, status, project, domain, task_name, task_version, api_key, \
                                     run_name, attempts, error, received_at, finished_at, route, \
                                     delivery_id, request_id, callback, coalesced_into) \
             VALUES ($1, $14, $2, $3, $4, $5, $6, $7, 1, $8, $9, now(), $10, $11, $12, $13, $15) \
             ON CONFLICT (id) DO UPDATE SET status = $14, error = $8, finished_at = now(), \
                    coalesced_into = $15, project = coalesce(dispatches.project, $2), \
                    domain = coalesce(dispatches.domain, $3), \
                    task_name = coalesce(dispatches.task_name, $4), \
                    task_version = coalesce(dispatches.task_version, $5), \
                    api_key = coalesce(dispatches.api_key, $6), \
                    updated_at = now(), callback = coalesce(dispatches.callback, $13) \
                WHERE dispatches.status IN ('queued', 'starting')",
        )
        .bind(dispatch.id.to_string())
        .bind(dispatch.task.project())
        .bind(dispatch.task.domain())
        .bind(dispatch.task.name())
        .bind(dispatch.task.version())
        .bind(storable_text(&dispatch.api_key))
        .bind(dispatch.id.run_name().as_ref())
        .bind(storable_text(reason))
        .bind(dispatch.received_at)
        .bind(route)
        .bind(delivery_id)
        .bind(request_id)
        .bind(&dispatch.callback)
        .bind(status.as_str())
        .bind(coalesced_into)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// A message whose body no worker can read, known only by the id it was published under:
    /// recorded `failed`, so its sender's status lookups end.
    pub async fn record_unreadable(
        &self,
        id: &DispatchId,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, run_name, error, received_at, finished_at) \
             VALUES ($1, 'failed', $2, $3, now(), now()) \
             ON CONFLICT (id) DO UPDATE SET status = 'failed', error = $3, finished_at = now(), \
                    updated_at = now() \
                WHERE dispatches.status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(id.run_name().as_ref())
        .bind(storable_text(reason))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Appends to what a dispatch's record says went wrong, whatever its status (an abort
    /// Flyte never confirmed, on an `aborted` dispatch).
    pub async fn note_error(&self, id: &DispatchId, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET error = concat_ws('; ', error, $2), updated_at = now() WHERE id = $1",
        )
            .bind(id.to_string())
            .bind(storable_text(error))
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// A delivery no route wanted. Recording it twice is harmless.
    pub async fn record_ignored(&self, ignored: &Ignored) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dispatches (id, status, api_key, run_name, error, received_at, finished_at, \
                                     delivery_id, request_id, callback) \
             VALUES ($1, 'ignored', $2, $3, $4, $5, now(), $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(ignored.id.to_string())
        .bind(&ignored.source)
        .bind(ignored.id.run_name().as_ref())
        .bind(storable_text(&format!(
            "no route matched delivery {}",
            ignored.delivery_id
        )))
        .bind(ignored.received_at)
        .bind(
            ignored
                .provider_delivery_id
                .as_deref()
                .and_then(recordable_delivery_id),
        )
        .bind(ignored.request_id.as_deref().map(storable_text))
        .bind(&ignored.callback)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Records runs started, in one statement: each dispatch still `starting` becomes
    /// `running`; returns each one's status after (anything but `running` means another
    /// delivery or a cancel got there first). The ids must be distinct.
    pub async fn record_all_running(
        &self,
        started: &[(DispatchId, String, ActionPhase)],
    ) -> Result<Vec<DispatchStatus>, sqlx::Error> {
        let ids: Vec<String> = started.iter().map(|(id, _, _)| id.to_string()).collect();
        let updated: Vec<String> = sqlx::query_scalar(
            "UPDATE dispatches d SET status = 'running', run_url = t.run_url, flyte_phase = t.phase, \
                    error = NULL, started_at = now(), next_poll_at = now(), updated_at = now() \
             FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, run_url, phase) \
                   ORDER BY id) t \
             WHERE d.id = t.id AND d.status = 'starting' \
             RETURNING d.id",
        )
        .bind(&ids)
        .bind(started.iter().map(|(_, url, _)| url.clone()).collect::<Vec<_>>())
        .bind(started.iter().map(|(_, _, phase)| phase.to_string()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let updated: std::collections::HashSet<String> = updated.into_iter().collect();
        let mut statuses = Vec::with_capacity(ids.len());
        for id in ids {
            let status = if updated.contains(&id) {
                DispatchStatus::Running
            } else {
                let status: String =
                    sqlx::query_scalar("SELECT status FROM dispatches WHERE id = $1")
                        .bind(&id)
                        .fetch_one(&self.pool)
                        .await?;
                parse_status(status)?
            };
            statuses.push(status);
        }
        Ok(statuses)
    }

    /// The dispatch ends before any run: `failed` (retrying cannot help) or `dead_lettered`
    /// (retries ran out); `error` says why.
    pub async fn record_given_up(
        &self,
        id: &DispatchId,
        status: DispatchStatus,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET status = $3, error = $2, finished_at = now(), updated_at = now() \
             WHERE id = $1 AND status IN ('queued', 'starting')",
        )
        .bind(id.to_string())
        .bind(storable_text(error))
        .bind(status.as_str())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// An attempt failed in a way worth retrying; the dispatch stays `starting`.
    pub async fn record_retryable_error(
        &self,
        id: &DispatchId,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE dispatches SET error = $2, updated_at = now() WHERE id = $1 AND status = 'starting'",
        )
        .bind(id.to_string())
        .bind(storable_text(error))
        .execute(&self.pool)
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use flyhook_contract::DispatchStatus;
    use flyhook_contract::dispatch::DeliveryOrigin;
    use serde_json::json;
    use sqlx::PgPool;

    use flyte_client::ActionPhase;

    use crate::test_support::{claim, dispatch};
    use crate::{Claim, ClaimRequest, DispatchStore};

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_redelivery_counts_attempts_until_the_run_starts_and_then_is_settled(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let first = dispatch("acme", json!({"n": 1}));
        assert_eq!(
            claim(&store, &first).await,
            Claim::Proceed {
                attempt: 1,
                redeliveries: 0
            }
        );
        // The worker holding it died: RabbitMQ delivers it again, flagged redelivered.
        let unsettled = ClaimRequest {
            dispatch: first.clone(),
            redelivered: true,
        };
        assert_eq!(
            store.claim_all(&[unsettled]).await.unwrap(),
            [Claim::Proceed {
                attempt: 2,
                redeliveries: 1
            }]
        );
        let url = "http://flyte.test/run".to_string();
        store
            .record_all_running(&[(first.id, url, ActionPhase::Running)])
            .await
            .unwrap();
        assert_eq!(
            claim(&store, &first).await,
            Claim::Settled(DispatchStatus::Running),
            "a running dispatch never goes back to starting"
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_delivery_is_found_by_its_id_unless_the_id_is_too_long_to_index(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let origin = |delivery_id: String| DeliveryOrigin {
            route: "deploy".into(),
            delivery_id,
        };
        let mut sane = dispatch("acme", json!({"n": 1}));
        sane.delivery = Some(origin("gh-delivery-1".into()));
        sane.request_id = Some("req-1".into());
        // An unsigned id header from a hostile sender: 30 KB of random hex, which compresses
        // to more than an index entry can hold.
        let mut hostile = dispatch("acme", json!({"n": 2}));
        let noise: String = (0..940)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        hostile.delivery = Some(origin(noise.clone()));

        let requests: Vec<ClaimRequest> = [&sane, &hostile]
            .map(|d| ClaimRequest {
                dispatch: d.clone(),
                redelivered: false,
            })
            .into();
        let claims = store.claim_all(&requests).await.unwrap();
        assert!(
            claims.iter().all(|c| matches!(c, Claim::Proceed { .. })),
            "{claims:?}"
        );

        let found = store.find(&[], "gh-delivery-1").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, sane.id.to_string());
        assert_eq!(
            (found[0].route.as_deref(), found[0].request_id.as_deref()),
            (Some("deploy"), Some("req-1"))
        );
        let kept = store.get(&hostile.id).await.unwrap().unwrap();
        assert_eq!(
            (kept.route.as_deref(), kept.delivery_id),
            (Some("deploy"), None)
        );
        assert!(store.find(&[], &noise).await.unwrap().is_empty());
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_same_id_with_other_inputs_is_settled_and_the_first_inputs_win(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let first = dispatch("acme", json!({"n": 1}));
        claim(&store, &first).await;
        let mut reused = first.clone();
        reused.inputs = json!({"n": 2}).as_object().unwrap().clone();
        assert_eq!(
            claim(&store, &reused).await,
            Claim::Settled(DispatchStatus::Starting)
        );
        assert_eq!(
            store.recorded_inputs(&first.id).await.unwrap(),
            Some(json!({"n": 1}))
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_refused_dispatch_ends_failed_with_its_reason_and_without_its_inputs(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let refused = dispatch("acme", json!({"n": 1}));
        store.record_refused(&refused, "unstorable").await.unwrap();
        let record = store.get(&refused.id).await.unwrap().unwrap();
        assert_eq!(record.status.0, DispatchStatus::Failed);
        assert!(record.error.unwrap().contains("unstorable"));
        assert_eq!(store.recorded_inputs(&refused.id).await.unwrap(), None);
    }
}
