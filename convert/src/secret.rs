//! Secret conversions.

use hookplane::api::v1 as api;
use hookplane_model::{self as model, Secret, SecretField, SecretSpec};

use super::organization::mask_paths;
use super::validate::{is_identifier, optional_text, timestamp_to_api};
use super::{ValidationError, Violations};

const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Converts a secret from a create request; the value is required.
pub fn secret_spec_from_api(s: &api::Secret, prefix: &str) -> Result<SecretSpec, ValidationError> {
    let mut v = Violations::default();
    let name = s.name.trim().to_owned();
    if !is_identifier(&name, 64) {
        v.add(format!("{prefix}.name"), "must match [A-Za-z_][A-Za-z0-9_]{0,63}");
    }
    let value = secret_value(&s.value, &format!("{prefix}.value"), true, &mut v);
    let description = optional_text(&s.description, &format!("{prefix}.description"), 2000, &mut v);
    v.finish(SecretSpec { name, value, description })
}

fn secret_value(value: &str, field: &str, required: bool, v: &mut Violations) -> SecretField {
    if value.is_empty() {
        if required {
            v.add(field, "is required");
        }
        SecretField::Absent
    } else {
        if value.len() > MAX_SECRET_BYTES {
            v.add(field, "must be at most 64 KiB");
        }
        SecretField::Plain(value.to_owned())
    }
}

/// Applies an update mask (`value`, `description`) to a stored secret.
pub fn merge_secret_update(
    stored: &Secret,
    patch: &api::Secret,
    mask: Option<&prost_types::FieldMask>,
) -> Result<SecretSpec, ValidationError> {
    let mut spec =
        SecretSpec { name: stored.name.clone(), value: SecretField::Absent, description: stored.description.clone() };
    let mut v = Violations::default();
    for path in mask_paths(mask, &["value", "description"])? {
        match path.as_str() {
            "value" => spec.value = secret_value(&patch.value, "secret.value", true, &mut v),
            "description" => spec.description = optional_text(&patch.description, "secret.description", 2000, &mut v),
            _ => unreachable!("mask_paths only returns known paths"),
        }
    }
    v.finish(spec)
}

/// Converts a secret to the API, never with its value.
pub fn secret_to_api(s: &Secret) -> api::Secret {
    api::Secret {
        name: s.name.clone(),
        value: String::new(),
        description: s.description.clone(),
        create_time: Some(timestamp_to_api(s.create_time)),
        update_time: Some(timestamp_to_api(s.update_time)),
        etag: model::etag_of(s.revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_needs_a_name_and_a_value() {
        let err =
            secret_spec_from_api(&api::Secret { name: "bad-name".into(), ..Default::default() }, "secret").unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["secret.name", "secret.value"]);
    }

    #[test]
    fn values_never_leave_through_the_api() {
        let spec = secret_spec_from_api(
            &api::Secret { name: "TOKEN".into(), value: "s3cret".into(), ..Default::default() },
            "secret",
        )
        .unwrap();
        assert_eq!(spec.value, SecretField::Plain("s3cret".into()));
        let stored = Secret {
            organization_id: "org_1".into(),
            name: spec.name,
            value: SecretField::Sealed("ciphertext".into()),
            description: String::new(),
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
            revision: 1,
        };
        assert_eq!(secret_to_api(&stored).value, "");
    }
}
