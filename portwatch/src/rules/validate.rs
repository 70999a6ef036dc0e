//! Reads and checks an alerts file, and compiles it into the rules the
//! evaluator runs: what passes the checks is exactly what runs. Every
//! problem is one sentence that names the file, the rule and the field.

use std::{collections::HashMap, path::Path};

use chrono::TimeDelta;

use super::{
    model::{AlertRule, AlertsFile, Condition, ExposureName, Severity},
    pattern::Pattern,
};
use crate::safe_text::{safe_str, safe_text};

/// A path as errors show it: made safe like any other untrusted text.
fn shown(path: &Path) -> String {
    safe_text(path.as_os_str().as_encoded_bytes())
}

/// Why an alerts file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    #[error("{path} is empty: an alerts file holds at least {{\"rules\": []}}")]
    Empty { path: String },
    #[error(
        "{path} starts with a byte order mark, which JSON does not allow: save it as UTF-8 without BOM"
    )]
    Bom { path: String },
    #[error("{path} is not UTF-8 text")]
    NotUtf8 { path: String },
    #[error("{path}:{line}:{column}: {at}{message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        at: String,
        message: String,
    },
    #[error("{path}: {problems}")]
    Invalid { path: String, problems: Problems },
}

/// One or more validation problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// Parses the bytes of an alerts file (`path` only names it in errors).
/// What an error quotes from the file (keys, values) is made safe: the
/// file's bytes never reach a terminal raw.
pub fn parse(bytes: &[u8], path: &Path) -> Result<AlertsFile, RulesError> {
    let path = shown(path);
    if bytes.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Err(RulesError::Bom { path });
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(RulesError::NotUtf8 { path });
    };
    if text.trim().is_empty() {
        return Err(RulesError::Empty { path });
    }
    // serde would read a top-level array as the struct's fields in order,
    // and complain about the first element: say what is really wrong.
    if let Some(offset) = text.find(|c: char| !c.is_whitespace())
        && !text[offset..].starts_with('{')
    {
        let line = text[..offset].matches('\n').count() + 1;
        let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
        return Err(RulesError::Syntax {
            path,
            line,
            column,
            at: String::new(),
            message: "the top level must be an object like {\"rules\": []}".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let file: AlertsFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        RulesError::Syntax {
            path: path.clone(),
            line: inner.line(),
            column: inner.column(),
            at: if at == "." {
                String::new()
            } else {
                format!("{}: ", safe_str(&at))
            },
            message: safe_str(&strip_position(&inner.to_string())),
        }
    })?;
    de.end().map_err(|e| RulesError::Syntax {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
        at: String::new(),
        message: safe_str(&strip_position(&e.to_string())),
    })?;
    Ok(file)
}

/// serde_json appends " at line L column C"; the error already leads with it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Compiles a rule regex, or says in one sentence why it is not one.
pub fn compile_regex(pattern: &str, what: &str) -> Result<Pattern, String> {
    Pattern::new(pattern).map_err(|e| format!("{what} is not a valid regex: {e}"))
}

/// A `known_processes` entry: a regex for a process name, or, written
/// `source:REGEX` or `package:REGEX`, for the owner's source (as
/// `KIND:NAME`, `systemd:nginx.service`) or its executable's package.
#[derive(Clone, Debug)]
pub(crate) enum Known {
    Name(Pattern),
    Source(Pattern),
    Package(Pattern),
}

impl Known {
    /// Whether this entry knows the owner of `l`.
    pub(crate) fn knows(&self, l: &crate::event::Listener) -> bool {
        let ctx = l.context.as_deref();
        match self {
            Known::Name(p) => p.is_match(&l.comm),
            // Only what root vouches for: a name or an environment
            // variable is anyone's to forge.
            Known::Source(p) => {
                ctx.is_some_and(|c| c.source.trusted && p.is_match(&c.source.key()))
            }
            Known::Package(p) => ctx
                .and_then(|c| c.package.as_deref())
                .is_some_and(|pkg| p.is_match(pkg)),
        }
    }
}

/// A validated alerts file, compiled: what the evaluator runs.
#[derive(Clone, Debug)]
pub struct Rules {
    /// The file as read (to count, show or save it back).
    pub file: AlertsFile,
    pub(crate) compiled: Vec<CompiledRule>,
    /// `known_processes`, each anchored to match a whole name, source
    /// or package.
    pub(crate) known: Vec<Known>,
}

impl Rules {
    /// No rules at all.
    pub fn empty() -> Self {
        Self {
            file: AlertsFile::default(),
            compiled: Vec::new(),
            known: Vec::new(),
        }
    }
}

/// One rule, ready to match.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub condition: &'static str,
    pub enabled: bool,
    pub cooldown: TimeDelta,
    pub matcher: Matcher,
}

/// What a rule's condition matches, with its numbers in range and its
/// patterns compiled.
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    Opened(u16),
    Closed(u16),
    Range(u16, u16),
    External {
        ip: Pattern,
        exclude_private: bool,
    },
    Cpu {
        name: Pattern,
        threshold: f64,
    },
    Memory {
        name: Pattern,
        threshold_mb: u64,
    },
    Unknown,
    Exposed {
        exposure: Vec<ExposureName>,
        /// `None`: any port.
        ports: Option<Vec<u16>>,
    },
}

/// A port from the file, or a problem when it is out of range.
fn port(value: u64, rule: &str, field: &str, problems: &mut Vec<String>) -> Option<u16> {
    let port = u16::try_from(value).ok();
    if port.is_none() {
        problems.push(format!(
            "rule `{rule}`: condition.params.{field} is {value}, outside 0-65535"
        ));
    }
    port
}

/// A compiled pattern, or a problem.
fn pattern(pattern: &str, what: &str, problems: &mut Vec<String>) -> Option<Pattern> {
    compile_regex(pattern, what)
        .map_err(|msg| problems.push(msg))
        .ok()
}

fn compile_rule(
    rule: &AlertRule,
    index: usize,
    problems: &mut Vec<String>,
) -> Option<CompiledRule> {
    let id = &rule.id;
    let before = problems.len();
    if id.trim().is_empty() {
        problems.push(format!("rules[{index}] has an empty id"));
    }
    if rule.cooldown_seconds == 0 {
        problems.push(format!(
            "rule `{id}`: cooldown_seconds must be greater than 0"
        ));
    }
    let field = |f: &str| format!("rule `{id}`: condition.params.{f}");
    let matcher = match &rule.condition {
        Condition::PortOpened(p) => port(p.port, id, "port", problems).map(Matcher::Opened),
        Condition::PortClosed(p) => port(p.port, id, "port", problems).map(Matcher::Closed),
        Condition::PortRangeActivity(r) => {
            let start = port(r.start_port, id, "start_port", problems);
            let end = port(r.end_port, id, "end_port", problems);
            if r.end_port < r.start_port {
                problems.push(format!(
                    "rule `{id}`: condition.params.end_port ({}) is below start_port ({})",
                    r.end_port, r.start_port
                ));
            }
            start.zip(end).map(|(a, b)| Matcher::Range(a, b))
        }
        Condition::ExternalConnection(e) => pattern(&e.ip_pattern, &field("ip_pattern"), problems)
            .map(|ip| Matcher::External {
                ip,
                exclude_private: e.exclude_private,
            }),
        Condition::ProcessCpuThreshold(c) => {
            let name = pattern(&c.process_pattern, &field("process_pattern"), problems);
            if !c.threshold_percent.is_finite() || c.threshold_percent < 0.0 {
                problems.push(format!(
                    "{} must be a number of at least 0",
                    field("threshold_percent")
                ));
            }
            name.map(|name| Matcher::Cpu {
                name,
                threshold: c.threshold_percent,
            })
        }
        Condition::ProcessMemoryThreshold(m) => {
            pattern(&m.process_pattern, &field("process_pattern"), problems).map(|name| {
                Matcher::Memory {
                    name,
                    threshold_mb: m.threshold_mb,
                }
            })
        }
        Condition::UnknownProcessListening(()) => Some(Matcher::Unknown),
        Condition::ExposedListener(e) => {
            if e.exposure.is_empty() {
                problems.push(format!(
                    "{} is empty: name at least one of loopback, filtered, reachable, unknown",
                    field("exposure")
                ));
            }
            let ports = e.ports.as_ref().map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| port(*p, id, "ports", problems))
                    .collect::<Vec<u16>>()
            });
            Some(Matcher::Exposed {
                exposure: e.exposure.clone(),
                ports,
            })
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(CompiledRule {
        id: rule.id.clone(),
        name: rule.name.clone(),
        severity: rule.severity,
        condition: rule.condition.type_name(),
        enabled: rule.enabled,
        // Beyond what a TimeDelta holds (about 292 million years) a
        // cooldown means "never again": saturate.
        cooldown: i64::try_from(rule.cooldown_seconds)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .unwrap_or(TimeDelta::MAX),
        matcher: matcher?,
    })
}

/// Checks everything the types cannot (ranges, regexes, unique ids) and
/// compiles the rules; on failure, lists every problem of the file.
pub fn compile(file: &AlertsFile, path: &Path) -> Result<Rules, RulesError> {
    let mut problems = Vec::new();
    let mut compiled = Vec::new();
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in file.rules.iter().enumerate() {
        compiled.extend(compile_rule(rule, i, &mut problems));
        if let Some(first) = first_index.insert(&rule.id, i) {
            problems.push(format!(
                "rule id `{}` is used twice (rules[{first}] and rules[{i}])",
                rule.id
            ));
        }
    }
    let mut known = Vec::new();
    for (i, name) in file.known_processes.iter().flatten().enumerate() {
        // Names match whole: `sshd` is not `sshd-evil`. The entry is
        // checked alone first, so that one like `a)|(b` cannot escape the
        // anchoring group.
        let what = format!("known_processes[{i}]");
        let (kind, regex): (fn(Pattern) -> Known, &str) =
            if let Some(r) = name.strip_prefix("source:") {
                (Known::Source, r)
            } else if let Some(r) = name.strip_prefix("package:") {
                (Known::Package, r)
            } else {
                (Known::Name, name)
            };
        if pattern(regex, &what, &mut problems).is_some() {
            known.extend(pattern(&format!("^(?:{regex})$"), &what, &mut problems).map(kind));
        }
    }
    if problems.is_empty() {
        Ok(Rules {
            file: file.clone(),
            compiled,
            known,
        })
    } else {
        // Problems quote ids and patterns from the file.
        Err(RulesError::Invalid {
            path: shown(path),
            problems: Problems(problems.iter().map(|p| safe_str(p)).collect()),
        })
    }
}

/// Parses, validates and compiles.
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Rules, RulesError> {
    compile(&parse(bytes, path)?, path)
}
