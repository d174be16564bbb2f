//! The audit log: append-only, filterable, kept for its retention; a request id followed into
//! the Flyte run and the log; entries that wait for PostgreSQL, and those beyond the buffer
//! counted.

use flyhook_store::audit::{AuditEntry, AuditStore};
use flyhook_testkit::{TestEnv, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{WAIT, audit_entries, sample, scrape};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_audit_log_is_append_only_filterable_and_kept_only_for_its_retention(pool: PgPool) {
    let store = AuditStore::new(pool.clone());
    let entry = |request_id: &str, days_ago: i64, principal: &str| AuditEntry {
        id: 0,
        at: chrono::Utc::now() - chrono::Duration::days(days_ago),
        request_id: request_id.into(),
        principal: Some(principal.into()),
        method: "POST".into(),
        route: "/run-task/{project}/{domain}/{name}/{version}".into(),
        path: "/run-task/p/d/n/v".into(),
        status: 202,
        outcome: "accepted".into(),
        dispatch_ids: vec![format!("dispatch-{request_id}")],
        client_addr: None,
    };
    store
        .append(&[
            entry("old", 40, "a"),
            entry("new", 0, "a"),
            entry("other", 0, "b"),
        ])
        .await
        .unwrap();
    let by_dispatch = store
        .list(
            &flyhook_store::audit::AuditFilter {
                dispatch_id: Some("dispatch-new".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_dispatch.len(), 1);
    assert_eq!(by_dispatch[0].request_id, "new");

    let update = sqlx::query("UPDATE audit_log SET outcome = 'forged'")
        .execute(&pool)
        .await;
    assert!(update.is_err(), "the audit log must refuse updates");

    let deleted = store
        .purge_before(chrono::Utc::now() - chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let left = store.list(&Default::default(), 10).await.unwrap();
    let mut ids: Vec<&str> = left.iter().map(|e| e.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["new", "other"]);
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_request_id_follows_the_dispatch_into_the_flyte_run_and_the_audit_log(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    env.start_worker(&env.settings());
    let sender = ingress.sender();

    let response = sender
        .run_task("flytesnacks/development/hello.main/v1")
        .header("X-Request-Id", "deploy-4711.retry_2")
        .json(&json!({"name": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "deploy-4711.retry_2");
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    sender.wait_for_status(id, "running", WAIT).await;
    let runs = env.sim_runs().await;
    assert_eq!(
        runs[0]["labels"]["flyhook-request-id"],
        "deploy-4711.retry_2"
    );
    assert_eq!(runs[0]["labels"]["flyhook-dispatch"], id);

    // An id that could not be a label value is replaced, and the answer says by what.
    let response = sender
        .run_task("flytesnacks/development/hello.main/v1")
        .header("X-Request-Id", "has spaces/and slashes")
        .json(&json!({"name": "bob"}))
        .send()
        .await
        .unwrap();
    let replaced = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(replaced, "has spaces/and slashes");
    let second: Value = response.json().await.unwrap();

    let entries = eventually(WAIT, "both requests audited", || async {
        let entries = audit_entries(&env, &ingress.base, "").await;
        (entries.len() >= 2).then_some(entries)
    })
    .await;
    let by_request: Vec<(&Value, &Value)> = entries
        .iter()
        .map(|e| (&e["request_id"], &e["dispatch_ids"][0]))
        .collect();
    assert!(by_request.contains(&(&json!("deploy-4711.retry_2"), &json!(id))));
    assert!(by_request.contains(&(&json!(replaced), &second["id"])));

    sender.finish_by_cancelling(id).await;
    sender
        .finish_by_cancelling(second["id"].as_str().unwrap())
        .await;
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn audit_entries_wait_for_postgres_and_any_beyond_the_buffer_are_counted(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let mut settings = env.settings_with_file("[audit]\nbuffer = 2\n");
    let database = env.database_behind_proxy(&mut settings).await;
    database.go_down();
    let ingress = env.start_ingress(settings).await;
    let sender = ingress.sender();

    // Intake does not need PostgreSQL: every request is accepted while it is away.
    for n in 0..6 {
        let (status, body) = sender.send_hello(json!({"name": n.to_string()})).await;
        assert_eq!(status, 202, "{body}");
    }
    let figures = scrape(&env.http, &format!("{}/metrics", ingress.base)).await;
    let dropped = sample(&figures, "flyhook_audit_entries_dropped_total", &[]).unwrap();
    assert!(dropped >= 1.0, "6 entries cannot fit a buffer of 2");

    database.come_back();
    // Whatever was not dropped is written once PostgreSQL is back; nothing vanishes uncounted.
    let written = eventually(WAIT, "the buffered entries written", || async {
        let figures = scrape(&env.http, &format!("{}/metrics", ingress.base)).await;
        let written = sample(&figures, "flyhook_audit_entries_written_total", &[]).unwrap();
        (written + dropped == 6.0).then_some(written)
    })
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as f64, written);

    env.finish().await;
}
