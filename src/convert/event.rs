//! Event and node conversions.

use crate::api::v1 as api;
use crate::model::{Event, EventFilter, EventStatus, EventTrace, HttpExchangeTrace, Node};

use super::validate::{duration_to_api, timestamp_from_api, timestamp_to_api};
use super::{ValidationError, Violations};
use crate::model::InboundRequestTrace;

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

/// Converts an event reported by a node; the node owns ids and traces, so
/// only what would corrupt the store is refused. Takes the message by value:
/// at thousands of events a second, moving the trace's strings instead of
/// copying them is most of the conversion's cost.
pub fn node_event_from_api(e: api::NodeEvent, prefix: &str) -> Result<Event, ValidationError> {
    let mut v = Violations::default();
    let Some(event) = e.event else {
        return Err(ValidationError::one(format!("{prefix}.event"), "is required"));
    };
    if e.organization_id.is_empty() {
        v.add(format!("{prefix}.organization_id"), "is required");
    }
    if event.id <= 0 {
        v.add(format!("{prefix}.event.id"), "must be positive");
    }
    if event.connector_id.is_empty() {
        v.add(format!("{prefix}.event.connector_id"), "is required");
    }
    let status = match api::EventStatus::try_from(event.status) {
        Ok(api::EventStatus::Completed) => EventStatus::Completed,
        Ok(api::EventStatus::Skipped) => EventStatus::Skipped,
        Ok(api::EventStatus::Failed) => EventStatus::Failed,
        Ok(api::EventStatus::Accepted) => EventStatus::Accepted,
        Ok(api::EventStatus::Unspecified) | Err(_) => {
            v.add(format!("{prefix}.event.status"), "must be a known status");
            EventStatus::Failed
        }
    };
    let create_time = match &event.create_time {
        Some(t) => timestamp_from_api(t, &format!("{prefix}.event.create_time"), &mut v),
        None => {
            v.add(format!("{prefix}.event.create_time"), "is required");
            None
        }
    };
    v.finish(Event {
        id: event.id,
        organization_id: e.organization_id,
        connector_id: event.connector_id,
        status,
        response_code: event.response_code,
        error: event.error,
        node_id: event.node_id,
        create_time: create_time.unwrap_or_default(),
        duration_ms: event.duration.as_ref().map(duration_ms).unwrap_or(0),
        trace: event.trace.map(trace_from_api).unwrap_or_default(),
    })
}

/// A trace in its stored form: the `EventTrace` message's protobuf bytes,
/// which are smaller than its JSON (no escaping, numbers as varints) and
/// cheaper to write.
pub fn encode_trace(t: &EventTrace) -> Vec<u8> {
    prost::Message::encode_to_vec(&trace_to_api(t))
}

/// Reads a trace [`encode_trace`] stored.
pub fn decode_trace(bytes: &[u8]) -> Result<EventTrace, prost::DecodeError> {
    <api::EventTrace as prost::Message>::decode(bytes).map(trace_from_api)
}

fn duration_ms(d: &prost_types::Duration) -> u64 {
    (d.seconds.max(0) as u64).saturating_mul(1000).saturating_add((d.nanos.max(0) / 1_000_000) as u64)
}

fn trace_from_api(t: api::EventTrace) -> EventTrace {
    EventTrace {
        request: t
            .request
            .map(|r| InboundRequestTrace {
                client_ip: r.client_ip,
                headers: r.headers.into_iter().collect(),
                auth_method: r.auth_method,
                body_bytes: r.body_bytes,
            })
            .unwrap_or_default(),
        payload: t.payload,
        condition_result: t.condition_result,
        lookup: t.lookup.map(exchange_from_api),
        processed: t.processed,
        perform_attempts: t.perform_attempts.into_iter().map(exchange_from_api).collect(),
    }
}

fn exchange_from_api(x: api::HttpExchangeTrace) -> HttpExchangeTrace {
    HttpExchangeTrace {
        method: x.method,
        url: x.url,
        request_headers: x.request_headers.into_iter().collect(),
        request_body: x.request_body,
        status: x.status,
        response_excerpt: x.response_excerpt,
        error: x.error,
        duration_ms: x.duration.as_ref().map(duration_ms).unwrap_or(0),
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
            headers: t.request.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
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
        request_headers: x.request_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
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
