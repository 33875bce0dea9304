//! The trigger endpoint (SPEC §4): `POST /api/v1/connectors/{id}/trigger`.
//!
//! Checks run in the SPEC's order, each refusing with its own status before
//! any later (costlier) step runs; no JSON tree is built until every check
//! passed, and then only the values the connector's programs can read.
//! The JSON check is the one scan of the body: it validates it and notes
//! the text of those values (`hookplane_expr::Captured`), which become
//! values (`hookplane_expr::Projected`) without the body being scanned
//! again. A request loads one snapshot and uses it to the end. Then the
//! pipeline runs and the event is queued for the reporter; the response
//! never waits on the control plane. A connector in asynchronous mode
//! instead keeps the checked call on disk and answers 202; [`accepted`]
//! runs it later.

pub mod accepted;
pub mod auth;
#[cfg(test)]
mod check_order;
pub mod deliveries;
pub mod live;
pub mod response;
pub mod running;
pub mod signature;

use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookplane_expr::Captured;
use hookplane_model::{self as model, Plan};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::CONTENT_LENGTH;
use hyper::{HeaderMap, Method, Request, Response};
use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::events::EventSink;
use crate::events::ids::EventIds;
use crate::inbox::Inbox;
use crate::limits::{Counted, Exceeded, Limiters, RateStatus};
use crate::metrics::NodeMetrics;
use crate::pipeline::Executor;
use crate::pipeline::request::DEPTH_HEADER;
use crate::snapshot::{DeployedConnector, Snapshot};
use crate::state::NodeState;
use deliveries::{Claim, Delivery, SeenDeliveries};
use response::{Executed, Outcome, Refusal};
use running::Running;

const TRIGGER_PREFIX: &str = "/api/v1/connectors/";
const TRIGGER_SUFFIX: &str = "/trigger";

/// The highest body limit a node may be given: an event's trace holds its
/// call's payload, and the control plane takes a `ReportEvents` message of
/// 64 MiB at most.
pub const LARGEST_BODY_LIMIT: usize = 16 << 20;

/// Limits of the trigger endpoint.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    pub max_body_bytes: usize,
    pub max_depth: u32,
    pub body_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Triggers executing at once; more are shed with 503.
    pub max_in_flight: usize,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            max_body_bytes: 1 << 20,
            max_depth: 5,
            body_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            max_in_flight: 4096,
        }
    }
}

/// Everything the endpoint shares across requests.
#[derive(Debug)]
pub struct Ingress {
    pub state: Arc<NodeState>,
    pub settings: IngressSettings,
    pub limiters: Limiters,
    pub executor: Executor,
    pub events: EventSink,
    pub ids: Arc<EventIds>,
    pub node_id: String,
    /// Calls of asynchronous connectors, kept until they ran.
    pub inbox: Inbox,
    /// Delivery ids seen lately, for replay protection.
    pub deliveries: SeenDeliveries,
    /// What `/metrics` shows.
    pub metrics: NodeMetrics,
    in_flight: Semaphore,
}

impl Ingress {
    pub fn new(
        state: Arc<NodeState>,
        settings: IngressSettings,
        executor: Executor,
        events: EventSink,
        ids: Arc<EventIds>,
        node_id: String,
        inbox: Inbox,
    ) -> Ingress {
        let in_flight = Semaphore::new(settings.max_in_flight);
        let metrics = NodeMetrics::new(&state, &executor.breakers);
        Ingress {
            state,
            settings,
            limiters: Limiters::default(),
            executor,
            events,
            ids,
            node_id,
            inbox,
            deliveries: SeenDeliveries::default(),
            metrics,
            in_flight,
        }
    }

    /// Whether `path` is a trigger URL (possibly a malformed one).
    pub fn is_trigger_path(path: &str) -> bool {
        connector_id_in(path).is_some()
    }

    /// Answers one trigger call. Generic over the body so the checks can
    /// be exercised on requests built in memory.
    pub async fn handle<B: TriggerBody>(&self, request: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let mut rate = None;
        match self.accept(request, peer, started, &mut rate).await {
            Ok((response, outcome)) => {
                self.metrics.answered(outcome, None, started.elapsed());
                response
            }
            Err(refusal) => {
                self.metrics.answered("refused", Some(refusal.code()), started.elapsed());
                refusal.into_response(rate)
            }
        }
    }

    async fn accept<B: TriggerBody>(
        &self,
        request: Request<B>,
        peer: SocketAddr,
        started: Instant,
        rate: &mut Option<RateStatus>,
    ) -> Result<(Response<Full<Bytes>>, &'static str), Refusal> {
        let received = model::now();
        let _permit = self.in_flight.try_acquire().map_err(|_| Refusal::Overloaded)?;
        // 1. Route.
        let id = connector_id_in(request.uri().path()).ok_or(Refusal::NoRoute)?;
        if id.is_empty() {
            return Err(Refusal::MissingConnectorId);
        }
        if id.contains('/') {
            return Err(Refusal::NoRoute);
        }
        if request.method() != Method::POST {
            return Err(Refusal::MethodNotAllowed);
        }
        let snapshot = self.state.snapshot();
        let deployed = snapshot
            .connectors
            .get(id)
            .filter(|d| d.connector.spec.enabled)
            .cloned()
            .ok_or(Refusal::UnknownConnector)?;
        // 2. Body: size, then JSON validity, noting the text of what the
        // programs read (no tree yet). UTF-8 is checked for the whole body
        // here: parsers skip over strings unchecked.
        let (parts, body) = request.into_parts();
        let body = self.read_body(&parts.headers, body).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|e| Refusal::InvalidJson(format!("the body is not UTF-8 (at byte {})", e.valid_up_to())))?;
        let payload = deployed.programs.capture_payload(text).map_err(|e| Refusal::InvalidJson(e.to_string()))?;
        // 3. Loop prevention.
        let depth = match parts.headers.get(&DEPTH_HEADER) {
            None => 0,
            Some(value) => value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or(Refusal::InvalidDepth)?,
        };
        if depth > self.settings.max_depth {
            return Err(Refusal::LoopDetected { depth, max: self.settings.max_depth });
        }
        // 4. Per-client-IP limit, before credentials are looked at.
        let plan = plan_of(&snapshot, &deployed);
        let client_ip = client_ip(peer.ip(), &parts.headers, &self.settings.trusted_proxies);
        let fleet = self.state.fleet();
        let counted = self.limiters.check_ip(fleet.as_deref(), client_ip, plan.per_ip_per_minute).await;
        let counted = counted.map_err(|_| Refusal::LimitsUnavailable)?;
        self.metrics.limited(counted.as_ref().err().map(|e| e.scope), "client_ip");
        count(rate, counted)?;
        // 5. Authentication.
        let method = auth::authenticate(&deployed, &parts.headers, parts.uri.query(), received)
            .ok_or(Refusal::Unauthenticated)?;
        // 6. Origin.
        if !auth::origin_allowed(&deployed.connector.spec.allowed_origins, &parts.headers) {
            return Err(Refusal::OriginNotAllowed);
        }
        // 7. Signature.
        let delivery_id = match &deployed.connector.spec.signature {
            None => None,
            Some(settings) => {
                let verified = signature::verify(settings, &parts.headers, &body, received).map_err(|reason| {
                    tracing::debug!(connector = %deployed.connector.id, %reason, "signature refused");
                    Refusal::InvalidSignature
                })?;
                // A signed timestamp up to the tolerance ahead of this
                // node's clock stays valid for twice the tolerance.
                let tolerance = Duration::from_secs(settings.timestamp_tolerance_secs);
                let keep_for = if settings.preset.signs_timestamp() { 2 * tolerance } else { tolerance };
                verified.delivery_id.map(|id| (id, keep_for))
            }
        };
        // 8. Connector and organization limits: authenticated calls only.
        let connector = &deployed.connector;
        let counted =
            self.limiters.check_authenticated(fleet.as_deref(), &connector.id, &connector.organization_id, &plan).await;
        let counted = counted.map_err(|_| Refusal::LimitsUnavailable)?;
        self.metrics.limited(counted.as_ref().err().map(|e| e.scope), "connector_and_organization");
        count(rate, counted)?;
        // A connector held for a secret the control plane could not open
        // cannot run; asking again later may find the secret set again.
        if snapshot.held.contains_key(&connector.id) {
            return Err(Refusal::ConnectorUnavailable);
        }
        let event_id = self.ids.next().ok_or(Refusal::NotReady)?;
        // A delivery seen within the tolerance ran (or runs) already.
        let claim = match delivery_id {
            None => None,
            Some((id, keep_for)) => {
                let delivery = Delivery::of(id, &body);
                let claim = self.deliveries.claim(fleet, &connector.id, delivery, event_id, keep_for).await;
                match claim.map_err(|_| Refusal::LimitsUnavailable)? {
                    Claim::New(claimed) => Some(claimed),
                    Claim::Duplicate { event_id: first } => {
                        return Ok((response::duplicate(first, *rate), "duplicate"));
                    }
                    Claim::InFlight => return Err(Refusal::DeliveryInProgress),
                }
            }
        };
        let call = Call {
            deployed: &deployed,
            plan: &plan,
            headers: &parts.headers,
            body: text,
            payload,
            client_ip,
            auth_method: method,
            depth,
            event_id,
            received,
            started,
            runs_again: false,
        };
        if deployed.connector.spec.async_mode {
            Box::pin(self.keep_for_later(&call)).await?;
            if let Some(claimed) = claim {
                claimed.keep().await;
            }
            return Ok((Executed::accepted(event_id).into_response(*rate), Outcome::Accepted.name()));
        }
        let ran = self.execute(&snapshot, call).await?;
        // A failed call's claim is released: the sender retries it with the
        // same id so that it runs again.
        if let Some(claimed) = claim {
            match ran.outcome {
                Outcome::Failed => claimed.release().await,
                _ => claimed.keep().await,
            }
        }
        let executed =
            Executed { status: ran.outcome, event_id, response_code: ran.response_code, error: ran.error.as_deref() };
        Ok((executed.into_response(*rate), ran.outcome.name()))
    }

    /// Runs the pipeline on a call that passed every check and records its
    /// event. Only now are the parts of the payload the connector's
    /// programs can read made values (`Captured::into_projected`).
    async fn execute(&self, snapshot: &Snapshot, call: Call<'_>) -> Result<Ran, Refusal> {
        let Call {
            deployed,
            plan,
            headers,
            body,
            payload,
            client_ip,
            auth_method,
            depth,
            event_id,
            received,
            started,
            runs_again,
        } = call;
        let payload = payload.into_projected().map_err(|e| Refusal::InvalidJson(e.to_string()))?;
        // From here the call runs, and ends as an event even if its future
        // is dropped before it records one (`running.rs`).
        let running = Running {
            ingress: self,
            snapshot,
            deployed,
            headers,
            body,
            client_ip,
            auth_method,
            event_id,
            received,
            started,
            runs_again,
            recorded: false,
        };
        let mut execution = self.executor.execute(snapshot, deployed, plan, (&payload).into(), depth).await;
        for status in execution.attempts.statuses() {
            self.metrics.performed(*status);
        }
        self.metrics.attempted(execution.attempts.statuses().len());
        let receipt = running.finish(&mut execution);
        // The answer tells of the event: it must exist first, whatever
        // happens to this node next.
        receipt.kept().await.map_err(|_| Refusal::EventNotKept)?;
        Ok(Ran { outcome: execution.outcome, response_code: execution.response_code, error: execution.error })
    }

    /// Reads the body within the size limit and the body timeout.
    async fn read_body<B: TriggerBody>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, Refusal> {
        let limit = self.settings.max_body_bytes;
        let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Refusal::BodyTooLarge { limit });
        }
        let timeout = self.settings.body_timeout;
        let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
        // A body that came with its request head, as a webhook's usually
        // does, is read without a timer: arming one takes a clock read, the
        // runtime's handle and a timer entry, then drops them, on every
        // call (about 120 instructions of the check path's call, counted
        // under callgrind on 2026-12-01). Only a body still on its way is
        // timed, from its first read.
        let collected = match std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
            Poll::Ready(collected) => collected,
            Poll::Pending => tokio::time::timeout(timeout, collect).await.map_err(|_| Refusal::BodyTimeout(timeout))?,
        };
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Refusal::BodyTooLarge { limit }),
            Err(_) => Err(Refusal::BodyRead),
        }
    }
}

/// A request body the endpoint can read: hyper's, or one built in memory.
pub trait TriggerBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send {}

impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send> TriggerBody for B {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call that passed every check, ready to run now or later.
struct Call<'a> {
    deployed: &'a DeployedConnector,
    plan: &'a Plan,
    headers: &'a HeaderMap,
    /// The body, checked to be JSON.
    body: &'a str,
    /// What the connector's programs read of it, not yet values.
    payload: Captured<'a>,
    client_ip: IpAddr,
    auth_method: &'a str,
    depth: u32,
    event_id: i64,
    received: model::Timestamp,
    started: Instant,
    /// A kept asynchronous call's run, which runs again if cut off.
    runs_again: bool,
}

/// How a call ran, as its answer tells.
struct Ran {
    outcome: Outcome,
    response_code: Option<i32>,
    error: Option<String>,
}

/// Keeps the tightest status so far; a refusal's status is the one its
/// answer reports.
fn count(rate: &mut Option<RateStatus>, counted: Counted) -> Result<(), Refusal> {
    match counted {
        Ok(None) => Ok(()),
        Ok(Some(status)) => {
            *rate = Some(rate.map_or(status, |r| r.tighter(status)));
            Ok(())
        }
        Err(Exceeded { scope, status, retry_after }) => {
            *rate = Some(status);
            Err(Refusal::RateLimited { scope, retry_after })
        }
    }
}

/// What stands between a trigger URL's prefix and its suffix: the connector
/// id, empty or malformed as the sender wrote it. The two must not overlap:
/// `/api/v1/connectors/trigger` starts with the one and ends with the
/// other, and names no connector.
fn connector_id_in(path: &str) -> Option<&str> {
    path.strip_prefix(TRIGGER_PREFIX)?.strip_suffix(TRIGGER_SUFFIX)
}

/// The organization's plan; a snapshot without it falls back to `free`.
fn plan_of(snapshot: &Snapshot, deployed: &DeployedConnector) -> Arc<Plan> {
    snapshot
        .organizations
        .get(&deployed.connector.organization_id)
        .and_then(|(plan, _)| snapshot.plans.get(plan))
        .cloned()
        .unwrap_or_else(|| Arc::new(Plan::free()))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last `X-Forwarded-For` hop that is not one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    let hops: Vec<IpAddr> = hops.filter_map(|hop| hop.trim().parse().ok()).collect();
    hops.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    #[test]
    fn a_trigger_path_has_room_for_an_id_between_its_prefix_and_suffix() {
        assert_eq!(connector_id_in("/api/v1/connectors/con_1/trigger"), Some("con_1"));
        assert_eq!(connector_id_in("/api/v1/connectors//trigger"), Some(""), "refused later as a missing id");
        assert_eq!(connector_id_in("/api/v1/connectors/a/b/trigger"), Some("a/b"), "refused later as no route");
        for path in ["/api/v1/connectors/trigger", "/api/v1/connectors/", "/api/v1/connectors", "/trigger", ""] {
            assert!(!Ingress::is_trigger_path(path), "{path}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.0.0.2"));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(client_ip(proxy, &headers, &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger, "a spoofed header from a stranger is ignored");
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
