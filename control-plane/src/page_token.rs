//! Opaque, tamper-proof page tokens (AIP-158).
//!
//! A token is `fingerprint.sealed`: the fingerprint (a hash of the
//! request's filter) lets a token reused with another filter be told apart
//! from a forged one; the cursor is sealed with the control plane's secret
//! key, bound to the list's kind and that fingerprint, so a client can
//! neither read it nor edit it to move through the list, and a token of
//! one list does not open on another. Replicas share the key, so any of
//! them continues a listing another began.

use sha2::{Digest, Sha256};

use crate::crypto::SecretBox;
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

/// Issues and reads page tokens.
#[derive(Clone, Debug)]
pub struct PageTokens {
    secret_box: SecretBox,
}

impl PageTokens {
    pub fn new(secret_box: SecretBox) -> PageTokens {
        PageTokens { secret_box }
    }

    /// Validates `page_size` and opens `page_token` for a list of `kind`
    /// under `filter` (any text that identifies the request's filter).
    pub fn parse(&self, kind: &str, filter: &str, page_size: i32, page_token: &str) -> Result<Page, ApiError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(ApiError::invalid("page_size", "must not be negative")),
            n => (n as u32).min(MAX_PAGE_SIZE),
        };
        if page_token.is_empty() {
            return Ok(Page { cursor: String::new(), size });
        }
        let invalid = || ApiError::invalid("page_token", "is not a token from a previous response of this list");
        let (fingerprint, sealed) = page_token.split_once('.').ok_or_else(invalid)?;
        if fingerprint != fingerprint_of(filter) {
            return Err(ApiError::invalid(
                "page_token",
                "was issued for a different filter; keep the filter unchanged while paging",
            ));
        }
        let cursor = self.secret_box.open_text(&owner(kind, fingerprint), sealed).map_err(|_| invalid())?;
        if cursor.is_empty() {
            return Err(invalid());
        }
        Ok(Page { cursor: cursor.to_string(), size })
    }

    /// The token for the page after `cursor`.
    pub fn encode(&self, kind: &str, filter: &str, cursor: &str) -> String {
        let fingerprint = fingerprint_of(filter);
        let sealed = self.secret_box.seal(&owner(kind, &fingerprint), cursor.as_bytes());
        format!("{fingerprint}.{sealed}")
    }

    /// The next page token for a page fetched with one extra row: when
    /// `rows` holds more than `size`, trims it and returns the token after
    /// the last kept row's cursor.
    pub fn next_token<T>(
        &self,
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
        rows.last().map(|last| self.encode(kind, filter, &cursor_of(last))).unwrap_or_default()
    }
}

/// What a cursor is sealed for: its list and filter.
fn owner(kind: &str, fingerprint: &str) -> String {
    format!("page-token:{kind}:{fingerprint}")
}

fn fingerprint_of(filter: &str) -> String {
    hex::encode(&Sha256::digest(filter.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(SecretBox::new(&[7; 32]))
    }

    #[test]
    fn tokens_round_trip() {
        let tokens = tokens();
        let token = tokens.encode("connectors", "org_a", "con_x");
        let page = tokens.parse("connectors", "org_a", 10, &token).unwrap();
        assert_eq!(page.cursor, "con_x");
        assert_eq!(page.size, 10);
        assert!(!token.contains("con_x"), "the cursor is sealed: {token}");
        let other_replica = PageTokens::new(SecretBox::new(&[7; 32]));
        assert_eq!(other_replica.parse("connectors", "org_a", 0, &token).unwrap().cursor, "con_x");
    }

    #[test]
    fn sizes_default_and_clamp() {
        let tokens = tokens();
        assert_eq!(tokens.parse("k", "", 0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(tokens.parse("k", "", 5000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(tokens.parse("k", "", -1, "").is_err());
    }

    #[test]
    fn foreign_or_tampered_tokens_are_refused() {
        let tokens = tokens();
        let token = tokens.encode("connectors", "org_a", "con_x");
        assert!(tokens.parse("secrets", "org_a", 0, &token).is_err(), "another list");
        let err = tokens.parse("connectors", "org_b", 0, &token).unwrap_err().to_string();
        assert!(err.contains("different filter"), "{err}");
        assert!(tokens.parse("connectors", "org_a", 0, "not a token").is_err());
        assert!(PageTokens::new(SecretBox::new(&[8; 32])).parse("connectors", "org_a", 0, &token).is_err());
        // The finding: the old token was base64 of `kind|filter|last id`;
        // editing the id moved the cursor. Flipping any byte now fails.
        let (fingerprint, sealed) = token.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix("v1.").unwrap()).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let forged = format!("{fingerprint}.v1.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert!(tokens.parse("connectors", "org_a", 0, &forged).is_err(), "byte {i}");
            raw[i] ^= 1;
        }
        let legacy = URL_SAFE_NO_PAD.encode(format!("connectors|{fingerprint}|con_a"));
        assert!(tokens.parse("connectors", "org_a", 0, &legacy).is_err(), "an edited plaintext token");
    }

    #[test]
    fn next_token_trims_the_probe_row() {
        let tokens = tokens();
        let mut rows = vec![1, 2, 3];
        let token = tokens.next_token("k", "", &mut rows, 2, |n| n.to_string());
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(tokens.parse("k", "", 2, &token).unwrap().cursor, "2");
        let mut rows = vec![1, 2];
        assert_eq!(tokens.next_token("k", "", &mut rows, 2, |n| n.to_string()), "");
    }
}
