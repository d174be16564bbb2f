//! Console sessions over HTTP: what the cookie is, what it may do (exactly what its key may,
//! and nothing that changes state without the CSRF token), and how it ends.

use flyhook_testkit::{API_KEY, TestEnv, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{Session, WAIT, create_key, sign_in, with_session};

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn a_session_stands_for_its_key_acts_only_with_its_csrf_token_and_ends_with_the_key(
    pool: PgPool,
) {
    let env = TestEnv::new(&pool, TestEnv::long_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let (http, base) = (&env.http, ingress.base.as_str());
    let sender = ingress.sender();

    // Refused sign-ins: no cookie, a clear problem; a form cannot sign a browser in.
    let (status, session) = sign_in(http, base, "not-a-key-of-ours").await;
    assert_eq!((status, session.is_none()), (401, true));
    let form = http
        .post(format!("{base}/ui/session"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("key={API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    assert!(form.headers().get("set-cookie").is_none());

    let key = create_key(http, base, "console-ops", &["*"]).await;
    let (status, session) = sign_in(http, base, &key).await;
    assert_eq!(status, 200);
    let session = session.expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(session.set_cookie.contains(flag), "{}", session.set_cookie);
    }
    assert!(!session.set_cookie.contains("Secure"), "plain HTTP here");
    assert_eq!(session.view["key_name"], "console-ops");
    assert_eq!(session.view["unrestricted"], true);
    assert!(session.csrf.len() >= 32);

    // The cookie reads what the key reads.
    let (status, accepted) = sender.send_hello(json!({"name": "slow"})).await;
    assert_eq!(status, 202);
    let id = accepted["id"].as_str().unwrap().to_string();
    let (status, page) = with_session(http.get(format!("{base}/dispatches")), &session, None).await;
    assert_eq!(status, 200, "{page}");
    let find = |q: &str| http.get(format!("{base}/dispatches?q={q}"));
    let (status, found) = with_session(find(&id), &session, None).await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["id"], id.as_str(), "found by id");
    assert_eq!(
        found["items"][0]["status"], "queued",
        "no worker has seen it yet"
    );
    let run_name = accepted["run_name"].as_str().unwrap();
    let (_, found) = with_session(find(run_name), &session, None).await;
    assert_eq!(
        found["items"],
        json!([]),
        "a run name alone proves nothing yet"
    );
    let _worker = env.start_worker(&env.settings());

    // Acting needs the CSRF token: without it, or with another, nothing happens.
    sender.wait_for_status(&id, "running", WAIT).await;
    let (_, found) = with_session(find(run_name), &session, None).await;
    assert_eq!(
        found["items"][0]["id"],
        id.as_str(),
        "found by run name once recorded"
    );
    let cancel = format!("{base}/dispatches/{id}/cancel");
    for token in [None, Some("forged")] {
        let (status, problem) =
            with_session(http.post(&cancel).json(&json!({})), &session, token).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("csrf_token_invalid"))
        );
    }
    assert_eq!(sender.dispatch(&id).await.1["status"], "running");
    let (status, cancelled) = with_session(
        http.post(&cancel).json(&json!({})),
        &session,
        Some(&session.csrf),
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("aborted"))
    );

    // Audited under the key's name, as an API call with the key would be, refusals too (the
    // audit log is written in batches, off the request path).
    eventually(WAIT, "the cancels in the audit log", || async {
        let entries: Value = http
            .get(format!("{base}/audit?principal=console-ops"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seen: Vec<(String, String)> = entries["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["route"] == "/dispatches/{id}/cancel")
            .map(|e| (e["principal"].to_string(), e["outcome"].to_string()))
            .collect();
        let wanted = |outcome: &str| (r#""console-ops""#.to_string(), format!("\"{outcome}\""));
        if seen.contains(&wanted("ok")) && seen.contains(&wanted("csrf_token_invalid")) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    // Revoking the key ends its sessions at once, everywhere.
    let revoked = http
        .post(format!("{base}/keys/console-ops/revoke"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    eventually(WAIT, "the revoked key's session refused", || async {
        let (status, _) =
            with_session(http.get(format!("{base}/ui/session")), &session, None).await;
        (status == 401).then_some(())
    })
    .await;

    // Signing out ends a session (and needs the token too); over HTTPS the cookie is Secure.
    let (_, session) = sign_in(http, base, API_KEY).await;
    let session = session.unwrap();
    let sign_out = || http.delete(format!("{base}/ui/session"));
    assert_eq!(with_session(sign_out(), &session, None).await.0, 403);
    let out = sign_out()
        .header("Cookie", &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = with_session(http.get(format!("{base}/ui/session")), &session, None).await;
    assert_eq!(status, 401);
    let over_tls = http
        .post(format!("{base}/ui/session"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({ "key": API_KEY }))
        .send()
        .await
        .unwrap();
    assert!(
        over_tls.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Host-flyhook_session=")
    );
    assert!(
        over_tls.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );

    env.finish().await;
}

#[sqlx::test(migrator = "flyhook_store::MIGRATOR")]
async fn the_console_reads_and_acts_only_within_the_keys_scopes(pool: PgPool) {
    let env = TestEnv::new(&pool, TestEnv::instant_runs()).await;
    let ingress = env.start_ingress(env.settings()).await;
    let _worker = env.start_worker(&env.settings());
    let (http, base) = (&env.http, ingress.base.as_str());
    let sender = ingress.sender();
    let (_, hello) = sender.send_hello(json!({"name": "ann"})).await;
    let (_, failed) = sender.send_hello(json!({"name": "fail"})).await;
    let (status, deploy) = sender
        .post(
            "/run-task/flytesnacks/development/deploy.main/v1",
            &json!({"commit": "abc"}),
        )
        .await;
    assert_eq!(status, 202);
    let id = |accepted: &Value| accepted["id"].as_str().unwrap().to_string();
    let (hello, failed, deploy) = (id(&hello), id(&failed), id(&deploy));
    sender.wait_for_status(&hello, "succeeded", WAIT).await;
    sender.wait_for_status(&failed, "failed", WAIT).await;
    sender.wait_for_status(&deploy, "succeeded", WAIT).await;

    let (_, all) = sign_in(http, base, API_KEY).await;
    let all = all.unwrap();
    let key = create_key(
        http,
        base,
        "deploy-only",
        &["flytesnacks/development/deploy.main"],
    )
    .await;
    let (_, mine) = sign_in(http, base, &key).await;
    let mine = mine.unwrap();
    assert_eq!(mine.view["unrestricted"], false);

    let everything = overview(http, base, &all).await;
    let day = &everything["totals"]["day"];
    assert_eq!(
        (&day["accepted"], &day["started"], &day["failed"]),
        (&json!(3), &json!(3), &json!(1))
    );
    assert_eq!(everything["totals"]["hour"], everything["totals"]["day"]);
    assert!(everything["queue"]["ready"].is_u64(), "{everything}");
    assert!(everything["rejections"].is_array());
    let restricted = overview(http, base, &mine).await;
    let day = &restricted["totals"]["day"];
    assert_eq!(
        (&day["accepted"], &day["failed"]),
        (&json!(1), &json!(0)),
        "deploy only"
    );
    assert!(restricted["queue"].is_null() && restricted["rejections"].is_null());

    // Listing, search and history: the deploy dispatch only.
    let listed = |path: String, session: &Session| {
        let request = http.get(format!("{base}{path}"));
        let session = session.clone();
        async move {
            let (status, page) = with_session(request, &session, None).await;
            assert_eq!(status, 200, "{page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("/dispatches".into(), &mine).await, [deploy.as_str()]);
    assert_eq!(listed("/dispatches".into(), &all).await.len(), 3);
    let (_, record) = sender.dispatch(&hello).await;
    for q in [hello.as_str(), record["run_name"].as_str().unwrap()] {
        assert!(
            listed(format!("/dispatches?q={q}"), &mine).await.is_empty(),
            "{q}"
        );
        assert_eq!(
            listed(format!("/dispatches?q={q}"), &all).await,
            [hello.as_str()],
            "{q}"
        );
    }
    let history = |id: &str| http.get(format!("{base}/dispatches/{id}/history"));
    let (status, problem) = with_session(history(&hello), &mine, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("out_of_scope"))
    );
    let (status, story) = with_session(history(&deploy), &mine, None).await;
    assert_eq!(status, 200);
    let steps: Vec<(&str, i64)> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps.first(), Some(&("starting", 1)), "{story}");
    assert_eq!(steps.last(), Some(&("succeeded", 1)), "{story}");
    assert_eq!(story["inputs"], json!({"commit": "abc"}));

    // Acting: nothing outside the scopes, even with the CSRF token.
    let (status, problem) = with_session(
        http.post(format!("{base}/dispatches/{failed}/replay"))
            .json(&json!({})),
        &mine,
        Some(&mine.csrf),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("out_of_scope"))
    );
    for page in ["/keys", "/audit", "/sources", "/dead-letters"] {
        let (status, problem) = with_session(http.get(format!("{base}{page}")), &mine, None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("forbidden")),
            "{page}"
        );
        let (status, _) = with_session(http.get(format!("{base}{page}")), &all, None).await;
        assert_eq!(status, 200, "{page}");
    }
    // The bulk replay counts only what the key may see and what can be replayed.
    let replay = |body: Value| http.post(format!("{base}/dispatches/replay")).json(&body);
    let dry_run = json!({"dry_run": true});
    let (status, counted) = with_session(replay(dry_run.clone()), &mine, Some(&mine.csrf)).await;
    assert_eq!((status, counted["matched"].as_u64()), (200, Some(0)));
    let (status, counted) = with_session(replay(dry_run), &all, Some(&all.csrf)).await;
    assert_eq!(
        (status, counted["matched"].as_u64()),
        (200, Some(1)),
        "the failed hello"
    );
    let succeeded = json!({"status": "succeeded", "dry_run": true});
    let (status, problem) = with_session(replay(succeeded), &all, Some(&all.csrf)).await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("status")));
    // A NUL in a filter is the caller's mistake, not an outage.
    let (status, problem) =
        with_session(http.get(format!("{base}/dispatches?q=a%00b")), &all, None).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("q")));
    // A confirmed bulk replay takes exactly the ids its dry run counted.
    let (status, counted) =
        with_session(replay(json!({"dry_run": true})), &all, Some(&all.csrf)).await;
    assert_eq!((status, &counted["ids"]), (200, &json!([failed.as_str()])));
    let (status, done) = with_session(
        replay(json!({"ids": counted["ids"]})),
        &all,
        Some(&all.csrf),
    )
    .await;
    assert_eq!(
        (status, done["replayed"].as_u64()),
        (202, Some(1)),
        "{done}"
    );
    let (status, problem) = with_session(
        replay(json!({"ids": [failed.as_str()], "status": "failed"})),
        &all,
        Some(&all.csrf),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("ids")),
        "ids go alone"
    );

    env.finish().await;
}

async fn overview(http: &reqwest::Client, base: &str, session: &Session) -> Value {
    let (status, figures) = with_session(http.get(format!("{base}/overview")), session, None).await;
    assert_eq!(status, 200, "{figures}");
    figures
}
