//! Time for the limits stage: one clock gives both the monotonic ticks the token buckets run on
//! and the UTC wall time the quota periods are cut from.
//!
//! Production uses [`LimitClock::system`]. Tests use [`LimitClock::manual`] over a
//! [`ManualClock`]: time stands still until the test calls [`ManualClock::advance`], and the
//! manual wall time moves with the ticks, so refill, period rollover and retry times are tested
//! in-process, instantly and deterministically.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use governor::clock::{Clock, FakeRelativeClock, QuantaClock, QuantaInstant, Reference};
use governor::nanos::Nanos;

/// The clock every limiter in this module reads. Cheap to clone (an `Instant` or an `Arc`).
#[derive(Clone, Debug)]
pub struct LimitClock(Source);

#[derive(Clone, Debug)]
enum Source {
    /// Real time: ticks are nanoseconds since `origin` on governor's default TSC-based clock
    /// (`quanta`; ~10 ns a read where `Instant::now` costs ~95 ns on this VM kind, and every
    /// bucket reads the clock once per request); wall time is the system clock.
    System {
        clock: QuantaClock,
        origin: QuantaInstant,
    },
    /// Test time.
    Manual(ManualClock),
}

impl LimitClock {
    /// Real time.
    pub fn system() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        LimitClock(Source::System { clock, origin })
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
            Source::System { clock, origin } => clock.now().duration_since(*origin),
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
