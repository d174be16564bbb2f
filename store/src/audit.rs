//! The audit log: one append-only row per invocation of the API, accepted or refused. The
//! ingress writes it off the request path, in batches (`flyhook_ingress::audit`); operators read
//! it with `GET /audit` or `flyhook audit`.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// One invocation.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Assigned when written; 0 before.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    /// The API key's name, `source:<name>` for a provider webhook, absent when nobody was
    /// identified (a missing or wrong key).
    pub principal: Option<String>,
    pub method: String,
    /// The route's pattern, e.g. `/run-task/{project}/{domain}/{name}/{version}`.
    pub route: String,
    pub path: String,
    pub status: i16,
    /// `accepted`, `ok`, or the error code of the answer (`invalid_api_key`, `out_of_scope`, …).
    pub outcome: String,
    pub dispatch_ids: Vec<String>,
    pub client_addr: Option<String>,
}

/// Which entries to read; every part optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub route: Option<String>,
    pub outcome: Option<String>,
    pub dispatch_id: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this id: the cursor of the previous page.
    pub before_id: Option<i64>,
}

/// Requests refused for one reason (the problem `code`), over an hour and a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Refusals {
    pub reason: String,
    pub hour: i64,
    pub day: i64,
}

/// Requests of one principal with one outcome, and the dispatches they named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Outcomes {
    pub outcome: String,
    pub requests: i64,
    pub dispatches: i64,
}

#[derive(Debug, Clone)]
pub struct AuditStore {
    pool: PgPool,
}

impl AuditStore {
    pub fn new(pool: PgPool) -> AuditStore {
        AuditStore { pool }
    }

    /// Writes many entries in one statement.
    pub async fn append(&self, entries: &[AuditEntry]) -> Result<(), sqlx::Error> {
        let column = |f: fn(&AuditEntry) -> String| entries.iter().map(f).collect::<Vec<_>>();
        let ats: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
        let principals: Vec<Option<String>> = entries.iter().map(|e| e.principal.clone()).collect();
        let statuses: Vec<i16> = entries.iter().map(|e| e.status).collect();
        let clients: Vec<Option<String>> = entries.iter().map(|e| e.client_addr.clone()).collect();
        // Arrays of arrays must be rectangular in PostgreSQL: each entry's ids travel as one
        // comma-separated text (dispatch ids are hex digits).
        let dispatch_ids = column(|e| e.dispatch_ids.join(","));
        sqlx::query(
            "INSERT INTO audit_log (at, request_id, principal, method, route, path, status, outcome, dispatch_ids, client_addr) \
             SELECT at, request_id, principal, method, route, path, status, outcome, \
                    string_to_array(ids, ','), client_addr \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::int2[], $8::text[], $9::text[], $10::text[]) \
                  AS e(at, request_id, principal, method, route, path, status, outcome, ids, client_addr)",
        )
        .bind(ats)
        .bind(column(|e| e.request_id.clone()))
        .bind(principals)
        .bind(column(|e| e.method.clone()))
        .bind(column(|e| e.route.clone()))
        .bind(column(|e| e.path.clone()))
        .bind(statuses)
        .bind(column(|e| e.outcome.clone()))
        .bind(dispatch_ids)
        .bind(clients)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, at, request_id, principal, method, route, path, status, outcome, dispatch_ids, client_addr \
             FROM audit_log \
             WHERE ($1::text IS NULL OR principal = $1) \
               AND ($2::text IS NULL OR route = $2) \
               AND ($3::text IS NULL OR outcome = $3) \
               AND ($4::text IS NULL OR dispatch_ids @> ARRAY[$4]) \
               AND ($5::text IS NULL OR request_id = $5) \
               AND ($6::timestamptz IS NULL OR at >= $6) \
               AND ($7::timestamptz IS NULL OR at < $7) \
               AND ($8::bigint IS NULL OR id < $8) \
             ORDER BY id DESC LIMIT $9",
        )
        .bind(&filter.principal)
        .bind(&filter.route)
        .bind(&filter.outcome)
        .bind(&filter.dispatch_id)
        .bind(&filter.request_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Refused requests of the last day by reason, most frequent first, from the audit log.
    pub async fn refusals(&self, now: DateTime<Utc>) -> Result<Vec<Refusals>, sqlx::Error> {
        sqlx::query_as(
            "SELECT outcome AS reason, count(*) FILTER (WHERE at >= $2) AS hour, count(*) AS day \
             FROM audit_log WHERE at >= $1 AND status >= 400 \
             GROUP BY outcome ORDER BY day DESC, outcome",
        )
        .bind(now - Duration::days(1))
        .bind(now - Duration::hours(1))
        .fetch_all(&self.pool)
        .await
    }

    /// What `principal`'s requests since `since` came to, by outcome.
    pub async fn outcomes(
        &self,
        principal: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Outcomes>, sqlx::Error> {
        sqlx::query_as(
            "SELECT outcome, count(*) AS requests, \
                    coalesce(sum(cardinality(dispatch_ids)), 0)::bigint AS dispatches \
             FROM audit_log WHERE principal = $1 AND at >= $2 \
             GROUP BY outcome ORDER BY requests DESC, outcome",
        )
        .bind(principal)
        .bind(since)
        .fetch_all(&self.pool)
        .await
    }

    /// Deletes entries older than `cutoff`; returns how many.
    pub async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use sqlx::PgPool;

    use super::{AuditEntry, AuditFilter, AuditStore};

    fn entry(principal: &str, minutes_ago: i64) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: Utc::now() - Duration::minutes(minutes_ago),
            request_id: format!("req-{minutes_ago}"),
            principal: Some(principal.into()),
            method: "POST".into(),
            route: "/run-task/{project}/{domain}/{name}/{version}".into(),
            path: "/run-task/acme/prod/t/v1".into(),
            status: 202,
            outcome: "accepted".into(),
            dispatch_ids: vec![],
            client_addr: None,
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn entries_read_back_newest_first_by_filter_and_old_ones_are_purged(pool: PgPool) {
        let store = AuditStore::new(pool);
        store
            .append(&[entry("ci", 3), entry("ci", 1), entry("source:github", 5)])
            .await
            .unwrap();
        let ci = AuditFilter {
            principal: Some("ci".into()),
            ..AuditFilter::default()
        };
        let read = store.list(&ci, 10).await.unwrap();
        let ids: Vec<&str> = read.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, ["req-1", "req-3"]);

        let purged = store
            .purge_before(Utc::now() - Duration::minutes(4))
            .await
            .unwrap();
        assert_eq!(purged, 1);
        assert_eq!(
            store.list(&AuditFilter::default(), 10).await.unwrap().len(),
            2
        );
    }
}
