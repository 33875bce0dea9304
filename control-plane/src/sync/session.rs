//! One node's sync stream on the control plane.

use hookplane::api::v1::{self as api, sync_request::Message};
use hookplane_convert as convert;
use std::sync::Arc;

use hookplane_model::{self as model, LimitingPolicy, Node};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::open::open_delta;
use super::{COALESCE, POLL};
use crate::crypto::SecretBox;
use crate::error::ApiError;
use crate::store::{Store, StoreError};

/// Characters of a node's reported failure that are kept.
const MAX_FAILURE_CHARS: usize = 1024;

pub(super) struct Session {
    store: Store,
    secret_box: SecretBox,
    limiting: Arc<LimitingPolicy>,
    node: Node,
    /// What the node said failed on its side before this session.
    previous_failure: String,
    /// The last version sent; every delta starts here.
    sent: i64,
    sender: mpsc::Sender<Result<api::SyncResponse, Status>>,
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
        secret_box: SecretBox,
        limiting: Arc<LimitingPolicy>,
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
        Session {
            store,
            secret_box,
            limiting,
            node,
            previous_failure: hello.previous_failure.trim().chars().take(MAX_FAILURE_CHARS).collect(),
            sent: hello.applied_version,
            sender,
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
        let mut commits = self.store.config_commits();
        let mut poll = tokio::time::interval(POLL);
        let result: Result<(), SessionError> = async {
            self.store.upsert_node(&self.node).await?;
            let ordinal = self.store.node_ordinal(&self.node.id).await?;
            let config_version = self.store.config_version().await?;
            let registration = api::NodeRegistration {
                ordinal: ordinal as i32,
                config_version,
                limiting: Some(convert::limiting_to_api(&self.limiting)),
            };
            let hello = api::SyncResponse { update: None, registration: Some(registration) };
            self.sender.send(Ok(hello)).await.map_err(|_| SessionError::Gone)?;
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
                    .send(Err(ApiError::Unavailable("the control plane could not serve the sync stream").into()))
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
        let sealed = self.store.config_delta(self.sent).await?;
        let (delta, unopened) = open_delta(sealed, &self.secret_box);
        for (connector, field) in &unopened.connector_fields {
            tracing::error!(
                node = %self.node.id, connector = %connector, field,
                "a connector's sealed secret does not open with this key; nodes reject the connector until the field is set again"
            );
        }
        for (organization, name) in &unopened.secrets {
            tracing::error!(
                node = %self.node.id, organization = %organization, secret = %name,
                "a sealed secret does not open with this key; nodes hold the connectors that read it until it is set again"
            );
        }
        let update = convert::config_delta_to_api(&delta);
        tracing::debug!(
            node = %self.node.id, from = self.sent, to = delta.version, full = delta.full,
            connectors = delta.connectors.len(), "sending config update"
        );
        for part in split_into_parts(update) {
            self.sender
                .send(Ok(api::SyncResponse { update: Some(part), registration: None }))
                .await
                .map_err(|_| SessionError::Gone)?;
        }
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

/// Connectors per part of a large update: keeps every message far below
/// gRPC's message size limit and lets the node start decoding early.
const CONNECTORS_PER_PART: usize = 500;

/// Splits an update into parts of at most [`CONNECTORS_PER_PART`]
/// connectors; everything else travels in the first part.
fn split_into_parts(mut update: api::ConfigUpdate) -> Vec<api::ConfigUpdate> {
    if update.connectors.len() <= CONNECTORS_PER_PART {
        return vec![update];
    }
    let connectors = std::mem::take(&mut update.connectors);
    let header = api::ConfigUpdate {
        version: update.version,
        full: update.full,
        base_version: update.base_version,
        ..Default::default()
    };
    let mut parts: Vec<_> = connectors
        .chunks(CONNECTORS_PER_PART)
        .map(|chunk| api::ConfigUpdate { connectors: chunk.to_vec(), more_parts: true, ..header.clone() })
        .collect();
    let first = &mut parts[0];
    first.removed_connector_ids = std::mem::take(&mut update.removed_connector_ids);
    first.secrets = std::mem::take(&mut update.secrets);
    first.removed_secrets = std::mem::take(&mut update.removed_secrets);
    first.plans = std::mem::take(&mut update.plans);
    first.organizations = std::mem::take(&mut update.organizations);
    let last = parts.last_mut().expect("at least one part");
    last.more_parts = false;
    last.content_hash = update.content_hash;
    parts
}

/// Completes when the server starts shutting down.
async fn closing(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_updates_split_into_parts_that_merge_back() {
        let update = api::ConfigUpdate {
            version: 9,
            full: true,
            connectors: (0..1201).map(|i| api::NodeConnector { item_version: i, ..Default::default() }).collect(),
            removed_connector_ids: vec!["con_gone".into()],
            content_hash: "h".into(),
            ..Default::default()
        };
        let parts = split_into_parts(update.clone());
        assert_eq!(parts.iter().map(|p| p.connectors.len()).collect::<Vec<_>>(), [500, 500, 201]);
        assert!(parts[..2].iter().all(|p| p.more_parts && p.version == 9 && p.full));
        assert!(!parts[2].more_parts);
        assert_eq!(parts[2].content_hash, "h");
        assert_eq!(parts[0].removed_connector_ids, ["con_gone"]);
        let mut merged = parts[0].clone();
        for part in &parts[1..] {
            hookplane_convert::merge_update_parts(&mut merged, part.clone());
        }
        assert_eq!(merged, update);
        assert_eq!(split_into_parts(api::ConfigUpdate::default()).len(), 1);
    }
}
