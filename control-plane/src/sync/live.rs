//! Live test runs (SPEC §10): a connector executed for real on one
//! data-plane node, on the control plane's word, recorded as an event
//! marked as a test. The control plane reaches nodes only through their
//! sync streams, so each session registers here while it is open, and a
//! run goes to a node of this replica that has applied the connector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookplane::api::v1 as api;
use tokio::sync::{mpsc, oneshot};

/// How long a run may take on its node before the caller is told
/// DEADLINE_EXCEEDED (the run itself goes on): a lookup and a perform of
/// 30 s each by default with three attempts fit; a connector with longer
/// timeouts and more attempts may outlast it.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a run waits for a node to apply the connector's version: a
/// connector just saved reaches the fleet in milliseconds.
const ROLLOUT_WAIT: Duration = Duration::from_secs(5);

/// A run for a session to send, and where its result goes.
pub(super) struct Order {
    pub run: api::LiveRun,
    pub reply: oneshot::Sender<api::LiveRunResult>,
}

/// One open session, as runs see it.
struct Link {
    /// Which registration this is (a node that reconnects registers anew).
    generation: u64,
    applied: Arc<AtomicI64>,
    orders: mpsc::Sender<Order>,
}

/// Why a live run did not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveRunError {
    #[error("no data-plane node connected to this control plane has applied the connector yet")]
    NoNode,
    #[error("the node did not answer the run in time")]
    TimedOut,
    #[error("the node's stream ended before it answered")]
    NodeGone,
}

/// The open sessions of this replica, by node id.
#[derive(Clone, Debug, Default)]
pub struct LiveRuns {
    links: Arc<Mutex<HashMap<String, Link>>>,
    generations: Arc<AtomicU64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("generation", &self.generation).finish_non_exhaustive()
    }
}

/// A session's registration; unregisters when dropped.
pub(super) struct Registration {
    runs: LiveRuns,
    node_id: String,
    generation: u64,
    pub applied: Arc<AtomicI64>,
    pub orders: mpsc::Receiver<Order>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut links = self.runs.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if links.get(&self.node_id).is_some_and(|entry| entry.generation == self.generation) {
            links.remove(&self.node_id);
        }
    }
}

impl LiveRuns {
    /// Registers the session of `node_id`, replacing an older one.
    pub(super) fn register(&self, node_id: &str, applied: i64) -> Registration {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let applied = Arc::new(AtomicI64::new(applied));
        let (orders_tx, orders) = mpsc::channel(16);
        let link = Link { generation, applied: applied.clone(), orders: orders_tx };
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(node_id.to_owned(), link);
        Registration { runs: self.clone(), node_id: node_id.to_owned(), generation, applied, orders }
    }

    /// A node that has applied `version`, and its orders.
    fn node_at(&self, version: i64) -> Option<(String, mpsc::Sender<Order>)> {
        let links = self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        links
            .iter()
            .find(|(_, entry)| entry.applied.load(Ordering::Acquire) >= version)
            .map(|(id, entry)| (id.clone(), entry.orders.clone()))
    }

    /// Runs `run` on a node that has applied its version, waiting for the
    /// rollout a little; the node's result.
    pub async fn run(&self, run: api::LiveRun) -> Result<(String, api::LiveRunResult), LiveRunError> {
        let deadline = tokio::time::Instant::now() + ROLLOUT_WAIT;
        let (node, orders) = loop {
            if let Some(found) = self.node_at(run.config_version) {
                break found;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LiveRunError::NoNode);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (reply, answer) = oneshot::channel();
        orders.send(Order { run, reply }).await.map_err(|_| LiveRunError::NodeGone)?;
        match tokio::time::timeout(RUN_TIMEOUT, answer).await {
            Err(_) => Err(LiveRunError::TimedOut),
            Ok(Err(_)) => Err(LiveRunError::NodeGone),
            Ok(Ok(result)) => Ok((node, result)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(version: i64) -> api::LiveRun {
        api::LiveRun {
            run_id: "run_1".into(),
            connector_id: "con_1".into(),
            payload: "{}".into(),
            config_version: version,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_goes_to_a_node_that_applied_its_version() {
        let runs = LiveRuns::default();
        let mut behind = runs.register("behind", 3);
        let mut ahead = runs.register("ahead", 7);
        let asked = tokio::spawn({
            let runs = runs.clone();
            async move { runs.run(run(5)).await }
        });
        let order = ahead.orders.recv().await.expect("the node at version 7 gets it");
        assert!(behind.orders.try_recv().is_err());
        order.reply.send(api::LiveRunResult { run_id: order.run.run_id, event_id: 9, ..Default::default() }).unwrap();
        let (node, result) = asked.await.unwrap().unwrap();
        assert_eq!((node.as_str(), result.event_id), ("ahead", 9));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_node_at_the_version_the_run_fails_after_the_rollout_wait() {
        let runs = LiveRuns::default();
        let _old = runs.register("node", 1);
        assert!(matches!(runs.run(run(2)).await, Err(LiveRunError::NoNode)));
        let link = runs.register("node", 1);
        // A node that applies the version while the run waits gets it.
        let asked = tokio::spawn({
            let runs = runs.clone();
            async move { runs.run(run(2)).await.map(|(node, _)| node) }
        });
        // The run is waiting for the rollout: a second passes on the
        // paused clock before the node applies the version.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!asked.is_finished(), "the run waits for the rollout");
        link.applied.store(2, Ordering::Release);
        let mut link = link;
        let order = link.orders.recv().await.unwrap();
        drop(order.reply);
        assert!(matches!(asked.await.unwrap(), Err(LiveRunError::NodeGone)), "a dropped answer is the node gone");
    }

    #[test]
    fn a_closed_session_unregisters_only_itself() {
        let runs = LiveRuns::default();
        let first = runs.register("node", 5);
        let second = runs.register("node", 5);
        drop(first);
        assert!(runs.node_at(5).is_some(), "the reconnected session stays");
        drop(second);
        assert!(runs.node_at(5).is_none());
    }
}
