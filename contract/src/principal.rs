//! Who sent a request: an API key (by its name) or a webhook source. Recorded as a dispatch's
//! sender and as an audit entry's principal, written `name` for a key and `source:name` for a
//! source; the store's `source` filter and `flyhook audit --principal` read the same form.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Key(String),
    Source(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Key(name) => f.write_str(name),
            Principal::Source(name) => write!(f, "source:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Principal;

    #[test]
    fn keys_are_their_name_and_sources_are_prefixed() {
        assert_eq!(Principal::Key("ci".into()).to_string(), "ci");
        assert_eq!(
            Principal::Source("github".into()).to_string(),
            "source:github"
        );
    }
}
