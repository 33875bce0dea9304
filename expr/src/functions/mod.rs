//! The function library: names, arities and dispatch.
//!
//! Every function is pure except `now()` and `uuid()`; none does I/O. Null
//! handling is uniform where it can be: text functions return null for a
//! null input, so a missing field flows through instead of failing; a value
//! of the wrong type is an error that names the function and the argument.

mod convert;
mod encode;
mod text;
mod time;

use serde_json::Value;

use super::budget::{Budget, Output};
use super::error::EvalError;
use super::value::Val;

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Concat,
    Split,
    First,
    Last,
    Join,
    Upper,
    Lower,
    Trim,
    Replace,
    Substring,
    Length,
    Contains,
    StartsWith,
    EndsWith,
    Default,
    Coalesce,
    If,
    ToString,
    ToNumber,
    ToBool,
    Now,
    FormatDate,
    Base64Encode,
    Base64Decode,
    UrlEncode,
    JsonEncode,
    JsonParse,
    Sha256,
    HmacSha256,
    Uuid,
}

/// A function's name and how many arguments it takes.
pub struct Signature {
    pub func: Func,
    pub name: &'static str,
    pub min: usize,
    /// `usize::MAX` for variadic functions.
    pub max: usize,
    /// How it is called, for messages and docs.
    pub usage: &'static str,
}

const fn sig(func: Func, name: &'static str, min: usize, max: usize, usage: &'static str) -> Signature {
    Signature { func, name, min, max, usage }
}

/// Every function, by name.
pub const FUNCTIONS: &[Signature] = &[
    sig(Func::Concat, "concat", 1, usize::MAX, "concat(value, ...)"),
    sig(Func::Split, "split", 2, 2, "split(separator, text)"),
    sig(Func::First, "first", 1, 1, "first(array_or_text)"),
    sig(Func::Last, "last", 1, 1, "last(array_or_text)"),
    sig(Func::Join, "join", 2, 2, "join(array, separator)"),
    sig(Func::Upper, "upper", 1, 1, "upper(text)"),
    sig(Func::Lower, "lower", 1, 1, "lower(text)"),
    sig(Func::Trim, "trim", 1, 1, "trim(text)"),
    sig(Func::Replace, "replace", 3, 3, "replace(text, from, to)"),
    sig(Func::Substring, "substring", 2, 3, "substring(text, start[, end])"),
    sig(Func::Length, "length", 1, 1, "length(value)"),
    sig(Func::Contains, "contains", 2, 2, "contains(text_or_array, value)"),
    sig(Func::StartsWith, "starts_with", 2, 2, "starts_with(text, prefix)"),
    sig(Func::EndsWith, "ends_with", 2, 2, "ends_with(text, suffix)"),
    sig(Func::Default, "default", 2, 2, "default(value, fallback)"),
    sig(Func::Coalesce, "coalesce", 1, usize::MAX, "coalesce(value, ...)"),
    sig(Func::If, "if", 3, 3, "if(condition, then, else)"),
    sig(Func::ToString, "to_string", 1, 1, "to_string(value)"),
    sig(Func::ToNumber, "to_number", 1, 1, "to_number(value)"),
    sig(Func::ToBool, "to_bool", 1, 1, "to_bool(value)"),
    sig(Func::Now, "now", 0, 0, "now()"),
    sig(Func::FormatDate, "format_date", 2, 2, "format_date(date, format)"),
    sig(Func::Base64Encode, "base64_encode", 1, 1, "base64_encode(text)"),
    sig(Func::Base64Decode, "base64_decode", 1, 1, "base64_decode(text)"),
    sig(Func::UrlEncode, "url_encode", 1, 1, "url_encode(text)"),
    sig(Func::JsonEncode, "json_encode", 1, 1, "json_encode(value)"),
    sig(Func::JsonParse, "json_parse", 1, 1, "json_parse(text)"),
    sig(Func::Sha256, "sha256", 1, 1, "sha256(text)"),
    sig(Func::HmacSha256, "hmac_sha256", 2, 2, "hmac_sha256(key, message)"),
    sig(Func::Uuid, "uuid", 0, 0, "uuid()"),
];

/// The function called `name`.
pub fn lookup(name: &str) -> Option<&'static Signature> {
    FUNCTIONS.iter().find(|s| s.name == name)
}

/// The closest known name, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    FUNCTIONS.iter().map(|s| (edit_distance(name, s.name), s.name)).filter(|(d, _)| *d <= 2).min().map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// Calls an eager function on evaluated arguments. (`if`, `default` and
/// `coalesce` are lazy and handled by the evaluator.) A function that
/// builds a value claims its size from `budget` before building it.
pub fn call<'a>(func: Func, mut args: Vec<Val<'a>>, budget: &mut Budget) -> Result<Val<'a>, EvalError> {
    let owned = |value: Value| Ok(Val::Owned(value));
    match func {
        Func::Concat => owned(text::concat(&args, budget)?),
        Func::Split => owned(text::split(&args[0], &args[1], budget)?),
        Func::First | Func::Last => {
            let value = args.swap_remove(0);
            text::first_or_last(value, func == Func::First)
        }
        Func::Join => owned(text::join(&args[0], &args[1], budget)?),
        Func::Upper => owned(text::change_case(&args[0], "upper", budget)?),
        Func::Lower => owned(text::change_case(&args[0], "lower", budget)?),
        Func::Trim => owned(text::trim(&args[0], budget)?),
        Func::Replace => owned(text::replace(&args[0], &args[1], &args[2], budget)?),
        Func::Substring => owned(text::substring(&args[0], &args[1], args.get(2).map(|v| &**v), budget)?),
        Func::Length => owned(text::length(&args[0])),
        Func::Contains => owned(text::contains(&args[0], &args[1])?),
        Func::StartsWith => owned(text::affix(&args[0], &args[1], "starts_with", true)?),
        Func::EndsWith => owned(text::affix(&args[0], &args[1], "ends_with", false)?),
        Func::ToString => owned(convert::to_string(&args[0], budget)?),
        Func::ToNumber => owned(convert::to_number(&args[0])?),
        Func::ToBool => owned(convert::to_bool(&args[0])?),
        Func::Now => owned(time::now(budget)?),
        Func::FormatDate => owned(time::format_date(&args[0], &args[1], budget)?),
        Func::Base64Encode => owned(encode::base64_encode(&args[0], budget)?),
        Func::Base64Decode => owned(encode::base64_decode(&args[0], budget)?),
        Func::UrlEncode => owned(encode::url_encode(&args[0], budget)?),
        Func::JsonEncode => {
            let mut out = Output::new(budget);
            out.json(&args[0])?;
            owned(Value::String(out.finish()))
        }
        Func::JsonParse => owned(encode::json_parse(&args[0], budget)?),
        Func::Sha256 => owned(encode::sha256(&args[0], budget)?),
        Func::HmacSha256 => owned(encode::hmac_sha256(&args[0], &args[1], budget)?),
        Func::Uuid => {
            budget.claim(uuid::fmt::Hyphenated::LENGTH)?;
            owned(Value::String(uuid::Uuid::new_v4().to_string()))
        }
        Func::Default | Func::Coalesce | Func::If => unreachable!("lazy functions are evaluated by the evaluator"),
    }
}

/// Validates constant arguments at compile time where a bad one can be
/// known early (a `format_date` pattern); returns a message on failure.
pub fn check_constant_argument(func: Func, index: usize, value: &Value) -> Option<String> {
    match (func, index, value) {
        (Func::FormatDate, 1, Value::String(pattern)) => time::check_pattern(pattern).err(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_suggestions_find_typos() {
        for (i, a) in FUNCTIONS.iter().enumerate() {
            assert!(FUNCTIONS[i + 1..].iter().all(|b| b.name != a.name), "{} twice", a.name);
        }
        assert_eq!(suggest("uper"), Some("upper"));
        assert_eq!(suggest("concta"), Some("concat"));
        assert_eq!(suggest("frobnicate"), None);
    }
}
