//! What the status store and the queue can hold, and what they cannot: PostgreSQL's `text`
//! and `jsonb` refuse the NUL character (`\u0000`), which JSON allows; and the worker reads its
//! messages with serde_json's recursion limit (128 levels, the message itself taking a few), so
//! inputs nested deeper could be accepted but never read. Either would be accepted and never
//! recorded, so the ingress refuses such inputs at the door (422, naming the field), and texts
//! that reach the store from elsewhere (Flyte's outputs and error messages, a provider's
//! delivery id) are made storable on the way in.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// What stands in for a NUL in text that must be stored: the Unicode replacement character.
const REPLACEMENT: char = '\u{FFFD}';

/// The deepest nesting of arrays and objects an input may have (well within what the worker
/// can read back, and far beyond what any task interface needs).
pub const MAX_DEPTH: usize = 64;

/// Why an input cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unstorable {
    #[error("input {0} holds a NUL character (\\u0000), which flyhook cannot store")]
    Nul(String),
    #[error("input {0} is nested deeper than {MAX_DEPTH} levels")]
    TooDeep(String),
}

impl Unstorable {
    /// The path of the input at fault: `label`, `items[2].name`.
    pub fn field(&self) -> &str {
        match self {
            Unstorable::Nul(field) | Unstorable::TooDeep(field) => field,
        }
    }
}

/// The first input that cannot be taken (a NUL in a key or a string, or nesting deeper than
/// [`MAX_DEPTH`]), if any.
pub fn unstorable_field(inputs: &Map<String, Value>) -> Option<Unstorable> {
    unstorable_in(inputs, 1).map(|(path, why)| why(path))
}

type Why = fn(String) -> Unstorable;

fn unstorable_in(map: &Map<String, Value>, depth: usize) -> Option<(String, Why)> {
    map.iter().find_map(|(key, value)| {
        if key.contains('\0') {
            return Some((key.replace('\0', "\\u0000"), Unstorable::Nul as Why));
        }
        unstorable_path(value, depth).map(|(rest, why)| (format!("{key}{rest}"), why))
    })
}

fn unstorable_path(value: &Value, depth: usize) -> Option<(String, Why)> {
    let nested = matches!(value, Value::Array(_) | Value::Object(_));
    if nested && depth >= MAX_DEPTH {
        return Some((String::new(), Unstorable::TooDeep as Why));
    }
    match value {
        Value::String(text) => text
            .contains('\0')
            .then(|| (String::new(), Unstorable::Nul as Why)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            unstorable_path(item, depth + 1).map(|(rest, why)| (format!("[{i}]{rest}"), why))
        }),
        Value::Object(map) => {
            unstorable_in(map, depth + 1).map(|(path, why)| (format!(".{path}"), why))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The longest provider delivery id recorded (and indexed) with a dispatch. Real ones are
/// GUIDs or short tokens; a longer one comes from a hostile or broken sender (some providers do
/// not sign their id header), and recording it would overflow the index entry.
pub const MAX_RECORDED_DELIVERY_ID: usize = 200;

/// A provider's delivery id as recorded: storable, or not recorded at all when longer than
/// [`MAX_RECORDED_DELIVERY_ID`] (the dispatch is still made; only finding it by that id fails).
pub fn recordable_delivery_id(id: &str) -> Option<String> {
    (id.len() <= MAX_RECORDED_DELIVERY_ID).then(|| storable_text(id).into_owned())
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

    #[test]
    fn only_delivery_ids_of_a_sane_length_are_recorded() {
        assert_eq!(
            recordable_delivery_id("a\0b").as_deref(),
            Some("a\u{fffd}b")
        );
        let longest = "x".repeat(MAX_RECORDED_DELIVERY_ID);
        assert_eq!(recordable_delivery_id(&longest), Some(longest.clone()));
        assert_eq!(recordable_delivery_id(&format!("{longest}x")), None);
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn nul_at(inputs: Value) -> Option<String> {
        match unstorable_field(&object(inputs))? {
            Unstorable::Nul(field) => Some(field),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_first_nul_is_named_by_its_path() {
        assert_eq!(unstorable_field(&object(json!({"a": 1, "b": "ok"}))), None);
        assert_eq!(
            nul_at(json!({"a": 1, "label": "nul\u{0}here"})).as_deref(),
            Some("label")
        );
        assert_eq!(
            nul_at(json!({"items": [{"n": "x"}, {"n": "\u{0}"}]})).as_deref(),
            Some("items[1].n")
        );
        assert_eq!(nul_at(json!({"k\u{0}": 1})).as_deref(), Some("k\\u0000"));
    }

    #[test]
    fn nesting_is_bounded_below_what_the_worker_can_read() {
        let nested = |depth: usize| (1..depth).fold(json!(1), |inner, _| json!([inner]));
        // `{"x": …}` is one level; the value below it adds the rest.
        assert_eq!(
            unstorable_field(&object(json!({"x": nested(MAX_DEPTH - 1)}))),
            None
        );
        let too_deep = unstorable_field(&object(json!({"x": nested(MAX_DEPTH + 1)}))).unwrap();
        assert!(matches!(too_deep, Unstorable::TooDeep(_)), "{too_deep}");
        assert!(too_deep.field().starts_with("x[0]"), "{}", too_deep.field());
        // What is allowed, wrapped in a queue message, still reads back.
        let message = json!({"type": "delivery_v1", "dispatches": [{"inputs": {"x": nested(MAX_DEPTH - 1)}}]});
        let text = message.to_string();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
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
