//! Printing responses: JSON (default, binary fields base64) or text for people.

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

pub fn print<T: Serialize>(format: Format, response: &T) -> Result<(), serde_json::Error> {
    let mut value = serde_json::to_value(response)?;
    drop_nulls(&mut value);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        Format::Text => {
            let mut out = String::new();
            text(&value, 0, &mut out);
            print!("{out}");
        }
    }
    Ok(())
}

/// Absent optional fields are left out, as the AWS CLI does.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, v| !v.is_null());
            fields.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn text(value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    let Value::Object(fields) = value else {
        out.push_str(&format!("{pad}{}\n", scalar("", value)));
        return;
    };
    for (name, field) in fields {
        match field {
            Value::Object(_) => {
                out.push_str(&format!("{pad}{name}:\n"));
                text(field, indent + 1, out);
            }
            Value::Array(items) if items.iter().any(Value::is_object) => {
                out.push_str(&format!("{pad}{name}:\n"));
                for item in items {
                    out.push_str(&format!("{pad}  -\n"));
                    text(item, indent + 2, out);
                }
            }
            Value::Array(items) => {
                let joined: Vec<String> = items.iter().map(|v| scalar(name, v)).collect();
                out.push_str(&format!("{pad}{name}: {}\n", joined.join(", ")));
            }
            // Empty strings and absent optionals say nothing to a person.
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            _ => out.push_str(&format!("{pad}{name}: {}\n", scalar(name, field))),
        }
    }
}

fn scalar(name: &str, value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if name.ends_with("_date") => {
            // A date no RFC 3339 text can hold stays the number it came as.
            n.as_i64()
                .and_then(|secs| Timestamp::from_secs(secs).rfc3339())
                .unwrap_or_else(|| n.to_string())
        }
        other => other.to_string(),
    }
}

use crate::time::Timestamp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        let date = |secs: i64| scalar("creation_date", &serde_json::json!(secs));
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(date(1_796_083_199), "2026-11-30T23:59:59Z");
        assert_eq!(date(-1), "1969-12-31T23:59:59Z");
        assert_eq!(date(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn text_output_nests_and_formats_dates() {
        let value = serde_json::json!({
            "key_metadata": {"key_id": "k1", "creation_date": 0, "description": ""},
            "aliases": [{"alias_name": "alias/a"}],
        });
        let mut out = String::new();
        text(&value, 0, &mut out);
        assert!(
            out.contains("key_metadata:\n  key_id: k1\n  creation_date: 1970-01-01T00:00:00Z\n"),
            "{out}"
        );
        assert!(!out.contains("description"), "{out}");
        assert!(
            out.contains("aliases:\n  -\n    alias_name: alias/a\n"),
            "{out}"
        );
    }
}
