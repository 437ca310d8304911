//! Time for the limits stage: one clock gives both the monotonic ticks the token buckets run on
//! and the UTC wall time the quota periods are cut from.
//!
//! Production uses [`LimitClock::system`]. Tests use [`LimitClock::manual`] over a
//! [`ManualClock`]: time stands still until the test calls [`ManualClock::advance`], and the
//! manual wall time moves with the ticks, so refill, period rollover and retry times are tested
//! in-process, instantly and deterministically.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use governor::clock::{Clock, FakeRelativeClock};
use governor::nanos::Nanos;

/// The clock every limiter in this module reads. Cheap to clone (an `Instant` or an `Arc`).
#[derive(Clone, Debug)]
pub struct LimitClock(Source);

#[derive(Clone, Debug)]
enum Source {
    /// Real time: ticks are nanoseconds since `origin` (monotonic), wall time is the system clock.
    System { origin: Instant },
    /// Test time.
    Manual(ManualClock),
}

impl LimitClock {
    /// Real time.
    pub fn system() -> Self {
        LimitClock(Source::System {
            origin: Instant::now(),
        })
    }

    /// Time controlled by `clock` (clones share the same time).
    pub fn manual(clock: &ManualClock) -> Self {
        LimitClock(Source::Manual(clock.clone()))
    }

    /// Current UTC wall time, for quota periods.
    pub fn wall_now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System { .. } => Utc::now(),
            Source::Manual(manual) => manual.wall_now(),
        }
    }
}

impl Clock for LimitClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.0 {
            // Saturates rather than panics; 584 years of uptime is not a concern.
            Source::System { origin } => {
                Nanos::new(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
            }
            Source::Manual(manual) => manual.ticks.now(),
        }
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    ticks: FakeRelativeClock,
    wall_origin: DateTime<Utc>,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall_start` and whose ticks start at zero.
    pub fn new(wall_start: DateTime<Utc>) -> Self {
        ManualClock {
            ticks: FakeRelativeClock::default(),
            wall_origin: wall_start,
        }
    }

    /// Moves time forward (both ticks and wall time) by `by`.
    pub fn advance(&self, by: Duration) {
        self.ticks.advance(by);
    }

    /// Time elapsed since creation.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.ticks.now().as_u64())
    }

    /// The wall time: `wall_start + elapsed`.
    pub fn wall_now(&self) -> DateTime<Utc> {
        TimeDelta::from_std(self.elapsed())
            .ok()
            .and_then(|d| self.wall_origin.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
