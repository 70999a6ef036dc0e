//! The published JSON Schemas (`schema/` at the top of the repository),
//! generated from the types that write and read the formats: the event
//! line, `list --json`, the event socket's request, and `alerts.json`.
//! A test fails when the files and the types differ; `cargo xtask schema`
//! writes them again.

use schemars::{JsonSchema, generate::SchemaSettings};

use super::{Line, ListEntry, VERSION, request::Request};
use crate::rules::model::AlertsFile;

/// The version of `alerts.json`'s format: portwatch 0.1.8's, unchanged.
pub const ALERTS_VERSION: u32 = 1;

fn schema_value<T: JsonSchema>() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
}

fn text(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn schema<T: JsonSchema>() -> String {
    text(&schema_value::<T>())
}

/// The event line's schema, open to the `event`s a later version adds
/// (which readers skip): one more branch of its `oneOf`, for an object
/// whose `event` is none of today's.
fn line_schema() -> String {
    let mut value = schema_value::<Line>();
    if let Some(branches) = value.get_mut("oneOf").and_then(|b| b.as_array_mut()) {
        let known: Vec<serde_json::Value> = branches
            .iter()
            .filter_map(|b| b.pointer("/properties/event/const").cloned())
            .collect();
        branches.push(serde_json::json!({
            "description": "An event a later version of this format adds: readers skip it.",
            "type": "object",
            "properties": {"event": {"type": "string", "not": {"enum": known}}},
            "required": ["event"]
        }));
    }
    text(&value)
}

/// Each schema: its file name under `schema/`, and its text.
pub fn published() -> Vec<(String, String)> {
    vec![
        (format!("event-line.v{VERSION}.json"), line_schema()),
        (format!("list.v{VERSION}.json"), schema::<Vec<ListEntry>>()),
        (format!("request.v{VERSION}.json"), schema::<Request>()),
        (
            format!("alerts.v{ALERTS_VERSION}.json"),
            schema::<AlertsFile>(),
        ),
        (
            format!("policy.v{}.json", crate::policy::model::VERSION),
            schema::<crate::policy::PolicyFile>(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in files are the types' schemas. With
    /// `PORTWATCH_WRITE_SCHEMAS=1` (what `cargo xtask schema` sets) the
    /// files are written instead.
    #[test]
    fn the_published_schemas_are_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema");
        let write = std::env::var_os("PORTWATCH_WRITE_SCHEMAS").is_some_and(|v| v == "1");
        for (name, text) in published() {
            let path = dir.join(&name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "schema/{name} is not what the types say: run `cargo xtask schema` and commit it"
            );
        }
    }
}
