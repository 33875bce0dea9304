//! What a node shares between its sync task and its request handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

use hookplane_model::LimitingPolicy;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::events::ids::EventIds;
use crate::fleet::Fleet;
use crate::outbound::circuits::CircuitNotices;
use crate::snapshot::Snapshot;

/// The node's current snapshot and sync status.
///
/// Invariant: `snapshot` is only ever replaced whole (one atomic pointer
/// swap); a request that loaded it keeps that snapshot to the end, and
/// nothing locks on the request path.
#[derive(Debug)]
pub struct NodeState {
    snapshot: ArcSwap<Snapshot>,
    /// True once a snapshot was applied or loaded from the cache.
    ready: AtomicBool,
    /// True once this process applied a snapshot from the control plane or
    /// heard from it that the one held is current (a cached one may be
    /// behind).
    synced: AtomicBool,
    connected: AtomicBool,
    sync_errors: AtomicU64,
    /// Why the last sync session ended, for `/readyz`.
    last_sync_error: ArcSwapOption<String>,
    /// True from a crash of the sync task until a session of the
    /// restarted task connects.
    sync_restarting: AtomicBool,
    full_updates: AtomicU64,
    delta_updates: AtomicU64,
    /// Encoded size of the last update received.
    last_update_bytes: AtomicU64,
    /// The applied version, for whoever waits on a change (tests, probes).
    applied: tokio::sync::watch::Sender<i64>,
    /// Mints event ids once the control plane assigned an ordinal.
    event_ids: Arc<EventIds>,
    /// The fleet's Redis under the `redis` limiting policy (set when a
    /// sync stream opens); none under `local`.
    fleet: ArcSwapOption<Fleet>,
    /// True once the node began to stop: `/readyz` answers 503.
    draining: AtomicBool,
    /// How long each update took from arrival to swap, for `/metrics`.
    pub apply_seconds: Histogram,
    /// Breaker transitions the sync stream tells the control plane of.
    pub circuits: Arc<CircuitNotices>,
}

impl NodeState {
    pub fn new(initial: Option<Snapshot>) -> NodeState {
        let ready = initial.is_some();
        let version = initial.as_ref().map_or(0, |s| s.version);
        NodeState {
            applied: tokio::sync::watch::channel(version).0,
            snapshot: ArcSwap::from_pointee(initial.unwrap_or_default()),
            ready: AtomicBool::new(ready),
            synced: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            sync_errors: AtomicU64::new(0),
            last_sync_error: ArcSwapOption::empty(),
            sync_restarting: AtomicBool::new(false),
            full_updates: AtomicU64::new(0),
            delta_updates: AtomicU64::new(0),
            last_update_bytes: AtomicU64::new(0),
            event_ids: Arc::default(),
            fleet: ArcSwapOption::empty(),
            draining: AtomicBool::new(false),
            // 100 µs (a one-connector delta) to ~6.5 s (a 100 000-connector
            // snapshot builds in about 2 s on this machine's cores).
            apply_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            circuits: Arc::default(),
        }
    }

    /// The node began to stop; load balancers are told by `/readyz`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The fleet's Redis, under the `redis` limiting policy.
    pub fn fleet(&self) -> Option<Arc<Fleet>> {
        self.fleet.load_full()
    }

    /// Follows the limiting policy the control plane sent; a connection
    /// already open to the same Redis is kept.
    pub fn set_limiting(&self, policy: &LimitingPolicy) {
        let LimitingPolicy::Redis(redis) = policy else {
            self.fleet.store(None);
            return;
        };
        if self.fleet.load().as_ref().is_some_and(|fleet| fleet.policy() == redis) {
            return;
        }
        tracing::info!(fail_closed = redis.fail_closed, "counting limits and deliveries in the fleet's Redis");
        self.fleet.store(Some(Arc::new(Fleet::new(redis.clone()))));
    }

    /// The state minting its event ids with `ids` (a node with a cache
    /// directory reserves them there).
    pub fn with_event_ids(mut self, ids: EventIds) -> NodeState {
        self.event_ids = Arc::new(ids);
        self
    }

    /// The node's event id minter.
    pub fn event_ids(&self) -> &Arc<EventIds> {
        &self.event_ids
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the snapshot; in-flight requests finish on the old one.
    pub fn swap(&self, next: Arc<Snapshot>) {
        let version = next.version;
        self.snapshot.store(next);
        self.ready.store(true, Ordering::Release);
        self.synced.store(true, Ordering::Release);
        self.applied.send_replace(version);
    }

    /// A receiver of the applied version, to wait for a version without
    /// polling.
    pub fn applied_versions(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// Notes that the control plane confirmed the current snapshot as its
    /// latest, and wakes whoever waits on [`NodeState::applied_versions`].
    pub(crate) fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
        self.applied.send_modify(|_| {});
    }

    /// Whether this process has the control plane's config: it applied a
    /// snapshot from it, or it confirmed the one held. If so,
    /// [`NodeState::snapshot`] returns that one or a later one.
    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.sync_restarting.store(false, Ordering::Relaxed);
        }
    }

    /// Counts a sync session that ended, and why.
    pub(crate) fn record_sync_error(&self, message: String) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
        self.last_sync_error.store(Some(Arc::new(message)));
    }

    /// Notes that the sync task itself crashed and is being restarted.
    pub(crate) fn record_sync_crash(&self, message: String) {
        self.connected.store(false, Ordering::Relaxed);
        self.sync_restarting.store(true, Ordering::Relaxed);
        self.record_sync_error(message);
    }

    /// Sync sessions that ended, for whatever reason.
    pub fn sync_errors(&self) -> u64 {
        self.sync_errors.load(Ordering::Relaxed)
    }

    /// Why the last sync session ended, if one did.
    pub fn last_sync_error(&self) -> Option<Arc<String>> {
        self.last_sync_error.load_full()
    }

    /// Whether the sync task crashed and has not connected again since.
    pub fn is_sync_restarting(&self) -> bool {
        self.sync_restarting.load(Ordering::Relaxed)
    }

    pub(crate) fn record_update(&self, full: bool, bytes: usize) {
        let counter = if full { &self.full_updates } else { &self.delta_updates };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_update_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// Updates received so far: `(full snapshots, deltas)`.
    pub fn updates_received(&self) -> (u64, u64) {
        (self.full_updates.load(Ordering::Relaxed), self.delta_updates.load(Ordering::Relaxed))
    }

    /// Encoded size of the last update received, in bytes.
    pub fn last_update_bytes(&self) -> u64 {
        self.last_update_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use hookplane_model::{ConfigDelta, DeployedSecret, Versioned};

    use super::*;

    /// A snapshot at `version` whose every secret carries the same version.
    fn snapshot_at(version: i64) -> Snapshot {
        let delta = ConfigDelta {
            version,
            full: true,
            secrets: (0..50)
                .map(|i| Versioned {
                    item: DeployedSecret {
                        organization_id: "org".into(),
                        name: format!("S{i}"),
                        value: Some(version.to_string()),
                    },
                    version,
                })
                .collect(),
            ..Default::default()
        };
        Snapshot::default().apply(&delta, Vec::new()).0
    }

    #[test]
    fn readers_on_many_threads_always_see_one_whole_snapshot() {
        let state = Arc::new(NodeState::new(Some(snapshot_at(1))));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (state, done) = (state.clone(), done.clone());
                thread::spawn(move || {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let snapshot = state.snapshot();
                        let expected = snapshot.version.to_string();
                        assert_eq!(snapshot.secrets.len(), 50);
                        assert!(snapshot.secrets.values().all(|(value, v)| value.as_deref()
                                == Some(expected.as_str())
                                && *v == snapshot.version));
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for version in 2..=300 {
            state.swap(Arc::new(snapshot_at(version)));
        }
        done.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|r| r.join().expect("no reader saw a mixed snapshot")).sum();
        assert!(reads > 0);
        assert_eq!(state.snapshot().version, 300);
    }
}
