//! What each Flyte RPC does once the dispatcher has let the call through: TaskService reads
//! the catalogue, RunService creates and steers runs, DataProxyService hands out their data.

use actix_web::HttpResponse;
use flyte_client::messages::*;
use flyte_client::{Code, RunName};

use crate::catalogue::Outcome;
use crate::config::OnDuplicate;
use crate::connect;
use crate::inputs::{check_inputs, fill_defaults};
use crate::runs::{Ending, RunRecord};
use crate::state::{Sim, lock};

pub(crate) fn get_task_details(sim: &Sim, request: GetTaskDetailsRequest) -> HttpResponse {
    match sim.config.catalogue.get(&request.task_id) {
        Some(task) => HttpResponse::Ok().json(GetTaskDetailsResponse {
            details: TaskDetails {
                task_id: request.task_id,
                spec: task.spec.clone(),
            },
        }),
        None => connect::error(
            Code::NotFound,
            format!("task not found: {}", request.task_id),
        ),
    }
}

pub(crate) fn create_run(sim: &Sim, request: CreateRunRequest) -> HttpResponse {
    let id = request.run_id;
    if let Err(e) = RunName::parse(&id.name) {
        return connect::error(Code::InvalidArgument, format!("invalid run name: {e}"));
    }
    if !sim.config.catalogue.has_project(&id.project, &id.domain) {
        return connect::error(
            Code::NotFound,
            format!("project \"{}\" not found", id.project),
        );
    }
    let mut runs = lock(&sim.runs);
    if let Some(existing) = runs.get_mut(&id) {
        existing.create_calls += 1;
        return match sim.config.on_duplicate {
            OnDuplicate::AlreadyExists => {
                connect::error(Code::AlreadyExists, format!("run {id} already exists"))
            }
            OnDuplicate::ReturnExisting => HttpResponse::Ok().json(created(existing)),
        };
    }
    // Open-source Flyte answers `unknown` (HTTP 500) here, not `not_found`.
    let Some(task) = sim.config.catalogue.get(&request.task_id) else {
        return connect::error(
            Code::Unknown,
            format!("task not found: {}", request.task_id),
        );
    };
    let inputs = fill_defaults(&task.spec, request.inputs);
    let plain = flyte_client::outputs::literals_to_json(&inputs.literals);
    let rule = task.rule_for(&plain);
    // Inputs the task cannot take are the caller's mistake; outputs the catalogue cannot build
    // are the stand-in's own.
    let outputs = check_inputs(&task.spec, &inputs.literals)
        .map_err(|problem| (problem, ErrorKind::User))
        .and_then(|()| {
            task.outputs_for(&inputs.literals, &plain)
                .map_err(|problem| (problem, ErrorKind::System))
        });
    let ending = match outputs {
        Err((problem, kind)) => Ending::Failed {
            message: format!("flyte-sim: {problem}"),
            kind,
        },
        Ok(outputs) => Ending::from_outcome(
            rule.map_or(Outcome::Succeeded, |r| r.outcome),
            rule.map_or("", |r| r.message.as_str()),
            outputs,
        ),
    };
    let lifecycle = (
        task.queued_for.unwrap_or(sim.config.queued_for),
        rule.and_then(|r| r.running_for)
            .or(task.running_for)
            .unwrap_or(sim.config.running_for),
    );
    let labels = request
        .run_spec
        .and_then(|spec| spec.labels)
        .map(|labels| labels.values)
        .unwrap_or_default();
    let record = RunRecord::new(id, task.id.clone(), inputs, lifecycle, ending, labels);
    let response = created(&record);
    runs.insert(record);
    HttpResponse::Ok().json(response)
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

/// Answers with `f` applied to the run, or `not_found` as Flyte does for an unknown run.
fn with_run(sim: &Sim, id: &RunId, f: impl FnOnce(&mut RunRecord) -> HttpResponse) -> HttpResponse {
    match lock(&sim.runs).get_mut(id) {
        Some(run) => f(run),
        None => connect::error(Code::NotFound, format!("run not found: {id}")),
    }
}

pub(crate) fn get_run_details(sim: &Sim, request: GetRunDetailsRequest) -> HttpResponse {
    with_run(sim, &request.run_id, |run| {
        HttpResponse::Ok().json(GetRunDetailsResponse {
            details: RunDetails {
                action: run.details(),
            },
        })
    })
}

pub(crate) fn abort_run(sim: &Sim, request: AbortRunRequest) -> HttpResponse {
    let reason = request
        .reason
        .unwrap_or_else(|| "User requested abort".into());
    with_run(sim, &request.run_id, |run| {
        run.abort(reason);
        HttpResponse::Ok().json(AbortRunResponse {})
    })
}

pub(crate) fn get_action_data(sim: &Sim, request: GetActionDataRequest) -> HttpResponse {
    // Runs here are a single task: the root action is the only one there is.
    if request.action_id.name != ROOT_ACTION {
        return connect::error(
            Code::NotFound,
            format!("action {} not found", request.action_id.name),
        );
    }
    with_run(sim, &request.action_id.run, |run| {
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
