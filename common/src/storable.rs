//! What the status store can hold, and what it cannot: PostgreSQL's `text` and `jsonb` refuse
//! the NUL character (`\u0000`), which JSON allows. A dispatch whose inputs hold one could be
//! accepted but never recorded, and would stall every batch it joined; so the ingress refuses
//! such inputs at the door (422, naming the field), and texts that reach the store from
//! elsewhere (Flyte's outputs and error messages, a provider's delivery id) are made storable
//! on the way in.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// What stands in for a NUL in text that must be stored: the Unicode replacement character.
const REPLACEMENT: char = '\u{FFFD}';

/// The path of the first input that holds a NUL (in a key or a string, at any depth):
/// `label`, `items[2].name`. `None` when everything can be stored.
pub fn unstorable_field(inputs: &Map<String, Value>) -> Option<String> {
    inputs.iter().find_map(|(key, value)| {
        if key.contains('\0') {
            return Some(key.replace('\0', "\\u0000"));
        }
        unstorable_path(value).map(|rest| format!("{key}{rest}"))
    })
}

fn unstorable_path(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| unstorable_path(item).map(|rest| format!("[{i}]{rest}"))),
        Value::Object(map) => unstorable_field(map).map(|path| format!(".{path}")),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// `text`, with every NUL replaced so PostgreSQL takes it.
pub fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', &REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value`, with every NUL in its keys and strings replaced so PostgreSQL's `jsonb` takes it.
pub fn storable_json(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(storable_text(&text).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (storable_text(&key).into_owned(), storable_json(value)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_first_nul_is_named_by_its_path() {
        assert_eq!(unstorable_field(&object(json!({"a": 1, "b": "ok"}))), None);
        assert_eq!(
            unstorable_field(&object(json!({"a": 1, "label": "nul\u{0}here"}))).as_deref(),
            Some("label")
        );
        assert_eq!(
            unstorable_field(&object(json!({"items": [{"n": "x"}, {"n": "\u{0}"}]}))).as_deref(),
            Some("items[1].n")
        );
        assert_eq!(
            unstorable_field(&object(json!({"k\u{0}": 1}))).as_deref(),
            Some("k\\u0000")
        );
    }

    #[test]
    fn nuls_are_replaced_everywhere_and_nothing_else_changes() {
        assert!(matches!(storable_text("plain"), Cow::Borrowed("plain")));
        assert_eq!(storable_text("a\u{0}b"), "a\u{FFFD}b");
        assert_eq!(
            storable_json(json!({"k\u{0}": ["\u{0}", 1, null, {"x": "y"}]})),
            json!({"k\u{FFFD}": ["\u{FFFD}", 1, null, {"x": "y"}]})
        );
    }
}
