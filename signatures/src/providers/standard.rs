//! Standard Webhooks: `webhook-signature: v1,<base64>[ v1,<base64> …]`, an HMAC-SHA256 of
//! `<id>.<ts>.<body>`, `<id>` from `webhook-id` and `<ts>` from `webhook-timestamp`, keyed by the
//! base64 after a secret's `whsec_`. The id is signed, so it is the dedup key. No handshake.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};

use crate::primitives::{any_key, header, hmac, listed, timestamp};
use crate::{Algorithm, Delivery, Headers, Rejection, Verified};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// The key of a secret: base64 after an optional `whsec_`.
fn key(secret: &SecretString) -> Option<Vec<u8>> {
    let text = secret.expose_secret();
    BASE64
        .decode(text.strip_prefix("whsec_").unwrap_or(text))
        .ok()
}

/// What is signed before the body.
fn signed_prefix(id: &str, ts: i64) -> String {
    format!("{id}.{ts}.")
}

pub(crate) fn verify(delivery: Delivery<'_, impl Headers + ?Sized>) -> Result<Verified, Rejection> {
    let id = delivery.headers.get(ID).ok_or(Rejection::Missing)?;
    let ts = timestamp(delivery.headers, TIMESTAMP)?;
    let header = delivery.headers.get(SIGNATURE).ok_or(Rejection::Missing)?;
    delivery.check_window(ts)?;
    // Other versions are ignored, as the reference libraries do.
    let signatures: Vec<&str> = header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, sig)| sig)
        .collect();
    let prefix = signed_prefix(id, ts);
    // A secret that is not base64 signs nothing; the others still may.
    any_key(delivery.secrets.iter().filter_map(key), |key| {
        let mac = hmac(Algorithm::Sha256, key, &[prefix.as_bytes(), delivery.body]);
        listed(&signatures, &BASE64.encode(mac))
    })?;
    Ok(Verified {
        delivery_id: Some(id.to_string()),
        id_is_signed: true,
        timestamp: Some(ts),
    })
}

pub(crate) fn sign(
    secret: &SecretString,
    body: &[u8],
    now: i64,
    delivery_id: &str,
) -> Vec<(String, String)> {
    let key = key(secret).unwrap_or_default();
    let prefix = signed_prefix(delivery_id, now);
    let mac = hmac(Algorithm::Sha256, &key, &[prefix.as_bytes(), body]);
    vec![
        header(ID, delivery_id),
        header(TIMESTAMP, now),
        header(SIGNATURE, format!("v1,{}", BASE64.encode(mac))),
    ]
}
