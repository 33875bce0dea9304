//! Errors of SDK calls, keeping the server's field violations.

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// One invalid field, as the server named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// What failed in an SDK call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be reached or is malformed.
    #[error("connecting to the control plane: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The API key holds characters that cannot travel in metadata.
    #[error("the API key is not valid metadata text")]
    InvalidApiKey,
    /// The server answered with an error.
    #[error("{code:?}: {message}")]
    Api {
        code: Code,
        message: String,
        /// For INVALID_ARGUMENT: every invalid field.
        violations: Vec<FieldViolation>,
    },
}

impl Error {
    /// The gRPC code of a server error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The field violations of an INVALID_ARGUMENT error (empty otherwise).
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::Api { violations, .. } => violations,
            _ => &[],
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        let violations = status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|v| FieldViolation { field: v.field, description: v.description })
                    .collect()
            })
            .unwrap_or_default();
        Error::Api { code: status.code(), message: status.message().to_owned(), violations }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn field_violations_survive_conversion() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "bad",
            ErrorDetails::with_bad_request_violation("connector.perform.url", "is required"),
        );
        let err = Error::from(status);
        assert_eq!(err.code(), Some(Code::InvalidArgument));
        assert_eq!(err.violations()[0].field, "connector.perform.url");
    }
}
