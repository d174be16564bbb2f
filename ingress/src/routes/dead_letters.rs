//! `/dead-letters`: what gave up, read from the broker itself, and sending it back.

use actix_web::{HttpRequest, HttpResponse, web};
use flyhook_contract::dead_letters::DeadLetter;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::observe::note_dispatches;
use crate::routes::body::read_json;
use crate::routes::{Services, page_limit, parsed_query};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// 1 to 1000; 100 by default.
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    /// Oldest first.
    items: Vec<DeadLetter>,
    /// How many wait in the dead-letter queue in all.
    ready: u64,
}

/// Lists dead letters, oldest first, leaving the queue as it was. For keys with every scope.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "dispatches",
    params(DeadLetterQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Dead letters", body = DeadLetterList),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_dead_letters(
    query: Result<web::Query<DeadLetterQuery>, actix_web::Error>,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let limit = page_limit(parsed_query(query)?.limit, 100, 1000)?;
    let (items, ready) = services.console.dead_letters(limit as usize).await?;
    Ok(HttpResponse::Ok().json(DeadLetterList { items, ready }))
}

/// Which dead letters to send back: `ids`, or `all`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterReplay {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLettersReplayed {
    /// Sent back to the work queue.
    sent: usize,
    /// Left in the dead-letter queue: not chosen, or unreadable.
    kept: usize,
}

/// Sends dead letters back to the work queue, marked as replays (each is taken up again under
/// its own id, so a run that exists is found again, not started twice).
#[utoipa::path(
    post,
    path = "/dead-letters/replay",
    tag = "dispatches",
    request_body(content = DeadLetterReplay, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What was sent back", body = DeadLettersReplayed),
        (status = 403, description = "The key does not have every scope", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither ids nor all, or both", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_dead_letters(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.must_be_unrestricted()?;
    let choice: DeadLetterReplay = read_json(&req, payload, &services.settings).await?;
    let ids = match (choice.ids, choice.all) {
        (Some(ids), false) if !ids.is_empty() => Some(ids),
        (None, true) => None,
        _ => {
            return Err(ApiError::InvalidField {
                field: "ids",
                reason: "give a non-empty list of ids, or \"all\": true".into(),
            });
        }
    };
    if let Some(ids) = &ids {
        note_dispatches(
            &req,
            ids.iter()
                .filter_map(|id| flyhook_contract::DispatchId::parse(id).ok()),
        );
    }
    let replayed = services.console.replay_dead_letters(ids.as_deref()).await?;
    Ok(HttpResponse::Ok().json(DeadLettersReplayed {
        sent: replayed.sent,
        kept: replayed.kept,
    }))
}
