//! Dates.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::super::budget::{Budget, Output};
use super::super::error::EvalError;
use super::super::value::{expect_text, type_name};

/// `now()`: the current UTC time as RFC 3339 with seconds, e.g.
/// `2026-11-23T06:01:00Z`.
pub fn now(budget: &mut Budget) -> Result<Value, EvalError> {
    let text = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    budget.claim(text.len())?;
    Ok(Value::String(text))
}

/// Checks a strftime pattern; the error says what is wrong.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!("`{pattern}` is not a valid date format (use strftime codes such as %Y-%m-%d)"));
    }
    Ok(())
}

/// `format_date(date, format)`: the date is RFC 3339 text or Unix seconds;
/// null → null.
pub fn format_date(date: &Value, format: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let pattern = expect_text(format, "format_date", "second")?;
    let date: DateTime<Utc> = match date {
        Value::Null => return Ok(Value::Null),
        Value::String(text) => {
            DateTime::parse_from_rfc3339(text.trim()).map(|d| d.with_timezone(&Utc)).map_err(|_| {
                EvalError::type_error("format_date() expects an RFC 3339 date such as 2026-01-31T12:00:00Z")
            })?
        }
        Value::Number(n) => {
            let seconds = n.as_f64().unwrap_or(f64::NAN);
            DateTime::from_timestamp(seconds.trunc() as i64, ((seconds.fract().abs()) * 1e9) as u32)
                .filter(|_| seconds.is_finite())
                .ok_or_else(|| EvalError::type_error("format_date() got a Unix time out of range"))?
        }
        other => {
            return Err(EvalError::type_error(format!(
                "format_date() expects a date as text or Unix seconds, got {}",
                type_name(other)
            )));
        }
    };
    check_pattern(pattern).map_err(EvalError::Type)?;
    // A pattern from the payload may repeat `%+` a million times: the text
    // is claimed as it is written. (`DelayedFormat`'s `Display` would build
    // all of it first; `write_to` writes item by item.)
    let mut out = Output::new(budget);
    let formatted = date.format_with_items(StrftimeItems::new(pattern));
    out.write_with(|writer| formatted.write_to(writer))?;
    Ok(Value::String(out.finish()))
}
