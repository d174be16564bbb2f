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

/// The last hour in 5-minute buckets and the last day in hourly ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub hour: Series,
    pub day: Series,
}

const FIVE_MINUTES: i64 = 300;

fn bucket(start: DateTime<Utc>, rows: &[BucketRow], width: Duration) -> Bucket {
    let mut tally = Tally::default();
    rows.iter()
        .filter(|row| row.start >= start && row.start < start + width)
        .for_each(|row| {
            tally.add(&Tally {
                accepted: row.accepted,
                started: row.started,
                failed: row.failed,
                dead_lettered: row.dead_lettered,
            })
        });
    Bucket { start, tally }
}

impl DispatchStore {
    /// The dispatches within `scopes` (all when unrestricted) received over the last day, by
    /// what became of them: one pass over the `received_at` index in 5-minute buckets, which
    /// make the hour's series and add up to the day's.
    pub async fn activity(
        &self,
        now: DateTime<Utc>,
        scopes: &Scopes,
    ) -> Result<Activity, sqlx::Error> {
        let trunc = |width: Duration| {
            now.duration_trunc(width)
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))
        };
        let (five_minutes, hour) = (Duration::seconds(FIVE_MINUTES), Duration::hours(1));
        let day_first = trunc(hour)? - hour * 23;
        let hour_first = trunc(five_minutes)? - five_minutes * 11;
        let [projects, domains, task_names] = scope_columns(Some(scopes));
        let rows: Vec<BucketRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT to_timestamp(floor(extract(epoch FROM received_at) / {FIVE_MINUTES}) \
                    * {FIVE_MINUTES}) AS start, \
                    count(*) AS accepted, count(started_at) AS started, \
                    count(*) FILTER (WHERE status = 'failed') AS failed, \
                    count(*) FILTER (WHERE status = 'dead_lettered') AS dead_lettered \
             FROM dispatches \
             WHERE received_at >= $1 AND status <> 'ignored' AND {within} \
             GROUP BY 1",
            within = within_scopes(2)
        )))
        .bind(day_first)
        .bind(projects)
        .bind(domains)
        .bind(task_names)
        .fetch_all(&self.pool)
        .await?;
        let series = |first: DateTime<Utc>, width: Duration, count: i32| Series {
            bucket_secs: width.num_seconds(),
            buckets: (0..count)
                .map(|i| bucket(first + width * i, &rows, width))
                .collect(),
        };
        Ok(Activity {
            hour: series(hour_first, five_minutes, 12),
            day: series(day_first, hour, 24),
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
    use chrono::Utc;
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
        let all = store.activity(now, &Scopes::unrestricted()).await.unwrap();
        assert_eq!((all.hour.buckets.len(), all.day.buckets.len()), (12, 24));
        assert_eq!((all.hour.bucket_secs, all.day.bucket_secs), (300, 3600));
        assert!(all.hour.buckets.windows(2).all(|w| w[0].start < w[1].start));
        assert!(all.day.buckets.windows(2).all(|w| w[0].start < w[1].start));
        let total = all.day.total();
        assert_eq!((total.accepted, total.started, total.failed), (4, 4, 1));
        assert_eq!(
            all.hour.total(),
            total,
            "the hour's buckets hold the same dispatches"
        );

        let acme = Scopes::parse_all(&["acme"]).unwrap();
        let mine = store.activity(now, &acme).await.unwrap();
        assert_eq!(mine.day.total().accepted, 3);
        assert_eq!(store.in_flight(&acme).await.unwrap(), (0, 2));
    }
}
