//! Each provider's delivery starts its routed tasks with the mapped inputs; deliveries no route
//! wants are recorded `ignored`; handshakes are answered without starting anything.

use flyhook_testkit::client::dispatch_ids;
use serde_json::{Value, json};
use sqlx::PgPool;
use webhook_signatures::{Scheme, Verified};

use super::{Delivery, WAIT, inputs_of_run, serve};

/// Source, body, content type, extra headers, and per dispatch: its route and the inputs the run
/// must get.
type ProviderCase<'a> = (
    &'a str,
    Vec<u8>,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<(&'a str, Value)>,
);

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn every_provider_scheme_starts_its_routed_task_with_the_mapped_inputs(pool: PgPool) {
    let (env, settings, sender) = serve(&pool).await;
    env.start_worker(&settings);

    let push = json!({"ref": "refs/heads/main", "after": "59b20b8d", "repository": {"full_name": "octo/app"}, "pusher": {"name": "octocat"}});
    let stripe = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"customer": "cus_9", "amount": 1200}}});
    let slack_form = b"command=%2Fdeploy&text=abc123&channel_name=ops&user_name=ann";
    let standard = json!({"type": "user.created", "data": {"name": "sven"}});
    let gitlab =
        json!({"checkout_sha": "da1560886d", "project": {"path_with_namespace": "group/app"}});
    let shopify = json!({"id": 820982911946154508_i64, "customer": {"first_name": "Bob"}});
    let partner = json!({"who": "partner-job"});
    let linear = json!({"action": "create", "type": "Issue", "createdAt": "2026-12-05T10:00:00.000Z", "data": {"id": "9cfb482a", "identifier": "ENG-42"}, "webhookId": "wh-e2e"});
    let clickup = json!({"event": "taskStatusUpdated", "task_id": "1vj37mc", "webhook_id": "w-e2e", "history_items": [{"id": "2800763136", "field": "status"}]});
    let jira = json!({"webhookEvent": "jira:issue_updated", "timestamp": 1796115176000_i64, "issue": {"key": "OPS-7"}, "changelog": {"items": [{"field": "status", "toString": "Done"}]}});

    let cases: Vec<ProviderCase> = vec![
        (
            "github",
            push.to_string().into_bytes(),
            "application/json",
            vec![("X-GitHub-Event", "push")],
            vec![
                (
                    "deploy",
                    json!({"commit": "59b20b8d", "repository": "octo/app", "ref": ""}),
                ),
                ("greet-pusher", json!({"name": "octocat", "count": 1})),
            ],
        ),
        (
            "stripe",
            stripe.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("paid", json!({"name": "cus_9", "count": 1200}))],
        ),
        (
            "slack",
            slack_form.to_vec(),
            "application/x-www-form-urlencoded",
            vec![],
            vec![(
                "slash-deploy",
                json!({"commit": "abc123", "ref": "ops", "repository": ""}),
            )],
        ),
        (
            "svix",
            standard.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("any", json!({"name": "sven", "count": 1}))],
        ),
        (
            "gitlab",
            gitlab.to_string().into_bytes(),
            "application/json",
            vec![("X-Gitlab-Event", "Push Hook")],
            vec![(
                "push",
                json!({"commit": "da1560886d", "repository": "group/app", "ref": ""}),
            )],
        ),
        (
            "shopify",
            shopify.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("order", json!({"name": "Bob", "count": 1}))],
        ),
        (
            "partner",
            partner.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("job", json!({"name": "partner-job", "count": 3}))],
        ),
        (
            "linear",
            linear.to_string().into_bytes(),
            "application/json",
            vec![("Linear-Event", "Issue")],
            vec![("triage", json!({"name": "ENG-42", "count": 1}))],
        ),
        (
            "clickup",
            clickup.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![("status", json!({"name": "1vj37mc", "count": 1}))],
        ),
        (
            "jira",
            jira.to_string().into_bytes(),
            "application/json",
            vec![],
            vec![(
                "transitioned",
                json!({"commit": "OPS-7", "ref": "Done", "repository": ""}),
            )],
        ),
    ];
    for (source, body, content_type, extra, expected) in cases {
        let path = format!("/hooks/{source}");
        let id = format!("{source}-delivery-1");
        let (status, answer) = Delivery {
            source,
            path: &path,
            body: &body,
            content_type,
            id: &id,
            headers: &extra,
        }
        .send(&sender, &settings)
        .await;
        assert_eq!(status, 202, "{source}: {answer}");
        let dispatches = answer["dispatches"].as_array().unwrap();
        assert_eq!(dispatches.len(), expected.len(), "{source}: {answer}");
        for (dispatch, (route, inputs)) in dispatches.iter().zip(expected) {
            assert_eq!(dispatch["route"], route, "{source}");
            let id = dispatch["id"].as_str().unwrap();
            sender.wait_for_status(id, "succeeded", WAIT).await;
            let reached = inputs_of_run(&env, dispatch["run_name"].as_str().unwrap()).await;
            assert_eq!(
                reached, inputs,
                "{source}/{route}: the inputs that reached the run"
            );
        }
    }
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn deliveries_no_route_wants_are_recorded_ignored(pool: PgPool) {
    let (env, settings, sender) = serve(&pool).await;
    env.start_worker(&settings);
    let issue = json!({"action": "opened"}).to_string();
    let (status, answer) = Delivery::json(
        "github",
        "/hooks/github",
        &issue,
        "gh-7",
        &[("X-GitHub-Event", "issues")],
    )
    .send(&sender, &settings)
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    let recorded = sender
        .wait_for_status(answer["id"].as_str().unwrap(), "ignored", WAIT)
        .await;
    // Recorded under the key its dispatch id derives from: for GitHub, a digest of the body.
    let key = Scheme::GitHub.dedup_key(&Verified::default(), issue.as_bytes());
    assert!(
        recorded["error"].as_str().unwrap().contains(&key),
        "{recorded}"
    );
    // A push to another branch matches only the route without a branch rule.
    let push =
        json!({"ref": "refs/heads/dev", "after": "abc", "pusher": {"name": "o"}}).to_string();
    let (_, answer) = Delivery::json(
        "github",
        "/hooks/github",
        &push,
        "gh-8",
        &[("X-GitHub-Event", "push")],
    )
    .send(&sender, &settings)
    .await;
    let routes: Vec<&str> = answer["dispatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["greet-pusher"]);
    assert!(
        env.sim_runs()
            .await
            .iter()
            .all(|r| r["task"] != "flytesnacks/development/deploy.main:v1")
    );
    // The ignored delivery and the routed one, found by their source once both are recorded.
    for id in dispatch_ids(&answer) {
        sender.wait_for_status(&id, "succeeded", WAIT).await;
    }
    let (_, listed) = sender.get("/dispatches?source=github").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn provider_handshakes_are_answered_without_starting_anything(pool: PgPool) {
    let (env, settings, sender) = serve(&pool).await;
    let challenge = json!({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}).to_string();
    let (status, answer) = Delivery::json("slack", "/hooks/slack", &challenge, "", &[])
        .send(&sender, &settings)
        .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        )
    );
    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string();
    let (status, answer) = Delivery::json(
        "github",
        "/hooks/github",
        &ping,
        "p-1",
        &[("X-GitHub-Event", "ping")],
    )
    .send(&sender, &settings)
    .await;
    assert_eq!((status, answer), (200, json!({"status": "pong"})));
    assert_eq!(env.ready_messages().await, 0);
    env.finish().await;
}
