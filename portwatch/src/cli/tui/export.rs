//! The table as it is shown (filtered, sorted) as JSON or CSV. Pure.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::view::{Column, Item, Line, cell};

/// The rows `lines` show of `items`, in `columns`: a JSON array of objects
/// keyed by column, or CSV with a header. Texts were made safe when read;
/// CSV quotes what needs it.
pub fn view(
    columns: &[Column],
    items: &[Item],
    lines: &[Line],
    now: DateTime<Utc>,
    csv: bool,
) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Item { index, .. } => Some(&items[*index]),
            Line::Header { .. } => None,
        })
        .map(|item| columns.iter().map(|c| cell(item, *c, now)).collect())
        .collect();
    if csv {
        let mut out = String::new();
        let header: Vec<String> = columns.iter().map(|c| c.title().to_lowercase()).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    } else {
        let objects: Vec<Value> = rows
            .into_iter()
            .map(|row| {
                let mut obj = Map::new();
                for (c, v) in columns.iter().zip(row) {
                    obj.insert(c.title().to_lowercase(), Value::String(v));
                }
                Value::Object(obj)
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&objects).unwrap_or_else(|_| "[]".into());
        text.push('\n');
        text
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break. A
/// field that a spreadsheet would run as a formula (it starts with `=`,
/// `+`, `-`, `@`, a tab or a carriage return: a process can name itself
/// `=SUM(1,2)`) is neutralised with a leading `'`, as OWASP advises.
fn csv_field(f: &str) -> String {
    // A lone `-` (no age, no container) is no formula.
    let f = if f != "-" && f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{f}")
    } else {
        f.to_string()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("nginx"), "nginx");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    /// OWASP's CSV injection rule: what a spreadsheet would evaluate is
    /// made text.
    #[test]
    fn csv_neutralises_what_a_spreadsheet_would_run() {
        assert_eq!(csv_field("=SUM(1,2)"), "\"'=SUM(1,2)\"");
        assert_eq!(csv_field("+cmd"), "'+cmd");
        assert_eq!(csv_field("-x"), "'-x");
        assert_eq!(csv_field("@A1"), "'@A1");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("-"), "-");
    }
}
