//! A trigger's trace, encoded while the request's buffers are still there.
//!
//! The inbound request's part of a trace, its headers and its payload, is
//! written straight from the `HeaderMap` and body hyper parsed into the
//! trace's encoding, replacing credentials and the execution's secret
//! values as it goes: nothing is copied per header, and one buffer holds
//! the event's whole trace.
//!
//! This happens before the handler returns, not later on the reporter,
//! because hyper's header values and single-chunk bodies are slices of
//! the connection's read buffer: an event that kept them would keep that
//! buffer alive, and hyper would allocate a fresh 8 KiB one for the
//! connection's next request (measured: ~2 % of the node's CPU, and a
//! lagging queue worth 8 KiB per event instead of its trace's size).

use hookplane_convert::{EncodedAttempts, EncodedTrace};
use std::borrow::Cow;
use std::net::IpAddr;

use hookplane_convert::{self as convert, InboundTrace};
use hookplane_model::EventTrace;
use hyper::HeaderMap;
use smallvec::SmallVec;

use crate::pipeline::redact::{REDACTED, Redactor};
use crate::snapshot::DeployedConnector;

/// The largest trace an event takes to the control plane. A payload of up
/// to the highest body limit (16 MiB) fits, but `$processed` is bounded by
/// the expression budget in values, not in text (a control character is
/// six bytes of JSON), and redaction can lengthen a payload. A larger trace
/// would make a `ReportEvents` message (64 MiB at most, with a batch's
/// other events) that the control plane refuses, and the node would send
/// it again on every reconnect, holding back every later event.
pub const MAX_TRACE_BYTES: usize = 24 << 20;

/// Headers a call's trace lists without allocating: most calls have fewer.
const INLINE_HEADERS: usize = 16;

/// Headers that carry credentials whatever the connector's settings.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-secret-token", "cookie", "proxy-authorization"];

/// `trace` without its payload and `$processed`, which are what can make
/// it larger than [`MAX_TRACE_BYTES`] (the request's `body_bytes` still
/// tells the payload's size); the request alone if that is not enough.
pub fn bounded(trace: &EncodedTrace) -> EncodedTrace {
    let size = trace.as_bytes().len();
    tracing::warn!(bytes = size, "an event's trace is too large; it goes without its payload and $processed");
    // The node's own encoding: it decodes.
    let mut decoded = convert::decode_trace(trace.as_bytes()).unwrap_or_default();
    decoded.payload = String::new();
    decoded.processed = String::new();
    let smaller = convert::encode_trace(decoded.clone());
    if smaller.as_bytes().len() <= MAX_TRACE_BYTES {
        return smaller;
    }
    convert::encode_trace(EventTrace { request: decoded.request, ..Default::default() })
}

/// The inbound request, as the trigger endpoint accepted it.
#[derive(Clone, Copy, Debug)]
pub struct InboundRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The body, checked to be JSON (so UTF-8) by the endpoint.
    pub body: &'a str,
    pub client_ip: IpAddr,
    pub auth_method: &'a str,
    /// Whose settings name further credential headers.
    pub connector: &'a DeployedConnector,
    /// The execution's secret values, replaced wherever they appear.
    pub redactor: &'a Redactor,
}

impl InboundRequest<'_> {
    /// The whole trace's encoding: this request's part, with credentials
    /// and secret values replaced, then what the pipeline recorded
    /// (`pipeline`, secrets already redacted, its `request` and `payload`
    /// left empty) and its perform `attempts`.
    pub fn encode_trace(&self, pipeline: EventTrace, attempts: &EncodedAttempts) -> EncodedTrace {
        // On the stack for a call of up to `INLINE_HEADERS` headers.
        let headers: SmallVec<[(&str, Cow<'_, str>); INLINE_HEADERS]> =
            self.headers.iter().map(|(name, value)| (name.as_str(), self.shown(name.as_str(), value))).collect();
        let payload = self.redactor.scrub(self.body);
        let trace = InboundTrace {
            client_ip: Some(self.client_ip),
            headers: &headers,
            auth_method: self.auth_method,
            body_bytes: self.body.len() as u64,
            payload: &payload,
        };
        convert::encode_trace_with_inbound(&trace, pipeline, attempts)
    }

    /// A header's value as the trace shows it.
    fn shown<'v>(&self, name: &str, value: &'v hyper::header::HeaderValue) -> Cow<'v, str> {
        if self.is_credential(name) {
            return Cow::Borrowed(REDACTED);
        }
        match value.to_str() {
            Ok(text) => self.redactor.scrub(text),
            Err(_) => Cow::Borrowed("[binary]"),
        }
    }

    fn is_credential(&self, name: &str) -> bool {
        is_credential(self.connector, name)
    }
}

/// Whether header `name` (lower case, as hyper keeps names) carries a
/// credential of `connector` or of any caller.
pub(crate) fn is_credential(connector: &DeployedConnector, name: &str) -> bool {
    let auth = &connector.connector.spec.auth;
    // A signature with its body is a call anyone reading the event could
    // send again: GitHub's and Shopify's never go stale.
    let signature = connector.connector.spec.signature.as_ref();
    CREDENTIAL_HEADERS.contains(&name)
        || signature.is_some_and(|s| s.header.eq_ignore_ascii_case(name))
        || auth.api_key.as_ref().is_some_and(|key| key.name.eq_ignore_ascii_case(name))
        || auth.custom_headers.iter().any(|header| header.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;
    use std::sync::Arc;

    use hookplane_convert::{connector_from_api, decode_trace};
    use hookplane_model::Connector;
    use hyper::header::{HeaderName, HeaderValue};

    use super::*;

    fn connector() -> Arc<DeployedConnector> {
        let spec = connector_from_api(
            &api::Connector {
                display_name: "partner".into(),
                auth: Some(api::InboundAuth {
                    api_key: Some(api::ApiKeyAuth {
                        location: api::ApiKeyLocation::Header as i32,
                        name: "X-Api-Key".into(),
                    }),
                    custom_headers: vec![api::CustomHeader { name: "X-Partner-Key".into(), value: "pk-1".into() }],
                    ..Default::default()
                }),
                perform: Some(api::Perform { url: "https://erp.example.com/orders".into(), ..Default::default() }),
                ..Default::default()
            },
            "connector",
        )
        .unwrap();
        let connector = Connector {
            id: "con_1".into(),
            organization_id: "org_1".into(),
            spec,
            tokens: Vec::new(),
            create_time: hookplane_model::now(),
            update_time: hookplane_model::now(),
            revision: Default::default(),
        };
        Arc::new(DeployedConnector::prepare(connector, 1).unwrap())
    }

    /// A trace over the bound loses its payload and `$processed`, and
    /// keeps the rest.
    #[test]
    fn a_trace_over_the_bound_goes_without_its_payload_and_processed() {
        let large = EventTrace {
            request: hookplane_model::InboundRequestTrace { body_bytes: 3, ..Default::default() },
            payload: "{}".into(),
            condition_result: Some(true),
            processed: "\\u0001".repeat(MAX_TRACE_BYTES / 6 + 1),
            ..Default::default()
        };
        let encoded = convert::encode_trace(large.clone());
        assert!(encoded.as_bytes().len() > MAX_TRACE_BYTES);
        let bounded = convert::decode_trace(bounded(&encoded).as_bytes()).unwrap();
        assert_eq!(bounded, EventTrace { payload: String::new(), processed: String::new(), ..large });

        // What the sink queues for the reporter, large and small.
        let (sink, mut queue) = crate::events::EventSink::new();
        let small = convert::encode_trace(EventTrace { payload: "{}".into(), ..Default::default() });
        for trace in [encoded, small.clone()] {
            drop(sink.record(hookplane_model::Event {
                id: 1,
                organization_id: "org_1".into(),
                connector_id: "con_1".into(),
                status: hookplane_model::EventStatus::Completed,
                response_code: Some(200),
                error: String::new(),
                node_id: "node-a".into(),
                create_time: hookplane_model::now(),
                duration_ms: 1,
                trace,
            }));
        }
        let queued = queue.receiver.try_recv().unwrap().event.trace;
        assert!(queued.as_bytes().len() <= MAX_TRACE_BYTES);
        assert_eq!(queue.receiver.try_recv().unwrap().event.trace, small, "within the bound: as it was");
    }

    /// The encoded trace of a request with `headers` and `body` whose
    /// execution read `secrets`.
    fn traced(headers: &[(&'static str, HeaderValue)], body: &str, secrets: &[&str]) -> EventTrace {
        let mut redactor = Redactor::default();
        secrets.iter().for_each(|s| redactor.add(s));
        let headers: HeaderMap = headers.iter().map(|(n, v)| (HeaderName::from_static(n), v.clone())).collect();
        let connector = connector();
        let inbound = InboundRequest {
            headers: &headers,
            body,
            client_ip: "192.0.2.7".parse().unwrap(),
            auth_method: "api_key",
            connector: &connector,
            redactor: &redactor,
        };
        let pipeline = EventTrace { processed: r#"{"ok":true}"#.into(), ..Default::default() };
        decode_trace(inbound.encode_trace(pipeline, &EncodedAttempts::default()).as_bytes()).unwrap()
    }

    #[test]
    fn the_inbound_part_is_traced_with_credentials_and_secrets_replaced() {
        let decoded = traced(
            &[
                ("authorization", HeaderValue::from_static("Bearer t0k3n")),
                ("cookie", HeaderValue::from_static("session=abc")),
                ("x-api-key", HeaderValue::from_static("key-123")),
                ("x-partner-key", HeaderValue::from_static("pk-1")),
                ("x-note", HeaderValue::from_static("carries s3cr3t-value inside")),
                ("x-raw", HeaderValue::from_bytes(b"\xff\xfe").unwrap()),
                ("content-type", HeaderValue::from_static("application/json")),
            ],
            r#"{"token":"s3cr3t-value","id":1}"#,
            &["s3cr3t-value"],
        );
        let headers: Vec<(&str, &str)> =
            decoded.request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            headers,
            [
                ("authorization", "[redacted]"),
                ("content-type", "application/json"),
                ("cookie", "[redacted]"),
                ("x-api-key", "[redacted]"),
                ("x-note", "carries [redacted] inside"),
                ("x-partner-key", "[redacted]"),
                ("x-raw", "[binary]"),
            ]
        );
        assert_eq!(decoded.payload, r#"{"token":"[redacted]","id":1}"#);
        assert_eq!(decoded.request.client_ip, "192.0.2.7");
        assert_eq!(decoded.request.auth_method, "api_key");
        assert_eq!(decoded.request.body_bytes, 31, "the size as received, before redaction");
        assert_eq!(decoded.processed, r#"{"ok":true}"#, "the pipeline's part is kept");
    }

    #[test]
    fn without_secrets_values_are_kept_as_received() {
        let decoded = traced(&[("x-note", HeaderValue::from_static("plain"))], r#"{"id":1}"#, &[]);
        assert_eq!(decoded.request.headers.get("x-note").map(String::as_str), Some("plain"));
        assert_eq!(decoded.payload, r#"{"id":1}"#);
    }
}
