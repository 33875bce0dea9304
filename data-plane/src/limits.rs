//! Rate limits, `local` policy (SPEC §9): fixed windows aligned to the
//! Unix epoch (UTC), counted on this node.
//!
//! A limit of N per minute, hour or day admits at most N calls in each
//! window of that length: 60 calls in a minute's last second and 60 more
//! in the next minute's first are both allowed, but never 61 in one
//! minute. (A bucket that refills continuously, as this module once used,
//! admits up to 2N − 1 in a minute.) A counter is one `AtomicU64` holding
//! its window's index and its count, moved forward with compare-and-swap:
//! no lock on the request path beyond the map shard's read lock.
//!
//! The limits of one check (a connector's and its organization's three)
//! are counted together: a call refused by one is taken back from those
//! that had counted it, so a refused call uses up no other quota.
//!
//! Counter state lives outside the snapshot, keyed by stable ids, so a
//! config swap never resets a window. Connector and organization ids are
//! keyed by a 64-bit hash with a per-process random key: no allocation per
//! call, and a collision (two ids sharing a counter) is a 1-in-10^9 event
//! even at a million ids.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

/// The period a limit counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }
}

/// Which limit refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    ClientIp,
    Connector,
    Organization,
}

/// A limit's state after a call was counted: what `X-RateLimit-*` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the window ends.
    pub reset_at: u64,
}

impl RateStatus {
    /// The more restrictive of two statuses: fewer calls left, then the
    /// later reset.
    pub fn tighter(self, other: RateStatus) -> RateStatus {
        if (other.remaining, std::cmp::Reverse(other.reset_at)) < (self.remaining, std::cmp::Reverse(self.reset_at)) {
            other
        } else {
            self
        }
    }
}

/// A call over a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: LimitScope,
    pub status: RateStatus,
    /// Until the refusing window ends.
    pub retry_after: Duration,
}

/// What one check counted: the tightest status, if any limit applied.
pub type Counted = Result<Option<RateStatus>, Exceeded>;

/// One counter: a scope, a key in it and a window length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CounterKey {
    scope: LimitScope,
    key: u64,
    window: Window,
}

/// One limit of a check: count against `counter`, at most `limit`.
#[derive(Clone, Copy, Debug)]
struct Limit {
    counter: CounterKey,
    limit: u32,
}

/// Every counter of a node.
#[derive(Default)]
pub struct Limiters {
    hasher: RandomState,
    counters: DashMap<CounterKey, AtomicU64>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").field("counters", &self.counters.len()).finish_non_exhaustive()
    }
}

impl Limiters {
    /// Counts a call from `ip` against `per_minute` (0: unlimited).
    pub fn check_ip(&self, ip: IpAddr, per_minute: u32) -> Counted {
        let key = self.hasher.hash_one(ip);
        self.check(&[self.limit(LimitScope::ClientIp, key, per_minute, Window::Minute)], unix_now())
    }

    /// Counts an authenticated call against its connector's limit and its
    /// organization's three, together.
    pub fn check_authenticated(&self, connector: &str, organization: &str, plan: &hookplane_model::Plan) -> Counted {
        let (connector, organization) = (self.hasher.hash_one(connector), self.hasher.hash_one(organization));
        let limits = [
            self.limit(LimitScope::Connector, connector, plan.per_connector_per_minute, Window::Minute),
            self.limit(LimitScope::Organization, organization, plan.org_per_minute, Window::Minute),
            self.limit(LimitScope::Organization, organization, plan.org_per_hour, Window::Hour),
            self.limit(LimitScope::Organization, organization, plan.org_per_day, Window::Day),
        ];
        self.check(&limits, unix_now())
    }

    /// Drops counters of windows that have ended.
    pub fn evict_idle(&self) {
        let now = unix_now();
        self.counters.retain(|key, counter| unpack(counter.load(Ordering::Relaxed)).0 == now / key.window.seconds());
        self.counters.shrink_to_fit();
    }

    fn limit(&self, scope: LimitScope, key: u64, limit: u32, window: Window) -> Limit {
        Limit { counter: CounterKey { scope, key, window }, limit }
    }

    /// Counts a call against every limit at `now` (Unix seconds), or
    /// against none when one refuses it. A limit of 0 is no limit.
    fn check(&self, limits: &[Limit], now: u64) -> Counted {
        let mut tightest: Option<RateStatus> = None;
        for (i, limit) in limits.iter().enumerate() {
            if limit.limit == 0 {
                continue;
            }
            let window = limit.counter.window.seconds();
            let (index, reset_at) = (now / window, (now / window + 1) * window);
            match self.admit(limit.counter, index, limit.limit) {
                Ok(count) => {
                    let status = RateStatus { limit: limit.limit, remaining: limit.limit - count, reset_at };
                    tightest = Some(tightest.map_or(status, |t| t.tighter(status)));
                }
                Err(()) => {
                    for earlier in limits[..i].iter().filter(|l| l.limit != 0) {
                        self.take_back(earlier.counter, now / earlier.counter.window.seconds());
                    }
                    return Err(Exceeded {
                        scope: limit.counter.scope,
                        status: RateStatus { limit: limit.limit, remaining: 0, reset_at },
                        retry_after: Duration::from_secs(reset_at - now),
                    });
                }
            }
        }
        Ok(tightest)
    }

    /// Counts one call in window `index` if fewer than `limit` were;
    /// returns the new count.
    fn admit(&self, key: CounterKey, index: u64, limit: u32) -> Result<u32, ()> {
        let update = |counter: &AtomicU64| {
            let mut current = counter.load(Ordering::Relaxed);
            loop {
                let (at, count) = unpack(current);
                // A counter of an earlier window starts over; one of a later
                // window (a clock stepped back) counts on where it is.
                let count = if at < index { 0 } else { count };
                if count >= limit {
                    return Err(());
                }
                let next = pack(at.max(index), count + 1);
                match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Ok(count + 1),
                    Err(seen) => current = seen,
                }
            }
        };
        if let Some(counter) = self.counters.get(&key) {
            return update(&counter);
        }
        update(&self.counters.entry(key).or_insert_with(|| AtomicU64::new(pack(index, 0))).downgrade())
    }

    /// Takes back a call counted in window `index`, if that window is
    /// still the counter's.
    fn take_back(&self, key: CounterKey, index: u64) {
        if let Some(counter) = self.counters.get(&key) {
            let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |current| {
                let (at, count) = unpack(current);
                (at == index && count > 0).then(|| pack(at, count - 1))
            });
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A window index (minutes since the epoch fit 32 bits until the year
/// 10 136) and a count, in one word.
fn pack(index: u64, count: u32) -> u64 {
    (index << 32) | u64::from(count)
}

fn unpack(word: u64) -> (u64, u32) {
    (word >> 32, word as u32)
}

#[cfg(test)]
mod tests {
    use hookplane_model::Plan;

    use super::*;

    /// 12:00:00 UTC on some day: a minute, an hour and a day boundary.
    const NOON: u64 = 1_699_963_200;

    fn ip(limiters: &Limiters, per_minute: u32, now: u64) -> Counted {
        let key = limiters.hasher.hash_one("192.0.2.1");
        limiters.check(&[limiters.limit(LimitScope::ClientIp, key, per_minute, Window::Minute)], now)
    }

    #[test]
    fn a_limit_admits_at_most_its_number_in_each_fixed_window() {
        let limiters = Limiters::default();
        for (i, remaining) in (0..60).rev().enumerate() {
            let status = ip(&limiters, 60, NOON + 59 - (i as u64 % 2)).unwrap().unwrap();
            assert_eq!((status.limit, status.remaining, status.reset_at), (60, remaining, NOON + 60));
        }
        let refused = ip(&limiters, 60, NOON + 59).unwrap_err();
        assert_eq!((refused.retry_after, refused.status.remaining), (Duration::from_secs(1), 0));
        // The next window starts over at its first second.
        assert_eq!(ip(&limiters, 60, NOON + 60).unwrap().unwrap().remaining, 59);
        assert_eq!(ip(&limiters, 0, NOON), Ok(None), "zero means unlimited");
    }

    #[test]
    fn the_issue_s_bursts_are_refused_until_the_window_ends() {
        // 60 calls in the first 50 ms of a minute, then 3 more 2.2 s later:
        // all three are refused, to the end of that minute.
        let limiters = Limiters::default();
        (0..60).for_each(|_| assert!(ip(&limiters, 60, NOON).is_ok()));
        for _ in 0..3 {
            let refused = ip(&limiters, 60, NOON + 2).unwrap_err();
            assert_eq!(refused.retry_after, Duration::from_secs(58));
        }
    }

    #[test]
    fn a_call_refused_by_one_limit_uses_up_no_other() {
        let limiters = Limiters::default();
        let plan = Plan {
            per_connector_per_minute: 30,
            org_per_minute: 200,
            org_per_hour: 1_000,
            org_per_day: 2,
            ..Plan::free()
        };
        let (c, o) = (limiters.hasher.hash_one("con_1"), limiters.hasher.hash_one("org_1"));
        let limits = [
            limiters.limit(LimitScope::Connector, c, plan.per_connector_per_minute, Window::Minute),
            limiters.limit(LimitScope::Organization, o, plan.org_per_minute, Window::Minute),
            limiters.limit(LimitScope::Organization, o, plan.org_per_hour, Window::Hour),
            limiters.limit(LimitScope::Organization, o, plan.org_per_day, Window::Day),
        ];
        let first = limiters.check(&limits, NOON).unwrap().unwrap();
        assert_eq!(
            (first.limit, first.remaining, first.reset_at),
            (2, 1, NOON + 43_200),
            "the day is tightest; it ends at midnight UTC"
        );
        assert!(limiters.check(&limits, NOON).is_ok());
        for _ in 0..5 {
            let refused = limiters.check(&limits, NOON + 1).unwrap_err();
            assert_eq!((refused.scope, refused.retry_after), (LimitScope::Organization, Duration::from_secs(43_199)));
        }
        let connector = limits[0];
        let (_, counted) = unpack(limiters.counters.get(&connector.counter).unwrap().load(Ordering::Relaxed));
        assert_eq!(counted, 2, "the refused calls were taken back from the connector's minute");
    }

    #[test]
    fn ended_windows_are_evicted() {
        let limiters = Limiters::default();
        assert!(ip(&limiters, 5, 60).is_ok(), "a window of 1970");
        assert!(limiters.check_ip("192.0.2.9".parse().unwrap(), 5).is_ok());
        limiters.evict_idle();
        assert_eq!(limiters.counters.len(), 1, "only the current window's counter stays");
    }

    #[test]
    fn concurrent_calls_never_exceed_the_limit() {
        let limiters = std::sync::Arc::new(Limiters::default());
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let limiters = limiters.clone();
                    scope.spawn(move || (0..500).filter(|_| ip(&limiters, 1_000, NOON).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1_000);
    }
}
