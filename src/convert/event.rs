//! Event and node conversions.

use crate::api::v1 as api;
use crate::model::{Event, EventFilter, EventStatus, EventTrace, HttpExchangeTrace, Node};

use super::validate::{duration_to_api, timestamp_from_api, timestamp_to_api};
use super::{ValidationError, Violations};

/// Converts a list/stream filter.
pub fn event_filter_from_api(f: Option<&api::EventFilter>, prefix: &str) -> Result<EventFilter, ValidationError> {
    let mut v = Violations::default();
    let Some(f) = f else {
        return Ok(EventFilter::default());
    };
    let status = match api::EventStatus::try_from(f.status) {
        Ok(api::EventStatus::Unspecified) => None,
        Ok(api::EventStatus::Completed) => Some(EventStatus::Completed),
        Ok(api::EventStatus::Skipped) => Some(EventStatus::Skipped),
        Ok(api::EventStatus::Failed) => Some(EventStatus::Failed),
        Ok(api::EventStatus::Accepted) => Some(EventStatus::Accepted),
        Err(_) => {
            v.add(format!("{prefix}.status"), "unknown status");
            None
        }
    };
    let start_time = f.start_time.as_ref().and_then(|t| timestamp_from_api(t, &format!("{prefix}.start_time"), &mut v));
    let end_time = f.end_time.as_ref().and_then(|t| timestamp_from_api(t, &format!("{prefix}.end_time"), &mut v));
    if let (Some(start), Some(end)) = (start_time, end_time)
        && start >= end
    {
        v.add(format!("{prefix}.end_time"), "must be after start_time");
    }
    let connector_id = f.connector_id.trim();
    v.finish(EventFilter {
        connector_id: (!connector_id.is_empty()).then(|| connector_id.to_owned()),
        status,
        start_time,
        end_time,
    })
}

/// Converts an event to the API.
pub fn event_to_api(e: &Event) -> api::Event {
    api::Event {
        id: e.id,
        connector_id: e.connector_id.clone(),
        status: status_to_api(e.status) as i32,
        response_code: e.response_code,
        error: e.error.clone(),
        node_id: e.node_id.clone(),
        create_time: Some(timestamp_to_api(e.create_time)),
        duration: Some(duration_to_api(e.duration_ms)),
        trace: Some(trace_to_api(&e.trace)),
    }
}

fn status_to_api(status: EventStatus) -> api::EventStatus {
    match status {
        EventStatus::Completed => api::EventStatus::Completed,
        EventStatus::Skipped => api::EventStatus::Skipped,
        EventStatus::Failed => api::EventStatus::Failed,
        EventStatus::Accepted => api::EventStatus::Accepted,
    }
}

fn trace_to_api(t: &EventTrace) -> api::EventTrace {
    api::EventTrace {
        request: Some(api::InboundRequestTrace {
            client_ip: t.request.client_ip.clone(),
            headers: t.request.headers.clone().into_iter().collect(),
            auth_method: t.request.auth_method.clone(),
            body_bytes: t.request.body_bytes,
        }),
        payload: t.payload.clone(),
        condition_result: t.condition_result,
        lookup: t.lookup.as_ref().map(exchange_to_api),
        processed: t.processed.clone(),
        perform_attempts: t.perform_attempts.iter().map(exchange_to_api).collect(),
    }
}

fn exchange_to_api(x: &HttpExchangeTrace) -> api::HttpExchangeTrace {
    api::HttpExchangeTrace {
        method: x.method.clone(),
        url: x.url.clone(),
        request_headers: x.request_headers.clone().into_iter().collect(),
        request_body: x.request_body.clone(),
        status: x.status,
        response_excerpt: x.response_excerpt.clone(),
        error: x.error.clone(),
        duration: Some(duration_to_api(x.duration_ms)),
    }
}

/// Converts a node to the API, with its lag behind `current_version`.
pub fn node_to_api(n: &Node, current_version: i64) -> api::Node {
    api::Node {
        id: n.id.clone(),
        address: n.address.clone(),
        build_version: n.build_version.clone(),
        applied_config_version: n.applied_config_version,
        lag: (current_version - n.applied_config_version).max(0),
        connected: n.connected,
        last_seen_time: Some(timestamp_to_api(n.last_seen_time)),
        sync_errors: n.sync_errors,
        last_error: n.last_error.clone(),
    }
}
