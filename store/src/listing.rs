//! Pages of dispatches, newest first, by status, task, source and time, narrowed to a
//! restricted key's scopes: `GET /dispatches` and the choice of `flyhook replay`.

use chrono::{DateTime, Utc};
use flyhook_contract::DispatchStatus;
use flyhook_contract::principal::Principal;
use flyhook_contract::scopes::{Scope, Scopes};

use crate::DispatchStore;
use crate::record::{COLUMNS, DispatchRecord};

/// Filters of `GET /dispatches`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub statuses: Option<Vec<DispatchStatus>>,
    pub project: Option<String>,
    pub domain: Option<String>,
    pub task_name: Option<String>,
    /// Dispatches from one webhook source (recorded as sent by its [`Principal::Source`]).
    pub source: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only dispatches older than this (received_at, id): the cursor of the previous page.
    pub before: Option<(DateTime<Utc>, String)>,
    /// Only dispatches of tasks these scopes cover (a restricted key's view); all when `None`.
    pub within: Option<Scopes>,
}

impl DispatchStore {
    /// A page of dispatches, newest first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: i64,
    ) -> Result<Vec<DispatchRecord>, sqlx::Error> {
        let statuses: Option<Vec<&str>> = filter
            .statuses
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect());
        let (before_at, before_id) = filter.before.clone().unzip();
        // A restricted key's scopes as three parallel columns; NULL parts match anything.
        let within = filter.within.as_ref().filter(|s| !s.is_unrestricted());
        let scope_column = |part: fn(&Scope) -> Option<&str>| {
            within.map(|scopes| {
                scopes
                    .iter()
                    .map(|scope| part(scope).map(str::to_string))
                    .collect::<Vec<_>>()
            })
        };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dispatches \
             WHERE ($1::text[] IS NULL OR status = ANY($1)) \
               AND ($2::text IS NULL OR project = $2) \
               AND ($3::text IS NULL OR domain = $3) \
               AND ($4::text IS NULL OR task_name = $4) \
               AND ($5::timestamptz IS NULL OR received_at >= $5) \
               AND ($6::timestamptz IS NULL OR received_at < $6) \
               AND ($7::timestamptz IS NULL OR (received_at, id) < ($7, $8)) \
               AND ($10::text IS NULL OR api_key = $10) \
               AND ($11::text[] IS NULL OR EXISTS ( \
                    SELECT 1 FROM unnest($11::text[], $12::text[], $13::text[]) AS s(p, d, t) \
                    WHERE project = s.p AND (s.d IS NULL OR domain = s.d) \
                      AND (s.t IS NULL OR task_name = s.t))) \
             ORDER BY received_at DESC, id DESC LIMIT $9"
        )))
        .bind(statuses)
        .bind(&filter.project)
        .bind(&filter.domain)
        .bind(&filter.task_name)
        .bind(filter.since)
        .bind(filter.until)
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .bind(
            filter
                .source
                .clone()
                .map(|name| Principal::Source(name).to_string()),
        )
        .bind(scope_column(|s| s.parts().0))
        .bind(scope_column(|s| s.parts().1))
        .bind(scope_column(|s| s.parts().2))
        .fetch_all(&self.pool)
        .await
    }
}

#[cfg(test)]
mod tests {
    use flyhook_contract::scopes::Scopes;
    use sqlx::PgPool;

    use super::ListFilter;
    use crate::DispatchStore;
    use crate::test_support::running;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn pages_follow_the_cursor_newest_first_within_the_scopes(pool: PgPool) {
        let store = DispatchStore::new(pool);
        let mut acme = Vec::new();
        for _ in 0..3 {
            acme.push(running(&store, "acme").await.id.to_string());
        }
        running(&store, "other").await;

        let mut filter = ListFilter {
            within: Some(Scopes::parse_all(&["acme"]).unwrap()),
            ..ListFilter::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list(&filter, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            filter.before = Some((last.received_at, last.id.clone()));
            seen.extend(page.into_iter().map(|record| record.id));
        }
        acme.reverse();
        assert_eq!(
            seen, acme,
            "every acme dispatch once, newest first, no other"
        );
    }
}
