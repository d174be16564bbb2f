//! Flyte run names, and the derivation that makes run creation idempotent: one dispatch id
//! always maps to the same run name, so a retried `CreateRun` cannot start a second run.

use std::fmt;

use uuid::Uuid;

/// A valid Flyte 2 run name: a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`) of 1 to 30
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunName(String);

pub const MAX_RUN_NAME_LEN: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunNameError {
    #[error("a run name must have 1 to {MAX_RUN_NAME_LEN} characters, not {0}")]
    Length(usize),
    #[error("a run name must start with a lowercase letter")]
    Start,
    #[error("a run name must end with a lowercase letter or digit")]
    End,
    #[error("a run name may contain only lowercase letters, digits and '-'")]
    Character,
}

/// Lowercase RFC 4648 base32: letters and digits only, so it fits a DNS label.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl RunName {
    pub fn parse(name: &str) -> Result<RunName, RunNameError> {
        let len = name.len();
        if len == 0 || len > MAX_RUN_NAME_LEN {
            return Err(RunNameError::Length(name.chars().count()));
        }
        let bytes = name.as_bytes();
        if !bytes[0].is_ascii_lowercase() {
            return Err(RunNameError::Start);
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(RunNameError::Character);
        }
        if bytes[len - 1] == b'-' {
            return Err(RunNameError::End);
        }
        Ok(RunName(name.to_string()))
    }

    /// `wh-` followed by the 128 bits of the dispatch id in base32 (26 characters): 29
    /// characters in all, distinct for distinct ids, and the same every time for one id.
    pub fn for_dispatch(dispatch_id: Uuid) -> RunName {
        let value = dispatch_id.as_u128();
        let mut name = String::with_capacity(29);
        name.push_str("wh-");
        // 26 groups of 5 bits cover 130 bits; the first group holds the top 3 bits.
        for group in (0..26).rev() {
            let index = ((value >> (group * 5)) & 0x1f) as usize;
            name.push(BASE32[index] as char);
        }
        RunName(name)
    }

    /// The dispatch id a [`RunName::for_dispatch`] name was made from, so a run seen in Flyte
    /// leads back to its dispatch; `None` for any other name (the first group holds only 3
    /// bits, so a name with more there was not derived).
    pub fn dispatch_uuid(name: &str) -> Option<Uuid> {
        let groups = name.strip_prefix("wh-")?.as_bytes();
        if groups.len() != 26 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, byte) in groups.iter().enumerate() {
            let index = BASE32.iter().position(|b| b == byte)? as u128;
            if i == 0 && index > 0b111 {
                return None;
            }
            value = (value << 5) | index;
        }
        Some(Uuid::from_u128(value))
    }
}

impl AsRef<str> for RunName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_valid_stable_and_distinct() {
        for id in [Uuid::nil(), Uuid::max(), Uuid::now_v7(), Uuid::new_v4()] {
            let name = RunName::for_dispatch(id);
            assert_eq!(RunName::parse(name.as_ref()), Ok(name.clone()), "{name}");
            assert_eq!(name.as_ref().len(), 29);
            assert_eq!(RunName::for_dispatch(id), name);
            assert_eq!(RunName::dispatch_uuid(name.as_ref()), Some(id));
        }
        for other in [
            "wh-",
            "hello",
            "wh-aaaaaaaaaaaaaaaaaaaaaaaaa1",
            "wh-iaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(RunName::dispatch_uuid(other), None, "{other}");
        }
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_ne!(RunName::for_dispatch(a), RunName::for_dispatch(b));
        // The top bits matter too (they land in the first base32 group).
        assert_ne!(
            RunName::for_dispatch(Uuid::from_u128(1 << 127)),
            RunName::for_dispatch(Uuid::nil())
        );
    }

    #[test]
    fn names_are_checked_against_flyte_rules() {
        assert!(RunName::parse("a").is_ok());
        assert!(RunName::parse(&"a".repeat(30)).is_ok());
        assert_eq!(
            RunName::parse(&"a".repeat(31)),
            Err(RunNameError::Length(31))
        );
        assert_eq!(RunName::parse(""), Err(RunNameError::Length(0)));
        assert_eq!(RunName::parse("1abc"), Err(RunNameError::Start));
        assert_eq!(RunName::parse("-abc"), Err(RunNameError::Start));
        assert_eq!(RunName::parse("abc-"), Err(RunNameError::End));
        assert_eq!(RunName::parse("aBc"), Err(RunNameError::Character));
        assert_eq!(RunName::parse("a_b"), Err(RunNameError::Character));
        assert_eq!(RunName::parse("aé"), Err(RunNameError::Character));
    }
}
