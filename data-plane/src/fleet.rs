//! The `redis` limiting policy (SPEC §9): rate-limit windows and delivery
//! ids counted in one Redis server for the whole fleet, so a limit is
//! exact however a load balancer spreads the calls, and a delivery one
//! node ran is a duplicate on every other.
//!
//! Each check is one round trip: a Lua script reads every counter of the
//! check and, only if none is full, increments them all, atomically (Redis
//! runs one script at a time). Counter keys name their window
//! (`{prefix}:rl:{scope}:{id}:{seconds}:{index}`) and expire just after
//! it. A delivery is one key holding the first call's event id and whether
//! it ran (`{event}:0` or `{event}:1`), expiring with its window.
//!
//! Redis failing or slower than [`TIMEOUT`] is the caller's to handle, by
//! the policy's fail-open or fail-closed choice; every failure is counted
//! and logged (at most once per [`LOG_EVERY`]). The connection manager
//! reconnects by itself, so the node recovers when Redis does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hookplane_model::RedisPolicy;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::limits::{Counted, Exceeded, Limit, RateStatus};

/// Longest a call waits for Redis before its policy's failure mode applies.
pub const TIMEOUT: Duration = Duration::from_millis(200);
/// How often a continuing Redis failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Counters outlive their window by this much, for nodes whose clocks
/// differ slightly.
const EXPIRY_SLACK_SECS: u64 = 60;

/// Counts every limit of a check if none is full. KEYS: the counters;
/// ARGV: per counter its limit and expiry (Unix seconds). Returns
/// `{0, count…}` when counted, or `{i, count}` for the first full one.
const COUNT: &str = r"
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    return {i, count}
  end
end
local counts = {0}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIREAT', key, ARGV[2 * i])
  end
  counts[i + 1] = count
end
return counts
";

/// Claims a delivery: returns what an earlier call stored, or stores
/// `ARGV[1]` (`{event}:0`) for `ARGV[2]` milliseconds and returns nil.
const CLAIM: &str = r"
local seen = redis.call('GET', KEYS[1])
if seen then
  return seen
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Releases a delivery if it still holds this call's claim.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Why Redis could not serve a check.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis answered {0:?}, not what the script returns")]
    Unexpected(String),
}

/// What Redis holds for a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeenDelivery {
    /// Stored for this call now.
    New,
    /// An earlier call's: its event id, and whether it ran.
    Earlier { event_id: i64, kept: bool },
}

/// A node's connection to the fleet's Redis.
pub struct Fleet {
    policy: RedisPolicy,
    connection: ConnectionManager,
    count: Script,
    claim: Script,
    release: Script,
    failures: AtomicU64,
    last_error: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("policy", &self.policy).field("failures", &self.failures).finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet store for `policy`; it connects on first use, so a node
    /// starts while Redis is down.
    pub fn new(policy: RedisPolicy) -> Result<Fleet, FleetError> {
        let client = redis::Client::open(policy.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let connection = client.get_connection_manager_lazy(config)?;
        Ok(Fleet {
            policy,
            connection,
            count: Script::new(COUNT),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn policy(&self) -> &RedisPolicy {
        &self.policy
    }

    /// Counts a call against every limit at `now` (Unix seconds), or
    /// against none when one refuses it, as the local counters do.
    pub async fn count(&self, limits: &[Limit<'_>], now: u64) -> Result<Counted, FleetError> {
        let applying: Vec<&Limit<'_>> = limits.iter().filter(|l| l.limit != 0).collect();
        if applying.is_empty() {
            return Ok(Ok(None));
        }
        let mut invocation = self.count.prepare_invoke();
        for limit in &applying {
            let (index, reset_at) = limit.window.at(now);
            let seconds = limit.window.seconds();
            invocation.key(format!("{}:rl:{}:{seconds}:{index}", self.policy.key_prefix, limit.id));
            invocation.arg(limit.limit).arg(reset_at + EXPIRY_SLACK_SECS);
        }
        let mut connection = self.connection.clone();
        let answer: Vec<i64> = self.within(invocation.invoke_async(&mut connection)).await?;
        let (&first, counts) = answer.split_first().ok_or_else(|| FleetError::Unexpected(format!("{answer:?}")))?;
        if first > 0 {
            let limit =
                applying.get(first as usize - 1).ok_or_else(|| FleetError::Unexpected(format!("{answer:?}")))?;
            let (_, reset_at) = limit.window.at(now);
            return Ok(Err(Exceeded {
                scope: limit.id.scope(),
                status: RateStatus { limit: limit.limit, remaining: 0, reset_at },
                retry_after: Duration::from_secs(reset_at.saturating_sub(now)),
            }));
        }
        let statuses = applying.iter().zip(counts).map(|(limit, &count)| RateStatus {
            limit: limit.limit,
            remaining: limit.limit.saturating_sub(count.clamp(0, i64::from(u32::MAX)) as u32),
            reset_at: limit.window.at(now).1,
        });
        Ok(Ok(statuses.reduce(RateStatus::tighter)))
    }

    /// Claims `delivery` of `connector` for event `event_id`, remembered
    /// for `keep_for`.
    pub async fn claim(
        &self,
        connector: &str,
        delivery: &str,
        event_id: i64,
        keep_for: Duration,
    ) -> Result<SeenDelivery, FleetError> {
        let mut invocation = self.claim.prepare_invoke();
        invocation.key(self.delivery_key(connector, delivery));
        invocation.arg(format!("{event_id}:0")).arg(keep_for.as_millis().max(1) as u64);
        let mut connection = self.connection.clone();
        let seen: Option<String> = self.within(invocation.invoke_async(&mut connection)).await?;
        let Some(seen) = seen else { return Ok(SeenDelivery::New) };
        let parsed = seen.split_once(':').and_then(|(id, kept)| Some((id.parse().ok()?, kept == "1")));
        let (event_id, kept) = parsed.ok_or(FleetError::Unexpected(seen))?;
        Ok(SeenDelivery::Earlier { event_id, kept })
    }

    /// Marks a claimed delivery as run, keeping its expiry.
    pub async fn keep(&self, connector: &str, delivery: &str, event_id: i64) -> Result<(), FleetError> {
        let mut command = redis::cmd("SET");
        command.arg(self.delivery_key(connector, delivery)).arg(format!("{event_id}:1")).arg("XX").arg("KEEPTTL");
        let mut connection = self.connection.clone();
        let _: Option<String> = self.within(command.query_async(&mut connection)).await?;
        Ok(())
    }

    /// Forgets a claimed delivery, if it is still this call's claim.
    pub async fn release(&self, connector: &str, delivery: &str, event_id: i64) -> Result<(), FleetError> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(self.delivery_key(connector, delivery)).arg(format!("{event_id}:0"));
        let mut connection = self.connection.clone();
        let _: i64 = self.within(invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// Counts and logs a failure; what the call does is the caller's.
    pub fn failed(&self, error: &FleetError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = last.as_ref().is_none_or(|(at, _)| at.elapsed() >= LOG_EVERY);
        if due {
            let fallback = if self.policy.fail_closed {
                "refusing calls (fail closed)"
            } else {
                "counting on this node (fail open)"
            };
            tracing::warn!(error = %error, failures = self.failures.load(Ordering::Relaxed), "Redis limiting failed; {fallback}");
        }
        let at = if due { Instant::now() } else { last.as_ref().map_or_else(Instant::now, |(at, _)| *at) };
        *last = Some((at, error.to_string()));
    }

    /// Failures so far, and the last one's text, for `/readyz`.
    pub fn failures(&self) -> (u64, Option<String>) {
        let last = self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (self.failures.load(Ordering::Relaxed), last.as_ref().map(|(_, text)| text.clone()))
    }

    fn delivery_key(&self, connector: &str, delivery: &str) -> String {
        format!("{}:dl:{connector}:{delivery}", self.policy.key_prefix)
    }

    async fn within<T>(&self, request: impl Future<Output = redis::RedisResult<T>>) -> Result<T, FleetError> {
        match tokio::time::timeout(TIMEOUT, request).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(FleetError::Timeout(TIMEOUT)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the real Redis at `TEST_REDIS_URL` (`.ci/run` starts it).

    use std::net::IpAddr;

    use super::*;
    use crate::limits::{LimitId, LimitScope, Window};

    fn policy(fail_closed: bool) -> RedisPolicy {
        RedisPolicy {
            url: std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            fail_closed,
            // Every test on its own keys, however often the suite runs.
            key_prefix: format!("hookplane-test-{:x}", rand::random::<u64>()),
        }
    }

    /// An hour's start, an hour from now: every counter expires in the
    /// future (Redis drops a key whose expiry has passed at once).
    fn next_hour() -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        (now / 3_600 + 1) * 3_600
    }

    #[tokio::test]
    async fn a_limit_is_exact_across_nodes_and_a_refused_call_counts_nowhere() {
        let hour = next_hour();
        let policy = policy(false);
        let nodes = [Fleet::new(policy.clone()).unwrap(), Fleet::new(policy).unwrap()];
        let (connector, org) = (LimitId::Connector("con_1"), LimitId::Organization("org_1"));
        let limits = [
            Limit { id: connector, limit: 5, window: Window::Minute },
            Limit { id: org, limit: 0, window: Window::Minute },
            Limit { id: org, limit: 8, window: Window::Hour },
        ];
        // Ten calls at once, five on each node: five are admitted in all.
        let calls = (0..10).map(|i| nodes[i % 2].count(&limits, hour + 1));
        let answers = futures::future::join_all(calls).await;
        let admitted: Vec<RateStatus> =
            answers.iter().filter_map(|a| a.as_ref().unwrap().as_ref().ok().copied().flatten()).collect();
        assert_eq!(admitted.len(), 5);
        let mut remaining: Vec<u32> = admitted.iter().map(|s| s.remaining).collect();
        remaining.sort_unstable();
        assert_eq!(remaining, [0, 1, 2, 3, 4], "each admitted call saw its own count");
        let refused = nodes[0].count(&limits, hour + 2).await.unwrap().unwrap_err();
        assert_eq!((refused.scope, refused.retry_after), (LimitScope::Connector, Duration::from_secs(58)));
        // The hour counted only the five admitted calls: three more fit
        // once the connector's minute is over.
        for _ in 0..3 {
            assert!(nodes[1].count(&limits, hour + 61).await.unwrap().is_ok());
        }
        let over = nodes[1].count(&limits, hour + 62).await.unwrap().unwrap_err();
        assert_eq!((over.scope, over.status.limit), (LimitScope::Organization, 8));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let unlimited = [Limit { id: LimitId::Ip(ip), limit: 0, window: Window::Minute }];
        assert_eq!(nodes[0].count(&unlimited, hour).await.unwrap(), Ok(None));
    }

    #[tokio::test]
    async fn a_delivery_is_claimed_once_across_nodes_until_released() {
        let policy = policy(false);
        let (a, b) = (Fleet::new(policy.clone()).unwrap(), Fleet::new(policy).unwrap());
        let keep_for = Duration::from_secs(60);
        assert_eq!(a.claim("con_1", "d1", 7, keep_for).await.unwrap(), SeenDelivery::New);
        assert_eq!(
            b.claim("con_1", "d1", 8, keep_for).await.unwrap(),
            SeenDelivery::Earlier { event_id: 7, kept: false }
        );
        a.keep("con_1", "d1", 7).await.unwrap();
        assert_eq!(
            b.claim("con_1", "d1", 9, keep_for).await.unwrap(),
            SeenDelivery::Earlier { event_id: 7, kept: true }
        );
        assert_eq!(b.claim("con_2", "d1", 9, keep_for).await.unwrap(), SeenDelivery::New, "another connector's");
        // A failed call releases its claim; another call's claim stays.
        assert_eq!(a.claim("con_1", "d2", 10, keep_for).await.unwrap(), SeenDelivery::New);
        b.release("con_1", "d2", 11).await.unwrap();
        assert_eq!(
            b.claim("con_1", "d2", 12, keep_for).await.unwrap(),
            SeenDelivery::Earlier { event_id: 10, kept: false }
        );
        a.release("con_1", "d2", 10).await.unwrap();
        assert_eq!(b.claim("con_1", "d2", 12, keep_for).await.unwrap(), SeenDelivery::New);
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_and_is_counted() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let fleet = Fleet::new(RedisPolicy { url: format!("redis://127.0.0.1:{port}"), ..policy(true) }).unwrap();
        let limits = [Limit { id: LimitId::Connector("con_1"), limit: 5, window: Window::Minute }];
        let started = Instant::now();
        let error = fleet.count(&limits, next_hour()).await.unwrap_err();
        assert!(started.elapsed() < 2 * TIMEOUT + Duration::from_millis(500), "{:?}", started.elapsed());
        fleet.failed(&error);
        let (failures, last) = fleet.failures();
        assert_eq!(failures, 1);
        assert!(!last.unwrap().contains("password"), "the error names no credential");
    }
}
