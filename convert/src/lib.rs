//! The one boundary between generated API types and the domain model.
//!
//! Conversions from the API validate shape and collect *every* problem as a
//! [`FieldViolation`] whose `field` is the request path (`connector.perform.url`),
//! so a caller learns everything wrong with a request at once. Conversions
//! to the API never fail. Nothing outside this crate touches generated
//! message fields.

mod connector;
mod connector_update;
mod encoded;
mod event;
mod exchange_trace;
mod expressions;
mod field_mask;
mod inbound_trace;
mod node_sync;
mod organization;
mod secret;
mod signature;
mod subscription;
mod test_run;
mod trace_fields;
mod validate;
mod wire;

pub use connector::{connector_from_api, connector_to_api};
pub use connector_update::{CONNECTOR_MASK_PATHS, merge_connector_update};
pub use encoded::EncodedTrace;
pub use event::{
    decode_trace, encode_trace, event_filter_from_api, event_status_to_api, event_to_api, node_event_from_api,
    node_event_to_api, node_events_from_api, node_to_api, rollout_to_api,
};
pub use exchange_trace::{AttemptOutcome, AttemptRequest, EncodedAttempts, StartedAttempt};
pub use inbound_trace::{InboundTrace, encode_trace_with_inbound};
pub use node_sync::{
    Rejection, config_delta_from_api, config_delta_to_api, limiting_from_api, limiting_to_api, merge_update_parts,
};
pub use organization::{
    api_key_spec_from_api, api_key_to_api, merge_organization_update, merge_plan_update, organization_spec_from_api,
    organization_to_api, plan_from_api, plan_to_api,
};
pub use secret::{merge_secret_update, secret_spec_from_api, secret_to_api};
pub use subscription::{
    MAX_CIRCUIT_TRANSITIONS, MAX_SUBSCRIPTION_OVERLAP_MS, SUBSCRIPTION_MASK_PATHS, circuit_transition_to_api,
    circuit_transitions_from_api, delivery_status_from_api, delivery_to_api, event_type_filter_from_api,
    merge_subscription_update, subscription_overlap_from_api, subscription_spec_from_api, subscription_to_api,
};
pub use test_run::{
    draft_connector_from_api, integration_example_to_api, live_run_outcome, rendered_request_to_api,
    request_change_to_api, test_run_to_api,
};
pub use validate::{check_request_id, duration_from_api, duration_to_api, timestamp_from_api, timestamp_to_api};
pub use wire::WireError;

/// One problem with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `connector.perform.url`.
    pub field: String,
    /// What is wrong and what would be right.
    pub description: String,
}

/// A request that does not fit the API's rules; lists every violation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", summary(.violations))]
pub struct ValidationError {
    pub violations: Vec<FieldViolation>,
}

impl ValidationError {
    /// A single violation.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        ValidationError { violations: vec![FieldViolation { field: field.into(), description: description.into() }] }
    }
}

fn summary(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

/// Collects violations while a conversion goes on, so that all are reported.
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<FieldViolation>,
}

impl Violations {
    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.list.push(FieldViolation { field: field.into(), description: description.into() });
    }

    /// Whether nothing was recorded so far.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise every violation.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.list.is_empty() { Ok(value) } else { Err(ValidationError { violations: self.list }) }
    }

    /// Takes over the violations of another conversion.
    pub fn extend(&mut self, other: ValidationError) {
        self.list.extend(other.violations);
    }
}
