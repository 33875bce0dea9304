//! Conversions between types.

use serde_json::Value;

use super::super::budget::{Budget, Output};
use super::super::error::EvalError;
use super::super::value::{number, type_name};

/// `to_string(x)`: text as is, null → "", anything else as JSON text.
pub fn to_string(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let mut out = Output::new(budget);
    out.render(value)?;
    Ok(Value::String(out.finish()))
}

/// `to_number(x)`: numbers as is; text parsed (surrounding spaces allowed);
/// booleans 1/0; null → null.
pub fn to_number(value: &Value) -> Result<Value, EvalError> {
    match value {
        Value::Null | Value::Number(_) => Ok(value.clone()),
        Value::Bool(b) => Ok(Value::from(i64::from(*b))),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Value::from(i));
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => number(f),
                _ => Err(EvalError::type_error("to_number() could not read the text as a number")),
            }
        }
        other => Err(EvalError::type_error(format!("to_number() cannot convert {}", type_name(other)))),
    }
}

/// `to_bool(x)`: booleans as is; text `true/false/yes/no/1/0` (any case);
/// numbers non-zero; null → false.
pub fn to_bool(value: &Value) -> Result<Value, EvalError> {
    Ok(Value::Bool(match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => true,
            "false" | "no" | "0" | "off" | "" => false,
            _ => return Err(EvalError::type_error("to_bool() could not read the text as true or false")),
        },
        other => return Err(EvalError::type_error(format!("to_bool() cannot convert {}", type_name(other)))),
    }))
}
