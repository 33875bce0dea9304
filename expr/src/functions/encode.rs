//! Encodings and digests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::super::budget::{Budget, Output};
use super::super::error::EvalError;
use super::super::value::expect_text;

mod parse;

fn text_or_null<'v>(value: &'v Value, name: &str) -> Result<Option<&'v str>, EvalError> {
    match value {
        Value::Null => Ok(None),
        other => expect_text(other, name, "first").map(Some),
    }
}

/// `base64_encode(text)` with the standard alphabet and padding.
pub fn base64_encode(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "base64_encode")? else {
        return Ok(Value::Null);
    };
    budget.claim(text.len().div_ceil(3) * 4)?;
    Ok(Value::String(STANDARD.encode(text)))
}

/// `base64_decode(text)`: standard or URL-safe alphabet, padding optional;
/// the bytes must be UTF-8 text.
pub fn base64_decode(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "base64_decode")? else {
        return Ok(Value::Null);
    };
    // The normalised copy, then at most three bytes per four characters.
    budget.claim(text.len())?;
    budget.claim(text.len() / 4 * 3 + 3)?;
    let normalized: String = text.trim().trim_end_matches('=').replace('-', "+").replace('_', "/");
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(normalized)
        .map_err(|_| EvalError::type_error("base64_decode() got text that is not base64"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| EvalError::type_error("base64_decode() decoded bytes that are not UTF-8 text"))
}

/// `url_encode(text)`: percent-encodes everything but RFC 3986 unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`).
pub fn url_encode(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "url_encode")? else {
        return Ok(Value::Null);
    };
    let unreserved = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
    let size = text.bytes().map(|byte| if unreserved(byte) { 1 } else { 3 }).sum();
    let mut out = Output::with_capacity(budget, size)?;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if unreserved(byte) {
            out.push(byte as char)?;
        } else {
            for c in ['%', HEX[usize::from(byte >> 4)] as char, HEX[usize::from(byte & 15)] as char] {
                out.push(c)?;
            }
        }
    }
    Ok(Value::String(out.finish()))
}

/// `json_parse(text)`: null → null. The document is claimed node by node
/// as it is built (a short text can describe a large tree).
pub fn json_parse(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "json_parse")? else {
        return Ok(Value::Null);
    };
    parse::document(text, budget)
}

/// Lowercase hex of a SHA-256 digest.
const DIGEST_HEX: usize = 64;

/// `sha256(text)`: lowercase hex.
pub fn sha256(value: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let text = expect_text(value, "sha256", "first")?;
    budget.claim(DIGEST_HEX)?;
    Ok(Value::String(hex::encode(Sha256::digest(text.as_bytes()))))
}

/// `hmac_sha256(key, message)`: lowercase hex.
pub fn hmac_sha256(key: &Value, message: &Value, budget: &mut Budget) -> Result<Value, EvalError> {
    let key = expect_text(key, "hmac_sha256", "first")?;
    let message = expect_text(message, "hmac_sha256", "second")?;
    budget.claim(DIGEST_HEX)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    Ok(Value::String(hex::encode(mac.finalize().into_bytes())))
}
