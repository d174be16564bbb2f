//! A provider's retry, a retry signed anew, and a captured body replayed under a fresh delivery
//! id are the same dispatches, and start no second run.

use flyhook_testkit::client::dispatch_ids;
use serde_json::json;
use sqlx::PgPool;

use super::{Delivery, WAIT, serve};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_redelivered_or_replayed_webhook_is_the_same_dispatches_and_starts_nothing_new(
    pool: PgPool,
) {
    let (env, settings, sender) = serve(&pool).await;
    let worker = env.start_worker(&settings);
    let push =
        json!({"ref": "refs/heads/main", "after": "abc", "pusher": {"name": "o"}}).to_string();
    let delivery = Delivery::json(
        "github",
        "/hooks/github",
        &push,
        "gh-42",
        &[("X-GitHub-Event", "push")],
    );
    let send = || delivery.send(&sender, &settings);
    let (_, first) = send().await;
    for id in dispatch_ids(&first) {
        sender.wait_for_status(&id, "succeeded", WAIT).await;
    }
    let (status, again) = send().await;
    assert_eq!(status, 202);
    assert_eq!(
        dispatch_ids(&again),
        dispatch_ids(&first),
        "the provider's retry is the same dispatches"
    );
    // A captured delivery sent again under a fresh X-GitHub-Delivery (which GitHub does not sign).
    let (status, replayed) = Delivery {
        id: "gh-forged-43",
        ..delivery
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        replayed["delivery_id"], "gh-forged-43",
        "the header is echoed"
    );
    assert_eq!(
        dispatch_ids(&replayed),
        dispatch_ids(&first),
        "a replay is the same dispatches"
    );
    // The seed's endpoint is the same source: still the same dispatches.
    let (_, via_alias) = Delivery {
        path: "/github-webhook",
        ..delivery
    }
    .send(&sender, &settings)
    .await;
    assert_eq!(dispatch_ids(&via_alias), dispatch_ids(&first));
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), 2, "one run per route, not per delivery");
    assert!(runs.iter().all(|r| r["create_calls"] == 1), "{runs:?}");
    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn retries_signed_anew_and_bodies_replayed_under_fresh_ids_start_one_run(pool: PgPool) {
    let (env, settings, sender) = serve(&pool).await;
    let worker = env.start_worker(&settings);
    let now = chrono::Utc::now().timestamp();
    let mention = json!({"type": "event_callback", "event_id": "Ev0PV52K25", "event": {"type": "app_mention", "user": "U061F7AUR"}}).to_string();
    let order =
        json!({"id": 820982911946154508_i64, "customer": {"first_name": "Bob"}}).to_string();
    let push = json!({"checkout_sha": "da1560886d", "project": {"path_with_namespace": "g/app"}})
        .to_string();
    let job = json!({"who": "partner-job"}).to_string();
    let issue = json!({"action": "create", "type": "Issue", "createdAt": "2026-12-05T10:00:00.000Z", "data": {"id": "9cfb482a", "identifier": "ENG-43"}, "webhookId": "wh-e2e"}).to_string();
    let change = json!({"event": "taskStatusUpdated", "task_id": "1vj37mc", "webhook_id": "w-e2e", "history_items": [{"id": "2800763137"}]}).to_string();
    let transition = json!({"webhookEvent": "jira:issue_updated", "timestamp": 1796115176000_i64, "issue": {"key": "OPS-8"}, "changelog": {"items": [{"field": "status", "toString": "Done"}]}}).to_string();
    // Per source: the body, the first delivery (id, signed at, headers) and its retry or replay.
    type Attempt<'a> = (&'a str, i64, Vec<(&'a str, &'a str)>);
    let cases: Vec<(&str, &str, Attempt, Attempt)> = vec![
        // Slack signs its retry anew: a new timestamp, a new signature, the same event.
        (
            "slack",
            &mention,
            ("", now - 60, vec![]),
            (
                "",
                now,
                vec![
                    ("X-Slack-Retry-Num", "1"),
                    ("X-Slack-Retry-Reason", "http_timeout"),
                ],
            ),
        ),
        // Linear stamps and signs each retry anew, under a new (unsigned) Linear-Delivery.
        (
            "linear",
            &issue,
            ("lin-delivery-1", now - 30, vec![]),
            ("lin-delivery-2", now, vec![]),
        ),
        // ClickUp resends the same change (it sends no delivery id).
        ("clickup", &change, ("", now, vec![]), ("", now, vec![])),
        // The rest: a captured body sent again under a fresh id their signature does not cover.
        (
            "jira",
            &transition,
            ("jira-delivery-1", now, vec![]),
            ("jira-forged", now, vec![]),
        ),
        (
            "shopify",
            &order,
            ("b25c3c5c-1", now, vec![]),
            ("forged-2", now, vec![]),
        ),
        (
            "gitlab",
            &push,
            ("uuid-1", now, vec![("X-Gitlab-Event", "Push Hook")]),
            ("uuid-forged", now, vec![("X-Gitlab-Event", "Push Hook")]),
        ),
        (
            "partner",
            &job,
            ("p-1", now - 10, vec![]),
            ("p-forged", now, vec![]),
        ),
    ];
    for (source, body, first, again) in &cases {
        let path = format!("/hooks/{source}");
        let mut answers = Vec::new();
        for (id, at, headers) in [first, again] {
            let (status, answer) = Delivery::json(source, &path, body, id, headers)
                .send_signed_at(&sender, &settings, *at)
                .await;
            assert_eq!(status, 202, "{source}: {answer}");
            let ids = dispatch_ids(&answer);
            assert_eq!(ids.len(), 1, "{source}: {answer}");
            // As a provider's retry would, the second comes after the first was handled.
            sender.wait_for_status(&ids[0], "succeeded", WAIT).await;
            answers.push(ids);
        }
        assert_eq!(
            answers[0], answers[1],
            "{source}: one delivery, one dispatch"
        );
    }
    env.wait_for_ready_messages(0, WAIT).await;
    worker.stop().await;
    let runs = env.sim_runs().await;
    assert_eq!(runs.len(), cases.len(), "one run per delivery: {runs:?}");
    assert!(runs.iter().all(|r| r["create_calls"] == 1), "{runs:?}");
    env.finish().await;
}
