//! The one place trigger outcomes become HTTP responses (SPEC §4): the JSON
//! error shape, the result shape and the `X-RateLimit-*` headers.

use std::time::Duration;

use bytes::Bytes;
use hookplane_pipeline::render::json_bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub use crate::limits::LimitScope;
use crate::limits::RateStatus;

/// Why a trigger call was refused before its pipeline ran.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such route; triggers are POST /api/v1/connectors/{{connector_id}}/trigger")]
    NoRoute,
    #[error("the trigger URL is missing the connector id: /api/v1/connectors/{{connector_id}}/trigger")]
    MissingConnectorId,
    #[error("trigger URLs accept POST only")]
    MethodNotAllowed,
    #[error("no enabled connector has this id")]
    UnknownConnector,
    #[error("the body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("reading the body failed")]
    BodyRead,
    #[error("X-Hookplane-Depth must be a non-negative integer")]
    InvalidDepth,
    #[error("X-Hookplane-Depth {depth} is above the maximum of {max}: the call looks like a webhook loop")]
    LoopDetected { depth: u32, max: u32 },
    #[error("too many requests; retry after {} seconds", retry_after_secs(*.retry_after))]
    RateLimited { scope: LimitScope, retry_after: Duration },
    #[error("missing, invalid or expired credentials")]
    Unauthenticated,
    #[error("the request's Origin (or Referer) is not allowed for this connector")]
    OriginNotAllowed,
    /// One answer for every signature failure, as for credentials: which
    /// part failed is logged at debug level only.
    #[error("the signature is missing, malformed, stale or does not match the body")]
    InvalidSignature,
    #[error("the node is at capacity; retry shortly")]
    Overloaded,
    #[error("the node has not registered with the control plane yet; retry shortly")]
    NotReady,
    #[error("{0} calls already wait to run on this node; retry shortly")]
    InboxFull(usize),
    #[error("the node could not keep the call for later; retry shortly")]
    NotKept,
    #[error("the connector cannot run until its configuration is repaired; retry later")]
    ConnectorUnavailable,
    #[error("the call ran, but the node could not keep its event; a retry runs it again")]
    EventNotKept,
    #[error("the first call of this delivery is still running; retry shortly")]
    DeliveryInProgress,
    #[error("rate limits cannot be counted right now; retry shortly")]
    LimitsUnavailable,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NoRoute | Refusal::UnknownConnector => StatusCode::NOT_FOUND,
            Refusal::MissingConnectorId | Refusal::InvalidJson(_) | Refusal::InvalidDepth | Refusal::BodyRead => {
                StatusCode::BAD_REQUEST
            }
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::LoopDetected { .. } | Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unauthenticated | Refusal::InvalidSignature => StatusCode::UNAUTHORIZED,
            Refusal::OriginNotAllowed => StatusCode::FORBIDDEN,
            Refusal::DeliveryInProgress => StatusCode::CONFLICT,
            Refusal::Overloaded
            | Refusal::NotReady
            | Refusal::InboxFull(_)
            | Refusal::NotKept
            | Refusal::ConnectorUnavailable
            | Refusal::EventNotKept
            | Refusal::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoRoute => "not_found",
            Refusal::MissingConnectorId => "missing_connector_id",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::UnknownConnector => "connector_not_found",
            Refusal::BodyTooLarge { .. } => "payload_too_large",
            Refusal::InvalidJson(_) => "invalid_json",
            Refusal::BodyTimeout(_) => "body_timeout",
            Refusal::BodyRead => "body_read_failed",
            Refusal::InvalidDepth => "invalid_depth",
            Refusal::LoopDetected { .. } => "loop_detected",
            Refusal::RateLimited { scope: LimitScope::ClientIp, .. } => "ip_rate_limited",
            Refusal::RateLimited { scope: LimitScope::Connector, .. } => "connector_rate_limited",
            Refusal::RateLimited { scope: LimitScope::Organization, .. } => "organization_rate_limited",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::InvalidSignature => "invalid_signature",
            Refusal::Overloaded => "overloaded",
            Refusal::NotReady => "node_not_ready",
            Refusal::InboxFull(_) => "accepted_calls_full",
            Refusal::NotKept => "not_kept",
            Refusal::ConnectorUnavailable => "connector_unavailable",
            Refusal::EventNotKept => "event_not_kept",
            Refusal::DeliveryInProgress => "delivery_in_progress",
            Refusal::LimitsUnavailable => "limits_unavailable",
        }
    }

    /// The response for this refusal.
    pub fn into_response(self, rate: Option<RateStatus>) -> Response<Full<Bytes>> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
        }
        let message = self.to_string();
        let body = json_body(&Body { error: Detail { code: self.code(), message: &message } });
        let mut response = json_response(self.status(), body, rate);
        match self {
            Refusal::RateLimited { retry_after, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(retry_after)));
            }
            Refusal::DeliveryInProgress => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// How an execution ended, as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Skipped,
    Failed,
    Accepted,
}

impl Outcome {
    /// The status its event records.
    pub fn event_status(self) -> hookplane_model::EventStatus {
        match self {
            Outcome::Completed => hookplane_model::EventStatus::Completed,
            Outcome::Skipped => hookplane_model::EventStatus::Skipped,
            Outcome::Failed => hookplane_model::EventStatus::Failed,
            Outcome::Accepted => hookplane_model::EventStatus::Accepted,
        }
    }

    /// As the answer's `status` names it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Accepted => "accepted",
        }
    }
}

/// The result body of an executed (or accepted) trigger.
#[derive(Debug, Serialize)]
pub struct Executed<'a> {
    pub status: Outcome,
    pub event_id: i64,
    pub response_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// The body of an accepted call, which has no response yet, and of a
/// duplicate delivery, which has the first call's.
#[derive(Serialize)]
struct EventOnlyBody {
    status: &'static str,
    event_id: i64,
}

/// 200 `{"status":"duplicate","event_id":N}`: a delivery the connector has
/// seen, with the event of its first call; nothing ran again.
pub fn duplicate(first_event_id: i64, rate: Option<RateStatus>) -> Response<Full<Bytes>> {
    let body = json_body(&EventOnlyBody { status: "duplicate", event_id: first_event_id });
    json_response(StatusCode::OK, body, rate)
}

impl Executed<'_> {
    /// The answer to a call kept to run later.
    pub fn accepted(event_id: i64) -> Executed<'static> {
        Executed { status: Outcome::Accepted, event_id, response_code: None, error: None }
    }

    /// 200 for completed and skipped, 500 for failed; 202
    /// `{"status":"accepted","event_id":N}` for accepted.
    pub fn into_response(self, rate: Option<RateStatus>) -> Response<Full<Bytes>> {
        let (status, body) = match self.status {
            Outcome::Completed | Outcome::Skipped => (StatusCode::OK, self.json()),
            Outcome::Failed => (StatusCode::INTERNAL_SERVER_ERROR, self.json()),
            Outcome::Accepted => {
                (StatusCode::ACCEPTED, json_body(&EventOnlyBody { status: "accepted", event_id: self.event_id }))
            }
        };
        json_response(status, body, rate)
    }
}

impl Executed<'_> {
    /// The body serde writes for this struct, written directly in one
    /// allocation of its size: through serde into a buffer it cost 1.5k
    /// instructions, each answer of every call.
    fn json(&self) -> Bytes {
        let (mut event_id, mut code) = (itoa::Buffer::new(), itoa::Buffer::new());
        let event_id = event_id.format(self.event_id);
        let code = self.response_code.map_or("null", |c| code.format(c));
        // Only a failed call's: escaped as serde escapes it.
        let error = self.error.map(|e| serde_json::to_string(e).expect("a string serialises"));
        let parts = [
            "{\"status\":\"",
            self.status.name(),
            "\",\"event_id\":",
            event_id,
            ",\"response_code\":",
            code,
            if error.is_some() { ",\"error\":" } else { "" },
            error.as_deref().unwrap_or_default(),
            "}",
        ];
        let mut body = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
        parts.iter().for_each(|part| body.extend_from_slice(part.as_bytes()));
        // Exactly full, so `Bytes` takes it without a second allocation.
        Bytes::from(body)
    }
}

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// An answer's body (see [`json_bytes`]).
fn json_body(body: &impl Serialize) -> Bytes {
    json_bytes(body).expect("answers are structs of plain fields")
}

/// A JSON response, with the rate-limit headers when a limit applied.
pub fn json_response(status: StatusCode, body: Bytes, rate: Option<RateStatus>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(rate) = rate {
        headers.insert(LIMIT.clone(), HeaderValue::from(rate.limit));
        headers.insert(REMAINING.clone(), HeaderValue::from(rate.remaining));
        headers.insert(RESET.clone(), HeaderValue::from(rate.reset_at));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_written_as_serde_writes_it() {
        let errors = [None, Some(""), Some("target answered 502"), Some("a \"quoted\" \\ é\u{1}\n")];
        for status in [Outcome::Completed, Outcome::Skipped, Outcome::Failed] {
            for (event_id, response_code) in [(0, None), (7, Some(200)), (i64::MAX, Some(-1)), (-3, Some(i32::MAX))] {
                for error in errors {
                    let executed = Executed { status, event_id, response_code, error };
                    assert_eq!(executed.json(), serde_json::to_vec(&executed).unwrap(), "{executed:?}");
                }
            }
        }
    }

    #[test]
    fn each_outcome_has_its_status_and_body() {
        let body = |response: Response<Full<Bytes>>| format!("{:?}", response.into_body());
        let accepted = Executed::accepted(7).into_response(None);
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        assert!(body(accepted).contains(r#"{\"status\":\"accepted\",\"event_id\":7}"#));
        let failed = Executed { status: Outcome::Failed, event_id: 8, response_code: Some(502), error: Some("x") };
        let failed = failed.into_response(None);
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(failed).contains(r#"\"response_code\":502,\"error\":\"x\""#));
        let skipped = Executed { status: Outcome::Skipped, event_id: 9, response_code: None, error: None };
        let skipped = skipped.into_response(None);
        assert_eq!(skipped.status(), StatusCode::OK);
        assert!(body(skipped).contains(r#"\"response_code\":null}"#));
        let duplicate = duplicate(6, None);
        assert_eq!(duplicate.status(), StatusCode::OK);
        assert!(body(duplicate).contains(r#"{\"status\":\"duplicate\",\"event_id\":6}"#));
        let unknown = Refusal::NoRoute.into_response(None);
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert!(body(unknown).contains("not_found"));
    }

    #[test]
    fn refusals_carry_the_json_shape_and_retry_after() {
        let rate = RateStatus { limit: 60, remaining: 0, reset_at: 1_700_000_040 };
        let response = Refusal::RateLimited { scope: LimitScope::ClientIp, retry_after: Duration::from_millis(1500) }
            .into_response(Some(rate));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["x-ratelimit-limit"], "60");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(response.headers()["x-ratelimit-reset"], "1700000040", "the window's end, in Unix seconds");
        let body = format!("{:?}", response.body());
        assert!(body.contains("ip_rate_limited"), "{body}");
    }
}
