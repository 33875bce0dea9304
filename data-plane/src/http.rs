//! The node's HTTP routes: probes and the trigger endpoint on the trigger
//! port; `GET /metrics` on a port of its own ([`serve_metrics`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use tokio::sync::watch;

use crate::metrics::Levels;
use crate::state::NodeState;
use crate::trigger::Ingress;
use crate::trigger::response::{Refusal, json_response};

/// Answers one request; `held` (the listener's mark of a call in flight)
/// lives until the answer is ready.
pub async fn handle<Held: Send>(
    ingress: Arc<Ingress>,
    request: Request<Incoming>,
    peer: SocketAddr,
    held: Held,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (_, path) if Ingress::is_trigger_path(path) => ingress.handle(request, peer).await,
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        (&Method::GET, "/readyz") => readiness(&ingress.state),
        _ => Refusal::NoRoute.into_response(None),
    };
    drop(held);
    Ok(response)
}

/// 200 with the applied config version once a snapshot is in place, 503
/// before, and 503 again once the node began to stop. Whether the node follows the control plane is shown, not
/// judged: a node cut off from it still serves its snapshot.
fn readiness(state: &NodeState) -> Response<Full<Bytes>> {
    if !state.is_ready() {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"starting"}"#.to_owned());
    }
    if state.is_draining() {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#.to_owned());
    }
    let snapshot = state.snapshot();
    let body = serde_json::json!({
        "status": "ready",
        "config_version": snapshot.version,
        "connectors": snapshot.connectors.len(),
        "connected": state.is_connected(),
        "sync": if state.is_sync_restarting() { "restarting" } else { "following" },
        "sync_errors": state.sync_errors(),
        "last_sync_error": state.last_sync_error().as_deref(),
        "limiting": limiting(state),
    });
    json(StatusCode::OK, body.to_string())
}

/// Every metric, in the OpenMetrics text format Prometheus scrapes.
fn metrics(ingress: &Ingress) -> Response<Full<Bytes>> {
    let state = &ingress.state;
    let snapshot = state.snapshot();
    let levels = Levels {
        config_version: snapshot.version,
        connectors: snapshot.connectors.len() as i64,
        queued_events: ingress.events.pending() as i64,
        waiting_calls: ingress.inbox.waiting() as i64,
        sync_errors: state.sync_errors() as i64,
        connected: state.is_connected(),
        redis_failures: state.fleet().map_or(0, |fleet| fleet.failures().0 as i64),
        circuits_open: ingress.executor.breakers.open_now() as i64,
    };
    let mut response = Response::new(Full::new(Bytes::from(ingress.metrics.render(levels))));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// The limiting policy the node follows, and how its Redis fares.
fn limiting(state: &NodeState) -> serde_json::Value {
    match state.fleet() {
        None => serde_json::json!({"policy": "local"}),
        Some(fleet) => {
            let (failures, last_error) = fleet.failures();
            serde_json::json!({
                "policy": "redis",
                "fail_closed": fleet.policy().fail_closed,
                "redis_failures": failures,
                "last_redis_error": last_error,
            })
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    json_response(status, Bytes::from(body), None)
}

/// Serves `GET /metrics` (and nothing else) on `listener` until `stop`:
/// the operator's port, apart from the senders'.
pub async fn serve_metrics(listener: tokio::net::TcpListener, ingress: Arc<Ingress>, mut stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %err, "metrics listener failed to accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { drop(stop.wait_for(|stop| *stop).await) } => {
                connections.abort_all();
                return;
            }
        };
        let ingress = ingress.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let response = match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => metrics(&ingress),
                _ => json(StatusCode::NOT_FOUND, r#"{"error":"metrics are at GET /metrics"}"#.to_owned()),
            };
            async move { Ok::<_, Infallible>(response) }
        });
        connections.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(err) = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}
