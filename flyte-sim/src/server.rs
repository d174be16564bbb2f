//! The HTTP face of the stand-in: [`Simulator`] builds the actix app and its route table, and
//! [`rpc`] takes every Connect call through the checks a call must pass before a Flyte
//! service answers it.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use flyte_client::Code;
use flyte_client::client::{
    ABORT_RUN, CREATE_RUN, GET_ACTION_DATA, GET_OAUTH2_METADATA, GET_PUBLIC_CLIENT_CONFIG,
    GET_RUN_DETAILS, GET_TASK_DETAILS, Rpc,
};

use crate::config::SimConfig;
use crate::connect::{self, serve};
use crate::faults::{self, Failure};
use crate::schema::{Schema, SchemaError};
use crate::state::{Sim, lock};
use crate::{control, oauth, services};

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
        let sim = web::Data::new(Sim::new(config));
        // Routes match in the order given: the fixed paths must come before `/{service}/{method}`.
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(sim.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/oauth2/token", web::post().to(oauth::issue_token))
                .route("/_sim/runs", web::get().to(control::list_runs))
                .route(
                    "/_sim/runs/{project}/{domain}/{name}",
                    web::get().to(control::show_run),
                )
                .route("/_sim/stats", web::get().to(control::show_stats))
                .route("/_sim/faults", web::get().to(control::show_faults))
                .route("/_sim/faults", web::put().to(control::set_faults))
                .route("/_sim/faults", web::delete().to(control::clear_faults))
                .route("/_sim/inbox", web::post().to(control::receive_callback))
                .route("/_sim/inbox", web::get().to(control::show_inbox))
                .route(
                    "/_sim/tokens/revoke",
                    web::post().to(control::revoke_tokens),
                )
                .route(
                    "/v2/domain/{domain}/project/{project}/runs/{name}",
                    web::get().to(control::console_page),
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
    if let Some(refusal) = connect::refusal(&req) {
        return refusal;
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
            return connect::error(Code::InvalidArgument, mismatch.to_string());
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

    // Clients ask AuthMetadataService how to get credentials, so it must answer without them.
    let is_auth_metadata = service == "flyteidl2.auth.AuthMetadataService";
    if !is_auth_metadata && !oauth::authorized(&sim, &req) {
        lock(&sim.stats).unauthenticated += 1;
        return connect::error(Code::Unauthenticated, "missing or invalid credentials");
    }

    let verdict = faults::judge(&mut lock(&sim.faults), rpc_name);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    if let Some(failure) = verdict.failure {
        return injected(failure);
    }

    let response = match rpc {
        GET_TASK_DETAILS => serve(&body, |r| services::get_task_details(&sim, r)),
        CREATE_RUN => serve(&body, |r| services::create_run(&sim, r)),
        GET_RUN_DETAILS => serve(&body, |r| services::get_run_details(&sim, r)),
        ABORT_RUN => serve(&body, |r| services::abort_run(&sim, r)),
        GET_ACTION_DATA => serve(&body, |r| services::get_action_data(&sim, r)),
        GET_OAUTH2_METADATA => oauth::oauth2_metadata(&req),
        GET_PUBLIC_CLIENT_CONFIG => oauth::public_client_config(),
        _ => connect::error(
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

/// The answer to a call a fault rule failed: a Connect error, or a broken proxy's HTML page.
fn injected(failure: Failure) -> HttpResponse {
    match failure {
        Failure::Connect {
            code,
            retry_after_secs,
        } => {
            let mut response = connect::error(code, format!("flyte-sim: injected {code}"));
            if let Some(secs) = retry_after_secs
                && let Ok(value) = secs.to_string().parse()
            {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
        Failure::Http(status) => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .content_type("text/html")
                .body("<html><body><h1>Bad Gateway</h1></body></html>")
        }
    }
}
