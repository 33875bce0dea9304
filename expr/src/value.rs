//! Values during evaluation: borrowed from the payload where possible.

use std::borrow::Cow;

use serde_json::Value;

use super::error::EvalError;

/// What a missing member, element or root reads as, to borrow.
pub(crate) static NULL: Value = Value::Null;

/// A value being evaluated: borrowed from the scope (no copy of the
/// payload) or produced by the expression.
pub type Val<'a> = Cow<'a, Value>;

/// The name of a value's type, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "text",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Truthiness for `&&`, `||`, `!` and `if`: null, false, 0, "" and empty
/// arrays and objects are false; everything else is true.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Appends a value as text, the way templates render it: text as is, null
/// as nothing, numbers and booleans as JSON, arrays and objects as compact
/// JSON.
pub fn render_into(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

/// A value as text (see [`render_into`]).
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    render_into(&mut out, value);
    out
}

/// Deep equality where numbers compare by value (`1 == 1.0`).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// The text of an argument, or a type error naming the function.
pub fn expect_text<'v>(value: &'v Value, function: &str, position: &str) -> Result<&'v str, EvalError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(EvalError::type_error(format!(
            "{function}() expects text as its {position} argument, got {}",
            type_name(other)
        ))),
    }
}

/// A number argument as f64, or a type error naming the function.
pub fn expect_number(value: &Value, function: &str, position: &str) -> Result<f64, EvalError> {
    match value {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        other => Err(EvalError::type_error(format!(
            "{function}() expects a number as its {position} argument, got {}",
            type_name(other)
        ))),
    }
}

/// A JSON number from an f64, keeping integral values integers.
pub fn number(value: f64) -> Result<Value, EvalError> {
    if value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15 {
        return Ok(Value::from(value as i64));
    }
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| EvalError::type_error("arithmetic produced a value that is not a finite number"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn truthiness_and_rendering() {
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!(""), json!([]), json!({})] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for true_ in [json!(true), json!(1), json!("x"), json!([0]), json!({"a": null})] {
            assert!(truthy(&true_), "{true_}");
        }
        assert_eq!(render(&json!(null)), "");
        assert_eq!(render(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#);
        assert_eq!(render(&json!(1.5)), "1.5");
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(equal(&json!(1), &json!(1.0)));
        assert!(equal(&json!({"a": [1]}), &json!({"a": [1.0]})));
        assert!(!equal(&json!("1"), &json!(1)));
        assert_eq!(number(4.0).unwrap(), json!(4));
        assert_eq!(number(0.5).unwrap(), json!(0.5));
        assert!(number(f64::INFINITY).is_err());
    }
}
