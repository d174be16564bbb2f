//! What an API key is, wherever keys are made, stored or checked: its owner, scopes and rate,
//! the `fhk_` keys `flyhook keys create` generates, and the SHA-256 digest that is all that is
//! ever kept of one.

use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::scopes::Scopes;

/// The SHA-256 of a key, as hex: what the config file stores instead of the key.
pub fn key_digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Per-key request rate: at least one a second, with a burst of at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RateLimitEntry")]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("rate_limit.per_second must be at least 1")]
pub struct ZeroRate;

impl RateLimit {
    /// `per_second` requests a second, bursts of `burst` (`per_second` when absent).
    pub fn new(per_second: u32, burst: Option<u32>) -> Result<RateLimit, ZeroRate> {
        if per_second == 0 {
            return Err(ZeroRate);
        }
        Ok(RateLimit {
            per_second,
            burst: burst.unwrap_or(per_second).max(1),
        })
    }
}

/// `rate_limit = { per_second = 50, burst = 100 }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitEntry {
    per_second: u32,
    burst: Option<u32>,
}

impl TryFrom<RateLimitEntry> for RateLimit {
    type Error = ZeroRate;
    fn try_from(entry: RateLimitEntry) -> Result<RateLimit, ZeroRate> {
        RateLimit::new(entry.per_second, entry.burst)
    }
}

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub name: String,
    pub rate_limit: Option<RateLimit>,
    pub scopes: Scopes,
}

/// What marks a flyhook key, so secret scanners and people recognise one.
pub const KEY_PREFIX: &str = "fhk_";

/// A freshly generated key: shown once, then only its digest is kept.
pub struct GeneratedKey {
    pub key: SecretString,
    /// `fhk_` and the next 8 characters: enough to tell keys apart in a listing.
    pub display_prefix: String,
    pub digest: [u8; 32],
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

impl GeneratedKey {
    /// 256 bits from the operating system's generator.
    pub fn generate() -> anyhow::Result<GeneratedKey> {
        use base64::Engine;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| anyhow::anyhow!("the system's random generator failed: {e}"))?;
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        Ok(GeneratedKey {
            display_prefix: key[..KEY_PREFIX.len() + 8].to_string(),
            digest: Sha256::digest(key.as_bytes()).into(),
            key: SecretString::from(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn generated_keys_are_recognisable_distinct_and_kept_as_their_digest() {
        let a = GeneratedKey::generate().unwrap();
        let b = GeneratedKey::generate().unwrap();
        let text = a.key.expose_secret();
        assert!(text.starts_with(KEY_PREFIX) && text.len() == KEY_PREFIX.len() + 43);
        assert!(text.starts_with(&a.display_prefix));
        assert_ne!(text, b.key.expose_secret());
        assert_eq!(
            key_digest_hex(text),
            a.digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert!(!format!("{a:?}").contains(text));
    }
}
