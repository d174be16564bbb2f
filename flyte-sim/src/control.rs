//! The stand-in's own endpoints, outside Flyte's API: `/_sim/*` lets tests and benchmarks see
//! the runs and counters and break or mend Flyte at run time, and a bare console page makes
//! the run links flyhook prints work in development.

use actix_web::{HttpResponse, web};

use crate::faults::Fault;
use crate::runs::RunKey;
use crate::state::{Sim, lock};

/// `GET /_sim/runs`: every run, oldest first.
pub(crate) async fn list_runs(sim: web::Data<Sim>) -> HttpResponse {
    let views: Vec<_> = lock(&sim.runs).in_order().map(|run| run.view()).collect();
    HttpResponse::Ok().json(views)
}

/// `GET /_sim/runs/{project}/{domain}/{name}`.
pub(crate) async fn show_run(path: web::Path<RunKey>, sim: web::Data<Sim>) -> HttpResponse {
    match lock(&sim.runs).get(&path.into_inner()) {
        Some(run) => HttpResponse::Ok().json(run.view()),
        None => HttpResponse::NotFound().json(serde_json::json!({"error": "no such run"})),
    }
}

/// `GET /_sim/stats`.
pub(crate) async fn show_stats(sim: web::Data<Sim>) -> HttpResponse {
    let mut stats = lock(&sim.stats).clone();
    stats.runs_created = lock(&sim.runs).len() as u64;
    HttpResponse::Ok().json(stats)
}

/// `GET /_sim/faults`: the rules in force, counted ones with what is left of their count.
pub(crate) async fn show_faults(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&sim.faults).clone())
}

/// `PUT /_sim/faults`: replaces every rule, or none if one is invalid.
pub(crate) async fn set_faults(faults: web::Json<Vec<Fault>>, sim: web::Data<Sim>) -> HttpResponse {
    if let Some(problem) = faults.iter().find_map(|f| f.validate().err()) {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": problem.to_string()}));
    }
    *lock(&sim.faults) = faults.into_inner();
    HttpResponse::NoContent().finish()
}

/// `DELETE /_sim/faults`.
pub(crate) async fn clear_faults(sim: web::Data<Sim>) -> HttpResponse {
    lock(&sim.faults).clear();
    HttpResponse::NoContent().finish()
}

/// Callbacks `/_sim/inbox` keeps.
const INBOX: usize = 100;

/// `POST /_sim/inbox`: a completion callbacks' receiver for development (`flyhook dev` sends
/// its callbacks here): keeps the Standard Webhooks headers and the body, answers 204.
pub(crate) async fn receive_callback(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("webhook-"))
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_string(), value.into())
        })
        .collect();
    let body: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
    let mut inbox = lock(&sim.inbox);
    if inbox.len() == INBOX {
        inbox.pop_front();
    }
    inbox.push_back(serde_json::json!({
        "received_at": chrono::Utc::now(),
        "headers": headers,
        "body": body,
    }));
    HttpResponse::NoContent().finish()
}

/// `GET /_sim/inbox`: the callbacks received, newest first.
pub(crate) async fn show_inbox(sim: web::Data<Sim>) -> HttpResponse {
    let inbox: Vec<_> = lock(&sim.inbox).iter().rev().cloned().collect();
    HttpResponse::Ok().json(inbox)
}

/// `POST /_sim/tokens/revoke`: forgets every issued token, so tests can see a client refresh a
/// token the server no longer accepts.
pub(crate) async fn revoke_tokens(sim: web::Data<Sim>) -> HttpResponse {
    lock(&sim.tokens).clear();
    HttpResponse::NoContent().finish()
}

/// A minimal stand-in for Flyte's console page at Flyte's console path.
pub(crate) async fn console_page(
    path: web::Path<(String, String, String)>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let (domain, project, name) = path.into_inner();
    let runs = lock(&sim.runs);
    let Some(run) = runs.get(&(project, domain, name)) else {
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
