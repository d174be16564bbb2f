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
//!
//! # Map
//!
//! - this file: the public types, and [`Scheme`]'s methods, which pick the provider's module;
//! - `primitives`: HMAC, hex, constant-time comparison against each active secret, the
//!   timestamp window, the body digest;
//! - `providers`: the shapes several providers share (a MAC alone in one header; a MAC of the
//!   body beside an unsigned id), then one module per provider (`github`, `gitlab`, `shopify`,
//!   `slack`, `stripe`, `standard` for Standard Webhooks, `generic` for generic HMAC), each with
//!   its verify, sign, dedup key and handshake side by side.

mod primitives;
mod providers;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use primitives::body_digest;
use providers::{github, gitlab, shopify, slack, standard, stripe};

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

/// A delivery as the timestamped schemes verify it: against every active secret, at unix time
/// `now`, within `tolerance_secs`.
struct Delivery<'a, H: Headers + ?Sized> {
    secrets: &'a [SecretString],
    headers: &'a H,
    body: &'a [u8],
    now: i64,
    tolerance_secs: i64,
}

impl<H: Headers + ?Sized> Clone for Delivery<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: Headers + ?Sized> Copy for Delivery<'_, H> {}

impl<H: Headers + ?Sized> Delivery<'_, H> {
    /// Refuses a signed timestamp `ts` outside the tolerance around now.
    fn check_window(&self, ts: i64) -> Result<(), Rejection> {
        primitives::check_window(self.now, ts, self.tolerance_secs)
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

impl Scheme {
    /// Whether deliveries carry a timestamp checked against a tolerance.
    pub fn is_timestamped(&self) -> bool {
        match self {
            Scheme::Stripe | Scheme::Slack | Scheme::StandardWebhooks => true,
            Scheme::Hmac(g) => g.timestamp_header.is_some(),
            Scheme::GitHub | Scheme::GitLab | Scheme::Shopify => false,
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

    /// Checks a delivery against every active secret (rotation), at unix time `now`.
    pub fn verify(
        &self,
        secrets: &[SecretString],
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now: i64,
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
            Scheme::Hmac(g) => g.verify(delivery),
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
            Scheme::Stripe => Some(stripe::EVENT_ID),
            Scheme::Slack => Some(slack::EVENT_ID),
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
        match self {
            Scheme::GitHub => github::SIGNING.sign(secret, body, delivery_id),
            Scheme::Stripe => stripe::sign(secret, body, now),
            Scheme::Slack => slack::sign(secret, body, now),
            Scheme::StandardWebhooks => standard::sign(secret, body, now, delivery_id),
            Scheme::GitLab => gitlab::sign(secret, delivery_id),
            Scheme::Shopify => shopify::SIGNING.sign(secret, body, delivery_id),
            Scheme::Hmac(g) => g.sign(secret, body, now, delivery_id),
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

#[cfg(test)]
mod tests;
