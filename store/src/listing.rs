//! Pages of dispatches, newest first, by status, task, source and time, narrowed to a
//! restricted key's scopes: `GET /dispatches` and the choice of `flyhook replay`.

use chrono::{DateTime, Utc};
use flyhook_contract::principal::Principal;
use flyhook_contract::scopes::{Scope, Scopes};
use flyhook_contract::{DispatchId, DispatchStatus};

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
    /// Dispatches a source's route made.
    pub route: Option<String>,
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
        let [projects, domains, task_names] = scope_columns(filter.within.as_ref());
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
               AND ($14::text IS NULL OR route = $14) \
               AND {within} \
             ORDER BY received_at DESC, id DESC LIMIT $9",
            within = within_scopes(11)
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
        .bind(projects)
        .bind(domains)
        .bind(task_names)
        .bind(&filter.route)
        .fetch_all(&self.pool)
        .await
    }

    /// The ids of every dispatch `filter` matches (its cursor is moved along), newest first,
    /// up to `cap`: collected whole before anything acts on them, so dispatches a replay sends
    /// back to `queued` cannot shift the pages under it.
    pub async fn matching_ids(
        &self,
        mut filter: ListFilter,
        cap: usize,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut ids = Vec::new();
        while ids.len() < cap {
            let page = self.list(&filter, 500.min(cap - ids.len()) as i64).await?;
            let Some(last) = page.last() else { break };
            filter.before = Some((last.received_at, last.id.clone()));
            ids.extend(page.into_iter().map(|record| record.id));
        }
        Ok(ids)
    }

    /// The dispatches with one of `ids`, or with the provider delivery id `delivery_id`,
    /// newest first: what the console's search box finds. Through the primary key and the
    /// delivery index, however many dispatches there are; the caller checks scopes.
    pub async fn find(
        &self,
        ids: &[DispatchId],
        delivery_id: &str,
    ) -> Result<Vec<DispatchRecord>, sqlx::Error> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dispatches WHERE id = ANY($1) \
             UNION SELECT {COLUMNS} FROM dispatches WHERE delivery_id = $2 \
             ORDER BY received_at DESC, id DESC LIMIT 100"
        )))
        .bind(ids)
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await
    }
}

/// The condition "a task these scopes cover" over `project`, `domain` and `task_name`, with a
/// restricted key's scopes bound as three parallel arrays from parameter `$first` on (see
/// [`scope_columns`]; NULL parts match anything, and a NULL first array, an unrestricted key,
/// matches every row).
pub(crate) fn within_scopes(first: usize) -> String {
    let (p, d, t) = (first, first + 1, first + 2);
    format!(
        "(${p}::text[] IS NULL OR EXISTS ( \
           SELECT 1 FROM unnest(${p}::text[], ${d}::text[], ${t}::text[]) AS s(p, d, t) \
           WHERE project = s.p AND (s.d IS NULL OR domain = s.d) \
             AND (s.t IS NULL OR task_name = s.t)))"
    )
}

/// `within`'s scopes as the three arrays [`within_scopes`] binds: project, domain, task name.
pub(crate) fn scope_columns(within: Option<&Scopes>) -> [Option<Vec<Option<String>>>; 3] {
    let within = within.filter(|s| !s.is_unrestricted());
    let column = |part: fn(&Scope) -> Option<&str>| {
        within.map(|scopes| {
            scopes
                .iter()
                .map(|scope| part(scope).map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    [
        column(|s| s.parts().0),
        column(|s| s.parts().1),
        column(|s| s.parts().2),
    ]
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
