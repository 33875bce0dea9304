//! Following the control plane: one `Sync` stream, reconnected with
//! jittered exponential backoff, resuming from the applied version.
//!
//! The task that does so is supervised: should it ever crash, the crash
//! is counted and shown (`/readyz`, and the control plane's node list via
//! the next hello) and the task restarts with backoff, instead of the node
//! silently serving an ever older snapshot.

use std::sync::Arc;
use std::time::Duration;

use hookplane::api::v1::{self as api, node_sync_service_client::NodeSyncServiceClient, sync_request::Message};
use hookplane_convert as convert;
use rand::Rng as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::NodeConfig;
use crate::snapshot::Snapshot;
use crate::state::NodeState;
use crate::trigger::Ingress;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why a sync session ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connecting to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("control plane refused the stream: {0}")]
    Refused(#[from] tonic::Status),
    #[error("update for version {base} arrived while the node is at {current}; resyncing in full")]
    OutOfOrder { base: i64, current: i64 },
    #[error("snapshot at version {0} does not match the control plane's content hash; resyncing in full")]
    HashMismatch(i64),
    #[error("building the snapshot failed: {0}")]
    Build(tokio::task::JoinError),
    #[error("the sync stream closed")]
    Closed,
}

impl SyncError {
    /// Whether the node's own state is in doubt, not the control plane or
    /// the network at fault: the next session starts from a whole
    /// snapshot and tells the control plane, so the node list shows it.
    fn is_node_side(&self) -> bool {
        matches!(self, SyncError::OutOfOrder { .. } | SyncError::HashMismatch(_) | SyncError::Build(_))
    }
}

/// Follows the control plane until `shutdown` turns true, restarting the
/// follower with backoff if it crashes.
pub async fn follow(
    config: Arc<NodeConfig>,
    state: Arc<NodeState>,
    ingress: Arc<Ingress>,
    cache: Option<watch::Sender<Option<Arc<Snapshot>>>>,
    shutdown: watch::Receiver<bool>,
) {
    let cache = cache.map(Arc::new);
    let crash_state = state.clone();
    supervise(shutdown.clone(), move |crash| {
        if let Some(message) = &crash {
            crash_state.record_sync_crash(message.clone());
        }
        follow_sessions(config.clone(), state.clone(), ingress.clone(), cache.clone(), shutdown.clone(), crash)
    })
    .await;
}

/// Runs the task `start` makes until it returns; when it panics, logs the
/// panic and, after a backoff, starts it again, telling it what happened.
async fn supervise<F, T>(mut shutdown: watch::Receiver<bool>, mut start: F)
where
    F: FnMut(Option<String>) -> T,
    T: Future<Output = ()> + Send + 'static,
{
    let mut backoff = BACKOFF_START;
    let mut crash = None;
    loop {
        let Err(failure) = tokio::spawn(start(crash.take())).await else { return };
        let message = format!("the sync task crashed: {failure}");
        tracing::error!(error = %message, retry_in_ms = backoff.as_millis() as u64, "restarting config sync");
        crash = Some(message);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|closing| *closing) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Runs sync sessions until `shutdown` turns true. `crash` is why the
/// previous follower stopped, if it crashed.
async fn follow_sessions(
    config: Arc<NodeConfig>,
    state: Arc<NodeState>,
    ingress: Arc<Ingress>,
    cache: Option<Arc<watch::Sender<Option<Arc<Snapshot>>>>>,
    mut shutdown: watch::Receiver<bool>,
    crash: Option<String>,
) {
    let mut backoff = BACKOFF_START;
    // A crash may have left anything half done: start from a whole snapshot.
    let mut force_full = crash.is_some();
    let mut failure = crash;
    loop {
        let cache = cache.as_deref();
        let outcome = tokio::select! {
            outcome = session(&config, &state, &ingress, cache, force_full, failure.as_deref()) => outcome,
            _ = shutdown.wait_for(|closing| *closing) => return,
        };
        let (progressed, err) = outcome;
        force_full = err.is_node_side();
        if progressed {
            backoff = BACKOFF_START;
            failure = None;
        }
        if err.is_node_side() {
            failure = Some(err.to_string());
        }
        state.record_sync_error(err.to_string());
        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "config sync interrupted; serving the current snapshot");
        // Jitter (half to all of the backoff): a fleet that lost the control
        // plane together does not come back in lockstep.
        let wait = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|closing| *closing) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One stream: hello, then apply updates until it breaks. Returns whether
/// any update was applied, and why it ended.
async fn session(
    config: &NodeConfig,
    state: &NodeState,
    ingress: &Arc<Ingress>,
    cache: Option<&watch::Sender<Option<Arc<Snapshot>>>>,
    force_full: bool,
    failure: Option<&str>,
) -> (bool, SyncError) {
    let mut progressed = false;
    let err = match run_session(config, state, ingress, cache, force_full, failure, &mut progressed).await {
        Ok(()) => SyncError::Closed,
        Err(err) => err,
    };
    (progressed, err)
}

async fn run_session(
    config: &NodeConfig,
    state: &NodeState,
    ingress: &Arc<Ingress>,
    cache: Option<&watch::Sender<Option<Arc<Snapshot>>>>,
    force_full: bool,
    failure: Option<&str>,
    progressed: &mut bool,
) -> Result<(), SyncError> {
    let mut client = NodeSyncServiceClient::new(connect(config).await?);
    let (outbound, outbound_rx) = mpsc::channel(8);
    let current = state.snapshot();
    let hello = api::NodeHello {
        node_id: config.node_id.clone(),
        build_version: env!("CARGO_PKG_VERSION").to_owned(),
        capabilities: Vec::new(),
        applied_version: if force_full { 0 } else { current.version },
        content_hash: current.content_hash.clone(),
        address: config.advertise_address.clone(),
        previous_failure: failure.unwrap_or_default().to_owned(),
    };
    outbound.send(api::SyncRequest { message: Some(Message::Hello(hello)) }).await.map_err(|_| SyncError::Closed)?;
    let request = authorized(config, ReceiverStream::new(outbound_rx))?;
    let mut inbound = client.sync(request).await?.into_inner();
    let _connected = Connected::new(state);
    async {
        let mut pending: Option<api::ConfigUpdate> = None;
        loop {
            // Breaker transitions go out as they happen (and those kept
            // while the stream was down, first).
            let circuits = state.circuits.take();
            if !circuits.is_empty() {
                let transitions = circuits.iter().map(convert::circuit_transition_to_api).collect();
                let message = Message::Circuits(api::CircuitTransitions { transitions });
                if outbound.send(api::SyncRequest { message: Some(message) }).await.is_err() {
                    state.circuits.put_back(circuits);
                    return Err(SyncError::Closed);
                }
            }
            let message = tokio::select! {
                message = inbound.message() => message?,
                () = state.circuits.added() => continue,
            };
            let Some(message) = message else { break };
            if let Some(run) = message.live_run {
                // Runs beside the stream (a perform may take seconds); its
                // answer joins the stream's other messages.
                tokio::spawn(live_run(ingress.clone(), run, outbound.clone()));
            }
            if let Some(registration) = message.registration {
                let ordinal = i64::from(registration.ordinal);
                state.event_ids().set_ordinal(ordinal);
                if let Some(dir) = &config.cache_dir
                    && let Err(err) = crate::cache::store_ordinal(dir, ordinal)
                {
                    tracing::warn!(error = %err, "could not remember the node's ordinal");
                }
                match convert::limiting_from_api(registration.limiting.as_ref()) {
                    Ok(policy) => state.set_limiting(&policy),
                    Err(err) => {
                        tracing::error!(error = %err, "the control plane sent a limiting policy this node cannot use")
                    }
                }
                // Nothing newer to come: what the node holds is current.
                if registration.config_version <= state.snapshot().version {
                    state.mark_synced();
                }
            }
            let Some(part) = message.update else { continue };
            let update = match pending.take() {
                Some(mut earlier) if earlier.version == part.version => {
                    convert::merge_update_parts(&mut earlier, part);
                    earlier
                }
                _ => part,
            };
            if update.more_parts {
                pending = Some(update);
                continue;
            }
            let reply = apply(cache, state, update, force_full && !*progressed).await?;
            *progressed = true;
            outbound.send(reply).await.map_err(|_| SyncError::Closed)?;
        }
        Ok(())
    }
    .await
}

/// Executes a live test run and tells the control plane how it went.
async fn live_run(ingress: Arc<Ingress>, run: api::LiveRun, outbound: mpsc::Sender<api::SyncRequest>) {
    let result = match ingress.live_run(&run.connector_id, &run.payload, run.config_version).await {
        Ok(ran) => api::LiveRunResult {
            run_id: run.run_id,
            event_id: ran.event_id,
            status: convert::event_status_to_api(ran.outcome.event_status()) as i32,
            response_code: ran.response_code,
            error: ran.error.unwrap_or_default(),
            refusal: String::new(),
        },
        Err(refused) => {
            tracing::warn!(connector = %run.connector_id, reason = %refused, "refused a live test run");
            api::LiveRunResult { run_id: run.run_id, refusal: refused.to_string(), ..Default::default() }
        }
    };
    let _ = outbound.send(api::SyncRequest { message: Some(Message::LiveRunResult(result)) }).await;
}

/// Marks the node connected while alive, however the session ends.
struct Connected<'s>(&'s NodeState);

impl Connected<'_> {
    fn new(state: &NodeState) -> Connected<'_> {
        state.set_connected(true);
        Connected(state)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.set_connected(false);
    }
}

/// A channel to the control plane: the first of its replicas that answers,
/// starting from the one this node's id picks (the same one every time,
/// different ones across a fleet), then the others in turn.
pub(crate) async fn connect(config: &NodeConfig) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let urls: Vec<&str> = config.control_plane_url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let Some(&first) = urls.first() else { return connect_to(config, &config.control_plane_url).await };
    // FNV-1a: stable across processes and builds, unlike std's hasher.
    let picked =
        config.node_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let start = (picked % urls.len() as u64) as usize;
    let mut last_error = None;
    for url in urls.iter().cycle().skip(start).take(urls.len()) {
        match connect_to(config, url).await {
            Ok(channel) => return Ok(channel),
            Err(err) => {
                tracing::debug!(url, error = %err, "control-plane replica did not answer; trying the next");
                last_error = Some(err);
            }
        }
    }
    match last_error {
        Some(err) => Err(err),
        None => connect_to(config, first).await,
    }
}

/// A channel to one control-plane URL, with TLS when configured and HTTP/2
/// keepalives so a dead peer is noticed.
async fn connect_to(config: &NodeConfig, url: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())?;
    if let Some(tls) = &config.tls {
        let mut tls_config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            tls_config = tls_config.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(tls_config)?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await
}

/// A request carrying the node token (left out with an mTLS identity).
pub(crate) fn authorized<T>(config: &NodeConfig, message: T) -> Result<tonic::Request<T>, tonic::Status> {
    let mut request = tonic::Request::new(message);
    if !config.node_token.is_empty() {
        let token =
            format!("Bearer {}", config.node_token).parse().map_err(|_| tonic::Status::unauthenticated("bad token"))?;
        request.metadata_mut().insert("authorization", token);
    }
    Ok(request)
}

/// Builds the next snapshot from `update` off the request path, swaps it in,
/// persists it and returns the ack or nack.
async fn apply(
    cache: Option<&watch::Sender<Option<Arc<Snapshot>>>>,
    state: &NodeState,
    update: api::ConfigUpdate,
    expect_full: bool,
) -> Result<api::SyncRequest, SyncError> {
    state.record_update(update.full, prost::Message::encoded_len(&update));
    let current = state.snapshot();
    if !update.full && (expect_full || update.base_version != current.version) {
        return Err(SyncError::OutOfOrder { base: update.base_version, current: current.version });
    }
    let started = std::time::Instant::now();
    let expected_hash = update.content_hash.clone();
    let (next, rejected) = tokio::task::spawn_blocking(move || {
        let (delta, conversion_rejections) = convert::config_delta_from_api(&update);
        current.apply(&delta, conversion_rejections)
    })
    .await
    .map_err(SyncError::Build)?;
    let version = next.version;
    if next.content_hash != expected_hash {
        // A missed or misapplied change: keep serving the current snapshot
        // and fetch a whole one.
        return Err(SyncError::HashMismatch(version));
    }
    let next = Arc::new(next);
    state.swap(next.clone());
    state.apply_seconds.observe(started.elapsed().as_secs_f64());
    tracing::info!(
        version,
        rejected = rejected.len(),
        build_ms = started.elapsed().as_millis() as u64,
        "applied config"
    );
    // Persisted behind the swap, coalesced: the ack does not wait on disk.
    if let Some(cache) = cache {
        cache.send_replace(Some(next.clone()));
    }
    let message = if rejected.is_empty() {
        Message::Ack(api::ConfigAck { version })
    } else {
        for r in &rejected {
            tracing::warn!(connector = %r.connector_id, reason = %r.reason, "rejected connector");
        }
        Message::Nack(api::ConfigNack {
            version,
            rejected: rejected
                .into_iter()
                .map(|r| api::ConnectorRejection { connector_id: r.connector_id, reason: r.reason })
                .collect(),
        })
    };
    Ok(api::SyncRequest { message: Some(message) })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_crashed_task_restarts_knowing_why() {
        let (_stop, shutdown) = watch::channel(false);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let seen = starts.clone();
        supervise(shutdown, move |crash: Option<String>| {
            let mut starts = seen.lock().unwrap();
            starts.push(crash);
            let run = starts.len();
            async move {
                assert!(run > 2, "run {run} crashes");
            }
        })
        .await;
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), 3, "two crashes, then a run that returns");
        assert_eq!(starts[0], None);
        let crash = starts[1].as_deref().unwrap();
        assert!(crash.starts_with("the sync task crashed: task") && crash.contains("run 1 crashes"), "{crash}");
        assert!(starts[2].as_deref().unwrap().contains("run 2 crashes"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_backoff_after_a_crash() {
        let (stop, shutdown) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(shutdown, |_| async { panic!("always") }));
        tokio::task::yield_now().await;
        stop.send_replace(true);
        supervisor.await.expect("the supervisor returns instead of restarting forever");
    }
}
