//! Encodings and digests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::super::error::EvalError;
use super::super::value::expect_text;

fn text_or_null<'v>(value: &'v Value, name: &str) -> Result<Option<&'v str>, EvalError> {
    match value {
        Value::Null => Ok(None),
        other => expect_text(other, name, "first").map(Some),
    }
}

/// `base64_encode(text)` with the standard alphabet and padding.
pub fn base64_encode(value: &Value) -> Result<Value, EvalError> {
    Ok(text_or_null(value, "base64_encode")?.map_or(Value::Null, |t| Value::String(STANDARD.encode(t))))
}

/// `base64_decode(text)`: standard or URL-safe alphabet, padding optional;
/// the bytes must be UTF-8 text.
pub fn base64_decode(value: &Value) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "base64_decode")? else {
        return Ok(Value::Null);
    };
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
pub fn url_encode(value: &Value) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "url_encode")? else {
        return Ok(Value::Null);
    };
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(Value::String(out))
}

/// `json_parse(text)`: null → null.
pub fn json_parse(value: &Value) -> Result<Value, EvalError> {
    let Some(text) = text_or_null(value, "json_parse")? else {
        return Ok(Value::Null);
    };
    serde_json::from_str(text).map_err(|err| {
        EvalError::type_error(format!(
            "json_parse() got text that is not JSON (line {}, column {})",
            err.line(),
            err.column()
        ))
    })
}

/// `sha256(text)`: lowercase hex.
pub fn sha256(value: &Value) -> Result<Value, EvalError> {
    let text = expect_text(value, "sha256", "first")?;
    Ok(Value::String(hex::encode(Sha256::digest(text.as_bytes()))))
}

/// `hmac_sha256(key, message)`: lowercase hex.
pub fn hmac_sha256(key: &Value, message: &Value) -> Result<Value, EvalError> {
    let key = expect_text(key, "hmac_sha256", "first")?;
    let message = expect_text(message, "hmac_sha256", "second")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    Ok(Value::String(hex::encode(mac.finalize().into_bytes())))
}
