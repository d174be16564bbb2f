//! Slack: `X-Slack-Signature: v0=<hex>`, an HMAC-SHA256 in lower-case hex of `v0:<ts>:<body>`,
//! `<ts>` from `X-Slack-Request-Timestamp`. Slack sends no delivery id and re-signs each retry
//! with a new timestamp, so the dedup key is the body's `event_id` (Events API), else a digest of
//! the body (slash commands and interactions are forms without an id). Handshake: the
//! `url_verification` challenge Slack sends when an events URL is set.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{MacHeader, MacText};
use crate::primitives::{check_mac, header, hmac, timestamp};
use crate::{Algorithm, Delivery, Headers, Rejection, Verified};

const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
const SIGNATURE: MacHeader = MacHeader {
    name: "X-Slack-Signature",
    prefix: "v0=",
    text: MacText::LowerHex,
};

/// Where an Events API delivery names itself in the signed body.
pub(crate) const EVENT_ID: &str = "/event_id";

/// What Slack signs before the body.
fn signed_prefix(ts: i64) -> String {
    format!("v0:{ts}:")
}

pub(crate) fn verify(delivery: Delivery<'_, impl Headers + ?Sized>) -> Result<Verified, Rejection> {
    let ts = timestamp(delivery.headers, TIMESTAMP)?;
    let given = SIGNATURE.read(delivery.headers)?;
    delivery.check_window(ts)?;
    let prefix = signed_prefix(ts);
    check_mac(
        delivery.secrets,
        Algorithm::Sha256,
        &[prefix.as_bytes(), delivery.body],
        &given,
    )?;
    Ok(Verified {
        timestamp: Some(ts),
        ..Verified::default()
    })
}

pub(crate) fn sign(secret: &SecretString, body: &[u8], now: i64) -> Vec<(String, String)> {
    let prefix = signed_prefix(now);
    let key = secret.expose_secret().as_bytes();
    vec![
        header(TIMESTAMP, now),
        SIGNATURE.write(&hmac(Algorithm::Sha256, key, &[prefix.as_bytes(), body])),
    ]
}

/// The challenge is echoed to prove we hold the URL; it is no event, so nothing starts.
pub(crate) fn handshake(payload: &Value) -> Option<Value> {
    (payload["type"] == "url_verification")
        .then(|| json!({ "challenge": payload["challenge"].clone() }))
}
