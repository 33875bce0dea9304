//! Why an execution failed (SPEC §7), one variant per step that can fail.
//!
//! The texts are what a `failed` event and the 500 answer carry as
//! `error`, after redaction; they name the connector field that failed so
//! its owner can find it. `circuit_open` is the code SPEC §7 fixes.

use crate::outbound::OutboundError;
use crate::outbound::oauth::TokenError;
use hookplane_pipeline::render::RenderError;
use hookplane_pipeline::steps::StepError;

/// Why a pipeline ended without a successful perform.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The condition, a mapping, the rendering or the credential.
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("lookup failed: {0}")]
    Lookup(LookupError),
    #[error("perform.auth.oauth2: {0}")]
    OAuth2(TokenError),
    /// The target's breaker refused the attempt.
    #[error("circuit_open")]
    CircuitOpen,
    /// The last attempt got an answer that is not a success.
    #[error("the target answered {0}")]
    TargetStatus(u16),
    /// The last attempt got no answer.
    #[error(transparent)]
    Exchange(OutboundError),
}

/// Why the lookup gave no `$lookup`.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Render(RenderError),
    #[error("the lookup URL answered {0}")]
    Status(u16),
    #[error("the answer is not JSON ({0})")]
    NotJson(serde_json::Error),
    #[error(transparent)]
    Exchange(OutboundError),
}

impl From<LookupError> for ExecutionError {
    fn from(error: LookupError) -> ExecutionError {
        ExecutionError::Lookup(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts events carry; tests and users match on them.
    #[test]
    fn errors_name_the_step_and_field_that_failed() {
        assert_eq!(ExecutionError::CircuitOpen.to_string(), "circuit_open");
        assert_eq!(ExecutionError::TargetStatus(502).to_string(), "the target answered 502");
        assert_eq!(
            ExecutionError::from(LookupError::Status(500)).to_string(),
            "lookup failed: the lookup URL answered 500"
        );
        let render = RenderError::FileNotBase64 { field: "perform.body[0].value".into() };
        assert_eq!(
            ExecutionError::from(StepError::Render(render)).to_string(),
            "perform: perform.body[0].value: a file must be base64 text"
        );
    }
}
