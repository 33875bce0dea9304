//! A call that runs ends as an event, even one cut off while it runs
//! (SPEC §7: every execution is one).
//!
//! A trigger's execution runs inside the future hyper keeps for the call,
//! and hyper drops that future when the call's connection or stream goes:
//! an HTTP/2 sender that resets its stream (as a client does when it gives
//! up waiting), a connection that fails, or a node that stops with the
//! call still running after its drain timeout. Its lookup or perform may
//! have reached a target by then. So a call that passed every check is
//! [`Running`] until its event is recorded: [`Running::finish`] records the
//! execution's event, and a `Running` dropped before that records a failed
//! one with the inbound request and what happened (cut off, or a panic of
//! the execution), unless the call runs again (a kept asynchronous call). An HTTP/1.1 sender that closes its
//! connection does not cut its call off: the listener allows half-closed
//! connections, so the call runs to its own event.

use std::net::IpAddr;
use std::time::Instant;

use hookplane_convert::EncodedTrace;
use hookplane_model::{self as model, Event, EventStatus, EventTrace};
use hyper::HeaderMap;

use super::Ingress;
use crate::events::Receipt;
use crate::events::trace::InboundRequest;
use crate::pipeline::redact::Redactor;
use crate::pipeline::{Attempts, Execution, Executor};
use crate::snapshot::{DeployedConnector, Snapshot};

/// The error of an event whose call was cut off.
pub const CUT_OFF: &str = "the call was cut off before its execution ended (its sender closed it, or the node \
                           stopped); whether a target received a request of it is unknown";
/// The error of an event whose execution panicked: a defect of the node.
pub const PANICKED: &str = "the call's execution failed unexpectedly, a defect of the node; whether a target \
                            received a request of it is unknown";

/// A call that passed every check, from the start of its execution until
/// its event is recorded.
pub struct Running<'a> {
    pub ingress: &'a Ingress,
    pub snapshot: &'a Snapshot,
    pub deployed: &'a DeployedConnector,
    pub headers: &'a HeaderMap,
    /// The body, checked to be JSON.
    pub body: &'a str,
    pub client_ip: IpAddr,
    pub auth_method: &'a str,
    pub event_id: i64,
    pub received: model::Timestamp,
    pub started: Instant,
    /// A kept asynchronous call runs again when cut off (it stays in the
    /// inbox until its event is kept, and that event keeps its id), so
    /// its cut-off records nothing.
    pub runs_again: bool,
    /// Its event is recorded: dropped now, it records nothing.
    pub recorded: bool,
}

impl Running<'_> {
    /// Records the event of the finished `execution`, whose trace it takes.
    pub fn finish(mut self, execution: &mut Execution) -> Receipt {
        // The request's headers and body are written into the trace now,
        // while hyper's read buffer they live in is still ours to release.
        let trace = self
            .inbound(&execution.redactor)
            .encode_trace(std::mem::take(&mut execution.trace), execution.attempts.encoded());
        let error = execution.error.clone().unwrap_or_default();
        self.recorded = true;
        self.record(execution.outcome.event_status(), execution.response_code, error, trace)
    }

    fn inbound<'r>(&'r self, redactor: &'r Redactor) -> InboundRequest<'r> {
        InboundRequest {
            headers: self.headers,
            body: self.body,
            client_ip: self.client_ip,
            auth_method: self.auth_method,
            connector: self.deployed,
            redactor,
        }
    }

    fn record(&self, status: EventStatus, response_code: Option<i32>, error: String, trace: EncodedTrace) -> Receipt {
        let connector = &self.deployed.connector;
        self.ingress.events.record(Event {
            id: self.event_id,
            organization_id: connector.organization_id.clone(),
            connector_id: connector.id.clone(),
            status,
            response_code,
            error,
            node_id: self.ingress.node_id.clone(),
            create_time: self.received,
            duration_ms: self.started.elapsed().as_millis() as u64,
            trace,
        })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.recorded || self.runs_again {
            return;
        }
        // Unwinding: the execution panicked, and tokio ends the connection's
        // task; the sender did not go away.
        let error = if std::thread::panicking() { PANICKED } else { CUT_OFF };
        let connector = &self.deployed.connector;
        tracing::warn!(connector = %connector.id, event_id = self.event_id, error, "a call ended before its event");
        let redactor = Executor::redactor(self.snapshot, self.deployed);
        let trace = self.inbound(&redactor).encode_trace(EventTrace::default(), Attempts::default().encoded());
        // Nobody waits for this call's answer; the reporter keeps the
        // event all the same.
        drop(self.record(EventStatus::Failed, None, error.to_owned(), trace));
    }
}
