//! Properties every scheme shares, and the providers' own vectors.

use super::*;
use serde_json::{Value, json};

fn scheme_for(provider: &str) -> Scheme {
    match provider {
        "github" => Scheme::GitHub,
        "stripe" => Scheme::Stripe,
        "slack" => Scheme::Slack,
        "standard-webhooks" => Scheme::StandardWebhooks,
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
        let verdict = scheme_for(v["provider"].as_str().unwrap()).verify(
            &[secret],
            headers.as_slice(),
            v["body"].as_str().unwrap().as_bytes(),
            v["now"].as_i64().unwrap(),
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
    // The shared copy, when this checkout sits beside it, may be newer.
    if let Ok(shared) = std::fs::read_to_string("../../shared/webhook-vectors/vectors.jsonl") {
        check_vectors(&shared);
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
    let body = br#"{"after":"abc"}"#;
    let now = 1_800_000_000;
    for scheme in Scheme::one_of_each() {
        let headers = scheme.sign(&secret, body, now, "delivery-1");
        let verified = scheme
            .verify(
                &[old.clone(), secret.clone()],
                headers.as_slice(),
                body,
                now,
                300,
            )
            .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert_eq!(
            verified.delivery_id.is_some(),
            !matches!(scheme, Scheme::Stripe | Scheme::Slack),
            "{scheme:?}"
        );
        assert_eq!(verified.id_is_signed, signs_id(&scheme), "{scheme:?}");
        assert_eq!(
            scheme.verify(
                std::slice::from_ref(&old),
                headers.as_slice(),
                body,
                now,
                300
            ),
            Err(Rejection::Mismatch),
            "{scheme:?}"
        );
        // GitLab's token is a shared password: it does not cover the body.
        if scheme != Scheme::GitLab {
            assert_eq!(
                scheme.verify(
                    std::slice::from_ref(&secret),
                    headers.as_slice(),
                    b"{}",
                    now,
                    300
                ),
                Err(Rejection::Mismatch),
                "{scheme:?}: a changed body"
            );
        }
        if scheme.is_timestamped() {
            assert_eq!(
                scheme.verify(
                    std::slice::from_ref(&secret),
                    headers.as_slice(),
                    body,
                    now + 301,
                    300
                ),
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

const NOW: i64 = 1_800_000_000;

#[test]
fn extreme_timestamps_and_tolerances_are_answered_not_a_panic() {
    let secret = SecretString::from("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=");
    let body = b"{}";
    for scheme in Scheme::one_of_each()
        .into_iter()
        .filter(Scheme::is_timestamped)
    {
        let refusal = |signed_at: i64, now: i64, tolerance: i64| {
            let headers = scheme.sign(&secret, body, signed_at, "d-1");
            let secrets = std::slice::from_ref(&secret);
            scheme
                .verify(secrets, headers.as_slice(), body, now, tolerance)
                .err()
        };
        let stale = Some(Rejection::Stale);
        // Stripe's library lets timestamps in the future through; the others do not.
        let future = if scheme == Scheme::Stripe {
            None
        } else {
            stale
        };
        assert_eq!(refusal(i64::MIN, NOW, 300), stale, "{scheme:?}");
        assert_eq!(refusal(i64::MAX, NOW, 300), future, "{scheme:?}");
        assert_eq!(refusal(NOW, i64::MIN, 300), future, "{scheme:?}");
        assert_eq!(refusal(NOW, i64::MAX, 300), stale, "{scheme:?}");
        assert_eq!(refusal(NOW, NOW, i64::MIN), stale, "{scheme:?}");
        assert_eq!(refusal(i64::MIN, i64::MAX, i64::MAX), stale, "{scheme:?}");
    }
}

/// The dedup key of `body` as `scheme`'s provider would deliver it at `at` under `id`.
fn key_of(scheme: &Scheme, body: &[u8], at: i64, id: &str) -> String {
    let secret = SecretString::from("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=");
    let headers = scheme.sign(&secret, body, at, id);
    let verified = scheme
        .verify(&[secret], headers.as_slice(), body, at, 300)
        .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
    let payload = serde_json::from_slice(body).unwrap_or(Value::Null);
    scheme.dedup_key(&verified, &payload, body)
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
