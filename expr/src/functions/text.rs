//! Text and collection functions. Each claims the size of what it builds
//! from the budget first, computed without building it.

use serde_json::Value;

use super::super::budget::{Budget, Output, SLOT, heap_size};
use super::super::error::EvalError;
use super::super::value::{Val, equal, expect_number, expect_text, render_into, type_name};

/// `concat(a, b, ...)`: arrays when every argument is an array, otherwise
/// text, with each value rendered as a template would (null → "").
pub fn concat(args: &[Val<'_>], budget: &mut Budget) -> Result<Value, EvalError> {
    if args.iter().all(|a| a.is_array()) {
        let items = args.iter().flat_map(|a| a.as_array().into_iter().flatten());
        budget.claim(items.clone().map(|item| SLOT + heap_size(item)).sum())?;
        return Ok(Value::Array(items.cloned().collect()));
    }
    let mut out = Output::new(budget);
    for arg in args {
        out.render(arg)?;
    }
    Ok(Value::String(out.finish()))
}

/// `split(separator, text)`: null text → null.
pub fn split(separator: &Value, text: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    if text.is_null() {
        return Ok(Value::Null);
    }
    let separator = expect_text(separator, "split", "first")?;
    let text = expect_text(text, "split", "second")?;
    // Every byte of the text but the separators ends up in a part.
    let (parts, separators) = if separator.is_empty() {
        (text.chars().count(), 0)
    } else {
        let found = text.matches(separator).count();
        (found + 1, found * separator.len())
    };
    budget.claim(parts * SLOT + text.len() - separators)?;
    let parts: Vec<Value> = if separator.is_empty() {
        text.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        text.split(separator).map(|p| Value::String(p.to_owned())).collect()
    };
    Ok(Value::Array(parts))
}

/// `first(x)` / `last(x)`: an array's element or a text's character; null
/// for null or empty input.
pub fn first_or_last(value: Val<'_>, first: bool) -> Result<Val<'_>, EvalError> {
    let name = if first { "first" } else { "last" };
    match value {
        Val::Borrowed(Value::Array(items)) => {
            let item = if first { items.first() } else { items.last() };
            Ok(item.map_or(Val::Owned(Value::Null), Val::Borrowed))
        }
        Val::Owned(Value::Array(mut items)) => {
            let item = if first { items.drain(..).next() } else { items.pop() };
            Ok(Val::Owned(item.unwrap_or(Value::Null)))
        }
        value => match &*value {
            Value::Null => Ok(Val::Owned(Value::Null)),
            Value::String(s) => {
                let c = if first { s.chars().next() } else { s.chars().next_back() };
                Ok(Val::Owned(c.map_or(Value::Null, |c| Value::String(c.to_string()))))
            }
            other => Err(EvalError::type_error(format!("{name}() expects an array or text, got {}", type_name(other)))),
        },
    }
}

/// `join(array, separator)`: elements rendered as text; null → null.
pub fn join(array: &Value, separator: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let items = match array {
        Value::Null => return Ok(Value::Null),
        Value::Array(items) => items,
        other => {
            return Err(EvalError::type_error(format!(
                "join() expects an array as its first argument, got {}",
                type_name(other)
            )));
        }
    };
    let separator = expect_text(separator, "join", "second")?;
    let mut out = Output::new(budget);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(separator)?;
        }
        out.render(item)?;
    }
    Ok(Value::String(out.finish()))
}

/// `upper(text)` / `lower(text)`: null → null. A character may map to
/// several (`ß` → `SS`), so the size is counted character by character.
pub fn change_case(value: &Value, name: &str, budget: &mut Budget) -> Result<Value, EvalError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = expect_text(value, name, "first")?;
    let upper = name == "upper";
    // ASCII text, the usual kind, keeps its size and maps byte by byte:
    // mapped and sized character by character, an e-mail address's 26
    // characters cost 1.4k instructions.
    if text.is_ascii() {
        budget.claim(text.len())?;
        return Ok(Value::String(if upper { text.to_ascii_uppercase() } else { text.to_ascii_lowercase() }));
    }
    let size: usize = text
        .chars()
        .map(|c| {
            if upper {
                c.to_uppercase().map(char::len_utf8).sum::<usize>()
            } else {
                c.to_lowercase().map(char::len_utf8).sum()
            }
        })
        .sum();
    budget.claim(size)?;
    Ok(Value::String(if upper { text.to_uppercase() } else { text.to_lowercase() }))
}

/// `trim(text)`: null → null.
pub fn trim(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let trimmed = expect_text(value, "trim", "first")?.trim();
    budget.claim(trimmed.len())?;
    Ok(Value::String(trimmed.to_owned()))
}

/// `replace(text, from, to)`: every occurrence; null text → null.
pub fn replace(text: &Value, from: &Value, to: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    if text.is_null() {
        return Ok(Value::Null);
    }
    let text = expect_text(text, "replace", "first")?;
    let from = expect_text(from, "replace", "second")?;
    let to = expect_text(to, "replace", "third")?;
    if from.is_empty() {
        return Err(EvalError::type_error("replace() needs non-empty text to search for"));
    }
    // Counted first: a short text with many matches and a long
    // replacement is refused before the result is built.
    let found = text.matches(from).count();
    let size = (text.len() - found * from.len()).saturating_add(found.saturating_mul(to.len()));
    budget.claim(size)?;
    Ok(Value::String(text.replace(from, to)))
}

/// `substring(text, start[, end])` in characters; negative positions count
/// from the end; out-of-range positions are clamped.
pub fn substring(text: &Value, start: &Value, end: Option<&Value>, budget: &mut Budget) -> Result<Value, EvalError> {
    if text.is_null() {
        return Ok(Value::Null);
    }
    let text = expect_text(text, "substring", "first")?;
    let count = text.chars().count() as i64;
    let clamp = |position: f64| {
        let position = position.trunc() as i64;
        (if position < 0 { count + position } else { position }).clamp(0, count) as usize
    };
    let start = clamp(expect_number(start, "substring", "second")?);
    let end = match end {
        Some(end) => clamp(expect_number(end, "substring", "third")?),
        None => count as usize,
    };
    let byte = |chars: usize| text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
    let (from, to) = (byte(start), byte(end.max(start)));
    budget.claim(to - from)?;
    Ok(Value::String(text[from..to].to_owned()))
}

/// `length(x)`: characters of text, items of an array, keys of an object;
/// 0 for null.
pub fn length(value: &Value) -> Value {
    Value::from(match value {
        Value::Null => 0,
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        Value::Bool(_) | Value::Number(_) => render_len(value),
    })
}

fn render_len(value: &Value) -> usize {
    let mut out = String::new();
    render_into(&mut out, value);
    out.chars().count()
}

/// `contains(haystack, needle)`: substring of text or element of an array
/// (deep equality); false for null.
pub fn contains(haystack: &Value, needle: &Value) -> Result<Value, EvalError> {
    Ok(Value::Bool(match haystack {
        Value::Null => false,
        Value::String(s) => s.contains(expect_text(needle, "contains", "second")?),
        Value::Array(items) => items.iter().any(|item| equal(item, needle)),
        other => {
            return Err(EvalError::type_error(format!(
                "contains() expects text or an array, got {}",
                type_name(other)
            )));
        }
    }))
}

/// `starts_with` / `ends_with`; false for null text.
pub fn affix(text: &Value, affix: &Value, name: &str, prefix: bool) -> Result<Value, EvalError> {
    if text.is_null() {
        return Ok(Value::Bool(false));
    }
    let text = expect_text(text, name, "first")?;
    let affix = expect_text(affix, name, "second")?;
    Ok(Value::Bool(if prefix { text.starts_with(affix) } else { text.ends_with(affix) }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::budget::Limits;

    fn budget(total: usize) -> Budget {
        Budget::new(Limits { max_total_bytes: total, ..Limits::default() })
    }

    proptest! {
        /// ASCII or not, `upper` and `lower` are Unicode's case mappings,
        /// paid for at the size of what they build and no more.
        #[test]
        fn case_changes_are_unicodes_and_cost_their_size(text in prop_oneof!["[ -~]{0,40}", ".{0,40}", "[aßŉİΣ ]{0,12}"]) {
            for (name, expected) in [("upper", text.to_uppercase()), ("lower", text.to_lowercase())] {
                let value = Value::String(text.clone());
                let changed = change_case(&value, name, &mut budget(expected.len())).unwrap();
                prop_assert_eq!(&changed, &Value::String(expected.clone()));
                if !expected.is_empty() {
                    prop_assert!(change_case(&value, name, &mut budget(expected.len() - 1)).is_err());
                }
            }
        }
    }
}
