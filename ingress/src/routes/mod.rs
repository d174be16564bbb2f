//! HTTP handlers: each translates a request into one domain call and its result into a
//! response, nothing more.

use actix_web::web;
use flyhook_store::DispatchStore;
use flyhook_store::audit::AuditStore;
use prometheus_client::registry::Registry;

use crate::console::Console;
use crate::control::Control;
use crate::error::ApiError;
use crate::intake::Intake;
use crate::publisher::Publisher;
use crate::settings::IngressSettings;
use crate::sources::Sources;

pub mod audit;
mod body;
pub mod console;
pub mod dead_letters;
pub mod dispatches;
pub mod health;
pub mod hooks;
pub mod keys;
pub mod overview;
pub mod run_task;
pub mod session;
pub mod sources;

/// A query string as parsed by actix, its failure as a problem naming the query.
pub fn parsed_query<T>(query: Result<web::Query<T>, actix_web::Error>) -> Result<T, ApiError> {
    query
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::InvalidQuery {
            field: "query",
            reason: e.to_string(),
        })
}

/// Refuses a text filter holding a NUL, which PostgreSQL cannot take as a parameter (it would
/// be answered as an outage, 503, instead of the caller's mistake).
pub fn refuse_nul(filters: &[(&'static str, Option<&str>)]) -> Result<(), ApiError> {
    match filters
        .iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains('\0')))
    {
        Some((field, _)) => Err(ApiError::InvalidQuery {
            field,
            reason: "must not contain NUL".into(),
        }),
        None => Ok(()),
    }
}

/// A page size from `?limit=`: `default` when absent, else within 1..=`max`.
pub fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidQuery {
            field: "limit",
            reason: format!("must be between 1 and {max}"),
        })
    }
}

/// Pages are read one row longer than asked, which tells whether there is a next page: drops
/// that row, and returns the last row kept when there is a next page (its cursor).
pub fn trim_page<T>(rows: &mut Vec<T>, limit: i64) -> Option<&T> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
    } else {
        None
    }
}

/// Everything handlers call, in one piece of app data: every handler takes
/// `web::Data<Services>` and uses what it needs.
#[derive(Debug)]
pub struct Services {
    pub intake: Intake,
    pub control: Control,
    pub console: Console,
    pub store: DispatchStore,
    pub audit_store: AuditStore,
    pub publisher: Publisher,
    pub registry: Registry,
    pub settings: IngressSettings,
    pub sources: Sources,
}
