//! The one place control-plane failures become gRPC statuses.
//!
//! Services return [`ApiError`]; `From<ApiError> for Status` picks the code,
//! attaches field violations as `google.rpc.BadRequest` details, and keeps
//! internal causes out of responses (they are logged instead).

use hookplane_convert::ValidationError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::crypto::CryptoError;
use crate::store::StoreError;

/// What went wrong serving an API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credential in the call's metadata.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// The request breaks the API's rules; every violation is listed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The resource is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(&'static str),
    /// A `request_id` was reused for a different request.
    #[error("request_id was already used for a different request; use a new request_id")]
    RequestIdReused,
    /// The stored data could not serve the call.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealed material did not open: wrong key in config or tampered data.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A live stream's reader fell this many items behind and was cut off.
    #[error("the stream fell {0} events behind; use ListEvents to catch up and stream again")]
    StreamLagged(u64),
    /// The call could not be served now; trying again later may succeed.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A live test run found no node, or its node did not answer.
    #[error(transparent)]
    LiveRun(#[from] crate::sync::LiveRunError),
    /// The node refused a live test run; its reason.
    #[error("the node refused the run: {0}")]
    LiveRunRefused(String),
}

impl ApiError {
    /// A single-field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::Invalid(ValidationError::one(field, description))
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::Unauthenticated(msg) => Status::unauthenticated(msg),
            ApiError::PermissionDenied(msg) => Status::permission_denied(msg),
            ApiError::Invalid(invalid) => invalid_argument(invalid),
            ApiError::FailedPrecondition(msg) => Status::failed_precondition(msg),
            ApiError::RequestIdReused => Status::already_exists(err.to_string()),
            ApiError::Store(store) => match store {
                StoreError::NotFound(_) => Status::not_found(store.to_string()),
                StoreError::Conflict(what) => Status::aborted(format!(
                    "{what} was changed since it was read (etag mismatch); get it again and retry"
                )),
                StoreError::AlreadyExists(_) => Status::already_exists(store.to_string()),
                StoreError::Exhausted(_) => Status::resource_exhausted(store.to_string()),
                StoreError::Corrupt { .. } | StoreError::Database(_) | StoreError::Migration(_) => {
                    tracing::error!(error = %store, "store failure");
                    Status::internal("internal storage error; see the control plane's log")
                }
            },
            ApiError::StreamLagged(_) => Status::resource_exhausted(err.to_string()),
            ApiError::Unavailable(msg) => Status::unavailable(msg),
            // None of these is UNAVAILABLE, which clients retry: a run may
            // have sent its perform already (the node went away while it ran,
            // or it is still running), and one without a node waits for a
            // rollout that retrying at once does not bring.
            ApiError::LiveRun(crate::sync::LiveRunError::TimedOut) => Status::deadline_exceeded(err.to_string()),
            ApiError::LiveRun(crate::sync::LiveRunError::NodeGone) => Status::aborted(err.to_string()),
            ApiError::LiveRun(crate::sync::LiveRunError::NoNode) => Status::failed_precondition(err.to_string()),
            ApiError::LiveRunRefused(_) => Status::failed_precondition(err.to_string()),
            ApiError::Crypto(crypto) => {
                tracing::error!(error = %crypto, "sealed data did not open; is the configured secret key right?");
                Status::internal("stored secret material could not be opened; see the control plane's log")
            }
        }
    }
}

/// Bytes of field violations a status carries. The message and the
/// details travel in response headers, and grpc-python refuses more than
/// 8 KiB of metadata by default: a connector with many diagnostics sent
/// 14 KB, so its client saw RESOURCE_EXHAUSTED instead of its errors.
/// Details are base64 on the wire (4/3), and the message is short.
const MAX_VIOLATION_BYTES: usize = 4 * 1024;
/// Bytes of one violation's description.
const MAX_DESCRIPTION_BYTES: usize = 512;
/// Bytes of one violation's field path (a label key, say, is the caller's
/// text).
const MAX_FIELD_BYTES: usize = 256;
/// Fields the message names before counting the rest.
const FIELDS_IN_MESSAGE: usize = 5;

/// INVALID_ARGUMENT whose message names the fields and whose
/// `BadRequest` says what is wrong with each, not the same text twice,
/// within a budget every default client accepts (the rest are counted).
fn invalid_argument(invalid: ValidationError) -> Status {
    let total = invalid.violations.len();
    let paths: Vec<String> = invalid.violations.iter().map(|v| truncated(&v.field, MAX_FIELD_BYTES)).collect();
    let mut fields: Vec<&str> = Vec::new();
    for path in &paths {
        if !fields.contains(&path.as_str()) {
            fields.push(path);
        }
    }
    let mut message =
        format!("invalid {}", fields.iter().take(FIELDS_IN_MESSAGE).copied().collect::<Vec<_>>().join(", "));
    if fields.len() > FIELDS_IN_MESSAGE {
        message.push_str(&format!(" and {} more fields", fields.len() - FIELDS_IN_MESSAGE));
    }
    let mut used = 0;
    let mut violations = Vec::new();
    for (violation, field) in invalid.violations.iter().zip(&paths) {
        let description = truncated(&violation.description, MAX_DESCRIPTION_BYTES);
        // Each entry's field, description and framing (a few bytes).
        used += field.len() + description.len() + 8;
        if used > MAX_VIOLATION_BYTES {
            break;
        }
        violations.push(FieldViolation::new(field.clone(), description));
    }
    if violations.len() < total {
        message.push_str(&format!("; {} of {total} violations listed, fix them and retry", violations.len()));
    } else {
        message.push_str("; see the field violations");
    }
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
}

/// `text` cut to at most `max` bytes on a character boundary, marked.
fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Result of a service handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// gRPC's status code for a message over the size limit is
/// RESOURCE_EXHAUSTED; tonic's codec answers OUT_OF_RANGE, before any
/// handler runs. No handler of this server answers OUT_OF_RANGE, so every
/// one leaving it is the codec's, and is rewritten here. (For a unary call
/// the status is in the response headers; a status read from a request
/// stream goes through [`from_request_stream`].)
pub fn oversized_message_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    if response.headers().get("grpc-status").is_some_and(|code| code == OUT_OF_RANGE) {
        let exhausted = http::HeaderValue::from(Code::ResourceExhausted as i32);
        response.headers_mut().insert("grpc-status", exhausted);
    }
    response
}

/// A failure reading a request stream, as the caller should see it.
pub fn from_request_stream(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange => Status::resource_exhausted(status.message().to_owned()),
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_carry_field_violations() {
        let status = Status::from(ApiError::invalid("connector.perform.url", "is required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("connector.perform.url"));
        let details = status.get_details_bad_request().expect("bad request details");
        assert_eq!(details.field_violations[0].field, "connector.perform.url");
        assert_eq!(details.field_violations[0].description, "is required");
    }

    #[test]
    fn messages_name_the_fields_and_details_say_what_is_wrong() {
        let mut invalid = ValidationError::one("connector.perform.url", "is required");
        invalid.violations.push(hookplane_convert::FieldViolation {
            field: "connector.mappings[0].expression".into(),
            description: "1:3: unknown function `frob`".into(),
        });
        let status = Status::from(ApiError::Invalid(invalid));
        assert_eq!(
            status.message(),
            "invalid connector.perform.url, connector.mappings[0].expression; see the field violations"
        );
        assert!(!status.message().contains("is required"), "each description is said once, in the details");
        assert_eq!(status.get_details_bad_request().unwrap().field_violations.len(), 2);
    }

    #[test]
    fn many_violations_fit_default_client_metadata_limits() {
        let violations = (0..400)
            .map(|i| hookplane_convert::FieldViolation {
                field: format!("connector.mappings[{i}].expression"),
                description: format!("1:1: unknown function `f{i}` {}", "é".repeat(400)),
            })
            .collect();
        let status = Status::from(ApiError::Invalid(ValidationError { violations }));
        assert_eq!(status.code(), Code::InvalidArgument);
        let listed = status.get_details_bad_request().unwrap().field_violations;
        assert!(!listed.is_empty() && listed.len() < 400);
        assert!(listed.iter().all(|v| v.description.len() <= MAX_DESCRIPTION_BYTES));
        assert!(status.message().contains(&format!("{} of 400 violations listed", listed.len())));
        assert!(status.message().contains("and 395 more fields"));
        // What travels in headers: the percent-encoded message and the
        // base64 details, well under grpc-python's 8 KiB.
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        assert!(bytes < 7 * 1024, "{bytes} bytes of metadata");

        let long_field = Status::from(ApiError::invalid(format!("labels[{}]", "k".repeat(10_000)), "bad key"));
        let listed = long_field.get_details_bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), 1, "a long field path is cut, not dropped");
        assert!(listed[0].field.len() <= MAX_FIELD_BYTES && long_field.message().len() < 2 * MAX_FIELD_BYTES);
    }

    #[test]
    fn store_errors_map_to_aip_codes() {
        let code = |e: StoreError| Status::from(ApiError::Store(e)).code();
        assert_eq!(code(StoreError::NotFound("connector")), Code::NotFound);
        assert_eq!(code(StoreError::Conflict("connector")), Code::Aborted);
        assert_eq!(code(StoreError::AlreadyExists("secret")), Code::AlreadyExists);
    }

    #[test]
    fn streams_end_with_codes_a_client_can_act_on() {
        let lagged = Status::from(ApiError::StreamLagged(12));
        assert_eq!(lagged.code(), Code::ResourceExhausted);
        assert!(lagged.message().contains("12 events behind") && lagged.message().contains("ListEvents"));
        assert_eq!(Status::from(ApiError::Unavailable("later")).code(), Code::Unavailable);
    }

    #[test]
    fn oversized_messages_are_resource_exhausted() {
        let mut response = http::Response::new(());
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static("11"));
        let response = oversized_message_status(response);
        assert_eq!(response.headers()["grpc-status"], "8");
        let ok = oversized_message_status(http::Response::new(()));
        assert!(ok.headers().get("grpc-status").is_none());
        assert_eq!(from_request_stream(Status::out_of_range("too large")).code(), Code::ResourceExhausted);
        assert_eq!(from_request_stream(Status::cancelled("gone")).code(), Code::Cancelled);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(ApiError::Crypto(CryptoError::Unopenable));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("owner"));
    }
}
