//! Circuit breakers per target URL (SPEC §7).
//!
//! Closed: calls pass and outcomes are counted over a window; when the
//! window holds at least `min_requests` calls and the failure rate reaches
//! `failure_rate`, the breaker opens. Open: calls are refused until the
//! cooldown ends. Half-open: one probe passes; its success closes the
//! breaker, its failure opens it again. The lock is held for a few
//! instructions, never across an await.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// When breakers open and how long they stay open.
#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    pub window: Duration,
    pub min_requests: u32,
    /// Failures per call, 0.0..=1.0.
    pub failure_rate: f64,
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: Duration::from_secs(30),
            min_requests: 10,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A breaker's target: a URL's scheme, host, port and path, not its query
/// or credentials. Without credentials, the usual case, that is the start
/// of the URL's text, borrowed.
pub fn breaker_key(url: &url::Url) -> Cow<'_, str> {
    if url.username().is_empty() && url.password().is_none() {
        return Cow::Borrowed(&url[..url::Position::AfterPath]);
    }
    let mut key = url.clone();
    key.set_query(None);
    key.set_fragment(None);
    let _ = key.set_username("");
    let _ = key.set_password(None);
    Cow::Owned(key.into())
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed {
        since: Instant,
        calls: u32,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cooldown ended and one probe is out.
    Probing,
}

/// A breaker's answer to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The one call let through after the cooldown.
    Probe,
    Refused,
}

/// What happened to a breaker after an outcome was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    /// A probe failed: open again, as it was before the probe. Not news.
    Reopened,
    Closed,
}

/// Every breaker of a node, by target URL.
#[derive(Debug, Default)]
pub struct Breakers {
    settings: BreakerSettings,
    states: Mutex<HashMap<String, State>>,
    /// Breakers opened and closed so far, for `/metrics`.
    pub opened: Counter,
    pub closed: Counter,
}

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Breakers {
        Breakers { settings, ..Breakers::default() }
    }

    /// Breakers open now (refusing, or letting their one probe through).
    pub fn open_now(&self) -> usize {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.values().filter(|state| !matches!(state, State::Closed { .. })).count()
    }

    /// Whether a call to `target` may go out now.
    pub fn admit(&self, target: &str) -> Admission {
        // The clock is read only where an open breaker asks: healthy
        // targets, nearly every call, need no time.
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get_mut(target) {
            None | Some(State::Closed { .. }) => Admission::Allowed,
            Some(State::Probing) => Admission::Refused,
            Some(state @ State::Open { .. }) => {
                let State::Open { until } = *state else { unreachable!() };
                if Instant::now() < until {
                    Admission::Refused
                } else {
                    *state = State::Probing;
                    Admission::Probe
                }
            }
        }
    }

    /// Records a call's outcome.
    pub fn record(&self, target: &str, success: bool) -> Transition {
        let transition = self.transition(target, success);
        let counter = match transition {
            Transition::Opened => &self.opened,
            Transition::Closed => &self.closed,
            Transition::None | Transition::Reopened => return transition,
        };
        counter.inc();
        transition
    }

    fn transition(&self, target: &str, success: bool) -> Transition {
        let settings = self.settings;
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if success && !states.contains_key(target) {
            // Healthy targets need no state: nothing to allocate or evict,
            // and no time to read.
            return Transition::None;
        }
        let now = Instant::now();
        let state = states.entry(target.to_owned()).or_insert(State::Closed { since: now, calls: 0, failures: 0 });
        match state {
            State::Probing if success => {
                states.remove(target);
                Transition::Closed
            }
            State::Probing => {
                *state = State::Open { until: now + settings.cooldown };
                Transition::Reopened
            }
            // An outcome of a call admitted before the breaker opened.
            State::Open { .. } => Transition::None,
            State::Closed { since, calls, failures } => {
                if now.duration_since(*since) > settings.window {
                    (*since, *calls, *failures) = (now, 0, 0);
                }
                *calls += 1;
                *failures += u32::from(!success);
                // Only a failure opens it: a success never makes things worse.
                if !success
                    && *calls >= settings.min_requests
                    && f64::from(*failures) >= settings.failure_rate * f64::from(*calls)
                {
                    *state = State::Open { until: now + settings.cooldown };
                    Transition::Opened
                } else {
                    if *failures == 0 {
                        states.remove(target);
                    }
                    Transition::None
                }
            }
        }
    }

    /// Forgets closed breakers whose window ended, so targets that failed
    /// once long ago hold no memory.
    pub fn evict_idle(&self) {
        let now = Instant::now();
        let window = self.settings.window;
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|_, state| !matches!(state, State::Closed { since, .. } if now.duration_since(*since) > window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakers_are_keyed_without_query_or_credentials() {
        let url = url::Url::parse("https://user:pw@api.example.com:8443/orders?id=7#x").unwrap();
        assert_eq!(breaker_key(&url), "https://api.example.com:8443/orders");
        for text in [
            "https://api.example.com",
            "https://api.example.com/orders/7?id=7&x=%20#frag",
            "http://127.0.0.1:8080/a/b/?",
            "http://[::1]:9000/p%2Fq#",
            "https://token@hooks.example.com/services/T1/B2?x=1",
            "https://:pw@api.example.com/",
        ] {
            let url = url::Url::parse(text).unwrap();
            // What the key is by definition: the URL stripped of the rest.
            let mut stripped = url.clone();
            stripped.set_query(None);
            stripped.set_fragment(None);
            let _ = stripped.set_username("");
            let _ = stripped.set_password(None);
            assert_eq!(breaker_key(&url), stripped.as_str(), "{text}");
        }
    }

    fn quick() -> Breakers {
        Breakers::new(BreakerSettings {
            window: Duration::from_secs(60),
            min_requests: 4,
            failure_rate: 0.5,
            cooldown: Duration::from_millis(30),
        })
    }

    #[test]
    fn opens_on_the_failure_rate_then_probes_once_and_closes() {
        let breakers = quick();
        let target = "https://api.example.com/hook";
        assert_eq!(breakers.record(target, false), Transition::None);
        assert_eq!(breakers.record(target, true), Transition::None);
        assert_eq!(breakers.record(target, false), Transition::None, "below the minimum of calls");
        assert_eq!(breakers.record(target, false), Transition::Opened);
        assert_eq!(breakers.admit(target), Admission::Refused);
        assert_eq!(breakers.admit("https://other.example.com/"), Admission::Allowed, "breakers are per URL");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breakers.admit(target), Admission::Probe);
        assert_eq!(breakers.admit(target), Admission::Refused, "one probe at a time");
        assert_eq!(breakers.record(target, false), Transition::Reopened, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breakers.admit(target), Admission::Probe);
        assert_eq!(breakers.record(target, true), Transition::Closed);
        assert_eq!(breakers.admit(target), Admission::Allowed);
        assert_eq!(
            (breakers.opened.get(), breakers.closed.get(), breakers.open_now()),
            (1, 1, 0),
            "reopening is not counted"
        );
    }

    #[test]
    fn open_breakers_are_counted_until_they_close() {
        let breakers = quick();
        for _ in 0..4 {
            breakers.record("a", false);
            breakers.record("b", false);
        }
        breakers.record("c", false);
        assert_eq!((breakers.open_now(), breakers.opened.get()), (2, 2), "c is closed, failing below the minimum");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breakers.admit("a"), Admission::Probe);
        assert_eq!(breakers.open_now(), 2, "probing is not closed");
        breakers.record("a", true);
        assert_eq!((breakers.open_now(), breakers.closed.get()), (1, 1));
    }

    #[test]
    fn successes_keep_it_closed() {
        let breakers = quick();
        breakers.record("t", false);
        for _ in 0..10 {
            assert_eq!(breakers.record("t", true), Transition::None);
        }
        assert_eq!(breakers.admit("t"), Admission::Allowed);
    }
}
