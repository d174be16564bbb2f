//! Turns a webhook's JSON object into a task's `Inputs`, directed by the task's interface, the
//! way `flyte.run(task, **kwargs)` would (FLYTE_API.md §7): interface order, defaults filled,
//! optionals set to `None`, and every mismatch reported with the field it concerns, so the
//! HTTP layer can answer 422 and the sender can fix the payload.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value};

use crate::literal::{Literal, LiteralType, NamedLiteral, SimpleType};
use crate::messages::{Inputs, TaskSpec};

/// Why a payload does not fit a task's interface. `field` is a path into the payload:
/// `config.retries`, `items[2]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("{field}: required input is missing")]
    Missing { field: String },
    #[error("{field}: the task has no such input")]
    Unknown { field: String },
    #[error("{field}: expected {expected}, got {found}")]
    WrongType {
        field: String,
        expected: String,
        found: &'static str,
    },
    #[error("{field}: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("{field}: inputs of type {type_name} cannot be given in JSON")]
    Unsupported { field: String, type_name: String },
}

impl InputError {
    /// The payload path the error is about.
    pub fn field(&self) -> &str {
        match self {
            InputError::Missing { field }
            | InputError::Unknown { field }
            | InputError::WrongType { field, .. }
            | InputError::InvalidValue { field, .. }
            | InputError::Unsupported { field, .. } => field,
        }
    }
}

/// Converts `payload` to the inputs of a task with `spec`. Keys the interface does not name are
/// refused rather than dropped: a typo in a webhook payload should not silently become a
/// default value.
pub fn convert_inputs(spec: &TaskSpec, payload: &Map<String, Value>) -> Result<Inputs, InputError> {
    let variables = &spec.task_template.interface.inputs.variables;
    let mut literals = Vec::with_capacity(variables.len());
    for variable in variables {
        let name = &variable.key;
        let literal_type = &variable.value.literal_type;
        let value = match payload.get(name) {
            Some(json) => convert_value(literal_type, json, name)?,
            None => match spec.default_for(name) {
                Some(default) => default.clone(),
                None => none_variant(literal_type)
                    .map(|none| Literal::union(Literal::none(), none.clone()))
                    .ok_or_else(|| InputError::Missing {
                        field: name.clone(),
                    })?,
            },
        };
        literals.push(NamedLiteral {
            name: name.clone(),
            value,
        });
    }
    if let Some(unknown) = payload
        .keys()
        .find(|key| !variables.iter().any(|v| &v.key == *key))
    {
        return Err(InputError::Unknown {
            field: unknown.clone(),
        });
    }
    Ok(Inputs { literals })
}

fn none_variant(t: &LiteralType) -> Option<&LiteralType> {
    t.union_type
        .as_ref()?
        .variants
        .iter()
        .find(|v| v.simple == Some(SimpleType::None))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts one JSON value to a literal of type `t`; `path` names it in errors.
pub fn convert_value(t: &LiteralType, json: &Value, path: &str) -> Result<Literal, InputError> {
    let wrong_type = || InputError::WrongType {
        field: path.to_string(),
        expected: t.describe(),
        found: json_kind(json),
    };
    let invalid = |reason: String| InputError::InvalidValue {
        field: path.to_string(),
        reason,
    };
    if let Some(simple) = t.simple {
        return match (simple, json) {
            (SimpleType::String, Value::String(s)) => Ok(Literal::string(s.clone())),
            (SimpleType::Integer, Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Ok(Literal::integer(i))
                } else if n.is_u64() {
                    Err(invalid(format!("{n} does not fit a 64-bit integer")))
                } else {
                    integral_float(n.as_f64().unwrap_or(f64::NAN))
                        .map(Literal::integer)
                        .ok_or_else(wrong_type)
                }
            }
            (SimpleType::Float, Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Literal::float(f)),
                _ => Err(invalid(format!("{n} is not a finite float"))),
            },
            (SimpleType::Boolean, Value::Bool(b)) => Ok(Literal::boolean(*b)),
            (SimpleType::Datetime, Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|d| Literal::datetime(d.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)))
                .map_err(|e| invalid(format!("{s:?} is not an RFC 3339 datetime: {e}"))),
            (SimpleType::Duration, Value::String(s)) => parse_go_duration(s)
                .and_then(format_proto_duration)
                .map(Literal::duration)
                .map_err(|reason| invalid(format!("{s:?} is not a duration: {reason}"))),
            (SimpleType::Duration, Value::Number(n)) => {
                let nanos = n.as_f64().map(|secs| secs * 1e9).filter(|n| n.is_finite());
                nanos
                    .ok_or_else(|| "not finite".to_string())
                    .and_then(|n| format_proto_duration(n.round() as i128))
                    .map(Literal::duration)
                    .map_err(|reason| invalid(format!("{n} seconds is not a duration: {reason}")))
            }
            (SimpleType::Struct, Value::Object(o)) => Ok(Literal::generic(o.clone())),
            (SimpleType::None, Value::Null) => Ok(Literal::none()),
            (SimpleType::Binary | SimpleType::Error | SimpleType::Unrecognized, _) => {
                Err(InputError::Unsupported {
                    field: path.to_string(),
                    type_name: t.describe(),
                })
            }
            _ => Err(wrong_type()),
        };
    }
    if let Some(item_type) = &t.collection_type {
        let Value::Array(items) = json else {
            return Err(wrong_type());
        };
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| convert_value(item_type, item, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Literal::collection);
    }
    if let Some(value_type) = &t.map_value_type {
        let Value::Object(entries) = json else {
            return Err(wrong_type());
        };
        return entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    convert_value(value_type, v, &format!("{path}.{k}"))?,
                ))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Literal::map);
    }
    if let Some(union) = &t.union_type {
        if json.is_null() {
            return none_variant(t)
                .map(|none| Literal::union(Literal::none(), none.clone()))
                .ok_or_else(wrong_type);
        }
        // The first variant that accepts the value wins, as in Flyte's own converter.
        return union
            .variants
            .iter()
            .filter(|v| v.simple != Some(SimpleType::None))
            .find_map(|v| {
                convert_value(v, json, path)
                    .ok()
                    .map(|lit| Literal::union(lit, v.clone()))
            })
            .ok_or_else(wrong_type);
    }
    if let Some(e) = &t.enum_type {
        return match json {
            Value::String(s) if e.values.contains(s) => Ok(Literal::string(s.clone())),
            Value::String(s) => Err(invalid(format!(
                "{s:?} is not one of {}",
                e.values.join(", ")
            ))),
            _ => Err(wrong_type()),
        };
    }
    Err(InputError::Unsupported {
        field: path.to_string(),
        type_name: t.describe(),
    })
}

/// A float that holds an integer exactly (`3.0`), as JSON encoders sometimes write integers.
fn integral_float(f: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64)
}

/// Parses a non-negative duration written as Go and Flyte write them: `250ms`, `90s`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let nanos = parse_go_duration(text.trim())?;
    u64::try_from(nanos)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{text:?} is negative or too long"))
}

/// Parses Go/Flyte duration text (`"90s"`, `"1h2m3.5s"`, `"250ms"`, `"-1.5h"`) to nanoseconds.
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty".into());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (use s, m, h, ms, us or ns)")?;
        if number_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += number * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

/// Writes nanoseconds as a proto3 JSON duration: seconds with 0, 3, 6 or 9 fraction digits.
fn format_proto_duration(nanos: i128) -> Result<String, String> {
    const MAX_SECONDS: u128 = 315_576_000_000;
    let sign = if nanos < 0 { "-" } else { "" };
    // `unsigned_abs`: a number of seconds far beyond range saturates to i128::MIN, whose `abs`
    // overflows (found by the input_conversion fuzz target).
    let abs = nanos.unsigned_abs();
    let (secs, frac) = (abs / 1_000_000_000, abs % 1_000_000_000);
    if secs > MAX_SECONDS {
        return Err("longer than 10,000 years".into());
    }
    Ok(match frac {
        0 => format!("{sign}{secs}s"),
        f if f % 1_000_000 == 0 => format!("{sign}{secs}.{:03}s", f / 1_000_000),
        f if f % 1_000 == 0 => format!("{sign}{secs}.{:06}s", f / 1_000),
        f => format!("{sign}{secs}.{f:09}s"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::literal::{Variable, VariableEntry};
    use crate::messages::{NamedParameter, Parameter};
    use serde_json::json;

    fn optional_int() -> LiteralType {
        LiteralType::union_of(vec![
            LiteralType::simple(SimpleType::Integer).tagged("int"),
            LiteralType::simple(SimpleType::None).tagged("none"),
        ])
    }

    fn spec(vars: Vec<(&str, LiteralType)>, defaults: Vec<(&str, Literal)>) -> TaskSpec {
        let mut spec = TaskSpec::default();
        spec.task_template.interface.inputs.variables = vars
            .into_iter()
            .map(|(k, t)| VariableEntry {
                key: k.into(),
                value: Variable {
                    literal_type: t,
                    description: String::new(),
                },
            })
            .collect();
        spec.default_inputs = defaults
            .into_iter()
            .map(|(k, lit)| NamedParameter {
                name: k.into(),
                parameter: Parameter {
                    default: Some(lit),
                    ..Default::default()
                },
            })
            .collect();
        spec
    }

    fn one(t: LiteralType, v: Value) -> Result<Value, InputError> {
        convert_value(&t, &v, "x").map(|l| serde_json::to_value(l).unwrap())
    }

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn each_type_converts_as_the_flyte_table_says() {
        use SimpleType::*;
        let cases = [
            (
                LiteralType::simple(Integer),
                json!(3),
                json!({"scalar": {"primitive": {"integer": "3"}}}),
            ),
            (
                LiteralType::simple(Integer),
                json!(9007199254740993_i64),
                json!({"scalar": {"primitive": {"integer": "9007199254740993"}}}),
            ),
            (
                LiteralType::simple(Integer),
                json!(-9223372036854775808_i64),
                json!({"scalar": {"primitive": {"integer": "-9223372036854775808"}}}),
            ),
            (
                LiteralType::simple(Integer),
                json!(4.0),
                json!({"scalar": {"primitive": {"integer": "4"}}}),
            ),
            (
                LiteralType::simple(Float),
                json!(2.5),
                json!({"scalar": {"primitive": {"floatValue": 2.5}}}),
            ),
            (
                LiteralType::simple(Float),
                json!(2),
                json!({"scalar": {"primitive": {"floatValue": 2.0}}}),
            ),
            (
                LiteralType::simple(String),
                json!("a"),
                json!({"scalar": {"primitive": {"stringValue": "a"}}}),
            ),
            (
                LiteralType::simple(Boolean),
                json!(true),
                json!({"scalar": {"primitive": {"boolean": true}}}),
            ),
            (
                LiteralType::simple(Datetime),
                json!("2024-05-01T14:00:00+02:00"),
                json!({"scalar": {"primitive": {"datetime": "2024-05-01T12:00:00Z"}}}),
            ),
            (
                LiteralType::simple(Datetime),
                json!("2024-05-01T12:00:00.250Z"),
                json!({"scalar": {"primitive": {"datetime": "2024-05-01T12:00:00.250Z"}}}),
            ),
            (
                LiteralType::simple(Duration),
                json!("90s"),
                json!({"scalar": {"primitive": {"duration": "90s"}}}),
            ),
            (
                LiteralType::simple(Duration),
                json!("1h2m3.5s"),
                json!({"scalar": {"primitive": {"duration": "3723.500s"}}}),
            ),
            (
                LiteralType::simple(Duration),
                json!("250ms"),
                json!({"scalar": {"primitive": {"duration": "0.250s"}}}),
            ),
            (
                LiteralType::simple(Duration),
                json!(1.5),
                json!({"scalar": {"primitive": {"duration": "1.500s"}}}),
            ),
            (
                LiteralType::simple(Struct),
                json!({"a": [1, {"b": null}]}),
                json!({"scalar": {"generic": {"a": [1, {"b": null}]}}}),
            ),
            (
                LiteralType::simple(None),
                json!(null),
                json!({"scalar": {"noneType": {}}}),
            ),
            (
                LiteralType::list_of(LiteralType::simple(Integer)),
                json!([1, 2]),
                json!({"collection": {"literals": [{"scalar": {"primitive": {"integer": "1"}}}, {"scalar": {"primitive": {"integer": "2"}}}]}}),
            ),
            (
                LiteralType::map_of(LiteralType::simple(Integer)),
                json!({"k": 1}),
                json!({"map": {"literals": {"k": {"scalar": {"primitive": {"integer": "1"}}}}}}),
            ),
            (
                optional_int(),
                json!(3),
                json!({"scalar": {"union": {"value": {"scalar": {"primitive": {"integer": "3"}}}, "type": {"simple": "INTEGER", "structure": {"tag": "int"}}}}}),
            ),
            (
                optional_int(),
                json!(null),
                json!({"scalar": {"union": {"value": {"scalar": {"noneType": {}}}, "type": {"simple": "NONE", "structure": {"tag": "none"}}}}}),
            ),
            (
                LiteralType::enum_of(vec!["A".into(), "B".into()]),
                json!("B"),
                json!({"scalar": {"primitive": {"stringValue": "B"}}}),
            ),
        ];
        for (t, input, expected) in cases {
            assert_eq!(
                one(t.clone(), input.clone()),
                Ok(expected),
                "{} from {input}",
                t.describe()
            );
        }
    }

    #[test]
    fn mismatches_name_the_field_and_the_types() {
        use SimpleType::*;
        let e = one(LiteralType::simple(Integer), json!("3")).unwrap_err();
        assert_eq!(e.to_string(), "x: expected int, got a string");
        let e = one(LiteralType::simple(Integer), json!(2.5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: expected int, got a number with a fraction"
        );
        let e = one(
            LiteralType::simple(Integer),
            json!(18446744073709551615_u64),
        )
        .unwrap_err();
        assert!(matches!(e, InputError::InvalidValue { .. }), "{e}");
        let e = one(
            LiteralType::list_of(LiteralType::simple(Integer)),
            json!([1, "two"]),
        )
        .unwrap_err();
        assert_eq!(e.field(), "x[1]");
        let e = one(
            LiteralType::map_of(LiteralType::simple(Boolean)),
            json!({"k": 1}),
        )
        .unwrap_err();
        assert_eq!(e.field(), "x.k");
        let e = one(LiteralType::simple(Datetime), json!("yesterday")).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        // Found by fuzzing: a huge negative number of seconds used to overflow.
        let huge: Value = serde_json::from_str(&format!("-{}0", "6".repeat(56))).unwrap();
        assert!(matches!(
            one(LiteralType::simple(Duration), huge),
            Err(InputError::InvalidValue { .. })
        ));
        let e = one(LiteralType::simple(Duration), json!("5 parsecs")).unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = one(LiteralType::enum_of(vec!["A".into()]), json!("C")).unwrap_err();
        assert!(e.to_string().contains("not one of A"), "{e}");
        let e = one(optional_int(), json!("x")).unwrap_err();
        assert_eq!(e.to_string(), "x: expected Union[int, None], got a string");
        let e = one(LiteralType::simple(Binary), json!("AAAA")).unwrap_err();
        assert!(matches!(e, InputError::Unsupported { .. }));
    }

    #[test]
    fn inputs_follow_interface_order_with_defaults_and_optionals_filled() {
        let spec = spec(
            vec![
                ("name", LiteralType::simple(SimpleType::String)),
                ("count", LiteralType::simple(SimpleType::Integer)),
                ("retries", optional_int()),
            ],
            vec![("count", Literal::integer(7))],
        );
        let inputs = convert_inputs(&spec, &payload(json!({"name": "a"}))).unwrap();
        let names: Vec<&str> = inputs.literals.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["name", "count", "retries"]);
        assert_eq!(inputs.literals[1].value, Literal::integer(7));
        assert_eq!(
            serde_json::to_value(&inputs.literals[2].value).unwrap()["scalar"]["union"]["value"],
            json!({"scalar": {"noneType": {}}})
        );
        // A value given overrides the default.
        let inputs = convert_inputs(&spec, &payload(json!({"count": 1, "name": "a"}))).unwrap();
        assert_eq!(inputs.literals[1].value, Literal::integer(1));
    }

    #[test]
    fn missing_required_and_unknown_inputs_are_refused_by_name() {
        let spec = spec(
            vec![("name", LiteralType::simple(SimpleType::String))],
            vec![],
        );
        assert_eq!(
            convert_inputs(&spec, &payload(json!({}))),
            Err(InputError::Missing {
                field: "name".into()
            })
        );
        assert_eq!(
            convert_inputs(&spec, &payload(json!({"name": "a", "nmae": "b"}))),
            Err(InputError::Unknown {
                field: "nmae".into()
            })
        );
    }
}
