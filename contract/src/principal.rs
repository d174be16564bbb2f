//! Who sent a request: an API key (by its name) or a webhook source. Recorded as a dispatch's
//! sender and as an audit entry's principal, written `name` for a key and `source:name` for a
//! source; the store's `source` filter and `flyhook audit --principal` read the same form.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Key(String),
    Source(String),
}

impl Principal {
    /// Reads the written form back (`source:github` is a source, anything else a key).
    pub fn parse(text: &str) -> Principal {
        match text.strip_prefix("source:") {
            Some(source) => Principal::Source(source.to_string()),
            None => Principal::Key(text.to_string()),
        }
    }
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
        for principal in [Principal::Key("ci".into()), Principal::Source("gh".into())] {
            assert_eq!(Principal::parse(&principal.to_string()), principal);
        }
    }
}
