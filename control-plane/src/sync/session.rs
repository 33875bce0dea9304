//! One node's sync stream on the control plane.

use hookplane::api::v1::{self as api, sync_request::Message};
use hookplane::convert;
use hookplane::model::{self, Node};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::open::open_delta;
use super::{COALESCE, POLL};
use crate::crypto::SecretBox;
use crate::store::{Store, StoreError};

pub(super) struct Session {
    store: Store,
    secret_box: SecretBox,
    node: Node,
    /// The last version sent; every delta starts here.
    sent: i64,
    sender: mpsc::Sender<Result<api::SyncResponse, Status>>,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("the node went away")]
    Gone,
}

impl Session {
    pub(super) fn new(
        store: Store,
        secret_box: SecretBox,
        hello: api::NodeHello,
        sender: mpsc::Sender<Result<api::SyncResponse, Status>>,
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
        Session { store, secret_box, node, sent: hello.applied_version, sender }
    }

    pub(super) async fn run(mut self, mut inbound: Streaming<api::SyncRequest>, mut shutdown: watch::Receiver<bool>) {
        if let Ok(Some(known)) = self.store.get_node(&self.node.id).await {
            self.node.sync_errors = known.sync_errors;
        }
        let mut commits = self.store.config_commits();
        let mut poll = tokio::time::interval(POLL);
        let result: Result<(), SessionError> = async {
            self.store.upsert_node(&self.node).await?;
            loop {
                self.send_changes().await?;
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(message)) => self.handle(message).await?,
                        Ok(None) | Err(_) => return Err(SessionError::Gone),
                    },
                    _ = commits.changed() => tokio::time::sleep(COALESCE).await,
                    _ = poll.tick() => {
                        self.node.last_seen_time = model::now();
                        self.store.upsert_node(&self.node).await?;
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
                    .send(Err(Status::unavailable("the control plane could not serve the sync stream")))
                    .await;
            }
        }
        self.node.connected = false;
        self.node.last_seen_time = model::now();
        let _ = self.store.upsert_node(&self.node).await;
    }

    /// Sends the changes after the last version sent, if there are any.
    async fn send_changes(&mut self) -> Result<(), SessionError> {
        let current = self.store.config_version().await?;
        if current == self.sent {
            return Ok(());
        }
        let mut delta = self.store.config_delta(self.sent).await?;
        open_delta(&mut delta, &self.secret_box)?;
        let update = convert::config_delta_to_api(&delta);
        tracing::debug!(
            node = %self.node.id, from = self.sent, to = delta.version, full = delta.full,
            connectors = delta.connectors.len(), "sending config update"
        );
        self.sender.send(Ok(api::SyncResponse { update: Some(update) })).await.map_err(|_| SessionError::Gone)?;
        self.sent = delta.version;
        Ok(())
    }

    async fn handle(&mut self, message: api::SyncRequest) -> Result<(), SessionError> {
        self.node.last_seen_time = model::now();
        match message.message {
            Some(Message::Ack(ack)) => {
                self.node.applied_config_version = ack.version;
            }
            Some(Message::Nack(nack)) => {
                self.node.applied_config_version = nack.version;
                self.node.sync_errors += 1;
                self.node.last_error = nack
                    .rejected
                    .iter()
                    .map(|r| format!("{}: {}", r.connector_id, r.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(node = %self.node.id, version = nack.version, rejected = %self.node.last_error, "node rejected connectors");
            }
            Some(Message::Hello(_)) | None => {}
        }
        self.store.upsert_node(&self.node).await?;
        Ok(())
    }
}

/// Completes when the server starts shutting down.
async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}
