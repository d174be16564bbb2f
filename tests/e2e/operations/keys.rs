//! Managed keys: in force at once, held to their scopes and rates, revoked for good, and a
//! restricted key seeing only the dispatches within its scopes.

use std::collections::BTreeSet;

use flyhook_contract::keys::RateLimit;
use flyhook_contract::scopes::Scopes;
use flyhook_store::keys::KeyStore;
use flyhook_testkit::{API_KEY, TestEnv, eventually};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{SLOW_REFRESH, WAIT, audit_entries, get_json};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn managed_keys_work_at_once_are_held_to_their_scopes_and_rates_and_revocation_sticks(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file(SLOW_REFRESH))
        .await;
    let keys = KeyStore::new(pool.clone());
    let scopes = Scopes::parse_all(&["flytesnacks/development"]).unwrap();
    let (key, _) = keys
        .create(
            "ci",
            &scopes,
            Some(RateLimit {
                per_second: 1,
                burst: 5,
            }),
        )
        .await
        .unwrap();
    let key = key.expose_secret().to_string();
    assert!(key.starts_with("fhk_"));
    let post = |task: &str, key: &str| {
        env.http
            .post(format!("{}/run-task/{task}", ingress.base))
            .bearer_auth(key)
            .json(&json!({"name": "ann"}))
            .send()
    };

    let first = eventually(WAIT, "the new key accepted", || async {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        (response.status() == 202).then_some(response)
    })
    .await;
    let accepted: Value = first.json().await.unwrap();

    let outside = post("flytesnacks/production/hello.main/v1", &key)
        .await
        .unwrap();
    assert_eq!(outside.status(), 403);
    let problem: Value = outside.json().await.unwrap();
    assert_eq!(problem["code"], "out_of_scope");
    // The configured key has every scope: the same task is fine for it.
    assert_eq!(
        post("flytesnacks/production/hello.main/v1", API_KEY)
            .await
            .unwrap()
            .status(),
        202
    );
    // A restricted key may not read the audit log.
    let (status, _) = get_json(&env.http, &format!("{}/audit", ingress.base), &key).await;
    assert_eq!(status, 403);

    // Its own rate, 1/s with a burst of 5, not the default 1000/s: a quick run of requests
    // is refused before long.
    let mut refused = false;
    for _ in 0..20 {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        if response.status() == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the key's own rate limit was not applied");

    keys.revoke("ci").await.unwrap();
    eventually(WAIT, "the revoked key refused", || async {
        let response = post("flytesnacks/development/hello.main/v1", &key)
            .await
            .unwrap();
        (response.status() == 401).then_some(())
    })
    .await;

    // Every one of those calls is in the audit log, under the key's name.
    let entries = eventually(WAIT, "the key's calls audited", || async {
        let entries = audit_entries(&env, &ingress.base, "principal=ci").await;
        let outcomes: BTreeSet<String> = entries
            .iter()
            .map(|e| e["outcome"].as_str().unwrap().to_string())
            .collect();
        let wanted = ["accepted", "out_of_scope", "rate_limited", "forbidden"];
        wanted
            .iter()
            .all(|o| outcomes.contains(*o))
            .then_some(entries)
    })
    .await;
    let accepted_entry = entries
        .iter()
        .find(|e| e["dispatch_ids"] == json!([accepted["id"]]))
        .expect("the first accepted request audited with its dispatch");
    assert_eq!(accepted_entry["outcome"], "accepted");
    assert_eq!(
        accepted_entry["route"],
        "/run-task/{project}/{domain}/{name}/{version}"
    );
    assert_eq!(accepted_entry["client_addr"], "127.0.0.1");
    // After revocation the key names nobody: the refusal is recorded without a principal.
    let refused = eventually(WAIT, "the refusal audited", || async {
        let entries = audit_entries(&env, &ingress.base, "outcome=invalid_api_key").await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(refused[0]["principal"], Value::Null);
    assert_eq!(refused[0]["status"], 401);

    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_restricted_key_lists_and_reads_only_dispatches_within_its_scopes(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env
        .start_ingress(env.settings_with_file(SLOW_REFRESH))
        .await;
    env.start_worker(&env.settings());
    let sender = ingress.sender();
    let keys = KeyStore::new(pool.clone());
    let (key, _) = keys
        .create(
            "reader",
            &Scopes::parse_all(&["flytesnacks/development/hello.main"]).unwrap(),
            None,
        )
        .await
        .unwrap();
    let key = key.expose_secret().to_string();

    let (_, inside) = sender.send_hello(json!({"name": "in"})).await;
    let outside: Value = sender
        .run_task("flytesnacks/development/deploy.main/v1")
        .json(&json!({"commit": "abc"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for id in [&inside["id"], &outside["id"]] {
        sender
            .wait_for_status(id.as_str().unwrap(), "running", WAIT)
            .await;
    }
    let dispatch = |id: &Value| format!("{}/dispatches/{}", ingress.base, id.as_str().unwrap());
    let (status, _) = eventually(WAIT, "the key in force", || async {
        let answer = get_json(&env.http, &dispatch(&inside["id"]), &key).await;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        get_json(&env.http, &dispatch(&outside["id"]), &key).await.0,
        403
    );
    let (status, page) = get_json(&env.http, &format!("{}/dispatches", ingress.base), &key).await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, vec![&inside["id"]]);
    let (_, everything) =
        get_json(&env.http, &format!("{}/dispatches", ingress.base), API_KEY).await;
    assert_eq!(everything["items"].as_array().unwrap().len(), 2);

    for id in [&inside["id"], &outside["id"]] {
        sender.finish_by_cancelling(id.as_str().unwrap()).await;
    }
    env.finish().await;
}
