//! Field checks shared by the conversions.

use chrono::TimeZone;

use super::Violations;
use hookplane_model::Timestamp;

/// Converts an API timestamp; out-of-range values are violations.
pub fn timestamp_from_api(ts: &prost_types::Timestamp, field: &str, v: &mut Violations) -> Option<Timestamp> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        v.add(field, "nanos must be between 0 and 999999999");
        return None;
    }
    match chrono::Utc.timestamp_opt(ts.seconds, ts.nanos as u32) {
        chrono::LocalResult::Single(t) => Some(t),
        _ => {
            v.add(field, "timestamp is out of range");
            None
        }
    }
}

/// Converts a model timestamp to the API.
pub fn timestamp_to_api(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// Converts an API duration to milliseconds, checking `1 ms ..= max_ms`.
pub fn duration_from_api(d: &prost_types::Duration, field: &str, max_ms: u64, v: &mut Violations) -> Option<u64> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        v.add(field, "must be a positive duration");
        return None;
    }
    let ms = (d.seconds as u64).saturating_mul(1000).saturating_add(d.nanos as u64 / 1_000_000);
    if ms == 0 || ms > max_ms {
        v.add(field, format!("must be between 1ms and {}", human_ms(max_ms)));
        return None;
    }
    Some(ms)
}

/// Converts milliseconds to an API duration.
pub fn duration_to_api(ms: u64) -> prost_types::Duration {
    prost_types::Duration { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Requires `text` to be 1..=max characters after trimming; returns it trimmed.
pub(super) fn required_text(text: &str, field: &str, max: usize, v: &mut Violations) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        v.add(field, "is required");
    } else if trimmed.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
    trimmed.to_owned()
}

/// Allows `text` to be empty, up to `max` characters.
pub(super) fn optional_text(text: &str, field: &str, max: usize, v: &mut Violations) -> String {
    if text.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
    text.trim().to_owned()
}

/// Whether `name` is an HTTP header name (RFC 9110 token).
pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// Whether `name` is an HTTP method token.
pub(super) fn is_method_token(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `name` is an identifier: `[A-Za-z_][A-Za-z0-9_]{0,max-1}`.
pub(super) fn is_identifier(name: &str, max: usize) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= max
}

/// Checks a request id used for idempotency.
pub fn check_request_id(request_id: &str, field: &str, v: &mut Violations) {
    if request_id.len() > 128 || request_id.chars().any(char::is_control) {
        v.add(field, "must be at most 128 printable characters");
    }
}

/// Parses an absolute http(s) URL given as a literal (not a template).
pub(super) fn http_url(text: &str, field: &str, v: &mut Violations) -> Option<url::Url> {
    match url::Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(_) => {
            v.add(field, "must be an http or https URL with a host");
            None
        }
        Err(err) => {
            v.add(field, format!("is not a valid URL ({err})"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_and_round_trip() {
        let mut v = Violations::default();
        let d = prost_types::Duration { seconds: 2, nanos: 500_000_000 };
        assert_eq!(duration_from_api(&d, "f", 10_000, &mut v), Some(2500));
        assert_eq!(duration_to_api(2500), d);
        let too_long = prost_types::Duration { seconds: 11, nanos: 0 };
        assert_eq!(duration_from_api(&too_long, "f", 10_000, &mut v), None);
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(duration_from_api(&negative, "g", 10_000, &mut v), None);
        let err = v.finish(()).unwrap_err();
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.violations[0].description, "must be between 1ms and 10s");
        assert_eq!(err.violations[1].field, "g");
    }

    #[test]
    fn names_and_methods() {
        assert!(is_header_name("X-Api-Key"));
        assert!(!is_header_name("X Api"));
        assert!(!is_header_name(""));
        assert!(is_method_token("PURGE"));
        assert!(!is_method_token("GET /"));
        assert!(is_identifier("user_id", 64));
        assert!(!is_identifier("1abc", 64));
        assert!(!is_identifier("a-b", 64));
    }
}
