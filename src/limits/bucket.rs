//! One token bucket: governor's GCRA over a state cell we own, so that a token taken by a
//! request that a later layer rejects can be handed back exactly.
//!
//! Input: [`Bucket::try_take`] at the current tick. Output: a [`Taken`] receipt, or the time until
//! the next token. Invariants: size = `burst_limit`, one token every `T = ⌈10⁹ / rate_limit⌉` ns
//! (rounded up so the refill is never faster than configured); from any start, at most
//! `burst + ⌊elapsed / T⌋` takes succeed, refunds included (a refund only undoes a take that is
//! still the latest change to the cell, so it can never create a token that was not there).
//!
//! Why a custom state store: governor's `RateLimiter::check` consumes a token and offers no undo.
//! Its GCRA state is one theoretical-arrival-time (TAT) cell that only moves forward on a take. We
//! implement governor's `StateStore` for a shared `AtomicU64` with the same compare-and-swap loop as
//! governor's `InMemoryState`, and report each successful swap `(before, after)` through the
//! (otherwise unused) per-call key. A refund is `compare_exchange(after, before)`: it succeeds only
//! when nothing else changed the cell since, and otherwise the token stays spent (errs towards
//! throttling, never towards over-admission).

use std::cell::Cell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use super::{LimitClock, SpecError, ThrottleSpec};

/// A token bucket with a name (for logs and, later, a shared store's key) and its settings.
pub struct Bucket {
    name: Arc<str>,
    /// The cell's name in a shared store (without the store's prefix); see [`Bucket::store_key`].
    store_key: Arc<str>,
    spec: ThrottleSpec,
    interval: Duration,
    /// The GCRA cell, shared with `limiter`'s state store so refunds can reach it. An atomic,
    /// not a lock: the hot path is one load and one compare-and-swap.
    tat: Arc<AtomicU64>,
    limiter: RateLimiter<Receipt, TatCell, LimitClock, NoOpMiddleware<Nanos>>,
}

/// Proof of one successful take, to hand back with [`Bucket::refund`].
#[derive(Debug)]
#[must_use = "a taken token is either kept (admitted) or refunded"]
pub(crate) struct Taken {
    before: u64,
    after: u64,
}

impl Bucket {
    /// Builds a full bucket. `name` identifies it in logs (e.g. `key:partner-a/plan:standard`).
    pub fn new(
        name: impl Into<Arc<str>>,
        spec: ThrottleSpec,
        clock: &LimitClock,
    ) -> Result<Self, SpecError> {
        let name = name.into();
        let (interval, burst) = validate(&name, spec)?;
        let tat = Arc::new(AtomicU64::new(0));
        let quota = Quota::with_period(interval)
            .ok_or_else(|| SpecError::Rate {
                name: name.to_string(),
                rate: spec.rate_limit,
            })?
            .allow_burst(burst);
        let limiter = RateLimiter::new(quota, TatCell(Arc::clone(&tat)), clock.clone());
        Ok(Bucket {
            store_key: Arc::clone(&name),
            name,
            spec,
            interval,
            tat,
            limiter,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings it was built from.
    pub fn spec(&self) -> ThrottleSpec {
        self.spec
    }

    /// Names the bucket's cell in a shared store (default: its name).
    pub fn with_store_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.store_key = key.into();
        self
    }

    /// The cell's name in a shared store.
    pub fn store_key(&self) -> &str {
        &self.store_key
    }

    /// GCRA parameters in whole microseconds for a shared store: `T` rounded up (never faster
    /// than configured) and `tau = T × (burst − 1)`, both capped at a century so the store's
    /// double-precision arithmetic stays exact (such a bucket never refills in practice anyway).
    pub fn gcra_micros(&self) -> (u64, u64) {
        const CENTURY_US: u64 = 100 * 365 * 24 * 3600 * 1_000_000;
        let nanos = u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX);
        let t = nanos.div_ceil(1000).clamp(1, CENTURY_US);
        let tau = t
            .saturating_mul(u64::from(self.spec.burst_limit.saturating_sub(1)))
            .min(CENTURY_US);
        (t, tau)
    }

    /// `T`: the time one token takes to come back, `⌈10⁹ / rate_limit⌉` ns.
    pub fn replenish_interval(&self) -> Duration {
        self.interval
    }

    /// Takes one token, or says how long until one is available.
    pub(crate) fn try_take(&self) -> Result<Taken, Duration> {
        let receipt = Receipt::default();
        match self.limiter.check_key(&receipt) {
            Ok(()) => {
                // Always set on `Ok` by `TatCell`; the fallback makes an impossible case a
                // token that cannot be refunded rather than a panic.
                let (before, after) = receipt.0.get().unwrap_or((u64::MAX, u64::MAX));
                Ok(Taken { before, after })
            }
            Err(not_until) => Err(not_until.wait_time_from(self.limiter.clock().now())),
        }
    }

    /// Hands a token back. Succeeds only if no other take or refund changed the bucket since
    /// `taken`; otherwise the token stays spent.
    pub(crate) fn refund(&self, taken: Taken) {
        // A failed exchange is the documented "token stays spent" case; nothing to do.
        let _ = self.tat.compare_exchange(
            taken.after,
            taken.before,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Checks `spec` and derives governor's parameters: the interval `T` (rounded up to whole
/// nanoseconds) and the burst.
fn validate(name: &str, spec: ThrottleSpec) -> Result<(Duration, NonZeroU32), SpecError> {
    let rate_error = || SpecError::Rate {
        name: name.to_owned(),
        rate: spec.rate_limit,
    };
    let burst = NonZeroU32::new(spec.burst_limit).ok_or_else(|| SpecError::Burst {
        name: name.to_owned(),
    })?;
    if !(spec.rate_limit.is_finite() && spec.rate_limit > 0.0) {
        return Err(rate_error());
    }
    let nanos = (1e9 / spec.rate_limit).ceil();
    // ~500 years per token is far beyond any sane setting and keeps the GCRA arithmetic in u64.
    if !(nanos.is_finite() && nanos < 1.6e19) {
        return Err(rate_error());
    }
    // `as` saturates for f64 → u64; the value is in range here anyway.
    let interval_ns = (nanos as u64).max(1);
    // governor computes `T × (burst − 1)` and TATs of `now + T × burst` in u64 nanoseconds;
    // leave a century of headroom for `now`.
    const CENTURY_NS: u64 = 100 * 365 * 24 * 3600 * 1_000_000_000;
    match interval_ns.checked_mul(u64::from(burst.get())) {
        Some(capacity) if capacity < u64::MAX - CENTURY_NS => {}
        _ => {
            return Err(SpecError::Capacity {
                name: name.to_owned(),
            });
        }
    }
    Ok((Duration::from_nanos(interval_ns), burst))
}

/// The per-call "key" governor hands to the state store: carries the successful swap back out.
/// All receipts hash and compare equal; the store has one cell and ignores the key otherwise.
#[derive(Clone, Default, PartialEq, Eq)]
struct Receipt(Cell<Option<(u64, u64)>>);

impl Hash for Receipt {
    fn hash<H: Hasher>(&self, _state: &mut H) {}
}

/// governor state store over one shared TAT cell (0 = fresh bucket, as in governor's own store).
struct TatCell(Arc<AtomicU64>);

impl StateStore for TatCell {
    type Key = Receipt;

    fn measure_and_replace<T, F, E>(&self, receipt: &Receipt, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut before = self.0.load(Ordering::Acquire);
        loop {
            let (outcome, after) = f(NonZeroU64::new(before).map(|n| Nanos::new(n.get())))?;
            let after = after.as_u64();
            match self
                .0
                .compare_exchange_weak(before, after, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    receipt.0.set(Some((before, after)));
                    return Ok(outcome);
                }
                Err(current) => before = current,
            }
        }
    }
}
