//! Rate limits (SPEC §9): fixed windows aligned to the Unix epoch (UTC),
//! counted on this node (`local` policy, [`local`]) or in the fleet's
//! Redis (`redis` policy, [`crate::fleet`]).
//!
//! A limit of N per minute, hour or day admits at most N calls in each
//! window of that length: 60 calls in a minute's last second and 60 more
//! in the next minute's first are both allowed, but never 61 in one
//! minute. (A bucket that refills continuously, as this module once used,
//! admits up to 2N − 1 in a minute.) The limits of one check (a
//! connector's and its organization's three) are counted together: a call
//! refused by one counts against none, so a refused call uses up no other
//! quota.

mod local;

use std::fmt;
use std::hash::{BuildHasher as _, RandomState};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use hookplane_model::Plan;

use crate::fleet::Fleet;
pub use local::LocalCounters;

/// The period a limit counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    /// The index of the window holding `now` (Unix seconds), and when it
    /// ends.
    pub fn at(self, now: u64) -> (u64, u64) {
        let index = now / self.seconds();
        (index, (index + 1) * self.seconds())
    }
}

/// Which limit refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    ClientIp,
    Connector,
    Organization,
}

/// Whose calls a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitId<'a> {
    Ip(IpAddr),
    Connector(&'a str),
    Organization(&'a str),
}

impl LimitId<'_> {
    pub fn scope(self) -> LimitScope {
        match self {
            LimitId::Ip(_) => LimitScope::ClientIp,
            LimitId::Connector(_) => LimitScope::Connector,
            LimitId::Organization(_) => LimitScope::Organization,
        }
    }
}

/// As Redis keys name it: stable across nodes.
impl fmt::Display for LimitId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitId::Ip(ip) => write!(f, "ip:{ip}"),
            LimitId::Connector(id) => write!(f, "con:{id}"),
            LimitId::Organization(id) => write!(f, "org:{id}"),
        }
    }
}

/// One limit of a check: at most `limit` calls of `id` per `window`; 0 is
/// no limit.
#[derive(Clone, Copy, Debug)]
pub struct Limit<'a> {
    pub id: LimitId<'a>,
    pub limit: u32,
    pub window: Window,
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

/// The fleet's Redis failed and the policy fails closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the fleet's rate-limit store cannot answer")]
pub struct LimitsUnavailable;

/// A node's limiters: its own counters, and the fleet's when the policy
/// is `redis`.
#[derive(Debug, Default)]
pub struct Limiters {
    pub local: LocalCounters,
    /// Limits the fleet's Redis refused, until their window ends: a caller
    /// already over its limit costs no Redis round trip, so a flood from
    /// one address does not slow other tenants' checks.
    refused: DashMap<u64, u64>,
    hasher: RandomState,
}

impl Limiters {
    /// Counts a call from `ip` against `per_minute`.
    pub async fn check_ip(
        &self,
        fleet: Option<&Fleet>,
        ip: IpAddr,
        per_minute: u32,
    ) -> Result<Counted, LimitsUnavailable> {
        self.check(fleet, &[Limit { id: LimitId::Ip(ip), limit: per_minute, window: Window::Minute }]).await
    }

    /// Counts an authenticated call against its connector's limit and its
    /// organization's three, together.
    pub async fn check_authenticated(
        &self,
        fleet: Option<&Fleet>,
        connector: &str,
        organization: &str,
        plan: &Plan,
    ) -> Result<Counted, LimitsUnavailable> {
        let (connector, organization) = (LimitId::Connector(connector), LimitId::Organization(organization));
        let limits = [
            Limit { id: connector, limit: plan.per_connector_per_minute, window: Window::Minute },
            Limit { id: organization, limit: plan.org_per_minute, window: Window::Minute },
            Limit { id: organization, limit: plan.org_per_hour, window: Window::Hour },
            Limit { id: organization, limit: plan.org_per_day, window: Window::Day },
        ];
        self.check(fleet, &limits).await
    }

    /// In the fleet's Redis when there is one; on this node when there is
    /// none, or while it fails and the policy fails open.
    async fn check(&self, fleet: Option<&Fleet>, limits: &[Limit<'_>]) -> Result<Counted, LimitsUnavailable> {
        let Some(fleet) = fleet else { return Ok(self.local.check(limits, unix_now())) };
        let now = unix_now();
        if let Some(known) = self.known_refusal(limits, now) {
            return Ok(Err(known));
        }
        // Boxed: a Redis round trip's state is for a fleet's calls only, not
        // part of every trigger's future (see `trigger::check_order`).
        match Box::pin(fleet.count(limits, now)).await {
            Ok(Err(exceeded)) => {
                self.remember_refusal(limits, &exceeded, now);
                Ok(Err(exceeded))
            }
            Ok(counted) => Ok(counted),
            Err(error) => {
                fleet.failed(&error);
                if fleet.policy().fail_closed {
                    return Err(LimitsUnavailable);
                }
                Ok(self.local.check(limits, unix_now()))
            }
        }
    }

    fn refusal_key(&self, limit: &Limit<'_>) -> u64 {
        self.hasher.hash_one((limit.id, limit.window, limit.limit))
    }

    /// A refusal the fleet gave one of `limits` in the window holding `now`.
    fn known_refusal(&self, limits: &[Limit<'_>], now: u64) -> Option<Exceeded> {
        limits.iter().filter(|l| l.limit != 0).find_map(|limit| {
            let reset_at = *self.refused.get(&self.refusal_key(limit)).filter(|reset_at| **reset_at > now)?;
            Some(Exceeded {
                scope: limit.id.scope(),
                status: RateStatus { limit: limit.limit, remaining: 0, reset_at },
                retry_after: Duration::from_secs(reset_at - now),
            })
        })
    }

    fn remember_refusal(&self, limits: &[Limit<'_>], exceeded: &Exceeded, now: u64) {
        let refusing = limits.iter().find(|l| {
            l.id.scope() == exceeded.scope
                && l.limit == exceeded.status.limit
                && l.window.at(now).1 == exceeded.status.reset_at
        });
        if let Some(limit) = refusing {
            self.refused.insert(self.refusal_key(limit), exceeded.status.reset_at);
        }
    }

    /// Drops counters and refusals of windows that have ended.
    pub fn evict_idle(&self) {
        let now = unix_now();
        self.local.evict_idle(now);
        self.refused.retain(|_, reset_at| *reset_at > now);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use hookplane_model::RedisPolicy;

    use super::*;

    fn broken_fleet(fail_closed: bool) -> Fleet {
        let url = "rediss://cache.invalid".to_owned();
        Fleet::new(RedisPolicy { url, fail_closed, key_prefix: "t".into(), timeout: Duration::from_secs(1) })
    }

    #[tokio::test]
    async fn a_failing_fleet_fails_closed_or_counts_here() {
        let limiters = Limiters::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(limiters.check_ip(Some(&broken_fleet(true)), ip, 5).await, Err(LimitsUnavailable));
        let open = limiters.check_ip(Some(&broken_fleet(false)), ip, 5).await.unwrap().unwrap().unwrap();
        assert_eq!(open.remaining, 4, "counted on this node");
    }

    #[tokio::test]
    async fn a_refusal_the_fleet_gave_holds_to_its_window_end_without_asking_again() {
        let limiters = Limiters::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let limits = [Limit { id: LimitId::Ip(ip), limit: 5, window: Window::Minute }];
        let now = unix_now();
        let (_, reset_at) = Window::Minute.at(now);
        let exceeded = Exceeded {
            scope: LimitScope::ClientIp,
            status: RateStatus { limit: 5, remaining: 0, reset_at },
            retry_after: Duration::from_secs(reset_at - now),
        };
        limiters.remember_refusal(&limits, &exceeded, now);
        // A fail-closed fleet that cannot answer is not even asked.
        let known = limiters.check_ip(Some(&broken_fleet(true)), ip, 5).await.unwrap().unwrap_err();
        assert_eq!((known.scope, known.status.reset_at), (LimitScope::ClientIp, reset_at));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limiters.check_ip(Some(&broken_fleet(true)), other, 5).await, Err(LimitsUnavailable));
        assert!(limiters.known_refusal(&limits, reset_at).is_none(), "over when the window is");
    }
}
