//! The steps of SPEC §7 that need no network: the condition, the
//! mappings and the outbound credential. A node's executor runs them
//! around its lookup and perform; a dry run runs them alone. One
//! definition, so a dry run evaluates exactly what a node would.

use base64::Engine as _;
use hookplane_expr::{self as expr, Budget, EvalError, Payload, Processed, ProgramSet, Scope, SecretSource};
use hookplane_model::{ConnectorSpec, Deployed, OAuth2Settings, OutboundAuth};
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::redact::Redactor;
use crate::render::RenderError;

/// Why a step failed; each names the connector field at fault. The texts
/// are what a `failed` event carries as `error`, after redaction.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("condition: {0}")]
    Condition(EvalError),
    #[error("mappings[{index}] ({name}): {error}")]
    Mapping { index: usize, name: String, error: EvalError },
    #[error("perform: {0}")]
    Render(RenderError),
    #[error("{field}: {error}")]
    Credential { field: &'static str, error: EvalError },
    #[error("perform.auth: the credential is not a valid header value")]
    CredentialHeader,
}

impl StepError {
    /// The connector field the failure points at, in API terms
    /// (`mappings[2].expression`), when one does.
    pub fn field(&self) -> Option<String> {
        match self {
            StepError::Condition(_) => Some("condition".to_owned()),
            StepError::Mapping { index, .. } => Some(format!("mappings[{index}].expression")),
            StepError::Render(render) => render.field(),
            StepError::Credential { field, .. } => Some((*field).to_owned()),
            StepError::CredentialHeader => Some("perform.auth".to_owned()),
        }
    }
}

/// The condition's verdict; `None` when the connector has none.
pub fn condition(
    spec: &ConnectorSpec<Deployed>,
    programs: &ProgramSet,
    payload: Payload<'_>,
    secrets: &dyn SecretSource,
    budget: &mut Budget,
) -> Result<Option<bool>, StepError> {
    let Some(condition) = spec.condition else { return Ok(None) };
    let empty = Processed::new();
    let scope = Scope { payload, lookup: None, processed: &empty, secrets };
    let value = programs.eval_cow_in(condition, &scope, budget).map_err(StepError::Condition)?;
    Ok(Some(expr::truthy(&value)))
}

/// The mappings in order, each seeing those before it as `$processed`.
pub fn mappings<'p>(
    spec: &ConnectorSpec<Deployed>,
    programs: &'p ProgramSet,
    payload: Payload<'_>,
    lookup: Option<&Value>,
    secrets: &dyn SecretSource,
    budget: &mut Budget,
) -> Result<Processed<'p>, StepError> {
    let mut processed = Processed::new();
    for (index, mapping) in spec.mappings.iter().enumerate() {
        let name = programs.name(mapping.name);
        let scope = Scope { payload, lookup, processed: &processed, secrets };
        let value = programs.eval_in(mapping.expression, &scope, budget).map_err(|error| StepError::Mapping {
            index,
            name: name.to_owned(),
            error,
        })?;
        processed.insert(name, value);
    }
    Ok(processed)
}

/// The `Authorization` a perform carries.
#[derive(Debug)]
pub enum Credential<'s> {
    None,
    /// Rendered from the connector (bearer, basic); marked sensitive.
    Header(HeaderValue),
    /// A token the client-credentials grant fetches (the executor's job).
    OAuth2(&'s OAuth2Settings<Deployed>),
}

/// Renders the perform's credential, remembering its values for
/// redaction.
pub fn credential<'s>(
    spec: &'s ConnectorSpec<Deployed>,
    programs: &ProgramSet,
    scope: &Scope<'_>,
    budget: &mut Budget,
    redactor: &mut Redactor,
) -> Result<Credential<'s>, StepError> {
    let mut render = |program, field: &'static str| {
        programs
            .eval_in(program, scope, budget)
            .map(|v| expr::render(&v))
            .map_err(|error| StepError::Credential { field, error })
    };
    let value = match &spec.perform.auth {
        OutboundAuth::None => return Ok(Credential::None),
        OutboundAuth::OAuth2(settings) => return Ok(Credential::OAuth2(settings)),
        OutboundAuth::Bearer { token } => {
            let token = render(*token, "perform.auth.bearer.token")?;
            redactor.add(&token);
            format!("Bearer {token}")
        }
        OutboundAuth::Basic { username, password } => {
            let username = render(*username, "perform.auth.basic.username")?;
            let password = render(*password, "perform.auth.basic.password")?;
            redactor.add(&password);
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            redactor.add(&encoded);
            format!("Basic {encoded}")
        }
    };
    Ok(Credential::Header(sensitive(&value)?))
}

/// A credential as a header value no trace or log shows.
pub fn sensitive(value: &str) -> Result<HeaderValue, StepError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| StepError::CredentialHeader)?;
    header.set_sensitive(true);
    Ok(header)
}
