//! The tasks the stand-in pretends are deployed: typed interfaces, defaults, outputs, and rules
//! that decide how a run ends. Read from a TOML file (`--tasks`), or the built-in set below.
//!
//! ```toml
//! [[task]]
//! project = "flytesnacks"
//! domain = "development"
//! name = "hello.main"
//! version = "v1"
//! inputs = [{ name = "name", type = "str" }, { name = "count", type = "int", default = 1 }]
//! outputs = [{ name = "o0", type = "str", value = "hello {name}" }]
//! running_for = "2s"                                    # optional, overrides --running-for
//! rules = [{ input = "name", equals = "fail", outcome = "failed", message = "ValueError: boom" }]
//! ```
//!
//! Types: `int`, `float`, `str`, `bool`, `datetime`, `duration`, `dict` (a JSON object),
//! `none`, `list[T]`, `dict[str, T]`, `optional[T]`, `enum[A, B]`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use flyte_client::inputs::convert_value;
use flyte_client::literal::{NamedLiteral, Variable, VariableEntry};
use flyte_client::messages::{NamedParameter, Parameter, TaskTemplate};
use flyte_client::{Literal, LiteralType, SimpleType, TaskId, TaskSpec};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    #[serde(rename = "task", default)]
    tasks: Vec<TaskEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskEntry {
    project: String,
    domain: String,
    name: String,
    version: String,
    #[serde(default)]
    inputs: Vec<InputEntry>,
    #[serde(default)]
    outputs: Vec<OutputEntry>,
    queued_for: Option<String>,
    running_for: Option<String>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputEntry {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    default: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputEntry {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    /// A JSON value; in strings, `{input}` is replaced by that input's value.
    value: Option<Value>,
    /// Copy this input's value.
    from_input: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    input: String,
    equals: Value,
    #[serde(default)]
    outcome: Outcome,
    message: Option<String>,
    running_for: Option<String>,
}

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Succeeded,
    Failed,
    TimedOut,
}

/// What the outputs of a successful run are made of.
#[derive(Debug, Clone)]
pub enum OutputSource {
    Template(Value),
    Input(String),
}

#[derive(Debug, Clone)]
pub struct OutputDef {
    pub name: String,
    pub literal_type: LiteralType,
    pub source: OutputSource,
}

/// A rule: when input `input` equals `equals`, the run ends with `outcome`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub input: String,
    pub equals: Value,
    pub outcome: Outcome,
    pub message: String,
    pub running_for: Option<Duration>,
}

/// One deployed task.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub outputs: Vec<OutputDef>,
    pub queued_for: Option<Duration>,
    pub running_for: Option<Duration>,
    pub rules: Vec<Rule>,
}

/// Tasks by (project, domain, name, version). Org is ignored, as open-source Flyte does.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    tasks: HashMap<(String, String, String, String), Arc<Task>>,
}

fn key(id: &TaskId) -> (String, String, String, String) {
    (
        id.project.clone(),
        id.domain.clone(),
        id.name.clone(),
        id.version.clone(),
    )
}

/// The tasks `flyte-sim` serves when no file is given.
pub const BUILT_IN: &str = include_str!("../tasks.toml");

impl Catalogue {
    pub fn built_in() -> Catalogue {
        // The built-in file is tested; it cannot fail to parse.
        Catalogue::parse(BUILT_IN).expect("built-in task catalogue")
    }

    pub fn load(path: &Path) -> anyhow::Result<Catalogue> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading task file {}", path.display()))?;
        Catalogue::parse(&text).with_context(|| format!("in task file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Catalogue> {
        let file: TaskFile = toml::from_str(text)?;
        let mut catalogue = Catalogue::default();
        for entry in file.tasks {
            let label = format!("task {}:{}", entry.name, entry.version);
            let task = compile(entry).context(label)?;
            catalogue.tasks.insert(key(&task.id), Arc::new(task));
        }
        Ok(catalogue)
    }

    pub fn get(&self, id: &TaskId) -> Option<Arc<Task>> {
        self.tasks.get(&key(id)).cloned()
    }

    pub fn has_project(&self, project: &str, domain: &str) -> bool {
        self.tasks
            .keys()
            .any(|(p, d, _, _)| p == project && d == domain)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.tasks.values()
    }
}

fn compile(entry: TaskEntry) -> anyhow::Result<Task> {
    let mut spec = TaskSpec {
        task_template: TaskTemplate {
            task_type: "python".into(),
            ..Default::default()
        },
        short_name: entry
            .name
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string(),
        ..Default::default()
    };
    for input in &entry.inputs {
        let literal_type =
            parse_type(&input.type_name).with_context(|| format!("input {}", input.name))?;
        let variable = Variable {
            literal_type: literal_type.clone(),
            description: String::new(),
        };
        if let Some(default) = &input.default {
            let literal = convert_value(&literal_type, default, &input.name)
                .with_context(|| format!("default of input {}", input.name))?;
            spec.default_inputs.push(NamedParameter {
                name: input.name.clone(),
                parameter: Parameter {
                    var: variable.clone(),
                    default: Some(literal),
                    required: None,
                },
            });
        }
        spec.task_template
            .interface
            .inputs
            .variables
            .push(VariableEntry {
                key: input.name.clone(),
                value: variable,
            });
    }
    let mut outputs = Vec::new();
    for output in entry.outputs {
        let literal_type =
            parse_type(&output.type_name).with_context(|| format!("output {}", output.name))?;
        let source = match (output.value, output.from_input) {
            (Some(v), None) => OutputSource::Template(v),
            (None, Some(input)) => OutputSource::Input(input),
            _ => bail!(
                "output {} needs exactly one of value, from_input",
                output.name
            ),
        };
        spec.task_template
            .interface
            .outputs
            .variables
            .push(VariableEntry {
                key: output.name.clone(),
                value: Variable {
                    literal_type: literal_type.clone(),
                    description: String::new(),
                },
            });
        outputs.push(OutputDef {
            name: output.name,
            literal_type,
            source,
        });
    }
    let rules = entry
        .rules
        .into_iter()
        .map(|r| {
            Ok(Rule {
                message: r.message.unwrap_or_else(|| match r.outcome {
                    Outcome::Failed => format!("flyte-sim: {} was {}", r.input, r.equals),
                    _ => String::new(),
                }),
                running_for: r.running_for.as_deref().map(parse_duration).transpose()?,
                input: r.input,
                equals: r.equals,
                outcome: r.outcome,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Task {
        id: TaskId {
            org: String::new(),
            project: entry.project,
            domain: entry.domain,
            name: entry.name,
            version: entry.version,
        },
        spec,
        outputs,
        queued_for: entry
            .queued_for
            .as_deref()
            .map(parse_duration)
            .transpose()?,
        running_for: entry
            .running_for
            .as_deref()
            .map(parse_duration)
            .transpose()?,
        rules,
    })
}

/// `250ms`, `2s`, `1m`, `1h30m`: Flyte's own duration syntax.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    flyte_client::parse_duration(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Parses the compact type syntax of task files into a Flyte type, tagging union variants as
/// the Python SDK does.
pub fn parse_type(text: &str) -> anyhow::Result<LiteralType> {
    let t = text.trim();
    let inner = |prefix: &str| {
        t.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(']'))
            .map(str::trim)
    };
    let simple = |s| Ok(LiteralType::simple(s));
    match t {
        "int" => return simple(SimpleType::Integer),
        "float" => return simple(SimpleType::Float),
        "str" => return simple(SimpleType::String),
        "bool" => return simple(SimpleType::Boolean),
        "datetime" => return simple(SimpleType::Datetime),
        "duration" | "timedelta" => return simple(SimpleType::Duration),
        "dict" => return simple(SimpleType::Struct),
        "none" | "None" => return simple(SimpleType::None),
        _ => {}
    }
    if let Some(item) = inner("list[") {
        return Ok(LiteralType::list_of(parse_type(item)?));
    }
    if let Some(args) = inner("dict[") {
        let Some(("str", value)) = args.split_once(',').map(|(k, v)| (k.trim(), v)) else {
            bail!("{t:?}: only dict[str, T] is supported");
        };
        return Ok(LiteralType::map_of(parse_type(value)?));
    }
    if let Some(item) = inner("optional[").or_else(|| inner("Optional[")) {
        let variant = parse_type(item)?;
        let tag = match variant.simple {
            Some(SimpleType::Integer) => "int",
            Some(SimpleType::Float) => "float",
            Some(SimpleType::String) => "str",
            Some(SimpleType::Boolean) => "bool",
            _ => item,
        };
        return Ok(LiteralType::union_of(vec![
            variant.clone().tagged(tag),
            LiteralType::simple(SimpleType::None).tagged("none"),
        ]));
    }
    if let Some(values) = inner("enum[") {
        return Ok(LiteralType::enum_of(
            values.split(',').map(|v| v.trim().to_string()).collect(),
        ));
    }
    bail!("unknown type {t:?}")
}

impl Task {
    /// How a run with these inputs ends: the first matching rule, else success.
    pub fn rule_for(&self, inputs: &serde_json::Map<String, Value>) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| inputs.get(&r.input) == Some(&r.equals))
    }

    /// The outputs of a successful run with these inputs.
    pub fn outputs_for(
        &self,
        inputs: &[NamedLiteral],
        plain_inputs: &serde_json::Map<String, Value>,
    ) -> Result<Vec<NamedLiteral>, String> {
        self.outputs
            .iter()
            .map(|o| {
                let value: Literal = match &o.source {
                    OutputSource::Input(name) => inputs
                        .iter()
                        .find(|l| &l.name == name)
                        .map(|l| l.value.clone())
                        .ok_or_else(|| format!("output {}: no input {name}", o.name))?,
                    OutputSource::Template(template) => convert_value(
                        &o.literal_type,
                        &fill_template(template, plain_inputs),
                        &o.name,
                    )
                    .map_err(|e| format!("output {e}"))?,
                };
                Ok(NamedLiteral {
                    name: o.name.clone(),
                    value,
                })
            })
            .collect()
    }
}

fn fill_template(template: &Value, inputs: &serde_json::Map<String, Value>) -> Value {
    match template {
        Value::String(s) => {
            let mut out = s.clone();
            for (name, value) in inputs {
                let text = match value {
                    Value::String(v) => v.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{{{name}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(items) => items.iter().map(|v| fill_template(v, inputs)).collect(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_template(v, inputs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalogue_parses() {
        let catalogue = Catalogue::built_in();
        assert!(catalogue.tasks().count() >= 3);
        assert!(catalogue.has_project("flytesnacks", "development"));
    }

    #[test]
    fn type_syntax_covers_the_supported_types() {
        assert_eq!(parse_type("list[int]").unwrap().describe(), "list[int]");
        assert_eq!(
            parse_type("dict[str, list[float]]").unwrap().describe(),
            "dict[str, list[float]]"
        );
        assert_eq!(
            parse_type("optional[int]").unwrap().describe(),
            "Union[int, None]"
        );
        assert_eq!(parse_type("enum[A, B]").unwrap().describe(), "enum(A|B)");
        assert!(parse_type("dict[int, str]").is_err());
        assert!(parse_type("complex").is_err());
    }

    #[test]
    fn mistakes_in_a_task_file_name_the_task_and_field() {
        let err = Catalogue::parse(
            "[[task]]\nproject='p'\ndomain='d'\nname='t'\nversion='v'\ninputs=[{name='x', type='complex'}]",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("task t:v: input x: unknown type"),
            "{err:#}"
        );
        let err = Catalogue::parse("[[task]]\nproject='p'\nprojcet='x'").unwrap_err();
        assert!(format!("{err:#}").contains("projcet"), "{err:#}");
    }
}
