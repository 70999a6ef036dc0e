//! The `alerts.json` format, exactly as portwatch 0.1.8 defined it, plus
//! the optional top-level `known_processes` list (older readers ignore it).

use serde::{Deserialize, Serialize};

/// The whole file: `{"rules": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    pub rules: Vec<AlertRule>,
    /// Process names (or regexes) that UnknownProcessListening accepts, on
    /// top of the processes already listening when the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_processes: Option<Vec<String>>,
}

/// One rule. Every key is required, as in the original format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    pub condition: Condition,
    pub enabled: bool,
    pub severity: Severity,
    pub cooldown_seconds: u64,
}

/// `Info`, `Warning` or `Critical`, with exactly that casing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// As the file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::Critical => "Critical",
        }
    }
}

/// Adjacently tagged: `{"type": "PortOpened", "params": {"port": 22}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "params", deny_unknown_fields)]
pub enum Condition {
    PortOpened(PortParams),
    PortClosed(PortParams),
    PortRangeActivity(RangeParams),
    ExternalConnection(ExternalParams),
    ProcessCpuThreshold(CpuParams),
    ProcessMemoryThreshold(MemoryParams),
    /// `"params": null` (a unit value, so it is written back as `null`).
    UnknownProcessListening(()),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortParams {
    /// Kept wide so that 70000 is reported as out of range, not as a type error.
    pub port: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    pub start_port: u64,
    pub end_port: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalParams {
    pub ip_pattern: String,
    pub exclude_private: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuParams {
    pub process_pattern: String,
    pub threshold_percent: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryParams {
    pub process_pattern: String,
    pub threshold_mb: u64,
}

impl Condition {
    /// The variant name, as in the file's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Condition::PortOpened(_) => "PortOpened",
            Condition::PortClosed(_) => "PortClosed",
            Condition::PortRangeActivity(_) => "PortRangeActivity",
            Condition::ExternalConnection(_) => "ExternalConnection",
            Condition::ProcessCpuThreshold(_) => "ProcessCpuThreshold",
            Condition::ProcessMemoryThreshold(_) => "ProcessMemoryThreshold",
            Condition::UnknownProcessListening(()) => "UnknownProcessListening",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_process_listening_keeps_params_null() {
        let c: Condition =
            serde_json::from_str(r#"{"type":"UnknownProcessListening","params":null}"#).unwrap();
        assert_eq!(c, Condition::UnknownProcessListening(()));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"type":"UnknownProcessListening","params":null}"#
        );
    }

    #[test]
    fn severity_casing_is_exact() {
        assert!(serde_json::from_str::<Severity>(r#""Warning""#).is_ok());
        assert!(serde_json::from_str::<Severity>(r#""warning""#).is_err());
    }
}
