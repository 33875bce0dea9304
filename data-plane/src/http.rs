//! The node's HTTP routes: probes and the trigger endpoint.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};

use crate::state::NodeState;
use crate::trigger::Ingress;

/// Answers one request.
pub async fn handle(
    ingress: Arc<Ingress>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (_, path) if Ingress::is_trigger_path(path) => ingress.handle(request, peer).await,
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        (&Method::GET, "/readyz") => readiness(&ingress.state),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":{"code":"not_found","message":"no such route"}}"#.to_owned()),
    })
}

/// 200 with the applied config version once a snapshot is in place, 503
/// before.
fn readiness(state: &NodeState) -> Response<Full<Bytes>> {
    if !state.is_ready() {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"starting"}"#.to_owned());
    }
    let snapshot = state.snapshot();
    let body = format!(
        r#"{{"status":"ready","config_version":{},"connected":{},"connectors":{}}}"#,
        snapshot.version,
        state.is_connected(),
        snapshot.connectors.len()
    );
    json(StatusCode::OK, body)
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}
