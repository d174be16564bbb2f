//! `/dispatches`: look one up, list them, cancel one.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::{DateTime, Utc};
use flyhook_contract::callbacks::Callback;
use flyhook_contract::principal::Principal;
use flyhook_contract::status::REPLAYABLE;
use flyhook_contract::{DispatchId, DispatchStatus};
use flyhook_store::{DispatchRecord, ListFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::intake::{Accepted, BulkReplay, Intake, MAX_BULK_REPLAY};
use crate::observe::note_dispatches;
use crate::routes::Services;
use crate::routes::body::read_json;
use crate::routes::{page_limit, parsed_query, refuse_nul, trim_page};
use flyhook_store::history::DispatchEvent;

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TaskView {
    project: String,
    domain: String,
    name: String,
    version: String,
}

/// Where a dispatch's completion callback is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CallbackView {
    /// The `[[callbacks]]` destination.
    destination: String,
    /// `pending` (queued to send), `retrying`, `delivered` or `failed` (dead-lettered; sent
    /// again by `flyhook replay --callbacks`); absent until the dispatch ends.
    state: Option<String>,
    /// Deliveries tried for its last ending.
    attempts: i32,
    /// The receiver's last answer, or why none came.
    last_answer: Option<String>,
    /// When it was last tried.
    at: Option<DateTime<Utc>>,
    /// The `webhook-id` of its last ending's event (receivers dedupe on it).
    webhook_id: Option<String>,
}

/// A dispatch as senders see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DispatchView {
    id: String,
    pub status: DispatchStatus,
    /// False while no worker has recorded anything: the status is known from the id alone.
    recorded: bool,
    task: Option<TaskView>,
    run_name: String,
    url: Option<String>,
    flyte_phase: Option<String>,
    attempts: i32,
    /// The run's outputs as plain JSON, once it succeeded.
    #[schema(value_type = Option<Object>)]
    outputs: Option<Value>,
    error: Option<String>,
    error_kind: Option<String>,
    received_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    /// The webhook source a provider delivery came from.
    source: Option<String>,
    /// The source's route that made it.
    route: Option<String>,
    /// The provider's own id of the delivery.
    delivery_id: Option<String>,
    /// The request that brought it (`X-Request-Id`).
    request_id: Option<String>,
    /// The completion callback, if one was chosen.
    callback: Option<CallbackView>,
    /// For a `coalesced` dispatch: the dispatch of its burst that ran.
    coalesced_into: Option<String>,
}

impl DispatchView {
    pub fn unrecorded(id: &DispatchId) -> DispatchView {
        DispatchView {
            id: id.to_string(),
            status: DispatchStatus::Queued,
            recorded: false,
            task: None,
            run_name: id.run_name().to_string(),
            url: None,
            flyte_phase: None,
            attempts: 0,
            outputs: None,
            error: None,
            error_kind: None,
            received_at: id.issued_at(),
            started_at: None,
            finished_at: None,
            updated_at: None,
            source: None,
            route: None,
            delivery_id: None,
            request_id: None,
            callback: None,
            coalesced_into: None,
        }
    }

    pub fn recorded(r: DispatchRecord, intake: &Intake) -> DispatchView {
        let task = match (r.project, r.domain, r.task_name, r.task_version) {
            (Some(project), Some(domain), Some(name), Some(version)) => Some(TaskView {
                project,
                domain,
                name,
                version,
            }),
            _ => None,
        };
        // Known from the start: the run name is derived from the id.
        let url = r.run_url.or_else(|| {
            let task = task.as_ref()?;
            let flyte = intake.flyte();
            Some(flyte.run_url(&flyte_client::RunId {
                org: flyte.org().to_string(),
                project: task.project.clone(),
                domain: task.domain.clone(),
                name: r.run_name.clone(),
            }))
        });
        DispatchView {
            id: r.id.clone(),
            status: r.status.0,
            recorded: true,
            task,
            run_name: r.run_name,
            url,
            flyte_phase: r.flyte_phase,
            attempts: r.attempts,
            outputs: r.outputs,
            error: r.error,
            error_kind: r.error_kind,
            received_at: Some(r.received_at),
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: Some(r.updated_at),
            source: match r.api_key.as_deref().map(Principal::parse) {
                Some(Principal::Source(source)) => Some(source),
                _ => None,
            },
            route: r.route,
            delivery_id: r.delivery_id,
            request_id: r.request_id,
            callback: r.callback.map(|destination| CallbackView {
                destination,
                webhook_id: DispatchId::parse(&r.id)
                    .ok()
                    .filter(|_| r.endings > 0)
                    .map(|id| Callback::webhook_id(&id, r.endings)),
                state: r.callback_state,
                attempts: r.callback_attempts,
                last_answer: r.callback_answer,
                at: r.callback_at,
            }),
            coalesced_into: r.coalesced_into,
        }
    }
}

/// Parses an id and checks this deployment issued it; anything else is a 404.
pub fn issued_id(text: &str, intake: &Intake) -> Result<DispatchId, ApiError> {
    DispatchId::parse(text)
        .ok()
        .filter(|id| intake.issuer().verify(id))
        .ok_or(ApiError::DispatchNotFound)
}

/// The dispatch `text` names, if this deployment issued it (else 404), and its record, if a
/// worker made one that the caller's scopes cover (else 403).
async fn visible_record(
    text: &str,
    caller: &Caller,
    services: &Services,
) -> Result<(DispatchId, Option<DispatchRecord>), ApiError> {
    let id = issued_id(text, &services.intake)?;
    let record = services.control.get(&id).await?;
    if let Some(record) = &record {
        caller.may_see(record)?;
    }
    Ok((id, record))
}

/// Looks a dispatch up. An id this deployment issued that no worker has recorded yet is
/// `queued` with `recorded: false`.
#[utoipa::path(
    get,
    path = "/dispatches/{id}",
    tag = "dispatches",
    params(("id" = String, Path, description = "The dispatch id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The dispatch", body = DispatchView),
        (status = 404, description = "Not an id this deployment issued", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_dispatch(
    path: web::Path<String>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let (id, record) = visible_record(&path, &caller, &services).await?;
    let view = match record {
        Some(record) => DispatchView::recorded(record, &services.intake),
        None => DispatchView::unrecorded(&id),
    };
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct CancelBody {
    reason: Option<String>,
}

/// Cancels a dispatch: a queued one never starts, a running one's run is aborted.
#[utoipa::path(
    post,
    path = "/dispatches/{id}/cancel",
    tag = "dispatches",
    params(("id" = String, Path, description = "The dispatch id")),
    request_body(content = Option<CancelBody>, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Cancelled (`aborted`)", body = DispatchView),
        (status = 404, description = "Not an id this deployment issued", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It already finished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_dispatch(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    body: Option<web::Json<CancelBody>>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Services {
        intake, control, ..
    } = services.get_ref();
    let id = issued_id(&path, intake)?;
    note_dispatches(&req, [id]);
    if let Some(record) = control.get(&id).await? {
        caller.may_see(&record)?;
    } else if !caller.scopes.is_unrestricted() {
        // Nothing recorded tells which task it is; only a key with every scope may cancel it.
        return Err(ApiError::OutOfScope);
    }
    let reason = body
        .and_then(|b| b.into_inner().reason)
        .unwrap_or_else(|| format!("cancelled through flyhook by {}", caller.key_name));
    let record = control.cancel(&id, &reason).await?;
    Ok(HttpResponse::Ok().json(DispatchView::recorded(record, intake)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ReplayBody {
    #[serde(default)]
    new_run: bool,
}

/// Sends a finished dispatch again: under its own id (only when failed, dead-lettered, aborted
/// or timed out; a run that exists is found again), or with `new_run` as a new dispatch.
#[utoipa::path(
    post,
    path = "/dispatches/{id}/replay",
    tag = "dispatches",
    params(("id" = String, Path, description = "The dispatch id")),
    request_body(content = Option<ReplayBody>, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued again", body = Accepted),
        (status = 404, description = "Not an id this deployment issued", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not replayable (not finished, or its inputs are unknown)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_dispatch(
    req: HttpRequest,
    path: web::Path<String>,
    caller: Caller,
    body: Option<web::Json<ReplayBody>>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Services { intake, store, .. } = services.get_ref();
    let id = issued_id(&path, intake)?;
    let new_run = body.is_some_and(|b| b.new_run);
    let accepted = intake
        .replay(store, &id, new_run, &caller.scopes, &caller.request_id)
        .await?;
    note_dispatches(&req, [id, accepted.id]);
    Ok(HttpResponse::Accepted().json(accepted))
}

/// `status=failed,dead_lettered` as statuses.
fn parse_statuses(list: Option<&str>) -> Result<Option<Vec<DispatchStatus>>, ApiError> {
    list.map(|list| {
        list.split(',')
            .map(|s| s.trim().parse::<DispatchStatus>())
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()
    .map_err(|reason| ApiError::InvalidQuery {
        field: "status",
        reason,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    project: Option<String>,
    domain: Option<String>,
    task: Option<String>,
    /// A webhook source's name.
    source: Option<String>,
    /// One of the source's routes.
    route: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
    /// Finds by dispatch id, run name (`wh-…`) or provider delivery id, whatever the other
    /// filters say (at most 100, on one page).
    q: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Page {
    items: Vec<DispatchView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

const MAX_PAGE: i64 = 500;

fn encode_cursor(record: &DispatchRecord) -> String {
    let raw = format!("{}|{}", record.received_at.to_rfc3339(), record.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.to_utc(),
        id.to_string(),
    ))
}

/// Lists dispatches, newest first (only those of tasks the key's scopes cover).
#[utoipa::path(
    get,
    path = "/dispatches",
    tag = "dispatches",
    params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of dispatches", body = Page),
        (status = 400, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_dispatches(
    query: Result<web::Query<ListQuery>, actix_web::Error>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Services {
        intake, control, ..
    } = services.get_ref();
    let query = parsed_query(query)?;
    refuse_nul(&[
        ("project", query.project.as_deref()),
        ("domain", query.domain.as_deref()),
        ("task", query.task.as_deref()),
        ("source", query.source.as_deref()),
        ("route", query.route.as_deref()),
        ("q", query.q.as_deref()),
    ])?;
    if let Some(text) = query.q.as_deref().filter(|q| !q.trim().is_empty()) {
        let (records, unrecorded) = control.find(text, intake.issuer()).await?;
        // An id nothing recorded yet tells no task: only a key with every scope sees it.
        let unrecorded = unrecorded.filter(|_| caller.scopes.is_unrestricted());
        let items = unrecorded
            .map(|id| DispatchView::unrecorded(&id))
            .into_iter()
            .chain(
                records
                    .into_iter()
                    .filter(|record| caller.may_see(record).is_ok())
                    .map(|record| DispatchView::recorded(record, intake)),
            )
            .collect();
        return Ok(HttpResponse::Ok().json(Page {
            items,
            next_cursor: None,
        }));
    }
    let statuses = parse_statuses(query.status.as_deref())?;
    let limit = page_limit(query.limit, 50, MAX_PAGE)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c).ok_or(ApiError::InvalidQuery {
                field: "cursor",
                reason: "not a cursor this API returned".into(),
            })
        })
        .transpose()?;
    let filter = ListFilter {
        statuses,
        project: query.project,
        domain: query.domain,
        task_name: query.task,
        source: query.source,
        route: query.route,
        since: query.since,
        until: query.until,
        before,
        within: Some(caller.scopes.clone()),
    };
    let mut records = control.list(&filter, limit + 1).await?;
    let next_cursor = trim_page(&mut records, limit).map(encode_cursor);
    let items = records
        .into_iter()
        .map(|r| DispatchView::recorded(r, intake))
        .collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// One dispatch's story: every status change, and what it was asked with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    /// Oldest first.
    events: Vec<DispatchEvent>,
    /// The task inputs as recorded (absent until a worker recorded them).
    #[schema(value_type = Option<Object>)]
    inputs: Option<Value>,
}

/// The timeline of a dispatch: each status change (and change of the run's Flyte phase) with
/// its time, and the inputs it was recorded with.
#[utoipa::path(
    get,
    path = "/dispatches/{id}/history",
    tag = "dispatches",
    params(("id" = String, Path, description = "The dispatch id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Its history (empty while nothing is recorded)", body = History),
        (status = 404, description = "Not an id this deployment issued", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn dispatch_history(
    path: web::Path<String>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let control = &services.control;
    let history = match visible_record(&path, &caller, &services).await? {
        (id, Some(_)) => History {
            events: control.history(&id).await?,
            inputs: control.inputs(&id).await?,
        },
        (_, None) => History {
            events: Vec::new(),
            inputs: None,
        },
    };
    Ok(HttpResponse::Ok().json(history))
}

/// Which dispatches to replay: the filters of `GET /dispatches`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayMatching {
    /// Comma-separated; only failed, dead_lettered, aborted and timed_out are replayable, and
    /// all four are taken when absent.
    status: Option<String>,
    project: Option<String>,
    domain: Option<String>,
    task: Option<String>,
    source: Option<String>,
    route: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Count what would be replayed, and replay nothing: the answer lists the `ids`.
    #[serde(default)]
    dry_run: bool,
    /// Exactly these dispatches (the `ids` a dry run answered), instead of the filters: what
    /// was counted is what is replayed, whatever failed since.
    ids: Option<Vec<String>>,
}

impl ReplayMatching {
    fn has_filters(&self) -> bool {
        self.status.is_some()
            || self.project.is_some()
            || self.domain.is_some()
            || self.task.is_some()
            || self.source.is_some()
            || self.route.is_some()
            || self.since.is_some()
            || self.until.is_some()
    }
}

/// Replays every finished dispatch the filters match (within the key's scopes), each under its
/// own id, as `POST /dispatches/{id}/replay` would; with `dry_run`, only counts them and lists
/// their ids, which a confirmed replay then sends back as `ids`. At most 1000 at once.
#[utoipa::path(
    post,
    path = "/dispatches/replay",
    tag = "dispatches",
    request_body(content = ReplayMatching, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Counted (dry run)", body = BulkReplay),
        (status = 202, description = "Queued again", body = BulkReplay),
        (status = 422, description = "A status that cannot be replayed, or more than 1000 match", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_matching(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Services { intake, store, .. } = services.get_ref();
    let body: ReplayMatching = read_json(&req, payload, &services.settings).await?;
    if let Some(ids) = &body.ids {
        if body.has_filters() || body.dry_run || ids.len() > MAX_BULK_REPLAY {
            return Err(ApiError::InvalidField {
                field: "ids",
                reason: format!("ids go alone (no filters, no dry run), at most {MAX_BULK_REPLAY}"),
            });
        }
        let ids: Vec<DispatchId> = ids
            .iter()
            .map(|id| issued_id(id, intake))
            .collect::<Result<_, _>>()?;
        let (done, queued) = intake
            .replay_each(store, &ids, &caller.scopes, &caller.request_id)
            .await?;
        note_dispatches(&req, queued);
        return Ok(HttpResponse::Accepted().json(done));
    }
    refuse_nul(&[
        ("project", body.project.as_deref()),
        ("domain", body.domain.as_deref()),
        ("task", body.task.as_deref()),
        ("source", body.source.as_deref()),
        ("route", body.route.as_deref()),
    ])?;
    let statuses = parse_statuses(body.status.as_deref())?.unwrap_or_else(|| REPLAYABLE.to_vec());
    if let Some(status) = statuses.iter().find(|s| !REPLAYABLE.contains(s)) {
        return Err(ApiError::InvalidField {
            field: "status",
            reason: format!("{status} dispatches cannot be replayed"),
        });
    }
    let filter = ListFilter {
        statuses: Some(statuses),
        project: body.project,
        domain: body.domain,
        task_name: body.task,
        source: body.source,
        route: body.route,
        since: body.since,
        until: body.until,
        before: None,
        within: Some(caller.scopes.clone()),
    };
    let matched = intake.matching(store, filter).await?;
    if body.dry_run {
        return Ok(HttpResponse::Ok().json(BulkReplay {
            matched: matched.len(),
            ids: matched,
            ..BulkReplay::default()
        }));
    }
    let (done, queued) = intake
        .replay_each(store, &matched, &caller.scopes, &caller.request_id)
        .await?;
    note_dispatches(&req, queued);
    Ok(HttpResponse::Accepted().json(done))
}
