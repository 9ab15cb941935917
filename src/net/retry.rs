//! The one retry policy: exponential backoff with jitter, and a server's `Retry-After`
//! honoured. The agent's loop, bump's compare-and-swap and the GitHub client each describe
//! their waits as a [`Backoff`]: a loop with a sleep of its own (the agent's wakes on a trigger
//! or a signal) keeps [`Attempts`] and asks it for the next wait; a plain blocking retry is
//! [`blocking`].
//!
//! ```
//! use std::time::Duration;
//! use ferry::net::retry::{Backoff, Jitter};
//! // bump: 25 ms × 2^n, at most 2 s, full jitter.
//! let bump = Backoff::new(Duration::from_millis(25), Duration::from_secs(2));
//! assert!(bump.delay(3) <= Duration::from_millis(200));
//! // The agent after a full disk: 10 s × 2^(n-1), at most 10 minutes, half of it jittered.
//! let disk = Backoff::new(Duration::from_secs(5), Duration::from_secs(600)).jitter(Jitter::Half);
//! assert!(disk.delay(1) >= Duration::from_secs(5));
//! ```

use std::time::{Duration, SystemTime};

/// How much of a wait is random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere from nothing to the ceiling ("full jitter": retries spread the most).
    Full,
    /// From half the ceiling to the ceiling (never a retry right away).
    Half,
    /// The ceiling itself.
    None,
}

/// Waits that grow: `base` × 2^attempt, at most `max`, jittered; at most `attempts` tries
/// when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: Jitter,
    /// Failures after which to give up (`None`: never).
    pub attempts: Option<u32>,
    /// A `Retry-After` longer than this is not waited out: give up.
    pub longest_wait: Duration,
}

impl Backoff {
    /// `base` × 2^attempt up to `max`, full jitter, never giving up, a `Retry-After` honoured
    /// up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            jitter: Jitter::Full,
            attempts: None,
            longest_wait: max,
        }
    }

    pub const fn jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// Gives up after `attempts` failures.
    pub const fn attempts(self, attempts: u32) -> Backoff {
        Backoff {
            attempts: Some(attempts),
            ..self
        }
    }

    /// Waits out a `Retry-After` of at most `longest` (longer: give up).
    pub const fn longest_wait(self, longest: Duration) -> Backoff {
        Backoff {
            longest_wait: longest,
            ..self
        }
    }

    /// The same policy, never waiting longer than `cap` (the agent's interval).
    pub fn capped(self, cap: Duration) -> Backoff {
        Backoff {
            max: self.max.min(cap),
            ..self
        }
    }

    /// The longest wait after `attempt` failures in a row (1 for the first): `base` ×
    /// 2^attempt, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(20);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait after `attempt` failures in a row, jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random())
    }

    /// [`Backoff::delay`] with `random` as the jitter's draw (for tests).
    pub fn delay_with(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let millis = match self.jitter {
            Jitter::Full => random % (ceiling + 1),
            Jitter::Half => ceiling / 2 + random % (ceiling / 2 + 1),
            Jitter::None => ceiling,
        };
        Duration::from_millis(millis)
    }

    /// What to do after `attempt` failures in a row, a server having said `retry_after` (or
    /// not): wait that long, or give up (`None`: too many attempts, or the server asks for a
    /// wait longer than [`Backoff::longest_wait`]).
    pub fn next(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempts.is_some_and(|most| attempt >= most) {
            return None;
        }
        match retry_after {
            Some(wait) if wait > self.longest_wait => None,
            Some(wait) => Some(wait),
            None => Some(self.delay(attempt)),
        }
    }
}

/// Failures in a row, against a [`Backoff`]: what a retrying loop keeps.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Backoff,
    failures: u32,
}

impl Attempts {
    pub fn new(policy: Backoff) -> Attempts {
        Attempts {
            policy,
            failures: 0,
        }
    }

    /// One more failure: how long to wait before the next try, or `None` to give up.
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.failures += 1;
        self.policy.next(self.failures, retry_after)
    }

    /// A success: the next failure starts from the shortest wait again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// How one try of [`blocking`] failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry { error: E, after: Option<Duration> },
    /// Trying again would not help.
    Fatal(E),
}

/// Runs `attempt` until it succeeds, fails fatally, or `policy` gives up (the last error),
/// sleeping this thread between tries. For a loop that must wake early (the agent's), use
/// [`Attempts`] with its own sleep instead.
pub fn blocking<T, E>(
    policy: Backoff,
    mut attempt: impl FnMut() -> Result<T, Failure<E>>,
) -> Result<T, E> {
    let mut attempts = Attempts::new(policy);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retry { error, after }) => match attempts.failed(after) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(error),
            },
        }
    }
}

/// The wait a response's `Retry-After` header asks for, if it has a readable one.
pub fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    retry_after(value, SystemTime::now())
}

/// `interval`, ±`percent`%, so that processes started together do not act together.
pub fn spread(interval: Duration, percent: u32) -> Duration {
    spread_with(interval, percent, random())
}

/// [`spread`] with `random` as the draw (for callers that keep their randomness outside, as
/// the agent's pure `decide` does).
pub fn spread_with(interval: Duration, percent: u32, random: u64) -> Duration {
    let millis = interval.as_millis() as u64;
    let spread = millis * u64::from(percent) / 100;
    if spread == 0 {
        return interval;
    }
    Duration::from_millis(millis - spread + random % (2 * spread + 1))
}

/// A `Retry-After` header's wait: delay-seconds (`120`) or an HTTP date, from `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A GitHub-style `x-ratelimit-reset` (Unix seconds): the wait until then, at least a second.
pub fn until_reset(epoch_seconds: u64, now: SystemTime) -> Duration {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Duration::from_secs(epoch_seconds.saturating_sub(now).max(1))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 says to send.
fn httpdate(value: &str) -> Option<SystemTime> {
    let parsed = jiff::fmt::rfc2822::parse(value).ok()?;
    let seconds = u64::try_from(parsed.timestamp().as_second()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// A random number from the standard library's per-process keys (enough for jitter).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn waits_grow_to_their_ceiling_with_jitter_inside_it() {
        let bump = Backoff::new(MS(25), MS(2_000));
        assert_eq!(bump.ceiling(1), MS(50));
        assert_eq!(bump.ceiling(3), MS(200));
        assert_eq!(bump.ceiling(30), MS(2_000));
        for draw in [0, 1, 49, 50, 12_345, u64::MAX] {
            assert!(bump.delay_with(1, draw) <= MS(50));
        }
        assert_eq!(bump.delay_with(1, 50), MS(50));
        assert_eq!(bump.delay_with(1, 51), MS(0));
        let half = Backoff::new(MS(5_000), MS(600_000)).jitter(Jitter::Half);
        for draw in [0, 7, u64::MAX] {
            let wait = half.delay_with(1, draw);
            assert!(wait >= MS(5_000) && wait <= MS(10_000), "{wait:?}");
        }
        assert_eq!(half.delay_with(9, 0), MS(300_000));
        let fixed = Backoff::new(MS(100), MS(1_000)).jitter(Jitter::None);
        assert_eq!(fixed.delay(2), MS(400));
        // The agent's: never past its interval.
        let agent = Backoff::new(MS(1_000), MS(1 << 30)).capped(MS(5_000));
        assert_eq!(agent.ceiling(10), MS(5_000));
    }

    #[test]
    fn retry_after_is_honoured_and_attempts_are_bounded() {
        let github = Backoff::new(Duration::from_secs(60), Duration::from_secs(240))
            .jitter(Jitter::None)
            .attempts(3)
            .longest_wait(Duration::from_secs(120));
        assert_eq!(github.next(1, Some(MS(3_000))), Some(MS(3_000)));
        assert_eq!(github.next(1, None), Some(Duration::from_secs(120)));
        assert_eq!(github.next(1, Some(Duration::from_secs(121))), None);
        assert_eq!(github.next(3, None), None);
        let mut attempts = Attempts::new(github);
        assert!(attempts.failed(None).is_some());
        assert!(attempts.failed(None).is_some());
        assert_eq!(attempts.failed(None), None);
        assert_eq!(attempts.failures(), 3);
        attempts.succeeded();
        assert_eq!(attempts.failed(Some(MS(1))), Some(MS(1)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(0)),
            "784111777 is that very second"
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(until_reset(784_111_800, now), Duration::from_secs(23));
        assert_eq!(until_reset(0, now), Duration::from_secs(1));
    }

    #[test]
    fn blocking_retries_until_done_fatal_or_given_up() {
        let quick = Backoff::new(MS(1), MS(4)).attempts(3);
        let mut tries = 0;
        let done: Result<u32, &str> = blocking(quick, || {
            tries += 1;
            if tries < 3 {
                Err(Failure::Retry {
                    error: "busy",
                    after: None,
                })
            } else {
                Ok(tries)
            }
        });
        assert_eq!(done, Ok(3));
        let mut tries = 0;
        let fatal: Result<(), &str> = blocking(quick, || {
            tries += 1;
            Err(Failure::Fatal("refused"))
        });
        assert_eq!((fatal, tries), (Err("refused"), 1));
        let mut tries = 0;
        let given_up: Result<(), &str> = blocking(quick, || {
            tries += 1;
            Err(Failure::Retry {
                error: "busy",
                after: Some(MS(1)),
            })
        });
        assert_eq!((given_up, tries), (Err("busy"), 3));
        // A server asking for more than the policy waits: given up at once.
        let mut tries = 0;
        let too_long: Result<(), &str> = blocking(quick, || {
            tries += 1;
            Err(Failure::Retry {
                error: "later",
                after: Some(Duration::from_secs(3600)),
            })
        });
        assert_eq!((too_long, tries), (Err("later"), 1));
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_spread_stays_within_its_percent() {
        for draw in [0, 1, 999, u64::MAX] {
            let wait = spread_with(MS(10_000), 10, draw);
            assert!(wait >= MS(9_000) && wait <= MS(11_000), "{wait:?}");
        }
        assert_eq!(spread_with(MS(10_000), 10, 0), MS(9_000));
        assert_eq!(spread_with(MS(5), 10, 3), MS(5));
    }
}
