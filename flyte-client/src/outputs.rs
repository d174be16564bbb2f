//! Turns Flyte literals back into plain JSON, so outputs can be stored and shown to a webhook
//! sender who never heard of literals. Whatever has no JSON form becomes a placeholder object
//! that says what it was; conversion never fails.

use serde_json::{Map, Value, json};

use crate::literal::{Literal, LiteralKind, NamedLiteral};

/// `{"o0": …, "o1": …}` for a list of named literals.
pub fn literals_to_json(literals: &[NamedLiteral]) -> Map<String, Value> {
    literals
        .iter()
        .map(|named| (named.name.clone(), literal_to_json(&named.value)))
        .collect()
}

/// One literal as JSON: primitives as values (64-bit integers stay exact), collections as
/// arrays, maps and generic structs as objects, unions as their value, none as null.
pub fn literal_to_json(literal: &Literal) -> Value {
    match literal.kind() {
        LiteralKind::Integer(i) => json!(i),
        LiteralKind::Float(f) => {
            // JSON has no NaN or infinity: keep the information as text.
            serde_json::Number::from_f64(f).map_or_else(|| json!(f.to_string()), Value::Number)
        }
        LiteralKind::String(s) | LiteralKind::Datetime(s) | LiteralKind::Duration(s) => json!(s),
        LiteralKind::Boolean(b) => json!(b),
        LiteralKind::None => Value::Null,
        LiteralKind::Generic(map) => Value::Object(map.clone()),
        LiteralKind::Union(inner) => literal_to_json(inner),
        LiteralKind::Collection(items) => items.iter().map(literal_to_json).collect(),
        LiteralKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), literal_to_json(v)))
                .collect(),
        ),
        LiteralKind::Binary(binary) => json!({
            "unsupported_literal": format!(
                "binary value{} ({} base64 characters)",
                if binary.tag.is_empty() { String::new() } else { format!(" tagged {:?}", binary.tag) },
                binary.value.len()
            )
        }),
        LiteralKind::Other => {
            let described = match &literal.scalar {
                Some(scalar) if scalar.blob.is_some() => "blob (a file or directory)",
                _ => "a literal of a kind flyhook does not know",
            };
            json!({ "unsupported_literal": described })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::literal::LiteralType;
    use std::collections::BTreeMap;

    #[test]
    fn values_come_back_as_plain_json() {
        let mut map = BTreeMap::new();
        map.insert("k".to_string(), Literal::boolean(true));
        let cases = [
            (
                Literal::integer(9_007_199_254_740_993),
                json!(9_007_199_254_740_993_i64),
            ),
            (Literal::float(2.5), json!(2.5)),
            (Literal::string("a"), json!("a")),
            (
                Literal::datetime("2024-05-01T12:00:00Z"),
                json!("2024-05-01T12:00:00Z"),
            ),
            (Literal::duration("90s"), json!("90s")),
            (Literal::none(), json!(null)),
            (
                Literal::collection(vec![Literal::integer(1), Literal::none()]),
                json!([1, null]),
            ),
            (Literal::map(map), json!({"k": true})),
            (
                Literal::union(Literal::integer(3), LiteralType::default()),
                json!(3),
            ),
            (
                Literal::generic(json!({"a": [1]}).as_object().unwrap().clone()),
                json!({"a": [1]}),
            ),
        ];
        for (literal, expected) in cases {
            assert_eq!(literal_to_json(&literal), expected);
        }
    }

    #[test]
    fn unknown_kinds_become_described_placeholders() {
        let offloaded: Literal =
            serde_json::from_value(json!({"offloadedMetadata": {"uri": "s3://x"}})).unwrap();
        // Unmodelled members are dropped on parse, so the literal looks empty.
        assert_eq!(
            literal_to_json(&offloaded)["unsupported_literal"],
            json!("a literal of a kind flyhook does not know")
        );
        let blob: Literal =
            serde_json::from_value(json!({"scalar": {"blob": {"uri": "s3://x"}}})).unwrap();
        assert_eq!(
            literal_to_json(&blob)["unsupported_literal"],
            json!("blob (a file or directory)")
        );
        let binary: Literal = serde_json::from_value(
            json!({"scalar": {"binary": {"value": "gqFhAQ==", "tag": "msgpack"}}}),
        )
        .unwrap();
        assert!(
            literal_to_json(&binary)["unsupported_literal"]
                .as_str()
                .unwrap()
                .contains("msgpack")
        );
    }
}
