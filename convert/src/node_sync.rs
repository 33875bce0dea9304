//! Conversions of the data-plane protocol (`node_sync.proto`).
//!
//! On the way out the control plane hands over connectors with their secret
//! material opened; on the way in a node converts each connector on its own,
//! so one invalid connector is rejected alone while the rest apply.

use hookplane::api::v1 as api;
use hookplane_model::{
    self as model, ConfigDelta, Connector, ConnectorToken, DeployedOrganization, DeployedSecret, HashedField,
    SecretField, SecretSlot, TokenKind, Versioned,
};

use super::connector::{connector_shape_from_api, token_kind_to_api};
use super::organization::{plan_from_api, plan_to_api};
use super::validate::{timestamp_from_api, timestamp_to_api};
use super::{ValidationError, Violations, connector_to_api};

/// A connector a node could not take, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub connector_id: String,
    /// The config version of the rejected connector.
    pub version: i64,
    pub reason: String,
}

/// Converts a delta for the wire. Connectors' secret fields must be opened
/// (`SecretField::Plain`); sealed or absent ones are sent empty.
pub fn config_delta_to_api(delta: &ConfigDelta) -> api::ConfigUpdate {
    api::ConfigUpdate {
        version: delta.version,
        full: delta.full,
        base_version: delta.base_version,
        connectors: delta
            .connectors
            .iter()
            .map(|c| node_connector_to_api(c, delta.unopened_connectors.get(&c.item.id)))
            .collect(),
        removed_connector_ids: delta.removed_connector_ids.clone(),
        secrets: delta
            .secrets
            .iter()
            .map(|s| api::NodeSecret {
                organization_id: s.item.organization_id.clone(),
                name: s.item.name.clone(),
                value: s.item.value.clone().unwrap_or_default(),
                item_version: s.version,
                unavailable: s.item.value.is_none(),
            })
            .collect(),
        removed_secrets: delta
            .removed_secrets
            .iter()
            .map(|(org, name)| api::NodeSecretRef { organization_id: org.clone(), name: name.clone() })
            .collect(),
        plans: delta.plans.iter().map(plan_to_api).collect(),
        organizations: delta
            .organizations
            .iter()
            .map(|o| api::NodeOrganization {
                id: o.item.id.clone(),
                plan: o.item.plan.clone(),
                item_version: o.version,
            })
            .collect(),
        content_hash: delta.content_hash.clone(),
        more_parts: false,
    }
}

fn plain(field: &SecretField) -> String {
    match field {
        SecretField::Plain(text) => text.clone(),
        SecretField::Absent | SecretField::Sealed(_) => String::new(),
    }
}

/// `unavailable_reason`: why the control plane could not open the
/// connector's own secret material, if it could not.
fn node_connector_to_api(c: &Versioned<Connector>, unavailable_reason: Option<&String>) -> api::NodeConnector {
    let spec = &c.item.spec;
    let (mut signature_secret, mut previous_signature_secret) = Default::default();
    let (mut oauth_client_secret, mut oauth_refresh_token) = Default::default();
    for (slot, secret) in spec.secrets() {
        let field: &mut String = match slot {
            SecretSlot::Signature => &mut signature_secret,
            SecretSlot::PreviousSignature => &mut previous_signature_secret,
            SecretSlot::OAuth2ClientSecret => &mut oauth_client_secret,
            SecretSlot::OAuth2RefreshToken => &mut oauth_refresh_token,
        };
        *field = plain(secret);
    }
    api::NodeConnector {
        organization_id: c.item.organization_id.clone(),
        connector: Some(connector_to_api(&c.item, &[])),
        item_version: c.version,
        credentials: c
            .item
            .tokens
            .iter()
            .map(|t| api::NodeCredential {
                kind: token_kind_to_api(t.kind) as i32,
                sha256: t.hash.clone(),
                expire_time: t.expire_time.map(timestamp_to_api),
                token_id: t.id.clone(),
            })
            .collect(),
        signature_secret,
        custom_header_hashes: spec
            .auth
            .custom_headers
            .iter()
            .map(|h| match &h.value {
                HashedField::Sha256(hash) => hash.clone(),
                HashedField::Absent | HashedField::Plain(_) => String::new(),
            })
            .collect(),
        oauth_client_secret,
        oauth_refresh_token,
        unavailable_reason: unavailable_reason.cloned().unwrap_or_default(),
        previous_signature_secret,
    }
}

/// Appends a later part of a split update to the parts received so far.
pub fn merge_update_parts(into: &mut api::ConfigUpdate, part: api::ConfigUpdate) {
    into.connectors.extend(part.connectors);
    into.removed_connector_ids.extend(part.removed_connector_ids);
    into.secrets.extend(part.secrets);
    into.removed_secrets.extend(part.removed_secrets);
    into.plans.extend(part.plans);
    into.organizations.extend(part.organizations);
    into.more_parts = part.more_parts;
    into.content_hash = part.content_hash;
}

/// Converts an update a node received. Connectors that do not convert are
/// left out and returned as rejections; everything else is kept.
pub fn config_delta_from_api(update: &api::ConfigUpdate) -> (ConfigDelta, Vec<Rejection>) {
    let mut rejected = Vec::new();
    let mut connectors = Vec::with_capacity(update.connectors.len());
    for node in &update.connectors {
        match node_connector_from_api(node) {
            Ok(connector) => connectors.push(Versioned { item: connector, version: node.item_version }),
            Err(reason) => rejected.push(Rejection {
                connector_id: node.connector.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
                version: node.item_version,
                reason,
            }),
        }
    }
    let plans = update.plans.iter().filter_map(|p| {
        let mut plan = plan_from_api(p, "plan").ok()?;
        plan.revision = model::revision_of(&p.etag).unwrap_or_default();
        Some(plan)
    });
    let delta = ConfigDelta {
        version: update.version,
        full: update.full,
        base_version: update.base_version,
        connectors,
        removed_connector_ids: update.removed_connector_ids.clone(),
        secrets: update
            .secrets
            .iter()
            .map(|s| Versioned {
                item: DeployedSecret {
                    organization_id: s.organization_id.clone(),
                    name: s.name.clone(),
                    value: (!s.unavailable).then(|| s.value.clone()),
                },
                version: s.item_version,
            })
            .collect(),
        removed_secrets: update.removed_secrets.iter().map(|s| (s.organization_id.clone(), s.name.clone())).collect(),
        plans: plans.collect(),
        organizations: update
            .organizations
            .iter()
            .map(|o| Versioned {
                item: DeployedOrganization { id: o.id.clone(), plan: o.plan.clone() },
                version: o.item_version,
            })
            .collect(),
        content_hash: update.content_hash.clone(),
        // A node learns of them as rejections, above.
        unopened_connectors: Default::default(),
    };
    (delta, rejected)
}

/// One connector as a node receives it; the error is a readable reason.
fn node_connector_from_api(node: &api::NodeConnector) -> Result<Connector, String> {
    if !node.unavailable_reason.is_empty() {
        return Err(node.unavailable_reason.clone());
    }
    let api_connector = node.connector.as_ref().ok_or("connector is missing")?;
    let shape = connector_shape_from_api(api_connector, "connector").map_err(|e| e.to_string())?;
    let mut spec = shape;
    let mut v = Violations::default();
    // The previous secret is output only in the API; a node learns of it
    // from its expiry, and its value from the node's own field.
    if let (Some(signature), Some(api_signature)) = (spec.signature.as_mut(), api_connector.signature.as_ref())
        && let Some(expiry) = &api_signature.previous_secret_expire_time
        && let Some(expire_time) = timestamp_from_api(expiry, "signature.previous_secret_expire_time", &mut v)
    {
        signature.previous = Some(model::PreviousSecret { secret: SecretField::Absent, expire_time });
    }
    spec.update_secrets(|slot, _| {
        secret_field(match slot {
            SecretSlot::Signature => &node.signature_secret,
            SecretSlot::PreviousSignature => &node.previous_signature_secret,
            SecretSlot::OAuth2ClientSecret => &node.oauth_client_secret,
            SecretSlot::OAuth2RefreshToken => &node.oauth_refresh_token,
        })
    });
    if node.custom_header_hashes.len() != spec.auth.custom_headers.len() {
        return Err("custom header hashes do not match the custom headers".to_owned());
    }
    for (header, hash) in spec.auth.custom_headers.iter_mut().zip(&node.custom_header_hashes) {
        header.value = HashedField::Sha256(hash.clone());
    }
    let tokens = node
        .credentials
        .iter()
        .map(|c| {
            let kind = match api::TokenKind::try_from(c.kind) {
                Ok(api::TokenKind::Bearer) => TokenKind::Bearer,
                Ok(api::TokenKind::SecretToken) => TokenKind::SecretToken,
                Ok(api::TokenKind::ApiKey) => TokenKind::ApiKey,
                Ok(api::TokenKind::BasicPassword) => TokenKind::BasicPassword,
                _ => return Err(format!("credential {} has an unknown kind", c.token_id)),
            };
            let meta = api_connector.tokens.iter().find(|t| t.id == c.token_id);
            Ok(ConnectorToken {
                id: c.token_id.clone(),
                kind,
                hash: c.sha256.clone(),
                hint: meta.map(|t| t.hint.clone()).unwrap_or_default(),
                create_time: meta
                    .and_then(|t| t.create_time.as_ref())
                    .and_then(|t| timestamp_from_api(t, "create_time", &mut v))
                    .unwrap_or_default(),
                expire_time: c.expire_time.as_ref().and_then(|t| timestamp_from_api(t, "expire_time", &mut v)),
                superseded: meta.is_some_and(|t| t.superseded),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    v.finish(()).map_err(|e| e.to_string())?;
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().and_then(|t| timestamp_from_api(t, "time", &mut Violations::default())).unwrap_or_default()
    };
    Ok(Connector {
        id: api_connector.id.clone(),
        organization_id: node.organization_id.clone(),
        spec,
        tokens,
        create_time: time(&api_connector.create_time),
        update_time: time(&api_connector.update_time),
        revision: model::revision_of(&api_connector.etag).unwrap_or_default(),
    })
}

fn secret_field(text: &str) -> SecretField {
    if text.is_empty() { SecretField::Absent } else { SecretField::Plain(text.to_owned()) }
}

/// The limiting policy as nodes receive it.
pub fn limiting_to_api(policy: &model::LimitingPolicy) -> api::LimitingPolicy {
    use api::limiting_policy::Kind;
    match policy {
        model::LimitingPolicy::Local => api::LimitingPolicy { kind: Kind::Local as i32, ..Default::default() },
        model::LimitingPolicy::Redis(redis) => api::LimitingPolicy {
            kind: Kind::Redis as i32,
            redis_url: redis.url.clone(),
            fail_closed: redis.fail_closed,
            key_prefix: redis.key_prefix.clone(),
            timeout_ms: redis.timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        },
    }
}

/// The limiting policy a node received; absent (an older control plane)
/// is `local`.
pub fn limiting_from_api(policy: Option<&api::LimitingPolicy>) -> Result<model::LimitingPolicy, ValidationError> {
    use api::limiting_policy::Kind;
    let Some(policy) = policy else { return Ok(model::LimitingPolicy::Local) };
    match Kind::try_from(policy.kind) {
        Ok(Kind::Unspecified | Kind::Local) => Ok(model::LimitingPolicy::Local),
        Ok(Kind::Redis) if policy.redis_url.is_empty() => {
            Err(ValidationError::one("limiting.redis_url", "is required with the redis policy"))
        }
        Ok(Kind::Redis) => Ok(model::LimitingPolicy::Redis(model::RedisPolicy {
            url: policy.redis_url.clone(),
            fail_closed: policy.fail_closed,
            key_prefix: if policy.key_prefix.is_empty() { "hookplane".to_owned() } else { policy.key_prefix.clone() },
            timeout: match policy.timeout_ms {
                0 => model::RedisPolicy::DEFAULT_TIMEOUT,
                ms => std::time::Duration::from_millis(u64::from(ms)),
            },
        })),
        Err(_) => Err(ValidationError::one("limiting.kind", "unknown limiting policy")),
    }
}
