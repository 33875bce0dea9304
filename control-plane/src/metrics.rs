//! The control plane's Prometheus metrics (SPEC §12), on an HTTP port of
//! their own (`metrics_listen`), apart from the gRPC API: sync streams
//! open, events ingested, the config version, each connected node's lag
//! behind it, how long the store's operations take, the platform-event
//! outbox's depth and webhook attempts by outcome. Node ids are the
//! only free label, of connected nodes only, so the live fleet bounds them
//! (nodes gone stay in the store).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::store::{Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// What a platform-webhook attempt led to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryOutcome {
    /// `succeeded`, `retrying` or `failed`.
    pub outcome: &'static str,
}

/// Every metric of a control plane.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    config_version: Gauge,
    nodes_connected: Gauge,
    node_lag: Family<NodeLabel, Gauge>,
    outbox_depth: Gauge,
    /// Platform-webhook attempts, counted by the dispatcher.
    pub webhook_attempts: Family<DeliveryOutcome, Counter>,
    /// One scrape at a time: a scrape clears and refills `node_lag`.
    rendering: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// `events_ingested` and `sync_streams` are counted where those
    /// happen (`EventHub`, the sync service).
    pub fn new(events_ingested: Counter, sync_streams: Gauge, store: &Store) -> Metrics {
        let mut registry = Registry::with_prefix("hookplane");
        registry.register("store_operation_seconds", "Time the store took, by operation", store.latency());
        registry.register("events_ingested", "Events stored from nodes' reports", events_ingested);
        registry.register("sync_streams", "Node sync streams open on this control plane", sync_streams);
        let config_version = Gauge::default();
        registry.register("config_version", "The committed config version", config_version.clone());
        let nodes_connected = Gauge::default();
        registry.register("nodes_connected", "Nodes with a sync stream open to any replica", nodes_connected.clone());
        let node_lag = Family::<NodeLabel, Gauge>::default();
        registry.register("node_lag", "Config versions a node is behind", node_lag.clone());
        let outbox_depth = Gauge::default();
        registry.register("outbox_depth", "Platform events not fanned out into deliveries yet", outbox_depth.clone());
        let webhook_attempts = Family::<DeliveryOutcome, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Platform-webhook delivery attempts made here, by what they led to",
            webhook_attempts.clone(),
        );
        Metrics {
            registry,
            config_version,
            nodes_connected,
            node_lag,
            outbox_depth,
            webhook_attempts,
            rendering: tokio::sync::Mutex::new(()),
        }
    }

    /// The OpenMetrics text, with levels read from the store now.
    pub async fn render(&self, store: &Store) -> Result<String, StoreError> {
        let _one_at_a_time = self.rendering.lock().await;
        let version = store.config_version().await?;
        self.config_version.set(version);
        self.outbox_depth.set(store.outbox_depth().await?);
        self.node_lag.clear();
        let (mut after, mut connected) = (String::new(), 0);
        loop {
            let nodes = store.list_nodes(&after, 1_000).await?;
            for node in nodes.iter().filter(|node| node.connected) {
                connected += 1;
                let lag = (version - node.applied_config_version).max(0);
                self.node_lag.get_or_create(&NodeLabel { node: node.id.clone() }).set(lag);
            }
            match nodes.last() {
                Some(last) if nodes.len() == 1_000 => after = last.id.clone(),
                _ => break,
            }
        }
        self.nodes_connected.set(connected);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        Ok(text)
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, store: Store, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    // Scrapers' keep-alive connections end with the server.
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
            () = &mut shutdown => {
                connections.abort_all();
                return;
            }
        };
        let (metrics, store) = (metrics.clone(), store.clone());
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (metrics, store) = (metrics.clone(), store.clone());
            async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics, &store).await) }
        });
        connections.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}

async fn answer(request: &Request<hyper::body::Incoming>, metrics: &Metrics, store: &Store) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => match metrics.render(store).await {
            Ok(text) => (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text),
            Err(err) => {
                tracing::warn!(error = %err, "metrics could not be read from the store");
                (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the store did not answer\n".to_owned())
            }
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "metrics are at GET /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}
