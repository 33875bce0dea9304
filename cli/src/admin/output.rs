//! What the admin CLI prints: aligned tables for people, proto3 JSON for
//! scripts (`-o json`), errors on stderr with one field violation per line,
//! and exit codes a script can test.

use std::io::Write as _;
use std::process::ExitCode;

use clap::ValueEnum;
use serde_json::Value;
use tonic::Code;

use super::proto_json::{Proto, short_enum_value, to_json};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns (a resource's main fields).
    #[default]
    Table,
    /// Canonical proto3 JSON, one document (a list is an array).
    Json,
}

/// A column: its heading and the JSON path (`auth.bearerToken`) it shows.
pub type Column = (&'static str, &'static str);

/// Prints `items` as a table of `columns`, or as a JSON array.
pub fn print_list<M: Proto>(format: Format, items: &[M], columns: &[Column]) {
    let mut values: Vec<Value> = items.iter().map(to_json).collect();
    match format {
        Format::Json => print_json(&Value::Array(values)),
        Format::Table => {
            for value in &mut values {
                shorten_enums::<M>(value, columns);
            }
            print_table(&values, columns);
        }
    }
}

/// Enum values of `columns` as tables show them (`failed`, not
/// `EVENT_STATUS_FAILED`), written back at the top level.
pub fn shorten_enums<M: Proto>(value: &mut Value, columns: &[Column]) {
    for (_, path) in columns {
        if let Some(text) = cell_value(value, path).and_then(Value::as_str)
            && let Some(short) = short_enum_value::<M>(path, text)
            && let Some(slot) = value.pointer_mut(&format!("/{}", path.replace('.', "/")))
        {
            *slot = Value::String(short);
        }
    }
}

fn cell_value<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |current, key| current.get(key))
}

/// Prints one resource: JSON in both formats (a table of one row says less
/// than its fields), except where a command has a view of its own.
pub fn print_one<M: Proto>(item: &M) {
    print_json(&to_json(item));
}

pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// The text a cell shows for `path` in `value`.
pub fn cell(value: &Value, path: &str) -> String {
    match cell_value(value, path) {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Columns as wide as their widest cell; the last one unpadded.
pub fn print_table(rows: &[Value], columns: &[Column]) {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|row| columns.iter().map(|(_, path)| cell(row, path)).collect()).collect();
    let headings: Vec<String> = columns.iter().map(|(heading, _)| (*heading).to_owned()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| cells.iter().map(|row| row[i].chars().count()).chain([headings[i].len()]).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&headings).chain(&cells) {
        let mut line = String::new();
        for (i, text) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(text);
            } else {
                line.push_str(&format!("{text:<width$}  ", width = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// Exit codes: 0 success, 1 an error not listed here, 2 bad usage (clap),
/// 3 not found, 4 invalid argument (violations printed), 5 not allowed
/// (unauthenticated or denied), 6 unavailable, 7 conflict (a stale etag,
/// something that already exists).
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<hookplane_sdk::Error>().and_then(hookplane_sdk::Error::code);
    ExitCode::from(match code {
        Some(Code::NotFound) => 3,
        Some(Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange) => 4,
        Some(Code::Unauthenticated | Code::PermissionDenied) => 5,
        Some(Code::Unavailable) => 6,
        Some(Code::Aborted | Code::AlreadyExists) => 7,
        _ if error
            .downcast_ref::<hookplane_sdk::Error>()
            .is_some_and(|e| matches!(e, hookplane_sdk::Error::Transport(_))) =>
        {
            6
        }
        _ => 1,
    })
}

/// The error on stderr: its message, then each field violation.
pub fn report(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    match error.downcast_ref::<hookplane_sdk::Error>() {
        Some(hookplane_sdk::Error::Api { code, message, violations }) => {
            let _ = writeln!(err, "error: {message} ({})", code_name(*code));
            for violation in violations {
                let _ = writeln!(err, "  {}: {}", violation.field, violation.description);
            }
        }
        _ => {
            let _ = writeln!(err, "error: {error:#}");
        }
    }
}

fn code_name(code: Code) -> String {
    // `Code`'s Debug is CamelCase; the gRPC names scripts grep for are these.
    let debug = format!("{code:?}");
    let mut name = String::new();
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cells_follow_paths_and_show_text_plainly() {
        let row = json!({"id": "con_1", "auth": {"bearerToken": true}, "n": 3});
        assert_eq!(cell(&row, "id"), "con_1");
        assert_eq!(cell(&row, "auth.bearerToken"), "true");
        assert_eq!(cell(&row, "n"), "3");
        assert_eq!(cell(&row, "missing.path"), "");
    }

    #[test]
    fn codes_read_as_grpc_names() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
