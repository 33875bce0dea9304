//! Node state as the sync sessions learn it, written to the store in
//! batches.
//!
//! A node's acknowledgements and heartbeats change one row each; written
//! one by one they were a write transaction per node per second, which on
//! SQLite's single writer queued behind each other at fleet sizes. The
//! sessions record the latest state here instead, and one task writes
//! every changed node in one transaction a second. A node connecting is
//! written at once (its ordinal depends on its row); a node leaving is
//! written at once too, after any batch in flight, so a batch never
//! brings a departed node back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookplane_model::Node;
use tokio::sync::watch;

use crate::store::{Store, StoreError};

/// How long a changed node state waits to be written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Shared by every session of a control plane.
#[derive(Clone, Debug)]
pub(super) struct Presence {
    store: Store,
    /// The latest state of each node changed since the last batch.
    changed: Arc<Mutex<HashMap<String, Node>>>,
    /// One batch at a time, so batches land in the order they were taken.
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl Presence {
    /// Writes what changed every [`FLUSH_EVERY`] until `closing`.
    pub(super) fn new(store: Store, mut closing: watch::Receiver<bool>) -> Presence {
        let presence = Presence { store, changed: Arc::default(), writing: Arc::default() };
        let flushing = presence.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = closing.wait_for(|closing| *closing) => return,
                }
                if let Err(err) = flushing.flush().await {
                    tracing::warn!(error = %err, "recording node states failed; trying again");
                }
            }
        });
        presence
    }

    /// Records `node`'s latest state, for the next batch.
    pub(super) fn record(&self, node: &Node) {
        self.changed.lock().unwrap_or_else(PoisonError::into_inner).insert(node.id.clone(), node.clone());
    }

    /// Records `node`'s state and writes everything changed now.
    pub(super) async fn record_now(&self, node: &Node) -> Result<(), StoreError> {
        self.record(node);
        self.flush().await
    }

    /// Writes every state changed since the last batch. A failed batch is
    /// kept for the next, under any state recorded since.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.writing.lock().await;
        let batch = std::mem::take(&mut *self.changed.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            return Ok(());
        }
        let nodes: Vec<Node> = batch.into_values().collect();
        let written = self.store.upsert_nodes(&nodes).await;
        if written.is_err() {
            let mut changed = self.changed.lock().unwrap_or_else(PoisonError::into_inner);
            for node in nodes {
                changed.entry(node.id.clone()).or_insert(node);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, applied: i64, connected: bool) -> Node {
        Node {
            id: id.into(),
            address: String::new(),
            build_version: "test".into(),
            applied_config_version: applied,
            connected,
            last_seen_time: hookplane_model::now(),
            sync_errors: 0,
            last_error: String::new(),
        }
    }

    #[tokio::test]
    async fn batches_keep_each_nodes_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("presence.db").display());
        let store = Store::connect(&url).await.unwrap();
        let (_closing, closed) = watch::channel(true);
        let presence = Presence::new(store.clone(), closed);
        presence.record(&node("a", 1, true));
        presence.record(&node("b", 1, true));
        presence.record(&node("a", 2, true));
        assert_eq!(store.get_node("a").await.unwrap(), None, "nothing written before the batch");
        presence.flush().await.unwrap();
        assert_eq!(store.get_node("a").await.unwrap().unwrap().applied_config_version, 2);
        assert_eq!(store.get_node("b").await.unwrap().unwrap().applied_config_version, 1);

        presence.record_now(&node("a", 2, false)).await.unwrap();
        assert!(!store.get_node("a").await.unwrap().unwrap().connected, "a departure is written at once");

        store.close().await;
        presence.record(&node("b", 3, true));
        assert!(presence.flush().await.is_err());
        let kept = |presence: &Presence| presence.changed.lock().unwrap().get("b").map(|n| n.applied_config_version);
        assert_eq!(kept(&presence), Some(3), "a failed batch is kept for the next");
        presence.record(&node("b", 4, true));
        assert_eq!(kept(&presence), Some(4), "under any later state");
    }
}
