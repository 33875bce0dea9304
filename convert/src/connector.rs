//! Connector conversions and update-mask merging.

use hookplane::api::v1 as api;
use hookplane_model::{
    self as model, ApiKeyLocation, BodyType, Connector, ConnectorSpec, HashedField, IssuedCredential, OAuth2Grant,
    OutboundAuth, SecretField, TokenKind,
};

use super::signature::{signature_from_api, signature_to_api};
use super::validate::{
    duration_from_api, duration_to_api, http_url, is_header_name, is_identifier, is_method_token, optional_text,
    required_text, timestamp_from_api, timestamp_to_api,
};
use super::{ValidationError, Violations};

const MAX_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const MAX_TOKEN_TTL_MS: u64 = 10 * 366 * 86_400_000;
const MAX_SAMPLE_PAYLOAD: usize = 64 * 1024;

/// Converts a connector from a create request. Secret fields left empty come
/// back as `Absent`; the caller decides whether that is allowed.
pub fn connector_from_api(c: &api::Connector, prefix: &str) -> Result<ConnectorSpec, ValidationError> {
    connector_spec(c, prefix, true)
}

/// Like [`connector_from_api`] without compiling the expressions: for data
/// planes, which compile them anyway to keep the programs and reject the
/// connector on an error there.
pub(super) fn connector_shape_from_api(c: &api::Connector, prefix: &str) -> Result<ConnectorSpec, ValidationError> {
    connector_spec(c, prefix, false)
}

fn connector_spec(c: &api::Connector, prefix: &str, check_expressions: bool) -> Result<ConnectorSpec, ValidationError> {
    let mut v = Violations::default();
    let f = |name: &str| format!("{prefix}.{name}");

    let display_name = required_text(&c.display_name, &f("display_name"), 200, &mut v);
    let description = optional_text(&c.description, &f("description"), 2000, &mut v);
    let auth = c.auth.as_ref().map(|auth| inbound_auth(auth, &f("auth"), &mut v)).unwrap_or_default();
    let allowed_origins = origins(&c.allowed_origins, &f("allowed_origins"), &mut v);
    let signature = c.signature.as_ref().map(|s| Box::new(signature_from_api(s, &f("signature"), &mut v)));
    // A verified signature authenticates a call by itself: senders such as
    // GitHub or Stripe can send no credential of ours.
    if !auth.has_any_method() && signature.is_none() {
        v.add(
            f("auth"),
            "configure at least one method (bearer_token, secret_token, api_key, basic or custom_headers), \
             or a signature, which then authenticates calls alone",
        );
    }
    // Kept verbatim so error positions match the text the user sent.
    let condition = (!c.condition.trim().is_empty()).then(|| c.condition.clone());
    let lookup = c.lookup.as_ref().map(|l| Box::new(lookup(l, &f("lookup"), &mut v)));
    let mappings = mappings(&c.mappings, &f("mappings"), &mut v);
    let perform = match &c.perform {
        Some(p) => perform(p, &f("perform"), &mut v),
        None => {
            v.add(f("perform"), "is required: set at least perform.url");
            perform(&api::Perform::default(), &f("perform"), &mut Violations::default())
        }
    };
    let sample_payload = non_empty(&c.sample_payload);
    if let Some(sample) = &sample_payload {
        if sample.len() > MAX_SAMPLE_PAYLOAD {
            v.add(f("sample_payload"), "must be at most 64 KiB");
        } else if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(sample) {
            v.add(f("sample_payload"), format!("is not valid JSON ({err})"));
        }
    }

    let spec = ConnectorSpec {
        display_name,
        description,
        enabled: c.enabled.unwrap_or(true),
        async_mode: c.async_mode,
        auth,
        allowed_origins,
        signature,
        condition,
        lookup,
        mappings,
        perform,
        sample_payload,
        labels: labels(&c.labels, &f("labels"), &mut v),
    };
    if check_expressions {
        super::expressions::check_connector_expressions(&spec, prefix, &mut v);
    }
    v.finish(spec)
}

/// Labels a connector may carry.
const MAX_LABELS: usize = 32;

/// Label keys: 1 to 63 lower-case letters, digits, `.`, `_`, `/` and `-`,
/// starting and ending with a letter or digit (`team`, `hookplane/name`);
/// values up to 256 characters of text without control characters.
fn labels(
    labels: &std::collections::BTreeMap<String, String>,
    field: &str,
    v: &mut Violations,
) -> std::collections::BTreeMap<String, String> {
    if labels.len() > MAX_LABELS {
        v.add(field, format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let inner = key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
        if key.is_empty() || key.len() > 63 || !inner || !edge(key.chars().next()) || !edge(key.chars().last()) {
            v.add(
                format!("{field}[{key}]"),
                "keys are 1 to 63 of a-z, 0-9, `.`, `_`, `/`, `-`, starting and ending with a letter or digit",
            );
        }
        if value.chars().count() > 256 || value.chars().any(char::is_control) {
            v.add(format!("{field}[{key}]"), "values are at most 256 characters, without control characters");
        }
    }
    labels.clone()
}

fn non_empty(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn inbound_auth(a: &api::InboundAuth, prefix: &str, v: &mut Violations) -> model::InboundAuth {
    let api_key = a.api_key.as_ref().map(|k| {
        let field = format!("{prefix}.api_key.name");
        let location = match api::ApiKeyLocation::try_from(k.location) {
            Ok(api::ApiKeyLocation::Query) => ApiKeyLocation::Query,
            Ok(_) => ApiKeyLocation::Header,
            Err(_) => {
                v.add(format!("{prefix}.api_key.location"), "unknown location");
                ApiKeyLocation::Header
            }
        };
        let name = k.name.trim();
        if name.is_empty() {
            v.add(&field, "is required");
        } else if location == ApiKeyLocation::Header && !is_header_name(name) {
            v.add(&field, "must be a valid header name");
        } else if name.len() > 100 {
            v.add(&field, "must be at most 100 characters");
        }
        let name = if location == ApiKeyLocation::Header { name.to_ascii_lowercase() } else { name.to_owned() };
        model::ApiKeyAuth { location, name }
    });
    let basic = a.basic.as_ref().map(|b| {
        let field = format!("{prefix}.basic.username");
        let username = required_text(&b.username, &field, 200, v);
        if username.contains(':') {
            v.add(field, "must not contain ':'");
        }
        model::BasicAuth { username }
    });
    let mut custom_headers: Vec<model::CustomHeader> = Vec::new();
    for (i, h) in a.custom_headers.iter().enumerate() {
        let name = h.name.trim().to_ascii_lowercase();
        if !is_header_name(&name) {
            v.add(format!("{prefix}.custom_headers[{i}].name"), "must be a valid header name");
        } else if custom_headers.iter().any(|c| c.name == name) {
            v.add(format!("{prefix}.custom_headers[{i}].name"), format!("`{name}` is listed twice"));
        }
        let value = if h.value.is_empty() { HashedField::Absent } else { HashedField::Plain(h.value.clone()) };
        custom_headers.push(model::CustomHeader { name, value });
    }
    let token_ttl_secs = a
        .token_ttl
        .as_ref()
        .and_then(|d| duration_from_api(d, &format!("{prefix}.token_ttl"), MAX_TOKEN_TTL_MS, v))
        .map(|ms| ms.div_ceil(1000));
    // Whether it lies in the future is the control plane's to judge, when
    // it is set: a stored date that has passed still converts.
    let token_expire_time =
        a.token_expire_time.as_ref().and_then(|t| timestamp_from_api(t, &format!("{prefix}.token_expire_time"), v));
    model::InboundAuth {
        bearer_token: a.bearer_token,
        secret_token: a.secret_token,
        api_key,
        basic,
        custom_headers,
        token_ttl_secs,
        token_expire_time,
    }
}

fn origins(list: &[String], field: &str, v: &mut Violations) -> Vec<String> {
    if list.len() > 50 {
        v.add(field, "at most 50 origins");
    }
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let item = format!("{field}[{i}]");
        if let Some(url) = http_url(text, &item, v) {
            let origin = url.origin().ascii_serialization();
            if !out.contains(&origin) {
                out.push(origin);
            }
        }
    }
    out
}

fn named_templates(
    list: &[api::NamedTemplate],
    prefix: &str,
    headers: bool,
    v: &mut Violations,
) -> Vec<model::NamedTemplate> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let name = t.name.trim();
            let valid = if headers { is_header_name(name) } else { !name.is_empty() };
            if !valid {
                let what = if headers { "must be a valid header name" } else { "is required" };
                v.add(format!("{prefix}[{i}].name"), what);
            }
            if t.value.is_empty() {
                v.add(format!("{prefix}[{i}].value"), "is required");
            }
            model::NamedTemplate { name: name.to_owned(), value: t.value.clone() }
        })
        .collect()
}

fn timeout(d: Option<&prost_types::Duration>, field: &str, v: &mut Violations) -> u64 {
    d.and_then(|d| duration_from_api(d, field, MAX_TIMEOUT_MS, v)).unwrap_or(DEFAULT_TIMEOUT_MS)
}

fn lookup(l: &api::Lookup, prefix: &str, v: &mut Violations) -> model::Lookup {
    if l.url.trim().is_empty() {
        v.add(format!("{prefix}.url"), "is required");
    }
    model::Lookup {
        url: l.url.trim().to_owned(),
        headers: named_templates(&l.headers, &format!("{prefix}.headers"), true, v),
        query: named_templates(&l.query, &format!("{prefix}.query"), false, v),
        timeout_ms: timeout(l.timeout.as_ref(), &format!("{prefix}.timeout"), v),
    }
}

fn mappings(list: &[api::FieldMapping], prefix: &str, v: &mut Violations) -> Vec<model::FieldMapping> {
    if list.len() > 100 {
        v.add(prefix, "at most 100 mappings");
    }
    let mut out: Vec<model::FieldMapping> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let name = m.name.trim();
        if !is_identifier(name, 64) {
            v.add(format!("{prefix}[{i}].name"), "must match [A-Za-z_][A-Za-z0-9_]{0,63}");
        } else if out.iter().any(|o| o.name == name) {
            v.add(format!("{prefix}[{i}].name"), format!("`{name}` is defined twice"));
        }
        if m.expression.trim().is_empty() {
            v.add(format!("{prefix}[{i}].expression"), "is required");
        }
        out.push(model::FieldMapping { name: name.to_owned(), expression: m.expression.clone() });
    }
    out
}

fn perform(p: &api::Perform, prefix: &str, v: &mut Violations) -> model::Perform {
    let f = |name: &str| format!("{prefix}.{name}");
    let method = if p.method.trim().is_empty() { "POST".to_owned() } else { p.method.trim().to_ascii_uppercase() };
    if !is_method_token(&method) {
        v.add(f("method"), "must be an HTTP method token such as POST or PURGE");
    }
    if p.url.trim().is_empty() {
        v.add(f("url"), "is required");
    }
    let body_type = match api::BodyType::try_from(p.body_type) {
        Ok(api::BodyType::Unspecified | api::BodyType::Json) => BodyType::Json,
        Ok(api::BodyType::FormUrlencoded) => BodyType::FormUrlencoded,
        Ok(api::BodyType::Multipart) => BodyType::Multipart,
        Ok(api::BodyType::Raw) => BodyType::Raw,
        Ok(api::BodyType::None) => BodyType::None,
        Err(_) => {
            v.add(f("body_type"), "unknown body type");
            BodyType::Json
        }
    };
    if p.body.len() > 200 {
        v.add(f("body"), "at most 200 fields");
    }
    let body = p
        .body
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if b.key.trim().is_empty() {
                v.add(format!("{prefix}.body[{i}].key"), "is required");
            }
            let depth = hookplane_model::body_key_depth(&b.key);
            if depth > hookplane_model::MAX_BODY_KEY_DEPTH {
                v.add(
                    format!("{prefix}.body[{i}].key"),
                    format!("nests {depth} levels; at most {} are allowed", hookplane_model::MAX_BODY_KEY_DEPTH),
                );
            }
            if b.value.is_empty() {
                v.add(format!("{prefix}.body[{i}].value"), "is required");
            }
            if b.file && body_type != BodyType::Multipart {
                v.add(format!("{prefix}.body[{i}].file"), "files need body_type BODY_TYPE_MULTIPART");
            }
            model::BodyField {
                key: b.key.trim().to_owned(),
                value: b.value.clone(),
                file: b.file.then(|| {
                    Box::new(model::FilePart { filename: b.filename.clone(), content_type: b.content_type.clone() })
                }),
            }
        })
        .collect();
    if body_type == BodyType::Raw && p.raw_body.is_empty() {
        v.add(f("raw_body"), "is required for BODY_TYPE_RAW");
    }
    let retry = p.retry.as_ref().map_or_else(model::RetryPolicy::default, |r| {
        let max_attempts = if r.max_attempts == 0 { 3 } else { r.max_attempts };
        if max_attempts > 10 {
            v.add(f("retry.max_attempts"), "must be between 1 and 10");
        }
        let initial_backoff_ms = r
            .initial_backoff
            .as_ref()
            .and_then(|d| duration_from_api(d, &f("retry.initial_backoff"), 60_000, v))
            .unwrap_or(500);
        model::RetryPolicy { max_attempts, initial_backoff_ms }
    });
    model::Perform {
        method,
        url: p.url.trim().to_owned(),
        headers: named_templates(&p.headers, &f("headers"), true, v),
        query: named_templates(&p.query, &f("query"), false, v),
        body_type,
        body,
        raw_body: (body_type == BodyType::Raw).then(|| p.raw_body.clone()),
        raw_content_type: non_empty(&p.raw_content_type).unwrap_or_else(|| "text/plain".to_owned()),
        skip_null_values: p.skip_null_values,
        auth: outbound_auth(p.auth.as_ref(), &f("auth"), v),
        timeout_ms: timeout(p.timeout.as_ref(), &f("timeout"), v),
        retry,
    }
}

fn outbound_auth(a: Option<&api::OutboundAuth>, prefix: &str, v: &mut Violations) -> OutboundAuth {
    use api::outbound_auth::Method;
    match a.and_then(|a| a.method.as_ref()) {
        None => OutboundAuth::None,
        Some(Method::Bearer(b)) => {
            if b.token.is_empty() {
                v.add(format!("{prefix}.bearer.token"), "is required");
            }
            OutboundAuth::Bearer { token: b.token.clone() }
        }
        Some(Method::Basic(b)) => {
            if b.username.is_empty() {
                v.add(format!("{prefix}.basic.username"), "is required");
            }
            OutboundAuth::Basic { username: b.username.clone(), password: b.password.clone() }
        }
        Some(Method::Oauth2(o)) => {
            let f = |name: &str| format!("{prefix}.oauth2.{name}");
            http_url(&o.token_url, &f("token_url"), v);
            let client_id = required_text(&o.client_id, &f("client_id"), 500, v);
            let grant = match api::Oauth2Grant::try_from(o.grant) {
                Ok(api::Oauth2Grant::RefreshToken) => OAuth2Grant::RefreshToken,
                Ok(_) => OAuth2Grant::ClientCredentials,
                Err(_) => {
                    v.add(f("grant"), "unknown grant");
                    OAuth2Grant::ClientCredentials
                }
            };
            let secret =
                |text: &str| if text.is_empty() { SecretField::Absent } else { SecretField::Plain(text.to_owned()) };
            OutboundAuth::OAuth2(Box::new(model::OAuth2Settings {
                token_url: o.token_url.trim().to_owned(),
                client_id,
                client_secret: secret(&o.client_secret),
                scopes: o.scopes.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
                grant,
                refresh_token: secret(&o.refresh_token),
            }))
        }
    }
}

/// Converts a stored connector to the API; `issued` is the plaintext of
/// credentials minted by the current call, if any.
pub fn connector_to_api(c: &Connector, issued: &[IssuedCredential]) -> api::Connector {
    api::Connector {
        id: c.id.clone(),
        trigger_path: c.trigger_path(),
        tokens: c.tokens.iter().map(token_to_api).collect(),
        issued_credentials: issued
            .iter()
            .map(|i| api::IssuedCredential {
                kind: token_kind_to_api(i.kind) as i32,
                token: i.token.clone(),
                expire_time: i.expire_time.map(timestamp_to_api),
            })
            .collect(),
        create_time: Some(timestamp_to_api(c.create_time)),
        update_time: Some(timestamp_to_api(c.update_time)),
        etag: model::etag_of(c.revision),
        ..spec_to_api(&c.spec)
    }
}

fn token_to_api(t: &model::ConnectorToken) -> api::ConnectorToken {
    api::ConnectorToken {
        id: t.id.clone(),
        kind: token_kind_to_api(t.kind) as i32,
        hint: t.hint.clone(),
        create_time: Some(timestamp_to_api(t.create_time)),
        expire_time: t.expire_time.map(timestamp_to_api),
        superseded: t.superseded,
    }
}

pub(super) fn token_kind_to_api(kind: TokenKind) -> api::TokenKind {
    match kind {
        TokenKind::Bearer => api::TokenKind::Bearer,
        TokenKind::SecretToken => api::TokenKind::SecretToken,
        TokenKind::ApiKey => api::TokenKind::ApiKey,
        TokenKind::BasicPassword => api::TokenKind::BasicPassword,
    }
}

fn named_to_api(list: &[model::NamedTemplate]) -> Vec<api::NamedTemplate> {
    list.iter().map(|t| api::NamedTemplate { name: t.name.clone(), value: t.value.clone() }).collect()
}

/// The writable fields of a spec in API form; secrets show only as `*_set`.
pub(super) fn spec_to_api(s: &ConnectorSpec) -> api::Connector {
    api::Connector {
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        enabled: Some(s.enabled),
        async_mode: s.async_mode,
        auth: Some(api::InboundAuth {
            bearer_token: s.auth.bearer_token,
            secret_token: s.auth.secret_token,
            api_key: s.auth.api_key.as_ref().map(|k| api::ApiKeyAuth {
                location: match k.location {
                    ApiKeyLocation::Header => api::ApiKeyLocation::Header,
                    ApiKeyLocation::Query => api::ApiKeyLocation::Query,
                } as i32,
                name: k.name.clone(),
            }),
            basic: s.auth.basic.as_ref().map(|b| api::BasicAuth { username: b.username.clone() }),
            custom_headers: s
                .auth
                .custom_headers
                .iter()
                .map(|h| api::CustomHeader { name: h.name.clone(), value: String::new() })
                .collect(),
            token_ttl: s.auth.token_ttl_secs.map(|secs| duration_to_api(secs * 1000)),
            token_expire_time: s.auth.token_expire_time.map(timestamp_to_api),
        }),
        allowed_origins: s.allowed_origins.clone(),
        signature: s.signature.as_deref().map(signature_to_api),
        condition: s.condition.clone().unwrap_or_default(),
        lookup: s.lookup.as_ref().map(|l| api::Lookup {
            url: l.url.clone(),
            headers: named_to_api(&l.headers),
            query: named_to_api(&l.query),
            timeout: Some(duration_to_api(l.timeout_ms)),
        }),
        mappings: s
            .mappings
            .iter()
            .map(|m| api::FieldMapping { name: m.name.clone(), expression: m.expression.clone() })
            .collect(),
        perform: Some(perform_to_api(&s.perform)),
        sample_payload: s.sample_payload.clone().unwrap_or_default(),
        labels: s.labels.clone(),
        ..Default::default()
    }
}

fn perform_to_api(p: &model::Perform) -> api::Perform {
    use api::outbound_auth::Method;
    api::Perform {
        method: p.method.clone(),
        url: p.url.clone(),
        headers: named_to_api(&p.headers),
        query: named_to_api(&p.query),
        body_type: match p.body_type {
            BodyType::Json => api::BodyType::Json,
            BodyType::FormUrlencoded => api::BodyType::FormUrlencoded,
            BodyType::Multipart => api::BodyType::Multipart,
            BodyType::Raw => api::BodyType::Raw,
            BodyType::None => api::BodyType::None,
        } as i32,
        body: p
            .body
            .iter()
            .map(|b| api::BodyField {
                key: b.key.clone(),
                value: b.value.clone(),
                file: b.file.is_some(),
                filename: b.file.as_ref().map(|f| f.filename.clone()).unwrap_or_default(),
                content_type: b.file.as_ref().map(|f| f.content_type.clone()).unwrap_or_default(),
            })
            .collect(),
        raw_body: p.raw_body.clone().unwrap_or_default(),
        raw_content_type: p.raw_content_type.clone(),
        skip_null_values: p.skip_null_values,
        auth: match &p.auth {
            OutboundAuth::None => None,
            OutboundAuth::Bearer { token } => Some(Method::Bearer(api::BearerOutbound { token: token.clone() })),
            OutboundAuth::Basic { username, password } => {
                Some(Method::Basic(api::BasicOutbound { username: username.clone(), password: password.clone() }))
            }
            OutboundAuth::OAuth2(o) => Some(Method::Oauth2(api::OAuth2Outbound {
                token_url: o.token_url.clone(),
                client_id: o.client_id.clone(),
                client_secret: String::new(),
                client_secret_set: o.client_secret.is_set(),
                scopes: o.scopes.clone(),
                grant: match o.grant {
                    OAuth2Grant::ClientCredentials => api::Oauth2Grant::ClientCredentials,
                    OAuth2Grant::RefreshToken => api::Oauth2Grant::RefreshToken,
                } as i32,
                refresh_token: String::new(),
                refresh_token_set: o.refresh_token.is_set(),
            })),
        }
        .map(|method| api::OutboundAuth { method: Some(method) }),
        timeout: Some(duration_to_api(p.timeout_ms)),
        retry: Some(api::RetryPolicy {
            max_attempts: p.retry.max_attempts,
            initial_backoff: Some(duration_to_api(p.retry.initial_backoff_ms)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;

    use super::*;

    fn connector() -> api::Connector {
        api::Connector {
            display_name: "x".into(),
            auth: Some(api::InboundAuth { bearer_token: true, ..Default::default() }),
            perform: Some(api::Perform { url: "https://example.com/".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_body_key_nests_at_most_its_depth() {
        let field = |key: String| api::BodyField { key, value: "1".into(), ..Default::default() };
        let mut c = connector();
        let deepest = vec!["a"; hookplane_model::MAX_BODY_KEY_DEPTH].join(".");
        c.perform.as_mut().unwrap().body = vec![field(deepest.clone())];
        assert!(connector_from_api(&c, "connector").is_ok());
        c.perform.as_mut().unwrap().body =
            vec![field(deepest.clone()), field(format!("{deepest}.a")), field("a.".repeat(200_000))];
        let err = connector_from_api(&c, "connector").unwrap_err();
        let named: Vec<(&str, &str)> =
            err.violations.iter().map(|v| (v.field.as_str(), v.description.as_str())).collect();
        assert_eq!(
            named,
            [
                ("connector.perform.body[1].key", "nests 33 levels; at most 32 are allowed"),
                ("connector.perform.body[2].key", "nests 200001 levels; at most 32 are allowed"),
            ]
        );
    }

    #[test]
    fn labels_are_kept_and_bad_ones_named() {
        let mut c = connector();
        c.labels = [("team".into(), "payments".into()), ("hookplane/name".into(), "orders".into())].into();
        let spec = connector_from_api(&c, "connector").unwrap();
        assert_eq!(spec.labels["hookplane/name"], "orders");
        assert_eq!(spec_to_api(&spec).labels, c.labels);

        c.labels = [("Bad Key".into(), "v".into()), ("-edge".into(), "v".into()), ("ok".into(), "x\n".into())].into();
        let err = connector_from_api(&c, "connector").unwrap_err();
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["connector.labels[-edge]", "connector.labels[Bad Key]", "connector.labels[ok]"]);
        c.labels = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(connector_from_api(&c, "connector").unwrap_err().violations[0].description, "at most 32 labels");
    }
}
