//! Who may trigger a connector (SPEC §4 items 5 and 6): credentials and the
//! origin allow-list.
//!
//! Presented credentials are hashed with SHA-256 and compared with the
//! stored digests in constant time; no plaintext credential exists on a
//! node. Every failure is the same `Unauthenticated`, so a caller cannot
//! tell a wrong token from an expired one or a missing one.

use base64::Engine as _;
use hookplane_model::{HashedField, Timestamp, TokenKind};
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, ORIGIN, REFERER};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::snapshot::DeployedConnector;

/// The method that authenticated a call, for the event's trace.
pub type AuthMethod = &'static str;

/// Checks the call's credentials against every configured method; the first
/// that succeeds names the method.
pub fn authenticate(
    connector: &DeployedConnector,
    headers: &HeaderMap,
    query: Option<&str>,
    now: Timestamp,
) -> Option<AuthMethod> {
    let auth = &connector.connector.spec.auth;
    let accepts = |kind: TokenKind, presented: &[u8]| {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        connector.credential(kind, &digest).is_some_and(|c| c.expire_time.is_none_or(|t| now < t))
    };
    let authorization = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    if auth.bearer_token
        && let Some(token) = authorization.and_then(|v| strip_scheme(v, b"bearer "))
        && accepts(TokenKind::Bearer, token)
    {
        return Some("bearer_token");
    }
    if auth.secret_token
        && let Some(token) = headers.get("x-secret-token")
        && accepts(TokenKind::SecretToken, token.as_bytes())
    {
        return Some("secret_token");
    }
    if let Some(api_key) = &auth.api_key {
        let presented = match api_key.location {
            hookplane_model::ApiKeyLocation::Header => headers.get(api_key.name.as_str()).map(|v| v.as_bytes().into()),
            hookplane_model::ApiKeyLocation::Query => query_param(query, &api_key.name),
        };
        if presented.is_some_and(|key| accepts(TokenKind::ApiKey, &key)) {
            return Some("api_key");
        }
    }
    if let Some(basic) = &auth.basic
        && let Some(encoded) = authorization.and_then(|v| strip_scheme(v, b"basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded)
        && let Some(colon) = decoded.iter().position(|&b| b == b':')
    {
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user_matches: bool = user.ct_eq(basic.username.as_bytes()).into();
        // Both comparisons always run, so timing does not tell which failed.
        if accepts(TokenKind::BasicPassword, password) & user_matches {
            return Some("basic");
        }
    }
    if !auth.custom_headers.is_empty() && custom_headers_match(connector, headers) {
        return Some("custom_headers");
    }
    // No credential of ours is asked for: the signature, checked next,
    // authenticates the call alone (conversion allows no method only then).
    if !auth.has_any_method() && connector.connector.spec.signature.is_some() {
        return Some("signature");
    }
    None
}

/// Every custom header present with its expected value.
fn custom_headers_match(connector: &DeployedConnector, headers: &HeaderMap) -> bool {
    let mut all = true;
    for expected in &connector.connector.spec.auth.custom_headers {
        let HashedField::Sha256(hash) = &expected.value else {
            return false;
        };
        let mut want = [0u8; 32];
        if hex::decode_to_slice(hash, &mut want).is_err() {
            return false;
        }
        let presented = headers.get(expected.name.as_str()).map(|v| v.as_bytes()).unwrap_or_default();
        let got: [u8; 32] = Sha256::digest(presented).into();
        all &= bool::from(got.ct_eq(&want));
    }
    all
}

/// The credential after an auth scheme, matched case-insensitively.
fn strip_scheme<'v>(value: &'v [u8], scheme: &[u8]) -> Option<&'v [u8]> {
    (value.len() > scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| value[scheme.len()..].trim_ascii())
}

/// The decoded value of query parameter `name`.
fn query_param(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned().into_bytes())
}

/// Whether the call's `Origin` (or else `Referer`) is on the connector's
/// allow-list, compared by scheme, host and port. No list: any origin.
pub fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(source) = headers.get(ORIGIN).or_else(|| headers.get(REFERER)).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(url) = url::Url::parse(source) else {
        return false;
    };
    let origin = url.origin().ascii_serialization();
    allowed.contains(&origin)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (hyper::header::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn origins_match_by_scheme_host_and_port_from_origin_or_referer() {
        let allowed = vec!["https://app.example.com".to_owned(), "http://localhost:3000".to_owned()];
        assert!(origin_allowed(&allowed, &headers(&[("origin", "https://app.example.com")])));
        assert!(origin_allowed(&allowed, &headers(&[("origin", "https://app.example.com:443")])));
        assert!(origin_allowed(&allowed, &headers(&[("referer", "http://localhost:3000/page?x=1")])));
        assert!(!origin_allowed(&allowed, &headers(&[("origin", "http://app.example.com")])));
        assert!(!origin_allowed(&allowed, &headers(&[("origin", "https://app.example.com.evil.io")])));
        assert!(!origin_allowed(&allowed, &headers(&[("origin", "null")])));
        assert!(!origin_allowed(&allowed, &headers(&[])));
        assert!(origin_allowed(&[], &headers(&[])));
    }

    #[test]
    fn schemes_are_matched_without_case_and_need_a_credential() {
        assert_eq!(strip_scheme(b"Bearer abc", b"bearer "), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"BEARER  abc ", b"bearer "), Some(&b"abc"[..]));
        assert_eq!(strip_scheme(b"Bearer ", b"bearer "), None);
        assert_eq!(strip_scheme(b"Basic abc", b"bearer "), None);
        assert_eq!(query_param(Some("a=1&api_key=k%2B1"), "api_key"), Some(b"k+1".to_vec()));
        assert_eq!(query_param(Some("a=1"), "api_key"), None);
    }
}
