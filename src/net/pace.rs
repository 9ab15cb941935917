//! How long a transfer may go on ([`Bounds`]), and one transfer's clock against them
//! ([`Pace`]): a total deadline, an idle timeout, a minimum rate (curl's `--speed-limit` and
//! `--speed-time`, so a trickle of a byte now and then cannot hold a transfer forever), and the
//! process's stop (SIGTERM abandons it). Artifact downloads and registry blobs use it.

use std::time::{Duration, Instant};

/// How often a transfer in flight looks at its deadline, its rate and the process's stop.
pub const TICK: Duration = Duration::from_millis(100);

/// How long a transfer may go on.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Longest wait for the next bytes.
    pub idle: Duration,
    /// Longest a whole transfer may take.
    pub deadline: Duration,
    /// Fewer than `min_bytes` in any `window`: too slow, abandoned.
    pub min_bytes: u64,
    pub window: Duration,
    /// Whether the process was asked to stop (SIGTERM): the transfer is abandoned.
    pub stop: fn() -> bool,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            idle: Duration::from_secs(60),
            deadline: Duration::from_secs(3600),
            min_bytes: 30 << 10,
            window: Duration::from_secs(30),
            stop: || false,
        }
    }
}

/// Why a transfer was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Abandoned {
    #[error("abandoned: the agent is stopping")]
    Stopping,
    #[error("not done within {}s", .0.as_secs_f32())]
    Deadline(Duration),
    #[error("stalled for {}s", .0.as_secs_f32())]
    Stalled(Duration),
    #[error(
        "too slow: {bytes} bytes in {}s, under the {min_bytes} a download must make",
        .window.as_secs_f32()
    )]
    TooSlow {
        bytes: u64,
        window: Duration,
        min_bytes: u64,
    },
}

/// One transfer's clock against its [`Bounds`]: checked whenever bytes come and every
/// [`TICK`] while none do.
#[derive(Debug)]
pub struct Pace {
    bounds: Bounds,
    started: Instant,
    last_data: Instant,
    window_start: Instant,
    window_bytes: u64,
}

impl Pace {
    pub fn new(bounds: Bounds) -> Pace {
        Pace::starting(bounds, Instant::now())
    }

    fn starting(bounds: Bounds, now: Instant) -> Pace {
        Pace {
            bounds,
            started: now,
            last_data: now,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// `bytes` came (0: a tick without any) at `now`: why to give up, if it is time to.
    pub fn check(&mut self, bytes: u64, now: Instant) -> Result<(), Abandoned> {
        if (self.bounds.stop)() {
            return Err(Abandoned::Stopping);
        }
        if bytes > 0 {
            self.last_data = now;
            self.window_bytes += bytes;
        }
        if now.duration_since(self.started) > self.bounds.deadline {
            return Err(Abandoned::Deadline(self.bounds.deadline));
        }
        if now.duration_since(self.last_data) > self.bounds.idle {
            return Err(Abandoned::Stalled(self.bounds.idle));
        }
        if now.duration_since(self.window_start) >= self.bounds.window {
            if self.window_bytes < self.bounds.min_bytes {
                return Err(Abandoned::TooSlow {
                    bytes: self.window_bytes,
                    window: self.bounds.window,
                    min_bytes: self.bounds.min_bytes,
                });
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }

    /// Awaits `future`, checking this pace every [`TICK`] while it is pending.
    pub async fn bounded<F: std::future::Future>(
        &mut self,
        future: F,
    ) -> Result<F::Output, Abandoned> {
        tokio::pin!(future);
        loop {
            match tokio::time::timeout(TICK, &mut future).await {
                Ok(output) => return Ok(output),
                Err(_) => self.check(0, Instant::now())?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_checks_its_deadline_rate_idle_and_stop() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let bounds = Bounds {
            idle: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            min_bytes: 100,
            window: Duration::from_secs(10),
            stop: || false,
        };
        // One byte every 4 s: never idle for 5 s, but 3 bytes in 10 s is too slow.
        let mut pace = Pace::starting(bounds, t0);
        assert!(pace.check(1, at(4_000)).is_ok());
        assert!(pace.check(1, at(8_000)).is_ok());
        let err = pace.check(1, at(12_000)).unwrap_err();
        assert!(
            err.to_string().contains("too slow: 3 bytes in 10s"),
            "{err}"
        );
        let mut pace = Pace::starting(bounds, t0);
        assert_eq!(
            pace.check(0, at(6_000)),
            Err(Abandoned::Stalled(Duration::from_secs(5)))
        );
        assert_eq!(
            Abandoned::Stalled(Duration::from_secs(5)).to_string(),
            "stalled for 5s"
        );
        let mut pace = Pace::starting(bounds, t0);
        for s in 1..=60 {
            pace.check(1000, at(s * 1000)).unwrap();
        }
        let err = pace.check(1000, at(61_000)).unwrap_err();
        assert_eq!(err.to_string(), "not done within 60s");
        let mut pace = Pace::starting(
            Bounds {
                stop: || true,
                ..bounds
            },
            t0,
        );
        assert_eq!(pace.check(1, t0), Err(Abandoned::Stopping));
    }
}
