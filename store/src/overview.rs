//! The console's overview: how many dispatches were accepted, started, failed and
//! dead-lettered over the last hour and day, and how many runs are in flight (why requests were
//! refused comes from [`crate::audit`]). Read from the fleet's shared record (every worker writes `dispatches`, every
//! ingress `audit_log`), so one page shows the whole deployment, not one replica's counters.

use chrono::{DateTime, Duration, DurationRound, Utc};
use flyhook_contract::scopes::Scopes;
use serde::Serialize;

use crate::DispatchStore;
use crate::listing::{scope_columns, within_scopes};

/// Dispatches received in one stretch of time, by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// Recorded by a worker (provider deliveries no route wanted are not counted).
    pub accepted: i64,
    /// Whose Flyte run was created.
    pub started: i64,
    pub failed: i64,
    pub dead_lettered: i64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.accepted += other.accepted;
        self.started += other.started;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
    }
}

/// One bucket of a chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A chart: equal buckets, oldest first, every bucket present (empty ones count zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Series {
    pub bucket_secs: i64,
    pub buckets: Vec<Bucket>,
}

impl Series {
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        self.buckets.iter().for_each(|b| total.add(&b.tally));
        total
    }
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    start: DateTime<Utc>,
    accepted: i64,
    started: i64,
    failed: i64,
    dead_lettered: i64,
}

impl DispatchStore {
    /// `count` buckets of `bucket` each, ending with the one `now` falls in, of the
    /// dispatches within `scopes` (all when unrestricted). One pass over the `received_at`
    /// index for the whole span.
    pub async fn activity(
        &self,
        now: DateTime<Utc>,
        bucket: Duration,
        count: i32,
        scopes: &Scopes,
    ) -> Result<Series, sqlx::Error> {
        let last = now
            .duration_trunc(bucket)
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let first = last - bucket * (count - 1);
        let secs = bucket.num_seconds();
        let [projects, domains, task_names] = scope_columns(Some(scopes));
        let rows: Vec<BucketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT to_timestamp(floor(extract(epoch FROM received_at) / $2) * $2) AS start, \
                    count(*) AS accepted, count(started_at) AS started, \
                    count(*) FILTER (WHERE status = 'failed') AS failed, \
                    count(*) FILTER (WHERE status = 'dead_lettered') AS dead_lettered \
             FROM dispatches \
             WHERE received_at >= $1 AND status <> 'ignored' AND {within} \
             GROUP BY 1",
            within = within_scopes(3)
        )))
        .bind(first)
        .bind(secs as f64)
        .bind(projects)
        .bind(domains)
        .bind(task_names)
        .fetch_all(&self.pool)
        .await?;
        let buckets = (0..count)
            .map(|i| {
                let start = first + bucket * i;
                let tally = rows
                    .iter()
                    .find(|row| row.start == start)
                    .map(|row| Tally {
                        accepted: row.accepted,
                        started: row.started,
                        failed: row.failed,
                        dead_lettered: row.dead_lettered,
                    })
                    .unwrap_or_default();
                Bucket { start, tally }
            })
            .collect();
        Ok(Series {
            bucket_secs: secs,
            buckets,
        })
    }

    /// Dispatches `starting` and `running` now, within `scopes`.
    pub async fn in_flight(&self, scopes: &Scopes) -> Result<(i64, i64), sqlx::Error> {
        let [projects, domains, task_names] = scope_columns(Some(scopes));
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE status = 'starting'), \
                    count(*) FILTER (WHERE status = 'running') \
             FROM dispatches WHERE status IN ('starting', 'running') AND {within}",
            within = within_scopes(1)
        )))
        .bind(projects)
        .bind(domains)
        .bind(task_names)
        .fetch_one(&self.pool)
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use flyhook_contract::scopes::Scopes;
    use sqlx::PgPool;

    use crate::DispatchStore;
    use crate::test_support::running;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn activity_counts_each_dispatch_in_its_bucket_within_the_scopes(pool: PgPool) {
        let store = DispatchStore::new(pool);
        running(&store, "acme").await;
        running(&store, "acme").await;
        running(&store, "other").await;
        let failed = running(&store, "acme").await;
        sqlx::query("UPDATE dispatches SET status = 'failed' WHERE id = $1")
            .bind(failed.id.to_string())
            .execute(store.pool())
            .await
            .unwrap();

        let now = Utc::now();
        let all = store
            .activity(now, Duration::minutes(5), 12, &Scopes::unrestricted())
            .await
            .unwrap();
        assert_eq!(all.buckets.len(), 12);
        assert!(all.buckets.windows(2).all(|w| w[0].start < w[1].start));
        let total = all.total();
        assert_eq!((total.accepted, total.started, total.failed), (4, 4, 1));
        assert_eq!(
            all.buckets.last().unwrap().tally,
            total,
            "all in the last bucket"
        );

        let acme = Scopes::parse_all(&["acme"]).unwrap();
        let mine = store
            .activity(now, Duration::hours(1), 24, &acme)
            .await
            .unwrap();
        assert_eq!(mine.total().accepted, 3);
        assert_eq!(store.in_flight(&acme).await.unwrap(), (0, 2));
    }
}
