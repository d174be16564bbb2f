//! GitLab: `X-Gitlab-Token: <secret>`, the secret itself. It is a shared password: it covers
//! neither the body nor `X-Gitlab-Event-UUID` (or `Idempotency-Key`), which names the delivery,
//! so the dedup key is a digest of the body. No handshake.

use secrecy::{ExposeSecret, SecretString};

use crate::primitives::{any_key, equal, header, raw_keys};
use crate::{Headers, Rejection, Verified};

const TOKEN: &str = "X-Gitlab-Token";
const EVENT_UUID: &str = "X-Gitlab-Event-UUID";

pub(crate) fn verify(
    secrets: &[SecretString],
    headers: &(impl Headers + ?Sized),
) -> Result<Verified, Rejection> {
    let token = headers.get(TOKEN).ok_or(Rejection::Missing)?;
    any_key(raw_keys(secrets), |key| equal(token.as_bytes(), key))?;
    Ok(Verified {
        delivery_id: headers
            .get(EVENT_UUID)
            .or_else(|| headers.get("Idempotency-Key"))
            .map(str::to_string),
        ..Verified::default()
    })
}

pub(crate) fn sign(secret: &SecretString, delivery_id: &str) -> Vec<(String, String)> {
    vec![
        header(TOKEN, secret.expose_secret()),
        header(EVENT_UUID, delivery_id),
    ]
}
