//! Rate limits, `local` policy (SPEC §9): GCRA buckets per client IP, per
//! connector and per organization (minute, hour and day), kept on this node.
//!
//! Limiter state lives outside the snapshot, keyed by stable ids, so a
//! config swap never resets a bucket. Buckets are grouped by quota: a plan
//! change moves keys to the family of the new quota. Keys that have been
//! idle long enough to be full again are evicted by [`Limiters::evict_idle`].
//! Connector and organization ids are keyed by a 64-bit hash with a
//! per-process random key: no allocation per call, and a collision (two ids
//! sharing a bucket) is a 1-in-10^9 event even at a million ids.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// The period a limit counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    fn period(self) -> Duration {
        Duration::from_secs(match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        })
    }
}

/// A limit's state after a call was counted: what `X-RateLimit-*` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
}

impl RateStatus {
    /// The more restrictive of two statuses: fewer calls left, then the
    /// later reset.
    pub fn tighter(self, other: RateStatus) -> RateStatus {
        if (other.remaining, std::cmp::Reverse(other.reset_after))
            < (self.remaining, std::cmp::Reverse(self.reset_after))
        {
            other
        } else {
            self
        }
    }
}

/// A call over a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub status: RateStatus,
    /// When the next call would be allowed.
    pub retry_after: Duration,
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// A quota: so many calls per window.
type QuotaKey = (u32, Window);

/// Limiters of one key type, one per distinct quota.
struct Family<K: Hash + Eq + Clone> {
    by_quota: RwLock<HashMap<QuotaKey, Arc<Keyed<K>>>>,
}

impl<K: Hash + Eq + Clone> Default for Family<K> {
    fn default() -> Self {
        Family { by_quota: RwLock::default() }
    }
}

impl<K: Hash + Eq + Clone> Family<K> {
    fn limiter(&self, count: NonZeroU32, window: Window) -> Arc<Keyed<K>> {
        let key = (count.get(), window);
        if let Some(limiter) = self.by_quota.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return limiter.clone();
        }
        let mut families = self.by_quota.write().unwrap_or_else(|p| p.into_inner());
        families
            .entry(key)
            .or_insert_with(|| {
                let quota = Quota::with_period(window.period() / count.get())
                    .expect("a window divided by a u32 is never zero")
                    .allow_burst(count);
                Arc::new(RateLimiter::dashmap_with_clock(quota, DefaultClock::default()).with_middleware())
            })
            .clone()
    }

    fn evict_idle(&self) {
        let families = self.by_quota.read().unwrap_or_else(|p| p.into_inner());
        for limiter in families.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Every limiter of a node.
#[derive(Default)]
pub struct Limiters {
    clock: DefaultClock,
    hasher: RandomState,
    per_ip: Family<IpAddr>,
    per_connector: Family<u64>,
    per_organization: Family<u64>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

impl Limiters {
    /// Counts a call from `ip` against `per_minute` (0: unlimited).
    pub fn check_ip(&self, ip: IpAddr, per_minute: u32) -> Result<Option<RateStatus>, Exceeded> {
        check(&self.clock, &self.per_ip, &ip, per_minute, Window::Minute)
    }

    /// Counts a call to a connector.
    pub fn check_connector(&self, connector: &str, per_minute: u32) -> Result<Option<RateStatus>, Exceeded> {
        let key = self.hasher.hash_one(connector);
        check(&self.clock, &self.per_connector, &key, per_minute, Window::Minute)
    }

    /// Counts a call against an organization's limit over `window`.
    pub fn check_organization(
        &self,
        organization: &str,
        count: u32,
        window: Window,
    ) -> Result<Option<RateStatus>, Exceeded> {
        let key = self.hasher.hash_one(organization);
        check(&self.clock, &self.per_organization, &key, count, window)
    }

    /// Drops the state of keys whose buckets are full again.
    pub fn evict_idle(&self) {
        self.per_ip.evict_idle();
        self.per_connector.evict_idle();
        self.per_organization.evict_idle();
    }
}

fn check<K: Hash + Eq + Clone>(
    clock: &DefaultClock,
    family: &Family<K>,
    key: &K,
    count: u32,
    window: Window,
) -> Result<Option<RateStatus>, Exceeded> {
    let Some(count) = NonZeroU32::new(count) else {
        return Ok(None);
    };
    let limiter = family.limiter(count, window);
    let interval = window.period() / count.get();
    match limiter.check_key(key) {
        Ok(state) => {
            let remaining = state.remaining_burst_capacity();
            Ok(Some(RateStatus { limit: count.get(), remaining, reset_after: interval * (count.get() - remaining) }))
        }
        Err(denied) => {
            let retry_after = denied.wait_time_from(clock.now());
            Err(Exceeded {
                status: RateStatus { limit: count.get(), remaining: 0, reset_after: interval * count.get() },
                retry_after,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limiters = Limiters::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for expected_remaining in (0..3).rev() {
            let status = limiters.check_ip(ip, 3).unwrap().unwrap();
            assert_eq!((status.limit, status.remaining), (3, expected_remaining));
        }
        let exceeded = limiters.check_ip(ip, 3).unwrap_err();
        assert!(exceeded.retry_after > Duration::from_secs(15) && exceeded.retry_after <= Duration::from_secs(20));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiters.check_ip(other, 3).is_ok(), "keys have their own buckets");
        assert_eq!(limiters.check_ip(ip, 0), Ok(None), "zero means unlimited");
    }

    #[test]
    fn windows_are_separate_buckets_and_the_tighter_status_wins() {
        let limiters = Limiters::default();
        let org = "org_1";
        let minute = limiters.check_organization(org, 200, Window::Minute).unwrap().unwrap();
        let day = limiters.check_organization(org, 2, Window::Day).unwrap().unwrap();
        assert_eq!(day.remaining, 1);
        assert_eq!(minute.tighter(day), day);
        assert!(limiters.check_organization(org, 2, Window::Day).is_ok());
        assert!(limiters.check_organization(org, 2, Window::Day).is_err());
        assert!(limiters.check_organization(org, 200, Window::Minute).is_ok());
    }
}
