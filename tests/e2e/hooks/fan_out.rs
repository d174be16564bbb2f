//! A delivery two routes want is queued whole, as one message, or not at all.

use serde_json::json;
use sqlx::PgPool;

use super::{Delivery, WAIT, serve_with};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_fanned_out_delivery_is_queued_whole_or_not_at_all(pool: PgPool) {
    let (env, settings, sender) = serve_with(&pool, "[ingress]\nmax_queue_length = 1\n").await;
    let push = |id: String, body: String| {
        let (sender, settings) = (&sender, &settings);
        async move {
            let headers = [("X-GitHub-Event", "push")];
            Delivery::json("github", "/hooks/github", &body, &id, &headers)
                .send(sender, settings)
                .await
        }
    };

    // The work queue is bounded at one message (a quorum queue lets one more in before it
    // refuses): each delivery's two routes go in as one message, or neither does.
    let mut queued = Vec::new();
    for n in 0..5 {
        let push_to_main =
            json!({"ref": "refs/heads/main", "after": format!("c{n}"), "pusher": {"name": "ann"}});
        let (status, answer) = push(format!("fan-out-{n}"), push_to_main.to_string()).await;
        match status {
            202 => {
                assert_eq!(
                    answer["dispatches"].as_array().map(Vec::len),
                    Some(2),
                    "{answer}"
                );
                queued.push(answer);
            }
            503 => assert_eq!(answer["code"], "at_capacity", "{answer}"),
            _ => panic!("{status}: {answer}"),
        }
    }
    assert!(
        (1..5).contains(&queued.len()),
        "{} of 5 accepted",
        queued.len()
    );
    assert_eq!(env.ready_messages().await as usize, queued.len());
    // A NUL in what a route maps is refused too, naming the input.
    let nul_name = json!({"ref": "refs/heads/main", "after": "c3", "pusher": {"name": "\u{0}"}});
    let (status, nul) = push("fan-out-nul".into(), nul_name.to_string()).await;
    assert_eq!(
        (status, &nul["code"], &nul["field"]),
        (422, &json!("unstorable_input"), &json!("name")),
        "{nul}"
    );

    env.start_worker(&settings);
    for dispatch in queued
        .iter()
        .flat_map(|a| a["dispatches"].as_array().unwrap())
    {
        sender
            .wait_for_status(dispatch["id"].as_str().unwrap(), "succeeded", WAIT)
            .await;
    }
    // Every route of every accepted delivery ran; nothing of a refused one did.
    assert_eq!(env.sim_runs().await.len(), 2 * queued.len());
    env.finish().await;
}
