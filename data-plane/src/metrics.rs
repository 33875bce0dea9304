//! The node's Prometheus metrics (SPEC §12), served at `GET /metrics` in
//! the OpenMetrics text format.
//!
//! Labels are closed sets (outcomes, refusal codes, limit scopes, status
//! classes), never a tenant's ids or target hosts: the series a node
//! exposes stay bounded whatever its tenants configure. Circuit breakers,
//! one per target URL, are therefore counted (open now, opened, closed),
//! not listed; the event of a refused call names its target. Counters are
//! counted where things happen; levels kept elsewhere (queues, the
//! snapshot, Redis failures) are read when scraped. Each node has a
//! registry of its own, so nodes sharing a process keep theirs apart.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::limits::LimitScope;
use crate::outbound::breaker::Breakers;
use crate::state::NodeState;

/// How a trigger call was answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    /// `completed`, `skipped`, `failed`, `accepted`, `duplicate` or `refused`.
    outcome: &'static str,
    /// The refusal's code; `none` for answered calls.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// A limit check's decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    /// `client_ip`, `connector`, `organization`, or `connector_and_organization`
    /// for an authenticated check that admitted the call.
    scope: &'static str,
    /// `admitted` or `refused`.
    decision: &'static str,
}

/// A perform attempt's answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Perform {
    /// `2xx` … `5xx`, or `error` when no answer came.
    status: &'static str,
}

/// Every metric of a node.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    answers: Family<Answer, Counter>,
    latency: Family<Outcome, Histogram>,
    limits: Family<Decision, Counter>,
    performs: Family<Perform, Counter>,
    retries: Counter,
    config_version: Gauge,
    connectors: Gauge,
    queued_events: Gauge,
    waiting_calls: Gauge,
    sync_errors: Gauge,
    connected: Gauge,
    redis_failures: Gauge,
    circuits_open: Gauge,
    /// The series every call that runs updates, found once (see [`Resolved`]).
    resolved: Resolved,
}

/// Outcomes of calls that ran or were answered without a refusal.
const OUTCOMES: [&str; 5] = ["completed", "skipped", "failed", "accepted", "duplicate"];
/// The scopes of the two limit checks every call passes.
const ADMITTED: [&str; 2] = ["client_ip", "connector_and_organization"];

/// Series looked up once instead of per call: a family hashes a lookup's
/// labels with SipHash under its lock, and three such lookups were 1.2k
/// instructions of a check-path call (callgrind, `trigger_allocations`).
/// A handle shares its series with the family, which renders it. Refusals,
/// rarer and of many codes, go through the families.
#[derive(Debug)]
struct Resolved {
    /// By outcome, as in [`OUTCOMES`]: its answers and their latency.
    answered: Vec<(&'static str, Counter, Histogram)>,
    /// By scope, as in [`ADMITTED`].
    admitted: Vec<(&'static str, Counter)>,
}

impl Resolved {
    fn new(
        answers: &Family<Answer, Counter>,
        latency: &Family<Outcome, Histogram>,
        limits: &Family<Decision, Counter>,
    ) -> Resolved {
        let answered = OUTCOMES
            .iter()
            .map(|&outcome| {
                let count = answers.get_or_create(&Answer { outcome, code: "none" }).clone();
                (outcome, count, latency.get_or_create(&Outcome { outcome }).clone())
            })
            .collect();
        let admitted = ADMITTED
            .iter()
            .map(|&scope| (scope, limits.get_or_create(&Decision { scope, decision: "admitted" }).clone()))
            .collect();
        Resolved { answered, admitted }
    }
}

/// What the node holds when scraped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Levels {
    pub config_version: i64,
    pub connectors: i64,
    pub queued_events: i64,
    pub waiting_calls: i64,
    pub sync_errors: i64,
    pub connected: bool,
    pub redis_failures: i64,
    pub circuits_open: i64,
}

impl NodeMetrics {
    /// Registers what `state` and `breakers` count themselves beside the
    /// node's own metrics.
    pub fn new(state: &NodeState, breakers: &Breakers) -> NodeMetrics {
        let mut registry = Registry::with_prefix("hookplane");
        let answers = Family::<Answer, Counter>::default();
        registry.register("trigger_requests", "Trigger calls answered, by outcome and refusal code", answers.clone());
        // 1 ms to ~33 s: the fast path's checks to a perform's timeout.
        let latency =
            Family::<Outcome, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register("trigger_duration_seconds", "Time to answer a trigger call, by outcome", latency.clone());
        let limits = Family::<Decision, Counter>::default();
        registry.register("limit_decisions", "Rate-limit checks, by scope and decision", limits.clone());
        let performs = Family::<Perform, Counter>::default();
        registry.register("perform_attempts", "Perform requests sent, by the class of their answer", performs.clone());
        let retries = Counter::default();
        registry.register("perform_retries", "Perform attempts after a call's first", retries.clone());
        registry.register(
            "config_apply_seconds",
            "Time from a config update's arrival to its snapshot serving",
            state.apply_seconds.clone(),
        );
        registry.register("circuits_opened", "Circuit breakers opened (per target URL)", breakers.opened.clone());
        registry.register("circuits_closed", "Circuit breakers closed again by a probe", breakers.closed.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        NodeMetrics {
            config_version: gauge(&mut registry, "config_version", "Config version the node serves"),
            connectors: gauge(&mut registry, "connectors", "Connectors in the served snapshot"),
            queued_events: gauge(
                &mut registry,
                "queued_events",
                "Events not yet stored by the control plane nor spooled",
            ),
            waiting_calls: gauge(
                &mut registry,
                "waiting_calls",
                "Calls of asynchronous connectors kept and not run yet",
            ),
            sync_errors: gauge(
                &mut registry,
                "sync_errors",
                "Sync sessions that ended in an error since the node started",
            ),
            connected: gauge(&mut registry, "connected", "1 while the sync stream to the control plane is open"),
            redis_failures: gauge(
                &mut registry,
                "redis_failures",
                "Redis failures under the redis limiting policy so far",
            ),
            circuits_open: gauge(&mut registry, "circuits_open", "Target URLs whose circuit breaker is open now"),
            resolved: Resolved::new(&answers, &latency, &limits),
            registry,
            answers,
            latency,
            limits,
            performs,
            retries,
        }
    }

    /// A call answered with `outcome` (and `code` if refused), after `took`.
    pub fn answered(&self, outcome: &'static str, code: Option<&'static str>, took: Duration) {
        if code.is_none()
            && let Some((_, count, latency)) = self.resolved.answered.iter().find(|(known, ..)| *known == outcome)
        {
            count.inc();
            latency.observe(took.as_secs_f64());
            return;
        }
        self.answers.get_or_create(&Answer { outcome, code: code.unwrap_or("none") }).inc();
        self.latency.get_or_create(&Outcome { outcome }).observe(took.as_secs_f64());
    }

    /// A limit check admitted (`None`) or refused a call.
    pub fn limited(&self, refused_by: Option<LimitScope>, admitted_scope: &'static str) {
        if refused_by.is_none()
            && let Some((_, count)) = self.resolved.admitted.iter().find(|(known, _)| *known == admitted_scope)
        {
            count.inc();
            return;
        }
        let decision = match refused_by {
            None => Decision { scope: admitted_scope, decision: "admitted" },
            Some(scope) => Decision { scope: scope_name(scope), decision: "refused" },
        };
        self.limits.get_or_create(&decision).inc();
    }

    /// A perform attempt answered `status` (`None`: no answer).
    pub fn performed(&self, status: Option<i32>) {
        let status = match status {
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "error",
        };
        self.performs.get_or_create(&Perform { status }).inc();
    }

    /// A call's perform was attempted `attempts` times.
    pub fn attempted(&self, attempts: usize) {
        self.retries.inc_by(attempts.saturating_sub(1) as u64);
    }

    /// The OpenMetrics text of every metric, `levels` as scraped.
    pub fn render(&self, levels: Levels) -> String {
        self.config_version.set(levels.config_version);
        self.connectors.set(levels.connectors);
        self.queued_events.set(levels.queued_events);
        self.waiting_calls.set(levels.waiting_calls);
        self.sync_errors.set(levels.sync_errors);
        self.connected.set(i64::from(levels.connected));
        self.redis_failures.set(levels.redis_failures);
        self.circuits_open.set(levels.circuits_open);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

pub fn scope_name(scope: LimitScope) -> &'static str {
    match scope {
        LimitScope::ClientIp => "client_ip",
        LimitScope::Connector => "connector",
        LimitScope::Organization => "organization",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_levels_are_rendered_as_openmetrics() {
        let (state, breakers) = (NodeState::new(None), Breakers::default());
        let metrics = NodeMetrics::new(&state, &breakers);
        metrics.answered("completed", None, Duration::from_millis(3));
        metrics.answered("refused", Some("unauthenticated"), Duration::from_micros(40));
        metrics.limited(Some(LimitScope::ClientIp), "client_ip");
        metrics.performed(Some(503));
        metrics.attempted(3);
        breakers.opened.inc();
        state.apply_seconds.observe(0.002);
        let text = metrics.render(Levels { config_version: 7, connected: true, circuits_open: 1, ..Levels::default() });
        for line in [
            "hookplane_perform_retries_total 2",
            "hookplane_circuits_opened_total 1",
            "hookplane_circuits_closed_total 0",
            "hookplane_circuits_open 1",
            "hookplane_config_apply_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.contains(r#"hookplane_trigger_requests_total{outcome="completed",code="none"} 1"#), "{text}");
        assert!(text.contains(r#"hookplane_trigger_duration_seconds_count{outcome="completed"} 1"#), "{text}");
        assert!(text.contains(r#"hookplane_trigger_requests_total{outcome="skipped",code="none"} 0"#), "{text}");
        assert!(text.contains(r#"hookplane_trigger_requests_total{outcome="refused",code="unauthenticated"} 1"#));
        assert!(text.contains(r#"hookplane_limit_decisions_total{scope="client_ip",decision="refused"} 1"#));
        assert!(text.contains(r#"hookplane_perform_attempts_total{status="5xx"} 1"#));
        assert!(text.contains("hookplane_config_version 7") && text.contains("hookplane_connected 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
