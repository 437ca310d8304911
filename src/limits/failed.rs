//! Key-enumeration defence: a cap on failed API-key attempts per client address.
//!
//! Place in the pipeline: the auth stage calls [`FailedAttemptLimiter::allow_failed_attempt`]
//! only when a request on a key-protected route presents a key that fails: unknown, disabled, or
//! in no plan for the stage (a missing key guesses nothing and is not counted). When it returns
//! `false` the request gets 429 "Too Many Requests" instead of 403, whichever way the key failed, so
//! a guesser cannot tell an unknown key from a disabled one. A request with a valid key never
//! reaches this limiter, so valid keys are never blocked, whatever happens here. The state is per
//! task: behind a load balancer spreading an address over N tasks, it gets up to N times the budget.
//!
//! Input: the client address (already resolved from trusted `X-Forwarded-For` hops). Output: allow
//! or refuse one more failed attempt. Invariants: at most `per_minute` failed attempts are allowed
//! per address in any burst, refilling at `per_minute` per minute (governor keyed token bucket);
//! IPv6 clients are grouped by /64, the block one subscriber usually controls, so rotating
//! addresses inside it does not reset the count.
//!
//! Security / memory: state is bounded by `max_tracked` addresses. Fully refilled entries are
//! evicted by [`FailedAttemptLimiter::housekeeping`] (call it periodically, e.g. every minute) and
//! opportunistically, at most once a second, when the table is full. If it is still full (a spray
//! from very many addresses within a minute), failed attempts from untracked addresses are
//! refused: the defence fails closed, which costs only unknown-key callers a 429 instead of a 403.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::LimitClock;

/// Opportunistic sweeps of a full table happen at most this often, so a spray cannot make every
/// failed attempt pay for a scan of the whole table.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// Per-address limiter of failed key attempts.
pub struct FailedAttemptLimiter {
    /// governor's keyed limiter: a sharded concurrent map of atomic cells; a check takes one
    /// shard lock for a map lookup, never held across `.await`.
    limiter: RateLimiter<IpAddr, DashMapStateStore<IpAddr>, LimitClock, NoOpMiddleware<Nanos>>,
    max_tracked: usize,
    /// Tick (ns) before which no opportunistic sweep runs.
    next_sweep: AtomicU64,
}

impl FailedAttemptLimiter {
    /// Failed attempts allowed per address per minute by default (issue 7).
    pub const DEFAULT_PER_MINUTE: u32 = 100;
    /// Addresses tracked at most by default (a few MB).
    pub const DEFAULT_MAX_TRACKED: usize = 100_000;

    /// A limiter allowing `per_minute` failed attempts per address per minute, tracking at most
    /// `max_tracked` addresses.
    pub fn new(per_minute: NonZeroU32, max_tracked: usize, clock: LimitClock) -> Self {
        FailedAttemptLimiter {
            limiter: RateLimiter::new(
                Quota::per_minute(per_minute),
                DashMapStateStore::default(),
                clock,
            ),
            max_tracked,
            next_sweep: AtomicU64::new(0),
        }
    }

    /// The defaults: 100 a minute, 100 000 addresses.
    pub fn with_defaults(clock: LimitClock) -> Self {
        Self::new(
            NonZeroU32::new(Self::DEFAULT_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
            Self::DEFAULT_MAX_TRACKED,
            clock,
        )
    }

    /// Records one failed key attempt from `ip`; `false` means the address is over its budget
    /// (answer 429 instead of 403).
    pub fn allow_failed_attempt(&self, ip: IpAddr) -> bool {
        let key = bucket_key(ip);
        if self.limiter.len() >= self.max_tracked {
            self.sweep_if_due();
            if self.limiter.len() >= self.max_tracked {
                tracing::warn!(
                    tracked = self.limiter.len(),
                    "failed-key limiter full; refusing failed attempts"
                );
                return false;
            }
        }
        self.limiter.check_key(&key).is_ok()
    }

    /// Evicts addresses whose bucket is full again (indistinguishable from never seen) and frees
    /// the memory. Call periodically.
    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    fn sweep_if_due(&self) {
        let now = self.limiter.clock().now().as_u64();
        let due = self.next_sweep.load(Ordering::Relaxed);
        // Only the caller that wins the exchange sweeps; the others go on without waiting.
        if now >= due
            && self
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(SWEEP_EVERY_NS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.limiter.retain_recent();
        }
    }
}

impl std::fmt::Debug for FailedAttemptLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAttemptLimiter")
            .field("tracked", &self.limiter.len())
            .field("max_tracked", &self.max_tracked)
            .finish_non_exhaustive()
    }
}

/// IPv4 (and IPv4-mapped IPv6) per address; other IPv6 per /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
pub(crate) fn bucket_key_for_test(ip: IpAddr) -> IpAddr {
    bucket_key(ip)
}
