//! `GET /dispatches/{id}`: where a dispatch is.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use flyhook_common::store::DispatchRecord;
use flyhook_common::{DispatchId, DispatchStatus, DispatchStore};
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::intake::Intake;

#[derive(Debug, Serialize)]
struct TaskView {
    project: String,
    domain: String,
    name: String,
    version: String,
}

/// A dispatch as senders see it.
#[derive(Debug, Serialize)]
struct DispatchView {
    id: String,
    status: DispatchStatus,
    /// False while no worker has recorded anything: the status is known from the id alone.
    recorded: bool,
    task: Option<TaskView>,
    run_name: String,
    url: Option<String>,
    attempts: i32,
    error: Option<String>,
    received_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl DispatchView {
    fn unrecorded(id: &DispatchId) -> DispatchView {
        DispatchView {
            id: id.to_string(),
            status: DispatchStatus::Queued,
            recorded: false,
            task: None,
            run_name: id.run_name().to_string(),
            url: None,
            attempts: 0,
            error: None,
            received_at: id.issued_at(),
            started_at: None,
            finished_at: None,
            updated_at: None,
        }
    }

    fn recorded(r: DispatchRecord, intake: &Intake) -> DispatchView {
        let flyte = intake.flyte();
        // Known from the start: the run name is derived from the id.
        let url = r.run_url.clone().unwrap_or_else(|| {
            flyte.run_url(&flyte_client::RunId {
                org: flyte.org().to_string(),
                project: r.project.clone(),
                domain: r.domain.clone(),
                name: r.run_name.clone(),
            })
        });
        DispatchView {
            id: r.id,
            status: r.status.0,
            recorded: true,
            task: Some(TaskView {
                project: r.project,
                domain: r.domain,
                name: r.task_name,
                version: r.task_version,
            }),
            run_name: r.run_name,
            url: Some(url),
            attempts: r.attempts,
            error: r.error,
            received_at: Some(r.received_at),
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: Some(r.updated_at),
        }
    }
}

pub async fn get_dispatch(
    path: web::Path<String>,
    _caller: Caller,
    intake: web::Data<Intake>,
    store: web::Data<DispatchStore>,
) -> Result<HttpResponse, ApiError> {
    let id = DispatchId::parse(&path).map_err(|_| ApiError::DispatchNotFound)?;
    if !intake.issuer().verify(&id) {
        return Err(ApiError::DispatchNotFound);
    }
    let record = store.get(&id).await.map_err(|e| {
        tracing::warn!(error = %e, "status store unreachable");
        ApiError::StoreUnavailable
    })?;
    let view = match record {
        Some(record) => DispatchView::recorded(record, &intake),
        None => DispatchView::unrecorded(&id),
    };
    Ok(HttpResponse::Ok().json(view))
}
