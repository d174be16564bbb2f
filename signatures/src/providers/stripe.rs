//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]`, an HMAC-SHA256 in hex of `<ts>.<body>`,
//! one `v1` per signing secret while they are rolled. Retries resend the event, so the dedup key
//! is the event's `id` in the signed body. No handshake.

use secrecy::{ExposeSecret, SecretString};

use crate::primitives::{any_key, header, hex, hmac, listed, raw_keys};
use crate::{Algorithm, Delivery, Headers, Rejection, Verified};

const SIGNATURE: &str = "Stripe-Signature";

/// Where the event names itself in the signed body.
pub(crate) const EVENT_ID: &str = "/id";

/// What Stripe signs before the body.
fn signed_prefix(ts: i64) -> String {
    format!("{ts}.")
}

pub(crate) fn verify(delivery: Delivery<'_, impl Headers + ?Sized>) -> Result<Verified, Rejection> {
    let header = delivery.headers.get(SIGNATURE).ok_or(Rejection::Missing)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for pair in header.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            // Other schemes (v0, …) are ignored, as Stripe's library does.
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(Rejection::Malformed)?;
    if signatures.is_empty() {
        return Err(Rejection::Malformed);
    }
    let prefix = signed_prefix(t);
    any_key(raw_keys(delivery.secrets), |key| {
        let mac = hmac(Algorithm::Sha256, key, &[prefix.as_bytes(), delivery.body]);
        listed(&signatures, &hex(&mac))
    })?;
    // Stripe's library refuses old timestamps only; so do we.
    if t < delivery.now.secs().saturating_sub(delivery.tolerance_secs) {
        return Err(Rejection::Stale);
    }
    Ok(Verified {
        timestamp: Some(t),
        ..Verified::default()
    })
}

pub(crate) fn sign(secret: &SecretString, body: &[u8], now: i64) -> Vec<(String, String)> {
    let prefix = signed_prefix(now);
    let key = secret.expose_secret().as_bytes();
    let mac = hmac(Algorithm::Sha256, key, &[prefix.as_bytes(), body]);
    vec![header(SIGNATURE, format!("t={now},v1={}", hex(&mac)))]
}
