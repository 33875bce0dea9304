//! A hookplane data-plane node: follows the control plane's configuration
//! over one gRPC stream, swaps immutable snapshots in atomically and serves
//! HTTP (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod cache;
pub mod compiled;
mod http;
pub mod snapshot;
pub mod state;
pub mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use snapshot::Snapshot;
pub use state::NodeState;

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
    /// Where the last good snapshot is kept; `None` keeps nothing.
    pub cache_dir: Option<PathBuf>,
    /// TLS towards the control plane (`https://` URLs).
    pub tls: Option<ClientTls>,
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
}

impl DataPlane {
    /// Loads the cached snapshot (if any), binds the HTTP listener and
    /// starts following the control plane.
    pub async fn start(mut config: NodeConfig) -> Result<DataPlane, StartError> {
        let cached = match &config.cache_dir {
            Some(dir) => cache::load(dir)?,
            None => None,
        };
        if let Some(snapshot) = &cached {
            tracing::info!(version = snapshot.version, "serving the cached snapshot until the control plane answers");
        }
        let state = Arc::new(NodeState::new(cached));
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
        let cache = config.cache_dir.clone().map(|dir| {
            let (latest, receiver) = watch::channel(None);
            tasks.spawn(cache::write_behind(dir, receiver, shutdown_watch.clone()));
            latest
        });
        tasks.spawn(sync::follow(Arc::new(config), state.clone(), cache, shutdown_watch.clone()));
        tasks.spawn(serve_http(listener, state.clone(), shutdown_watch));
        Ok(DataPlane { state, http_address, shutdown, tasks })
    }

    /// The snapshot requests see now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.snapshot()
    }

    /// The node's shared state.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// The bound HTTP address.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Stops syncing and serving, letting in-flight requests finish.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn serve_http(listener: TcpListener, state: Arc<NodeState>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|closing| *closing) => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request| http::handle(state.clone(), request));
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
