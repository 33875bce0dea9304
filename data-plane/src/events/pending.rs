//! An event's trace as a request handler queues it.
//!
//! The inbound request's part of a trace, its headers and its payload,
//! stays in the request's own buffers (the `HeaderMap` and body `Bytes`
//! hyper allocated) until the reporter encodes the event. Answering a
//! trigger then copies nothing per header for its event; the reporter
//! writes names and values straight into the encoding, replacing
//! credentials and the execution's secret values as it goes.
//!
//! The cost: hyper's header values and single-chunk bodies are slices of
//! the connection's read buffer, so a queued event keeps that allocation
//! alive until the reporter encodes it (milliseconds, normally). Requests
//! of one keep-alive connection share a buffer; an event from a one-shot
//! connection holds its own 8 KiB, which is what bounds a lagging
//! queue's memory per event (`NodeConfig::max_queued_events`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use hookplane::convert::{self, InboundTrace};
use hookplane::model::{EncodedTrace, EventTrace};
use hyper::HeaderMap;

use crate::pipeline::redact::{REDACTED, Redactor};
use crate::snapshot::DeployedConnector;

/// Headers that carry credentials whatever the connector's settings.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-secret-token", "cookie", "proxy-authorization"];

/// A trace whose inbound part is still the request's.
#[derive(Debug)]
pub struct PendingTrace {
    pub inbound: InboundRequest,
    /// What the pipeline recorded, secrets already redacted; its
    /// `request` and `payload` are left empty.
    pub pipeline: EventTrace,
}

/// The inbound request, as the trigger endpoint accepted it.
#[derive(Debug)]
pub struct InboundRequest {
    pub headers: HeaderMap,
    /// The body, checked to be UTF-8 JSON.
    pub body: Bytes,
    pub client_ip: IpAddr,
    pub auth_method: &'static str,
    /// Whose settings name further credential headers.
    pub connector: Arc<DeployedConnector>,
    /// The execution's secret values, replaced wherever they appear.
    pub redactor: Redactor,
}

impl PendingTrace {
    /// The trace's encoding, with credentials and secret values replaced.
    pub fn encode(self) -> EncodedTrace {
        let inbound = &self.inbound;
        let headers: Vec<(&str, Cow<'_, str>)> =
            inbound.headers.iter().map(|(name, value)| (name.as_str(), inbound.shown(name.as_str(), value))).collect();
        // The endpoint checked the body is UTF-8; `from_utf8` confirms it
        // at a fraction of what a lossy conversion costs.
        let payload = match std::str::from_utf8(&inbound.body) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&inbound.body),
        };
        let payload = inbound.redactor.scrub(&payload);
        let trace = InboundTrace {
            client_ip: Some(inbound.client_ip),
            headers: &headers,
            auth_method: inbound.auth_method,
            body_bytes: inbound.body.len() as u64,
            payload: &payload,
        };
        convert::encode_trace_with_inbound(&trace, self.pipeline)
    }
}

impl InboundRequest {
    /// A header's value as the trace shows it.
    fn shown<'a>(&'a self, name: &str, value: &'a hyper::header::HeaderValue) -> Cow<'a, str> {
        if self.is_credential(name) {
            return Cow::Borrowed(REDACTED);
        }
        match value.to_str() {
            Ok(text) => self.redactor.scrub(text),
            Err(_) => Cow::Borrowed("[binary]"),
        }
    }

    /// Whether header `name` (lower case, as hyper keeps names) carries a
    /// credential of this connector or of any caller.
    fn is_credential(&self, name: &str) -> bool {
        let auth = &self.connector.connector.spec.auth;
        CREDENTIAL_HEADERS.contains(&name)
            || auth.api_key.as_ref().is_some_and(|key| key.name.eq_ignore_ascii_case(name))
            || auth.custom_headers.iter().any(|header| header.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use hookplane::api::v1 as api;
    use hookplane::convert::{connector_from_api, decode_trace};
    use hookplane::model::Connector;
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
            create_time: hookplane::model::now(),
            update_time: hookplane::model::now(),
            revision: Default::default(),
        };
        Arc::new(DeployedConnector::prepare(connector, 1).unwrap())
    }

    fn pending(headers: &[(&'static str, HeaderValue)], body: &'static str, secrets: &[&str]) -> PendingTrace {
        let mut redactor = Redactor::default();
        secrets.iter().for_each(|s| redactor.add(s));
        PendingTrace {
            inbound: InboundRequest {
                headers: headers.iter().map(|(n, v)| (HeaderName::from_static(n), v.clone())).collect(),
                body: Bytes::from_static(body.as_bytes()),
                client_ip: "192.0.2.7".parse().unwrap(),
                auth_method: "api_key",
                connector: connector(),
                redactor,
            },
            pipeline: EventTrace { processed: r#"{"ok":true}"#.into(), ..Default::default() },
        }
    }

    #[test]
    fn the_inbound_part_is_traced_with_credentials_and_secrets_replaced() {
        let trace = pending(
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
        let decoded = decode_trace(trace.encode().as_bytes()).unwrap();
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
        let trace = pending(&[("x-note", HeaderValue::from_static("plain"))], r#"{"id":1}"#, &[]);
        let decoded = decode_trace(trace.encode().as_bytes()).unwrap();
        assert_eq!(decoded.request.headers.get("x-note").map(String::as_str), Some("plain"));
        assert_eq!(decoded.payload, r#"{"id":1}"#);
    }
}
