//! The HTTP face of the stand-in: Flyte's Connect-JSON RPCs at Flyte's paths, an OAuth2 token
//! endpoint for API-key auth, and `/_sim/*` endpoints that let tests look inside and inject
//! faults.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use base64::Engine;
use flyte_client::client::{
    ABORT_RUN, CREATE_RUN, GET_ACTION_DATA, GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG,
    GET_RUN_DETAILS, GET_TASK_DETAILS, Rpc,
};
use flyte_client::literal::NamedLiteral;
use flyte_client::messages::*;
use flyte_client::{Code, LiteralKind, LiteralType, RunName, SimpleType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Catalogue, Outcome};
use crate::faults::{self, Failure, Fault};
use crate::runs::{Ending, RunRecord, RunView};
use crate::schema::{Schema, SchemaError};

/// What `CreateRun` does with a run name that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDuplicate {
    /// Answer `already_exists`, as hosted Flyte does.
    AlreadyExists,
    /// Answer with the existing run, as open-source Flyte does.
    ReturnExisting,
}

/// Which credentials the stand-in demands.
#[derive(Debug, Clone, Default)]
pub enum SimAuth {
    #[default]
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// OAuth2 client credentials; issued tokens live for `token_ttl`.
    ClientCredentials {
        client_id: String,
        client_secret: String,
        token_ttl: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `127.0.0.1:8090`; port 0 picks a free one.
    pub listen: String,
    pub catalogue: Catalogue,
    pub queued_for: Duration,
    pub running_for: Duration,
    pub on_duplicate: OnDuplicate,
    pub faults: Vec<Fault>,
    pub auth: SimAuth,
    pub workers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:8090".into(),
            catalogue: Catalogue::built_in(),
            queued_for: Duration::from_millis(500),
            running_for: Duration::from_secs(2),
            on_duplicate: OnDuplicate::AlreadyExists,
            faults: Vec::new(),
            auth: SimAuth::None,
            workers: 2,
        }
    }
}

/// Call counts and rejections, for tests and benchmarks.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Calls per RPC (`RunService/CreateRun`) that passed the schema check.
    pub calls: BTreeMap<String, u64>,
    /// Requests refused for not matching the schema.
    pub schema_rejections: u64,
    /// The last schema problem seen, to make a failing test say why.
    pub last_schema_rejection: Option<String>,
    pub tokens_issued: u64,
    pub unauthenticated: u64,
    /// Runs created (a run name counts once, however often CreateRun was called for it).
    #[serde(default)]
    pub runs_created: u64,
}

type RunKey = (String, String, String);

#[derive(Debug)]
struct Sim {
    config: SimConfig,
    runs: Mutex<(HashMap<RunKey, RunRecord>, Vec<RunKey>)>,
    faults: Mutex<Vec<Fault>>,
    tokens: Mutex<HashMap<String, Instant>>,
    stats: Mutex<Stats>,
}

/// Locks a mutex even if a handler panicked while holding it: every critical section here
/// leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run_key(id: &RunId) -> RunKey {
    (id.project.clone(), id.domain.clone(), id.name.clone())
}

/// A started stand-in.
pub struct Simulator {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Binds the listener and prepares the server; nothing is served until
    /// [`Simulator::run_until_stopped`] is polled.
    pub fn build(config: SimConfig) -> anyhow::Result<Simulator> {
        for fault in &config.faults {
            fault.validate()?;
        }
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let workers = config.workers.max(1);
        let sim = web::Data::new(Sim {
            faults: Mutex::new(config.faults.clone()),
            config,
            runs: Mutex::default(),
            tokens: Mutex::default(),
            stats: Mutex::default(),
        });
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(sim.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/oauth2/token", web::post().to(issue_token))
                .route("/_sim/runs", web::get().to(list_runs))
                .route(
                    "/_sim/runs/{project}/{domain}/{name}",
                    web::get().to(show_run),
                )
                .route("/_sim/stats", web::get().to(show_stats))
                .route("/_sim/faults", web::get().to(show_faults))
                .route("/_sim/faults", web::put().to(set_faults))
                .route("/_sim/faults", web::delete().to(clear_faults))
                .route("/_sim/tokens/revoke", web::post().to(revoke_tokens))
                .route(
                    "/v2/domain/{domain}/project/{project}/runs/{name}",
                    web::get().to(console_page),
                )
                .route("/{service}/{method}", web::post().to(rpc))
        })
        .workers(workers)
        .listen(listener)?
        .run();
        Ok(Simulator { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn connect_error(code: Code, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(serde_json::json!({ "code": code.as_str(), "message": message.into() }))
}

/// Parses the (schema-valid) request into the client's types and hands it to `handler`.
fn serve<T: DeserializeOwned>(
    body: &[u8],
    handler: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    match serde_json::from_slice(body) {
        Ok(request) => handler(request),
        Err(e) => connect_error(
            Code::InvalidArgument,
            format!("flyte-sim cannot serve this request: {e}"),
        ),
    }
}

/// Every Connect RPC arrives here: protocol checks, the schema check, auth, faults, then the
/// method itself.
async fn rpc(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let (service, method) = path.into_inner();
    let rpc_path = format!("{service}/{method}");
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return HttpResponse::UnsupportedMediaType()
            .insert_header(("Accept-Post", "application/json"))
            .finish();
    }
    if let Some(version) = req.headers().get("connect-protocol-version")
        && version.as_bytes() != b"1"
    {
        return connect_error(
            Code::InvalidArgument,
            format!("connect-protocol-version must be '1': got {version:?}"),
        );
    }
    match Schema::official().check_request(&rpc_path, &body) {
        Ok(()) => {}
        // Like connect-go's mux: an unknown path is a plain 404.
        Err(SchemaError::UnknownRpc(_)) => {
            return HttpResponse::NotFound()
                .content_type("text/plain")
                .body("404 page not found");
        }
        Err(mismatch) => {
            let mut stats = lock(&sim.stats);
            stats.schema_rejections += 1;
            stats.last_schema_rejection = Some(format!("{rpc_path}: {mismatch}"));
            tracing::warn!(rpc = %rpc_path, %mismatch, "request rejected by the schema");
            return connect_error(Code::InvalidArgument, mismatch.to_string());
        }
    }
    let rpc = Rpc {
        path: known_path(&rpc_path),
    };
    let rpc_name = &rpc_path[service.rfind('.').map_or(0, |dot| dot + 1)..];
    *lock(&sim.stats)
        .calls
        .entry(rpc_name.to_string())
        .or_default() += 1;

    let is_auth_metadata = service == "flyteidl2.auth.AuthMetadataService";
    if !is_auth_metadata && !sim.authorized(&req) {
        lock(&sim.stats).unauthenticated += 1;
        return connect_error(Code::Unauthenticated, "missing or invalid credentials");
    }

    let verdict = faults::judge(&mut lock(&sim.faults), rpc_name);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    match verdict.failure {
        Some(Failure::Connect {
            code,
            retry_after_secs,
        }) => {
            let mut response = connect_error(code, format!("flyte-sim: injected {code}"));
            if let Some(secs) = retry_after_secs
                && let Ok(value) = secs.to_string().parse()
            {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            return response;
        }
        Some(Failure::Http(status)) => {
            return HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            )
            .content_type("text/html")
            .body("<html><body><h1>Bad Gateway</h1></body></html>");
        }
        None => {}
    }

    let response = match rpc {
        GET_TASK_DETAILS => serve(&body, |r| sim.get_task_details(r)),
        CREATE_RUN => serve(&body, |r| sim.create_run(r)),
        GET_RUN_DETAILS => serve(&body, |r| sim.get_run_details(r)),
        ABORT_RUN => serve(&body, |r| sim.abort_run(r)),
        GET_ACTION_DATA => serve(&body, |r| sim.get_action_data(r)),
        GET_OAUTH2_METADATA => oauth2_metadata(&req),
        GET_PUBLIC_CLIENT_CONFIG => HttpResponse::Ok().json(GetPublicClientConfigResponse {
            scopes: vec!["all".into()],
            authorization_metadata_key: "authorization".into(),
            audience: String::new(),
        }),
        _ => connect_error(
            Code::Unimplemented,
            format!("flyte-sim does not implement {rpc_name}"),
        ),
    };
    if !verdict.delay_after.is_zero() {
        tokio::time::sleep(verdict.delay_after).await;
    }
    response
}

/// Maps a request path to the client's `'static` RPC constant, if it is one we serve.
fn known_path(path: &str) -> &'static str {
    flyte_client::client::ALL_RPCS
        .iter()
        .find(|r| r.path == path)
        .map_or("", |r| r.path)
}

fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn oauth2_metadata(req: &HttpRequest) -> HttpResponse {
    let base = base_url(req);
    HttpResponse::Ok().json(GetOAuth2MetadataResponse {
        token_endpoint: format!("{base}/oauth2/token"),
        issuer: base,
    })
}

impl Sim {
    fn authorized(&self, req: &HttpRequest) -> bool {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (&self.config.auth, presented) {
            (SimAuth::None, _) => true,
            (_, None) => false,
            (SimAuth::Bearer(expected), Some(token)) => token == expected,
            (SimAuth::ClientCredentials { .. }, Some(token)) => lock(&self.tokens)
                .get(token)
                .is_some_and(|expires| Instant::now() < *expires),
        }
    }

    fn get_task_details(&self, request: GetTaskDetailsRequest) -> HttpResponse {
        match self.config.catalogue.get(&request.task_id) {
            Some(task) => HttpResponse::Ok().json(GetTaskDetailsResponse {
                details: TaskDetails {
                    task_id: request.task_id,
                    spec: task.spec.clone(),
                },
            }),
            None => connect_error(
                Code::NotFound,
                format!("task not found: {}", request.task_id),
            ),
        }
    }

    fn create_run(&self, request: CreateRunRequest) -> HttpResponse {
        let id = request.run_id;
        if let Err(e) = RunName::parse(&id.name) {
            return connect_error(Code::InvalidArgument, format!("invalid run name: {e}"));
        }
        if !self.config.catalogue.has_project(&id.project, &id.domain) {
            return connect_error(
                Code::NotFound,
                format!("project \"{}\" not found", id.project),
            );
        }
        let mut runs = lock(&self.runs);
        if let Some(existing) = runs.0.get_mut(&run_key(&id)) {
            existing.create_calls += 1;
            return match self.config.on_duplicate {
                OnDuplicate::AlreadyExists => {
                    connect_error(Code::AlreadyExists, format!("run {id} already exists"))
                }
                OnDuplicate::ReturnExisting => HttpResponse::Ok().json(created(existing)),
            };
        }
        // Open-source Flyte answers `unknown` (HTTP 500) here, not `not_found`.
        let Some(task) = self.config.catalogue.get(&request.task_id) else {
            return connect_error(
                Code::Unknown,
                format!("task not found: {}", request.task_id),
            );
        };
        let inputs = fill_defaults(&task.spec, request.inputs);
        let plain = flyte_client::outputs::literals_to_json(&inputs.literals);
        let rule = task.rule_for(&plain);
        let ending = match check_inputs(&task.spec, &inputs.literals) {
            Err(problem) => Ending::Failed {
                message: format!("flyte-sim: {problem}"),
                kind: ErrorKind::User,
            },
            Ok(()) => match task.outputs_for(&inputs.literals, &plain) {
                Err(problem) => Ending::Failed {
                    message: format!("flyte-sim: {problem}"),
                    kind: ErrorKind::System,
                },
                Ok(outputs) => Ending::from_outcome(
                    rule.map_or(Outcome::Succeeded, |r| r.outcome),
                    rule.map_or("", |r| r.message.as_str()),
                    outputs,
                ),
            },
        };
        let lifecycle = (
            task.queued_for.unwrap_or(self.config.queued_for),
            rule.and_then(|r| r.running_for)
                .or(task.running_for)
                .unwrap_or(self.config.running_for),
        );
        let labels = request
            .run_spec
            .and_then(|spec| spec.labels)
            .map(|labels| labels.values)
            .unwrap_or_default();
        let record = RunRecord::new(
            id.clone(),
            task.id.clone(),
            inputs,
            lifecycle,
            ending,
            labels,
        );
        let response = created(&record);
        runs.1.push(run_key(&id));
        runs.0.insert(run_key(&id), record);
        HttpResponse::Ok().json(response)
    }

    fn with_run(&self, id: &RunId, f: impl FnOnce(&mut RunRecord) -> HttpResponse) -> HttpResponse {
        match lock(&self.runs).0.get_mut(&run_key(id)) {
            Some(run) => f(run),
            None => connect_error(Code::NotFound, format!("run not found: {id}")),
        }
    }

    fn get_run_details(&self, request: GetRunDetailsRequest) -> HttpResponse {
        self.with_run(&request.run_id, |run| {
            HttpResponse::Ok().json(GetRunDetailsResponse {
                details: RunDetails {
                    action: run.details(),
                },
            })
        })
    }

    fn abort_run(&self, request: AbortRunRequest) -> HttpResponse {
        let reason = request
            .reason
            .unwrap_or_else(|| "User requested abort".into());
        self.with_run(&request.run_id, |run| {
            run.abort(reason);
            HttpResponse::Ok().json(AbortRunResponse {})
        })
    }

    fn get_action_data(&self, request: GetActionDataRequest) -> HttpResponse {
        if request.action_id.name != ROOT_ACTION {
            return connect_error(
                Code::NotFound,
                format!("action {} not found", request.action_id.name),
            );
        }
        self.with_run(&request.action_id.run, |run| {
            HttpResponse::Ok().json(GetActionDataResponse {
                inputs: run.inputs.clone(),
                outputs: Outputs {
                    literals: run.outputs(),
                },
                inputs_uri: String::new(),
                outputs_uri: String::new(),
            })
        })
    }
}

fn created(run: &RunRecord) -> CreateRunResponse {
    CreateRunResponse {
        run: Run {
            action: Action {
                id: run.id.root_action(),
                status: run.status(),
            },
        },
    }
}

/// Adds the defaults of inputs the request left out, in interface order, as Flyte's
/// `fillDefaultInputs` does.
fn fill_defaults(spec: &TaskSpec, given: Inputs) -> Inputs {
    let mut given: Vec<NamedLiteral> = given.literals;
    let mut literals = Vec::with_capacity(given.len());
    for variable in &spec.task_template.interface.inputs.variables {
        if let Some(pos) = given.iter().position(|l| l.name == variable.key) {
            literals.push(given.remove(pos));
        } else if let Some(default) = spec.default_for(&variable.key) {
            literals.push(NamedLiteral {
                name: variable.key.clone(),
                value: default.clone(),
            });
        }
    }
    literals.extend(given);
    Inputs { literals }
}

/// What the task itself would trip over at runtime: a missing or extra input, or a value of
/// the wrong type. Flyte's API accepts such runs and the task fails; so does the stand-in.
fn check_inputs(spec: &TaskSpec, literals: &[NamedLiteral]) -> Result<(), String> {
    let variables = &spec.task_template.interface.inputs.variables;
    for literal in literals {
        let Some(variable) = variables.iter().find(|v| v.key == literal.name) else {
            return Err(format!("unexpected input {}", literal.name));
        };
        if !fits(&variable.value.literal_type, &literal.value) {
            return Err(format!(
                "input {} is not a {}",
                literal.name,
                variable.value.literal_type.describe()
            ));
        }
    }
    match variables
        .iter()
        .find(|v| !literals.iter().any(|l| l.name == v.key))
    {
        Some(missing) => Err(format!("missing input {}", missing.key)),
        None => Ok(()),
    }
}

fn fits(t: &LiteralType, literal: &flyte_client::Literal) -> bool {
    let kind = literal.kind();
    if let Some(simple) = t.simple {
        return matches!(
            (simple, kind),
            (SimpleType::Integer, LiteralKind::Integer(_))
                | (
                    SimpleType::Float,
                    LiteralKind::Float(_) | LiteralKind::Integer(_)
                )
                | (SimpleType::String, LiteralKind::String(_))
                | (SimpleType::Boolean, LiteralKind::Boolean(_))
                | (SimpleType::Datetime, LiteralKind::Datetime(_))
                | (SimpleType::Duration, LiteralKind::Duration(_))
                | (
                    SimpleType::Struct,
                    LiteralKind::Generic(_) | LiteralKind::Binary(_)
                )
                | (SimpleType::None, LiteralKind::None)
        );
    }
    if let Some(item) = &t.collection_type {
        return matches!(kind, LiteralKind::Collection(items) if items.iter().all(|i| fits(item, i)));
    }
    if let Some(value) = &t.map_value_type {
        return matches!(kind, LiteralKind::Map(entries) if entries.values().all(|v| fits(value, v)));
    }
    if let Some(union) = &t.union_type {
        return matches!(kind, LiteralKind::Union(inner) if union.variants.iter().any(|v| fits(v, inner)));
    }
    if let Some(e) = &t.enum_type {
        return matches!(kind, LiteralKind::String(s) if e.values.iter().any(|v| v == s));
    }
    false
}

// --- OAuth2 token endpoint ---

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
}

async fn issue_token(
    req: HttpRequest,
    form: web::Form<TokenForm>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let SimAuth::ClientCredentials {
        client_id,
        client_secret,
        token_ttl,
    } = &sim.config.auth
    else {
        return HttpResponse::NotFound().finish();
    };
    if form.grant_type != "client_credentials" {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if presented.as_deref() != Some(&format!("{client_id}:{client_secret}")) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "invalid_client"}));
    }
    let token = format!("sim-{}", uuid::Uuid::new_v4().simple());
    lock(&sim.tokens).insert(token.clone(), Instant::now() + *token_ttl);
    lock(&sim.stats).tokens_issued += 1;
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": token_ttl.as_secs(),
    }))
}

// --- inspection ---

async fn list_runs(sim: web::Data<Sim>) -> HttpResponse {
    let runs = lock(&sim.runs);
    let views: Vec<RunView> = runs
        .1
        .iter()
        .filter_map(|k| runs.0.get(k))
        .map(RunRecord::view)
        .collect();
    HttpResponse::Ok().json(views)
}

async fn show_run(path: web::Path<RunKey>, sim: web::Data<Sim>) -> HttpResponse {
    match lock(&sim.runs).0.get(&path.into_inner()) {
        Some(run) => HttpResponse::Ok().json(run.view()),
        None => HttpResponse::NotFound().json(serde_json::json!({"error": "no such run"})),
    }
}

async fn show_stats(sim: web::Data<Sim>) -> HttpResponse {
    let mut stats = lock(&sim.stats).clone();
    stats.runs_created = lock(&sim.runs).0.len() as u64;
    HttpResponse::Ok().json(stats)
}

async fn show_faults(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.faults).clone())
}

async fn set_faults(faults: web::Json<Vec<Fault>>, sim: web::Data<Sim>) -> HttpResponse {
    if let Some(problem) = faults.iter().find_map(|f| f.validate().err()) {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": problem.to_string()}));
    }
    *lock(&sim.faults) = faults.into_inner();
    HttpResponse::NoContent().finish()
}

async fn clear_faults(sim: web::Data<Sim>) -> HttpResponse {
    lock(&sim.faults).clear();
    HttpResponse::NoContent().finish()
}

async fn revoke_tokens(sim: web::Data<Sim>) -> HttpResponse {
    lock(&sim.tokens).clear();
    HttpResponse::NoContent().finish()
}

/// A minimal stand-in for Flyte's console page, so run links work in development.
async fn console_page(
    path: web::Path<(String, String, String)>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let (domain, project, name) = path.into_inner();
    let runs = lock(&sim.runs);
    let Some(run) = runs.0.get(&(project, domain, name)) else {
        return HttpResponse::NotFound()
            .content_type("text/html")
            .body("<h1>No such run</h1>");
    };
    let view = run.view();
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><title>{name} · flyte-sim</title><h1>Run {name}</h1>\
         <p>Task <code>{task}</code> · phase <b>{phase:?}</b> · created {created}</p>\
         <h2>Inputs</h2><pre>{inputs}</pre><h2>Outputs</h2><pre>{outputs}</pre>",
            name = escape(&view.name),
            task = escape(&view.task),
            phase = view.phase,
            created = view.created_at,
            inputs = escape(&serde_json::to_string_pretty(&view.inputs).unwrap_or_default()),
            outputs = escape(
                &serde_json::to_string_pretty(&flyte_client::outputs::literals_to_json(
                    &run.outputs()
                ))
                .unwrap_or_default()
            ),
        ))
}
