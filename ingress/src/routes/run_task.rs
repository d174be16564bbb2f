//! `POST /run-task/{project}/{domain}/{name}/{version}`: the seed's endpoint, made durable;
//! with `?wait=<duration>`, or as `/run-task-and-wait/…`, it also waits for the run to end.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use flyhook_contract::TaskRef;
use flyhook_contract::callbacks::CALLBACK_HEADER;
use serde::Deserialize;

use crate::auth::Caller;
use crate::control::Waited;
use crate::error::{ApiError, Problem};
use crate::intake::Accepted;
use crate::observe::note_dispatches;
use crate::routes::Services;
use crate::routes::body::read_json_object;
use crate::routes::dispatches::DispatchView;
use crate::settings::IngressSettings;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for the run to end: `30s`, `500ms`, `2m`.
    wait: Option<String>,
}

impl WaitQuery {
    fn duration(&self, settings: &IngressSettings) -> Result<Option<Duration>, ApiError> {
        let Some(text) = &self.wait else {
            return Ok(None);
        };
        let wait = flyte_client::parse_duration(text).map_err(|reason| ApiError::InvalidQuery {
            field: "wait",
            reason,
        })?;
        Ok(Some(wait.min(settings.max_wait)))
    }
}

/// The path of a task, as `/run-task/…` takes it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// Flyte project.
    project: String,
    /// Flyte domain.
    domain: String,
    /// Task name.
    name: String,
    /// Task version.
    version: String,
}

/// Starts a Flyte task run: answers once the dispatch is durably queued; waits for the run to
/// end only if `?wait=` says so.
#[utoipa::path(
    post,
    path = "/run-task/{project}/{domain}/{name}/{version}",
    tag = "intake",
    params(TaskPath, WaitQuery, ("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY), ("Flyhook-Callback" = Option<String>, Header, description = CALLBACK)),
    request_body(content = Object, content_type = "application/json", description = "The task's inputs, by name"),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued durably; follow it at status_url", body = Accepted),
        (status = 200, description = "With ?wait=: the run ended within the wait", body = DispatchView),
        (status = 403, description = "The key's scopes do not cover the task, or it may not name that callback", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment is invalid, or the inputs do not fit the task", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_task(
    req: HttpRequest,
    path: web::Path<TaskPath>,
    query: web::Query<WaitQuery>,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let wait = query.duration(&services.settings)?;
    submit(req, path.into_inner(), payload, caller, services, wait).await
}

/// Starts a Flyte task run and waits for it to end (`?wait=`, or the configured default).
#[utoipa::path(
    post,
    path = "/run-task-and-wait/{project}/{domain}/{name}/{version}",
    tag = "intake",
    params(TaskPath, WaitQuery, ("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY), ("Flyhook-Callback" = Option<String>, Header, description = CALLBACK)),
    request_body(content = Object, content_type = "application/json", description = "The task's inputs, by name"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The run ended within the wait", body = DispatchView),
        (status = 202, description = "Still going when the wait ran out; follow it at status_url", body = Accepted),
        (status = 403, description = "The key's scopes do not cover the task, or it may not name that callback", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment is invalid, or the inputs do not fit the task", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_task_and_wait(
    req: HttpRequest,
    path: web::Path<TaskPath>,
    query: web::Query<WaitQuery>,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let wait = query
        .duration(&services.settings)?
        .unwrap_or(services.settings.default_wait);
    submit(
        req,
        path.into_inner(),
        payload,
        caller,
        services,
        Some(wait),
    )
    .await
}

async fn submit(
    req: HttpRequest,
    path: TaskPath,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let task = TaskRef::parse(&path.project, &path.domain, &path.name, &path.version)?;
    caller.may_use(&task)?;
    let inputs = read_json_object(&req, payload, &services.settings).await?;
    let idempotency_key = idempotency_key(&req)?;
    let callback = named_callback(&req)?;
    let mut accepted = services
        .intake
        .accept(
            &caller,
            task,
            inputs,
            idempotency_key,
            callback,
            req.headers(),
        )
        .await?;
    note_dispatches(&req, [accepted.id]);
    let Some(wait) = wait else {
        return Ok(HttpResponse::Accepted().json(accepted));
    };
    Ok(match services.control.wait(&accepted.id, wait).await {
        Waited::Finished(record) => {
            HttpResponse::Ok().json(DispatchView::recorded(record, &services.intake))
        }
        Waited::Pending(record) => {
            if let Some(record) = record {
                accepted.status = record.status.0;
            }
            HttpResponse::Accepted().json(accepted)
        }
    })
}

const IDEMPOTENCY_KEY: &str = "The same key (with the same API key and task) is the same dispatch: a retried send starts nothing new. 1 to 255 printable characters.";

fn idempotency_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey("must be printable ASCII"))?
        .trim();
    match key.len() {
        0 => Err(ApiError::InvalidIdempotencyKey("must not be empty")),
        1..=255 => Ok(Some(key)),
        _ => Err(ApiError::InvalidIdempotencyKey(
            "must be at most 255 characters",
        )),
    }
}

const CALLBACK: &str = "A [[callbacks]] destination told (signed, Standard Webhooks) when the dispatch ends, instead of the task's policy; the key must be one of its senders.";

/// The destination `Flyhook-Callback` names, if the header is there and not empty. A value
/// that is not text is no name any destination has.
fn named_callback(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(CALLBACK_HEADER) else {
        return Ok(None);
    };
    let name = value
        .to_str()
        .map_err(|_| ApiError::CallbackNotAllowed)?
        .trim();
    Ok((!name.is_empty()).then_some(name))
}
