//! One node's sync stream on the control plane.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookplane::api::v1::{self as api, sync_request::Message};
use hookplane_convert as convert;
use hookplane_model::{self as model, LimitingPolicy, Node};
use std::collections::HashMap;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tonic::{Status, Streaming};

use super::COALESCE;
use super::feed::ConfigFeed;
use super::live::LiveRuns;
use super::presence::Presence;
use super::routes::encode;
use crate::error::ApiError;
use crate::store::{Store, StoreError};

/// How often a connected node's `last_seen_time` is refreshed when it
/// says nothing.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a node may take to answer a full snapshot before its place
/// goes to another node's.
const SNAPSHOT_ANSWER: Duration = Duration::from_secs(30);

/// Characters of a node's reported failure that are kept.
const MAX_FAILURE_CHARS: usize = 1024;

pub(super) struct Session {
    store: Store,
    feed: ConfigFeed,
    presence: Presence,
    limiting: Arc<LimitingPolicy>,
    node: Node,
    /// What the node said failed on its side before this session.
    previous_failure: String,
    /// The last version sent; every delta starts here.
    sent: i64,
    /// Held from sending a full snapshot until the node answers it (or
    /// [`SNAPSHOT_ANSWER`] passes): see [`ConfigFeed::admit_full_snapshot`].
    snapshot_in_flight: Option<(OwnedSemaphorePermit, tokio::time::Instant)>,
    sender: mpsc::Sender<Result<Bytes, Status>>,
    live: LiveRuns,
    /// Live runs sent to the node, awaiting its answer.
    runs: HashMap<String, oneshot::Sender<api::LiveRunResult>>,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the node went away")]
    Gone,
}

impl Session {
    pub(super) fn new(
        store: Store,
        feed: ConfigFeed,
        presence: Presence,
        limiting: Arc<LimitingPolicy>,
        hello: api::NodeHello,
        sender: mpsc::Sender<Result<Bytes, Status>>,
        live: LiveRuns,
    ) -> Session {
        let node = Node {
            id: hello.node_id.trim().to_owned(),
            address: hello.address,
            build_version: hello.build_version,
            applied_config_version: hello.applied_version,
            connected: true,
            last_seen_time: model::now(),
            sync_errors: 0,
            last_error: String::new(),
        };
        Session {
            store,
            feed,
            presence,
            limiting,
            node,
            previous_failure: hello.previous_failure.trim().chars().take(MAX_FAILURE_CHARS).collect(),
            sent: hello.applied_version,
            snapshot_in_flight: None,
            sender,
            live,
            runs: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, mut inbound: Streaming<api::SyncRequest>, mut shutdown: watch::Receiver<bool>) {
        if let Ok(Some(known)) = self.store.get_node(&self.node.id).await {
            self.node.sync_errors = known.sync_errors;
        }
        if !self.previous_failure.is_empty() {
            self.node.sync_errors += 1;
            self.node.last_error = format!("node: {}", self.previous_failure);
            tracing::warn!(node = %self.node.id, failure = %self.node.last_error, "node reports a sync failure");
        }
        let mut current = self.feed.current();
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        let result: Result<(), SessionError> = async {
            self.store.upsert_node(&self.node).await?;
            let ordinal = self.store.node_ordinal(&self.node.id).await?;
            let config_version = self.store.config_version().await?;
            let registration = api::NodeRegistration {
                ordinal: ordinal as i32,
                config_version,
                limiting: Some(convert::limiting_to_api(&self.limiting)),
            };
            let hello = api::SyncResponse { registration: Some(registration), ..Default::default() };
            self.sender.send(Ok(encode(&hello))).await.map_err(|_| SessionError::Gone)?;
            // Live runs reach this node while the stream is open.
            let mut link = self.live.register(&self.node.id, self.node.applied_config_version);
            // Always once: a node may hold a version this store never
            // reached (another database), which only a read can tell.
            self.send_changes().await?;
            loop {
                if *current.borrow_and_update() > self.sent {
                    self.send_changes().await?;
                }
                link.applied.store(self.node.applied_config_version, std::sync::atomic::Ordering::Release);
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(message)) => self.handle(message).await,
                        Ok(None) | Err(_) => return Err(SessionError::Gone),
                    },
                    Some(order) = link.orders.recv() => {
                        self.runs.retain(|_, reply| !reply.is_closed());
                        self.runs.insert(order.run.run_id.clone(), order.reply);
                        let run = api::SyncResponse { live_run: Some(order.run), ..Default::default() };
                        self.sender.send(Ok(encode(&run))).await.map_err(|_| SessionError::Gone)?;
                    }
                    _ = current.changed() => tokio::time::sleep(COALESCE).await,
                    _ = heartbeat.tick() => {
                        self.node.last_seen_time = model::now();
                        self.presence.record(&self.node);
                        if self.snapshot_in_flight.as_ref().is_some_and(|(_, since)| since.elapsed() > SNAPSHOT_ANSWER) {
                            self.snapshot_in_flight = None;
                        }
                    }
                    () = closing(&mut shutdown) => return Ok(()),
                }
            }
        }
        .await;
        match &result {
            Err(SessionError::Gone) | Ok(()) => tracing::info!(node = %self.node.id, "node sync stream ended"),
            Err(err) => {
                tracing::warn!(node = %self.node.id, error = %err, "node sync stream failed");
                let _ = self
                    .sender
                    .send(Err(ApiError::Unavailable("the control plane could not serve the sync stream").into()))
                    .await;
            }
        }
        self.node.connected = false;
        self.node.last_seen_time = model::now();
        if let Err(err) = self.presence.record_now(&self.node).await {
            tracing::warn!(node = %self.node.id, error = %err, "recording that a node left failed");
        }
    }

    /// Sends the changes after the last version sent, if there are any.
    async fn send_changes(&mut self) -> Result<(), SessionError> {
        let changes = self.feed.changes_since(self.sent).await?;
        if changes.version == self.sent {
            return Ok(());
        }
        if changes.full {
            // Any earlier one is answered or abandoned by now.
            self.snapshot_in_flight = None;
            let permit = self.feed.admit_full_snapshot().await;
            self.snapshot_in_flight = Some((permit, tokio::time::Instant::now()));
        }
        tracing::debug!(
            node = %self.node.id, from = self.sent, to = changes.version, full = changes.full,
            connectors = changes.connectors, "sending config update"
        );
        for part in &changes.parts {
            self.sender.send(Ok(part.clone())).await.map_err(|_| SessionError::Gone)?;
        }
        self.sent = changes.version;
        Ok(())
    }

    async fn handle(&mut self, message: api::SyncRequest) {
        self.node.last_seen_time = model::now();
        match message.message {
            Some(Message::Ack(ack)) => {
                self.node.applied_config_version = ack.version;
                self.snapshot_in_flight = None;
            }
            Some(Message::Nack(nack)) => {
                self.node.applied_config_version = nack.version;
                self.snapshot_in_flight = None;
                self.node.sync_errors += 1;
                self.node.last_error = nack
                    .rejected
                    .iter()
                    .map(|r| format!("{}: {}", r.connector_id, r.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(node = %self.node.id, version = nack.version, rejected = %self.node.last_error, "node rejected connectors");
            }
            Some(Message::Circuits(report)) => {
                // A node's news of its breakers; nothing here is worth
                // ending its config stream for.
                match convert::circuit_transitions_from_api(&report) {
                    Ok(transitions) => {
                        if let Err(err) = self.store.record_circuit_transitions(&transitions).await {
                            tracing::warn!(node = %self.node.id, error = %err, "recording circuit transitions failed");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.node.id, error = %err, "a node reported malformed circuit transitions")
                    }
                }
                return;
            }
            Some(Message::LiveRunResult(result)) => {
                if let Some(reply) = self.runs.remove(&result.run_id) {
                    let _ = reply.send(result);
                }
                return;
            }
            Some(Message::Hello(_)) | None => {}
        }
        self.presence.record(&self.node);
    }
}

/// Completes when the server starts shutting down.
async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}
