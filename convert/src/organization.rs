//! Organization, plan and API key conversions.

use hookplane::api::v1 as api;
use hookplane_model::{self as model, ApiKey, ApiKeySpec, Organization, OrganizationSpec, Plan, Role};

use super::validate::{optional_text, required_text, timestamp_from_api, timestamp_to_api};
use super::{ValidationError, Violations};

const ORG_MASK_PATHS: &[&str] = &["display_name", "admin_emails", "plan"];
const PLAN_MASK_PATHS: &[&str] = &[
    "display_name",
    "per_ip_per_minute",
    "per_connector_per_minute",
    "org_per_minute",
    "org_per_hour",
    "org_per_day",
    "retries_enabled",
    "event_retention_days",
];

/// Converts an organization from a create request.
pub fn organization_spec_from_api(o: &api::Organization, prefix: &str) -> Result<OrganizationSpec, ValidationError> {
    let mut v = Violations::default();
    let spec = organization_spec(o, prefix, &mut v);
    v.finish(spec)
}

fn organization_spec(o: &api::Organization, prefix: &str, v: &mut Violations) -> OrganizationSpec {
    let display_name = required_text(&o.display_name, &format!("{prefix}.display_name"), 200, v);
    let plan = o.plan.trim().to_owned();
    if !plan.is_empty() && !is_plan_name(&plan) {
        v.add(format!("{prefix}.plan"), "must match [a-z][a-z0-9-]{0,62}");
    }
    if o.admin_emails.len() > 20 {
        v.add(format!("{prefix}.admin_emails"), "at most 20 addresses");
    }
    let mut admin_emails = Vec::new();
    for (i, email) in o.admin_emails.iter().enumerate() {
        let email = email.trim();
        if !is_email(email) {
            v.add(format!("{prefix}.admin_emails[{i}]"), "must be an e-mail address such as ops@example.com");
        } else if !admin_emails.iter().any(|e: &String| e.eq_ignore_ascii_case(email)) {
            admin_emails.push(email.to_owned());
        }
    }
    OrganizationSpec { display_name, plan, admin_emails }
}

/// Applies an update mask to a stored organization.
pub fn merge_organization_update(
    stored: &Organization,
    patch: &api::Organization,
    mask: Option<&prost_types::FieldMask>,
) -> Result<OrganizationSpec, ValidationError> {
    let mut merged = organization_to_api(stored);
    for path in mask_paths(mask, ORG_MASK_PATHS)? {
        match path.as_str() {
            "display_name" => merged.display_name = patch.display_name.clone(),
            "admin_emails" => merged.admin_emails = patch.admin_emails.clone(),
            "plan" => merged.plan = patch.plan.clone(),
            _ => unreachable!("mask_paths only returns known paths"),
        }
    }
    organization_spec_from_api(&merged, "organization")
}

/// Returns the mask's paths, `*` expanded, or a violation naming the unknown ones.
pub(super) fn mask_paths(
    mask: Option<&prost_types::FieldMask>,
    known: &[&str],
) -> Result<Vec<String>, ValidationError> {
    let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
        return Err(ValidationError::one("update_mask", "is required: name the fields to change, or `*`"));
    };
    let mut v = Violations::default();
    let mut out = Vec::new();
    for path in &mask.paths {
        if path == "*" {
            out.extend(known.iter().map(|p| (*p).to_owned()));
        } else if known.contains(&path.as_str()) {
            out.push(path.clone());
        } else {
            v.add("update_mask", format!("unknown field `{path}`; expected one of {} or `*`", known.join(", ")));
        }
    }
    v.finish(out)
}

fn is_plan_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.len() <= 63
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && text.len() <= 254
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// Converts an organization to the API.
pub fn organization_to_api(o: &Organization) -> api::Organization {
    api::Organization {
        id: o.id.clone(),
        display_name: o.display_name.clone(),
        plan: o.plan.clone(),
        admin_emails: o.admin_emails.clone(),
        create_time: Some(timestamp_to_api(o.create_time)),
        update_time: Some(timestamp_to_api(o.update_time)),
        etag: model::etag_of(o.revision),
    }
}

/// Longest event retention a plan may set.
const MAX_RETENTION_DAYS: u32 = 3_650;

/// Converts a plan from a create request.
pub fn plan_from_api(p: &api::Plan, prefix: &str) -> Result<Plan, ValidationError> {
    let mut v = Violations::default();
    let name = p.name.trim().to_owned();
    if !is_plan_name(&name) {
        v.add(format!("{prefix}.name"), "must match [a-z][a-z0-9-]{0,62}");
    }
    let display_name = optional_text(&p.display_name, &format!("{prefix}.display_name"), 200, &mut v);
    if p.event_retention_days > MAX_RETENTION_DAYS {
        v.add(format!("{prefix}.event_retention_days"), "must be at most 3650 (ten years); 0 keeps events forever");
    }
    v.finish(Plan {
        display_name: if display_name.is_empty() { name.clone() } else { display_name },
        name,
        per_ip_per_minute: p.per_ip_per_minute,
        per_connector_per_minute: p.per_connector_per_minute,
        org_per_minute: p.org_per_minute,
        org_per_hour: p.org_per_hour,
        org_per_day: p.org_per_day,
        retries_enabled: p.retries_enabled,
        event_retention_days: p.event_retention_days,
        revision: 0,
    })
}

/// Applies an update mask to a stored plan.
pub fn merge_plan_update(
    stored: &Plan,
    patch: &api::Plan,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Plan, ValidationError> {
    let mut merged = plan_to_api(stored);
    for path in mask_paths(mask, PLAN_MASK_PATHS)? {
        match path.as_str() {
            "display_name" => merged.display_name = patch.display_name.clone(),
            "per_ip_per_minute" => merged.per_ip_per_minute = patch.per_ip_per_minute,
            "per_connector_per_minute" => merged.per_connector_per_minute = patch.per_connector_per_minute,
            "org_per_minute" => merged.org_per_minute = patch.org_per_minute,
            "org_per_hour" => merged.org_per_hour = patch.org_per_hour,
            "org_per_day" => merged.org_per_day = patch.org_per_day,
            "retries_enabled" => merged.retries_enabled = patch.retries_enabled,
            "event_retention_days" => merged.event_retention_days = patch.event_retention_days,
            _ => unreachable!("mask_paths only returns known paths"),
        }
    }
    let mut plan = plan_from_api(&merged, "plan")?;
    plan.revision = stored.revision;
    Ok(plan)
}

/// Converts a plan to the API.
pub fn plan_to_api(p: &Plan) -> api::Plan {
    api::Plan {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        per_ip_per_minute: p.per_ip_per_minute,
        per_connector_per_minute: p.per_connector_per_minute,
        org_per_minute: p.org_per_minute,
        org_per_hour: p.org_per_hour,
        org_per_day: p.org_per_day,
        retries_enabled: p.retries_enabled,
        etag: model::etag_of(p.revision),
        event_retention_days: p.event_retention_days,
    }
}

/// Converts an API key from a create request.
pub fn api_key_spec_from_api(k: &api::ApiKey, prefix: &str) -> Result<ApiKeySpec, ValidationError> {
    let mut v = Violations::default();
    let display_name = optional_text(&k.display_name, &format!("{prefix}.display_name"), 200, &mut v);
    let role = match api::ApiKeyRole::try_from(k.role) {
        Ok(api::ApiKeyRole::Admin) => Role::Admin,
        Ok(api::ApiKeyRole::Viewer) => Role::Viewer,
        _ => {
            v.add(format!("{prefix}.role"), "is required: API_KEY_ROLE_ADMIN or API_KEY_ROLE_VIEWER");
            Role::Viewer
        }
    };
    let expire_time =
        k.expire_time.as_ref().and_then(|t| timestamp_from_api(t, &format!("{prefix}.expire_time"), &mut v));
    if expire_time.is_some_and(|t| t <= chrono::Utc::now()) {
        v.add(format!("{prefix}.expire_time"), "must be in the future");
    }
    v.finish(ApiKeySpec { display_name, role, expire_time })
}

/// Converts an API key to the API; `plaintext` only from the minting call.
pub fn api_key_to_api(k: &ApiKey, plaintext: Option<&str>) -> api::ApiKey {
    api::ApiKey {
        id: k.id.clone(),
        organization_id: k.organization_id.clone(),
        display_name: k.display_name.clone(),
        role: match k.role {
            Role::Admin => api::ApiKeyRole::Admin,
            Role::Viewer => api::ApiKeyRole::Viewer,
        } as i32,
        key: plaintext.unwrap_or_default().to_owned(),
        key_hint: k.key_hint.clone(),
        expire_time: k.expire_time.map(timestamp_to_api),
        create_time: Some(timestamp_to_api(k.create_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_violations_name_every_field() {
        let org = api::Organization {
            display_name: "  ".into(),
            plan: "Gold Plan".into(),
            admin_emails: vec!["ops@example.com".into(), "not-an-email".into()],
            ..Default::default()
        };
        let err = organization_spec_from_api(&org, "organization").unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["organization.display_name", "organization.plan", "organization.admin_emails[1]"]);
    }

    #[test]
    fn unknown_mask_paths_are_rejected() {
        let mask = prost_types::FieldMask { paths: vec!["display_name".into(), "id".into()] };
        let err = mask_paths(Some(&mask), ORG_MASK_PATHS).unwrap_err();
        assert_eq!(err.violations[0].field, "update_mask");
        assert!(err.violations[0].description.contains("`id`"));
        assert!(mask_paths(None, ORG_MASK_PATHS).is_err());
        let star = prost_types::FieldMask { paths: vec!["*".into()] };
        assert_eq!(mask_paths(Some(&star), ORG_MASK_PATHS).unwrap().len(), 3);
    }

    #[test]
    fn api_key_needs_a_role() {
        let err = api_key_spec_from_api(&api::ApiKey::default(), "api_key").unwrap_err();
        assert_eq!(err.violations[0].field, "api_key.role");
    }
}
