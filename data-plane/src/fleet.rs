//! The `redis` limiting policy (SPEC §9): rate-limit windows and delivery
//! ids counted in one Redis server for the whole fleet, so a limit is
//! exact however a load balancer spreads the calls, and a delivery one
//! node ran is a duplicate on every other.
//!
//! Each check is one round trip: a Lua script increments every counter of
//! the check and, if one goes over its limit, takes the call back from all
//! of them, atomically (Redis runs one script at a time): a call counts in
//! all of a check's counters or in none. Counter keys name their window
//! (`{prefix}:rl:{scope}:{id}:{seconds}:{index}`, the index from the
//! node's clock, which NTP keeps within milliseconds of the others') and
//! expire a minute after it, relative to Redis's own clock. A delivery is
//! one key holding the first call's event id and whether it ran
//! (`{event}:0` or `{event}:1`); only the claiming call turns or drops it.
//!
//! Redis failing, or slower than the policy's timeout, is the caller's to
//! handle by the policy's fail-open or fail-closed choice. Every failure
//! is counted and logged (at most once per [`LOG_EVERY`]) and starts a
//! [`COOL_OFF`] in which calls skip Redis at once instead of each waiting
//! out the timeout; the first call after it probes Redis again. A timeout
//! also replaces the connection: a silent peer (a partition, a failover to
//! another address) is not noticed by the socket for minutes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hookplane_model::RedisPolicy;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::limits::{Counted, Exceeded, Limit, RateStatus};

/// How often a continuing Redis failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// After a failure, how long calls skip Redis before one tries it again.
pub const COOL_OFF: Duration = Duration::from_secs(1);
/// Counters outlive their window by this much, for nodes whose clocks
/// differ slightly.
const EXPIRY_SLACK_SECS: u64 = 60;

/// Counts every limit of a check if none is full. KEYS: the counters;
/// ARGV: per counter its limit and its lifetime in seconds. Returns
/// `{0, count…}` when counted, or `{i, count}` for the first full one,
/// having taken the call back from every counter. Incrementing first and
/// taking back on a refusal costs admitted calls (the common case) one
/// command per counter, where reading first cost two (measured in
/// `benches/fleet.rs`).
const COUNT: &str = r"
local counts = {0}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIRE', key, ARGV[2 * i])
  end
  if count > tonumber(ARGV[2 * i - 1]) then
    for j = 1, i do
      redis.call('DECR', KEYS[j])
    end
    return {i, count - 1}
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

/// Marks a delivery as run (`ARGV[2]`) if it still holds this call's
/// claim (`ARGV[1]`), keeping its expiry (PTTL: Redis 2.6 and later).
const KEEP: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  end
  return 1
end
return 0
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
    #[error("Redis failed moments ago; it is tried again after {COOL_OFF:?}")]
    CoolingOff,
    #[error("redis_url does not open: {0}")]
    BadUrl(String),
}

/// Whether `url` is one this node can connect to (`redis://`, or a Unix
/// socket; TLS to Redis is not built in: tunnel it).
pub fn check_url(url: &str) -> Result<(), FleetError> {
    if url.starts_with("rediss://") {
        return Err(FleetError::BadUrl("TLS (rediss://) is not built in; reach Redis through a TLS tunnel".into()));
    }
    redis::Client::open(url).map(drop).map_err(|err| FleetError::BadUrl(err.to_string()))
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
    /// `None` when the URL does not open: every call fails, so a
    /// fail-closed policy still refuses rather than counting locally.
    client: Option<redis::Client>,
    connection: Option<ArcSwap<ConnectionManager>>,
    count: Script,
    claim: Script,
    keep: Script,
    release: Script,
    failures: AtomicU64,
    /// Nanoseconds after `started` until which calls skip Redis.
    cool_off_until: AtomicU64,
    started: Instant,
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
    pub fn new(policy: RedisPolicy) -> Fleet {
        let (client, connection, problem) = match check_url(&policy.url)
            .and_then(|()| redis::Client::open(policy.url.as_str()).map_err(FleetError::from))
            .and_then(|client| Ok((Self::connect(&client, policy.timeout)?, client)))
        {
            Ok((connection, client)) => (Some(client), Some(ArcSwap::from_pointee(connection)), None),
            Err(err) => (None, None, Some(err.to_string())),
        };
        let fleet = Fleet {
            policy,
            client,
            connection,
            count: Script::new(COUNT),
            claim: Script::new(CLAIM),
            keep: Script::new(KEEP),
            release: Script::new(RELEASE),
            failures: AtomicU64::new(0),
            cool_off_until: AtomicU64::new(0),
            started: Instant::now(),
            last_error: Mutex::new(None),
        };
        if let Some(problem) = problem {
            tracing::error!(error = %problem, "the redis limiting policy cannot be followed; every check fails over");
            *fleet.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), problem));
        }
        fleet
    }

    fn connect(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, FleetError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(client.get_connection_manager_lazy(config)?)
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
            invocation.arg(limit.limit).arg(reset_at - now + EXPIRY_SLACK_SECS);
        }
        let answer: Vec<i64> =
            self.run(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
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
        let seen: Option<String> =
            self.run(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        let Some(seen) = seen else { return Ok(SeenDelivery::New) };
        let parsed = seen.split_once(':').and_then(|(id, kept)| Some((id.parse().ok()?, kept == "1")));
        let (event_id, kept) = parsed.ok_or(FleetError::Unexpected(seen))?;
        Ok(SeenDelivery::Earlier { event_id, kept })
    }

    /// Marks this call's claim of a delivery as run, keeping its expiry.
    pub async fn keep(&self, connector: &str, delivery: &str, event_id: i64) -> Result<(), FleetError> {
        let mut invocation = self.keep.prepare_invoke();
        invocation.key(self.delivery_key(connector, delivery));
        invocation.arg(format!("{event_id}:0")).arg(format!("{event_id}:1"));
        let _: i64 = self.run(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        Ok(())
    }

    /// Forgets a claimed delivery, if it is still this call's claim.
    pub async fn release(&self, connector: &str, delivery: &str, event_id: i64) -> Result<(), FleetError> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(self.delivery_key(connector, delivery)).arg(format!("{event_id}:0"));
        let _: i64 = self.run(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        Ok(())
    }

    /// Counts and logs a failure; what the call does is the caller's.
    /// Starts a cool-off, and after a timeout replaces the connection.
    pub fn failed(&self, error: &FleetError) {
        if matches!(error, FleetError::CoolingOff) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = self.started.elapsed() + COOL_OFF;
        self.cool_off_until.fetch_max(until.as_nanos() as u64, Ordering::Relaxed);
        if let (FleetError::Timeout(_), Some(client), Some(connection)) = (error, &self.client, &self.connection)
            && let Ok(fresh) = Self::connect(client, self.policy.timeout)
        {
            connection.store(std::sync::Arc::new(fresh));
        }
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

    /// Runs one request on the current connection within the timeout,
    /// unless a recent failure's cool-off is still on.
    async fn run<T, F, Fut>(&self, request: F) -> Result<T, FleetError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Some(connection) = &self.connection else {
            return Err(FleetError::BadUrl("see the node's log".into()));
        };
        if (self.started.elapsed().as_nanos() as u64) < self.cool_off_until.load(Ordering::Relaxed) {
            return Err(FleetError::CoolingOff);
        }
        let connection = ConnectionManager::clone(&connection.load());
        match tokio::time::timeout(self.policy.timeout, request(connection)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(FleetError::Timeout(self.policy.timeout)),
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
            // A busy CI machine must not fail a test over a slow answer.
            timeout: Duration::from_secs(5),
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
        let nodes = [Fleet::new(policy.clone()), Fleet::new(policy)];
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
        let (a, b) = (Fleet::new(policy.clone()), Fleet::new(policy));
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
    async fn an_unreachable_redis_fails_fast_then_cools_off_and_names_no_credential() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("redis://hookplane:s3cret-pass@127.0.0.1:{port}");
        let fleet = Fleet::new(RedisPolicy { url, ..policy(true) });
        let limits = [Limit { id: LimitId::Connector("con_1"), limit: 5, window: Window::Minute }];
        let started = Instant::now();
        let error = fleet.count(&limits, next_hour()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "refused at once: {:?}", started.elapsed());
        fleet.failed(&error);
        // Within the cool-off, calls skip Redis without waiting.
        let skipped = fleet.count(&limits, next_hour()).await.unwrap_err();
        assert!(matches!(skipped, FleetError::CoolingOff), "{skipped}");
        fleet.failed(&skipped);
        let (failures, last) = fleet.failures();
        assert_eq!(failures, 1, "a skipped call is no new failure");
        let last = last.unwrap();
        assert!(!last.contains("s3cret") && !format!("{fleet:?}").contains("s3cret"), "{last}");
    }

    #[test]
    fn urls_a_node_cannot_use_are_refused_by_name() {
        assert!(check_url("redis://127.0.0.1:6379/2").is_ok());
        assert!(check_url("unix:///run/redis.sock").is_ok());
        assert!(check_url("rediss://cache.internal:6380").unwrap_err().to_string().contains("TLS"));
        assert!(check_url("http://cache.internal").is_err());
        // A fleet on such a URL fails every check, so fail-closed holds.
        let fleet = Fleet::new(RedisPolicy { url: "rediss://cache.internal".into(), ..policy(true) });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let limits = [Limit { id: LimitId::Connector("con_1"), limit: 5, window: Window::Minute }];
        assert!(matches!(runtime.block_on(fleet.count(&limits, next_hour())), Err(FleetError::BadUrl(_))));
    }
}
