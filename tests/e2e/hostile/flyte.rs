//! Runs Flyte will not confirm: a run cancelled while it starts is aborted once Flyte answers,
//! and a run Flyte cannot report ends `failed` after a bound.

use flyhook_testkit::{TestEnv, eventually};
use serde_json::json;
use sqlx::PgPool;

use super::WAIT;

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_run_cancelled_while_starting_is_aborted_once_flyte_confirms(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    // The start is slow (time to cancel meanwhile), and the first two aborts fail.
    env.set_sim_faults(json!([
        {"rpc": "RunService/CreateRun", "rate": 1.0, "latency_after_ms": 3000},
        {"rpc": "RunService/AbortRun", "code": "unavailable", "rate": 1.0, "count": 2}
    ]))
    .await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let (_, accepted) = sender.send_hello(json!({"name": "slow"})).await;
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "starting", WAIT).await;
    let (status, body) = sender.cancel(id).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("aborted")),
        "{body}"
    );
    eventually(WAIT, "the run that started anyway is aborted", || async {
        let runs = env.sim_runs().await;
        (runs.len() == 1 && runs[0]["phase"] == "ACTION_PHASE_ABORTED").then_some(())
    })
    .await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_run_flyte_cannot_report_ends_failed_after_a_bound(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    env.set_sim_faults(
        json!([{"rpc": "RunService/GetRunDetails", "code": "not_found", "rate": 1.0}]),
    )
    .await;
    let sender = env.start_ingress(env.settings()).await.sender();
    env.start_worker(&env.fast_tracking());
    let (_, accepted) = sender.send_hello(json!({"name": "lost"})).await;
    let id = accepted["id"].as_str().unwrap();
    let record = sender.wait_for_status(id, "failed", WAIT).await;
    assert!(
        record["error"]
            .as_str()
            .unwrap_or("")
            .contains("could not report the run"),
        "{record}"
    );
    env.finish().await;
}
