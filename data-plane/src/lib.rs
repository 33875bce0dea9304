//! A hookplane data-plane node: follows the control plane's configuration
//! over one gRPC stream, swaps immutable snapshots in atomically and serves
//! HTTP (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod cache;
pub mod compiled;
pub mod events;
mod http;
pub mod inbox;
pub mod limits;
pub mod outbound;
pub mod pipeline;
pub mod snapshot;
pub mod state;
pub mod sync;
pub mod trigger;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookplane::egress::EgressPolicy;
use hookplane::sealing::SecretBox;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use outbound::breaker::BreakerSettings;
pub use snapshot::Snapshot;
pub use state::NodeState;
pub use trigger::IngressSettings;

use events::EventSink;
use inbox::Inbox;
use outbound::Outbound;
use pipeline::Executor;
use trigger::Ingress;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Stable id of this node in the fleet.
    pub node_id: String,
    /// The control plane's gRPC URL, e.g. `http://127.0.0.1:50051`.
    pub control_plane_url: String,
    /// This node's token (`hpn_…`).
    pub node_token: String,
    /// Where to serve HTTP.
    pub http_listen: SocketAddr,
    /// How the node is listed; defaults to the bound HTTP address.
    pub advertise_address: String,
    /// Where the last good snapshot and unacknowledged events are kept;
    /// `None` keeps nothing.
    pub cache_dir: Option<PathBuf>,
    /// Seals the snapshot kept in `cache_dir`, which holds opened secrets;
    /// without it the snapshot stays in memory only (events and accepted
    /// calls, which hold no secret, are still kept there).
    pub snapshot_key: Option<SecretBox>,
    /// Events held in memory for the control plane; beyond this many,
    /// the oldest move to the spool in `cache_dir` while the control
    /// plane catches up. Without a cache dir, memory is the spool.
    pub max_queued_events: usize,
    /// TLS towards the control plane (`https://` URLs).
    pub tls: Option<ClientTls>,
    /// Which addresses lookups, performs and token calls may reach.
    pub egress: EgressPolicy,
    /// Limits of the trigger endpoint.
    pub ingress: IngressSettings,
    /// When circuit breakers open.
    pub breaker: BreakerSettings,
    /// Delay before the first retry when a connector sets none.
    pub retry_base: Duration,
    /// Calls of asynchronous connectors accepted and not run yet; beyond,
    /// such calls are shed with 503.
    pub max_accepted_calls: usize,
}

impl NodeConfig {
    /// A node with production defaults: public egress only, SPEC limits.
    pub fn new(node_id: String, control_plane_url: String, node_token: String, http_listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            node_id,
            control_plane_url,
            node_token,
            http_listen,
            advertise_address: String::new(),
            cache_dir: None,
            snapshot_key: None,
            max_queued_events: events::MAX_QUEUED_EVENTS,
            max_accepted_calls: inbox::MAX_ACCEPTED_CALLS,
            tls: None,
            egress: EgressPolicy::public_only(),
            ingress: IngressSettings::default(),
            breaker: BreakerSettings::default(),
            retry_base: Duration::from_millis(500),
        }
    }
}

/// How a node verifies the control plane and, for mTLS, identifies itself.
#[derive(Clone)]
pub struct ClientTls {
    /// CA that signed the control plane's certificate, as PEM.
    pub ca_pem: String,
    /// The node's client certificate and key, as PEM, for mTLS.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("mtls", &self.identity.is_some()).finish_non_exhaustive()
    }
}

/// What failed starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding the HTTP listener on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

/// A running node.
#[derive(Debug)]
pub struct DataPlane {
    state: Arc<NodeState>,
    http_address: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    events: EventSink,
    stop_kept_calls: watch::Sender<bool>,
    kept_calls: tokio::task::JoinHandle<()>,
}

impl DataPlane {
    /// Loads the cached snapshot (if any), binds the HTTP listener and
    /// starts following the control plane.
    pub async fn start(mut config: NodeConfig) -> Result<DataPlane, StartError> {
        let cached = match (&config.cache_dir, &config.snapshot_key) {
            (Some(dir), Some(key)) => {
                cache::forget_unsealed(dir, true);
                match cache::load(dir, key) {
                    Ok(cached) => cached,
                    // Another key or a damaged file: start empty and wait
                    // for the control plane, as a new node would.
                    Err(err @ (cache::CacheError::Unopenable(_) | cache::CacheError::Corrupt(_))) => {
                        tracing::error!(error = %err, "not serving the cached snapshot");
                        None
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            (Some(dir), None) => {
                cache::forget_unsealed(dir, false);
                tracing::warn!(
                    "no snapshot key: the snapshot (it holds secrets) is kept in memory only, so a restart \
                     during a control-plane outage serves nothing until the control plane answers"
                );
                None
            }
            (None, _) => None,
        };
        if let Some(snapshot) = &cached {
            tracing::info!(version = snapshot.version, "serving the cached snapshot until the control plane answers");
        }
        let state = Arc::new(NodeState::new(cached));
        if let Some(ordinal) = config.cache_dir.as_deref().and_then(cache::load_ordinal) {
            state.event_ids().set_ordinal(ordinal);
        }
        let listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartError::Bind { address: config.http_listen, source })?;
        let http_address =
            listener.local_addr().map_err(|source| StartError::Bind { address: config.http_listen, source })?;
        if config.advertise_address.is_empty() {
            config.advertise_address = http_address.to_string();
        }
        let (shutdown, shutdown_watch) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let cache = config.cache_dir.clone().zip(config.snapshot_key.clone()).map(|(dir, key)| {
            let (latest, receiver) = watch::channel(None);
            tasks.spawn(cache::write_behind(dir, key, receiver, shutdown_watch.clone()));
            latest
        });
        let config = Arc::new(config);
        let (sink, events) = EventSink::new();
        let sink_handle = sink.clone();
        let executor = Executor {
            outbound: Outbound::new(config.egress.clone()),
            breakers: outbound::breaker::Breakers::new(config.breaker),
            tokens: Default::default(),
            retry_base: config.retry_base,
            limits: Default::default(),
        };
        let (inbox, kept_calls, left_calls) = Inbox::open(config.cache_dir.as_deref(), config.max_accepted_calls);
        if !left_calls.is_empty() {
            tracing::info!(calls = left_calls.len(), "running the accepted calls the last run left");
        }
        let ingress = Arc::new(Ingress::new(
            state.clone(),
            config.ingress.clone(),
            executor,
            sink,
            state.event_ids().clone(),
            config.node_id.clone(),
            inbox,
        ));
        // Kept calls stop running before anything else stops, so none
        // records an event after the reporter's last batch.
        let (stop_kept_calls, stop_watch) = watch::channel(false);
        let kept_calls =
            tokio::spawn(trigger::accepted::run_kept_calls(ingress.clone(), left_calls, kept_calls, stop_watch));
        tasks.spawn(sync::follow(config.clone(), state.clone(), cache, shutdown_watch.clone()));
        tasks.spawn(events::report(config.clone(), events, shutdown_watch.clone()));
        tasks.spawn(evict_idle(ingress.clone(), shutdown_watch.clone()));
        tasks.spawn(serve_http(listener, ingress, shutdown_watch));
        Ok(DataPlane { state, http_address, shutdown, tasks, events: sink_handle, stop_kept_calls, kept_calls })
    }

    /// The snapshot requests see now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.snapshot()
    }

    /// The node's shared state.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Events recorded but neither stored by the control plane nor spooled
    /// yet: the reporter's backlog.
    pub fn pending_events(&self) -> usize {
        self.events.pending()
    }

    /// The bound HTTP address.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Stops syncing and serving, letting in-flight requests finish.
    pub async fn shutdown(mut self) {
        // Accepted calls still running are dropped and run on the next
        // start; what they recorded reaches the reporter before it stops.
        self.stop_kept_calls.send_replace(true);
        let _ = self.kept_calls.await;
        self.shutdown.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Drops idle limiter and breaker state now and then.
async fn evict_idle(ingress: Arc<Ingress>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                ingress.limiters.evict_idle();
                ingress.executor.breakers.evict_idle();
            }
            _ = shutdown.wait_for(|closing| *closing) => return,
        }
    }
}

/// Connections a node keeps open at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 10_000;
/// Time a client gets to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_http(listener: TcpListener, ingress: Arc<Ingress>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).max_concurrent_streams(256);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit,
            _ = shutdown.wait_for(|closing| *closing) => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|closing| *closing) => break,
        };
        let _ = stream.set_nodelay(true);
        let ingress = ingress.clone();
        let service = hyper::service::service_fn(move |request| http::handle(ingress.clone(), request, peer));
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}
