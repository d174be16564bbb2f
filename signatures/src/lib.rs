//! Webhook signature schemes: verifying what providers send (on the raw bytes, before anything
//! is parsed) and signing test deliveries the same way (`flyhook send`).
//!
//! Every scheme agrees with the provider's own library on the vectors in
//! `tests/fixtures/webhook-vectors.jsonl`, corners included: several signatures in one header
//! (rotation), unknown signature versions ignored, stale and future timestamps, GitHub's refusal
//! of upper-case hex. Linear, ClickUp and Jira agree with `tests/fixtures/parity-vectors.jsonl`
//! (judged by Linear's SDK, and by the documented scheme for the other two, which publish no
//! verifier). Where a library lets something through that says nothing about a delivery's age,
//! we refuse it (see `providers/linear.rs`). Comparisons are constant-time; failures say which
//! rule failed, never anything about the secret. Timestamps are compared without overflow,
//! whatever a sender puts in the header.
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
//! | GitHub, GitLab, Shopify, Jira | a digest of the body | `X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, `X-Shopify-Webhook-Id`, `X-Atlassian-Webhook-Identifier` are not signed (GitLab signs nothing); redeliveries resend the same bytes |
//! | Linear | a digest of the signed payload without its `webhookTimestamp` | Linear stamps each retry anew (the time it was sent) and signs nothing else that names the delivery (`Linear-Delivery` is not signed; the body's `webhookId` names the webhook, not the event): the rest of the payload, `webhookId` and `createdAt` included, is the event |
//! | ClickUp | `webhook_id`, `event` and the ids of the `history_items` | each history item is one change recorded by ClickUp; one change can be told as two events (`taskUpdated` and `taskStatusUpdated`); deliveries without history items (deletions) fall back to a digest of the body |
//! | generic `hmac` | the `id_header` when `{id}` is in `signed_content`, else a digest of the body | only a signed id names the delivery |
//!
//! A consequence: two deliveries with the very same bytes are one delivery, for as long as
//! anything remembers the first (dispatch ids derive from the key; there is no time window).
//!
//! # Map
//!
//! - this file: the public types, and [`Scheme`]'s methods, which pick the provider's module;
//! - `primitives`: HMAC, hex, constant-time comparison against each active secret, the
//!   timestamp window, the body digest;
//! - `providers`: the shapes several providers share (a MAC alone in one header; a MAC of the
//!   body beside an unsigned id), then one module per provider (`github`, `gitlab`, `shopify`,
//!   `slack`, `stripe`, `standard` for Standard Webhooks, `linear`, `clickup`, `jira`, `generic`
//!   for generic HMAC), each with its verify, sign, dedup key and handshake side by side.

mod primitives;
mod providers;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use primitives::body_digest;
use providers::{clickup, github, gitlab, jira, linear, shopify, slack, standard, stripe};

use std::borrow::Cow;

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    /// Also a timestamp missing from a signed body (Linear's `webhookTimestamp`): a delivery of
    /// unknown age may be a replay.
    #[error("the signed timestamp is missing or outside the allowed window")]
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
    /// `Linear-Signature: <hex>` over the body, which carries `webhookTimestamp` (ms).
    Linear,
    /// `X-Signature: <hex>` over the body.
    ClickUp,
    /// `X-Hub-Signature: sha256=<hex>` over the body (Jira Cloud).
    Jira,
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

/// A moment, in unix milliseconds: Linear stamps its deliveries to the millisecond, the other
/// schemes to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixMillis(i64);

impl UnixMillis {
    /// The system clock's now.
    pub fn now() -> UnixMillis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(millis: i64) -> UnixMillis {
        UnixMillis(millis)
    }

    /// Whole seconds, saturating at the ends of the range.
    pub const fn from_secs(secs: i64) -> UnixMillis {
        UnixMillis(secs.saturating_mul(1000))
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The whole seconds, rounded down.
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

/// A delivery as the timestamped schemes verify it: against every active secret, at `now`,
/// within `tolerance_secs`.
struct Delivery<'a, H: Headers + ?Sized> {
    secrets: &'a [SecretString],
    headers: &'a H,
    body: &'a [u8],
    now: UnixMillis,
    tolerance_secs: i64,
}

impl<H: Headers + ?Sized> Clone for Delivery<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: Headers + ?Sized> Copy for Delivery<'_, H> {}

impl<H: Headers + ?Sized> Delivery<'_, H> {
    /// Refuses a signed timestamp `ts` (unix seconds) outside the tolerance around now.
    fn check_window(&self, ts: i64) -> Result<(), Rejection> {
        primitives::check_window(self.now.secs(), ts, self.tolerance_secs)
    }
}

/// A delivery as its provider would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The body: what was given, except where the scheme signs a timestamp inside it (Linear).
    pub body: Cow<'a, [u8]>,
    pub headers: Vec<(String, String)>,
}

/// What verification learned about the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The provider's id of this delivery, when the scheme's headers carry one. Unless
    /// `id_is_signed`, anyone replaying the delivery can change it: information, not identity.
    pub delivery_id: Option<String>,
    /// Whether the signature covers `delivery_id`.
    pub id_is_signed: bool,
    /// The signed timestamp, in unix seconds.
    pub timestamp: Option<i64>,
}

impl Scheme {
    /// The scheme of a source's `scheme` name (`hmac` takes the `[sources.hmac]` table).
    pub fn named(name: &str, hmac: Option<GenericHmac>) -> Result<Scheme, String> {
        Ok(match (name, hmac) {
            ("github", None) => Scheme::GitHub,
            ("stripe", None) => Scheme::Stripe,
            ("slack", None) => Scheme::Slack,
            ("standard-webhooks", None) => Scheme::StandardWebhooks,
            ("gitlab", None) => Scheme::GitLab,
            ("shopify", None) => Scheme::Shopify,
            ("linear", None) => Scheme::Linear,
            ("clickup", None) => Scheme::ClickUp,
            ("jira", None) => Scheme::Jira,
            ("hmac", Some(generic)) => Scheme::Hmac(generic),
            ("hmac", None) => return Err("scheme \"hmac\" needs an [sources.hmac] table".into()),
            (_, Some(_)) => return Err("only scheme \"hmac\" takes an hmac table".into()),
            (other, None) => {
                return Err(format!(
                    "unknown scheme {other:?} ({})",
                    Scheme::NAMES.join(", ")
                ));
            }
        })
    }

    /// Every scheme's name, as sources name them.
    pub const NAMES: [&str; 10] = [
        "github",
        "stripe",
        "slack",
        "standard-webhooks",
        "gitlab",
        "shopify",
        "linear",
        "clickup",
        "jira",
        "hmac",
    ];

    /// The timestamp tolerance a source gets when it sets none: Linear's SDK allows 60 s, the
    /// other providers' libraries 300 s.
    pub fn default_tolerance_secs(&self) -> i64 {
        match self {
            Scheme::Linear => 60,
            _ => 300,
        }
    }

    /// Whether deliveries carry a timestamp checked against a tolerance.
    pub fn is_timestamped(&self) -> bool {
        match self {
            Scheme::Stripe | Scheme::Slack | Scheme::StandardWebhooks | Scheme::Linear => true,
            Scheme::Hmac(g) => g.timestamp_header.is_some(),
            Scheme::GitHub | Scheme::GitLab | Scheme::Shopify | Scheme::ClickUp | Scheme::Jira => {
                false
            }
        }
    }

    /// One of every scheme, the generic HMAC in two shapes (timestamped and signing an id; the
    /// body alone with an unsigned id): what the fuzz targets and the tests that must cover every
    /// scheme run through.
    pub fn one_of_each() -> Vec<Scheme> {
        vec![
            Scheme::GitHub,
            Scheme::Stripe,
            Scheme::Slack,
            Scheme::StandardWebhooks,
            Scheme::GitLab,
            Scheme::Shopify,
            Scheme::Linear,
            Scheme::ClickUp,
            Scheme::Jira,
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

    /// Checks a delivery against every active secret (rotation), at `now`.
    pub fn verify(
        &self,
        secrets: &[SecretString],
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now: UnixMillis,
        tolerance_secs: i64,
    ) -> Result<Verified, Rejection> {
        let delivery = Delivery {
            secrets,
            headers,
            body,
            now,
            tolerance_secs,
        };
        match self {
            Scheme::GitHub => github::SIGNING.verify(secrets, headers, body),
            Scheme::Stripe => stripe::verify(delivery),
            Scheme::Slack => slack::verify(delivery),
            Scheme::StandardWebhooks => standard::verify(delivery),
            Scheme::GitLab => gitlab::verify(secrets, headers),
            Scheme::Shopify => shopify::SIGNING.verify(secrets, headers, body),
            Scheme::Linear => linear::verify(delivery),
            Scheme::ClickUp => clickup::SIGNING.verify(secrets, headers, body),
            Scheme::Jira => jira::SIGNING.verify(secrets, headers, body),
            Scheme::Hmac(g) => g.verify(delivery),
        }
    }

    /// The key naming a delivery `verify` accepted, so that the provider's retries and
    /// redeliveries, and a captured delivery replayed under fresh ids, are one delivery. Always
    /// something the signature covers (the table in the crate's documentation): a signed id, the
    /// event id in the signed body read as JSON (Stripe's `id`, Slack's `event_id`), the event's
    /// identity in it (Linear, ClickUp), or else a digest of the `body`. Only the bytes count,
    /// never how the request says to read them: a captured JSON body replayed under another
    /// (unsigned) `Content-Type` is still the same delivery.
    pub fn dedup_key(&self, verified: &Verified, body: &[u8]) -> String {
        if let Some(id) = verified
            .delivery_id
            .as_ref()
            .filter(|_| verified.id_is_signed)
        {
            return id.clone();
        }
        let identity: Option<fn(&Value) -> Option<String>> = match self {
            Scheme::Stripe => Some(|event| event_id(event, stripe::EVENT_ID)),
            Scheme::Slack => Some(|event| event_id(event, slack::EVENT_ID)),
            Scheme::Linear => Some(linear::event_identity),
            Scheme::ClickUp => Some(clickup::event_identity),
            _ => None,
        };
        identity
            .and_then(|identity| identity(&serde_json::from_slice(body).ok()?))
            .unwrap_or_else(|| body_digest(body))
    }

    /// `body` as a provider would send it at `now`, signed with `secret`. `delivery_id` goes
    /// where the scheme carries one. Linear signs the time inside the body: its
    /// `webhookTimestamp` is set, so the body sent must be the one returned.
    pub fn sign<'a>(
        &self,
        secret: &SecretString,
        body: &'a [u8],
        now: UnixMillis,
        delivery_id: &str,
    ) -> Signed<'a> {
        let unchanged = |headers| Signed {
            body: Cow::Borrowed(body),
            headers,
        };
        let secs = now.secs();
        match self {
            Scheme::GitHub => unchanged(github::SIGNING.sign(secret, body, delivery_id)),
            Scheme::Stripe => unchanged(stripe::sign(secret, body, secs)),
            Scheme::Slack => unchanged(slack::sign(secret, body, secs)),
            Scheme::StandardWebhooks => unchanged(standard::sign(secret, body, secs, delivery_id)),
            Scheme::GitLab => unchanged(gitlab::sign(secret, delivery_id)),
            Scheme::Shopify => unchanged(shopify::SIGNING.sign(secret, body, delivery_id)),
            Scheme::Linear => linear::sign(secret, body, now, delivery_id),
            Scheme::ClickUp => unchanged(clickup::SIGNING.sign(secret, body, delivery_id)),
            Scheme::Jira => unchanged(jira::SIGNING.sign(secret, body, delivery_id)),
            Scheme::Hmac(g) => unchanged(g.sign(secret, body, secs, delivery_id)),
        }
    }

    /// The answer to a provider's handshake (Slack's `url_verification` challenge, GitHub's
    /// `ping`), given once the delivery is verified and instead of routing it: a handshake is no
    /// event, so nothing starts. `None` for a delivery to route.
    pub fn handshake(&self, headers: &(impl Headers + ?Sized), payload: &Value) -> Option<Value> {
        match self {
            Scheme::Slack => slack::handshake(payload),
            Scheme::GitHub => github::handshake(headers),
            _ => None,
        }
    }
}

/// A non-empty string at `pointer` in the signed payload: an event's own id.
fn event_id(payload: &Value, pointer: &str) -> Option<String> {
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests;
