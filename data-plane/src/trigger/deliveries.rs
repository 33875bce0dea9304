//! Replay protection by delivery id (SPEC §4 item 7): a delivery a
//! connector has seen lately is answered as a duplicate instead of running
//! again.
//!
//! A delivery is its id *and* its body: GitHub and Shopify do not sign
//! their ids, so anyone holding one signed body could otherwise claim a
//! real delivery's id with it, or dodge the check with a new id. Both go
//! into 128 bits of SHA-256, the same on every node, so no id text is
//! kept. Under the `redis` limiting policy deliveries are claimed in the
//! fleet's Redis ([`crate::fleet`]), so a retry that reaches another node
//! is a duplicate there too; while Redis fails, a fail-open policy claims
//! on the node and a fail-closed one refuses the call.
//!
//! A delivery is claimed once its call passed every check, and kept when
//! the call ran (or was kept to run later). A call that failed, or whose
//! event could not be kept, releases its claim: the sender retries it with
//! the same id exactly so that it runs again. While the first call runs, a
//! second one is told to retry shortly ([`Claim::InFlight`]), not that it
//! is a duplicate: the first may still fail.
//!
//! Memory is bounded per connector and per shard of connectors. A
//! connector over its bound forgets its own oldest deliveries; a full
//! shard takes from the connector holding the most, so a tenant flooding
//! its own connectors with ids costs others nothing until it holds no more
//! than they do. Idle windows are dropped by [`SeenDeliveries::sweep`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::fleet::{Fleet, SeenDelivery};
use crate::limits::LimitsUnavailable;

/// Deliveries one connector remembers at most: 33 a second over the
/// default 5-minute window. Past it the oldest are forgotten first.
pub const PER_CONNECTOR: usize = 10_000;
/// Deliveries a node remembers at most, over all connectors: about 64 MB
/// at worst (a key, its time and event id twice over, in maps at most
/// half empty).
pub const PER_NODE: usize = 1_000_000;
/// Locks, so connectors rarely wait on each other's claims.
const SHARDS: usize = 16;

/// A delivery: 128 bits of the SHA-256 of its id and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Delivery(u128);

impl Delivery {
    /// The delivery named `id` carrying `body`.
    pub fn of(id: &str, body: &[u8]) -> Delivery {
        let digest =
            Sha256::new().chain_update((id.len() as u64).to_be_bytes()).chain_update(id).chain_update(body).finalize();
        Delivery(u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 has 32 bytes")))
    }

    fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The deliveries each connector saw lately, on this node.
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
    /// Entries of every window's queue in this shard.
    len: usize,
}

/// One connector's deliveries, in the order they arrived.
#[derive(Debug)]
struct Window {
    order: VecDeque<(Instant, Delivery)>,
    seen: HashMap<Delivery, Seen>,
    keep_for: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    event_id: i64,
    at: Instant,
    /// The call ran or is kept to run; until then it may still fail.
    kept: bool,
}

/// The outcome of claiming a delivery.
#[must_use]
#[derive(Debug)]
pub enum Claim<'a> {
    /// First seen now: run the call, then keep or release the claim.
    New(Claimed<'a>),
    /// Seen within the window, and it ran: the first call's event.
    Duplicate { event_id: i64 },
    /// The first call of this delivery is still running.
    InFlight,
}

/// A claimed delivery; released when dropped unless kept.
#[derive(Debug)]
pub enum Claimed<'a> {
    Local(LocalClaim<'a>),
    Fleet(FleetClaim),
}

impl Claimed<'_> {
    /// The call ran or is kept to run: its delivery stays seen.
    pub async fn keep(self) {
        match self {
            Claimed::Local(claim) => claim.keep(),
            // Boxed: a Redis round trip's state is for fleet claims only, not
            // part of every trigger's future (see `trigger::check_order`).
            Claimed::Fleet(claim) => Box::pin(claim.keep()).await,
        }
    }

    /// The call failed: its delivery is forgotten before the answer, so
    /// the sender's retry, on any node, runs it again.
    pub async fn release(self) {
        match self {
            Claimed::Local(claim) => drop(claim),
            Claimed::Fleet(mut claim) => {
                claim.kept = true;
                let released = Box::pin(claim.fleet.release(&claim.connector, &claim.delivery, claim.event_id));
                if let Err(error) = released.await {
                    claim.fleet.failed(&error);
                }
            }
        }
    }
}

/// A delivery claimed on this node.
#[derive(Debug)]
pub struct LocalClaim<'a> {
    deliveries: &'a SeenDeliveries,
    connector: &'a str,
    delivery: Delivery,
    at: Instant,
    kept: bool,
}

impl LocalClaim<'_> {
    fn keep(mut self) {
        self.kept = true;
        self.settle(|window, delivery| {
            if let Some(seen) = window.seen.get_mut(&delivery) {
                seen.kept = true;
            }
        });
    }

    /// Runs `change` on this claim's entry, if it is still this claim's
    /// (a later claim of the same delivery is left alone).
    fn settle(&self, change: impl FnOnce(&mut Window, Delivery)) {
        let mut shard = self.deliveries.shard(self.connector);
        let Some(window) = shard.connectors.get_mut(self.connector) else { return };
        if window.seen.get(&self.delivery).is_some_and(|seen| seen.at == self.at) {
            change(window, self.delivery);
        }
    }
}

impl Drop for LocalClaim<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.settle(|window, delivery| {
                window.seen.remove(&delivery);
            });
        }
    }
}

/// A delivery claimed in the fleet's Redis.
#[derive(Debug)]
pub struct FleetClaim {
    fleet: Arc<Fleet>,
    connector: String,
    delivery: String,
    event_id: i64,
    kept: bool,
}

impl FleetClaim {
    /// Awaited before the answer, so the sender's next retry, on any node,
    /// finds the delivery done. If Redis fails here the claim stays in
    /// flight until it expires: retries are told to wait, never run twice.
    async fn keep(mut self) {
        self.kept = true;
        if let Err(error) = self.fleet.keep(&self.connector, &self.delivery, self.event_id).await {
            self.fleet.failed(&error);
        }
    }
}

impl Drop for FleetClaim {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (fleet, connector, delivery, event_id) = (
            self.fleet.clone(),
            std::mem::take(&mut self.connector),
            std::mem::take(&mut self.delivery),
            self.event_id,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = fleet.release(&connector, &delivery, event_id).await {
                    fleet.failed(&error);
                }
            });
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

    /// Claims `delivery` for `connector`'s call that will be event
    /// `event_id`, in the fleet's Redis when there is one; deliveries are
    /// remembered for `keep_for`.
    pub async fn claim<'a>(
        &'a self,
        fleet: Option<Arc<Fleet>>,
        connector: &'a str,
        delivery: Delivery,
        event_id: i64,
        keep_for: Duration,
    ) -> Result<Claim<'a>, LimitsUnavailable> {
        let Some(fleet) = fleet else { return Ok(self.claim_here(connector, delivery, event_id, keep_for)) };
        // Boxed: a Redis round trip's state is for fleet claims only, not
        // part of every trigger's future (see `trigger::check_order`).
        match Box::pin(fleet.claim(connector, &delivery.hex(), event_id, keep_for)).await {
            Ok(SeenDelivery::New) => Ok(Claim::New(Claimed::Fleet(FleetClaim {
                fleet,
                connector: connector.to_owned(),
                delivery: delivery.hex(),
                event_id,
                kept: false,
            }))),
            Ok(SeenDelivery::Earlier { event_id, kept: true }) => Ok(Claim::Duplicate { event_id }),
            Ok(SeenDelivery::Earlier { kept: false, .. }) => Ok(Claim::InFlight),
            Err(error) => {
                fleet.failed(&error);
                // The claim may have reached Redis though its answer did
                // not come back: drop it, or retries would wait for it to
                // expire. Only this call's claim is ever dropped.
                let (fleet_for_release, connector_id, hex) = (fleet.clone(), connector.to_owned(), delivery.hex());
                tokio::spawn(async move {
                    let _ = fleet_for_release.release(&connector_id, &hex, event_id).await;
                });
                if fleet.policy().fail_closed {
                    return Err(LimitsUnavailable);
                }
                Ok(self.claim_here(connector, delivery, event_id, keep_for))
            }
        }
    }

    /// Claims `delivery` on this node.
    fn claim_here<'a>(
        &'a self,
        connector: &'a str,
        delivery: Delivery,
        event_id: i64,
        keep_for: Duration,
    ) -> Claim<'a> {
        let now = Instant::now();
        let mut guard = self.shard(connector);
        let shard = &mut *guard;
        let window = shard.connectors.entry(connector.into()).or_insert_with(|| Window::new(keep_for));
        window.keep_for = keep_for;
        shard.len -= window.expire(now);
        match window.seen.get(&delivery) {
            Some(seen) if seen.kept => return Claim::Duplicate { event_id: seen.event_id },
            Some(_) => return Claim::InFlight,
            None => {}
        }
        if window.order.len() >= self.per_connector {
            shard.len -= window.forget_oldest();
        }
        if shard.len >= self.per_shard {
            shard.len -= shard.forget_from_the_largest(connector);
        }
        let window = shard.connectors.entry(connector.into()).or_insert_with(|| Window::new(keep_for));
        window.order.push_back((now, delivery));
        window.seen.insert(delivery, Seen { event_id, at: now, kept: false });
        shard.len += 1;
        Claim::New(Claimed::Local(LocalClaim { deliveries: self, connector, delivery, at: now, kept: false }))
    }

    /// Forgets expired deliveries everywhere and drops empty windows (of
    /// idle or deleted connectors), giving their memory back.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let shard = &mut *guard;
            let mut gone = 0;
            shard.connectors.retain(|_, window| {
                gone += window.expire(now);
                window.shrink();
                !window.order.is_empty()
            });
            shard.len -= gone;
            shard.connectors.shrink_to_fit();
        }
    }

    fn shard(&self, connector: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(connector) as usize % self.shards.len();
        // Each mutation is complete before the lock is released, so a
        // poisoned lock still guards a consistent map.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shard {
    /// Forgets the oldest delivery of the connector holding the most; of
    /// several holding as much, the claiming one's.
    fn forget_from_the_largest(&mut self, claiming: &str) -> usize {
        let largest =
            self.connectors.iter_mut().max_by_key(|(name, window)| (window.order.len(), &***name == claiming));
        largest.map_or(0, |(_, window)| window.forget_oldest())
    }
}

impl Window {
    fn new(keep_for: Duration) -> Window {
        Window { order: VecDeque::new(), seen: HashMap::new(), keep_for }
    }

    /// Forgets deliveries older than the window; returns how many went.
    fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        while self.order.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.keep_for) {
            gone += self.forget_oldest();
        }
        gone
    }

    fn forget_oldest(&mut self) -> usize {
        let Some((at, delivery)) = self.order.pop_front() else { return 0 };
        if self.seen.get(&delivery).is_some_and(|seen| seen.at == at) {
            self.seen.remove(&delivery);
        }
        1
    }

    /// Gives back capacity a burst left behind.
    fn shrink(&mut self) {
        if self.order.capacity() > 4 * self.order.len() + 64 {
            self.order.shrink_to_fit();
            self.seen.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES: Duration = Duration::from_secs(300);

    fn keep(claim: Claim<'_>) {
        match claim {
            Claim::New(Claimed::Local(claimed)) => claimed.keep(),
            other => panic!("expected a new claim, got {other:?}"),
        }
    }

    #[test]
    fn a_kept_delivery_is_a_duplicate_of_its_first_event_per_connector() {
        let seen = SeenDeliveries::default();
        let delivery = Delivery::of("msg_1", b"{}");
        let Claim::New(Claimed::Local(first)) = seen.claim_here("con_a", delivery, 7, MINUTES) else {
            panic!("first claim")
        };
        assert!(matches!(seen.claim_here("con_a", delivery, 8, MINUTES), Claim::InFlight), "still running");
        first.keep();
        assert!(matches!(seen.claim_here("con_a", delivery, 9, MINUTES), Claim::Duplicate { event_id: 7 }));
        assert!(matches!(seen.claim_here("con_b", delivery, 9, MINUTES), Claim::New(_)), "another connector's");
    }

    #[test]
    fn the_same_id_with_another_body_is_another_delivery() {
        let seen = SeenDeliveries::default();
        keep(seen.claim_here("con_a", Delivery::of("72d3162e", br#"{"a":1}"#), 1, MINUTES));
        assert!(matches!(seen.claim_here("con_a", Delivery::of("72d3162e", br#"{"a":2}"#), 2, MINUTES), Claim::New(_)));
        assert_ne!(Delivery::of("ab", b"c"), Delivery::of("a", b"bc"), "id and body stay apart");
    }

    #[test]
    fn a_released_claim_lets_the_retry_run() {
        let seen = SeenDeliveries::default();
        let delivery = Delivery::of("msg_1", b"{}");
        drop(seen.claim_here("con_a", delivery, 7, MINUTES));
        keep(seen.claim_here("con_a", delivery, 8, MINUTES));
        assert!(matches!(seen.claim_here("con_a", delivery, 9, MINUTES), Claim::Duplicate { event_id: 8 }));
    }

    #[test]
    fn deliveries_are_forgotten_after_the_window_and_swept_windows_go() {
        let seen = SeenDeliveries::default();
        let delivery = Delivery::of("msg_1", b"{}");
        keep(seen.claim_here("con_a", delivery, 7, Duration::ZERO));
        assert!(matches!(seen.claim_here("con_a", delivery, 8, Duration::ZERO), Claim::New(_)));
        seen.sweep();
        let left: usize = seen.shards.iter().map(|s| s.lock().unwrap().connectors.len()).sum();
        let len: usize = seen.shards.iter().map(|s| s.lock().unwrap().len).sum();
        assert_eq!((left, len), (0, 0), "nothing is kept for an idle connector");
    }

    #[test]
    fn a_connector_over_its_bound_forgets_only_its_own_oldest() {
        let seen = SeenDeliveries::with_bounds(3, PER_NODE);
        keep(seen.claim_here("quiet", Delivery::of("q1", b""), 1, MINUTES));
        for i in 0..10 {
            keep(seen.claim_here("loud", Delivery::of(&format!("loud{i}"), b""), i, MINUTES));
        }
        assert!(matches!(
            seen.claim_here("loud", Delivery::of("loud9", b""), 0, MINUTES),
            Claim::Duplicate { event_id: 9 }
        ));
        assert!(matches!(seen.claim_here("loud", Delivery::of("loud0", b""), 0, MINUTES), Claim::New(_)), "forgotten");
        assert!(matches!(
            seen.claim_here("quiet", Delivery::of("q1", b""), 0, MINUTES),
            Claim::Duplicate { event_id: 1 }
        ));
    }

    #[test]
    fn a_full_shard_takes_from_the_connector_holding_the_most() {
        // Room for 4 deliveries per shard; three quiet connectors share the
        // flooding one's shard.
        let seen = SeenDeliveries::with_bounds(PER_CONNECTOR, 4 * SHARDS);
        let shard_of = |name: &str| seen.hasher.hash_one(name) as usize % SHARDS;
        let quiet: Vec<String> =
            (0..).map(|i| format!("quiet_{i}")).filter(|n| shard_of(n) == shard_of("flood")).take(3).collect();
        for name in &quiet {
            keep(seen.claim_here(name, Delivery::of("mine", b""), 1, MINUTES));
        }
        for i in 0..1_000 {
            keep(seen.claim_here("flood", Delivery::of(&format!("f{i}"), b""), 2, MINUTES));
        }
        assert_eq!(seen.shards[shard_of("flood")].lock().unwrap().len, 4, "bounded");
        for name in &quiet {
            let again = seen.claim_here(name, Delivery::of("mine", b""), 0, MINUTES);
            assert!(matches!(again, Claim::Duplicate { event_id: 1 }), "{name} kept its delivery: {again:?}");
        }
        let last = seen.claim_here("flood", Delivery::of("f999", b""), 0, MINUTES);
        assert!(matches!(last, Claim::Duplicate { event_id: 2 }), "the flood keeps only its newest");
    }
}
