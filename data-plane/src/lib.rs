//! A hookplane data-plane node: follows the control plane's configuration
//! over one gRPC stream, swaps immutable snapshots in atomically and serves
//! HTTP (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod cache;
pub mod events;
pub mod fleet;
mod http;
pub mod inbox;
pub mod limits;
pub mod listener;
pub mod metrics;
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

use hookplane_egress::EgressPolicy;
use hookplane_model::sealing::SecretBox;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use listener::ConnectionSettings;
pub use outbound::breaker::BreakerSettings;
pub use snapshot::Snapshot;
pub use state::NodeState;
pub use trigger::IngressSettings;

use events::EventSink;
use events::ids::EventIds;
use inbox::Inbox;
use outbound::Outbound;
use pipeline::Executor;
use trigger::Ingress;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Stable id of this node in the fleet.
    pub node_id: String,
    /// The control plane's gRPC URL, e.g. `http://127.0.0.1:50051`, or
    /// several replicas' separated by commas: the node connects to the
    /// first that answers, starting from one its id picks, so a fleet
    /// spreads over the replicas and moves to another when one goes.
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
    /// Connection caps and timeouts of the HTTP listener.
    pub connections: ConnectionSettings,
    /// When circuit breakers open.
    pub breaker: BreakerSettings,
    /// Delay before the first retry when a connector sets none.
    pub retry_base: Duration,
    /// Calls of asynchronous connectors accepted and not run yet; beyond,
    /// such calls are shed with 503.
    pub max_accepted_calls: usize,
    /// Where `GET /metrics` is served, a port of its own; `None` serves
    /// no metrics. Never the trigger port: what a node's traffic looks
    /// like is the operator's to see, not every sender's.
    pub metrics_listen: Option<SocketAddr>,
    /// Where events are stored when the control plane runs in this
    /// process (`hookplane dev`): handed over directly, not reported over
    /// `ReportEvents`. `None` (every node of a fleet) reports them.
    pub local_events: Option<events::LocalEvents>,
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
            connections: ConnectionSettings::default(),
            breaker: BreakerSettings::default(),
            retry_base: Duration::from_millis(500),
            metrics_listen: None,
            local_events: None,
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
    #[error("binding a listener (HTTP or metrics) on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

/// A running node.
#[derive(Debug)]
pub struct DataPlane {
    state: Arc<NodeState>,
    http_address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    pending_events: Arc<AtomicUsize>,
    /// How long `/readyz` answers 503 before the listener closes.
    drain_delay: Duration,
    stop_http: watch::Sender<bool>,
    http: JoinHandle<()>,
    stop_kept_calls: watch::Sender<bool>,
    kept_calls: JoinHandle<()>,
    /// Stops the sync stream, the cache writer and the evictor.
    stop_background: watch::Sender<bool>,
    background: JoinSet<()>,
    reporter: JoinHandle<()>,
}

/// Serves triggers on `listener` and follows the control plane until
/// `shutdown` completes, then stops without losing an answered call's
/// event ([`DataPlane::shutdown`]). What a binary or an embedder runs.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let node = DataPlane::start_on(config, listener).await?;
    tracing::info!(address = %node.http_address(), "data plane serving");
    shutdown.await;
    node.shutdown().await;
    Ok(())
}

impl DataPlane {
    /// Binds `config.http_listen`, then starts as [`DataPlane::start_on`].
    pub async fn start(config: NodeConfig) -> Result<DataPlane, StartError> {
        let listener = listener::bind(config.http_listen)
            .map_err(|source| StartError::Bind { address: config.http_listen, source })?;
        DataPlane::start_on(config, listener).await
    }

    /// Loads the cached snapshot (if any), serves HTTP on `listener` and
    /// starts following the control plane.
    pub async fn start_on(mut config: NodeConfig, listener: TcpListener) -> Result<DataPlane, StartError> {
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
        let mut state = NodeState::new(cached);
        if let Some(dir) = &config.cache_dir {
            state = state.with_event_ids(EventIds::reserving_in(dir.clone()));
        }
        let state = Arc::new(state);
        if let Some(ordinal) = config.cache_dir.as_deref().and_then(cache::load_ordinal) {
            state.event_ids().set_ordinal(ordinal);
        }
        let http_address =
            listener.local_addr().map_err(|source| StartError::Bind { address: config.http_listen, source })?;
        if config.advertise_address.is_empty() {
            config.advertise_address = http_address.to_string();
        }
        // Bound before anything is started: a port taken fails the start
        // with nothing left running.
        let bound_metrics = config.metrics_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(address) => Some(listener::bind(address).map_err(|source| StartError::Bind { address, source })?),
        };
        let (stop_background, background_watch) = watch::channel(false);
        let mut background = JoinSet::new();
        let cache = config.cache_dir.clone().zip(config.snapshot_key.clone()).map(|(dir, key)| {
            let (latest, receiver) = watch::channel(None);
            background.spawn(cache::write_behind(dir, key, receiver, background_watch.clone()));
            latest
        });
        let config = Arc::new(config);
        let (sink, events) = EventSink::new();
        let pending_events = sink.pending_count();
        let executor = Executor {
            outbound: Outbound::new(config.egress.clone()),
            breakers: outbound::breaker::Breakers::new(config.breaker),
            circuits: state.circuits.clone(),
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
        let reporter = tokio::spawn(events::report(config.clone(), events));
        let (stop_kept_calls, stop_watch) = watch::channel(false);
        let kept_calls =
            tokio::spawn(trigger::accepted::run_kept_calls(ingress.clone(), left_calls, kept_calls, stop_watch));
        background.spawn(sync::follow(config.clone(), state.clone(), ingress.clone(), cache, background_watch.clone()));
        let metrics_address = match metrics_listener {
            None => None,
            Some(metrics) => {
                let bound =
                    metrics.local_addr().map_err(|source| StartError::Bind { address: bound_metrics, source })?;
                background.spawn(http::serve_metrics(metrics, ingress.clone(), background_watch.clone()));
                Some(bound)
            }
        };
        background.spawn(evict_idle(ingress.clone(), background_watch));
        let (stop_http, http_watch) = watch::channel(false);
        let http = tokio::spawn(listener::serve(listener, ingress, config.connections.clone(), http_watch));
        Ok(DataPlane {
            state,
            http_address,
            metrics_address,
            pending_events,
            drain_delay: config.connections.drain_delay,
            stop_http,
            http,
            stop_kept_calls,
            kept_calls,
            stop_background,
            background,
            reporter,
        })
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
        self.pending_events.load(Ordering::Relaxed)
    }

    /// The bound HTTP address.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Stops the node without losing an answered call's event (SPEC §4):
    /// `/readyz` answers 503 `draining` for the drain delay while calls are
    /// still served, so a load balancer stops sending; then the listener
    /// closes and the calls in flight finish, each answering only once its
    /// event is kept (up to the drain timeout); kept calls still running
    /// stop, to run again on the next start; then, with no one left to
    /// record an event, the reporter delivers or spools what is queued and
    /// ends.
    pub async fn shutdown(mut self) {
        self.state.start_draining();
        if !self.drain_delay.is_zero() {
            tracing::info!(delay = ?self.drain_delay, "draining: /readyz answers 503 before the listener closes");
            tokio::time::sleep(self.drain_delay).await;
        }
        self.stop_http.send_replace(true);
        let _ = self.http.await;
        self.stop_kept_calls.send_replace(true);
        let _ = self.kept_calls.await;
        self.stop_background.send_replace(true);
        while self.background.join_next().await.is_some() {}
        let _ = self.reporter.await;
    }
}

/// Drops idle limiter, breaker and delivery state now and then.
async fn evict_idle(ingress: Arc<Ingress>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                ingress.limiters.evict_idle();
                ingress.executor.breakers.evict_idle();
                ingress.deliveries.sweep();
            }
            _ = shutdown.wait_for(|closing| *closing) => return,
        }
    }
}
