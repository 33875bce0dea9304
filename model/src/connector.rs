//! Connectors (SPEC §4, §7): who may trigger them and what they do.
//!
//! A connector's spec is one shape in several representations ([`Repr`]):
//! as written ([`Source`]: expressions as text), compiled ([`Compiled`]:
//! programs in a set), and deployed on a node ([`Deployed`]: secrets
//! opened). The parts that hold expressions, names and secrets are generic
//! over the representation; everything else is plain data shared by all.
//! [`ConnectorSpec::map`](crate::ConnectorSpec) in `walk.rs` is the one
//! place that knows where those parts are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::repr::{Repr, Source};
use super::{HashedField, Revision, SignatureSettings, Timestamp};

/// A stored connector: its spec plus server-owned state.
#[derive(Clone, Debug, PartialEq)]
pub struct Connector<R: Repr = Source> {
    pub id: String,
    pub organization_id: String,
    pub spec: ConnectorSpec<R>,
    pub tokens: Vec<ConnectorToken>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub revision: Revision,
}

impl<R: Repr> Connector<R> {
    /// The path of the trigger URL on every data-plane node.
    pub fn trigger_path(&self) -> String {
        format!("/api/v1/connectors/{}/trigger", self.id)
    }
}

/// Everything a user configures on a connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct ConnectorSpec<R: Repr = Source> {
    pub display_name: String,
    pub description: String,
    pub enabled: bool,
    pub async_mode: bool,
    pub auth: InboundAuth,
    /// Normalised `scheme://host[:port]` origins.
    pub allowed_origins: Vec<String>,
    /// Boxed, as most connectors have none: nodes hold every connector.
    pub signature: Option<Box<SignatureSettings<R>>>,
    pub condition: Option<R::Expr>,
    pub lookup: Option<Box<Lookup<R>>>,
    pub mappings: Vec<FieldMapping<R>>,
    pub perform: Perform<R>,
    pub sample_payload: Option<String>,
    /// The owner's key-value pairs (`team: payments`), for finding
    /// connectors; tools such as `hookplane connectors apply` keep theirs
    /// here. Nodes do not keep them. Absent from specs stored before them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Inbound authentication methods (SPEC §4 item 5).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct InboundAuth {
    pub bearer_token: bool,
    pub secret_token: bool,
    pub api_key: Option<ApiKeyAuth>,
    pub basic: Option<BasicAuth>,
    pub custom_headers: Vec<CustomHeader>,
    /// Lifetime of minted credentials; `None` never expires.
    pub token_ttl_secs: Option<u64>,
    /// An absolute end for minted credentials, whichever comes first with
    /// the lifetime. Absent from specs stored before it existed.
    #[serde(default)]
    pub token_expire_time: Option<Timestamp>,
}

impl InboundAuth {
    /// The token kinds this configuration needs minted.
    pub fn token_kinds(&self) -> Vec<TokenKind> {
        let mut kinds = Vec::new();
        if self.bearer_token {
            kinds.push(TokenKind::Bearer);
        }
        if self.secret_token {
            kinds.push(TokenKind::SecretToken);
        }
        if self.api_key.is_some() {
            kinds.push(TokenKind::ApiKey);
        }
        if self.basic.is_some() {
            kinds.push(TokenKind::BasicPassword);
        }
        kinds
    }

    /// Whether at least one method is configured.
    pub fn has_any_method(&self) -> bool {
        !self.token_kinds().is_empty() || !self.custom_headers.is_empty()
    }
}

/// Where an inbound API key travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    Header,
    Query,
}

/// API key authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyAuth {
    pub location: ApiKeyLocation,
    pub name: String,
}

/// HTTP Basic authentication; the password is a minted token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    pub username: String,
}

/// A header that must carry an exact value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomHeader {
    /// Lowercase header name.
    pub name: String,
    pub value: HashedField,
}

/// Code calling a connector's trigger URL with one authentication method
/// in one language (SPEC §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationExample {
    /// `bearer_token`, `secret_token`, `api_key`, `basic`,
    /// `custom_headers` or `signature`.
    pub auth_method: String,
    /// `curl`, `javascript` or `python`.
    pub language: String,
    pub code: String,
    /// Environment variables the code reads.
    pub environment: Vec<String>,
}

/// Kinds of minted inbound credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Bearer,
    SecretToken,
    ApiKey,
    BasicPassword,
}

impl TokenKind {
    /// Stable text for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Bearer => "bearer",
            TokenKind::SecretToken => "secret_token",
            TokenKind::ApiKey => "api_key",
            TokenKind::BasicPassword => "basic_password",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<TokenKind> {
        match text {
            "bearer" => Some(TokenKind::Bearer),
            "secret_token" => Some(TokenKind::SecretToken),
            "api_key" => Some(TokenKind::ApiKey),
            "basic_password" => Some(TokenKind::BasicPassword),
            _ => None,
        }
    }
}

/// A minted inbound credential; only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorToken {
    pub id: String,
    pub kind: TokenKind,
    /// Lowercase hex SHA-256 of the plaintext.
    pub hash: String,
    pub hint: String,
    pub create_time: Timestamp,
    pub expire_time: Option<Timestamp>,
    pub superseded: bool,
}

impl ConnectorToken {
    /// Whether the credential is accepted at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.expire_time.is_none_or(|t| now < t)
    }
}

/// The plaintext of a credential, handed out once.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    pub kind: TokenKind,
    pub token: String,
    pub expire_time: Option<Timestamp>,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("kind", &self.kind)
            .field("token", &"<redacted>")
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

/// A header or query parameter with a templated value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct NamedTemplate<R: Repr = Source> {
    pub name: R::Name,
    pub value: R::Expr,
}

/// The optional enrichment request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct Lookup<R: Repr = Source> {
    pub url: R::Expr,
    pub headers: Vec<NamedTemplate<R>>,
    pub query: Vec<NamedTemplate<R>>,
    pub timeout_ms: u64,
}

/// A named value of `$processed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct FieldMapping<R: Repr = Source> {
    pub name: R::Name,
    pub expression: R::Expr,
}

/// How the perform body is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyType {
    Json,
    FormUrlencoded,
    Multipart,
    Raw,
    None,
}

/// Levels a body field's dotted key may nest (`order.customer.id` is
/// three). A JSON body is a tree that deep, and it is serialised and
/// dropped by recursion: a key of 200 000 levels, which nothing else
/// refused, overflowed a node's stack on the connector's first call.
pub const MAX_BODY_KEY_DEPTH: usize = 32;

/// How many levels `key` nests as a body field's key.
pub fn body_key_depth(key: &str) -> usize {
    key.bytes().filter(|&b| b == b'.').count() + 1
}

/// One field of a structured body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct BodyField<R: Repr = Source> {
    pub key: R::Name,
    pub value: R::Expr,
    /// Set when the value is a file (multipart bodies only); boxed because
    /// few fields are files and nodes hold every connector.
    pub file: Option<Box<FilePart>>,
}

/// How a body field's value is sent as a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    pub filename: String,
    pub content_type: String,
}

/// Retries of the perform request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, initial_backoff_ms: 500 }
    }
}

/// OAuth 2.0 grant types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    ClientCredentials,
    RefreshToken,
}

/// Authentication against the target.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub enum OutboundAuth<R: Repr = Source> {
    #[default]
    None,
    Bearer {
        token: R::Expr,
    },
    Basic {
        username: R::Expr,
        password: R::Expr,
    },
    OAuth2(Box<OAuth2Settings<R>>),
}

/// OAuth 2.0 token acquisition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct OAuth2Settings<R: Repr = Source> {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: R::Secret,
    pub scopes: Vec<String>,
    pub grant: OAuth2Grant,
    pub refresh_token: R::Secret,
}

/// The request performed against the target API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R::Expr: Serialize, R::Name: Serialize, R::Secret: Serialize",
    deserialize = "R::Expr: Deserialize<'de>, R::Name: Deserialize<'de>, R::Secret: Deserialize<'de>"
))]
pub struct Perform<R: Repr = Source> {
    pub method: String,
    pub url: R::Expr,
    pub headers: Vec<NamedTemplate<R>>,
    pub query: Vec<NamedTemplate<R>>,
    pub body_type: BodyType,
    pub body: Vec<BodyField<R>>,
    /// The body template, for `BodyType::Raw` only. (Connectors stored
    /// before it was optional hold `""` here whatever their body type.)
    #[serde(default)]
    pub raw_body: Option<R::Expr>,
    pub raw_content_type: String,
    pub skip_null_values: bool,
    pub auth: OutboundAuth<R>,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
}
