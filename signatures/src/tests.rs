//! Properties every scheme shares, and the providers' own vectors.

use super::*;
use serde_json::{Value, json};

fn scheme_for(provider: &str) -> Scheme {
    match provider {
        "github" => Scheme::GitHub,
        "stripe" => Scheme::Stripe,
        "slack" => Scheme::Slack,
        "standard-webhooks" => Scheme::StandardWebhooks,
        "linear" => Scheme::Linear,
        "clickup" => Scheme::ClickUp,
        "jira" => Scheme::Jira,
        other => panic!("no scheme for provider {other}"),
    }
}

fn check_vectors(text: &str) -> usize {
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let headers: Vec<(String, String)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let secret = SecretString::from(v["secret"].as_str().unwrap().to_string());
        // The clock to the millisecond where the vector gives it (Linear's are in ms).
        let now = v["now_ms"].as_i64().map_or_else(
            || UnixMillis::from_secs(v["now"].as_i64().unwrap()),
            UnixMillis::from_millis,
        );
        let verdict = scheme_for(v["provider"].as_str().unwrap()).verify(
            &[secret],
            headers.as_slice(),
            v["body"].as_str().unwrap().as_bytes(),
            now,
            v["tolerance_s"].as_i64().unwrap_or(300),
        );
        let expected = v["expect"].as_str().unwrap();
        assert_eq!(
            if verdict.is_ok() { "valid" } else { "invalid" },
            expected,
            "{} {}: {verdict:?}",
            v["provider"],
            v["name"]
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_vector_gets_the_providers_verdict() {
    let checked = check_vectors(include_str!("../tests/fixtures/webhook-vectors.jsonl"));
    assert_eq!(checked, 61);
    let checked = check_vectors(include_str!("../tests/fixtures/parity-vectors.jsonl"));
    assert_eq!(checked, 45);
    // The shared copies, when this checkout sits beside them, may be newer.
    for file in ["vectors.jsonl", "parity.jsonl"] {
        if let Ok(shared) = std::fs::read_to_string(format!("../../shared/webhook-vectors/{file}"))
        {
            check_vectors(&shared);
        }
    }
}

/// Whether the scheme's signature covers the delivery id it carries.
fn signs_id(scheme: &Scheme) -> bool {
    match scheme {
        Scheme::StandardWebhooks => true,
        Scheme::Hmac(g) => g.signs_id(),
        _ => false,
    }
}

#[test]
fn what_we_sign_we_verify_with_any_active_secret_and_nothing_else() {
    let secret = SecretString::from("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=");
    let old = SecretString::from("whsec_b2xkLWtleQ==");
    let now = UnixMillis::from_secs(NOW);
    let later = |secs| UnixMillis::from_secs(NOW + secs);
    for scheme in Scheme::one_of_each() {
        let signed = scheme.sign(&secret, br#"{"after":"abc"}"#, now, "delivery-1");
        let (headers, body) = (signed.headers.as_slice(), &*signed.body);
        let verify = |secret: &SecretString, body: &[u8], at| {
            scheme.verify(std::slice::from_ref(secret), headers, body, at, 300)
        };
        let verified = scheme
            .verify(&[old.clone(), secret.clone()], headers, body, now, 300)
            .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert_eq!(
            verified.delivery_id.is_some(),
            !matches!(scheme, Scheme::Stripe | Scheme::Slack | Scheme::ClickUp),
            "{scheme:?}"
        );
        assert_eq!(verified.id_is_signed, signs_id(&scheme), "{scheme:?}");
        assert_eq!(
            verify(&old, body, now),
            Err(Rejection::Mismatch),
            "{scheme:?}"
        );
        // GitLab's token is a shared password: it does not cover the body.
        if scheme != Scheme::GitLab {
            assert_eq!(
                verify(&secret, b"{}", now),
                Err(Rejection::Mismatch),
                "{scheme:?}: a changed body"
            );
        }
        if scheme.is_timestamped() {
            assert_eq!(
                verify(&secret, body, later(300)),
                Ok(verified.clone()),
                "{scheme:?}"
            );
            assert_eq!(
                verify(&secret, body, later(301)),
                Err(Rejection::Stale),
                "{scheme:?}"
            );
        }
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(
            scheme.verify(
                std::slice::from_ref(&secret),
                none.as_slice(),
                body,
                now,
                300
            ),
            Err(Rejection::Missing),
            "{scheme:?}"
        );
    }
}

#[test]
fn linear_is_judged_by_the_millisecond_in_its_signed_body() {
    let secret = SecretString::from("lin_wh_secret");
    let sent = UnixMillis::from_millis(1_800_000_000_500);
    let signed = Scheme::Linear.sign(&secret, br#"{"type":"Issue"}"#, sent, "d-1");
    let verify = |body: &[u8], headers: &[(String, String)], now_ms, tolerance| {
        Scheme::Linear.verify(
            std::slice::from_ref(&secret),
            headers,
            body,
            UnixMillis::from_millis(now_ms),
            tolerance,
        )
    };
    let (body, headers) = (&*signed.body, signed.headers.as_slice());
    let stamp: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(stamp["webhookTimestamp"], 1_800_000_000_500_i64);
    // 60 s either side, to the millisecond, as Linear's SDK.
    for now_ms in [1_799_999_940_500, 1_800_000_060_500] {
        assert!(verify(body, headers, now_ms, 60).is_ok(), "{now_ms}");
    }
    for now_ms in [1_799_999_940_499, 1_800_000_060_501] {
        assert_eq!(
            verify(body, headers, now_ms, 60),
            Err(Rejection::Stale),
            "{now_ms}"
        );
    }
    // Signed as it is (no stamp put in), as a sender of these bodies would.
    let mac_of = |body: &[u8]| {
        let mac = primitives::hmac(Algorithm::Sha256, b"lin_wh_secret", &[body]);
        [("Linear-Signature".to_string(), primitives::hex(&mac))]
    };
    // Signed, but of unknown age: no timestamp, one that is not a number, zero, two of them
    // (Linear's SDK would take the last), or a body that is not an object.
    for unstamped in [
        &br#"{"type":"Issue"}"#[..],
        br#"{"webhookTimestamp":"1800000000500"}"#,
        br#"{"webhookTimestamp":0}"#,
        br#"{"webhookTimestamp":1,"webhookTimestamp":1800000000500}"#,
        br#"[1800000000500]"#,
    ] {
        assert_eq!(
            verify(unstamped, &mac_of(unstamped), 1_800_000_000_500, 60),
            Err(Rejection::Stale)
        );
    }
    // A float, as Linear's schema types it, and numbers beyond any window.
    for (stamp, verdict) in [
        ("1800000000500.0", Ok(())),
        ("1e300", Err(Rejection::Stale)),
        ("-1e300", Err(Rejection::Stale)),
        ("18446744073709551615", Err(Rejection::Stale)),
    ] {
        let body = format!(r#"{{"webhookTimestamp":{stamp}}}"#);
        assert_eq!(
            verify(
                body.as_bytes(),
                &mac_of(body.as_bytes()),
                1_800_000_000_500,
                60
            )
            .map(|_| ()),
            verdict,
            "{stamp}"
        );
    }
}

const NOW: i64 = 1_800_000_000;

#[test]
fn extreme_timestamps_and_tolerances_are_answered_not_a_panic() {
    let secret = SecretString::from("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=");
    let body = b"{}";
    let now = UnixMillis::from_secs(NOW).millis();
    for scheme in Scheme::one_of_each()
        .into_iter()
        .filter(Scheme::is_timestamped)
    {
        let refusal = |signed_at: i64, now: i64, tolerance: i64| {
            let signed = scheme.sign(&secret, body, UnixMillis::from_millis(signed_at), "d-1");
            let secrets = std::slice::from_ref(&secret);
            let now = UnixMillis::from_millis(now);
            scheme
                .verify(
                    secrets,
                    signed.headers.as_slice(),
                    &signed.body,
                    now,
                    tolerance,
                )
                .err()
        };
        let stale = Some(Rejection::Stale);
        // Stripe's library lets timestamps in the future through; the others do not.
        let future = if scheme == Scheme::Stripe {
            None
        } else {
            stale
        };
        assert_eq!(refusal(i64::MIN, now, 300), stale, "{scheme:?}");
        assert_eq!(refusal(i64::MAX, now, 300), future, "{scheme:?}");
        assert_eq!(refusal(now, i64::MIN, 300), future, "{scheme:?}");
        assert_eq!(refusal(now, i64::MAX, 300), stale, "{scheme:?}");
        assert_eq!(refusal(now, now, i64::MIN), stale, "{scheme:?}");
        assert_eq!(refusal(now, now, i64::MAX), None, "{scheme:?}");
    }
    // A header may carry any i64 (the schemes above sign whole seconds of an i64 of ms): each
    // window is computed without overflow, before the MAC (Stripe checks its MAC first).
    for scheme in Scheme::one_of_each()
        .into_iter()
        .filter(|s| s.is_timestamped() && *s != Scheme::Linear)
    {
        let signed = scheme.sign(&secret, body, UnixMillis::from_secs(NOW), "d-1");
        for extreme in [i64::MIN, i64::MAX] {
            let headers: Vec<(String, String)> = signed
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = value.replace(&NOW.to_string(), &extreme.to_string());
                    (name.clone(), value)
                })
                .collect();
            assert_ne!(headers, signed.headers, "{scheme:?}: a timestamp header");
            let verdict = scheme.verify(
                std::slice::from_ref(&secret),
                headers.as_slice(),
                body,
                UnixMillis::from_millis(-extreme.signum() * i64::MAX),
                i64::MAX,
            );
            let expected = if scheme == Scheme::Stripe {
                Rejection::Mismatch
            } else {
                Rejection::Stale
            };
            assert_eq!(verdict, Err(expected), "{scheme:?} at {extreme}");
        }
    }
}

#[test]
fn every_scheme_name_names_its_scheme() {
    let generic = Scheme::one_of_each()
        .into_iter()
        .find_map(|scheme| match scheme {
            Scheme::Hmac(generic) => Some(generic),
            _ => None,
        });
    for name in Scheme::NAMES {
        let hmac = (name == "hmac").then(|| generic.clone()).flatten();
        let scheme = Scheme::named(name, hmac).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(Scheme::one_of_each().contains(&scheme), "{name}");
    }
    // One of each, the generic HMAC in two shapes.
    assert_eq!(Scheme::NAMES.len(), Scheme::one_of_each().len() - 1);
}

/// The dedup key of `body` as `scheme`'s provider would deliver it at `at` under `id`.
fn key_of(scheme: &Scheme, body: &[u8], at: i64, id: &str) -> String {
    let secret = SecretString::from("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=");
    let at = UnixMillis::from_secs(at);
    let signed = scheme.sign(&secret, body, at, id);
    let verified = scheme
        .verify(&[secret], signed.headers.as_slice(), &signed.body, at, 300)
        .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
    scheme.dedup_key(&verified, &signed.body)
}

#[test]
fn a_body_replayed_under_a_fresh_unsigned_id_or_timestamp_is_the_same_delivery() {
    let body = br#"{"after":"abc"}"#;
    for scheme in Scheme::one_of_each() {
        let first = key_of(&scheme, body, NOW, "delivery-1");
        let replayed = key_of(&scheme, body, NOW + 10, "delivery-2");
        if signs_id(&scheme) {
            assert_eq!(first, "delivery-1", "{scheme:?}: the signed id");
            assert_ne!(first, replayed, "{scheme:?}: another signed id");
        } else {
            assert_eq!(first, replayed, "{scheme:?}: the same bytes");
            let other = key_of(&scheme, br#"{"after":"def"}"#, NOW, "delivery-1");
            assert_ne!(first, other, "{scheme:?}: another body");
        }
    }
}

#[test]
fn stripe_and_slack_events_are_named_by_the_event_id_in_their_signed_body() {
    let stripe = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    assert_eq!(key_of(&Scheme::Stripe, stripe, NOW, ""), "evt_1");
    let event = br#"{"type":"event_callback","event_id":"Ev0PV52K25","event":{}}"#;
    assert_eq!(key_of(&Scheme::Slack, event, NOW, ""), "Ev0PV52K25");
    // A slash command: Slack signs each retry anew, so the body names it, not the timestamp.
    let form = b"command=%2Fdeploy&text=abc";
    assert_eq!(
        key_of(&Scheme::Slack, form, NOW, ""),
        key_of(&Scheme::Slack, form, NOW + 60, "")
    );
}

#[test]
fn linear_and_clickup_events_are_named_by_what_the_event_is_not_by_the_webhook() {
    // Linear: a retry is stamped anew; every event of one webhook has the same webhookId.
    let issue = |id: &str| {
        format!(
            r#"{{"action":"create","type":"Issue","createdAt":"2026-12-05T10:00:00.000Z","data":{{"id":"{id}"}},"webhookId":"wh-1"}}"#
        )
    };
    let created = key_of(&Scheme::Linear, issue("i-1").as_bytes(), NOW, "d-1");
    assert_eq!(
        created,
        key_of(&Scheme::Linear, issue("i-1").as_bytes(), NOW + 59, "d-2"),
        "Linear's retry"
    );
    assert_ne!(
        created,
        key_of(&Scheme::Linear, issue("i-2").as_bytes(), NOW, "d-1"),
        "another event of the same webhook"
    );
    // ClickUp: history items name the changes; one change told as two events is two.
    let change = |event: &str, spacing: &str| {
        format!(
            r#"{{"event":"{event}",{spacing}"task_id":"t1","webhook_id":"w1","history_items":[{{"id":"2800763136","field":"status"}}]}}"#
        )
    };
    let updated = key_of(
        &Scheme::ClickUp,
        change("taskUpdated", "").as_bytes(),
        NOW,
        "",
    );
    assert_eq!(
        updated,
        key_of(
            &Scheme::ClickUp,
            change("taskUpdated", " ").as_bytes(),
            NOW,
            ""
        ),
        "the same change, written otherwise"
    );
    assert_ne!(
        updated,
        key_of(
            &Scheme::ClickUp,
            change("taskStatusUpdated", "").as_bytes(),
            NOW,
            ""
        ),
        "the same change as another event"
    );
    // Without history items (a deletion), the bytes name it.
    let deleted = br#"{"event":"taskDeleted","task_id":"t1","webhook_id":"w1"}"#;
    assert_eq!(
        key_of(&Scheme::ClickUp, deleted, NOW, ""),
        primitives::body_digest(deleted)
    );
}

#[test]
fn only_slacks_challenge_and_githubs_ping_are_handshakes() {
    let pair = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    // Lower-case, as actix hands header names over.
    let ping = pair("x-github-event", "ping");
    let push = pair("X-GitHub-Event", "push");
    let challenge = json!({"type": "url_verification", "token": "t", "challenge": "3eZbrw1a"});
    let event = json!({"type": "event_callback", "event_id": "Ev0PV52K25", "event": {}});
    for scheme in Scheme::one_of_each() {
        let echoed = (scheme == Scheme::Slack).then(|| json!({"challenge": "3eZbrw1a"}));
        assert_eq!(
            scheme.handshake(push.as_slice(), &challenge),
            echoed,
            "{scheme:?}"
        );
        let pong = (scheme == Scheme::GitHub).then(|| json!({"status": "pong"}));
        assert_eq!(
            scheme.handshake(ping.as_slice(), &event),
            pong,
            "{scheme:?}"
        );
        assert_eq!(
            scheme.handshake(push.as_slice(), &event),
            None,
            "{scheme:?}"
        );
    }
    // A challenge without one is still a handshake: Slack gets back what it sent.
    assert_eq!(
        Scheme::Slack.handshake(push.as_slice(), &json!({"type": "url_verification"})),
        Some(json!({"challenge": null}))
    );
}
