//! rabbitmqctl's output shapes: `table` is a header line of column names then one line
//! per item, tab-separated; `json` is an array of objects with the same columns.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Formatter {
    Table,
    Json,
}

/// How items are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub formatter: Formatter,
    /// `-q`: no "Listing …" line.
    pub quiet: bool,
    /// `--no-table-headers`.
    pub headers: bool,
}

impl Output {
    /// An informational line ("Listing queues for vhost / ..."), as rabbitmqctl prints
    /// it before a table; not with `-q` nor with the JSON formatter.
    pub fn info(&self, line: &str) {
        if !self.quiet && self.formatter == Formatter::Table {
            println!("{line}");
        }
    }

    /// `rows` (one JSON object each, keyed by column) in `columns` order.
    pub fn table(&self, columns: &[String], rows: &[Map<String, Value>]) {
        match self.formatter {
            Formatter::Json => {
                let items: Vec<Value> = rows.iter().cloned().map(Value::Object).collect();
                println!("{}", Value::Array(items));
            }
            Formatter::Table => {
                if self.headers {
                    println!("{}", columns.join("\t"));
                }
                for row in rows {
                    let cells: Vec<String> = columns
                        .iter()
                        .map(|c| cell(row.get(c).unwrap_or(&Value::Null)))
                        .collect();
                    println!("{}", cells.join("\t"));
                }
            }
        }
    }

    /// One object (status): `key: value` lines, or the JSON.
    pub fn object(&self, value: &Value, lines: &[(&str, String)]) {
        match self.formatter {
            Formatter::Json => println!("{value}"),
            Formatter::Table => {
                for (k, v) in lines {
                    println!("{k}: {v}");
                }
            }
        }
    }
}

/// A value in a table cell: strings bare, lists of strings as rabbitmqctl shows tags
/// (`[administrator, monitoring]`), other structures as compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            format!("[{}]", names.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_as_rabbitmqctls() {
        assert_eq!(cell(&json!("q")), "q");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!(["a", "b"])), "[a, b]");
        assert_eq!(cell(&json!({"x": 1})), r#"{"x":1}"#);
    }
}
