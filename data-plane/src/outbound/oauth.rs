//! OAuth 2.0 access tokens for outbound auth (SPEC §7): client credentials
//! and refresh-token grants, cached until shortly before they expire.
//!
//! The client authenticates with HTTP Basic (RFC 6749 §2.3.1). The token
//! call goes through the same guarded client as every other call. The cache
//! lock is never held across the token request; two triggers that miss the
//! cache at once may both fetch, and the later answer wins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hookplane_model::{Deployed, OAuth2Grant, OAuth2Settings};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method};
use serde::Deserialize;

use super::{Outbound, OutboundError, OutboundRequest};
use crate::pipeline::redact::Redactor;

/// Tokens are renewed this long before the provider says they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the provider gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Characters of a refusing token endpoint's answer its error quotes.
const EXCERPT_CHARS: usize = 200;

/// Why no token could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token request failed: {0}")]
    Request(#[from] OutboundError),
    #[error("token endpoint answered {status}: {excerpt}")]
    Refused { status: u16, excerpt: String },
    #[error("token endpoint answer has no access_token")]
    Malformed,
    #[error("the token URL is not a valid URL")]
    BadUrl,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// Cached tokens by connector id and version (a new version may hold new
/// credentials).
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, i64), (String, Instant)>>,
}

impl TokenCache {
    /// A valid access token for the connector, fetched when needed.
    pub async fn token(
        &self,
        outbound: &Outbound,
        connector: (&str, i64),
        settings: &OAuth2Settings<Deployed>,
        timeout: Duration,
    ) -> Result<String, TokenError> {
        let key = (connector.0.to_owned(), connector.1);
        if let Some((token, until)) = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        // Boxed: the token endpoint's exchange is for a cache miss only, not
        // part of every trigger's future (see `trigger::check_order`).
        let (token, lifetime) = Box::pin(fetch(outbound, settings, timeout)).await?;
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|(id, version), _| id != connector.0 || *version == connector.1);
        tokens.insert(key, (token.clone(), until));
        Ok(token)
    }
}

async fn fetch(
    outbound: &Outbound,
    settings: &OAuth2Settings<Deployed>,
    timeout: Duration,
) -> Result<(String, Duration), TokenError> {
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match settings.grant {
            OAuth2Grant::ClientCredentials => form.append_pair("grant_type", "client_credentials"),
            OAuth2Grant::RefreshToken => form
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", settings.refresh_token.expose()),
        };
        if !settings.scopes.is_empty() {
            form.append_pair("scope", &settings.scopes.join(" "));
        }
        form.finish()
    };
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_encode(&settings.client_id),
        form_encode(settings.client_secret.expose())
    ));
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    headers.insert(hyper::header::ACCEPT, HeaderValue::from_static("application/json"));
    let mut authorization =
        HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| TokenError::Malformed)?;
    authorization.set_sensitive(true);
    headers.insert(AUTHORIZATION, authorization);
    let request = OutboundRequest {
        method: Method::POST,
        destination: url::Url::parse(&settings.token_url).map_err(|_| TokenError::BadUrl)?.into(),
        headers,
        body: Bytes::from(body),
        timeout,
    };
    let response = outbound.send(request, 64 * 1024).await?;
    if !response.status.is_success() {
        // The excerpt reaches the event's error, and an endpoint may echo
        // what it was sent: the client secret, the refresh token and the
        // Basic credentials are replaced, before the cut, so that no part
        // of one is left at its end.
        let mut sent = Redactor::default();
        for secret in [settings.client_secret.expose(), settings.refresh_token.expose(), credentials.as_str()] {
            sent.add(secret);
        }
        let answer = sent.scrub(&String::from_utf8_lossy(&response.body)).into_owned();
        let excerpt = answer.chars().take(EXCERPT_CHARS).collect();
        return Err(TokenError::Refused { status: response.status.as_u16(), excerpt });
    }
    let parsed: TokenResponse = serde_json::from_slice(&response.body).map_err(|_| TokenError::Malformed)?;
    if parsed.access_token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok((parsed.access_token, parsed.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs)))
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
