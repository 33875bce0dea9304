//! Live test runs (SPEC §10): the control plane asks, over the sync
//! stream, for a connector to be executed for real. The run skips the
//! checks of a sender (there is none) but counts against the connector's
//! and the organization's limits, as a call would, and then runs what a
//! call that passed every check runs, `Ingress::execute`: the pipeline,
//! the perform sent, and an event kept before the answer, its
//! `auth_method` `test_run`. A disabled connector runs too: testing one
//! before turning it on is what a live run is for.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use hookplane_model::{self as model, TEST_RUN_AUTH_METHOD};
use hyper::HeaderMap;

use super::response::Outcome;
use super::{Call, Ingress, Refusal, count, plan_of};

/// What a live run did.
#[derive(Debug)]
pub struct LiveRan {
    pub event_id: i64,
    pub outcome: Outcome,
    pub response_code: Option<i32>,
    pub error: Option<String>,
}

/// Why a node did not run it.
#[derive(Debug, thiserror::Error)]
pub enum LiveRunRefused {
    #[error("the node serves config version {have}, older than the connector's {want}")]
    NotApplied { have: i64, want: i64 },
    #[error("the node does not know the connector")]
    UnknownConnector,
    #[error("the connector reads a secret the control plane could not open")]
    Held,
    /// What would have refused a sender's call (the node has no ordinal
    /// yet, the event could not be kept, the payload is not JSON).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl Ingress {
    /// Executes `connector_id` on `payload` (JSON text) once the node
    /// serves `version` or later.
    pub async fn live_run(&self, connector_id: &str, payload: &str, version: i64) -> Result<LiveRan, LiveRunRefused> {
        let started = Instant::now();
        let received = model::now();
        let snapshot = self.state.snapshot();
        if snapshot.version < version {
            return Err(LiveRunRefused::NotApplied { have: snapshot.version, want: version });
        }
        let deployed = snapshot.connectors.get(connector_id).cloned().ok_or(LiveRunRefused::UnknownConnector)?;
        if snapshot.held.contains_key(connector_id) {
            return Err(LiveRunRefused::Held);
        }
        let plan = plan_of(&snapshot, &deployed);
        let connector = &deployed.connector;
        let fleet = self.state.fleet();
        let counted =
            self.limiters.check_authenticated(fleet.as_deref(), &connector.id, &connector.organization_id, &plan).await;
        count(&mut None, counted.map_err(|_| Refusal::LimitsUnavailable)?)?;
        let event_id = self.ids.next().ok_or(Refusal::NotReady)?;
        let headers = HeaderMap::new();
        let captured = deployed.programs.capture_payload(payload).map_err(|e| Refusal::InvalidJson(e.to_string()))?;
        let call = Call {
            deployed: &deployed,
            plan: &plan,
            headers: &headers,
            body: payload,
            payload: captured,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            auth_method: TEST_RUN_AUTH_METHOD,
            depth: 0,
            event_id,
            received,
            started,
            runs_again: false,
        };
        let ran = self.execute(&snapshot, call).await?;
        Ok(LiveRan { event_id, outcome: ran.outcome, response_code: ran.response_code, error: ran.error })
    }
}
