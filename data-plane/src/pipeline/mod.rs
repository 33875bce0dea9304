//! One trigger's execution (SPEC §7): condition → lookup → mappings →
//! perform, with retries and the circuit breaker, recorded as a trace.
//!
//! Runs on the snapshot the request loaded; touches no control-plane state.
//! Secrets enter only through `$secret` and the outbound auth, and every
//! value of theirs is redacted from the trace before it leaves here; the
//! [`Redactor`] that knows them leaves with the execution, for the inbound
//! request's part of the trace, which the endpoint writes from the
//! request's buffers ([`crate::events::trace`]).

mod attempts;
pub mod error;

pub use attempts::Attempts;

pub use hookplane_pipeline::{redact, render as request};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookplane_expr::{Budget, Limits, Payload, Processed, Scope, SecretSource};
use hookplane_model::{CircuitTransition, Deployed, EventTrace, HttpExchangeTrace, Lookup, Plan};
use hookplane_pipeline::diff::excerpt;
use hookplane_pipeline::steps::{self, Credential};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, RETRY_AFTER};
use serde_json::Value;

use crate::outbound::breaker::{Admission, Breakers, Transition, breaker_key};
use crate::outbound::circuits::CircuitNotices;
use crate::outbound::oauth::TokenCache;
use crate::outbound::{Outbound, OutboundRequest};
use crate::snapshot::{DeployedConnector, Snapshot};
use crate::trigger::response::Outcome;
use error::{ExecutionError, LookupError};
use redact::Redactor;
use request::{Target, render_perform, render_target};

/// Bytes of a lookup answer parsed as `$lookup`.
const MAX_LOOKUP_BODY: usize = 1 << 20;
/// Bytes of a perform answer kept for the trace.
const MAX_EXCERPT: usize = hookplane_pipeline::diff::TRACE_EXCERPT;
/// Longest `Retry-After` a retry waits for; longer ones end the retries.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What executions share: the client, breakers and token cache.
#[derive(Debug)]
pub struct Executor {
    pub outbound: Outbound,
    pub breakers: Breakers,
    /// Breaker transitions for the control plane to tell of.
    pub circuits: Arc<CircuitNotices>,
    pub tokens: TokenCache,
    /// Delay before the second attempt; doubles per attempt.
    pub retry_base: Duration,
    pub limits: Limits,
}

/// How an execution ended.
#[derive(Debug)]
pub struct Execution {
    pub outcome: Outcome,
    pub response_code: Option<i32>,
    pub error: Option<String>,
    /// What the pipeline did but its perform attempts; the inbound
    /// request's part is left empty.
    pub trace: EventTrace,
    /// The perform attempts, recorded as they happened.
    pub attempts: Attempts,
    /// The secret values the execution read.
    pub redactor: Redactor,
}

/// `$secret.NAME` from the organization's secrets in the snapshot.
struct OrgSecrets<'a> {
    snapshot: &'a Snapshot,
    organization: &'a str,
}

impl SecretSource for OrgSecrets<'_> {
    fn secret(&self, name: &str) -> Option<&str> {
        self.snapshot.secret(self.organization, name)
    }
}

impl Executor {
    /// Runs the connector's pipeline on `payload`.
    pub async fn execute(
        &self,
        snapshot: &Snapshot,
        deployed: &DeployedConnector,
        plan: &Plan,
        payload: Payload<'_>,
        depth: u32,
    ) -> Execution {
        let secrets = OrgSecrets { snapshot, organization: &deployed.connector.organization_id };
        let redactor = Executor::redactor(snapshot, deployed);
        let mut run = Run { trace: EventTrace::default(), attempts: Attempts::default(), redactor };
        let result = self.run(deployed, plan, payload, depth, &secrets, &mut run).await;
        let Run { mut trace, attempts, redactor } = run;
        redactor.scrub_trace(&mut trace);
        let response_code = attempts.last_status();
        match result {
            Ok(outcome) => Execution { outcome, response_code, error: None, trace, attempts, redactor },
            Err(error) => Execution {
                outcome: Outcome::Failed,
                response_code,
                error: Some(redactor.scrub(&error.to_string()).into_owned()),
                trace,
                attempts,
                redactor,
            },
        }
    }

    /// A redactor that knows the value of every `$secret` the connector's
    /// programs read (an execution adds the OAuth tokens it obtains).
    pub fn redactor(snapshot: &Snapshot, deployed: &DeployedConnector) -> Redactor {
        let secrets = OrgSecrets { snapshot, organization: &deployed.connector.organization_id };
        let mut redactor = Redactor::default();
        for name in deployed.secret_names() {
            if let Some(value) = secrets.secret(name) {
                redactor.add(value);
            }
        }
        redactor
    }

    async fn run(
        &self,
        deployed: &DeployedConnector,
        plan: &Plan,
        payload: Payload<'_>,
        depth: u32,
        secrets: &OrgSecrets<'_>,
        run: &mut Run,
    ) -> Result<Outcome, ExecutionError> {
        let spec = &deployed.connector.spec;
        let programs = &deployed.programs;
        // Every program this execution evaluates draws on one budget.
        let mut budget = Budget::new(self.limits);
        let passed = steps::condition(spec, programs, payload, secrets, &mut budget)?;
        run.trace.condition_result = passed;
        if passed == Some(false) {
            return Ok(Outcome::Skipped);
        }
        let lookup_value = match &spec.lookup {
            // Boxed, as the perform is: a trigger's future holds no state of
            // the steps only some calls take (see `trigger::check_order`).
            Some(lookup) => {
                let empty = Processed::new();
                let scope = Scope { payload, lookup: None, processed: &empty, secrets };
                Some(Box::pin(self.lookup(deployed, lookup, &scope, &mut budget, depth, run)).await?)
            }
            None => None,
        };
        let processed = steps::mappings(spec, programs, payload, lookup_value.as_ref(), secrets, &mut budget)?;
        run.trace.processed = serde_json::to_string(&processed).unwrap_or_default();
        let scope = Scope { payload, lookup: lookup_value.as_ref(), processed: &processed, secrets };
        let mut request = render_perform(&spec.perform, programs, &deployed.perform, &scope, &mut budget, depth)
            .map_err(steps::StepError::Render)?;
        self.authorize(deployed, &scope, &mut budget, &mut request, &mut run.redactor).await?;
        Box::pin(self.perform(request, plan, deployed, &mut run.attempts, &run.redactor)).await
    }

    /// Calls the lookup API and parses its answer as `$lookup`, recording
    /// the exchange in the trace.
    async fn lookup(
        &self,
        deployed: &DeployedConnector,
        lookup: &Lookup<Deployed>,
        scope: &Scope<'_>,
        budget: &mut Budget,
        depth: u32,
        run: &mut Run,
    ) -> Result<Value, LookupError> {
        let target = Target {
            programs: &deployed.programs,
            url: lookup.url,
            parsed_url: deployed.lookup_url.as_ref(),
            headers: &lookup.headers,
            query: &lookup.query,
            field: "lookup",
        };
        let (destination, headers) = render_target(&target, scope, budget, depth).map_err(LookupError::Render)?;
        let timeout = Duration::from_millis(if lookup.timeout_ms == 0 { 30_000 } else { lookup.timeout_ms });
        let request =
            OutboundRequest { method: hyper::Method::GET, destination, headers, body: Default::default(), timeout };
        let mut exchange = exchange_trace(&request);
        let started = Instant::now();
        let result = self.outbound.send(request, MAX_LOOKUP_BODY).await;
        exchange.duration_ms = started.elapsed().as_millis() as u64;
        let parsed = match result {
            Ok(response) => {
                exchange.status = Some(i32::from(response.status.as_u16()));
                exchange.response_excerpt = excerpt(&response.body);
                if !response.status.is_success() {
                    Err(LookupError::Status(response.status.as_u16()))
                } else {
                    serde_json::from_slice::<Value>(&response.body).map_err(LookupError::NotJson)
                }
            }
            Err(err) => {
                exchange.error = err.to_string();
                Err(LookupError::Exchange(err))
            }
        };
        run.trace.lookup = Some(exchange);
        parsed
    }

    /// Adds the outbound auth header, remembering its value for redaction.
    async fn authorize(
        &self,
        deployed: &DeployedConnector,
        scope: &Scope<'_>,
        budget: &mut Budget,
        request: &mut OutboundRequest,
        redactor: &mut Redactor,
    ) -> Result<(), ExecutionError> {
        let spec = &deployed.connector.spec;
        let value = match steps::credential(spec, &deployed.programs, scope, budget, redactor)? {
            Credential::None => return Ok(()),
            Credential::Header(value) => value,
            Credential::OAuth2(settings) => {
                let token = self
                    .tokens
                    .token(&self.outbound, (&deployed.connector.id, deployed.version), settings, request.timeout)
                    .await
                    .map_err(ExecutionError::OAuth2)?;
                redactor.add(&token);
                steps::sensitive(&format!("Bearer {token}"))?
            }
        };
        request.headers.insert(AUTHORIZATION, value);
        Ok(())
    }

    /// Records an attempt's outcome in its target's breaker; a breaker that
    /// opens or closes is logged and kept for the control plane, in the
    /// name of the connector whose call changed it.
    fn record_outcome(&self, target: &str, healthy: bool, deployed: &DeployedConnector, redactor: &Redactor) {
        let opened = match self.breakers.record(target, healthy) {
            Transition::None | Transition::Reopened => return,
            Transition::Opened => true,
            Transition::Closed => false,
        };
        // The key is the rendered URL, whose path may carry a `$secret` (a
        // bot token, a webhook URL's key) in forms a redactor cannot be
        // sure to match once the URL is parsed: the notice names the
        // origin alone, and the connector.
        let target = url::Url::parse(target).map_or_else(|_| String::new(), |url| url.origin().ascii_serialization());
        let target = redactor.scrub(&target);
        let connector = &deployed.connector;
        tracing::warn!(connector = %connector.id, target = %target, opened, "circuit changed");
        self.circuits.push(CircuitTransition {
            organization_id: connector.organization_id.clone(),
            connector_id: connector.id.clone(),
            target: target.into_owned(),
            opened,
            time: hookplane_model::now(),
        });
    }

    /// Sends the perform request with the plan's retries, through the
    /// target's circuit breaker, recording each attempt with the secret
    /// values `redactor` knows, which are all the execution reads.
    async fn perform(
        &self,
        request: OutboundRequest,
        plan: &Plan,
        deployed: &DeployedConnector,
        recorded: &mut Attempts,
        redactor: &Redactor,
    ) -> Result<Outcome, ExecutionError> {
        let retry = deployed.connector.spec.perform.retry;
        let attempts = if plan.retries_enabled { retry.max_attempts.max(1) } else { 1 };
        let base = if retry.initial_backoff_ms == 0 {
            self.retry_base
        } else {
            Duration::from_millis(retry.initial_backoff_ms)
        };
        // Breakers are per target URL without its query: a literal URL's,
        // parsed on deploy, is the same whatever query a call adds, and is
        // borrowed from the connector for as long as the attempts take.
        let target = match &deployed.perform.url {
            Some(destination) => breaker_key(destination.url()),
            None => Cow::Owned(breaker_key(request.destination.url()).into_owned()),
        };
        // Sending consumes a request: each attempt but the last sends a
        // copy, and the last (the only one, without retries) the request.
        let mut request = Some(request);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.breakers.admit(&target) == Admission::Refused {
                return Err(ExecutionError::CircuitOpen);
            }
            let current = request.as_ref().expect("taken by the last attempt, after which the loop ends");
            let trace = recorded.start(current, redactor);
            let started = Instant::now();
            let sent = if attempt < attempts { current.clone() } else { request.take().expect("not taken yet") };
            let result = self.outbound.send(sent, MAX_EXCERPT).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            let mut wait = None;
            let (error, retryable, healthy) = match result {
                Ok(response) => {
                    let status = response.status;
                    recorded.answered(trace, status, &response.body, duration_ms, redactor);
                    if status.is_success() {
                        self.record_outcome(&target, true, deployed, redactor);
                        return Ok(Outcome::Completed);
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        wait = response.headers.get(RETRY_AFTER).and_then(hookplane_egress::retry::retry_after);
                    }
                    let server_error = matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    let retryable = server_error || status == StatusCode::TOO_MANY_REQUESTS;
                    (ExecutionError::TargetStatus(status.as_u16()), retryable, !server_error)
                }
                Err(err) => {
                    recorded.failed(trace, &err.to_string(), duration_ms, redactor);
                    let transient = err.is_transient();
                    (ExecutionError::Exchange(err), transient, !transient)
                }
            };
            self.record_outcome(&target, healthy, deployed, redactor);
            if !retryable || attempt >= attempts {
                return Err(error);
            }
            let delay = match wait {
                Some(wait) if wait > MAX_RETRY_AFTER => return Err(error),
                Some(wait) => wait,
                None => hookplane_egress::retry::backoff(base, attempt),
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// The state an execution builds up.
struct Run {
    trace: EventTrace,
    attempts: Attempts,
    redactor: Redactor,
}

/// A lookup's exchange as its trace starts: the request (the perform's
/// attempts are recorded by [`Attempts`]).
fn exchange_trace(request: &OutboundRequest) -> HttpExchangeTrace {
    // Inserted one by one, a later value of a name replacing an earlier
    // one as collecting would, without collecting them into a `Vec` and
    // sorting it first; names and methods copied as text, not formatted.
    let mut request_headers = BTreeMap::new();
    for (name, value) in &request.headers {
        request_headers.insert(name.as_str().to_owned(), redact::shown_header(value).to_owned());
    }
    HttpExchangeTrace {
        method: request.method.as_str().to_owned(),
        url: redact::traced_url(request.destination.url()).into_owned(),
        request_headers,
        request_body: excerpt(&request.body),
        ..Default::default()
    }
}
