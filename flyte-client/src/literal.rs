//! Flyte's typed values (`flyteidl2.core.Literal`) and types (`LiteralType`) in proto3 JSON.
//!
//! Protobuf `oneof`s are modelled as structs of options rather than Rust enums: the server may be
//! newer than this schema, and a response carrying a member we do not know must still parse.
//! [`Literal::kind`] gives the enum view for code that matches on a value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::proto_json::opt_int64;

/// A Flyte value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Literal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Box<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<LiteralCollection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<LiteralMap>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LiteralCollection {
    #[serde(default)]
    pub literals: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LiteralMap {
    #[serde(default)]
    pub literals: BTreeMap<String, Literal>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scalar {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primitive: Option<Primitive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_type: Option<Void>,
    /// `google.protobuf.Struct`: a plain JSON object on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub union: Option<Union>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<Binary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Void {}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Binary {
    /// base64 of the bytes.
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Union {
    pub value: Literal,
    #[serde(rename = "type")]
    pub variant: LiteralType,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Primitive {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_int64")]
    pub integer: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean: Option<bool>,
    /// RFC 3339, UTC, `Z` suffix (proto3 JSON `Timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    /// Seconds with an `s` suffix, e.g. `"90s"`, `"1.5s"` (proto3 JSON `Duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// What a literal holds, for matching.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LiteralKind<'a> {
    Integer(i64),
    Float(f64),
    String(&'a str),
    Boolean(bool),
    Datetime(&'a str),
    Duration(&'a str),
    None,
    Generic(&'a Map<String, Value>),
    Union(&'a Literal),
    Binary(&'a Binary),
    Collection(&'a [Literal]),
    Map(&'a BTreeMap<String, Literal>),
    /// Something this schema does not model (a blob, an offloaded literal, a newer kind).
    Other,
}

impl Literal {
    fn scalar(scalar: Scalar) -> Self {
        Literal {
            scalar: Some(Box::new(scalar)),
            ..Default::default()
        }
    }

    fn primitive(primitive: Primitive) -> Self {
        Self::scalar(Scalar {
            primitive: Some(primitive),
            ..Default::default()
        })
    }

    pub fn integer(v: i64) -> Self {
        Self::primitive(Primitive {
            integer: Some(v),
            ..Default::default()
        })
    }

    pub fn float(v: f64) -> Self {
        Self::primitive(Primitive {
            float_value: Some(v),
            ..Default::default()
        })
    }

    pub fn string(v: impl Into<String>) -> Self {
        Self::primitive(Primitive {
            string_value: Some(v.into()),
            ..Default::default()
        })
    }

    pub fn boolean(v: bool) -> Self {
        Self::primitive(Primitive {
            boolean: Some(v),
            ..Default::default()
        })
    }

    /// `v` must already be a proto3 JSON timestamp (see [`crate::inputs`]).
    pub fn datetime(v: impl Into<String>) -> Self {
        Self::primitive(Primitive {
            datetime: Some(v.into()),
            ..Default::default()
        })
    }

    /// `v` must already be a proto3 JSON duration (see [`crate::inputs`]).
    pub fn duration(v: impl Into<String>) -> Self {
        Self::primitive(Primitive {
            duration: Some(v.into()),
            ..Default::default()
        })
    }

    pub fn none() -> Self {
        Self::scalar(Scalar {
            none_type: Some(Void {}),
            ..Default::default()
        })
    }

    pub fn generic(v: Map<String, Value>) -> Self {
        Self::scalar(Scalar {
            generic: Some(v),
            ..Default::default()
        })
    }

    pub fn union(value: Literal, variant: LiteralType) -> Self {
        Self::scalar(Scalar {
            union: Some(Union { value, variant }),
            ..Default::default()
        })
    }

    pub fn collection(literals: Vec<Literal>) -> Self {
        Literal {
            collection: Some(LiteralCollection { literals }),
            ..Default::default()
        }
    }

    pub fn map(literals: BTreeMap<String, Literal>) -> Self {
        Literal {
            map: Some(LiteralMap { literals }),
            ..Default::default()
        }
    }

    pub fn kind(&self) -> LiteralKind<'_> {
        if let Some(c) = &self.collection {
            return LiteralKind::Collection(&c.literals);
        }
        if let Some(m) = &self.map {
            return LiteralKind::Map(&m.literals);
        }
        let Some(s) = &self.scalar else {
            return LiteralKind::Other;
        };
        if let Some(p) = &s.primitive {
            if let Some(v) = p.integer {
                return LiteralKind::Integer(v);
            }
            if let Some(v) = p.float_value {
                return LiteralKind::Float(v);
            }
            if let Some(v) = &p.string_value {
                return LiteralKind::String(v);
            }
            if let Some(v) = p.boolean {
                return LiteralKind::Boolean(v);
            }
            if let Some(v) = &p.datetime {
                return LiteralKind::Datetime(v);
            }
            if let Some(v) = &p.duration {
                return LiteralKind::Duration(v);
            }
            // proto3 JSON omits default values: an empty primitive is a zero integer on the
            // wire only if the sender wrote one; treat it as unknown rather than guess.
            return LiteralKind::Other;
        }
        if s.none_type.is_some() {
            return LiteralKind::None;
        }
        if let Some(g) = &s.generic {
            return LiteralKind::Generic(g);
        }
        if let Some(u) = &s.union {
            return LiteralKind::Union(&u.value);
        }
        if let Some(b) = &s.binary {
            return LiteralKind::Binary(b);
        }
        LiteralKind::Other
    }
}

/// Flyte's simple types (`flyteidl2.core.SimpleType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleType {
    None,
    Integer,
    Float,
    String,
    Boolean,
    Datetime,
    Duration,
    Binary,
    Error,
    Struct,
    /// A value added to the schema after this client was written.
    #[serde(other)]
    Unrecognized,
}

/// The type of a Flyte value (`flyteidl2.core.LiteralType`).
///
/// Members this client does not interpret (blob, schema, structure, annotations, …) are kept in
/// `other`, so a type read from Flyte goes back to Flyte unchanged (union literals carry their
/// variant's type).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiteralType {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_type: Option<Box<LiteralType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_value_type: Option<Box<LiteralType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub union_type: Option<UnionType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_type: Option<EnumType>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UnionType {
    #[serde(default)]
    pub variants: Vec<LiteralType>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EnumType {
    #[serde(default)]
    pub values: Vec<String>,
}

impl LiteralType {
    pub fn simple(simple: SimpleType) -> Self {
        LiteralType {
            simple: Some(simple),
            ..Default::default()
        }
    }

    pub fn list_of(item: LiteralType) -> Self {
        LiteralType {
            collection_type: Some(Box::new(item)),
            ..Default::default()
        }
    }

    pub fn map_of(value: LiteralType) -> Self {
        LiteralType {
            map_value_type: Some(Box::new(value)),
            ..Default::default()
        }
    }

    pub fn union_of(variants: Vec<LiteralType>) -> Self {
        LiteralType {
            union_type: Some(UnionType { variants }),
            ..Default::default()
        }
    }

    pub fn enum_of(values: Vec<String>) -> Self {
        LiteralType {
            enum_type: Some(EnumType { values }),
            ..Default::default()
        }
    }

    /// Sets `structure.tag`, the name the Python SDK gives each union variant.
    pub fn tagged(mut self, tag: &str) -> Self {
        self.other
            .insert("structure".into(), serde_json::json!({ "tag": tag }));
        self
    }

    /// A short human description (`int`, `list[str]`, `Optional[int]`), for error messages.
    pub fn describe(&self) -> String {
        if let Some(s) = self.simple {
            return match s {
                SimpleType::None => "None",
                SimpleType::Integer => "int",
                SimpleType::Float => "float",
                SimpleType::String => "str",
                SimpleType::Boolean => "bool",
                SimpleType::Datetime => "datetime",
                SimpleType::Duration => "timedelta",
                SimpleType::Binary => "bytes",
                SimpleType::Error => "error",
                SimpleType::Struct => "dict",
                SimpleType::Unrecognized => "unrecognized type",
            }
            .to_string();
        }
        if let Some(item) = &self.collection_type {
            return format!("list[{}]", item.describe());
        }
        if let Some(value) = &self.map_value_type {
            return format!("dict[str, {}]", value.describe());
        }
        if let Some(u) = &self.union_type {
            let names: Vec<String> = u.variants.iter().map(LiteralType::describe).collect();
            return format!("Union[{}]", names.join(", "));
        }
        if let Some(e) = &self.enum_type {
            return format!("enum({})", e.values.join("|"));
        }
        match self.other.keys().next() {
            Some(k) => k.clone(),
            None => "unspecified type".into(),
        }
    }
}

/// A task's inputs or outputs (`flyteidl2.core.TypedInterface`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TypedInterface {
    #[serde(default)]
    pub inputs: VariableMap,
    #[serde(default)]
    pub outputs: VariableMap,
}

/// An ordered list of named variables (a map in Flyte 1, a list in Flyte 2).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VariableMap {
    #[serde(default)]
    pub variables: Vec<VariableEntry>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VariableEntry {
    pub key: String,
    pub value: Variable,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Variable {
    #[serde(rename = "type")]
    pub literal_type: LiteralType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A literal with its name, as in `task.Inputs` and `task.Outputs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NamedLiteral {
    pub name: String,
    pub value: Literal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_travel_as_strings_and_parse_from_either_form() {
        let lit = Literal::integer(9_007_199_254_740_993);
        assert_eq!(
            serde_json::to_value(&lit).unwrap(),
            json!({"scalar": {"primitive": {"integer": "9007199254740993"}}})
        );
        let from_number: Literal =
            serde_json::from_value(json!({"scalar": {"primitive": {"integer": 5}}})).unwrap();
        assert_eq!(from_number.kind(), LiteralKind::Integer(5));
    }

    #[test]
    fn unknown_members_parse_as_other_instead_of_failing() {
        let lit: Literal =
            serde_json::from_value(json!({"offloadedMetadata": {"uri": "s3://x"}, "hash": "abc"}))
                .unwrap();
        assert_eq!(lit.kind(), LiteralKind::Other);
        let t: LiteralType = serde_json::from_value(json!({"simple": "FUTURE_KIND"})).unwrap();
        assert_eq!(t.simple, Some(SimpleType::Unrecognized));
    }

    #[test]
    fn unmodelled_type_members_round_trip() {
        let raw = json!({"simple": "INTEGER", "structure": {"tag": "int"}, "annotation": {"annotations": {"a": 1}}});
        let t: LiteralType = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), raw);
    }
}
