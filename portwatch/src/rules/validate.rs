//! Reads and checks an alerts file. Every problem is one sentence that
//! names the file, the rule and the field.

use std::{collections::HashMap, path::Path};

use regex::Regex;

use super::model::{AlertRule, AlertsFile, Condition};

/// Why an alerts file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
pub fn parse(bytes: &[u8], path: &Path) -> Result<AlertsFile, RulesError> {
    let path = path.display().to_string();
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
                format!("{at}: ")
            },
            message: strip_position(&inner.to_string()),
        }
    })?;
    de.end().map_err(|e| RulesError::Syntax {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
        at: String::new(),
        message: strip_position(&e.to_string()),
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

/// Compiles a rule regex, explaining look-around, which Rust's regex crate
/// does not support (the original example used it, so its rule never fired).
pub fn compile_regex(pattern: &str, what: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|la| pattern.contains(la)) {
            format!("{what} uses look-around ((?=, (?!, (?<=, (?<!), which Rust regex syntax does not support")
        } else {
            let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            format!("{what} is not a valid regex: {first}")
        }
    })
}

fn check_port(value: u64, rule: &str, field: &str, problems: &mut Vec<String>) {
    if value > 65535 {
        problems.push(format!(
            "rule `{rule}`: condition.params.{field} is {value}, outside 0-65535"
        ));
    }
}

fn check_rule(rule: &AlertRule, index: usize, problems: &mut Vec<String>) {
    let id = &rule.id;
    if id.trim().is_empty() {
        problems.push(format!("rules[{index}] has an empty id"));
    }
    if rule.cooldown_seconds == 0 {
        problems.push(format!(
            "rule `{id}`: cooldown_seconds must be greater than 0"
        ));
    }
    let field = |f: &str| format!("rule `{id}`: condition.params.{f}");
    match &rule.condition {
        Condition::PortOpened(p) | Condition::PortClosed(p) => {
            check_port(p.port, id, "port", problems)
        }
        Condition::PortRangeActivity(r) => {
            check_port(r.start_port, id, "start_port", problems);
            check_port(r.end_port, id, "end_port", problems);
            if r.end_port < r.start_port {
                problems.push(format!(
                    "rule `{id}`: condition.params.end_port ({}) is below start_port ({})",
                    r.end_port, r.start_port
                ));
            }
        }
        Condition::ExternalConnection(e) => {
            if let Err(msg) = compile_regex(&e.ip_pattern, &field("ip_pattern")) {
                problems.push(msg);
            }
        }
        Condition::ProcessCpuThreshold(c) => {
            if let Err(msg) = compile_regex(&c.process_pattern, &field("process_pattern")) {
                problems.push(msg);
            }
            if !c.threshold_percent.is_finite() || c.threshold_percent < 0.0 {
                problems.push(format!(
                    "{} must be a number of at least 0",
                    field("threshold_percent")
                ));
            }
        }
        Condition::ProcessMemoryThreshold(m) => {
            if let Err(msg) = compile_regex(&m.process_pattern, &field("process_pattern")) {
                problems.push(msg);
            }
        }
        Condition::UnknownProcessListening(()) => {}
    }
}

/// Checks everything the types cannot: ranges, regexes, unique ids.
pub fn validate(file: &AlertsFile, path: &Path) -> Result<(), RulesError> {
    let mut problems = Vec::new();
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in file.rules.iter().enumerate() {
        check_rule(rule, i, &mut problems);
        if let Some(first) = first_index.insert(&rule.id, i) {
            problems.push(format!(
                "rule id `{}` is used twice (rules[{first}] and rules[{i}])",
                rule.id
            ));
        }
    }
    for (i, name) in file.known_processes.iter().flatten().enumerate() {
        if let Err(msg) = compile_regex(name, &format!("known_processes[{i}]")) {
            problems.push(msg);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RulesError::Invalid {
            path: path.display().to_string(),
            problems: Problems(problems),
        })
    }
}

/// Parses and validates.
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<AlertsFile, RulesError> {
    let file = parse(bytes, path)?;
    validate(&file, path)?;
    Ok(file)
}
