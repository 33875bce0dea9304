//! A node's perform attempts, encoded as they happen.
//!
//! A perform attempt's trace is its request (method, URL, headers, the
//! start of the body) and what came back (status, the start of the answer,
//! or the error) with its duration. Kept as an owned `HttpExchangeTrace`,
//! every text was copied out of the request and the answer, kept until the
//! event was encoded, converted, encoded and freed: 3.0k instructions and
//! nine allocations of the trigger-load bench's call before its encoding.
//! Here each is written into the trace's encoding while the request and
//! the answer are still there, already redacted by the caller.
//!
//! The entries are `EventTrace.perform_attempts` (field 6, the trace's
//! last), so [`crate::encode_trace_with_inbound`] appends them after the
//! rest of a node's trace, and the whole stays in the field order prost
//! writes. The tests hold each entry to prost's bytes for the owned form.

use std::borrow::Cow;

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int32, key_len, message};

use crate::trace_fields::{map_len, put_map, put_string, string_len};
use crate::validate::duration_to_api;

/// `EventTrace.perform_attempts`.
const TRACE_PERFORM_ATTEMPTS: u32 = 6;
/// `HttpExchangeTrace` fields.
const EXCHANGE_METHOD: u32 = 1;
const EXCHANGE_URL: u32 = 2;
const EXCHANGE_REQUEST_HEADERS: u32 = 3;
const EXCHANGE_REQUEST_BODY: u32 = 4;
const EXCHANGE_STATUS: u32 = 5;
const EXCHANGE_RESPONSE_EXCERPT: u32 = 6;
const EXCHANGE_ERROR: u32 = 7;
const EXCHANGE_DURATION: u32 = 8;
/// Bytes an attempt's status, duration, key and length take at most.
const OUTCOME_ROOM: usize = 64;
/// Bytes of an answer's excerpt and error an attempt's start makes room
/// for: most answers to a webhook call are shorter.
const ANSWER_ROOM: usize = 512;

/// An attempt's request, as the trace shows it (credentials and secret
/// values already replaced).
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// A name given twice keeps its last value, as in a map.
    pub headers: &'a [(&'a str, Cow<'a, str>)],
    /// The start of the body the trace keeps.
    pub body: &'a str,
}

/// What came of an attempt, as the trace shows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptOutcome<'a> {
    pub status: Option<i32>,
    pub response_excerpt: &'a str,
    pub error: &'a str,
    pub duration_ms: u64,
}

/// A call's perform attempts, encoded.
#[derive(Clone, Debug, Default)]
pub struct EncodedAttempts {
    bytes: Vec<u8>,
    /// The end of the last finished entry: an attempt started and never
    /// finished is left out, not written as half an entry.
    finished: usize,
}

/// An attempt whose request is written and whose outcome is not yet.
#[must_use = "an attempt is recorded once its outcome is written"]
#[derive(Debug)]
pub struct StartedAttempt {
    at: usize,
}

impl EncodedAttempts {
    /// Writes an attempt's request, before it is sent (sending gives the
    /// request away).
    pub fn start(&mut self, request: &AttemptRequest<'_>) -> StartedAttempt {
        self.bytes.truncate(self.finished);
        // Room for the request and most answers in one allocation, where
        // growing as written reallocated five times and an exact room for
        // the request once more for the answer (0.8k instructions).
        self.bytes.reserve(
            string_len(EXCHANGE_METHOD, request.method)
                + string_len(EXCHANGE_URL, request.url)
                + map_len(EXCHANGE_REQUEST_HEADERS, request.headers)
                + string_len(EXCHANGE_REQUEST_BODY, request.body)
                + OUTCOME_ROOM
                + ANSWER_ROOM,
        );
        let at = self.bytes.len();
        let buf = &mut self.bytes;
        put_string(EXCHANGE_METHOD, request.method, buf);
        put_string(EXCHANGE_URL, request.url, buf);
        put_map(EXCHANGE_REQUEST_HEADERS, request.headers, buf);
        put_string(EXCHANGE_REQUEST_BODY, request.body, buf);
        StartedAttempt { at }
    }

    /// Writes what came of the attempt `started`, which ends its entry.
    pub fn finish(&mut self, started: StartedAttempt, outcome: &AttemptOutcome<'_>) {
        let buf = &mut self.bytes;
        buf.reserve(
            string_len(EXCHANGE_RESPONSE_EXCERPT, outcome.response_excerpt)
                + string_len(EXCHANGE_ERROR, outcome.error)
                + OUTCOME_ROOM,
        );
        if let Some(status) = &outcome.status {
            int32::encode(EXCHANGE_STATUS, status, buf);
        }
        put_string(EXCHANGE_RESPONSE_EXCERPT, outcome.response_excerpt, buf);
        put_string(EXCHANGE_ERROR, outcome.error, buf);
        // Always present, as the owned form converts it.
        message::encode(EXCHANGE_DURATION, &duration_to_api(outcome.duration_ms), buf);
        // The entry's key and length go before its fields, now that the
        // length is known: a move of one entry's bytes.
        let len = buf.len() - started.at;
        let mut prefix = [0u8; 16];
        let mut head = &mut prefix[..];
        encode_key(TRACE_PERFORM_ATTEMPTS, WireType::LengthDelimited, &mut head);
        encode_varint(len as u64, &mut head);
        let prefix_len = key_len(TRACE_PERFORM_ATTEMPTS) + encoded_len_varint(len as u64);
        let end = buf.len();
        buf.resize(end + prefix_len, 0);
        buf.copy_within(started.at..end, started.at + prefix_len);
        buf[started.at..started.at + prefix_len].copy_from_slice(&prefix[..prefix_len]);
        self.finished = buf.len();
    }

    /// The finished entries.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.finished]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hookplane_model::{EventTrace, HttpExchangeTrace};
    use proptest::prelude::*;

    use super::*;
    use crate::{InboundTrace, decode_trace, encode_trace, encode_trace_with_inbound};

    fn owned(request: &AttemptRequest<'_>, outcome: &AttemptOutcome<'_>) -> HttpExchangeTrace {
        HttpExchangeTrace {
            method: request.method.to_owned(),
            url: request.url.to_owned(),
            request_headers: request.headers.iter().map(|(n, v)| ((*n).to_owned(), v.to_string())).collect(),
            request_body: request.body.to_owned(),
            status: outcome.status,
            response_excerpt: outcome.response_excerpt.to_owned(),
            error: outcome.error.to_owned(),
            duration_ms: outcome.duration_ms,
        }
    }

    fn encoded(attempts: &[(AttemptRequest<'_>, AttemptOutcome<'_>)]) -> EncodedAttempts {
        let mut encoded = EncodedAttempts::default();
        for (request, outcome) in attempts {
            let started = encoded.start(request);
            encoded.finish(started, outcome);
        }
        encoded
    }

    #[test]
    fn attempts_are_the_bytes_prost_writes_for_the_owned_trace() {
        // In name order, each name once, as prost writes a map.
        let headers =
            [("authorization", Cow::Borrowed("[redacted]")), ("content-type", Cow::Borrowed("application/json"))];
        let body = "x".repeat(300);
        let attempts = [
            (
                AttemptRequest {
                    method: "POST",
                    url: "https://erp.example.com/orders",
                    headers: &headers,
                    body: &body,
                },
                AttemptOutcome { status: Some(503), response_excerpt: "busy", error: "", duration_ms: 1_250 },
            ),
            (
                AttemptRequest { method: "POST", url: "https://erp.example.com/orders", headers: &[], body: "" },
                AttemptOutcome { status: None, response_excerpt: "", error: "connection refused", duration_ms: 0 },
            ),
            (AttemptRequest::default(), AttemptOutcome { status: Some(-1), ..Default::default() }),
        ];
        let rest = EventTrace { condition_result: Some(true), processed: r#"{"a":1}"#.into(), ..Default::default() };
        let trace = encode_trace_with_inbound(&InboundTrace::default(), rest.clone(), &encoded(&attempts));
        let expected = EventTrace { perform_attempts: attempts.iter().map(|(r, o)| owned(r, o)).collect(), ..rest };
        assert_eq!(trace.as_bytes(), encode_trace(expected.clone()).as_bytes());
        assert_eq!(decode_trace(trace.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn an_attempt_never_finished_is_left_out() {
        let request = AttemptRequest { method: "POST", url: "https://erp.example.com/", ..Default::default() };
        let mut attempts = encoded(&[(request, AttemptOutcome { status: Some(503), ..Default::default() })]);
        let _abandoned = attempts.start(&request);
        let decoded = |attempts: &EncodedAttempts| {
            let trace = encode_trace_with_inbound(&InboundTrace::default(), EventTrace::default(), attempts);
            decode_trace(trace.as_bytes()).unwrap().perform_attempts
        };
        assert_eq!(decoded(&attempts).len(), 1);
        let started = attempts.start(&request);
        attempts.finish(started, &AttemptOutcome { status: Some(200), ..Default::default() });
        let statuses: Vec<Option<i32>> = decoded(&attempts).iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(503), Some(200)]);
    }

    #[test]
    fn a_header_given_twice_keeps_its_last_value() {
        let headers = [("x-tag", Cow::Borrowed("a")), ("x-tag", Cow::Borrowed("b"))];
        let request = AttemptRequest { headers: &headers, ..Default::default() };
        let trace = encode_trace_with_inbound(
            &InboundTrace::default(),
            EventTrace::default(),
            &encoded(&[(request, AttemptOutcome::default())]),
        );
        let decoded = decode_trace(trace.as_bytes()).unwrap();
        assert_eq!(decoded.perform_attempts[0].request_headers, BTreeMap::from([("x-tag".into(), "b".into())]));
    }

    proptest! {
        #[test]
        fn attempts_decode_to_the_owned_trace(
            attempts in prop::collection::vec((
                "[A-Z]{0,7}",
                ".{0,60}",
                prop::collection::btree_map("[a-z-]{1,12}", ".{0,30}", 0..5),
                ".{0,200}",
                prop::option::of(any::<i32>()),
                ".{0,200}",
                ".{0,40}",
                any::<u32>(),
            ), 0..4),
        ) {
            let headers: Vec<Vec<(&str, Cow<'_, str>)>> = attempts
                .iter()
                .map(|a| a.2.iter().map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str()))).collect())
                .collect();
            let attempts: Vec<(AttemptRequest<'_>, AttemptOutcome<'_>)> = attempts
                .iter()
                .zip(&headers)
                .map(|(a, headers)| (
                    AttemptRequest { method: &a.0, url: &a.1, headers, body: &a.3 },
                    AttemptOutcome { status: a.4, response_excerpt: &a.5, error: &a.6, duration_ms: u64::from(a.7) },
                ))
                .collect();
            let trace = encode_trace_with_inbound(&InboundTrace::default(), EventTrace::default(), &encoded(&attempts));
            let expected = EventTrace { perform_attempts: attempts.iter().map(|(r, o)| owned(r, o)).collect(), ..Default::default() };
            let by_prost = encode_trace(expected);
            prop_assert_eq!(trace.as_bytes(), by_prost.as_bytes());
        }
    }
}
