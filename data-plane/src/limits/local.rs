//! The `local` policy's counters: each node counts its own calls.
//!
//! A counter is one `AtomicU64` holding its window's index and its count,
//! moved forward with compare-and-swap: no lock on the request path beyond
//! the map shard's read lock. A call refused by one limit of a check is
//! taken back from those that had counted it. Counter state lives outside
//! the snapshot, keyed by stable ids, so a config swap never resets a
//! window. Ids are keyed by a 64-bit hash with a per-process random key:
//! no allocation per call, and a collision (two ids sharing a counter) is
//! a 1-in-10^9 event even at a million ids.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use smallvec::SmallVec;

use super::{Counted, Exceeded, Limit, LimitScope, RateStatus, Window};

/// One counter: a scope, a key in it and a window length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CounterKey {
    scope: LimitScope,
    key: u64,
    window: Window,
}

/// Every counter of a node.
#[derive(Default)]
pub struct LocalCounters {
    hasher: RandomState,
    counters: DashMap<CounterKey, AtomicU64>,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters").field("counters", &self.counters.len()).finish_non_exhaustive()
    }
}

impl LocalCounters {
    /// Drops counters of windows that ended before `now` (Unix seconds).
    pub fn evict_idle(&self, now: u64) {
        self.counters.retain(|key, counter| unpack(counter.load(Ordering::Relaxed)).0 >= now / key.window.seconds());
    }

    fn key(&self, limit: &Limit<'_>) -> CounterKey {
        CounterKey { scope: limit.id.scope(), key: self.hasher.hash_one(limit.id), window: limit.window }
    }

    /// Counts a call against every limit at `now` (Unix seconds), or
    /// against none when one refuses it. A limit of 0 is no limit.
    pub fn check(&self, limits: &[Limit<'_>], now: u64) -> Counted {
        let mut tightest: Option<RateStatus> = None;
        // Where each limit counted the call, to take it back from there. A
        // call meets at most four limits: this stays on the stack.
        let mut counted: SmallVec<[(CounterKey, u64); 4]> = SmallVec::new();
        for limit in limits {
            if limit.limit == 0 {
                continue;
            }
            let (index, reset_at) = limit.window.at(now);
            match self.admit(self.key(limit), index, limit.limit) {
                Ok((counted_in, count)) => {
                    counted.push((self.key(limit), counted_in));
                    let status = RateStatus { limit: limit.limit, remaining: limit.limit - count, reset_at };
                    tightest = Some(tightest.map_or(status, |t| t.tighter(status)));
                }
                Err(()) => {
                    for &(key, counted_in) in &counted {
                        self.take_back(key, counted_in);
                    }
                    return Err(Exceeded {
                        scope: limit.id.scope(),
                        status: RateStatus { limit: limit.limit, remaining: 0, reset_at },
                        retry_after: Duration::from_secs(reset_at - now),
                    });
                }
            }
        }
        Ok(tightest)
    }

    /// Counts one call in window `index` if fewer than `limit` were;
    /// returns the window it counted in and the new count.
    fn admit(&self, key: CounterKey, index: u64, limit: u32) -> Result<(u64, u32), ()> {
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
                let window = at.max(index);
                let next = pack(window, count + 1);
                match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Ok((window, count + 1)),
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
    use std::net::IpAddr;

    use super::super::LimitId;
    use super::*;

    /// 12:00:00 UTC on 2023-11-14: a minute and an hour boundary.
    const NOON: u64 = 1_699_963_200;

    fn ip(counters: &LocalCounters, per_minute: u32, now: u64) -> Counted {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        counters.check(&[Limit { id: LimitId::Ip(ip), limit: per_minute, window: Window::Minute }], now)
    }

    #[test]
    fn a_limit_admits_at_most_its_number_in_each_fixed_window() {
        let counters = LocalCounters::default();
        for (i, remaining) in (0..60).rev().enumerate() {
            let status = ip(&counters, 60, NOON + 59 - (i as u64 % 2)).unwrap().unwrap();
            assert_eq!((status.limit, status.remaining, status.reset_at), (60, remaining, NOON + 60));
        }
        let refused = ip(&counters, 60, NOON + 59).unwrap_err();
        assert_eq!((refused.retry_after, refused.status.remaining), (Duration::from_secs(1), 0));
        // The next window starts over at its first second.
        assert_eq!(ip(&counters, 60, NOON + 60).unwrap().unwrap().remaining, 59);
        assert_eq!(ip(&counters, 0, NOON), Ok(None), "zero means unlimited");
    }

    #[test]
    fn the_issue_s_bursts_are_refused_until_the_window_ends() {
        // 60 calls in the first 50 ms of a minute, then 3 more 2.2 s later:
        // all three are refused, to the end of that minute.
        let counters = LocalCounters::default();
        (0..60).for_each(|_| assert!(ip(&counters, 60, NOON).is_ok()));
        for _ in 0..3 {
            let refused = ip(&counters, 60, NOON + 2).unwrap_err();
            assert_eq!(refused.retry_after, Duration::from_secs(58));
        }
    }

    #[test]
    fn a_call_refused_by_one_limit_uses_up_no_other() {
        let counters = LocalCounters::default();
        let (connector, org) = (LimitId::Connector("con_1"), LimitId::Organization("org_1"));
        let limits = [
            Limit { id: connector, limit: 30, window: Window::Minute },
            Limit { id: org, limit: 200, window: Window::Minute },
            Limit { id: org, limit: 1_000, window: Window::Hour },
            Limit { id: org, limit: 2, window: Window::Day },
        ];
        let first = counters.check(&limits, NOON).unwrap().unwrap();
        assert_eq!(
            (first.limit, first.remaining, first.reset_at),
            (2, 1, NOON + 43_200),
            "the day ends at midnight UTC"
        );
        assert!(counters.check(&limits, NOON).is_ok());
        for _ in 0..5 {
            let refused = counters.check(&limits, NOON + 1).unwrap_err();
            assert_eq!((refused.scope, refused.retry_after), (LimitScope::Organization, Duration::from_secs(43_199)));
        }
        let (_, counted) = unpack(counters.counters.get(&counters.key(&limits[0])).unwrap().load(Ordering::Relaxed));
        assert_eq!(counted, 2, "the refused calls were taken back from the connector's minute");
    }

    #[test]
    fn ended_windows_are_evicted() {
        let counters = LocalCounters::default();
        let old = Limit { id: LimitId::Connector("con_old"), limit: 5, window: Window::Minute };
        let current = Limit { id: LimitId::Connector("con_1"), limit: 5, window: Window::Minute };
        assert!(counters.check(&[old], NOON - 60).is_ok(), "the minute before");
        assert!(counters.check(&[current], NOON).is_ok());
        counters.evict_idle(NOON);
        assert_eq!(counters.counters.len(), 1, "only counters of the current window stay");
        assert!(counters.counters.contains_key(&counters.key(&current)));
    }

    #[test]
    fn concurrent_calls_never_exceed_the_limit() {
        let counters = LocalCounters::default();
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..500).filter(|_| ip(&counters, 1_000, NOON).is_ok()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1_000);
    }
}
