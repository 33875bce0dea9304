//! A connector run on a payload without sending anything (SPEC §10): the
//! same steps a node runs (`steps`, `render`), stopped before the
//! perform, shown with every secret redacted.

use hookplane_egress::client::OutboundRequest;
use hookplane_expr::{Budget, Limits, Processed, ProgramSet, Scope, SecretSource};
use hookplane_model::{ConnectorSpec, Deployed, RenderedRequest, TestFailure, TestRun, TestStep};
use serde_json::Value;

use crate::redact::{Redactor, shown_header};
use crate::render::{PreparedPerform, RenderError, Target, render_perform, render_target};
use crate::steps::{self, Credential, StepError};

/// What a dry run runs: a compiled connector with its secrets opened
/// (a dry run's caller opens them as placeholders; `$secret` values come
/// from `secrets`).
pub struct DryRun<'a> {
    pub spec: &'a ConnectorSpec<Deployed>,
    pub programs: &'a ProgramSet,
    pub secrets: &'a dyn SecretSource,
    pub limits: Limits,
}

impl DryRun<'_> {
    /// The lookup request, for a caller that sends it; `None` without a
    /// lookup or when the condition is false.
    pub fn lookup_request(&self, payload: &Value) -> Result<Option<OutboundRequest>, StepError> {
        let mut budget = Budget::new(self.limits);
        if steps::condition(self.spec, self.programs, payload.into(), self.secrets, &mut budget)? == Some(false) {
            return Ok(None);
        }
        self.render_lookup(payload, &mut budget).transpose().map_err(StepError::Render)
    }

    fn render_lookup(&self, payload: &Value, budget: &mut Budget) -> Option<Result<OutboundRequest, RenderError>> {
        let lookup = self.spec.lookup.as_ref()?;
        let empty = Processed::new();
        let scope = Scope { payload: payload.into(), lookup: None, processed: &empty, secrets: self.secrets };
        let target = Target {
            programs: self.programs,
            url: lookup.url,
            // A dry run renders each URL once anyway.
            parsed_url: None,
            headers: &lookup.headers,
            query: &lookup.query,
            field: "lookup",
        };
        Some(render_target(&target, &scope, budget, 0).map(|(destination, headers)| OutboundRequest {
            method: hyper::Method::GET,
            destination,
            headers,
            body: Default::default(),
            timeout: std::time::Duration::from_millis(if lookup.timeout_ms == 0 { 30_000 } else { lookup.timeout_ms }),
        }))
    }

    /// Runs every step on `payload`, with `lookup` as `$lookup`. The
    /// redactor knows the secret values the connector reads; the run adds
    /// the credentials it renders.
    pub fn run(&self, payload: &Value, lookup: Option<&Value>, mut redactor: Redactor) -> TestRun {
        let mut run = TestRun::default();
        let mut budget = Budget::new(self.limits);
        let failure = self.steps(payload, lookup, &mut budget, &mut redactor, &mut run).err();
        run.failure = failure.map(|(step, error)| TestFailure {
            step,
            field: error.field(),
            message: redactor.scrub(&error.to_string()).into_owned(),
        });
        if let Some(processed) = &mut run.processed {
            *processed = redactor.scrub(processed).into_owned();
        }
        for request in [&mut run.lookup_request, &mut run.perform_request].into_iter().flatten() {
            scrub_request(&redactor, request);
        }
        run
    }

    fn steps(
        &self,
        payload: &Value,
        lookup: Option<&Value>,
        budget: &mut Budget,
        redactor: &mut Redactor,
        run: &mut TestRun,
    ) -> Result<(), (TestStep, StepError)> {
        let (spec, programs, secrets) = (self.spec, self.programs, self.secrets);
        run.condition_result =
            steps::condition(spec, programs, payload.into(), secrets, budget).map_err(|e| (TestStep::Condition, e))?;
        if run.condition_result == Some(false) {
            return Ok(());
        }
        if let Some(rendered) = self.render_lookup(payload, budget) {
            let request = rendered.map_err(|e| (TestStep::Lookup, StepError::Render(e)))?;
            run.lookup_request = Some(shown(&request));
            run.lookup_result = lookup.map(Value::to_string);
        }
        let processed = steps::mappings(spec, programs, payload.into(), lookup, secrets, budget)
            .map_err(|e| (TestStep::Mappings, e))?;
        run.processed = Some(serde_json::to_string(&processed).expect("values serialise"));
        let scope = Scope { payload: payload.into(), lookup, processed: &processed, secrets };
        // Prepared as a node prepares it on deploy, so a dry run renders
        // what a node would.
        let prepared = PreparedPerform::new(&spec.perform, programs);
        let mut request = render_perform(&spec.perform, programs, &prepared, &scope, budget, 0)
            .map_err(|e| (TestStep::Perform, StepError::Render(e)))?;
        match steps::credential(spec, programs, &scope, budget, redactor).map_err(|e| (TestStep::Perform, e))? {
            Credential::None => {}
            Credential::Header(value) => {
                request.headers.insert(hyper::header::AUTHORIZATION, value);
            }
            // Fetching a token is a call to the provider: a dry run shows
            // where it would go, not a token.
            Credential::OAuth2(_) => {
                let value = steps::sensitive("Bearer <token from the OAuth 2.0 provider>")
                    .map_err(|e| (TestStep::Perform, e))?;
                request.headers.insert(hyper::header::AUTHORIZATION, value);
            }
        }
        run.perform_request = Some(shown(&request));
        Ok(())
    }
}

/// A request as a person reads it: sensitive values hidden.
fn shown(request: &OutboundRequest) -> RenderedRequest {
    RenderedRequest {
        method: request.method.to_string(),
        url: crate::redact::traced_url(request.destination.url()).into_owned(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), shown_header(value).to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&request.body).into_owned(),
    }
}

fn scrub_request(redactor: &Redactor, request: &mut RenderedRequest) {
    request.url = redactor.scrub(&request.url).into_owned();
    request.body = redactor.scrub(&request.body).into_owned();
    for (_, value) in &mut request.headers {
        *value = redactor.scrub(value).into_owned();
    }
}
