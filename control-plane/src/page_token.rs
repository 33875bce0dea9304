//! Opaque page tokens (AIP-158).
//!
//! A token is base64url of `kind|fingerprint|cursor`. The kind stops a token
//! of one list from being used on another; the fingerprint (a hash of the
//! request's filter) stops it from being reused with a different filter,
//! which would silently skip or repeat results.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Default and maximum page sizes.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A validated page request: the cursor to continue after and the size.
#[derive(Debug)]
pub struct Page {
    /// Empty for the first page.
    pub cursor: String,
    pub size: u32,
}

/// Validates `page_size` and decodes `page_token` for a list of `kind`
/// under `filter` (any text that identifies the request's filter).
pub fn parse(kind: &str, filter: &str, page_size: i32, page_token: &str) -> Result<Page, ApiError> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => return Err(ApiError::invalid("page_size", "must not be negative")),
        n => (n as u32).min(MAX_PAGE_SIZE),
    };
    if page_token.is_empty() {
        return Ok(Page { cursor: String::new(), size });
    }
    let invalid = || ApiError::invalid("page_token", "is not a token from a previous response of this list");
    let raw = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '|');
    let (Some(token_kind), Some(fingerprint), Some(cursor)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if token_kind != kind || cursor.is_empty() {
        return Err(invalid());
    }
    if fingerprint != fingerprint_of(filter) {
        return Err(ApiError::invalid(
            "page_token",
            "was issued for a different filter; keep the filter unchanged while paging",
        ));
    }
    Ok(Page { cursor: cursor.to_owned(), size })
}

/// The token for the page after `cursor`.
pub fn encode(kind: &str, filter: &str, cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}|{}|{cursor}", fingerprint_of(filter)))
}

/// The next page token for a page fetched with one extra row: when `rows`
/// holds more than `size`, trims it and returns the token after the last kept
/// row's cursor.
pub fn next_token<T>(
    kind: &str,
    filter: &str,
    rows: &mut Vec<T>,
    size: u32,
    cursor_of: impl Fn(&T) -> String,
) -> String {
    if rows.len() <= size as usize {
        return String::new();
    }
    rows.truncate(size as usize);
    rows.last().map(|last| encode(kind, filter, &cursor_of(last))).unwrap_or_default()
}

fn fingerprint_of(filter: &str) -> String {
    hex::encode(&Sha256::digest(filter.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = encode("connectors", "org_a", "con_x");
        let page = parse("connectors", "org_a", 10, &token).unwrap();
        assert_eq!(page.cursor, "con_x");
        assert_eq!(page.size, 10);
    }

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(parse("k", "", 0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(parse("k", "", 5000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(parse("k", "", -1, "").is_err());
    }

    #[test]
    fn foreign_or_tampered_tokens_are_refused() {
        let token = encode("connectors", "org_a", "con_x");
        assert!(parse("secrets", "org_a", 0, &token).is_err());
        assert!(parse("connectors", "org_b", 0, &token).is_err());
        assert!(parse("connectors", "org_a", 0, "not base64!").is_err());
        assert!(parse("connectors", "org_a", 0, &URL_SAFE_NO_PAD.encode("connectors")).is_err());
    }

    #[test]
    fn next_token_trims_the_probe_row() {
        let mut rows = vec![1, 2, 3];
        let token = next_token("k", "", &mut rows, 2, |n| n.to_string());
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(parse("k", "", 2, &token).unwrap().cursor, "2");
        let mut rows = vec![1, 2];
        assert_eq!(next_token("k", "", &mut rows, 2, |n| n.to_string()), "");
    }
}
