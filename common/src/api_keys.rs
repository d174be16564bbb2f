//! Bearer API keys. Keys are kept only as SHA-256 digests: a presented key is hashed and looked
//! up by digest, and the final comparison is constant-time. Looking up by digest leaks nothing
//! useful about the key through timing (an attacker would have to invert SHA-256 to steer it).
//!
//! Keys come from the configuration (unrestricted) or from `flyhook keys create` (stored in
//! PostgreSQL, see [`crate::key_store`]), each with the scopes of tasks it may start.

use std::collections::HashMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::dispatch::TaskRef;

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

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }
}

/// The SHA-256 of a key, as hex: what the config file stores instead of the key.
pub fn key_digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Per-key request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub name: String,
    pub rate_limit: Option<RateLimit>,
    pub scopes: Scopes,
}

/// The tasks one scope covers: every task (`*`), a project, a project's domain, or one task
/// (every version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    project: Option<String>,
    domain: Option<String>,
    task: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason}")]
pub struct InvalidScope {
    scope: String,
    reason: String,
}

impl Scope {
    /// Every task.
    pub const ALL: Scope = Scope {
        project: None,
        domain: None,
        task: None,
    };

    /// `*`, `project`, `project/domain` or `project/domain/task`.
    pub fn parse(text: &str) -> Result<Scope, InvalidScope> {
        let invalid = |reason: String| InvalidScope {
            scope: text.to_string(),
            reason,
        };
        if text == "*" {
            return Ok(Scope::ALL);
        }
        let mut parts = text.split('/');
        let project = parts.next().unwrap_or_default();
        let domain = parts.next();
        let task = parts.next();
        if parts.next().is_some() {
            return Err(invalid("at most three parts: project/domain/task".into()));
        }
        crate::dispatch::check_label("project", project).map_err(|e| invalid(e.to_string()))?;
        if let Some(domain) = domain {
            crate::dispatch::check_label("domain", domain).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(task) = task {
            crate::dispatch::check_identifier("task", task, 255)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Scope {
            project: Some(project.into()),
            domain: domain.map(Into::into),
            task: task.map(Into::into),
        })
    }

    pub fn allows(&self, task: &TaskRef) -> bool {
        let matches =
            |part: &Option<String>, value: &str| part.as_deref().is_none_or(|p| p == value);
        matches(&self.project, task.project())
            && matches(&self.domain, task.domain())
            && matches(&self.task, task.name())
    }

    /// (project, domain, task); `None` parts match anything, and an all-`None` scope is `*`.
    pub fn parts(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            self.project.as_deref(),
            self.domain.as_deref(),
            self.task.as_deref(),
        )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            (None, _, _) => f.write_str("*"),
            (Some(p), None, _) => f.write_str(p),
            (Some(p), Some(d), None) => write!(f, "{p}/{d}"),
            (Some(p), Some(d), Some(t)) => write!(f, "{p}/{d}/{t}"),
        }
    }
}

/// What a key may do: start (and look at, cancel, replay) dispatches of the tasks its scopes
/// cover. Only an unrestricted key (`*`) may read the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn unrestricted() -> Scopes {
        Scopes(vec![Scope::ALL])
    }

    /// At least one scope; `*` among others is just `*`.
    pub fn new(scopes: Vec<Scope>) -> Result<Scopes, InvalidScope> {
        if scopes.is_empty() {
            return Err(InvalidScope {
                scope: String::new(),
                reason: "a key needs at least one scope".into(),
            });
        }
        if scopes.contains(&Scope::ALL) {
            return Ok(Scopes::unrestricted());
        }
        Ok(Scopes(scopes))
    }

    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Scopes, InvalidScope> {
        Scopes::new(
            texts
                .iter()
                .map(|t| Scope::parse(t.as_ref()))
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn is_unrestricted(&self) -> bool {
        self.0.contains(&Scope::ALL)
    }

    pub fn allows(&self, task: &TaskRef) -> bool {
        self.0.iter().any(|scope| scope.allows(task))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(","))
    }
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
        let digest = key.digest();
        self.by_digest
            .get_key_value(&digest)
            .filter(|(stored, _)| bool::from(stored.ct_eq(&digest)))
            .map(|(_, owner)| owner)
            .ok_or(ApiKeyError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> KeyOwner {
        KeyOwner {
            name: name.into(),
            rate_limit: None,
            scopes: Scopes::unrestricted(),
        }
    }

    #[test]
    fn scopes_cover_projects_domains_and_tasks() {
        let task = |p: &str, d: &str, n: &str| TaskRef::parse(p, d, n, "v1").unwrap();
        let scopes = Scopes::parse_all(&["acme/prod", "ml/dev/train.main"]).unwrap();
        assert!(scopes.allows(&task("acme", "prod", "anything")));
        assert!(!scopes.allows(&task("acme", "dev", "anything")));
        assert!(scopes.allows(&task("ml", "dev", "train.main")));
        assert!(!scopes.allows(&task("ml", "dev", "train.other")));
        assert!(!scopes.is_unrestricted());
        assert_eq!(scopes.to_string(), "acme/prod,ml/dev/train.main");
        let all = Scopes::parse_all(&["acme", "*"]).unwrap();
        assert!(all.is_unrestricted() && all.allows(&task("x", "y", "z")));
        for bad in ["", "Acme", "a/b/c/d", "a//c", "a/b/c d"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scopes::parse_all::<&str>(&[]).is_err());
    }

    #[test]
    fn generated_keys_are_recognisable_distinct_and_authenticate_by_digest() {
        let a = GeneratedKey::generate().unwrap();
        let b = GeneratedKey::generate().unwrap();
        let text = a.key.expose_secret();
        assert!(text.starts_with(KEY_PREFIX) && text.len() == KEY_PREFIX.len() + 43);
        assert!(text.starts_with(&a.display_prefix));
        assert_ne!(text, b.key.expose_secret());
        let mut ring = KeyRing::default();
        ring.add_raw_digest(a.digest, owner("generated"));
        let presented = ApiKey::parse(text).unwrap();
        assert_eq!(ring.authenticate(&presented).unwrap().name, "generated");
        assert!(!format!("{a:?}").contains(text));
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
