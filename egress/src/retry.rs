//! When to call a tenant's endpoint again (SPEC §7, §8): the backoff
//! between attempts and the endpoint's own `Retry-After`, shared by a
//! node's performs and the control plane's platform webhooks.

use std::time::Duration;

use hyper::header::HeaderValue;
use rand::Rng as _;

/// Exponential backoff: the documented delay (`base`, then doubling) plus
/// up to a quarter more at random, so retries from many triggers spread
/// out. Jitter only adds: a target is never called again sooner than the
/// documentation promises its owner.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let documented = base.saturating_mul(1 << (attempt - 1).min(16));
    documented + rand::rng().random_range(Duration::ZERO..=documented / 4)
}

/// `Retry-After` as delay seconds or an HTTP date (RFC 9110 §10.2.3); a
/// value that is neither is ignored and the backoff applies.
pub fn retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after(&HeaderValue::from_static(" 7 ")), Some(Duration::from_secs(7)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
        let wait = retry_after(&HeaderValue::from_str(&soon).unwrap()).unwrap();
        assert!(wait > Duration::from_secs(18) && wait <= Duration::from_secs(20), "{wait:?}");
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(retry_after(&HeaderValue::from_str(&past).unwrap()), Some(Duration::ZERO));
        assert_eq!(retry_after(&HeaderValue::from_static("soon")), None);
        assert_eq!(retry_after(&HeaderValue::from_static("-3")), None);
    }

    #[test]
    fn backoff_doubles_and_jitter_only_adds() {
        // Seed 001: 500 ms before the first retry, 1 000 ms before the
        // second; the first retry used to leave after 250-500 ms.
        let base = Duration::from_millis(500);
        for attempt in 1..=4 {
            let documented = base * (1 << (attempt - 1));
            for _ in 0..200 {
                let delay = backoff(base, attempt);
                assert!(delay >= documented && delay <= documented * 5 / 4, "attempt {attempt}: {delay:?}");
            }
        }
    }
}
