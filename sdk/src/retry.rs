//! Retries of calls the server could not take: UNAVAILABLE, which gRPC
//! answers when no connection could be made or one broke (a control
//! plane restarting, a load balancer moving it). Every other code is the
//! server's answer and is returned as it is: retrying a refused key or
//! an invalid request would only repeat it.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;
use tonic::{Code, Response, Status};

use crate::Error;

/// How calls are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 retries nothing.
    pub max_attempts: u32,
    /// The wait before the first retry; doubled before each next one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts over about 3 seconds: a control plane restarting.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub const NEVER: RetryPolicy =
        RetryPolicy { max_attempts: 1, initial_backoff: Duration::ZERO, max_backoff: Duration::ZERO };

    /// The wait before retry `n` (1 for the first): the backoff, doubled
    /// per retry and capped, with half of it random, so clients that lost
    /// the server together do not return together.
    pub fn backoff(&self, n: u32) -> Duration {
        let full = self.initial_backoff.saturating_mul(1 << n.saturating_sub(1).min(16)).min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// Makes the call `call` builds until it answers other than
    /// UNAVAILABLE or the attempts run out. Only for calls that are safe to
    /// repeat: reads, and writes with a `request_id` or an `etag`.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unavailable && attempt < self.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_cap_and_keeps_half() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800), "{third:?}");
            assert!(policy.backoff(30) <= Duration::from_secs(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_unavailable_is_retried_and_only_so_often() {
        let policy = RetryPolicy::default();
        let mut calls = 0;
        let result: Result<(), Error> = policy
            .call(|| {
                calls += 1;
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!((result.unwrap_err().code(), calls), (Some(Code::Unavailable), 5));
        let mut calls = 0;
        let result: Result<(), Error> = policy
            .call(|| {
                calls += 1;
                async { Err(Status::unauthenticated("bad key")) }
            })
            .await;
        assert_eq!((result.unwrap_err().code(), calls), (Some(Code::Unauthenticated), 1));
        let mut calls = 0;
        let answered = policy
            .call(|| {
                calls += 1;
                let up = calls == 3;
                async move { if up { Ok(Response::new(7)) } else { Err(Status::unavailable("starting")) } }
            })
            .await;
        assert_eq!((answered.unwrap(), calls), (7, 3));
    }
}
