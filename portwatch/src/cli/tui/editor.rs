//! The rule editor (`E`): a list of the rules (new, delete, toggle,
//! edit) and a form for one rule. Text fields take every character; the
//! rule is validated before it is saved and the problem shown in place;
//! an edited rule keeps its id. Pure: saving is an effect.

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use portwatch::rules::{
    model::{
        AlertRule, AlertsFile, Condition, CpuParams, ExposedParams, ExposureName, ExternalParams,
        MemoryParams, PortParams, RangeParams, Severity,
    },
    validate::compile,
};

/// What the editor asks of the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Stay,
    Close,
    Save(AlertsFile),
}

/// The condition types, as the file names them.
pub const CONDITIONS: [&str; 8] = Condition::NAMES;
const SEVERITIES: [&str; 3] = ["Info", "Warning", "Critical"];
const BOOLS: [&str; 2] = ["true", "false"];

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Text,
    Choice(&'static [&'static str]),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub label: &'static str,
    pub kind: Kind,
    pub value: String,
}

impl Field {
    fn text(label: &'static str, value: impl Into<String>) -> Field {
        Field {
            label,
            kind: Kind::Text,
            value: value.into(),
        }
    }

    fn choice(label: &'static str, options: &'static [&'static str], value: &str) -> Field {
        Field {
            label,
            kind: Kind::Choice(options),
            value: value.to_string(),
        }
    }
}

/// One rule being edited.
#[derive(Clone, Debug, PartialEq)]
pub struct Form {
    /// The rule's place in the file, or None for a new rule.
    pub index: Option<usize>,
    pub id: String,
    pub fields: Vec<Field>,
    pub focus: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Editor {
    pub file: AlertsFile,
    /// Why the file cannot be edited (it does not parse): shown, and
    /// nothing is saved over it.
    pub read_only: Option<String>,
    pub selected: usize,
    pub form: Option<Form>,
    /// The last save's or validation's problem, shown in place.
    pub error: Option<String>,
}

/// Where the common fields are: name, enabled, severity, cooldown, then
/// the condition's type, then its parameters.
#[cfg(test)]
const COOLDOWN: usize = 3;
const TYPE: usize = 4;

fn params(condition: &str, old: &[Field]) -> Vec<Field> {
    let keep = |label: &'static str, default: &str| -> Field {
        let value = old
            .iter()
            .find(|f| f.label == label)
            .map_or(default.to_string(), |f| f.value.clone());
        if label == "exclude_private" {
            Field::choice(label, &BOOLS, &value)
        } else {
            Field::text(label, value)
        }
    };
    match Condition::blank(condition) {
        Some(Condition::PortOpened(_) | Condition::PortClosed(_)) => vec![keep("port", "")],
        Some(Condition::PortRangeActivity(_)) => {
            vec![keep("start_port", ""), keep("end_port", "")]
        }
        Some(Condition::ExternalConnection(_)) => {
            vec![keep("ip_pattern", ""), keep("exclude_private", "true")]
        }
        Some(Condition::ProcessCpuThreshold(_)) => {
            vec![keep("process_pattern", ""), keep("threshold_percent", "")]
        }
        Some(Condition::ProcessMemoryThreshold(_)) => {
            vec![keep("process_pattern", ""), keep("threshold_mb", "")]
        }
        Some(Condition::ExposedListener(_)) => {
            vec![keep("exposure", "reachable"), keep("ports", "")]
        }
        Some(Condition::UnknownProcessListening(())) | None => Vec::new(),
    }
}

fn form_of(rule: &AlertRule, index: Option<usize>) -> Form {
    let mut fields = vec![
        Field::text("name", rule.name.clone()),
        Field::choice(
            "enabled",
            &BOOLS,
            if rule.enabled { "true" } else { "false" },
        ),
        Field::choice("severity", &SEVERITIES, rule.severity.as_str()),
        Field::text("cooldown_seconds", rule.cooldown_seconds.to_string()),
        Field::choice("type", &CONDITIONS, rule.condition.type_name()),
    ];
    let values: Vec<Field> = match &rule.condition {
        Condition::PortOpened(p) | Condition::PortClosed(p) => {
            vec![Field::text("port", p.port.to_string())]
        }
        Condition::PortRangeActivity(r) => vec![
            Field::text("start_port", r.start_port.to_string()),
            Field::text("end_port", r.end_port.to_string()),
        ],
        Condition::ExternalConnection(e) => vec![
            Field::text("ip_pattern", e.ip_pattern.clone()),
            Field::text("exclude_private", e.exclude_private.to_string()),
        ],
        Condition::ProcessCpuThreshold(c) => vec![
            Field::text("process_pattern", c.process_pattern.clone()),
            Field::text("threshold_percent", c.threshold_percent.to_string()),
        ],
        Condition::ProcessMemoryThreshold(m) => vec![
            Field::text("process_pattern", m.process_pattern.clone()),
            Field::text("threshold_mb", m.threshold_mb.to_string()),
        ],
        Condition::UnknownProcessListening(()) => Vec::new(),
        Condition::ExposedListener(e) => vec![
            Field::text("exposure", exposure_list(&e.exposure)),
            Field::text(
                "ports",
                e.ports.as_ref().map_or(String::new(), |p| {
                    p.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                }),
            ),
        ],
    };
    fields.extend(params(rule.condition.type_name(), &values));
    Form {
        index,
        id: rule.id.clone(),
        fields,
        focus: 0,
    }
}

/// A fresh id from a name: lowercase letters, digits and dashes, made
/// unique in `file`.
fn new_id(name: &str, file: &AlertsFile) -> String {
    let slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let base = slug.trim_matches('-').to_string();
    let base = if base.is_empty() {
        "rule".to_string()
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while file.rules.iter().any(|r| r.id == id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// `reachable,unknown`: the editor's text for a list of exposures.
fn exposure_list(names: &[ExposureName]) -> String {
    names
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl Form {
    /// The `exposure` field: names split on commas.
    fn exposures(&self) -> Result<Vec<ExposureName>, String> {
        self.value("exposure")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                ExposureName::parse(s).ok_or_else(|| {
                    format!("exposure: `{s}` is none of loopback, filtered, reachable, unknown")
                })
            })
            .collect()
    }

    /// The `ports` field: empty for any port, else numbers split on commas.
    fn ports(&self) -> Result<Option<Vec<u64>>, String> {
        let text = self.value("ports").trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.split(',')
            .map(str::trim)
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("ports: `{p}` is not a whole number"))
            })
            .collect::<Result<Vec<u64>, String>>()
            .map(Some)
    }

    fn value(&self, label: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map_or("", |f| f.value.as_str())
    }

    /// The rule the form describes, or one sentence on a field that
    /// cannot be read.
    fn rule(&self) -> Result<AlertRule, String> {
        let number = |label: &str| -> Result<u64, String> {
            self.value(label)
                .trim()
                .parse()
                .map_err(|_| format!("{label}: `{}` is not a whole number", self.value(label)))
        };
        let float = |label: &str| -> Result<f64, String> {
            self.value(label)
                .trim()
                .parse()
                .map_err(|_| format!("{label}: `{}` is not a number", self.value(label)))
        };
        // The choice offers only Condition::NAMES.
        let blank =
            Condition::blank(self.value("type")).unwrap_or(Condition::UnknownProcessListening(()));
        let condition = match blank {
            Condition::PortOpened(_) => Condition::PortOpened(PortParams {
                port: number("port")?,
            }),
            Condition::PortClosed(_) => Condition::PortClosed(PortParams {
                port: number("port")?,
            }),
            Condition::PortRangeActivity(_) => Condition::PortRangeActivity(RangeParams {
                start_port: number("start_port")?,
                end_port: number("end_port")?,
            }),
            Condition::ExternalConnection(_) => Condition::ExternalConnection(ExternalParams {
                ip_pattern: self.value("ip_pattern").to_string(),
                exclude_private: self.value("exclude_private") == "true",
            }),
            Condition::ProcessCpuThreshold(_) => Condition::ProcessCpuThreshold(CpuParams {
                process_pattern: self.value("process_pattern").to_string(),
                threshold_percent: float("threshold_percent")?,
            }),
            Condition::ProcessMemoryThreshold(_) => {
                Condition::ProcessMemoryThreshold(MemoryParams {
                    process_pattern: self.value("process_pattern").to_string(),
                    threshold_mb: number("threshold_mb")?,
                })
            }
            Condition::UnknownProcessListening(()) => Condition::UnknownProcessListening(()),
            Condition::ExposedListener(_) => Condition::ExposedListener(ExposedParams {
                exposure: self.exposures()?,
                ports: self.ports()?,
            }),
        };
        let severity = match self.value("severity") {
            "Info" => Severity::Info,
            "Critical" => Severity::Critical,
            _ => Severity::Warning,
        };
        Ok(AlertRule {
            id: self.id.clone(),
            name: self.value("name").to_string(),
            condition,
            enabled: self.value("enabled") == "true",
            severity,
            cooldown_seconds: number("cooldown_seconds")?,
        })
    }
}

impl Editor {
    pub fn new(file: AlertsFile, read_only: Option<String>) -> Editor {
        Editor {
            file,
            read_only,
            selected: 0,
            form: None,
            error: None,
        }
    }

    /// The file was saved: it is the one in force now.
    pub fn saved(&mut self, file: AlertsFile) {
        self.file = file;
        self.form = None;
        self.error = None;
        self.selected = self.selected.min(self.file.rules.len().saturating_sub(1));
    }

    /// A file with `change` made, if it validates; else the problem.
    fn checked(&mut self, change: impl FnOnce(&mut AlertsFile)) -> Outcome {
        if let Some(why) = &self.read_only {
            self.error = Some(format!("read-only: {why}"));
            return Outcome::Stay;
        }
        let mut file = self.file.clone();
        change(&mut file);
        match compile(&file, Path::new("alerts.json")) {
            Ok(_) => {
                self.error = None;
                Outcome::Save(file)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Outcome::Stay
            }
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        match &mut self.form {
            Some(_) => self.on_form_key(key),
            None => self.on_list_key(key),
        }
    }

    fn on_list_key(&mut self, key: KeyEvent) -> Outcome {
        let n = self.file.rules.len();
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return Outcome::Close,
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected = (self.selected + 1).min(n.saturating_sub(1)),
            KeyCode::Char('n') => {
                if self.read_only.is_none() {
                    let blank = AlertRule {
                        id: String::new(),
                        name: String::new(),
                        condition: Condition::PortOpened(PortParams { port: 0 }),
                        enabled: true,
                        severity: Severity::Warning,
                        cooldown_seconds: 60,
                    };
                    self.form = Some(form_of(&blank, None));
                    self.error = None;
                } else {
                    self.error = self.read_only.as_ref().map(|w| format!("read-only: {w}"));
                }
            }
            KeyCode::Enter if n > 0 => {
                self.form = Some(form_of(
                    &self.file.rules[self.selected],
                    Some(self.selected),
                ));
                self.error = None;
            }
            KeyCode::Char(' ') if n > 0 => {
                let i = self.selected;
                return self.checked(|f| f.rules[i].enabled = !f.rules[i].enabled);
            }
            KeyCode::Char('d') | KeyCode::Delete if n > 0 => {
                let i = self.selected;
                return self.checked(|f| {
                    f.rules.remove(i);
                });
            }
            _ => {}
        }
        Outcome::Stay
    }

    fn on_form_key(&mut self, key: KeyEvent) -> Outcome {
        let Some(form) = &mut self.form else {
            return Outcome::Stay;
        };
        let fields = form.fields.len();
        match key.code {
            KeyCode::Esc => {
                self.form = None;
                self.error = None;
            }
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % fields,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + fields - 1) % fields,
            KeyCode::Enter => {
                let mut rule = match form.rule() {
                    Ok(r) => r,
                    Err(e) => {
                        self.error = Some(e);
                        return Outcome::Stay;
                    }
                };
                let index = form.index;
                if index.is_none() {
                    rule.id = new_id(&rule.name, &self.file);
                }
                return self.checked(|f| match index {
                    Some(i) => f.rules[i] = rule,
                    None => f.rules.push(rule),
                });
            }
            code => {
                let field = &mut form.fields[form.focus];
                match (&field.kind, code) {
                    (
                        Kind::Choice(options),
                        KeyCode::Left | KeyCode::Right | KeyCode::Char(' '),
                    ) => {
                        let i = options.iter().position(|o| *o == field.value).unwrap_or(0);
                        let next = if code == KeyCode::Left {
                            (i + options.len() - 1) % options.len()
                        } else {
                            (i + 1) % options.len()
                        };
                        field.value = options[next].to_string();
                        if form.focus == TYPE {
                            let kept = form.fields.split_off(TYPE + 1);
                            let value = form.fields[TYPE].value.clone();
                            form.fields.extend(params(&value, &kept));
                        }
                    }
                    (Kind::Text, KeyCode::Backspace) => {
                        field.value.pop();
                    }
                    // Every character, space and `v` included.
                    (Kind::Text, KeyCode::Char(c))
                        if !key.modifiers.contains(KeyModifiers::CONTROL) =>
                    {
                        field.value.push(c);
                    }
                    _ => {}
                }
            }
        }
        Outcome::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwatch::rules::validate::load_bytes;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(e: &mut Editor, text: &str) {
        for c in text.chars() {
            assert_eq!(e.on_key(press(KeyCode::Char(c))), Outcome::Stay);
        }
    }

    fn example() -> AlertsFile {
        load_bytes(portwatch::rules::store::EXAMPLE.as_bytes(), Path::new("x"))
            .unwrap()
            .file
    }

    #[test]
    fn a_new_rule_takes_every_character_and_gets_an_id() {
        let mut e = Editor::new(example(), None);
        e.on_key(press(KeyCode::Char('n')));
        typed(&mut e, "dev server v2");
        // Tab to cooldown, clear it, type 30; then port.
        for _ in 0..COOLDOWN {
            e.on_key(press(KeyCode::Tab));
        }
        for _ in 0..2 {
            e.on_key(press(KeyCode::Backspace));
        }
        typed(&mut e, "30");
        e.on_key(press(KeyCode::Tab));
        e.on_key(press(KeyCode::Tab));
        e.on_key(press(KeyCode::Backspace));
        typed(&mut e, "5173");
        let Outcome::Save(file) = e.on_key(press(KeyCode::Enter)) else {
            panic!("{:?}", e.error);
        };
        let rule = file.rules.last().unwrap();
        assert_eq!(
            (rule.id.as_str(), rule.name.as_str()),
            ("dev-server-v2", "dev server v2")
        );
        assert_eq!(rule.cooldown_seconds, 30);
        assert_eq!(
            rule.condition,
            Condition::PortOpened(PortParams { port: 5173 })
        );
    }

    /// The editor offers ExposedListener: its exposures and ports as
    /// comma lists, a wrong name refused in one sentence.
    #[test]
    fn an_exposed_listener_rule_is_offered_and_saved() {
        let mut e = Editor::new(example(), None);
        e.on_key(press(KeyCode::Char('n')));
        typed(&mut e, "exposed db");
        for _ in 0..TYPE {
            e.on_key(press(KeyCode::Tab));
        }
        // PortOpened is first; ExposedListener last: one step left.
        e.on_key(press(KeyCode::Left));
        assert_eq!(e.form.as_ref().unwrap().value("type"), "ExposedListener");
        e.on_key(press(KeyCode::Tab));
        typed(&mut e, ",public");
        assert_eq!(e.on_key(press(KeyCode::Enter)), Outcome::Stay);
        assert_eq!(
            e.error.as_deref(),
            Some("exposure: `public` is none of loopback, filtered, reachable, unknown")
        );
        for _ in 0..",public".len() {
            e.on_key(press(KeyCode::Backspace));
        }
        typed(&mut e, ",unknown");
        e.on_key(press(KeyCode::Tab));
        typed(&mut e, "5432, 3306");
        let Outcome::Save(file) = e.on_key(press(KeyCode::Enter)) else {
            panic!("{:?}", e.error);
        };
        assert_eq!(
            file.rules.last().unwrap().condition,
            Condition::ExposedListener(ExposedParams {
                exposure: vec![ExposureName::Reachable, ExposureName::Unknown],
                ports: Some(vec![5432, 3306]),
            })
        );
    }

    #[test]
    fn an_edited_rule_keeps_its_id_and_a_bad_one_is_not_saved() {
        let mut e = Editor::new(example(), None);
        let id = e.file.rules[0].id.clone();
        e.on_key(press(KeyCode::Enter));
        // Change the type to PortRangeActivity, with an empty range.
        for _ in 0..TYPE {
            e.on_key(press(KeyCode::Tab));
        }
        e.on_key(press(KeyCode::Right));
        e.on_key(press(KeyCode::Right));
        assert_eq!(e.form.as_ref().unwrap().value("type"), "PortRangeActivity");
        e.on_key(press(KeyCode::Tab));
        typed(&mut e, "90");
        e.on_key(press(KeyCode::Tab));
        typed(&mut e, "80");
        assert_eq!(e.on_key(press(KeyCode::Enter)), Outcome::Stay);
        assert!(
            e.error
                .as_deref()
                .unwrap()
                .contains("end_port (80) is below start_port (90)"),
            "{:?}",
            e.error
        );
        e.on_key(press(KeyCode::Backspace));
        e.on_key(press(KeyCode::Backspace));
        typed(&mut e, "100");
        let Outcome::Save(file) = e.on_key(press(KeyCode::Enter)) else {
            panic!("{:?}", e.error);
        };
        assert_eq!(file.rules[0].id, id);
    }

    #[test]
    fn toggles_and_deletes_save_at_once_and_read_only_saves_nothing() {
        let mut e = Editor::new(example(), None);
        let was = e.file.rules[0].enabled;
        let Outcome::Save(file) = e.on_key(press(KeyCode::Char(' '))) else {
            panic!()
        };
        assert_eq!(file.rules[0].enabled, !was);
        let Outcome::Save(file) = e.on_key(press(KeyCode::Char('d'))) else {
            panic!()
        };
        assert_eq!(file.rules.len(), e.file.rules.len() - 1);

        let mut ro = Editor::new(AlertsFile::default(), Some("line 3: expected `,`".into()));
        assert_eq!(ro.on_key(press(KeyCode::Char('n'))), Outcome::Stay);
        assert_eq!(ro.error.as_deref(), Some("read-only: line 3: expected `,`"));
        assert_eq!(ro.on_key(press(KeyCode::Esc)), Outcome::Close);
    }
}
