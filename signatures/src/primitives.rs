//! What every scheme builds on: HMAC, hex, constant-time comparison against each active secret,
//! the timestamp window and the body digest.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::{Algorithm, Headers, Rejection};

pub(crate) fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
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
pub(crate) fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The secrets' text as HMAC keys (Standard Webhooks alone decodes its secrets first).
pub(crate) fn raw_keys(secrets: &[SecretString]) -> impl Iterator<Item = &[u8]> {
    secrets.iter().map(|s| s.expose_secret().as_bytes())
}

/// `Ok` when `signed_with` holds for some key: during a rotation any active secret may have
/// signed.
pub(crate) fn any_key<K: AsRef<[u8]>>(
    keys: impl IntoIterator<Item = K>,
    signed_with: impl Fn(&[u8]) -> bool,
) -> Result<(), Rejection> {
    if keys.into_iter().any(|key| signed_with(key.as_ref())) {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// `Ok` when some secret's HMAC over `parts` is `given`, the MAC a header carried.
pub(crate) fn check_mac(
    secrets: &[SecretString],
    algorithm: Algorithm,
    parts: &[&[u8]],
    given: &[u8],
) -> Result<(), Rejection> {
    any_key(raw_keys(secrets), |key| {
        equal(&hmac(algorithm, key, parts), given)
    })
}

/// Whether `expected` is among the signatures one header lists (Stripe, Standard Webhooks):
/// their libraries compare the encoded text, so we do too.
pub(crate) fn listed(signatures: &[&str], expected: &str) -> bool {
    signatures
        .iter()
        .any(|sig| equal(sig.as_bytes(), expected.as_bytes()))
}

/// `Stale` when `ts` is further than `tolerance` from `now` in either direction (always, for a
/// negative tolerance); all three in one unit. `abs_diff` cannot overflow, so `ts = i64::MIN` is
/// stale, not a panic.
pub(crate) fn check_window(now: i64, ts: i64, tolerance: i64) -> Result<(), Rejection> {
    if u64::try_from(tolerance).is_ok_and(|tolerance| now.abs_diff(ts) <= tolerance) {
        Ok(())
    } else {
        Err(Rejection::Stale)
    }
}

/// [`check_window`] in milliseconds (Linear's timestamps), the tolerance still in seconds.
pub(crate) fn check_window_millis(
    now_ms: i64,
    ts_ms: i64,
    tolerance_secs: i64,
) -> Result<(), Rejection> {
    check_window(now_ms, ts_ms, tolerance_secs.saturating_mul(1000))
}

/// The unix time in header `name`.
pub(crate) fn timestamp(headers: &(impl Headers + ?Sized), name: &str) -> Result<i64, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing)?
        .trim()
        .parse()
        .map_err(|_| Rejection::Malformed)
}

/// The first 16 bytes of the body's SHA-256, in hex: a provider's retry resends the same bytes.
pub(crate) fn body_digest(body: &[u8]) -> String {
    hex(&Sha256::digest(body)[..16])
}

/// One header of a signed delivery, as `sign` returns them.
pub(crate) fn header(name: &str, value: impl ToString) -> (String, String) {
    (name.to_string(), value.to_string())
}
