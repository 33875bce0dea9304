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
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let now = unix_now();
        if let Some(fleet) = fleet {
            match fleet.count(limits, now).await {
                Ok(counted) => return Ok(counted),
                Err(error) => {
                    fleet.failed(&error);
                    if fleet.policy().fail_closed {
                        return Err(LimitsUnavailable);
                    }
                }
            }
        }
        Ok(self.local.check(limits, now))
    }

    /// Drops counters of windows that have ended.
    pub fn evict_idle(&self) {
        self.local.evict_idle(unix_now());
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
