//! Webhook signature schemes: verifying what providers send (on the raw bytes, before anything
//! is parsed) and signing test deliveries the same way (`flyhook send`).
//!
//! Every scheme agrees with the provider's own library on the vectors in
//! `tests/fixtures/webhook-vectors.jsonl`, corners included: several signatures in one header
//! (rotation), unknown signature versions ignored, stale and future timestamps, GitHub's refusal
//! of upper-case hex. Comparisons are constant-time; failures say which rule failed, never
//! anything about the secret. Timestamps are compared without overflow, whatever a sender puts
//! in the header.
//!
//! # One delivery, one dispatch
//!
//! [`Scheme::dedup_key`] names a verified delivery for deduplication, and it is always something
//! the signature covers: a header the signature does not cover can be changed by anyone replaying
//! a captured delivery, and a provider that signs each retry anew changes its timestamp.
//!
//! | scheme | dedup key | why |
//! |---|---|---|
//! | Standard Webhooks | `webhook-id` | signed (`{id}.{timestamp}.{body}`) |
//! | Stripe | the event's `id` in the body | signed body; retries resend the event |
//! | Slack | the body's `event_id` (Events API), else a digest of the body | Slack re-signs each retry with a new timestamp; forms (slash commands, interactions) have no id |
//! | GitHub, GitLab, Shopify | a digest of the body | `X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `X-Shopify-Webhook-Id` are not signed (GitLab signs nothing); redeliveries resend the same bytes |
//! | generic `hmac` | the `id_header` when `{id}` is in `signed_content`, else a digest of the body | only a signed id names the delivery |
//!
//! A consequence: two deliveries with the very same bytes are one delivery, for as long as
//! anything remembers the first (dispatch ids derive from the key; there is no time window).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the timestamp is outside the allowed window")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

impl Rejection {
    /// A stable code for the HTTP answer.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Missing => "missing_signature",
            Rejection::Malformed => "malformed_signature",
            Rejection::Stale => "stale_timestamp",
            Rejection::Mismatch => "signature_mismatch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// A configurable HMAC scheme for senders that follow no standard.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericHmac {
    /// The header carrying the signature.
    pub header: String,
    /// Text before the signature in that header (`sha256=`).
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: Algorithm,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// What is signed: `{body}`, with `{timestamp}` and `{id}` from their headers.
    #[serde(default = "default_template")]
    pub signed_content: String,
    pub timestamp_header: Option<String>,
    /// The header naming the delivery: it deduplicates only when `signed_content` has `{id}`.
    pub id_header: Option<String>,
}

fn default_algorithm() -> Algorithm {
    Algorithm::Sha256
}
fn default_encoding() -> Encoding {
    Encoding::Hex
}
fn default_template() -> String {
    "{body}".into()
}

/// How a source proves its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub,
    /// `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]` over `<ts>.<body>`.
    Stripe,
    /// `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    Slack,
    /// `webhook-signature: v1,<base64> …` over `<id>.<ts>.<body>`, `whsec_` secrets.
    StandardWebhooks,
    /// `X-Gitlab-Token: <secret>`.
    GitLab,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    Hmac(GenericHmac),
}

/// Request headers, looked up case-insensitively.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What verification learned about the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The provider's id of this delivery, when the scheme's headers carry one. Unless
    /// `id_is_signed`, anyone replaying the delivery can change it: information, not identity.
    pub delivery_id: Option<String>,
    /// Whether the signature covers `delivery_id`.
    pub id_is_signed: bool,
    pub timestamp: Option<i64>,
}

fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($digest:ty) => {{
            let mut mac = <Hmac<$digest>>::new_from_slice(key).expect("HMAC takes any key length");
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(Sha256),
        Algorithm::Sha512 => run!(Sha512),
    }
}

/// Lower-case hex only: GitHub's and Stripe's libraries compare the lower-case text.
fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `ts` is further than `tolerance_secs` from `now` in either direction (always, for a
/// negative tolerance). `abs_diff` cannot overflow, so `ts = i64::MIN` is stale, not a panic.
fn outside_window(now: i64, ts: i64, tolerance_secs: i64) -> bool {
    !u64::try_from(tolerance_secs).is_ok_and(|tolerance| now.abs_diff(ts) <= tolerance)
}

/// The first 16 bytes of the body's SHA-256, in hex: a provider's retry resends the same bytes.
fn body_digest(body: &[u8]) -> String {
    hex(&Sha256::digest(body)[..16])
}

fn timestamp(headers: &(impl Headers + ?Sized), name: &str) -> Result<i64, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing)?
        .trim()
        .parse()
        .map_err(|_| Rejection::Malformed)
}

/// The key of a Standard Webhooks secret: base64 after an optional `whsec_`.
fn standard_key(secret: &SecretString) -> Option<Vec<u8>> {
    let text = secret.expose_secret();
    BASE64
        .decode(text.strip_prefix("whsec_").unwrap_or(text))
        .ok()
}

impl Scheme {
    /// Whether deliveries carry a timestamp checked against a tolerance.
    pub fn is_timestamped(&self) -> bool {
        match self {
            Scheme::Stripe | Scheme::Slack | Scheme::StandardWebhooks => true,
            Scheme::Hmac(g) => g.timestamp_header.is_some(),
            Scheme::GitHub | Scheme::GitLab | Scheme::Shopify => false,
        }
    }

    /// Checks a delivery against every active secret (rotation), at unix time `now`.
    pub fn verify(
        &self,
        secrets: &[SecretString],
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now: i64,
        tolerance_secs: i64,
    ) -> Result<Verified, Rejection> {
        let any_secret = |check: &dyn Fn(&SecretString) -> bool| secrets.iter().any(check);
        // Whether some secret's HMAC over `parts` is `given`.
        let mac_matches = |algorithm: Algorithm, parts: &[&[u8]], given: &[u8]| {
            any_secret(&|s| equal(&hmac(algorithm, s.expose_secret().as_bytes(), parts), given))
        };
        match self {
            Scheme::GitHub => {
                let header = headers
                    .get("X-Hub-Signature-256")
                    .ok_or(Rejection::Missing)?;
                let given = header
                    .strip_prefix("sha256=")
                    .and_then(decode_lower_hex)
                    .ok_or(Rejection::Malformed)?;
                if !mac_matches(Algorithm::Sha256, &[body], &given) {
                    return Err(Rejection::Mismatch);
                }
                Ok(Verified {
                    delivery_id: headers.get("X-GitHub-Delivery").map(str::to_string),
                    ..Verified::default()
                })
            }
            Scheme::Stripe => {
                let header = headers.get("Stripe-Signature").ok_or(Rejection::Missing)?;
                let mut t = None;
                let mut signatures = Vec::new();
                for pair in header.split(',') {
                    match pair.trim().split_once('=') {
                        Some(("t", v)) => t = v.parse::<i64>().ok(),
                        // Other schemes (v0, …) are ignored, as Stripe's library does.
                        Some(("v1", v)) => signatures.push(v.to_string()),
                        _ => {}
                    }
                }
                let t = t.ok_or(Rejection::Malformed)?;
                if signatures.is_empty() {
                    return Err(Rejection::Malformed);
                }
                let signed = [t.to_string().as_bytes(), b".", body].concat();
                let matches = any_secret(&|s| {
                    let expected = hex(&hmac(
                        Algorithm::Sha256,
                        s.expose_secret().as_bytes(),
                        &[&signed],
                    ));
                    signatures
                        .iter()
                        .any(|sig| equal(sig.as_bytes(), expected.as_bytes()))
                });
                if !matches {
                    return Err(Rejection::Mismatch);
                }
                // Stripe's library refuses old timestamps only; so do we.
                if t < now.saturating_sub(tolerance_secs) {
                    return Err(Rejection::Stale);
                }
                Ok(Verified {
                    timestamp: Some(t),
                    ..Verified::default()
                })
            }
            Scheme::Slack => {
                let ts = timestamp(headers, "X-Slack-Request-Timestamp")?;
                let header = headers.get("X-Slack-Signature").ok_or(Rejection::Missing)?;
                let given = header
                    .strip_prefix("v0=")
                    .and_then(decode_lower_hex)
                    .ok_or(Rejection::Malformed)?;
                if outside_window(now, ts, tolerance_secs) {
                    return Err(Rejection::Stale);
                }
                let prefix = format!("v0:{ts}:");
                if !mac_matches(Algorithm::Sha256, &[prefix.as_bytes(), body], &given) {
                    return Err(Rejection::Mismatch);
                }
                // Slack sends no delivery id (see `dedup_key`).
                Ok(Verified {
                    timestamp: Some(ts),
                    ..Verified::default()
                })
            }
            Scheme::StandardWebhooks => {
                let id = headers.get("webhook-id").ok_or(Rejection::Missing)?;
                let ts = timestamp(headers, "webhook-timestamp")?;
                let header = headers.get("webhook-signature").ok_or(Rejection::Missing)?;
                if outside_window(now, ts, tolerance_secs) {
                    return Err(Rejection::Stale);
                }
                let signatures: Vec<&str> = header
                    .split(' ')
                    .filter_map(|entry| entry.split_once(','))
                    .filter(|(version, _)| *version == "v1")
                    .map(|(_, sig)| sig)
                    .collect();
                let signed = format!("{id}.{ts}.");
                let matches = any_secret(&|s| {
                    let Some(key) = standard_key(s) else {
                        return false;
                    };
                    let expected =
                        BASE64.encode(hmac(Algorithm::Sha256, &key, &[signed.as_bytes(), body]));
                    signatures
                        .iter()
                        .any(|sig| equal(sig.as_bytes(), expected.as_bytes()))
                });
                if !matches {
                    return Err(Rejection::Mismatch);
                }
                Ok(Verified {
                    delivery_id: Some(id.to_string()),
                    id_is_signed: true,
                    timestamp: Some(ts),
                })
            }
            Scheme::GitLab => {
                let token = headers.get("X-Gitlab-Token").ok_or(Rejection::Missing)?;
                if !any_secret(&|s| equal(token.as_bytes(), s.expose_secret().as_bytes())) {
                    return Err(Rejection::Mismatch);
                }
                Ok(Verified {
                    delivery_id: headers
                        .get("X-Gitlab-Event-UUID")
                        .or_else(|| headers.get("Idempotency-Key"))
                        .map(str::to_string),
                    ..Verified::default()
                })
            }
            Scheme::Shopify => {
                let header = headers
                    .get("X-Shopify-Hmac-Sha256")
                    .ok_or(Rejection::Missing)?;
                let given = BASE64
                    .decode(header.trim())
                    .map_err(|_| Rejection::Malformed)?;
                if !mac_matches(Algorithm::Sha256, &[body], &given) {
                    return Err(Rejection::Mismatch);
                }
                Ok(Verified {
                    delivery_id: headers.get("X-Shopify-Webhook-Id").map(str::to_string),
                    ..Verified::default()
                })
            }
            Scheme::Hmac(g) => {
                let header = headers.get(&g.header).ok_or(Rejection::Missing)?;
                let encoded = header
                    .trim()
                    .strip_prefix(g.prefix.as_str())
                    .ok_or(Rejection::Malformed)?;
                let given = match g.encoding {
                    Encoding::Hex => decode_lower_hex(&encoded.to_ascii_lowercase()),
                    Encoding::Base64 => BASE64.decode(encoded).ok(),
                }
                .ok_or(Rejection::Malformed)?;
                let ts = match &g.timestamp_header {
                    Some(name) => {
                        let ts = timestamp(headers, name)?;
                        if outside_window(now, ts, tolerance_secs) {
                            return Err(Rejection::Stale);
                        }
                        Some(ts)
                    }
                    None => None,
                };
                let id = g.id_header.as_deref().and_then(|h| headers.get(h));
                let signed = g.signed(ts, id, body);
                if !mac_matches(g.algorithm, &[&signed], &given) {
                    return Err(Rejection::Mismatch);
                }
                Ok(Verified {
                    delivery_id: id.map(str::to_string),
                    id_is_signed: id.is_some() && g.signs_id(),
                    timestamp: ts,
                })
            }
        }
    }

    /// The key naming a delivery `verify` accepted, so that the provider's retries and
    /// redeliveries, and a captured delivery replayed under fresh ids, are one delivery. Always
    /// something the signature covers (the table in the crate's documentation): a signed id, the
    /// event id in the signed `payload` (Stripe's `id`, Slack's `event_id`), or else a digest of
    /// the `body`.
    pub fn dedup_key(&self, verified: &Verified, payload: &Value, body: &[u8]) -> String {
        if let Some(id) = verified
            .delivery_id
            .as_ref()
            .filter(|_| verified.id_is_signed)
        {
            return id.clone();
        }
        let event_id = match self {
            Scheme::Stripe => Some("/id"),
            Scheme::Slack => Some("/event_id"),
            _ => None,
        };
        event_id
            .and_then(|pointer| payload.pointer(pointer))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map_or_else(|| body_digest(body), str::to_string)
    }

    /// The headers a provider would send with `body`, signed with `secret` at time `now`.
    /// `delivery_id` goes where the scheme carries one.
    pub fn sign(
        &self,
        secret: &SecretString,
        body: &[u8],
        now: i64,
        delivery_id: &str,
    ) -> Vec<(String, String)> {
        let key = secret.expose_secret().as_bytes();
        let header = |k: &str, v: String| (k.to_string(), v);
        match self {
            Scheme::GitHub => vec![
                header(
                    "X-Hub-Signature-256",
                    format!("sha256={}", hex(&hmac(Algorithm::Sha256, key, &[body]))),
                ),
                header("X-GitHub-Delivery", delivery_id.to_string()),
            ],
            Scheme::Stripe => {
                let signed = [now.to_string().as_bytes(), b".", body].concat();
                vec![header(
                    "Stripe-Signature",
                    format!(
                        "t={now},v1={}",
                        hex(&hmac(Algorithm::Sha256, key, &[&signed]))
                    ),
                )]
            }
            Scheme::Slack => {
                let prefix = format!("v0:{now}:");
                vec![
                    header("X-Slack-Request-Timestamp", now.to_string()),
                    header(
                        "X-Slack-Signature",
                        format!(
                            "v0={}",
                            hex(&hmac(Algorithm::Sha256, key, &[prefix.as_bytes(), body]))
                        ),
                    ),
                ]
            }
            Scheme::StandardWebhooks => {
                let key = standard_key(secret).unwrap_or_default();
                let signed = format!("{delivery_id}.{now}.");
                vec![
                    header("webhook-id", delivery_id.to_string()),
                    header("webhook-timestamp", now.to_string()),
                    header(
                        "webhook-signature",
                        format!(
                            "v1,{}",
                            BASE64.encode(hmac(
                                Algorithm::Sha256,
                                &key,
                                &[signed.as_bytes(), body]
                            ))
                        ),
                    ),
                ]
            }
            Scheme::GitLab => vec![
                header("X-Gitlab-Token", secret.expose_secret().to_string()),
                header("X-Gitlab-Event-UUID", delivery_id.to_string()),
            ],
            Scheme::Shopify => vec![
                header(
                    "X-Shopify-Hmac-Sha256",
                    BASE64.encode(hmac(Algorithm::Sha256, key, &[body])),
                ),
                header("X-Shopify-Webhook-Id", delivery_id.to_string()),
            ],
            Scheme::Hmac(g) => {
                let ts = g.timestamp_header.as_ref().map(|_| now);
                let id = g.id_header.as_ref().map(|_| delivery_id);
                let mac = hmac(g.algorithm, key, &[&g.signed(ts, id, body)]);
                let encoded = match g.encoding {
                    Encoding::Hex => hex(&mac),
                    Encoding::Base64 => BASE64.encode(mac),
                };
                let mut headers = vec![header(&g.header, format!("{}{encoded}", g.prefix))];
                if let Some(name) = &g.timestamp_header {
                    headers.push(header(name, now.to_string()));
                }
                if let Some(name) = &g.id_header {
                    headers.push(header(name, delivery_id.to_string()));
                }
                headers
            }
        }
    }
}

impl GenericHmac {
    /// Whether the signature covers the `id_header`.
    fn signs_id(&self) -> bool {
        self.signed_content.contains("{id}")
    }

    fn signed(&self, timestamp: Option<i64>, id: Option<&str>, body: &[u8]) -> Vec<u8> {
        // Split around {body} so the body is used as raw bytes, never re-encoded.
        let (before, after) = self
            .signed_content
            .split_once("{body}")
            .unwrap_or((self.signed_content.as_str(), ""));
        let fill = |text: &str| {
            text.replace(
                "{timestamp}",
                &timestamp.map(|t| t.to_string()).unwrap_or_default(),
            )
            .replace("{id}", id.unwrap_or_default())
        };
        [fill(before).as_bytes(), body, fill(after).as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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

    fn all_schemes() -> Vec<Scheme> {
        vec![
            Scheme::GitHub,
            Scheme::Stripe,
            Scheme::Slack,
            Scheme::StandardWebhooks,
            Scheme::GitLab,
            Scheme::Shopify,
            Scheme::Hmac(GenericHmac {
                header: "X-Signature".into(),
                prefix: "sha512=".into(),
                algorithm: Algorithm::Sha512,
                encoding: Encoding::Base64,
                signed_content: "{timestamp}.{id}.{body}".into(),
                timestamp_header: Some("X-Timestamp".into()),
                id_header: Some("X-Delivery".into()),
            }),
            Scheme::Hmac(GenericHmac {
                header: "X-Sig".into(),
                prefix: String::new(),
                algorithm: Algorithm::Sha1,
                encoding: Encoding::Hex,
                signed_content: "{body}".into(),
                timestamp_header: None,
                id_header: Some("X-Unsigned-Delivery".into()),
            }),
        ]
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
        for scheme in all_schemes() {
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
        for scheme in all_schemes().into_iter().filter(Scheme::is_timestamped) {
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
        for scheme in all_schemes() {
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
}
