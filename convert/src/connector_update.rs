//! Connector updates: the masked fields (top-level, or nested such as
//! `perform.url`) merged into the stored spec and the whole validated
//! again; secret material a patch leaves empty is kept from the stored
//! spec.

use hookplane::api::v1 as api;
use hookplane_model::{self as model, ConnectorSpec, HashedField};

use super::connector::{connector_from_api, spec_to_api};
use super::{ValidationError, Violations};

/// The top-level fields an update mask may name (plus `*`), and any field
/// nested in one of them, such as `perform.url` (AIP-134).
pub const CONNECTOR_MASK_PATHS: &[&str] = &[
    "display_name",
    "description",
    "enabled",
    "async_mode",
    "auth",
    "allowed_origins",
    "signature",
    "condition",
    "lookup",
    "mappings",
    "perform",
    "sample_payload",
    "labels",
];

/// Paths an update mask may hold.
const MAX_MASK_PATHS: usize = 64;

/// Applies an update: the stored spec with the masked top-level fields taken
/// from `patch`, validated as a whole. Secret fields the patch leaves empty
/// keep their stored values.
pub fn merge_connector_update(
    stored: &ConnectorSpec,
    patch: &api::Connector,
    mask: Option<&prost_types::FieldMask>,
) -> Result<ConnectorSpec, ValidationError> {
    let mut paths = match mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
        _ => return Err(ValidationError::one("update_mask", "is required: name the fields to change, or `*`")),
    };
    // Each nested path re-encodes the connector: a mask is bounded.
    if paths.len() > MAX_MASK_PATHS {
        return Err(ValidationError::one("update_mask", format!("at most {MAX_MASK_PATHS} paths")));
    }
    paths.sort();
    paths.dedup();
    let mut merged = spec_to_api(stored);
    let mut v = Violations::default();
    for path in &paths {
        if path == "*" {
            merged = patch.clone();
            continue;
        }
        match path.as_str() {
            "display_name" => merged.display_name = patch.display_name.clone(),
            "description" => merged.description = patch.description.clone(),
            "enabled" => merged.enabled = Some(patch.enabled.unwrap_or(false)),
            "async_mode" => merged.async_mode = patch.async_mode,
            "auth" => merged.auth = patch.auth.clone(),
            "allowed_origins" => merged.allowed_origins = patch.allowed_origins.clone(),
            "signature" => merged.signature = patch.signature.clone(),
            "condition" => merged.condition = patch.condition.clone(),
            "lookup" => merged.lookup = patch.lookup.clone(),
            "mappings" => merged.mappings = patch.mappings.clone(),
            "perform" => merged.perform = patch.perform.clone(),
            "sample_payload" => merged.sample_payload = patch.sample_payload.clone(),
            "labels" => merged.labels = patch.labels.clone(),
            nested
                if nested.contains('.') && CONNECTOR_MASK_PATHS.contains(&nested.split('.').next().unwrap_or("")) =>
            {
                if let Err(why) = super::field_mask::copy_nested("hookplane.v1.Connector", &mut merged, patch, nested) {
                    v.add("update_mask", why);
                }
            }
            other => v.add(
                "update_mask",
                format!("unknown field `{other}`; expected one of {} or `*`", CONNECTOR_MASK_PATHS.join(", ")),
            ),
        }
    }
    v.finish(())?;
    let mut spec = connector_from_api(&merged, "connector")?;
    // A secret is the sender's: another sender's scheme needs its own.
    if let (Some(new), Some(old)) = (&spec.signature, &stored.signature)
        && new.preset != old.preset
        && !new.secret.is_set()
    {
        return Err(ValidationError::one(
            "connector.signature.secret",
            format!(
                "is required when the preset changes (from `{}` to `{}`): the stored secret is the old sender's",
                old.preset.name(),
                new.preset.name()
            ),
        ));
    }
    keep_stored_secrets(&mut spec, stored);
    Ok(spec)
}

/// Carries stored secret material over fields an update left empty, slot
/// by slot. A rotation's previous signing secret stays while the current
/// one is kept and its overlap lasts; a new secret set by an update
/// replaces both at once.
fn keep_stored_secrets(spec: &mut ConnectorSpec, stored: &ConnectorSpec) {
    if let (Some(new), Some(old)) = (spec.signature.as_mut(), stored.signature.as_ref())
        && !new.secret.is_set()
    {
        new.previous = old.previous.clone().filter(|p| p.expire_time > model::now());
    }
    let kept = stored.secrets();
    spec.update_secrets(|slot, new| match kept.iter().find(|(s, _)| *s == slot) {
        Some((_, old)) if !new.is_set() => (*old).clone(),
        _ => new.clone(),
    });
    // Custom header values are compared, not used: hashed, by header name.
    for header in &mut spec.auth.custom_headers {
        if header.value == HashedField::Absent
            && let Some(old) = stored.auth.custom_headers.iter().find(|h| h.name == header.name)
        {
            header.value = old.value.clone();
        }
    }
}
