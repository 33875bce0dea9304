//! Dry runs (SPEC §10): drafts in, runs and request differences out.

use hookplane::api::v1 as api;
use hookplane_model::{ConnectorSpec, IntegrationExample, RenderedRequest, RequestChange, TestRun, TestStep};

use crate::{ValidationError, connector_from_api};

/// Stands in for a draft's secret fields left empty: a dry run never
/// opens a connector's own secrets, so a draft need not carry them.
/// Valid for every preset (a Standard Webhooks secret is `whsec_` and
/// base64 of 24 bytes or more).
const PLACEHOLDER_SECRET: &str = "whsec_cGxhY2Vob2xkZXItc2VjcmV0LW5ldmVyLW9wZW5lZA==";

/// A draft connector for a dry run, checked as a create checks one, its
/// empty secret fields filled with a placeholder.
pub fn draft_connector_from_api(draft: &api::Connector, prefix: &str) -> Result<ConnectorSpec, ValidationError> {
    let mut draft = draft.clone();
    if let Some(signature) = &mut draft.signature
        && signature.secret.is_empty()
    {
        signature.secret = PLACEHOLDER_SECRET.to_owned();
    }
    if let Some(api::outbound_auth::Method::Oauth2(oauth)) =
        draft.perform.as_mut().and_then(|p| p.auth.as_mut()).and_then(|a| a.method.as_mut())
        && oauth.client_secret.is_empty()
    {
        oauth.client_secret = PLACEHOLDER_SECRET.to_owned();
    }
    connector_from_api(&draft, prefix)
}

/// A dry run as the API shows it.
pub fn test_run_to_api(run: &TestRun) -> api::TestRun {
    api::TestRun {
        condition_result: run.condition_result,
        lookup_request: run.lookup_request.as_ref().map(rendered_request_to_api),
        lookup_result: run.lookup_result.clone().unwrap_or_default(),
        processed: run.processed.clone().unwrap_or_default(),
        perform_request: run.perform_request.as_ref().map(rendered_request_to_api),
        failure: run.failure.as_ref().map(|failure| api::TestFailure {
            step: match failure.step {
                TestStep::Condition => api::TestStep::Condition,
                TestStep::Lookup => api::TestStep::Lookup,
                TestStep::Mappings => api::TestStep::Mappings,
                TestStep::Perform => api::TestStep::Perform,
            } as i32,
            field: failure.field.clone().unwrap_or_default(),
            message: failure.message.clone(),
        }),
        live: None,
    }
}

/// A node's answer to a live run, as `TestConnector` and `ReplayEvent`
/// show it; `Err` with the node's reason when it refused the run.
pub fn live_run_outcome(node_id: String, result: api::LiveRunResult) -> Result<api::LiveRunOutcome, String> {
    if !result.refusal.is_empty() {
        return Err(result.refusal);
    }
    let status = match api::EventStatus::try_from(result.status) {
        Ok(api::EventStatus::Completed) => api::LiveRunStatus::Completed,
        Ok(api::EventStatus::Skipped) => api::LiveRunStatus::Skipped,
        _ => api::LiveRunStatus::Failed,
    };
    Ok(api::LiveRunOutcome {
        event_id: result.event_id,
        node_id,
        status: status as i32,
        response_code: result.response_code,
        error: result.error,
    })
}

pub fn rendered_request_to_api(request: &RenderedRequest) -> api::RenderedRequest {
    api::RenderedRequest {
        method: request.method.clone(),
        url: request.url.clone(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| api::RenderedHeader { name: name.clone(), value: value.clone() })
            .collect(),
        body: request.body.clone(),
    }
}

pub fn request_change_to_api(change: &RequestChange) -> api::RequestChange {
    api::RequestChange { field: change.field.clone(), before: change.before.clone(), after: change.after.clone() }
}

pub fn integration_example_to_api(example: &IntegrationExample) -> api::IntegrationExample {
    api::IntegrationExample {
        auth_method: example.auth_method.clone(),
        language: example.language.clone(),
        code: example.code.clone(),
        environment: example.environment.clone(),
    }
}
