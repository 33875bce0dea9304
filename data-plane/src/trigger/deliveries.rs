//! Replay protection by delivery id (SPEC §4 item 7): a delivery id a
//! connector has seen within its tolerance is answered as a duplicate
//! instead of running again.
//!
//! An id is claimed once its call passed every check, and kept when the
//! call ran (or was accepted to run later) and its event exists. A call
//! that failed, or whose event could not be kept, releases its claim: the
//! sender retries such calls with the same id exactly so that they run
//! again. Memory is bounded per connector and per node; a connector over
//! its bound forgets its own oldest ids, never another tenant's.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Ids one connector remembers at most: 33 deliveries a second over the
/// default 5-minute window. Past it the oldest are forgotten first.
pub const PER_CONNECTOR: usize = 10_000;
/// Ids a node remembers at most, over all connectors: with ids of UUID
/// size about 150 MB at worst (two copies, map and queue overhead).
pub const PER_NODE: usize = 1_000_000;
/// Locks, so connectors rarely wait on each other's claims.
const SHARDS: usize = 16;

/// The delivery ids each connector saw lately, on this node.
#[derive(Debug)]
pub struct SeenDeliveries {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_connector: usize,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    connectors: HashMap<Box<str>, Window>,
    /// Entries of every queue in this shard.
    len: usize,
}

/// One connector's ids, in the order they arrived.
#[derive(Debug)]
struct Window {
    order: VecDeque<(Instant, Arc<str>)>,
    ids: HashMap<Arc<str>, Seen>,
    keep_for: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    event_id: i64,
    at: Instant,
}

/// The outcome of claiming a delivery id.
#[must_use]
#[derive(Debug)]
pub enum Claim<'a> {
    /// First seen now: run the call, then keep or release the claim.
    New(Claimed<'a>),
    /// Seen within the window: the first call's event.
    Duplicate { event_id: i64 },
    /// Not remembered: the node's bound is reached by other connectors and
    /// this one has nothing of its own to forget. The call runs.
    Unrecorded,
}

/// A claimed id; released when dropped unless kept.
#[derive(Debug)]
pub struct Claimed<'a> {
    deliveries: &'a SeenDeliveries,
    connector: &'a str,
    id: &'a str,
    at: Instant,
    kept: bool,
}

impl Claimed<'_> {
    /// The call ran or is kept to run: its id stays seen.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut shard = self.deliveries.shard(self.connector);
        let Some(window) = shard.connectors.get_mut(self.connector) else { return };
        // Only this claim's entry: a later claim of the same id stays.
        if window.ids.get(self.id).is_some_and(|seen| seen.at == self.at) {
            window.ids.remove(self.id);
        }
    }
}

impl Default for SeenDeliveries {
    fn default() -> Self {
        SeenDeliveries::with_bounds(PER_CONNECTOR, PER_NODE)
    }
}

impl SeenDeliveries {
    pub fn with_bounds(per_connector: usize, per_node: usize) -> SeenDeliveries {
        SeenDeliveries {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_connector: per_connector.max(1),
            per_shard: per_node.div_ceil(SHARDS).max(1),
        }
    }

    /// Claims `id` for `connector`'s call that will be event `event_id`;
    /// ids are remembered for `keep_for`.
    pub fn claim<'a>(&'a self, connector: &'a str, id: &'a str, event_id: i64, keep_for: Duration) -> Claim<'a> {
        let now = Instant::now();
        let mut guard = self.shard(connector);
        let shard = &mut *guard;
        let window = shard.connectors.entry(connector.into()).or_insert_with(|| Window::new(keep_for));
        window.keep_for = keep_for;
        shard.len -= window.expire(now);
        if let Some(seen) = window.ids.get(id) {
            return Claim::Duplicate { event_id: seen.event_id };
        }
        if window.order.len() >= self.per_connector {
            shard.len -= window.forget_oldest();
        }
        if shard.len >= self.per_shard {
            shard.len -= shard.connectors.values_mut().map(|w| w.expire(now)).sum::<usize>();
            shard.connectors.retain(|_, w| !w.order.is_empty() || !w.ids.is_empty());
        }
        let has_own = shard.connectors.get(connector).is_some_and(|w| !w.order.is_empty());
        if shard.len >= self.per_shard {
            if !has_own {
                shard.connectors.remove(connector);
                return Claim::Unrecorded;
            }
            let own = shard.connectors.get_mut(connector).expect("has ids of its own");
            shard.len -= own.forget_oldest();
        }
        let window = shard.connectors.entry(connector.into()).or_insert_with(|| Window::new(keep_for));
        let id_key: Arc<str> = id.into();
        window.order.push_back((now, id_key.clone()));
        window.ids.insert(id_key, Seen { event_id, at: now });
        shard.len += 1;
        Claim::New(Claimed { deliveries: self, connector, id, at: now, kept: false })
    }

    fn shard(&self, connector: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(connector) as usize % self.shards.len();
        // A panic while holding the lock leaves a consistent map (each
        // mutation is one call), so a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Window {
    fn new(keep_for: Duration) -> Window {
        Window { order: VecDeque::new(), ids: HashMap::new(), keep_for }
    }

    /// Forgets ids older than the window; returns how many entries went.
    fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        while self.order.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.keep_for) {
            gone += self.forget_oldest();
        }
        gone
    }

    fn forget_oldest(&mut self) -> usize {
        let Some((at, id)) = self.order.pop_front() else { return 0 };
        if self.ids.get(&id).is_some_and(|seen| seen.at == at) {
            self.ids.remove(&id);
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn a_kept_id_is_a_duplicate_of_its_first_event_per_connector() {
        let seen = SeenDeliveries::default();
        let Claim::New(first) = seen.claim("con_a", "msg_1", 7, MINUTES) else { panic!("first claim") };
        assert!(matches!(seen.claim("con_a", "msg_1", 8, MINUTES), Claim::Duplicate { event_id: 7 }), "in flight");
        first.keep();
        assert!(matches!(seen.claim("con_a", "msg_1", 9, MINUTES), Claim::Duplicate { event_id: 7 }));
        assert!(matches!(seen.claim("con_b", "msg_1", 9, MINUTES), Claim::New(_)), "another connector's id");
    }

    #[test]
    fn a_released_claim_lets_the_retry_run() {
        let seen = SeenDeliveries::default();
        drop(seen.claim("con_a", "msg_1", 7, MINUTES));
        let Claim::New(retry) = seen.claim("con_a", "msg_1", 8, MINUTES) else { panic!("a retry runs again") };
        retry.keep();
        assert!(matches!(seen.claim("con_a", "msg_1", 9, MINUTES), Claim::Duplicate { event_id: 8 }));
    }

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let seen = SeenDeliveries::default();
        if let Claim::New(c) = seen.claim("con_a", "msg_1", 7, Duration::ZERO) {
            c.keep();
        }
        assert!(matches!(seen.claim("con_a", "msg_1", 8, Duration::ZERO), Claim::New(_)));
    }

    #[test]
    fn a_connector_over_its_bound_forgets_only_its_own_oldest_ids() {
        let seen = SeenDeliveries::with_bounds(3, SHARDS * 4);
        let keep = |claim: Claim<'_>| match claim {
            Claim::New(c) => c.keep(),
            other => panic!("{other:?}"),
        };
        keep(seen.claim("quiet", "q1", 1, MINUTES));
        let ids: Vec<String> = (0..10).map(|i| format!("loud{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            keep(seen.claim("loud", id, i as i64, MINUTES));
        }
        assert!(matches!(seen.claim("loud", "loud9", 0, MINUTES), Claim::Duplicate { event_id: 9 }));
        assert!(matches!(seen.claim("loud", "loud0", 0, MINUTES), Claim::New(_)), "forgotten: over its bound");
        assert!(matches!(seen.claim("quiet", "q1", 0, MINUTES), Claim::Duplicate { event_id: 1 }), "untouched");
    }

    #[test]
    fn a_full_node_records_nothing_new_for_a_connector_without_ids_of_its_own() {
        // One entry per shard: every connector fills its shard alone.
        let seen = SeenDeliveries::with_bounds(10, SHARDS);
        let names: Vec<String> = (0..1000).map(|i| format!("con_{i}")).collect();
        let mut unrecorded = 0;
        for name in &names {
            match seen.claim(name, "msg", 1, MINUTES) {
                Claim::New(c) => c.keep(),
                Claim::Unrecorded => unrecorded += 1,
                Claim::Duplicate { .. } => panic!("never seen"),
            }
        }
        assert_eq!(unrecorded, 1000 - SHARDS, "one remembered id per shard, the rest run unrecorded");
        let total: usize = seen.shards.iter().map(|s| s.lock().unwrap().len).sum();
        let windows: usize = seen.shards.iter().map(|s| s.lock().unwrap().connectors.len()).sum();
        assert_eq!((total, windows), (SHARDS, SHARDS), "nothing is kept for the unrecorded");
    }
}
