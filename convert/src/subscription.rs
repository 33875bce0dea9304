//! Subscription and delivery conversions (SPEC §8).

use hookplane::api::v1 as api;
use hookplane_model::{
    self as model, Delivery, DeliveryAttempt, DeliveryStatus, PlatformEventType, SignatureScheme, Subscription,
    SubscriptionSpec,
};

use super::organization::mask_paths;
use super::validate::{duration_from_api, duration_to_api, http_url, optional_text, timestamp_to_api};
use super::{ValidationError, Violations};

/// Longest subscription URL.
const MAX_URL_CHARS: usize = 2048;
/// Longest rotation overlap: 30 days.
pub const MAX_SUBSCRIPTION_OVERLAP_MS: u64 = 30 * 24 * 3600 * 1000;

/// The paths `UpdateSubscription` accepts in its mask.
pub const SUBSCRIPTION_MASK_PATHS: [&str; 4] = ["url", "description", "event_types", "signature_scheme"];

/// Converts a subscription from a create request.
pub fn subscription_spec_from_api(s: &api::Subscription, prefix: &str) -> Result<SubscriptionSpec, ValidationError> {
    let mut v = Violations::default();
    let spec = SubscriptionSpec {
        url: subscription_url(&s.url, &format!("{prefix}.url"), &mut v),
        description: optional_text(&s.description, &format!("{prefix}.description"), 2000, &mut v),
        event_types: event_types(&s.event_types, &format!("{prefix}.event_types"), &mut v),
        scheme: scheme(s.signature_scheme, &format!("{prefix}.signature_scheme"), &mut v),
    };
    v.finish(spec)
}

/// Applies an update mask to a stored subscription's spec.
pub fn merge_subscription_update(
    stored: &SubscriptionSpec,
    patch: &api::Subscription,
    mask: Option<&prost_types::FieldMask>,
) -> Result<SubscriptionSpec, ValidationError> {
    let mut spec = stored.clone();
    let mut v = Violations::default();
    for path in mask_paths(mask, &SUBSCRIPTION_MASK_PATHS)? {
        match path.as_str() {
            "url" => spec.url = subscription_url(&patch.url, "subscription.url", &mut v),
            "description" => {
                spec.description = optional_text(&patch.description, "subscription.description", 2000, &mut v);
            }
            "event_types" => spec.event_types = event_types(&patch.event_types, "subscription.event_types", &mut v),
            "signature_scheme" => {
                spec.scheme = scheme(patch.signature_scheme, "subscription.signature_scheme", &mut v);
            }
            _ => unreachable!("mask_paths only returns known paths"),
        }
    }
    v.finish(spec)
}

/// A rotation's overlap in milliseconds; unset is none.
pub fn subscription_overlap_from_api(overlap: Option<&prost_types::Duration>) -> Result<u64, ValidationError> {
    let mut v = Violations::default();
    let ms = overlap.and_then(|d| duration_from_api(d, "overlap", MAX_SUBSCRIPTION_OVERLAP_MS, &mut v)).unwrap_or(0);
    v.finish(ms)
}

/// A delivery status filter; unspecified is none.
pub fn delivery_status_from_api(status: i32) -> Result<Option<DeliveryStatus>, ValidationError> {
    match api::DeliveryStatus::try_from(status) {
        Ok(api::DeliveryStatus::Unspecified) => Ok(None),
        Ok(api::DeliveryStatus::Pending) => Ok(Some(DeliveryStatus::Pending)),
        Ok(api::DeliveryStatus::Succeeded) => Ok(Some(DeliveryStatus::Succeeded)),
        Ok(api::DeliveryStatus::Failed) => Ok(Some(DeliveryStatus::Failed)),
        Err(_) => Err(ValidationError::one("status", format!("{status} is not a DeliveryStatus"))),
    }
}

/// An event-type filter; empty is none.
pub fn event_type_filter_from_api(name: &str) -> Result<Option<PlatformEventType>, ValidationError> {
    if name.is_empty() {
        return Ok(None);
    }
    PlatformEventType::from_name(name).map(Some).ok_or_else(|| ValidationError::one("event_type", unknown_type(name)))
}

fn subscription_url(text: &str, field: &str, v: &mut Violations) -> String {
    if text.trim().is_empty() {
        v.add(field, "is required");
        return String::new();
    }
    if text.len() > MAX_URL_CHARS {
        v.add(field, format!("must be at most {MAX_URL_CHARS} characters"));
        return String::new();
    }
    let Some(url) = http_url(text, field, v) else { return String::new() };
    if !url.username().is_empty() || url.password().is_some() {
        v.add(field, "must not carry credentials; deliveries are signed instead");
    }
    if url.fragment().is_some() {
        v.add(field, "must not have a fragment");
    }
    url.to_string()
}

fn event_types(names: &[String], field: &str, v: &mut Violations) -> Vec<PlatformEventType> {
    let mut types = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match PlatformEventType::from_name(name.trim()) {
            Some(PlatformEventType::WebhookTest) => v.add(
                format!("{field}[{i}]"),
                "`webhook.test` is sent with SendTestEvent, to one subscription; it is not subscribed to",
            ),
            Some(t) if !types.contains(&t) => types.push(t),
            Some(_) => {}
            None => v.add(format!("{field}[{i}]"), unknown_type(name)),
        }
    }
    types.sort();
    types
}

fn unknown_type(name: &str) -> String {
    let known: Vec<_> = PlatformEventType::ALL.iter().map(|t| t.name()).collect();
    format!("`{name}` is not an event type; expected one of {}", known.join(", "))
}

fn scheme(value: i32, field: &str, v: &mut Violations) -> SignatureScheme {
    match api::SignatureScheme::try_from(value) {
        Ok(api::SignatureScheme::Unspecified | api::SignatureScheme::Hookplane) => SignatureScheme::Hookplane,
        Ok(api::SignatureScheme::StandardWebhooks) => SignatureScheme::StandardWebhooks,
        Err(_) => {
            v.add(field, format!("{value} is not a SignatureScheme"));
            SignatureScheme::Hookplane
        }
    }
}

/// Transitions in one report, at most.
pub const MAX_CIRCUIT_TRANSITIONS: usize = 1000;

/// Converts a node's breaker transitions; each problem names its index.
pub fn circuit_transitions_from_api(
    report: &api::CircuitTransitions,
) -> Result<Vec<model::CircuitTransition>, ValidationError> {
    let mut v = Violations::default();
    if report.transitions.len() > MAX_CIRCUIT_TRANSITIONS {
        v.add("circuits.transitions", format!("at most {MAX_CIRCUIT_TRANSITIONS} per report"));
        return v.finish(Vec::new());
    }
    let mut out = Vec::with_capacity(report.transitions.len());
    for (i, t) in report.transitions.iter().enumerate() {
        let field = |name: &str| format!("circuits.transitions[{i}].{name}");
        for (value, name) in [(&t.organization_id, "organization_id"), (&t.connector_id, "connector_id")] {
            if value.is_empty() || value.len() > 64 {
                v.add(field(name), "is required, at most 64 characters");
            }
        }
        if t.target.is_empty() || t.target.len() > MAX_URL_CHARS {
            v.add(field("target"), format!("is required, at most {MAX_URL_CHARS} characters"));
        }
        let time = match &t.time {
            Some(time) => super::validate::timestamp_from_api(time, &field("time"), &mut v),
            None => {
                v.add(field("time"), "is required");
                None
            }
        };
        out.push(model::CircuitTransition {
            organization_id: t.organization_id.clone(),
            connector_id: t.connector_id.clone(),
            target: t.target.clone(),
            opened: t.opened,
            time: time.unwrap_or_default(),
        });
    }
    v.finish(out)
}

/// Converts a breaker transition for the control plane.
pub fn circuit_transition_to_api(t: &model::CircuitTransition) -> api::CircuitTransition {
    api::CircuitTransition {
        organization_id: t.organization_id.clone(),
        connector_id: t.connector_id.clone(),
        target: t.target.clone(),
        opened: t.opened,
        time: Some(timestamp_to_api(t.time)),
    }
}

/// Converts a subscription to the API, never with a secret.
pub fn subscription_to_api(s: &Subscription, now: model::Timestamp) -> api::Subscription {
    api::Subscription {
        id: s.id.clone(),
        url: s.spec.url.clone(),
        description: s.spec.description.clone(),
        event_types: s.spec.event_types.iter().map(|t| t.name().to_owned()).collect(),
        signature_scheme: match s.spec.scheme {
            SignatureScheme::Hookplane => api::SignatureScheme::Hookplane,
            SignatureScheme::StandardWebhooks => api::SignatureScheme::StandardWebhooks,
        } as i32,
        enabled: s.enabled,
        disabled_reason: s.disabled_reason.clone(),
        previous_secret_expire_time: s.previous_at(now).map(|p| timestamp_to_api(p.expire_time)),
        create_time: Some(timestamp_to_api(s.create_time)),
        update_time: Some(timestamp_to_api(s.update_time)),
        etag: model::etag_of(s.revision),
    }
}

/// Converts a delivery, with its attempts, to the API.
pub fn delivery_to_api(d: &Delivery) -> api::Delivery {
    api::Delivery {
        id: d.id.clone(),
        subscription_id: d.subscription_id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_type: d.event_type.name().to_owned(),
        status: match d.status {
            DeliveryStatus::Pending => api::DeliveryStatus::Pending,
            DeliveryStatus::Succeeded => api::DeliveryStatus::Succeeded,
            DeliveryStatus::Failed => api::DeliveryStatus::Failed,
        } as i32,
        payload: d.payload.clone(),
        attempts: d.attempts.iter().map(attempt_to_api).collect(),
        next_attempt_time: (d.status == DeliveryStatus::Pending).then(|| timestamp_to_api(d.next_attempt_time)),
        create_time: Some(timestamp_to_api(d.create_time)),
    }
}

fn attempt_to_api(a: &DeliveryAttempt) -> api::DeliveryAttempt {
    api::DeliveryAttempt {
        time: Some(timestamp_to_api(a.time)),
        status_code: a.status_code.map_or(0, i32::from),
        duration: Some(duration_to_api(a.duration_ms)),
        response_excerpt: a.response_excerpt.clone(),
        error: a.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: ValidationError) -> Vec<String> {
        err.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let bad = api::Subscription {
            url: "ftp://user:pw@example.com/x".into(),
            event_types: vec!["connector.updated".into(), "connector.exploded".into()],
            signature_scheme: 9,
            ..Default::default()
        };
        let err = subscription_spec_from_api(&bad, "subscription").unwrap_err();
        assert_eq!(fields(err), ["subscription.url", "subscription.event_types[1]", "subscription.signature_scheme"]);
        let no_url = subscription_spec_from_api(&api::Subscription::default(), "subscription").unwrap_err();
        assert_eq!(fields(no_url), ["subscription.url"]);
        let credentials = api::Subscription { url: "https://u:p@hooks.example.com/".into(), ..Default::default() };
        assert_eq!(fields(subscription_spec_from_api(&credentials, "s").unwrap_err()), ["s.url"]);
    }

    #[test]
    fn types_are_deduplicated_and_an_empty_list_means_all() {
        let s = api::Subscription {
            url: "https://hooks.example.com/in".into(),
            event_types: vec!["event.failed".into(), "connector.created".into(), "event.failed".into()],
            ..Default::default()
        };
        let spec = subscription_spec_from_api(&s, "subscription").unwrap();
        assert_eq!(spec.event_types, [PlatformEventType::ConnectorCreated, PlatformEventType::EventFailed]);
        assert!(spec.wants(PlatformEventType::EventFailed) && !spec.wants(PlatformEventType::CircuitOpened));
        let all = SubscriptionSpec { event_types: Vec::new(), ..spec };
        assert!(PlatformEventType::ALL.iter().all(|t| all.wants(*t)));
    }

    #[test]
    fn updates_touch_only_the_masked_fields() {
        let stored = subscription_spec_from_api(
            &api::Subscription { url: "https://a.example.com/".into(), description: "a".into(), ..Default::default() },
            "subscription",
        )
        .unwrap();
        let patch =
            api::Subscription { url: "https://b.example.com/".into(), description: "b".into(), ..Default::default() };
        let mask = prost_types::FieldMask { paths: vec!["url".into()] };
        let merged = merge_subscription_update(&stored, &patch, Some(&mask)).unwrap();
        assert_eq!((merged.url.as_str(), merged.description.as_str()), ("https://b.example.com/", "a"));
        let unknown = prost_types::FieldMask { paths: vec!["secret".into()] };
        assert_eq!(fields(merge_subscription_update(&stored, &patch, Some(&unknown)).unwrap_err()), ["update_mask"]);
    }

    #[test]
    fn circuit_reports_are_checked_field_by_field() {
        let good = api::CircuitTransition {
            organization_id: "org_1".into(),
            connector_id: "con_1".into(),
            target: "https://api.example.com/hook".into(),
            opened: true,
            time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        };
        let bad = api::CircuitTransition { organization_id: String::new(), time: None, ..good.clone() };
        let report = api::CircuitTransitions { transitions: vec![good.clone(), bad] };
        assert_eq!(
            fields(circuit_transitions_from_api(&report).unwrap_err()),
            ["circuits.transitions[1].organization_id", "circuits.transitions[1].time"]
        );
        let report = api::CircuitTransitions { transitions: vec![good.clone()] };
        let parsed = circuit_transitions_from_api(&report).unwrap();
        assert_eq!(circuit_transition_to_api(&parsed[0]), good, "round trip");
        let flood = api::CircuitTransitions { transitions: vec![good; MAX_CIRCUIT_TRANSITIONS + 1] };
        assert_eq!(fields(circuit_transitions_from_api(&flood).unwrap_err()), ["circuits.transitions"]);
    }

    #[test]
    fn overlaps_are_bounded() {
        let month = prost_types::Duration { seconds: 31 * 24 * 3600, nanos: 0 };
        assert_eq!(fields(subscription_overlap_from_api(Some(&month)).unwrap_err()), ["overlap"]);
        assert_eq!(subscription_overlap_from_api(None).unwrap(), 0);
    }
}
