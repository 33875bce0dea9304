//! What a dry run of a connector shows (SPEC §10): each step's outcome
//! and the requests it would send, secrets redacted; and, for a replay,
//! how the request differs from the one a stored event sent.

/// The `auth_method` a live test run's event records: no sender called,
/// the control plane asked (and the event shows as `test`).
pub const TEST_RUN_AUTH_METHOD: &str = "test_run";

/// A request as rendered, as people read it: sensitive header values and
/// every secret value the run read are `[redacted]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: String,
    pub url: String,
    /// In the order they would be sent.
    pub headers: Vec<(String, String)>,
    /// The body as text (bytes that are not UTF-8 replaced).
    pub body: String,
}

impl From<&crate::HttpExchangeTrace> for RenderedRequest {
    /// The request an event's trace recorded, as a dry run shows one.
    fn from(exchange: &crate::HttpExchangeTrace) -> RenderedRequest {
        RenderedRequest {
            method: exchange.method.clone(),
            url: exchange.url.clone(),
            headers: exchange.request_headers.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
            body: exchange.request_body.clone(),
        }
    }
}

/// The step of the pipeline a failure happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStep {
    Condition,
    Lookup,
    Mappings,
    Perform,
}

/// Why a dry run stopped, pointing at the connector field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestFailure {
    pub step: TestStep,
    /// In API terms: `mappings[1].expression`, `perform.headers[0].value`.
    pub field: Option<String>,
    pub message: String,
}

/// One dry run: nothing was sent but, when asked for, the lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRun {
    /// `None` when the connector has no condition (or it failed).
    pub condition_result: Option<bool>,
    pub lookup_request: Option<RenderedRequest>,
    /// What `$lookup` held, as JSON text.
    pub lookup_result: Option<String>,
    /// The mappings' results, a JSON object as text.
    pub processed: Option<String>,
    /// What the perform would send; `None` when an earlier step ended
    /// the run (a false condition, a failure).
    pub perform_request: Option<RenderedRequest>,
    pub failure: Option<TestFailure>,
}

/// One difference between two requests, by field: `method`, `url`,
/// `headers.<name>` (lower case), `body` or, for JSON bodies,
/// `body.<path>` (`body.items[0].sku`). Absent sides are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}
