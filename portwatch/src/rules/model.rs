//! The `alerts.json` format, exactly as portwatch 0.1.8 defined it, plus
//! the optional top-level `known_processes` list (older readers ignore it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole file: `{"rules": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "portwatch alerts.json")]
pub struct AlertsFile {
    pub rules: Vec<AlertRule>,
    /// Process names (or regexes) that UnknownProcessListening accepts, on
    /// top of the processes already listening when the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_processes: Option<Vec<String>>,
}

/// One rule. Every key is required, as in the original format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    pub condition: Condition,
    pub enabled: bool,
    pub severity: Severity,
    /// Seconds between two firings of this rule; more than 0.
    #[schemars(range(min = 1))]
    pub cooldown_seconds: u64,
}

/// `Info`, `Warning` or `Critical`, with exactly that casing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// A listener opens with, or changes to, one of these exposures.
    ExposedListener(ExposedParams),
}

/// An exposure, as `ExposedListener` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExposureName {
    Loopback,
    Filtered,
    Reachable,
    Unknown,
}

impl ExposureName {
    pub const ALL: [ExposureName; 4] = [
        ExposureName::Loopback,
        ExposureName::Filtered,
        ExposureName::Reachable,
        ExposureName::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExposureName::Loopback => "loopback",
            ExposureName::Filtered => "filtered",
            ExposureName::Reachable => "reachable",
            ExposureName::Unknown => "unknown",
        }
    }

    /// The name `text` spells, if any.
    pub fn parse(text: &str) -> Option<ExposureName> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposedParams {
    /// The exposures that fire: `["reachable"]`, say.
    pub exposure: Vec<ExposureName>,
    /// Only these ports; `null`: any.
    #[schemars(range(max = 65535))]
    pub ports: Option<Vec<u64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortParams {
    /// Kept wide so that 70000 is reported as out of range, not as a type error.
    #[schemars(range(max = 65535))]
    pub port: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    #[schemars(range(max = 65535))]
    pub start_port: u64,
    #[schemars(range(max = 65535))]
    pub end_port: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalParams {
    pub ip_pattern: String,
    pub exclude_private: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuParams {
    pub process_pattern: String,
    pub threshold_percent: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryParams {
    pub process_pattern: String,
    pub threshold_mb: u64,
}

impl Condition {
    /// Every condition type, as the file's `type` names it (serde derives
    /// the same names from the variants; a test checks they agree).
    pub const NAMES: [&'static str; 8] = [
        "PortOpened",
        "PortClosed",
        "PortRangeActivity",
        "ExternalConnection",
        "ProcessCpuThreshold",
        "ProcessMemoryThreshold",
        "UnknownProcessListening",
        "ExposedListener",
    ];

    fn index(&self) -> usize {
        match self {
            Condition::PortOpened(_) => 0,
            Condition::PortClosed(_) => 1,
            Condition::PortRangeActivity(_) => 2,
            Condition::ExternalConnection(_) => 3,
            Condition::ProcessCpuThreshold(_) => 4,
            Condition::ProcessMemoryThreshold(_) => 5,
            Condition::UnknownProcessListening(()) => 6,
            Condition::ExposedListener(_) => 7,
        }
    }

    /// The variant name, as in the file's `type`.
    pub fn type_name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The condition of type `name`, its parameters empty (for an editor
    /// to fill), or None for a name that is no condition.
    pub fn blank(name: &str) -> Option<Condition> {
        let text = String::new;
        Some(match Self::NAMES.iter().position(|n| *n == name)? {
            0 => Condition::PortOpened(PortParams { port: 0 }),
            1 => Condition::PortClosed(PortParams { port: 0 }),
            2 => Condition::PortRangeActivity(RangeParams {
                start_port: 0,
                end_port: 0,
            }),
            3 => Condition::ExternalConnection(ExternalParams {
                ip_pattern: text(),
                exclude_private: true,
            }),
            4 => Condition::ProcessCpuThreshold(CpuParams {
                process_pattern: text(),
                threshold_percent: 0.0,
            }),
            5 => Condition::ProcessMemoryThreshold(MemoryParams {
                process_pattern: text(),
                threshold_mb: 0,
            }),
            7 => Condition::ExposedListener(ExposedParams {
                exposure: vec![ExposureName::Reachable],
                ports: None,
            }),
            _ => Condition::UnknownProcessListening(()),
        })
    }

    /// The condition in short, for a list of rules: `PortOpened 8080`,
    /// `ProcessCpuThreshold node > 80%`. Patterns are as written in the
    /// file: escape them before showing them.
    pub fn summary(&self) -> String {
        let name = self.type_name();
        match self {
            Condition::PortOpened(p) | Condition::PortClosed(p) => format!("{name} {}", p.port),
            Condition::PortRangeActivity(r) => {
                format!("{name} {}-{}", r.start_port, r.end_port)
            }
            Condition::ExternalConnection(e) => format!(
                "{name} {}{}",
                e.ip_pattern,
                if e.exclude_private { " !private" } else { "" }
            ),
            Condition::ProcessCpuThreshold(c) => {
                format!("{name} {} > {}%", c.process_pattern, c.threshold_percent)
            }
            Condition::ProcessMemoryThreshold(m) => {
                format!("{name} {} > {} MB", m.process_pattern, m.threshold_mb)
            }
            Condition::UnknownProcessListening(()) => name.to_string(),
            Condition::ExposedListener(e) => {
                let names: Vec<&str> = e.exposure.iter().map(|x| x.as_str()).collect();
                match &e.ports {
                    Some(ports) => {
                        let ports: Vec<String> = ports.iter().map(u64::to_string).collect();
                        format!("{name} {} on {}", names.join(","), ports.join(","))
                    }
                    None => format!("{name} {}", names.join(",")),
                }
            }
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
    fn the_names_are_serdes_and_blank_gives_each_back() {
        for name in Condition::NAMES {
            let c = Condition::blank(name).unwrap();
            assert_eq!(c.type_name(), name);
            let json = serde_json::to_value(&c).unwrap();
            assert_eq!(json["type"], name, "serde's name for {name}");
        }
        assert_eq!(Condition::blank("PortOpen"), None);
    }

    #[test]
    fn summaries_say_the_condition_in_short() {
        let c = |json: &str| serde_json::from_str::<Condition>(json).unwrap().summary();
        assert_eq!(
            c(r#"{"type":"PortOpened","params":{"port":8080}}"#),
            "PortOpened 8080"
        );
        assert_eq!(
            c(r#"{"type":"PortRangeActivity","params":{"start_port":8000,"end_port":9000}}"#),
            "PortRangeActivity 8000-9000"
        );
        assert_eq!(
            c(
                r#"{"type":"ExternalConnection","params":{"ip_pattern":"10.*","exclude_private":true}}"#
            ),
            "ExternalConnection 10.* !private"
        );
        assert_eq!(
            c(
                r#"{"type":"ProcessCpuThreshold","params":{"process_pattern":"node","threshold_percent":80.5}}"#
            ),
            "ProcessCpuThreshold node > 80.5%"
        );
        assert_eq!(
            c(
                r#"{"type":"ProcessMemoryThreshold","params":{"process_pattern":"java","threshold_mb":512}}"#
            ),
            "ProcessMemoryThreshold java > 512 MB"
        );
        assert_eq!(
            c(r#"{"type":"UnknownProcessListening","params":null}"#),
            "UnknownProcessListening"
        );
    }

    #[test]
    fn severity_casing_is_exact() {
        assert!(serde_json::from_str::<Severity>(r#""Warning""#).is_ok());
        assert!(serde_json::from_str::<Severity>(r#""warning""#).is_err());
    }
}
