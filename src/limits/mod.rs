//! The `admit` stage: usage-plan throttling (token buckets) and quotas.
//!
//! Place in the pipeline: `route → authenticate → **admit** → validate → …`. It runs after the
//! caller is known (optional API key and the usage plan that covers the stage) and the route is
//! matched, and before any work is spent on the request.
//!
//! The stage function is [`admit`]: the caller's [`KeyLimiter`] and the stage's [`StageLimiter`]
//! for the matched route, answered as the client-visible outcome.
//!
//! Input: an [`AdmitRequest`], i.e. borrowed handles to the token buckets and the quota counter that
//! apply to this caller on this route (built by [`AdmitRequest::new`] from a [`KeyLimiter`] and a
//! [`StageLimiter`]). Output: an [`Admission`]: admitted, `Throttled` (429 "Too Many Requests") or
//! `QuotaExceeded` (429 "Limit Exceeded"), each rejection with the time after which a retry can
//! succeed (for `Retry-After`).
//!
//! Layers, in API Gateway's order; the first empty bucket rejects:
//! 1. usage plan, per key, per route (method + resource path) throttle override;
//! 2. usage plan, per key throttle;
//! 3. stage, per route throttle;
//! 4. stage default throttle.
//!
//! Then the usage-plan quota. The account-level layer of AWS has no counterpart here.
//!
//! Invariants:
//! - A request that is rejected consumes nothing: not quota, and not the throttle tokens it took
//!   from earlier layers (they are handed back exactly, see [`Bucket`]). So a client above its
//!   limit is never starved by its own rejected requests (the Tyk#1876 failure), and the quota
//!   counts only admitted requests. Quota check and increment are one critical section, so
//!   concurrent requests can never overrun it (the Kong#2629 / APISIX#3988 failures).
//! - No bucket ever admits more than `burst + ⌊elapsed / T⌋` requests, `T = ⌈10⁹ / rate⌉` ns, hence
//!   never more than `burst + ⌊rate × elapsed⌋` (property-tested in `tests.rs`).
//! - Quota periods are calendar periods in UTC: a day starts at 00:00 UTC, a week on Monday
//!   00:00 UTC, a month at 00:00 UTC on the 1st. `offset` is subtracted from the limit in the
//!   period in which the counter was created only (see [`QuotaSpec::offset`]).
//! - Hot path: atomics (governor's GCRA cell) plus one short `std::sync::Mutex` section per quota;
//!   no allocation, no lock across `.await`.
//! - Limiter state lives in per-key [`KeyLimiter`] handles that survive a keys reload when the
//!   key's plan settings did not change ([`KeyLimiters::reconcile`]).
//! - Where the state lives is the [`Limiter`]: in process ([`MemoryStore`], exact for one task),
//!   or shared by every task in Redis / Valkey ([`RedisStore`], module [`redis`]: one atomic
//!   script call per request, server time, a declared failure policy). Both give the same
//!   answers for the same inputs (tested against a real server in `redis/tests.rs`).
//! - Time is injected ([`LimitClock`]), so tests move time with a [`ManualClock`] and never sleep.
//!
//! Security: [`FailedAttemptLimiter`] caps unknown-key attempts per client address (key
//! enumeration defence) in bounded memory, without ever blocking a valid key.

mod bucket;
mod clock;
mod failed;
mod keys;
mod quota;
pub mod redis;
mod store;
mod usage;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

pub use self::bucket::Bucket;
pub use self::clock::{LimitClock, ManualClock};
pub use self::failed::FailedAttemptLimiter;
pub use self::keys::{
    KeyLimiter, KeyLimiters, KeyPlanSpec, ReconcileReport, RouteThrottle, StageLimiter,
};
pub use self::quota::{QuotaCounter, QuotaUsage, period_bounds};
pub use self::redis::{FailurePolicy, RedisSettings, RedisStore, UsagePeriod};
pub use self::store::{AdmitRequest, LimitStore, Limiter, MemoryStore, StoreStatus};
pub use self::usage::usage_json;

/// A token bucket's settings, as in API Gateway's `ThrottleSettings`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSpec {
    /// Steady refill rate, in requests per second; may be fractional (`0.5` = one every 2 s).
    /// Must be finite and `> 0`.
    pub rate_limit: f64,
    /// Bucket size: the most requests admitted at once after a quiet period. Must be `>= 1`.
    pub burst_limit: u32,
}

/// A usage-plan quota, as in API Gateway's `QuotaSettings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Requests admitted per period.
    pub limit: u64,
    /// The calendar period (UTC) after which the count starts again from zero.
    pub period: QuotaPeriod,
    /// Requests already counted in the first period, subtracted from `limit` in the period in
    /// which the counter is created (at start, or at the reload that changed this plan) and in no
    /// later period. Useful to carry usage over from API Gateway or across a restart. Default 0.
    #[serde(default)]
    pub offset: u64,
}

/// Quota period. Serialized as API Gateway spells it: `DAY`, `WEEK`, `MONTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// From 00:00:00 UTC to the next 00:00:00 UTC.
    Day,
    /// From Monday 00:00:00 UTC to the next Monday 00:00:00 UTC (ISO 8601 weeks).
    Week,
    /// From the 1st of a month, 00:00:00 UTC, to the 1st of the next month.
    Month,
}

/// The outcome of the `admit` stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every throttle layer had a token and the quota had room; the quota now counts this request.
    Admitted,
    /// A throttle layer was empty: 429 `{"message":"Too Many Requests"}`.
    Throttled {
        /// How long until that layer has a token again (governor's wait time).
        retry_after: Duration,
    },
    /// The quota of the current period is used up: 429 `{"message":"Limit Exceeded"}`.
    QuotaExceeded {
        /// How long until the period resets.
        retry_after: Duration,
    },
    /// The shared store is down and the failure policy is `deny`: 503 Service Unavailable.
    StoreUnavailable,
}

impl Admission {
    /// Whether the request may proceed.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Admission::Admitted)
    }

    /// The `Retry-After` header value in whole seconds ([`crate::error::retry_after_secs`]: the
    /// wait rounded up, at least 1). `None` when admitted.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Admission::Admitted => None,
            Admission::Throttled { retry_after } | Admission::QuotaExceeded { retry_after } => {
                Some(crate::error::retry_after_secs(*retry_after))
            }
            // The store is probed every second or so by default.
            Admission::StoreUnavailable => Some(1),
        }
    }
}

/// The admit stage: the caller's (key, plan) limits and the stage's, for the matched route
/// (`method` upper case, `resource_path` its template), in the order above, as the client-visible
/// outcome.
pub async fn admit(
    limiter: &Limiter,
    key: Option<&KeyLimiter>,
    stage: Option<&StageLimiter>,
    method: &str,
    resource_path: &str,
) -> Result<(), GatewayError> {
    let request = AdmitRequest::new(key, stage, method, resource_path);
    match limiter.admit(&request).await {
        Admission::Admitted => Ok(()),
        Admission::Throttled { retry_after } => Err(GatewayError::Throttled { retry_after }),
        Admission::QuotaExceeded { retry_after } => {
            Err(GatewayError::QuotaExceeded { retry_after })
        }
        Admission::StoreUnavailable => Err(GatewayError::Unavailable {
            reason: "limit store down (on_store_failure: deny)",
        }),
    }
}

/// A limit setting that cannot be turned into a limiter. Keys-file and gateway.yaml validation
/// should reject these first, with the file position; this is the last line of defence.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// `rate_limit` is not a finite number `> 0`, or so small that one token takes centuries.
    #[error(
        "{name}: rate_limit must be a finite number > 0 and at least one token per 500 years, got {rate}"
    )]
    Rate {
        /// The bucket's name (key, plan, route), for the message.
        name: String,
        /// The offending value.
        rate: f64,
    },
    /// `burst_limit` is 0.
    #[error("{name}: burst_limit must be >= 1")]
    Burst {
        /// The bucket's name, for the message.
        name: String,
    },
    /// `burst_limit / rate_limit` exceeds what the limiter can represent (~584 years of refill).
    #[error(
        "{name}: burst_limit / rate_limit is too large (bucket would take centuries to refill)"
    )]
    Capacity {
        /// The bucket's name, for the message.
        name: String,
    },
    /// The same (key, plan) pair appears twice in one keys snapshot.
    #[error("key {key_id}: usage plan {plan_id} listed twice")]
    DuplicateKeyPlan {
        /// Key id.
        key_id: String,
        /// Usage plan id.
        plan_id: String,
    },
}
