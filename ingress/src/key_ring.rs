//! The key ring: the API keys this ingress accepts, held in memory as SHA-256 digests. A
//! presented key is hashed and looked up by digest, and the final comparison is constant-time.
//! Looking up by digest leaks nothing useful about the key through timing (an attacker would
//! have to invert SHA-256 to steer it).
//!
//! Keys come from the configuration (unrestricted or scoped) and from `flyhook keys create`
//! (stored in PostgreSQL, reloaded by [`crate::auth`]).

use std::collections::HashMap;
use std::fmt;

use flyhook_contract::keys::KeyOwner;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A key as presented in `Authorization: Bearer …`.
pub struct ApiKey(SecretString);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("no bearer API key was sent")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
}

impl ApiKey {
    /// Takes the value of an `Authorization` header.
    pub fn from_authorization_header(header: Option<&str>) -> Result<ApiKey, ApiKeyError> {
        let value = header.ok_or(ApiKeyError::Missing)?;
        let (scheme, key) = value.split_once(' ').ok_or(ApiKeyError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiKeyError::Missing);
        }
        ApiKey::parse(key.trim())
    }

    pub fn parse(key: &str) -> Result<ApiKey, ApiKeyError> {
        if key.is_empty() || key.len() > 512 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError::Invalid);
        }
        Ok(ApiKey(SecretString::from(key.to_string())))
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }
}

/// The valid keys of a deployment.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_digest: HashMap<[u8; 32], KeyOwner>,
}

impl KeyRing {
    /// Adds a key by its raw digest.
    pub fn add_raw_digest(&mut self, digest: [u8; 32], owner: KeyOwner) {
        self.by_digest.insert(digest, owner);
    }

    /// Whether a key by this name is in the ring.
    pub fn has_name(&self, name: &str) -> bool {
        self.by_digest.values().any(|owner| owner.name == name)
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Adds a key by its digest (64 hex digits).
    pub fn add_digest(&mut self, digest_hex: &str, owner: KeyOwner) -> anyhow::Result<()> {
        let hex = digest_hex.trim().to_ascii_lowercase();
        anyhow::ensure!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "key {:?}: sha256 must be 64 hex digits",
            owner.name
        );
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
        }
        self.add_raw_digest(digest, owner);
        Ok(())
    }

    /// Adds a key given in clear (from the environment); only its digest is kept.
    pub fn add_key(&mut self, key: &SecretString, owner: KeyOwner) -> anyhow::Result<()> {
        let key = ApiKey::parse(key.expose_secret()).map_err(|_| {
            anyhow::anyhow!("key {:?} has characters a header cannot carry", owner.name)
        })?;
        self.by_digest.insert(key.digest(), owner);
        Ok(())
    }

    pub fn owners(&self) -> impl Iterator<Item = &KeyOwner> {
        self.by_digest.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The owner of `key`, if it is one of ours.
    pub fn authenticate(&self, key: &ApiKey) -> Result<&KeyOwner, ApiKeyError> {
        self.owner_of_digest(&key.digest())
    }

    /// The owner of the key with this digest (a console session's key), if it is one of ours.
    pub fn owner_of_digest(&self, digest: &[u8; 32]) -> Result<&KeyOwner, ApiKeyError> {
        self.by_digest
            .get_key_value(digest)
            .filter(|(stored, _)| bool::from(stored.ct_eq(digest)))
            .map(|(_, owner)| owner)
            .ok_or(ApiKeyError::Invalid)
    }
}
#[cfg(test)]
mod tests {
    use flyhook_contract::keys::{GeneratedKey, key_digest_hex};
    use flyhook_contract::scopes::Scopes;

    use super::*;

    fn owner(name: &str) -> KeyOwner {
        KeyOwner {
            name: name.into(),
            rate_limit: None,
            scopes: Scopes::unrestricted(),
        }
    }

    #[test]
    fn generated_keys_authenticate_by_digest() {
        let generated = GeneratedKey::generate().unwrap();
        let mut ring = KeyRing::default();
        ring.add_raw_digest(generated.digest, owner("generated"));
        let presented = ApiKey::parse(generated.key.expose_secret()).unwrap();
        assert_eq!(ring.authenticate(&presented).unwrap().name, "generated");
    }

    #[test]
    fn keys_in_clear_and_by_digest_both_authenticate() {
        let mut ring = KeyRing::default();
        ring.add_key(&SecretString::from("k-one"), owner("one"))
            .unwrap();
        ring.add_digest(&key_digest_hex("k-two"), owner("two"))
            .unwrap();
        let one = ApiKey::from_authorization_header(Some("Bearer k-one")).unwrap();
        assert_eq!(ring.authenticate(&one).unwrap().name, "one");
        let two = ApiKey::from_authorization_header(Some("bearer k-two")).unwrap();
        assert_eq!(ring.authenticate(&two).unwrap().name, "two");
        let wrong = ApiKey::parse("k-three").unwrap();
        assert_eq!(ring.authenticate(&wrong), Err(ApiKeyError::Invalid));
    }

    #[test]
    fn malformed_headers_are_missing_or_invalid() {
        assert_eq!(
            ApiKey::from_authorization_header(None).unwrap_err(),
            ApiKeyError::Missing
        );
        assert_eq!(
            ApiKey::from_authorization_header(Some("Basic abc")).unwrap_err(),
            ApiKeyError::Missing
        );
        assert_eq!(
            ApiKey::from_authorization_header(Some("Bearer ")).unwrap_err(),
            ApiKeyError::Invalid
        );
        assert_eq!(
            ApiKey::from_authorization_header(Some("Bearer")).unwrap_err(),
            ApiKeyError::Invalid
        );
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        assert!(!format!("{:?}", ApiKey::parse("hunter2").unwrap()).contains("hunter2"));
    }
}
