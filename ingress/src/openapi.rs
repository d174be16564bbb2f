//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers' own
//! annotations and types, so it cannot drift from the code. The error answers every operation
//! shares (the problem document for 401, 403, 429, 500, and 503 on whatever needs a dependency)
//! are added here once instead of on each handler.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::Type;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::openapi::{ObjectBuilder, Required};
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, ProblemCode};
use crate::routes::{
    audit, dead_letters, dispatches, health, hooks, keys, overview, run_task, session, sources,
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "flyhook",
        description = "Webhooks in, tracked Flyte runs out: durable intake, status lookup and control of dispatches.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        run_task::run_task,
        run_task::run_task_and_wait,
        hooks::receive,
        hooks::github_webhook,
        dispatches::get_dispatch,
        dispatches::list_dispatches,
        dispatches::cancel_dispatch,
        dispatches::replay_dispatch,
        dispatches::dispatch_history,
        dispatches::replay_matching,
        dead_letters::list_dead_letters,
        dead_letters::replay_dead_letters,
        audit::list_audit,
        overview::overview,
        sources::list_sources,
        keys::list_keys,
        keys::create_key,
        keys::revoke_key,
        session::sign_in,
        session::show,
        session::sign_out,
        health::health,
        health::livez,
        health::readyz,
        health::metrics,
        serve,
    ),
    components(schemas(Problem, ProblemCode)),
    modifiers(&SharedAnswers),
    tags(
        (name = "intake", description = "Start runs: by API key, or as a signed provider webhook"),
        (name = "dispatches", description = "Follow, list, cancel and replay dispatches"),
        (name = "operations", description = "Probes, metrics, the audit log, keys, sources, the overview and this document"),
        (name = "console", description = "Signing in to the operator console at /ui/: a session cookie that stands for an API key"),
    )
)]
pub struct ApiDoc;

/// The document (built once).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}

/// Adds the bearer scheme and the error answers operations share.
struct SharedAnswers;

/// Operations that answer without any dependency (and without a key).
const SELF_CONTAINED: [&str; 4] = ["/health", "/livez", "/metrics", "/openapi.json"];

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "An API key: configured, or made with `flyhook keys create` (starts with `fhk_`)."
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "console_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::sessions::COOKIE_NAME,
                "A console session (`POST /ui/session`): stands for the API key it was opened \
                 with; requests that change something also need `X-CSRF-Token`.",
            ))),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let self_contained = SELF_CONTAINED.contains(&path.as_str());
            for operation in operations(item) {
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(request_id_header());
                let keyed = operation.security.is_some();
                // Whatever a key may call, the console session that stands for it may too.
                if let Some(security) = operation.security.as_mut()
                    && !security.is_empty()
                {
                    let session = SecurityRequirement::new("console_session", Vec::<String>::new());
                    if !security.contains(&session) {
                        security.push(session);
                    }
                }
                let mut shared = vec![("500", "Unexpected failure (details are in the logs)")];
                if keyed {
                    shared.extend([
                        ("401", "Missing or invalid API key"),
                        ("403", "The key's scopes do not cover this"),
                        ("429", "The key's rate limit is exceeded; see Retry-After"),
                    ]);
                }
                if operation.request_body.is_some() {
                    shared.extend([
                        (
                            "400",
                            "The body is malformed, or a header or query parameter is invalid",
                        ),
                        ("408", "The body did not arrive in time"),
                        ("413", "The body is larger than the limit"),
                        ("415", "The body's media type is not accepted"),
                    ]);
                }
                if !self_contained && path != "/readyz" {
                    shared.push((
                        "503",
                        "A dependency is unavailable or flyhook is at capacity; see Retry-After",
                    ));
                }
                for (status, description) in shared {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(description).into());
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Every operation takes (and answers with) a request id.
fn request_id_header() -> Parameter {
    ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Carried into the queue message, the worker's logs, the Flyte run's labels and the \
             audit log, and echoed in the answer; a new one is made when absent or unusable \
             (1 to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric).",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(63)),
        ))
        .build()
}

/// An answer whose body is a [`Problem`].
pub fn problem(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
