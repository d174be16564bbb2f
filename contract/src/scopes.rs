//! Scopes: which tasks a key may start (and look at, cancel, replay). The ingress checks them on
//! every request, the store narrows listings to them, and `flyhook keys` stores them, so all
//! three read the one grammar here: `*`, `project`, `project/domain` or `project/domain/task`.

use std::fmt;

use crate::dispatch::TaskRef;

/// The tasks one scope covers: every task (`*`), a project, a project's domain, or one task
/// (every version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    project: Option<String>,
    domain: Option<String>,
    task: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason}")]
pub struct InvalidScope {
    scope: String,
    reason: String,
}

impl Scope {
    /// Every task.
    pub const ALL: Scope = Scope {
        project: None,
        domain: None,
        task: None,
    };

    /// `*`, `project`, `project/domain` or `project/domain/task`.
    pub fn parse(text: &str) -> Result<Scope, InvalidScope> {
        let invalid = |reason: String| InvalidScope {
            scope: text.to_string(),
            reason,
        };
        if text == "*" {
            return Ok(Scope::ALL);
        }
        let mut parts = text.split('/');
        let project = parts.next().unwrap_or_default();
        let domain = parts.next();
        let task = parts.next();
        if parts.next().is_some() {
            return Err(invalid("at most three parts: project/domain/task".into()));
        }
        crate::dispatch::check_label("project", project).map_err(|e| invalid(e.to_string()))?;
        if let Some(domain) = domain {
            crate::dispatch::check_label("domain", domain).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(task) = task {
            crate::dispatch::check_identifier("task", task, 255)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Scope {
            project: Some(project.into()),
            domain: domain.map(Into::into),
            task: task.map(Into::into),
        })
    }

    pub fn allows(&self, task: &TaskRef) -> bool {
        let matches =
            |part: &Option<String>, value: &str| part.as_deref().is_none_or(|p| p == value);
        matches(&self.project, task.project())
            && matches(&self.domain, task.domain())
            && matches(&self.task, task.name())
    }

    /// (project, domain, task); `None` parts match anything, and an all-`None` scope is `*`.
    pub fn parts(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            self.project.as_deref(),
            self.domain.as_deref(),
            self.task.as_deref(),
        )
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            (None, _, _) => f.write_str("*"),
            (Some(p), None, _) => f.write_str(p),
            (Some(p), Some(d), None) => write!(f, "{p}/{d}"),
            (Some(p), Some(d), Some(t)) => write!(f, "{p}/{d}/{t}"),
        }
    }
}

/// What a key may do: start (and look at, cancel, replay) dispatches of the tasks its scopes
/// cover. Only an unrestricted key (`*`) may read the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn unrestricted() -> Scopes {
        Scopes(vec![Scope::ALL])
    }

    /// At least one scope; `*` among others is just `*`.
    pub fn new(scopes: Vec<Scope>) -> Result<Scopes, InvalidScope> {
        if scopes.is_empty() {
            return Err(InvalidScope {
                scope: String::new(),
                reason: "a key needs at least one scope".into(),
            });
        }
        if scopes.contains(&Scope::ALL) {
            return Ok(Scopes::unrestricted());
        }
        Ok(Scopes(scopes))
    }

    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<Scopes, InvalidScope> {
        Scopes::new(
            texts
                .iter()
                .map(|t| Scope::parse(t.as_ref()))
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn is_unrestricted(&self) -> bool {
        self.0.contains(&Scope::ALL)
    }

    pub fn allows(&self, task: &TaskRef) -> bool {
        self.0.iter().any(|scope| scope.allows(task))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_projects_domains_and_tasks() {
        let task = |p: &str, d: &str, n: &str| TaskRef::parse(p, d, n, "v1").unwrap();
        let scopes = Scopes::parse_all(&["acme/prod", "ml/dev/train.main"]).unwrap();
        assert!(scopes.allows(&task("acme", "prod", "anything")));
        assert!(!scopes.allows(&task("acme", "dev", "anything")));
        assert!(scopes.allows(&task("ml", "dev", "train.main")));
        assert!(!scopes.allows(&task("ml", "dev", "train.other")));
        assert!(!scopes.is_unrestricted());
        assert_eq!(scopes.to_string(), "acme/prod,ml/dev/train.main");
        let all = Scopes::parse_all(&["acme", "*"]).unwrap();
        assert!(all.is_unrestricted() && all.allows(&task("x", "y", "z")));
        for bad in ["", "Acme", "a/b/c/d", "a//c", "a/b/c d"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scopes::parse_all::<&str>(&[]).is_err());
    }
}
