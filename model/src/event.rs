//! Events: the record of one trigger execution (SPEC §7).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Outcome of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Completed,
    Skipped,
    Failed,
    Accepted,
}

impl EventStatus {
    /// Stable text for storage and responses.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Completed => "completed",
            EventStatus::Skipped => "skipped",
            EventStatus::Failed => "failed",
            EventStatus::Accepted => "accepted",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<EventStatus> {
        match text {
            "completed" => Some(EventStatus::Completed),
            "skipped" => Some(EventStatus::Skipped),
            "failed" => Some(EventStatus::Failed),
            "accepted" => Some(EventStatus::Accepted),
            _ => None,
        }
    }
}

/// One execution of a connector. The trace is decoded ([`EventTrace`]),
/// or, between a node's report and the store, kept as the bytes it came
/// in (`hookplane_convert::EncodedTrace`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event<Trace = EventTrace> {
    pub id: i64,
    pub organization_id: String,
    pub connector_id: String,
    pub status: EventStatus,
    pub response_code: Option<i32>,
    pub error: String,
    pub node_id: String,
    pub create_time: Timestamp,
    pub duration_ms: u64,
    pub trace: Trace,
}

impl<Trace> Event<Trace> {
    /// The same event with its trace converted.
    pub fn map_trace<Other>(self, convert: impl FnOnce(Trace) -> Other) -> Event<Other> {
        Event {
            id: self.id,
            organization_id: self.organization_id,
            connector_id: self.connector_id,
            status: self.status,
            response_code: self.response_code,
            error: self.error,
            node_id: self.node_id,
            create_time: self.create_time,
            duration_ms: self.duration_ms,
            trace: convert(self.trace),
        }
    }
}

/// The step-by-step record of an execution; secrets already redacted.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventTrace {
    pub request: InboundRequestTrace,
    /// The payload as received (JSON text).
    pub payload: String,
    pub condition_result: Option<bool>,
    pub lookup: Option<HttpExchangeTrace>,
    /// `$processed` after the mappings (JSON text).
    pub processed: String,
    pub perform_attempts: Vec<HttpExchangeTrace>,
}

/// Metadata of the inbound call.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InboundRequestTrace {
    pub client_ip: String,
    pub headers: BTreeMap<String, String>,
    pub auth_method: String,
    pub body_bytes: u64,
}

/// One outbound HTTP exchange.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpExchangeTrace {
    pub method: String,
    pub url: String,
    pub request_headers: BTreeMap<String, String>,
    pub request_body: String,
    pub status: Option<i32>,
    pub response_excerpt: String,
    pub error: String,
    pub duration_ms: u64,
}

/// Which events a query wants.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EventFilter {
    pub connector_id: Option<String>,
    pub status: Option<EventStatus>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
}

impl EventFilter {
    /// Whether an event passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.connector_id.as_deref().is_none_or(|id| id == event.connector_id)
            && self.status.is_none_or(|s| s == event.status)
            && self.start_time.is_none_or(|t| event.create_time >= t)
            && self.end_time.is_none_or(|t| event.create_time < t)
    }
}
