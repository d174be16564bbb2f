//! proto3 JSON encodes 64-bit integers as strings (JavaScript numbers lose precision past 2^53);
//! parsers must accept both strings and numbers. This serde helper does exactly that.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber<T> {
    String(String),
    Number(T),
}

fn parse<'de, D, T>(repr: StringOrNumber<T>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match repr {
        StringOrNumber::Number(n) => Ok(n),
        StringOrNumber::String(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// `#[serde(default, with = "opt_int64")]` for optional 64-bit integer fields.
pub(crate) mod opt_int64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer, T: Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr + Deserialize<'de>,
        T::Err: Display,
    {
        match Option::<StringOrNumber<T>>::deserialize(d)? {
            Some(repr) => parse::<D, T>(repr).map(Some),
            None => Ok(None),
        }
    }
}
