//! Usage-plan quotas: a count of admitted requests per calendar period, per (key, plan).
//!
//! Input: the UTC wall time of the request. Output: consumed, or the time until the period resets.
//! Invariants: periods are UTC calendar periods (day from 00:00, ISO week from Monday 00:00, month
//! from the 1st 00:00), chosen because API Gateway does not document its boundaries and clients
//! budget in calendar terms (peer-gateways §3.5: drifting, first-use windows are a complaint).
//! Check and increment happen in one critical section, so N concurrent requests against
//! `remaining = 1` admit exactly one. Only the admit stage calls [`QuotaCounter::try_consume`], and
//! only after every throttle layer has passed, so rejected requests are never counted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc};

use super::{QuotaPeriod, QuotaSpec};

/// Start (inclusive) and end (exclusive) of the `period` containing `now`, in UTC.
pub fn period_bounds(period: QuotaPeriod, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.date_naive();
    let (start, end) = match period {
        QuotaPeriod::Day => (today, today.succ_opt()),
        QuotaPeriod::Week => {
            let monday = today
                .checked_sub_days(chrono::Days::new(u64::from(
                    today.weekday().num_days_from_monday(),
                )))
                .unwrap_or(NaiveDate::MIN);
            (monday, monday.checked_add_days(chrono::Days::new(7)))
        }
        QuotaPeriod::Month => {
            let first = today.with_day(1).unwrap_or(today);
            (first, first.checked_add_months(Months::new(1)))
        }
    };
    // `None` only at the end of chrono's calendar (year 262143); the period then never ends.
    let end = end.unwrap_or(NaiveDate::MAX);
    (midnight(start), midnight(end))
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

/// A usage read-out for one (key, plan) quota, for `sagegate usage` and admin views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    /// The period kind.
    pub period: QuotaPeriod,
    /// When the current period started (UTC).
    pub period_start: DateTime<Utc>,
    /// When it ends and the count starts again (UTC).
    pub resets_at: DateTime<Utc>,
    /// Requests allowed in this period (`limit`, minus `offset` in the first period).
    pub limit: u64,
    /// Requests admitted in this period.
    pub used: u64,
    /// `limit - used`, never negative.
    pub remaining: u64,
}

/// The quota state of one (key, plan).
pub struct QuotaCounter {
    name: Arc<str>,
    /// The counter's base name in a shared store; see [`QuotaCounter::store_key`].
    store_key: Arc<str>,
    spec: QuotaSpec,
    /// Start of the period the counter was created in: `offset` applies in that period only.
    first_period: DateTime<Utc>,
    /// The last count a shared store reported for this (plan, key): period start (unix seconds)
    /// and requests used, so that a fallback to this counter during an outage continues from the
    /// shared count instead of from zero. Two plain atomics: an approximate pair is good enough
    /// for a bound, and the hot path pays two stores.
    shared_start: AtomicI64,
    shared_used: AtomicU64,
    /// A short `std` mutex rather than atomics because the period start and the count must change
    /// together at a boundary. Held for a few integer operations, never across `.await`; contended
    /// only by requests of the same key.
    window: Mutex<Window>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    used: u64,
    /// The period before (start, end, used), when this counter saw it, for the usage read-out.
    previous: Option<(DateTime<Utc>, DateTime<Utc>, u64)>,
}

impl QuotaCounter {
    /// A counter at zero, created at `now`.
    pub fn new(name: impl Into<Arc<str>>, spec: QuotaSpec, now: DateTime<Utc>) -> Self {
        let (start, end) = period_bounds(spec.period, now);
        let name: Arc<str> = name.into();
        QuotaCounter {
            store_key: Arc::clone(&name),
            shared_start: AtomicI64::new(i64::MIN),
            shared_used: AtomicU64::new(0),
            name,
            spec,
            first_period: start,
            window: Mutex::new(Window {
                start,
                end,
                used: 0,
                previous: None,
            }),
        }
    }

    /// Names the counter in a shared store (default: its name): the store appends the period.
    pub fn with_store_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.store_key = key.into();
        self
    }

    /// The counter's base name in a shared store.
    pub fn store_key(&self) -> &str {
        &self.store_key
    }

    pub(crate) fn store_key_arc(&self) -> &Arc<str> {
        &self.store_key
    }

    /// The counter's name (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings it was built from.
    pub fn spec(&self) -> QuotaSpec {
        self.spec
    }

    /// Records the count a shared store reported after admitting a request in the period that
    /// starts at `start` (unix seconds).
    pub(crate) fn observe_shared(&self, start: i64, used: u64) {
        if self.shared_start.swap(start, Ordering::Relaxed) == start {
            self.shared_used.fetch_max(used, Ordering::Relaxed);
        } else {
            self.shared_used.store(used, Ordering::Relaxed);
        }
    }

    /// Counts one request if the current period has room; otherwise returns the time until the
    /// period resets. The room includes the last shared count seen in this period, if any.
    pub(crate) fn try_consume(&self, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut window, now);
        let shared = if self.shared_start.load(Ordering::Relaxed) == window.start.timestamp() {
            self.shared_used.load(Ordering::Relaxed)
        } else {
            0
        };
        if window.used.saturating_add(shared) < self.limit_for(&window) {
            window.used += 1;
            Ok(())
        } else {
            Err(until(now, window.end))
        }
    }

    /// The usage in the period containing `now`.
    pub fn usage(&self, now: DateTime<Utc>) -> QuotaUsage {
        let window = {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            self.roll(&mut window, now);
            *window
        };
        let limit = self.limit_for(&window);
        QuotaUsage {
            period: self.spec.period,
            period_start: window.start,
            resets_at: window.end,
            limit,
            used: window.used,
            remaining: limit.saturating_sub(window.used),
        }
    }

    /// The usage in the period before the one containing `now` (0 when this counter did not
    /// count in it, e.g. it was created later).
    pub fn previous_usage(&self, now: DateTime<Utc>) -> QuotaUsage {
        let window = {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            self.roll(&mut window, now);
            *window
        };
        let start = period_bounds(self.spec.period, window.start - TimeDelta::seconds(1)).0;
        let used = match window.previous {
            Some((s, _, used)) if s == start => used,
            _ => 0,
        };
        let limit = if start == self.first_period {
            self.spec.limit.saturating_sub(self.spec.offset)
        } else {
            self.spec.limit
        };
        QuotaUsage {
            period: self.spec.period,
            period_start: start,
            resets_at: window.start,
            limit,
            used,
            remaining: limit.saturating_sub(used),
        }
    }

    /// Starts a new period when `now` has passed the current one. A wall clock stepped backwards
    /// keeps the current period (never re-opens an old one).
    fn roll(&self, window: &mut Window, now: DateTime<Utc>) {
        if now >= window.end {
            let (start, end) = period_bounds(self.spec.period, now);
            *window = Window {
                start,
                end,
                used: 0,
                previous: Some((window.start, window.end, window.used)),
            };
        }
    }

    fn limit_for(&self, window: &Window) -> u64 {
        if window.start == self.first_period {
            self.spec.limit.saturating_sub(self.spec.offset)
        } else {
            self.spec.limit
        }
    }
}

impl std::fmt::Debug for QuotaCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaCounter")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

fn until(now: DateTime<Utc>, end: DateTime<Utc>) -> Duration {
    end.signed_duration_since(now)
        .max(TimeDelta::zero())
        .to_std()
        .unwrap_or(Duration::ZERO)
}
