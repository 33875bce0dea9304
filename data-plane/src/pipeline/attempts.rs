//! A perform's attempts as the event's trace records them, written into
//! the trace's encoding while each request and answer is still there
//! (`hookplane_convert::EncodedAttempts`), with the execution's secret
//! values replaced as they are written.
//!
//! Replacing them here, not once the execution ends as for the rest of the
//! trace, replaces the same values: the redactor is complete before the
//! first attempt (the outbound credential, the last secret an execution
//! learns, is added before the perform starts), and the perform borrows it
//! immutably, so no value can be learned after an attempt was written.

use std::borrow::Cow;

use hookplane_convert::{AttemptOutcome, AttemptRequest, EncodedAttempts, StartedAttempt};
use hookplane_egress::client::OutboundRequest;
use hookplane_pipeline::diff::excerpt_text;
use hookplane_pipeline::redact::{self, Redactor};
use hyper::StatusCode;
use smallvec::SmallVec;

/// Headers of a request an attempt's trace lists without allocating: a
/// perform sends a few of its own, and the client adds the rest later.
const INLINE_HEADERS: usize = 8;

/// An execution's perform attempts: encoded for its trace, and each one's
/// answer status for the node's metrics.
#[derive(Debug, Default)]
pub struct Attempts {
    encoded: EncodedAttempts,
    /// `None` where no answer came.
    statuses: SmallVec<[Option<i32>; 4]>,
}

impl Attempts {
    /// Writes the request of an attempt about to send `request`: method,
    /// URL (credentials in its userinfo replaced), headers (sensitive ones
    /// replaced) and the start of the body.
    pub fn start(&mut self, request: &OutboundRequest, redactor: &Redactor) -> StartedAttempt {
        let url = redact::traced_url(request.destination.url());
        let body = excerpt_text(&request.body);
        let headers: SmallVec<[(&str, Cow<'_, str>); INLINE_HEADERS]> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), redactor.scrub(redact::shown_header(value))))
            .collect();
        self.encoded.start(&AttemptRequest {
            method: request.method.as_str(),
            url: &redactor.scrub(&url),
            headers: &headers,
            body: &redactor.scrub(&body),
        })
    }

    /// Ends the attempt `started` with the answer it got.
    pub fn answered(
        &mut self,
        started: StartedAttempt,
        status: StatusCode,
        body: &[u8],
        duration_ms: u64,
        redactor: &Redactor,
    ) {
        let status = Some(i32::from(status.as_u16()));
        let excerpt = excerpt_text(body);
        let outcome = AttemptOutcome { status, response_excerpt: &redactor.scrub(&excerpt), error: "", duration_ms };
        self.encoded.finish(started, &outcome);
        self.statuses.push(status);
    }

    /// Ends the attempt `started` with the error that ended the exchange.
    pub fn failed(&mut self, started: StartedAttempt, error: &str, duration_ms: u64, redactor: &Redactor) {
        let outcome = AttemptOutcome { status: None, response_excerpt: "", error: &redactor.scrub(error), duration_ms };
        self.encoded.finish(started, &outcome);
        self.statuses.push(None);
    }

    /// Each attempt's answer status, in order.
    pub fn statuses(&self) -> &[Option<i32>] {
        &self.statuses
    }

    /// The code of the last answer the target gave, whatever came after.
    pub fn last_status(&self) -> Option<i32> {
        self.statuses.iter().rev().find_map(|status| *status)
    }

    pub fn encoded(&self) -> &EncodedAttempts {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hookplane_convert::{InboundTrace, decode_trace, encode_trace_with_inbound};
    use hookplane_model::{EventTrace, HttpExchangeTrace};
    use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

    use super::*;

    fn decoded(attempts: &Attempts) -> Vec<HttpExchangeTrace> {
        let trace = encode_trace_with_inbound(&InboundTrace::default(), EventTrace::default(), attempts.encoded());
        decode_trace(trace.as_bytes()).unwrap().perform_attempts
    }

    #[test]
    fn attempts_are_traced_with_credentials_and_secret_values_replaced() {
        let mut redactor = Redactor::default();
        redactor.add("s3cr3t-value");
        let mut authorization = HeaderValue::from_static("Bearer t0k3n");
        authorization.set_sensitive(true);
        let request = OutboundRequest {
            method: hyper::Method::POST,
            destination: url::Url::parse("https://user:pw@erp.example.com/orders?key=s3cr3t-value").unwrap().into(),
            headers: [
                (AUTHORIZATION, authorization),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (hyper::header::HeaderName::from_static("x-note"), HeaderValue::from_static("has s3cr3t-value")),
            ]
            .into_iter()
            .collect(),
            body: r#"{"token":"s3cr3t-value"}"#.into(),
            timeout: Duration::from_secs(1),
        };
        let mut attempts = Attempts::default();
        let started = attempts.start(&request, &redactor);
        attempts.answered(started, StatusCode::BAD_GATEWAY, b"echo s3cr3t-value", 1_500, &redactor);
        let started = attempts.start(&request, &redactor);
        attempts.failed(started, "refused by s3cr3t-value.example", 7, &redactor);
        assert_eq!(attempts.statuses(), [Some(502), None]);
        assert_eq!(attempts.last_status(), Some(502), "the last answer, whatever came after");
        let [answered, failed] = &decoded(&attempts)[..] else { panic!("two attempts") };
        assert_eq!(answered.method, "POST");
        assert_eq!(answered.url, "https://redacted:redacted@erp.example.com/orders?key=[redacted]");
        let headers: Vec<(&str, &str)> =
            answered.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            headers,
            [("authorization", "[redacted]"), ("content-type", "application/json"), ("x-note", "has [redacted]")]
        );
        assert_eq!(answered.request_body, r#"{"token":"[redacted]"}"#);
        assert_eq!((answered.status, answered.response_excerpt.as_str()), (Some(502), "echo [redacted]"));
        assert_eq!(answered.duration_ms, 1_500);
        assert_eq!((failed.status, failed.error.as_str()), (None, "refused by [redacted].example"));
        assert_eq!(failed.duration_ms, 7);
    }

    #[test]
    fn a_call_that_performed_nothing_has_no_attempts() {
        let attempts = Attempts::default();
        assert!(decoded(&attempts).is_empty());
        assert_eq!(attempts.last_status(), None);
    }
}
