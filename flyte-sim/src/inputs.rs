//! What a run's inputs become before it starts: defaults filled in as Flyte fills them, then
//! checked the way the task itself would check them at runtime. Flyte's API accepts runs that
//! fail these checks and the task fails; so does the stand-in, so these never refuse a call.

use flyte_client::literal::NamedLiteral;
use flyte_client::messages::Inputs;
use flyte_client::{LiteralKind, LiteralType, SimpleType, TaskSpec};

/// Adds the defaults of inputs the request left out, in interface order, as Flyte's
/// `fillDefaultInputs` does.
pub(crate) fn fill_defaults(spec: &TaskSpec, given: Inputs) -> Inputs {
    let mut given: Vec<NamedLiteral> = given.literals;
    let mut literals = Vec::with_capacity(given.len());
    for variable in &spec.task_template.interface.inputs.variables {
        if let Some(pos) = given.iter().position(|l| l.name == variable.key) {
            literals.push(given.remove(pos));
        } else if let Some(default) = spec.default_for(&variable.key) {
            literals.push(NamedLiteral {
                name: variable.key.clone(),
                value: default.clone(),
            });
        }
    }
    literals.extend(given);
    Inputs { literals }
}

/// What the task itself would trip over at runtime: a missing or extra input, or a value of
/// the wrong type.
pub(crate) fn check_inputs(spec: &TaskSpec, literals: &[NamedLiteral]) -> Result<(), String> {
    let variables = &spec.task_template.interface.inputs.variables;
    for literal in literals {
        let Some(variable) = variables.iter().find(|v| v.key == literal.name) else {
            return Err(format!("unexpected input {}", literal.name));
        };
        if !fits(&variable.value.literal_type, &literal.value) {
            return Err(format!(
                "input {} is not a {}",
                literal.name,
                variable.value.literal_type.describe()
            ));
        }
    }
    match variables
        .iter()
        .find(|v| !literals.iter().any(|l| l.name == v.key))
    {
        Some(missing) => Err(format!("missing input {}", missing.key)),
        None => Ok(()),
    }
}

fn fits(t: &LiteralType, literal: &flyte_client::Literal) -> bool {
    let kind = literal.kind();
    if let Some(simple) = t.simple {
        return matches!(
            (simple, kind),
            (SimpleType::Integer, LiteralKind::Integer(_))
                | (
                    SimpleType::Float,
                    LiteralKind::Float(_) | LiteralKind::Integer(_)
                )
                | (SimpleType::String, LiteralKind::String(_))
                | (SimpleType::Boolean, LiteralKind::Boolean(_))
                | (SimpleType::Datetime, LiteralKind::Datetime(_))
                | (SimpleType::Duration, LiteralKind::Duration(_))
                | (
                    SimpleType::Struct,
                    LiteralKind::Generic(_) | LiteralKind::Binary(_)
                )
                | (SimpleType::None, LiteralKind::None)
        );
    }
    if let Some(item) = &t.collection_type {
        return matches!(kind, LiteralKind::Collection(items) if items.iter().all(|i| fits(item, i)));
    }
    if let Some(value) = &t.map_value_type {
        return matches!(kind, LiteralKind::Map(entries) if entries.values().all(|v| fits(value, v)));
    }
    if let Some(union) = &t.union_type {
        return matches!(kind, LiteralKind::Union(inner) if union.variants.iter().any(|v| fits(v, inner)));
    }
    if let Some(e) = &t.enum_type {
        return matches!(kind, LiteralKind::String(s) if e.values.iter().any(|v| v == s));
    }
    false
}
